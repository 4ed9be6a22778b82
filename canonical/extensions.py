"""Canonical extensions: typed party fields declared in configuration, without a code change.

A bank's core system holds facts the canonical model lacks (the date the customer relationship began, a loyalty
tier…). An *extension block* declares them::

    canonical:
      extensions:
        relationship_start_date:
          type: date
          class: C2
          treatment: [encrypt, mask]
          mask: date
          description: Date the customer relationship began (core CIF opening date)
        loyalty_tier:
          type: enum
          values: [BRONZE, SILVER, GOLD]
          class: C1
          description: Loyalty programme tier

Each declared field is stored under the party's ``extensions`` mapping (``party.extensions["loyalty_tier"]``),
validated against its declaration, classified (JR/T 0171 C1/C2; C3 authentication data is refused like everywhere
else) so masking, blind indexes and the CRM projection treat it like a built-in field, and mapped by the canonical
path ``extensions.<name>``.

The declarations in force are process-wide (:func:`declare_extensions`; loading a configuration declares its
block). A party carrying an undeclared extension is invalid, and a mapping naming one is a located mapping error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError

from crmbridge.core.masking import MASK_KINDS

__all__ = [
    "EXTENSION_NAME",
    "ExtensionField",
    "declare_extensions",
    "declared_extensions",
    "extension_policy_meta",
    "extensions_declared",
    "validate_extensions",
]

#: an extension's name: what follows ``extensions.`` in a canonical path
EXTENSION_NAME = r"^[a-z][a-z0-9_]{0,62}$"

ExtensionType = Literal["string", "date", "datetime", "decimal", "integer", "boolean", "enum"]
TreatmentName = Literal["encrypt", "blind_index", "mask", "plain"]

_LETTER = {"encrypt": "E", "blind_index": "B", "mask": "M", "plain": "P"}


class ExtensionField(BaseModel):
    """One declared extension field of the canonical party."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: ExtensionType = Field(description="string, date, datetime, decimal, integer, boolean or enum.")
    values: list[str] | None = Field(default=None, min_length=1, description="The values of an enum (only).")
    data_class: Literal["C1", "C2", "C3"] = Field(alias="class", description=(
        "JR/T 0171 class: C1 (not personal) or C2 (personal). C3 (authentication data) is refused."))
    treatment: TreatmentName | list[TreatmentName] = Field(default="plain", description=(
        "At rest: encrypt, blind_index, mask (kept masked in displays), or plain; several as a list."))
    mask: str | None = Field(default=None, description=(
        "Display mask kind (name, date, amount, generic…): required for C2 and for treatment mask."))
    crm: Literal["push", "masked", "never"] | None = Field(default=None, description=(
        "CRM projection: push (as is), masked (only the masked form, or with a documented purpose), never. "
        "Default: push for C1, masked for C2."))
    max_length: int | None = Field(default=None, ge=1, le=4000, description="Longest string value (string only).")
    description: str = Field(min_length=1, description="What the field holds and where it comes from.")

    @model_validator(mode="after")
    def _coherent(self) -> ExtensionField:
        if self.data_class == "C3":
            raise ValueError("class C3 (authentication data: passwords, PINs, CVV, biometric templates) is never "
                             "carried by crmbridge (JR/T 0171); it cannot be an extension")
        if self.type == "enum" and not self.values:
            raise ValueError("an enum needs values: [...]")
        if self.type != "enum" and self.values is not None:
            raise ValueError(f"values: applies to type enum only (this is {self.type})")
        if self.max_length is not None and self.type != "string":
            raise ValueError("max_length applies to type string only")
        treats = self.treatments
        if "plain" in treats and len(treats) > 1:
            raise ValueError("treatment plain excludes encrypt, blind_index and mask")
        if self.mask is not None and self.mask not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.mask!r}; known: {', '.join(sorted(MASK_KINDS))}")
        if self.mask is None and (self.data_class == "C2" or "mask" in treats):
            raise ValueError("a C2 field (or treatment mask) needs a display mask kind: mask: name|date|amount|"
                             "generic|…")
        if self.data_class == "C1" and self.crm == "masked":
            raise ValueError("crm: masked is for personal (C2) data; a C1 field is pushed (push) or not (never)")
        return self

    @property
    def treatments(self) -> list[str]:
        return [self.treatment] if isinstance(self.treatment, str) else list(self.treatment)

    @property
    def projection(self) -> str:
        return self.crm or ("masked" if self.data_class == "C2" else "push")


def extension_policy_meta(ext: ExtensionField) -> dict[str, str]:
    """The classification metadata of an extension, in the form :func:`~crmbridge.canonical.classification.classified`
    records for built-in fields."""
    meta = {"class": ext.data_class, "treat": "".join(sorted(_LETTER[t] for t in ext.treatments)),
            "crm": ext.projection}
    if ext.mask is not None:
        meta["mask"] = ext.mask
    return meta


_ACTIVE: dict[str, ExtensionField] = {}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _to_utc(v: dt.datetime) -> dt.datetime:
    return v.astimezone(dt.UTC)


def _adapter(ext: ExtensionField) -> TypeAdapter[Any]:
    tp: Any
    if ext.type == "string":
        tp = Annotated[str, Field(max_length=ext.max_length)] if ext.max_length else str
    elif ext.type == "date":
        tp = dt.date
    elif ext.type == "datetime":
        tp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
    elif ext.type == "decimal":
        tp = Annotated[Decimal, Field(allow_inf_nan=False)]
    elif ext.type == "integer":
        tp = int
    elif ext.type == "boolean":
        tp = bool
    else:
        tp = Literal[tuple(ext.values or ())]  # type: ignore[valid-type]
    return TypeAdapter(tp, config=ConfigDict(hide_input_in_errors=True, str_strip_whitespace=True))


def declare_extensions(fields: Mapping[str, ExtensionField]) -> None:
    """Make ``fields`` the extensions in force (replacing the previous declarations)."""
    for name in fields:
        if not re.match(EXTENSION_NAME, name):
            raise ValueError(f"invalid extension name {name!r}: lower-case letters, digits and _")
    _ACTIVE.clear()
    _ACTIVE.update(fields)
    _ADAPTERS.clear()
    _clear_caches()


def declared_extensions() -> dict[str, ExtensionField]:
    """The extensions in force, by name."""
    return dict(_ACTIVE)


@contextmanager
def extensions_declared(fields: Mapping[str, ExtensionField]) -> Iterator[None]:
    """Declare ``fields`` for the duration of a ``with`` block (tests, one-off tools)."""
    before = dict(_ACTIVE)
    declare_extensions(fields)
    try:
        yield
    finally:
        declare_extensions(before)


def validate_extensions(value: Any) -> dict[str, Any]:
    """Check a party's ``extensions`` mapping against the declarations; values converted to their declared type.

    Raises:
        ValueError: an undeclared name or a value of the wrong type (the message never quotes the value).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("extensions must be a mapping of declared extension names to values")
    out: dict[str, Any] = {}
    for name, v in value.items():
        ext = _ACTIVE.get(str(name))
        if ext is None:
            known = ", ".join(sorted(_ACTIVE)) or "none declared"
            raise ValueError(f"extensions.{name} is not a declared canonical extension ({known})")
        if v is None:
            continue
        adapter = _ADAPTERS.get(name)
        if adapter is None:
            adapter = _ADAPTERS[name] = _adapter(ext)
        try:
            out[str(name)] = adapter.validate_python(v)
        except PydanticValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            raise ValueError(f"extensions.{name}: {err['msg']} (declared {ext.type})") from None
    return out


def _clear_caches() -> None:
    """Forget cached answers about canonical paths (their classification may have changed)."""
    import sys

    for modname, attr in (("crmbridge.canonical.mapping.policy", "_mask_kind_cached"),
                          ("crmbridge.canonical.masking", "canonical_kind")):
        mod = sys.modules.get(modname)
        fn = getattr(mod, attr, None) if mod is not None else None
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()
