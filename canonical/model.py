"""The canonical party model (docs/canonical.md §2): what every adapter maps to and from.

A canonical party is a BIAN *Party Reference Data Directory* entry: :class:`Individual` or :class:`Organisation`,
both derived from :class:`Party`, discriminated by ``party_type`` (:data:`AnyParty`, :func:`parse_party`).

**Clear values in memory.** ``Identifier.value``, ``ContactPoint.value``, ``Address.street`` and names hold clear,
*normalised* values (an 18-character upper-case RIC, an E.164 phone, a lower-cased e-mail). Encryption, blind
indexes and masking at rest are applied by the storage layer from each field's classification
(:mod:`crmbridge.canonical.classification`); every leaf field here is declared with :func:`classified`.

**Validation.** Identifiers and contact points are validated and normalised on construction by
:mod:`crmbridge.canonical.identifiers` and :mod:`crmbridge.canonical.phones` (normalisation flags such as
``legacy15`` land in ``flags``). Models reject unknown keys (``extra="forbid"``), hide input values in pydantic's
error text (``hide_input_in_errors``) and keep datetimes timezone-aware, converted to UTC. A failed validation of
custom rules carries a short code as the pydantic error type (``invalid_checksum``, ``missing_name``...);
:func:`parse_party` turns a pydantic error into :class:`crmbridge.core.errors.ValidationError` with ``field`` (a
canonical path such as ``identifiers[0].value``) and ``code``, and a message that contains masked values only.

**Change detection.** :meth:`Party.canonical_json` is the stable serialisation hashed by :meth:`Party.content_hash`:

- keys sorted, separators ``,`` and ``:``, UTF-8 (non-ASCII kept), ``None`` values and empty lists kept;
- ``Decimal`` as a string quantised to the currency's minor unit (``"1234.50"``), UUIDs as strings, dates ISO,
  datetimes ISO in UTC (``2024-01-01T08:00:00Z``), enums by value;
- lists of objects (identifiers, contact points, addresses, consents, source refs, beneficial owners) sorted by each
  item's own canonical JSON, so source order does not change the hash; lists of strings keep their order;
- volatile bookkeeping is excluded (:data:`VOLATILE_FIELDS`): ``version``, ``updated_at``, ``source_updated_at``,
  ``synced_at``, and ``source_refs[].{source_updated_at, record_version, etag, last_seen_at}``. ``created_at`` and
  ``deleted_at`` are content and are kept.

``content_hash(key)`` is HMAC-SHA256 over that JSON with ``key`` (use a managed key, docs/canonical.md §2) or plain
SHA-256 without one, as lower-case hex.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from crmbridge.canonical.classification import classified
from crmbridge.canonical.identifiers import (
    ORGANISATION_SCHEMES,
    PERSON_SCHEMES,
    IdentifierScheme,
    normalise_identifier,
    ric_birth_date,
    ric_gender,
)
from crmbridge.canonical.phones import PhoneKind, normalise_email, normalise_phone
from crmbridge.core.errors import ValidationError

__all__ = [
    "AUM_BANDS",
    "Address",
    "AddressType",
    "AnyParty",
    "Aum",
    "Branch",
    "CanonicalModel",
    "Consent",
    "ConsentPurpose",
    "ConsentStatus",
    "ContactPoint",
    "ContactPurpose",
    "ContactType",
    "Gender",
    "INDIVIDUAL_SEGMENTS",
    "Identifier",
    "IdentifierScheme",
    "Individual",
    "Kyc",
    "KycStatus",
    "LegalBasis",
    "LegalForm",
    "LifecycleStage",
    "Money",
    "OrgName",
    "Organisation",
    "PARTY_CLASSES",
    "Party",
    "PartyRef",
    "PartyType",
    "PersonName",
    "RelationshipManager",
    "RiskRating",
    "Segment",
    "SegmentCode",
    "SizeClass",
    "SourceRef",
    "VOLATILE_FIELDS",
    "Verification",
    "VerificationMethod",
    "aum_band",
    "canonical_dict_of",
    "hash_canonical",
    "parse_party",
    "record_error",
]


# --------------------------------------------------------------------------------------------------- code lists


class PartyType(StrEnum):
    INDIVIDUAL = "INDIVIDUAL"
    ORGANISATION = "ORGANISATION"


class LifecycleStage(StrEnum):
    """BIAN Party Lifecycle Management stage."""

    PROSPECT = "PROSPECT"
    ONBOARDING = "ONBOARDING"
    ACTIVE = "ACTIVE"
    DORMANT = "DORMANT"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"
    DECEASED = "DECEASED"      # individuals only
    DISSOLVED = "DISSOLVED"    # organisations only
    MERGED = "MERGED"          # requires merged_into


class Gender(StrEnum):
    MALE = "MALE"
    FEMALE = "FEMALE"
    UNKNOWN = "UNKNOWN"


class ContactType(StrEnum):
    MOBILE = "MOBILE"
    LANDLINE = "LANDLINE"
    EMAIL = "EMAIL"
    WECHAT_OPENID = "WECHAT_OPENID"


class ContactPurpose(StrEnum):
    SERVICE = "SERVICE"
    MARKETING = "MARKETING"
    STATEMENT = "STATEMENT"
    ALERT = "ALERT"


class AddressType(StrEnum):
    RESIDENTIAL = "RESIDENTIAL"
    MAILING = "MAILING"
    REGISTERED = "REGISTERED"
    OFFICE = "OFFICE"


class SegmentCode(StrEnum):
    # individuals
    MASS = "MASS"
    AFFLUENT = "AFFLUENT"
    WEALTH = "WEALTH"
    PRIVATE = "PRIVATE"
    # organisations
    MICRO = "MICRO"
    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"
    STRATEGIC = "STRATEGIC"


INDIVIDUAL_SEGMENTS = frozenset({SegmentCode.MASS, SegmentCode.AFFLUENT, SegmentCode.WEALTH, SegmentCode.PRIVATE})


class RiskRating(StrEnum):
    """反洗钱风险等级 (AML risk rating)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    PROHIBITED = "PROHIBITED"


class KycStatus(StrEnum):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    REVIEW_DUE = "REVIEW_DUE"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"


class ConsentPurpose(StrEnum):
    MARKETING_SMS = "MARKETING_SMS"
    MARKETING_CALL = "MARKETING_CALL"
    MARKETING_EMAIL = "MARKETING_EMAIL"
    SHARE_WITH_CRM_VENDOR = "SHARE_WITH_CRM_VENDOR"
    CROSS_BORDER = "CROSS_BORDER"
    PROFILING = "PROFILING"
    SENSITIVE_PI = "SENSITIVE_PI"


class ConsentStatus(StrEnum):
    GRANTED = "GRANTED"
    DENIED = "DENIED"
    WITHDRAWN = "WITHDRAWN"


class LegalBasis(StrEnum):
    """PIPL Art. 13 legal bases."""

    PIPL13_1_CONSENT = "PIPL13_1_CONSENT"
    PIPL13_2_CONTRACT = "PIPL13_2_CONTRACT"
    PIPL13_2_HR = "PIPL13_2_HR"
    PIPL13_3_LEGAL_OBLIGATION = "PIPL13_3_LEGAL_OBLIGATION"
    PIPL13_4_VITAL_INTEREST = "PIPL13_4_VITAL_INTEREST"
    PIPL13_5_PUBLIC_INTEREST = "PIPL13_5_PUBLIC_INTEREST"
    PIPL13_6_PUBLICLY_DISCLOSED = "PIPL13_6_PUBLICLY_DISCLOSED"
    PIPL13_7_OTHER_LAW = "PIPL13_7_OTHER_LAW"


# purposes that need consent (PIPL 13-16) and those that need *separate* consent (Art. 29 sensitive PI, Art. 39)
_CONSENT_ONLY = frozenset({ConsentPurpose.MARKETING_SMS, ConsentPurpose.MARKETING_CALL, ConsentPurpose.MARKETING_EMAIL,
                           ConsentPurpose.PROFILING, ConsentPurpose.CROSS_BORDER, ConsentPurpose.SENSITIVE_PI})
_SEPARATE_CONSENT = frozenset({ConsentPurpose.CROSS_BORDER, ConsentPurpose.SENSITIVE_PI})


class VerificationMethod(StrEnum):
    PSB_ONLINE = "PSB_ONLINE"  # 公安联网核查
    OCR = "OCR"
    MANUAL = "MANUAL"


class LegalForm(StrEnum):
    LIMITED_LIABILITY = "LIMITED_LIABILITY"        # 有限责任公司
    JOINT_STOCK = "JOINT_STOCK"                    # 股份有限公司
    PARTNERSHIP = "PARTNERSHIP"                    # 合伙企业
    SOLE_PROPRIETORSHIP = "SOLE_PROPRIETORSHIP"    # 个人独资企业
    INDIVIDUAL_BUSINESS = "INDIVIDUAL_BUSINESS"    # 个体工商户
    STATE_OWNED = "STATE_OWNED"                    # 全民所有制
    COLLECTIVE = "COLLECTIVE"                      # 集体所有制
    FOREIGN_INVESTED = "FOREIGN_INVESTED"          # 外商投资企业
    PUBLIC_INSTITUTION = "PUBLIC_INSTITUTION"      # 事业单位 / 机关
    SOCIAL_ORGANISATION = "SOCIAL_ORGANISATION"    # 社会团体 / 民办非企业 / 基金会
    OTHER = "OTHER"


class SizeClass(StrEnum):
    """企业规模 (NBS 2017 classification)."""

    MICRO = "MICRO"
    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"


_COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC
CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH
KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC
SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split())
"""ISO 3166-1 alpha-2 codes (249 officially assigned)."""

_CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE
CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG
QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW
ZWG ZWL""".split())
"""ISO 4217 active alphabetic codes."""

_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
"""ISO 4217 minor units that differ from 2 (precious metals and funds codes are treated as 2)."""

AUM_BANDS: tuple[tuple[Decimal, str], ...] = (
    (Decimal("50000"), "LT_50K"),
    (Decimal("500000"), "50K_500K"),
    (Decimal("6000000"), "500K_6M"),
    (Decimal("30000000"), "6M_30M"),
)
"""Upper bounds (exclusive, CNY) of the AUM bands; at or above the last bound the band is ``GE_30M``.
6 M CNY is the usual Chinese private-banking threshold."""

VOLATILE_FIELDS: tuple[str, ...] = (
    "version", "updated_at", "source_updated_at", "synced_at",
    "source_refs[].source_updated_at", "source_refs[].record_version", "source_refs[].etag",
    "source_refs[].last_seen_at",
)
"""Paths left out of :meth:`Party.canonical_json` (bookkeeping that changes without the party changing)."""


def aum_band(amount: Decimal) -> str:
    """Band code of a CNY AUM amount (:data:`AUM_BANDS`)."""
    for bound, code in AUM_BANDS:
        if amount < bound:
            return code
    return "GE_30M"


# --------------------------------------------------------------------------------------------------- helpers


def _custom(code: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A pydantic error whose type is our code; ``field`` extends the error location (see :func:`record_error`)."""
    return PydanticCustomError(code, "{detail}", {"detail": message, "field": field or ""})


def _to_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, converted to UTC (naive datetimes are rejected)."""


def _country(value: str) -> str:
    v = value.strip().upper()
    if v not in _COUNTRIES:
        raise _custom("invalid_country", f"{v[:3]!r} is not an ISO 3166-1 alpha-2 country code")
    return v


CountryCode = Annotated[str, AfterValidator(_country)]

_OBJECT_LISTS = ("identifiers", "contact_points", "addresses", "consents", "source_refs", "beneficial_owners")


class CanonicalModel(BaseModel):
    """Base of every canonical model: unknown keys rejected, input values never echoed in errors."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, str_strip_whitespace=True,
                              validate_default=False)


# --------------------------------------------------------------------------------------------------- small records


class Money(CanonicalModel):
    """An amount in an ISO 4217 currency; exact ``Decimal`` quantised to the currency's minor unit.

    ``"1234.5"`` becomes ``1234.50`` (CNY); ``"1.234"`` in CNY is refused (``invalid_amount``) rather than rounded.
    """

    amount: Decimal = classified(cls="C2", treat="E", mask="amount", crm="derived", allow_inf_nan=False)
    currency: str = classified("CNY", cls="C1")

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        v = v.strip().upper()
        if v not in _CURRENCIES:
            raise _custom("invalid_currency", f"{v[:5]!r} is not an ISO 4217 currency code")
        return v

    @model_validator(mode="after")
    def _quantise(self) -> Money:
        quantum = Decimal(1).scaleb(-_MINOR_UNITS.get(self.currency, 2))
        q = self.amount.quantize(quantum)
        if q != self.amount:
            raise _custom("invalid_amount", f"more decimal places than {self.currency} allows", "amount")
        self.amount = q
        return self


class Aum(Money):
    """Assets under management. The CRM receives ``band`` only (docs/canonical.md §3); derived from CNY if absent."""

    as_of: dt.date | None = classified(None, cls="C1", crm="internal")
    band: str | None = classified(None, cls="C1", max_length=20)

    @model_validator(mode="after")
    def _band(self) -> Aum:
        if self.amount < 0:
            raise _custom("invalid_amount", "AUM cannot be negative", "amount")
        if self.band is None and self.currency == "CNY":
            self.band = aum_band(self.amount)
        return self


class SourceRef(CanonicalModel):
    """A record of this party in another system (BIAN PRDD References)."""

    system: str = classified(cls="C1", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$",
                             description="FLEXCUBE, T24, FINACLE, FINERACT, ZOHO, FXIAOKE or an adapter name")
    system_id: str = classified(cls="C1", min_length=1, max_length=128)
    object: str | None = classified(None, cls="C1", max_length=64)
    record_version: str | None = classified(None, cls="C1", crm="internal", max_length=64)
    source_updated_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    etag: str | None = classified(None, cls="C1", crm="internal", max_length=256)
    last_seen_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")


class Verification(CanonicalModel):
    method: VerificationMethod = classified(cls="C1", crm="internal")
    at: UtcDateTime | None = classified(None, cls="C1", crm="internal")


class Identifier(CanonicalModel):
    """An identifier of the party; ``value`` is validated and normalised for its ``scheme`` on construction."""

    scheme: IdentifierScheme = classified(cls="C1")
    value: str = classified(cls="C2", treat="BEM", mask_by="scheme", index_by="scheme", crm="masked")
    flags: tuple[str, ...] = classified((), cls="C1", crm="internal")
    issuing_country: CountryCode | None = classified(None, cls="C2", treat="E", mask="generic", crm="never")
    issuer: str | None = classified(None, cls="C2", treat="E", mask="generic", crm="never", max_length=200)
    issued_on: dt.date | None = classified(None, cls="C2", treat="E", mask="date", crm="never")
    expires_on: dt.date | None = classified(None, cls="C2", treat="E", mask="date", crm="never")
    verified: Verification | None = None
    is_primary: bool = classified(False, cls="C1")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        # Validate and normalise the value once, here, so its flags (legacy15...) can be recorded. The error
        # names the `value` field (record_error appends it to the location).
        if not (isinstance(data, Mapping) and isinstance(data.get("value"), str)):
            return data
        scheme = str(data.get("scheme"))
        if scheme not in IdentifierScheme.__members__:
            return data  # the enum validation of `scheme` reports it
        try:
            norm = normalise_identifier(scheme, data["value"])
        except ValidationError as exc:
            raise _custom(exc.code or "invalid_identifier", exc.message, "value") from None
        old = data.get("flags") or ()
        flags = tuple(dict.fromkeys((*old, *norm.flags))) if isinstance(old, list | tuple) else old
        return {**data, "value": norm.value, "flags": flags}

    @model_validator(mode="after")
    def _dates(self) -> Identifier:
        if self.issued_on and self.expires_on and self.expires_on < self.issued_on:
            raise _custom("invalid_date_range", "expires_on is before issued_on", "expires_on")
        return self


class ContactPoint(CanonicalModel):
    """A phone, e-mail or WeChat contact. Phones are stored as E.164, e-mails lower-cased.

    ``kind`` is the number type found by phonenumbers. A ``MOBILE`` whose number is not a mobile (or a ``LANDLINE``
    that is one) is kept and flagged ``type_mismatch``; a number that is invalid is refused.
    """

    type: ContactType = classified(cls="C1")
    value: str = classified(cls="C2", treat="BEM", mask_by="type", index_by="type", crm="masked")
    kind: PhoneKind | None = classified(None, cls="C1", crm="internal")
    flags: tuple[str, ...] = classified((), cls="C1", crm="internal")
    verified: bool = classified(False, cls="C1")
    preferred: bool = classified(False, cls="C1")
    purposes: list[ContactPurpose] = classified(default_factory=list, cls="C1")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        # Validate and normalise once, here (phonenumbers parsing is the costly part); errors name `value`.
        if not (isinstance(data, Mapping) and isinstance(data.get("value"), str)):
            return data
        ctype, value = str(data.get("type")), data["value"]
        try:
            if ctype in (ContactType.MOBILE, ContactType.LANDLINE):
                phone = normalise_phone(value)
                old = data.get("flags") or ()
                flags = tuple(old) if isinstance(old, list | tuple) else old
                mismatch = (ctype == ContactType.MOBILE) != phone.is_mobile
                if mismatch and isinstance(flags, tuple) and "type_mismatch" not in flags:
                    flags = (*flags, "type_mismatch")
                return {**data, "value": phone.e164, "kind": phone.kind, "flags": flags}
            if ctype == ContactType.EMAIL:
                return {**data, "value": normalise_email(value)}
        except ValidationError as exc:
            raise _custom(exc.code or "invalid_contact", exc.message, "value") from None
        if ctype == ContactType.WECHAT_OPENID and not (
                6 <= len(value) <= 64 and value.isascii() and value.replace("_", "").replace("-", "").isalnum()):
            raise _custom("invalid_format", "a WeChat openid is 6-64 letters, digits, '-' or '_'", "value")
        return data


class Address(CanonicalModel):
    """A postal address. ``adcode`` (GB/T 2260, 6 digits) is the canonical key; ``raw`` keeps the source string."""

    type: AddressType = classified(cls="C1")
    country: CountryCode = classified("CN", cls="C1")
    province: str | None = classified(None, cls="C2", mask="address", crm="push", max_length=50)
    city: str | None = classified(None, cls="C2", mask="address", crm="push", max_length=50)
    district: str | None = classified(None, cls="C2", mask="address", crm="push", max_length=50)
    adcode: str | None = classified(None, cls="C2", mask="generic", crm="push", pattern=r"^\d{6}$")
    street: str | None = classified(None, cls="C2", treat="E", mask="address", crm="never", max_length=200)
    postcode: str | None = classified(None, cls="C2", mask="generic", crm="push", pattern=r"^[0-9A-Za-z -]{3,10}$")
    adr_lines: list[Annotated[str, Field(max_length=70)]] = classified(
        default_factory=list, cls="C2", treat="E", mask="address", crm="never", max_length=7)
    raw: str | None = classified(None, cls="C2", treat="E", mask="address", crm="never", max_length=500)
    validated: bool = classified(False, cls="C1", crm="internal")


class Segment(CanonicalModel):
    code: SegmentCode = classified(cls="C1")
    tier: str | None = classified(None, cls="C1", max_length=20)
    source: str | None = classified(None, cls="C1", max_length=40)


class RelationshipManager(CanonicalModel):
    employee_id: str = classified(cls="C1", min_length=1, max_length=40)
    name: str | None = classified(None, cls="C1", max_length=100)
    branch_code: str | None = classified(None, cls="C1", max_length=20)


class Branch(CanonicalModel):
    branch_code: str = classified(cls="C1", min_length=1, max_length=20)
    cnaps_code: str | None = classified(None, cls="C1", pattern=r"^\d{12}$")
    name: str | None = classified(None, cls="C1", max_length=100)


class Kyc(CanonicalModel):
    """AML / KYC data (C2, restricted, never pushed to a CRM)."""

    risk_rating: RiskRating = classified(cls="C2", mask="generic", crm="never")
    kyc_status: KycStatus = classified(KycStatus.VERIFIED, cls="C2", mask="generic", crm="never")
    last_review: dt.date | None = classified(None, cls="C2", mask="date", crm="never")
    next_review: dt.date | None = classified(None, cls="C2", mask="date", crm="never")
    pep: bool = classified(False, cls="C2", mask="generic", crm="never")
    sanctions_hit: bool = classified(False, cls="C2", mask="generic", crm="never")
    source: str | None = classified(None, cls="C2", mask="generic", crm="never", max_length=40)

    @model_validator(mode="after")
    def _review(self) -> Kyc:
        if self.last_review and self.next_review and self.next_review < self.last_review:
            raise _custom("invalid_date_range", "next_review is before last_review", "next_review")
        return self


class Consent(CanonicalModel):
    """A consent (or refusal) for one processing purpose, with its PIPL legal basis.

    Marketing, profiling, cross-border and sensitive-PI purposes need ``PIPL13_1_CONSENT`` (PIPL 13-16); a granted
    cross-border or sensitive-PI consent must be a separate consent (单独同意, Art. 29/39). ``WITHDRAWN`` needs
    ``withdrawn_at``.
    """

    purpose: ConsentPurpose = classified(cls="C1")
    status: ConsentStatus = classified(cls="C1")
    legal_basis: LegalBasis = classified(LegalBasis.PIPL13_1_CONSENT, cls="C1")
    separate_consent: bool = classified(False, cls="C1")
    notice_version: str | None = classified(None, cls="C1", max_length=40)
    channel: str | None = classified(None, cls="C1", max_length=40)
    captured_at: UtcDateTime = classified(cls="C1")
    withdrawn_at: UtcDateTime | None = classified(None, cls="C1")
    evidence_ref: str | None = classified(None, cls="C1", max_length=200)

    @model_validator(mode="after")
    def _rules(self) -> Consent:
        if self.purpose in _CONSENT_ONLY and self.legal_basis is not LegalBasis.PIPL13_1_CONSENT:
            raise _custom("invalid_legal_basis", f"{self.purpose.value} can only rest on consent (PIPL 13(1))",
                          "legal_basis")
        if (self.purpose in _SEPARATE_CONSENT and self.status is ConsentStatus.GRANTED
                and not self.separate_consent):
            raise _custom("separate_consent_required", f"{self.purpose.value} needs a separate consent (单独同意)",
                          "separate_consent")
        if self.status is ConsentStatus.WITHDRAWN and self.withdrawn_at is None:
            raise _custom("missing_withdrawn_at", "a withdrawn consent needs withdrawn_at", "withdrawn_at")
        if self.withdrawn_at is not None and self.withdrawn_at < self.captured_at:
            raise _custom("invalid_date_range", "withdrawn_at is before captured_at", "withdrawn_at")
        return self

    def in_force(self, at: dt.datetime) -> bool:
        """Whether this record grants the purpose at ``at`` (granted, captured by then, not yet withdrawn)."""
        if self.captured_at > at or self.status is ConsentStatus.DENIED:
            return False
        return self.withdrawn_at is None or self.withdrawn_at > at


class PartyRef(CanonicalModel):
    """A reference to another party (legal representative, beneficial owner)."""

    party_id: uuid.UUID | None = classified(None, cls="C1")
    name: str | None = classified(None, cls="C2", treat="BEM", mask="name", crm="masked", max_length=200)
    identifier: Identifier | None = None
    role: str | None = classified(None, cls="C1", max_length=40)
    ownership_pct: Decimal | None = classified(None, cls="C2", treat="E", mask="amount", crm="never",
                                               ge=0, le=100, allow_inf_nan=False)

    @field_validator("ownership_pct")
    @classmethod
    def _pct(cls, v: Decimal | None) -> Decimal | None:
        if v is None:
            return v
        q = v.quantize(Decimal("0.0001"))
        if q != v:
            raise _custom("invalid_amount", "ownership_pct has more than 4 decimal places")
        return q

    @model_validator(mode="after")
    def _something(self) -> PartyRef:
        if self.party_id is None and not self.name and self.identifier is None:
            raise _custom("empty_party_ref", "a party reference needs party_id, name or identifier")
        return self


class PersonName(CanonicalModel):
    """Names of an individual. ``pinyin`` is for search (GB/T 28039, surname first: ``ZHANG San``); the legal
    romanisation is ``en`` as on the passport. ``legal_zh`` is filled from family + given when absent."""

    legal_zh: str | None = classified(None, cls="C2", treat="BEM", mask="name", crm="masked", max_length=100)
    family_zh: str | None = classified(None, cls="C2", treat="E", mask="name", crm="never", max_length=20)
    given_zh: str | None = classified(None, cls="C2", treat="E", mask="generic", crm="never", max_length=80)
    pinyin: str | None = classified(None, cls="C2", treat="BEM", mask="name", crm="masked", max_length=200)
    en: str | None = classified(None, cls="C2", treat="BEM", mask="name", crm="masked", max_length=200)
    aliases: list[str] = classified(default_factory=list, cls="C2", treat="E", mask="name", crm="never")

    @model_validator(mode="after")
    def _complete(self) -> PersonName:
        if not self.legal_zh and self.family_zh and self.given_zh:
            self.legal_zh = self.family_zh + self.given_zh
        if not (self.legal_zh or self.en):
            raise _custom("missing_name", "an individual needs a legal name (legal_zh or en)", "legal_zh")
        if self.legal_zh and self.family_zh and self.given_zh:
            joined = (self.family_zh + self.given_zh).replace("·", "")
            if self.legal_zh.replace("·", "") != joined:
                raise _custom("name_inconsistent", "legal_zh is not family_zh + given_zh", "legal_zh")
        return self


class OrgName(CanonicalModel):
    """Names of an organisation (entity data: C1)."""

    legal_zh: str | None = classified(None, cls="C1", max_length=200)
    en: str | None = classified(None, cls="C1", max_length=200)
    short: str | None = classified(None, cls="C1", max_length=100)

    @model_validator(mode="after")
    def _present(self) -> OrgName:
        if not (self.legal_zh or self.en):
            raise _custom("missing_name", "an organisation needs a legal name (legal_zh or en)", "legal_zh")
        return self


# --------------------------------------------------------------------------------------------------- parties


class Party(CanonicalModel):
    """The canonical party (BIAN PRDD entry). Use :class:`Individual` or :class:`Organisation`.

    ``party_id`` is minted by crmbridge at identity resolution; it is ``None`` on a record freshly mapped from a
    source, before the cross-reference has assigned one.
    """

    party_id: uuid.UUID | None = classified(None, cls="C1")
    party_type: PartyType = classified(cls="C1")
    lifecycle_stage: LifecycleStage = classified(LifecycleStage.ACTIVE, cls="C1")
    merged_into: uuid.UUID | None = classified(None, cls="C1")
    source_refs: list[SourceRef] = Field(default_factory=list)
    identifiers: list[Identifier] = Field(default_factory=list)
    contact_points: list[ContactPoint] = Field(default_factory=list)
    addresses: list[Address] = Field(default_factory=list)
    segment: Segment | None = None
    aum: Aum | None = None
    relationship_manager: RelationshipManager | None = None
    home_branch: Branch | None = None
    kyc: Kyc | None = None
    consents: list[Consent] = Field(default_factory=list)
    created_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    updated_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    source_updated_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    synced_at: dict[str, UtcDateTime] = classified(default_factory=dict, cls="C1", crm="internal")
    deleted_at: UtcDateTime | None = classified(None, cls="C1")
    version: int = classified(0, cls="C1", crm="internal", ge=0)
    # declared extension fields (crmbridge.canonical.extensions): each value is classified by its declaration; the
    # container itself is treated as personal so nothing undeclared is ever shown or pushed in clear
    extensions: dict[str, Any] = classified(default_factory=dict, cls="C2", treat="E", mask="generic", crm="never",
                                            description="Declared extension fields (canonical.extensions).")

    @model_serializer(mode="wrap")
    def _without_empty_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        # a party without extension values serialises as before extensions existed: content hashes, snapshots and
        # their field-by-field comparisons of existing records do not change
        data = handler(self)
        if isinstance(data, dict) and not data.get("extensions"):
            data.pop("extensions", None)
        return data

    @field_validator("extensions", mode="before")
    @classmethod
    def _declared_extensions(cls, v: Any) -> dict[str, Any]:
        from crmbridge.canonical.extensions import validate_extensions

        try:
            return validate_extensions(v)
        except ValueError as exc:
            raise _custom("extension", str(exc), "extensions") from None

    _allowed_schemes: ClassVar[frozenset[IdentifierScheme]] = frozenset(IdentifierScheme)

    @model_validator(mode="after")
    def _party_rules(self) -> Party:
        seen: set[tuple[str, str]] = set()
        primary: set[str] = set()
        for i, ident in enumerate(self.identifiers):
            if ident.scheme not in self._allowed_schemes:
                raise _custom("scheme_not_allowed",
                              f"{ident.scheme.value} is not an identifier of a {self.party_type.value.lower()}",
                              f"identifiers[{i}].scheme")
            key = (ident.scheme.value, ident.value)
            if key in seen:
                raise _custom("duplicate_identifier", f"{ident.scheme.value} identifier given twice",
                              f"identifiers[{i}]")
            seen.add(key)
            if ident.is_primary:
                if ident.scheme.value in primary:
                    raise _custom("duplicate_primary", f"two primary {ident.scheme.value} identifiers",
                                  f"identifiers[{i}].is_primary")
                primary.add(ident.scheme.value)
        if self.segment is not None and (
                (self.segment.code in INDIVIDUAL_SEGMENTS) != (self.party_type is PartyType.INDIVIDUAL)):
            raise _custom("segment_mismatch",
                          f"segment {self.segment.code.value} is not a {self.party_type.value.lower()} segment",
                          "segment.code")
        if (self.lifecycle_stage is LifecycleStage.MERGED) != (self.merged_into is not None):
            raise _custom("merged_into_mismatch", "merged_into is required with, and only with, stage MERGED",
                          "merged_into")
        if self.merged_into is not None and self.merged_into == self.party_id:
            raise _custom("merged_into_mismatch", "a party cannot be merged into itself", "merged_into")
        return self

    # ---- helpers

    def primary_identifier(self, scheme: str | IdentifierScheme) -> Identifier | None:
        """The primary identifier of ``scheme``, else the first one of that scheme, else ``None``."""
        matches = [i for i in self.identifiers if i.scheme == scheme]
        return next((i for i in matches if i.is_primary), matches[0] if matches else None)

    def contact(self, kind: str | ContactType) -> ContactPoint | None:
        """The preferred contact point of ``kind`` (``MOBILE``, ``EMAIL``...), else the first, else ``None``."""
        matches = [c for c in self.contact_points if c.type == kind]
        return next((c for c in matches if c.preferred), matches[0] if matches else None)

    def has_consent(self, purpose: str | ConsentPurpose, at: dt.datetime | None = None) -> bool:
        """Whether ``purpose`` is consented.

        Without ``at``: as the consent records say now. The latest record by its own capture order decides (on
        equal capture times a refusal or withdrawal wins over a grant): it is in force if it is GRANTED and
        records no withdrawal. Its times are never compared with this host's clock: a source whose clock runs
        ahead stamps a fresh consent "in the future", and that consent is granted all the same; a withdrawal is
        honoured whatever its stamp says.

        With ``at`` (aware): the history, what was in force at that instant: the latest record captured by then
        decides, and a withdrawal counts from its ``withdrawn_at``.
        """
        records = [c for c in self.consents if c.purpose == purpose]
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("has_consent needs an aware datetime")
            records = [c for c in records if c.captured_at <= at]
            return bool(records) and max(records, key=lambda c: c.captured_at).in_force(at)
        if not records:
            return False
        latest = max(records, key=lambda c: (c.captured_at, c.status is not ConsentStatus.GRANTED))
        return latest.status is ConsentStatus.GRANTED and latest.withdrawn_at is None

    def canonical_dict(self, *, include_volatile: bool = False) -> dict[str, Any]:
        """The JSON-able dict behind :meth:`canonical_json` (see the module docstring for the rules)."""
        return canonical_dict_of(self, include_volatile=include_volatile)

    def canonical_json(self, *, include_volatile: bool = False) -> bytes:
        """Stable UTF-8 JSON of the party: sorted keys, compact, object lists sorted, volatile fields excluded."""
        return _dumps(self.canonical_dict(include_volatile=include_volatile))

    def content_hash(self, key: bytes | None = None) -> str:
        """Hex HMAC-SHA256 (with ``key``) or SHA-256 (without) of :meth:`canonical_json`."""
        return hash_canonical(self.canonical_dict(), key)


def canonical_dict_of(model: BaseModel, *, include_volatile: bool = False) -> dict[str, Any]:
    """The canonical JSON-able dict of a party or of an object beside it (one set of rules for both: volatile
    fields dropped unless asked for, object lists sorted; see the module docstring)."""
    data: dict[str, Any] = model.model_dump(mode="json")
    if not include_volatile:
        for path in VOLATILE_FIELDS:
            head, _, leaf = path.partition("[].")
            if leaf:
                for item in data.get(head) or ():
                    item.pop(leaf, None)
            else:
                data.pop(head, None)
    _sort_object_lists(data)
    return data


def hash_canonical(data: dict[str, Any], key: bytes | None = None) -> str:
    """:meth:`Party.content_hash` of the party whose :meth:`Party.canonical_dict` is ``data`` (for a caller that
    holds that dict already: building it costs more than hashing it)."""
    body = _dumps(data)
    if key is not None:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sort_object_lists(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if type(value) is str or value is None:   # a leaf (most of a party): nothing to sort below it
                continue
            _sort_object_lists(value)
            if key in _OBJECT_LISTS and isinstance(value, list):
                value.sort(key=_dumps)
    elif isinstance(node, list):
        for item in node:
            if type(item) is not str:
                _sort_object_lists(item)


class Individual(Party):
    """A natural person. Gender and birth date are filled from the primary RIC when absent and must agree with it."""

    party_type: Literal[PartyType.INDIVIDUAL] = classified(PartyType.INDIVIDUAL, cls="C1")
    name: PersonName
    gender: Gender | None = classified(None, cls="C2", treat="E", mask="generic", crm="never")
    date_of_birth: dt.date | None = classified(None, cls="C2", treat="E", mask="date", crm="never")
    nationality: CountryCode | None = classified(None, cls="C2", treat="E", mask="generic", crm="never")
    occupation: str | None = classified(None, cls="C2", treat="E", mask="generic", crm="never", max_length=100)
    employer: str | None = classified(None, cls="C2", treat="E", mask="generic", crm="never", max_length=200)

    _allowed_schemes: ClassVar[frozenset[IdentifierScheme]] = PERSON_SCHEMES

    @model_validator(mode="before")
    @classmethod
    def _name_present(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            name = data.get("name")
            if name is None or (isinstance(name, Mapping) and not any(
                    name.get(k) for k in ("legal_zh", "en", "family_zh", "given_zh"))):
                raise _custom("missing_name", "an individual needs a name (legal_zh or en)", "name")
        return data

    @model_validator(mode="after")
    def _ric_consistency(self) -> Individual:
        if self.lifecycle_stage is LifecycleStage.DISSOLVED:
            raise _custom("invalid_stage", "DISSOLVED applies to organisations", "lifecycle_stage")
        ric = next((i for s in (IdentifierScheme.CN_RIC, IdentifierScheme.HMT_RESIDENCE_PERMIT,
                                IdentifierScheme.CN_TEMP_RIC)
                    if (i := self.primary_identifier(s)) is not None), None)
        if ric is None:
            return self
        born, gender = ric_birth_date(ric.value), Gender(ric_gender(ric.value))
        if self.date_of_birth is None:
            self.date_of_birth = born
        elif self.date_of_birth != born:
            raise _custom("birth_date_mismatch", f"date_of_birth differs from the birth date in the {ric.scheme}",
                          "date_of_birth")
        if self.gender in (None, Gender.UNKNOWN):
            self.gender = gender
        elif self.gender is not gender:
            raise _custom("gender_mismatch", f"gender differs from the sequence digit of the {ric.scheme}",
                          "gender")
        return self


class Organisation(Party):
    """A legal entity (or an individual business). ``uscc`` is its primary CN_USCC identifier."""

    party_type: Literal[PartyType.ORGANISATION] = classified(PartyType.ORGANISATION, cls="C1")
    name: OrgName
    legal_form: LegalForm | None = classified(None, cls="C1")
    registered_at: dt.date | None = classified(None, cls="C1")
    registered_capital: Money | None = classified(None, cls="C1", description="public registration data: C1")
    industry: str | None = classified(None, cls="C1", pattern=r"^[A-T](\d{2}(\d{1,2})?)?$",
                                      description="GB/T 4754 code: section letter + 2-4 digits (C1310)")
    size_class: SizeClass | None = classified(None, cls="C1")
    legal_representative: PartyRef | None = None
    beneficial_owners: list[PartyRef] = Field(default_factory=list)

    _allowed_schemes: ClassVar[frozenset[IdentifierScheme]] = ORGANISATION_SCHEMES

    @model_validator(mode="before")
    @classmethod
    def _name_present(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("name"):
            raise _custom("missing_name", "an organisation needs a name (legal_zh or en)", "name")
        return data

    @model_validator(mode="after")
    def _stage(self) -> Organisation:
        if self.lifecycle_stage is LifecycleStage.DECEASED:
            raise _custom("invalid_stage", "DECEASED applies to individuals", "lifecycle_stage")
        return self

    @property
    def uscc(self) -> Identifier | None:
        return self.primary_identifier(IdentifierScheme.CN_USCC)


AnyParty = Annotated[Individual | Organisation, Field(discriminator="party_type")]

#: the party classes, in the order a path is looked up in when the party type is not known
PARTY_CLASSES: tuple[type[Party], ...] = (Individual, Organisation)
"""An individual or an organisation, chosen by ``party_type``."""


@cache
def _adapter() -> pydantic.TypeAdapter[Individual | Organisation]:
    return pydantic.TypeAdapter(AnyParty)


def _loc_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for step in loc:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(("." if parts else "") + step)
    return "".join(parts)


def record_error(exc: pydantic.ValidationError, *, where: str | None = None) -> ValidationError:
    """Translate a pydantic error on a canonical model into crmbridge's :class:`ValidationError`.

    ``field`` is the canonical path of the first error (``identifiers[0].value``), ``code`` its type
    (``invalid_checksum``, ``missing_name``, pydantic's ``missing``...). The message lists up to five errors; it is
    built from locations and messages only, never from input values.
    """
    items: list[tuple[str, str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        if loc and loc[0] in PartyType.__members__:
            loc = loc[1:]
        extra = (err.get("ctx") or {}).get("field")
        path = _loc_path(loc)
        if extra:
            path = f"{path}.{extra}" if path else str(extra)
        items.append((path or "(record)", err["type"], err["msg"]))
    first = items[0] if items else ("(record)", "invalid", "invalid")
    shown = "; ".join(f"{p}: {m} [{t}]" for p, t, m in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return ValidationError(f"invalid canonical {_title(exc.title)}: {shown}{more}", where=where, field=first[0],
                           code=first[1])


def _title(title: str) -> str:
    return "party" if "tagged-union" in title or not title.isidentifier() else title


def parse_party(data: Mapping[str, Any] | Party, *, where: str | None = None) -> Individual | Organisation:
    """Validate a dict (or re-validate a party) as an :class:`Individual` or :class:`Organisation`.

    Raises:
        ValidationError: with ``field``, ``code`` and a masked message (see :func:`record_error`).
    """
    if isinstance(data, Party):
        data = data.model_dump()
    try:
        return _adapter().validate_python(data)
    except pydantic.ValidationError as exc:
        raise record_error(exc, where=where) from None
