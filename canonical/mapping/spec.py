"""The mapping file's header (system, object, external id, code tables…) and its published JSON Schema."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crmbridge.canonical.mapping.steps import PartyTypeName, Step, TransformSpec
from crmbridge.canonical.transforms import (
    CodeTable,
    transform_names,
)

#: the canonical objects a mapping file can declare (``canonical:``), see crmbridge.canonical.objects
CanonicalObjectName = Literal["Party", "Holding", "Interaction", "CampaignResponse"]


class PartyTypeRule(BaseModel):
    """Decide the party type from a vendor field.

    Example (FLEXCUBE ``CTYPE``)::

        party_type:
          vendor: CTYPE
          map: {I: INDIVIDUAL, C: ORGANISATION, B: ORGANISATION}
    """

    model_config = ConfigDict(extra="forbid")
    vendor: str = Field(description="Vendor path of the type code.")
    map: dict[str, PartyTypeName] = Field(description="Vendor code → INDIVIDUAL | ORGANISATION.")
    default: PartyTypeName | None = Field(default=None, description="Type when the code is missing.")


class VendorValue(BaseModel):
    """A vendor path with transforms, e.g. ``{vendor: Modified_Time, transform: [datetime]}``."""

    model_config = ConfigDict(extra="forbid")
    vendor: str
    transform: list[TransformSpec] = Field(default_factory=list)


class DeletedWhen(BaseModel):
    """The record is a deletion (tombstone) when ``vendor`` holds one of ``values``.

    Example (Fxiaoke invalidated rows)::

        deleted_when: {vendor: life_status, values: [invalid]}
    """

    model_config = ConfigDict(extra="forbid")
    vendor: str
    values: list[Any] = Field(min_length=1)


class MappingSpec(BaseModel):
    """A mapping file: one (system, object) ↔ a canonical object (the party unless ``canonical:`` says otherwise).

    Example::

        canonical: Party          # the default; Holding, Interaction, CampaignResponse
        system: zoho
        object: Contacts
        version: 1
        description: Zoho CRM Contacts ↔ canonical Individual (minimised CRM projection)
        party_type: INDIVIDUAL
        external_id: id
        modified_at: {vendor: Modified_Time, transform: [datetime]}
        key_field: Party_ID
        code_tables: {…}
        steps: […]
    """

    model_config = ConfigDict(extra="forbid", title="crmbridge mapping")

    canonical: CanonicalObjectName = Field(default="Party", description=(
        "The canonical object the file maps: Party (the default), Holding, Interaction or CampaignResponse. "
        "Canonical paths, classes and masks are checked against that object's fields (docs/canonical.md)."))
    system: str = Field(description="Adapter name (zoho, fxiaoke, corebank_soap, corebank_rest, memory).")
    object: str = Field(description="Vendor object (Contacts, AccountObj, Customer…).")
    version: int | str = Field(description="Version of this mapping; bump it on every change.")
    description: str = Field(description="What the mapping is for, including custom vendor fields it relies on.")
    party_type: PartyTypeName | PartyTypeRule | None = Field(default=None, description=(
        "INDIVIDUAL, ORGANISATION, or a rule: required for a Party mapping, not allowed for another object."))
    source_system: str | None = Field(default=None, description=(
        "SourceRef.system recorded on the way in (ZOHO, FXIAOKE, FLEXCUBE, T24, FINACLE, FINERACT); defaults "
        "from the adapter name."))
    external_id: str = Field(description="Vendor path of the record id (Zoho id, Fxiaoke _id, FLEXCUBE CUSTNO).")
    modified_at: VendorValue | None = Field(default=None, description="Vendor last-modified time (cursor).")
    key_field: str | None = Field(default=None, description=(
        "Vendor field holding crmbridge's external key (party_id): the upsert key on the way out."))
    deleted_when: DeletedWhen | None = Field(default=None, description="When a vendor record means 'deleted'.")
    code_tables: dict[str, CodeTable] = Field(default_factory=dict, description="Named two-way value maps.")
    steps: list[Step] = Field(description="The steps, run in order (in) and in order (out).")


def mapping_json_schema() -> dict[str, Any]:
    """The JSON Schema of the mapping language (``crmbridge mapping schema``; ``mappings/mapping.schema.json``)."""
    schema = MappingSpec.model_json_schema(by_alias=True)
    # editors complete and check transform names: the registry is closed (no embedded code)
    names = transform_names()
    call = schema.get("$defs", {}).get("TransformCall", {})
    if "properties" in call:
        call["properties"]["name"]["enum"] = names
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")(:.*)?$"

    def _patch(node: Any) -> None:
        if isinstance(node, dict):
            # pydantic adds OpenAPI's "discriminator" beside oneOf: not JSON Schema (each branch's const decides)
            if isinstance(node.get("discriminator"), dict) and "propertyName" in node["discriminator"]:
                del node["discriminator"]
            alts = node.get("anyOf")
            if isinstance(alts, list) and {"$ref": "#/$defs/TransformCall"} in alts:
                for alt in alts:
                    if alt.get("type") == "string":
                        alt["pattern"] = pattern
            for v in node.values():
                _patch(v)
        elif isinstance(node, list):
            for v in node:
                _patch(v)

    _patch(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://crmbridge.invalid/mapping.schema.json"
    schema["description"] = ("A crmbridge mapping: one (system, object) ↔ a canonical object (Party by default). "
                             "See mappings/README.md.")
    return schema
