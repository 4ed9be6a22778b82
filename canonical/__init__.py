"""crmbridge.canonical: the canonical party model, its validators, data classification and synthetic parties.

Importing this package is cheap: names are loaded from their modules on first access (PEP 562), so
``import crmbridge.canonical`` pulls in neither pydantic models nor phonenumbers' metadata.

Modules:
    model           Individual / Organisation (pydantic), parse_party, canonical JSON and content hash
    objects         Holding, Interaction, CampaignResponse beside the party, parse_object
    rules           segmentation and lifecycle rules: load_rules, derive (crmbridge.canonical.rules)
    identifiers     RIC, USCC, permits...: normalise_identifier and check digits
    phones          normalise_phone (E.164, phonenumbers), normalise_email
    classification  JR/T 0171 class and treatment of every field: field_policies, iter_classified_values
    c3              refuse_c3: C3 authentication data is never carried
    masking         mask(kind, value) for every display path
    synthetic       deterministic synthetic customers for the simulators
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports below exist for type checkers; runtime access is lazy)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # model
    "Address": "model", "AddressType": "model", "AnyParty": "model", "Aum": "model", "Branch": "model",
    "Consent": "model", "ConsentPurpose": "model", "ConsentStatus": "model", "ContactPoint": "model",
    "ContactPurpose": "model", "ContactType": "model", "Gender": "model", "Identifier": "model",
    "Individual": "model", "Kyc": "model", "KycStatus": "model", "LegalBasis": "model", "LegalForm": "model",
    "LifecycleStage": "model", "Money": "model", "OrgName": "model", "Organisation": "model", "Party": "model",
    "PartyRef": "model", "PartyType": "model", "PersonName": "model", "RelationshipManager": "model",
    "RiskRating": "model", "Segment": "model", "SegmentCode": "model", "SizeClass": "model", "SourceRef": "model",
    "VOLATILE_FIELDS": "model", "Verification": "model", "VerificationMethod": "model", "aum_band": "model",
    "parse_party": "model", "record_error": "model",
    # objects beside the party
    "CANONICAL_OBJECTS": "objects", "CampaignResponse": "objects", "Holding": "objects", "Interaction": "objects",
    "parse_object": "objects",
    # identifiers
    "IdentifierScheme": "identifiers", "NormalisedId": "identifiers", "normalise_identifier": "identifiers",
    "ric_birth_date": "identifiers", "ric_check_digit": "identifiers", "ric_gender": "identifiers",
    "uscc_check_digit": "identifiers",
    # phones
    "Phone": "phones", "PhoneKind": "phones", "normalise_email": "phones", "normalise_phone": "phones",
    # classification
    "DataClass": "classification", "FieldPolicy": "classification", "Treatment": "classification",
    "field_policies": "classification", "iter_classified_values": "classification",
    "masked_dump": "classification", "policy_for": "classification",
    # c3
    "refuse_c3": "c3",
    # masking
    "mask": "masking",
    # synthetic
    "SyntheticCustomer": "synthetic", "customer_at": "synthetic", "generate_customers": "synthetic",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only; names re-exported via __all__
    from crmbridge.canonical.c3 import refuse_c3
    from crmbridge.canonical.classification import (
        DataClass,
        FieldPolicy,
        Treatment,
        field_policies,
        iter_classified_values,
        masked_dump,
        policy_for,
    )
    from crmbridge.canonical.identifiers import (
        IdentifierScheme,
        NormalisedId,
        normalise_identifier,
        ric_birth_date,
        ric_check_digit,
        ric_gender,
        uscc_check_digit,
    )
    from crmbridge.canonical.masking import mask
    from crmbridge.canonical.model import (
        VOLATILE_FIELDS,
        Address,
        AddressType,
        AnyParty,
        Aum,
        Branch,
        Consent,
        ConsentPurpose,
        ConsentStatus,
        ContactPoint,
        ContactPurpose,
        ContactType,
        Gender,
        Identifier,
        Individual,
        Kyc,
        KycStatus,
        LegalBasis,
        LegalForm,
        LifecycleStage,
        Money,
        Organisation,
        OrgName,
        Party,
        PartyRef,
        PartyType,
        PersonName,
        RelationshipManager,
        RiskRating,
        Segment,
        SegmentCode,
        SizeClass,
        SourceRef,
        Verification,
        VerificationMethod,
        aum_band,
        parse_party,
        record_error,
    )
    from crmbridge.canonical.objects import (
        CANONICAL_OBJECTS,
        CampaignResponse,
        Holding,
        Interaction,
        parse_object,
    )
    from crmbridge.canonical.phones import Phone, PhoneKind, normalise_email, normalise_phone
    from crmbridge.canonical.synthetic import SyntheticCustomer, customer_at, generate_customers


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crmbridge.canonical' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"crmbridge.canonical.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
