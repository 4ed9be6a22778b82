"""The declarative mapping language: models, loader with line numbers, validation and the engine.

One YAML file per (system, object) says how a vendor record becomes a canonical party (direction ``in``) and how a
canonical party becomes a vendor payload (direction ``out``). The language is a small set of ``type:``-tagged steps,
each a pydantic model with one ``apply_in`` and one ``apply_out``; values are converted by named transforms
(:mod:`crmbridge.canonical.transforms`). There is no ``eval`` and no embedded code. The reference for the
integration team is ``mappings/README.md``; the JSON Schema (:func:`mapping_json_schema`) is published as
``mappings/mapping.schema.json`` so editors check ``mappings/*.yaml`` as you type.

Public API::

    m = load_mapping("mappings/zoho_contacts.yaml")     # MappingLoadError: every problem with file:line: key.path
    canon = m.map_in(raw, party_id=pid)                  # canonical dict (ValidationError on a bad record)
    party = m.to_party(raw, party_id=pid)                # Individual | Organisation
    payload = m.map_out(party)                           # vendor payload (minimised per docs/canonical.md §3/§4)
    m.external_id(raw); m.modified_at(raw); m.is_deleted(raw)
    m.vendor_fields("in"); m.owned_canonical_paths("in"); m.version_hash
    problems = check_mapping_file(path)                  # everything ``crmbridge mapping validate`` reports
    problems = validate_against(m, fields)               # against the vendor's field metadata

Paths:
    *canonical* ``name.legal_zh``, ``identifiers[scheme=CN_RIC].value``, ``contact_points[type=MOBILE].value``,
    ``addresses[type=RESIDENTIAL].city`` (a selector finds the list element on the way out and creates it on the way
    in); *vendor* ``Last_Name``, ``data.addresses[0].city``, ``owner[0]``,
    ``PhoneEmailInfo[PhoneEmailType=CELLPH].PhoneNum``, ``["SHORT.NAME"]`` (quoted names may contain dots).
"""

from __future__ import annotations

import enum
import hashlib
import re
import types
import typing
import uuid
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretBytes, SecretStr
from pydantic import ValidationError as PydanticValidationError

from crmbridge.canonical.masking import MASK_KINDS, mask
from crmbridge.canonical.transforms import (
    AumBand,
    CodeTable,
    CodeTransform,
    DropMasked,
    Mask,
    Transform,
    TransformContext,
    TransformError,
    build_transform,
    run_chain,
    transform_names,
)
from crmbridge.core.errors import MappingError, ValidationError
from crmbridge.core.paths import Path, PathIndex, PathKey, PathSelect, parse_path, path_get, path_set, plain_value
from crmbridge.core.paths import try_path as _try_path
from crmbridge.core.safeyaml import BoundedLoader, YamlLimitError, read_bounded, size_problem

if TYPE_CHECKING:
    from crmbridge.adapters.base import FieldInfo

__all__ = [
    "CRM_SYSTEMS",
    "CodeStep",
    "ConsentStep",
    "ConstantStep",
    "ContactStep",
    "DeletedWhen",
    "FieldStep",
    "IdentifierStep",
    "MANDATORY_VENDOR_FIELDS",
    "Mapping",
    "MappingLoadError",
    "MappingProblem",
    "MappingSpec",
    "PartyTypeRule",
    "Path",
    "STEP_TYPES",
    "TraceRow",
    "TransformCall",
    "UniqueMaskedStep",
    "UniquePart",
    "VendorValue",
    "check_mapping_file",
    "load_mapping",
    "mapping_json_schema",
    "mask_kind_for",
    "parse_path",
    "path_get",
    "path_set",
    "resolve_canonical",
    "validate_against",
]

#: the problem text of a required value that is missing (``map_in_partial`` tolerates it)
REQUIRED_MISSING = "required value missing"

Direction = Literal["in", "out", "both"]
PartyTypeName = Literal["INDIVIDUAL", "ORGANISATION"]

#: Vendor fields a create/upsert must carry, per (system, object). ``validate`` checks the out direction maps them.
MANDATORY_VENDOR_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("zoho", "Contacts"): ("Last_Name",),
    ("zoho", "Leads"): ("Last_Name",),
    ("zoho", "Accounts"): ("Account_Name",),
    ("zoho", "Deals"): ("Deal_Name", "Stage"),
    ("fxiaoke", "AccountObj"): ("name",),
    ("fxiaoke", "ContactObj"): ("name",),
    ("fxiaoke", "LeadsObj"): ("name",),
}

#: Systems that receive the minimised CRM projection (docs/canonical.md §3/§4): C2 values go out masked unless the
#: step says why not (``when_consent`` or ``unmasked_reason``).
CRM_SYSTEMS = frozenset({"zoho", "fxiaoke"})

#: SourceRef.system for adapters whose name says which system they are.
_SOURCE_SYSTEM_BY_ADAPTER = {"zoho": "ZOHO", "fxiaoke": "FXIAOKE"}


# ==============================================================================================================
# problems and errors


@dataclass(frozen=True)
class MappingProblem:
    """One problem found in a mapping file, located by line and key path."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        sev = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line if self.line is not None else '?'}: {self.path or '(top)'}: {sev}{self.message}"


class MappingLoadError(MappingError):
    """A mapping file has problems. ``problems`` holds every one of them; the message shows the first."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.message}{more}",
                         where=f"{first.file}:{first.line if first.line is not None else '?'}: {first.path or '(top)'}")


# ==============================================================================================================
# the canonical model, by introspection


def _model_classes() -> dict[str, type[BaseModel]] | None:
    try:
        from crmbridge.canonical import model
    except ImportError:
        return None
    ind = getattr(model, "Individual", None)
    org = getattr(model, "Organisation", None)
    if ind is None or org is None:
        return None
    return {"INDIVIDUAL": ind, "ORGANISATION": org}


def _unwrap(tp: Any) -> list[Any]:
    """Alternatives of a type with Optional/Annotated removed."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(tp):
            if a is not type(None):
                out.extend(_unwrap(a))
        return out
    return [tp]


def _allowed_values(tp: Any) -> frozenset[str] | None:
    alts = _unwrap(tp)
    vals: set[str] = set()
    for a in alts:
        if typing.get_origin(a) is Literal:
            vals.update(str(plain_value(x)) for x in typing.get_args(a))
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            vals.update(str(m.value) for m in a)
        else:
            return None
    return frozenset(vals) if vals else None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@dataclass(frozen=True)
class _Leaf:
    annotation: Any
    allowed: frozenset[str] | None


def resolve_canonical(model_cls: type[BaseModel], path: Path) -> _Leaf:
    """Check ``path`` against a pydantic model class; return the leaf type and its allowed values (enums).

    Raises:
        ValueError: the path does not exist, a selector names an unknown field or an impossible value.
    """
    current: list[Any] = [model_cls]
    where = model_cls.__name__
    for op in path.ops:
        nxt: list[Any] = []
        if isinstance(op, PathKey):
            names: set[str] = set()
            for tp in current:
                if _is_model(tp):
                    names.update(tp.model_fields)
                    if op.name in tp.model_fields:
                        nxt.extend(_unwrap(tp.model_fields[op.name].annotation))
                elif typing.get_origin(tp) is dict or tp is dict:
                    args = typing.get_args(tp)
                    nxt.extend(_unwrap(args[1]) if len(args) == 2 else [Any])
                elif tp is Any:
                    nxt.append(Any)
            if not nxt:
                hint = f" (fields: {', '.join(sorted(names))})" if names else ""
                raise ValueError(f"{where} has no field {op.name!r}{hint}")
            where = f"{where}.{op.name}"
        else:
            items: list[Any] = []
            for tp in current:
                if typing.get_origin(tp) in (list, tuple, set, frozenset):
                    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
                    items.extend(_unwrap(args[0]) if args else [Any])
                elif tp is Any:
                    items.append(Any)
            if not items:
                raise ValueError(f"{where} is not a list; [{'…'}] selectors apply to lists only")
            if isinstance(op, PathSelect):
                for k, v in op.conds:
                    ok_key = False
                    for it in items:
                        if it is Any:
                            ok_key = True
                        elif _is_model(it) and k in it.model_fields:
                            ok_key = True
                            allowed = _allowed_values(it.model_fields[k].annotation)
                            if allowed is not None and v not in allowed:
                                raise ValueError(f"{where}[{k}={v}]: {v!r} is not a valid {k} "
                                                 f"(valid: {', '.join(sorted(allowed))})")
                    if not ok_key:
                        raise ValueError(f"{where} items have no field {k!r} to select on")
            nxt = items
            where = f"{where}[]"
        current = nxt
    alts = current
    allowed: set[str] | None = set()
    for a in alts:
        av = _allowed_values(a)
        if av is None:
            allowed = None
            break
        assert allowed is not None
        allowed |= av
    if any(_is_model(a) for a in alts):
        raise ValueError(f"{where} is a structure, not a value; map one of its fields")
    return _Leaf(annotation=alts[0] if len(alts) == 1 else alts, allowed=frozenset(allowed) if allowed else None)


# ==============================================================================================================
# classification and masking of canonical paths

_SCHEME_KIND_FALLBACK = {
    "CN_RIC": "ric", "CN_TEMP_RIC": "ric", "HMT_RESIDENCE_PERMIT": "ric", "PASSPORT": "passport",
    "HK_MO_PERMIT": "permit", "TW_PERMIT": "permit", "FOREIGN_PR_ID": "permit", "CN_USCC": "uscc",
    "ORG_CODE": "uscc", "BUSINESS_LICENCE": "uscc", "CIF": "generic",
}
_ORG_SCHEMES = frozenset({"CN_USCC", "ORG_CODE", "BUSINESS_LICENCE"})
_CONTACT_KIND = {"MOBILE": "mobile", "LANDLINE": "landline", "EMAIL": "email", "WECHAT_OPENID": "generic"}
#: template path → mask kind, used only until the canonical model and its classification are importable.
_FALLBACK_KINDS = {
    "identifiers[].value": "generic", "contact_points[].value": "generic", "contact_points[].e164": "mobile",
    "name.legal_zh": "name", "name.family_zh": "name", "name.given_zh": "name", "name.pinyin": "name",
    "name.en": "name", "name.alias[]": "name", "date_of_birth": "date", "gender": "generic",
    "nationality": "generic", "occupation": "generic", "employer": "generic", "addresses[].street": "address",
    "addresses[].street_detail": "address", "addresses[].adr_lines[]": "address", "aum.amount": "amount",
}


def _policy(path: Path, party_type: str | None) -> Any:
    classes = _model_classes()
    if classes is None:
        return None
    try:
        from crmbridge.canonical.classification import policy_for
    except ImportError:  # pragma: no cover - classification ships with the model
        return None
    order = [classes[party_type]] if party_type in classes else list(classes.values())
    for cls in order:
        try:
            pol = policy_for(path.template(), cls)
        except (KeyError, TypeError):
            continue
        if pol.mask_by:
            sel = path.selector_value(pol.mask_by)
            pol = pol.resolve(sel) if sel is not None else pol
        return pol
    return None


def mask_kind_for(path: Path | str, party_type: str | None = None) -> str | None:
    """How a value at canonical ``path`` is masked for display: a mask kind, or ``None`` for non-personal (C1) data.

    Uses the classification declared on the canonical model; identifiers and contact points take their kind from the
    path's selector (``identifiers[scheme=CN_RIC].value`` → ``ric``). Text paths are answered from a cache once the
    model is importable (the ledger asks for every changed field of every record: a hot path).
    """
    if isinstance(path, str) and _model_classes() is not None:
        return _mask_kind_cached(path, party_type)
    return _mask_kind(parse_path(path) if isinstance(path, str) else path, party_type)


@lru_cache(maxsize=16384)
def _mask_kind_cached(path: str, party_type: str | None) -> str | None:
    return _mask_kind(parse_path(path), party_type)


def _mask_kind(p: Path, party_type: str | None) -> str | None:
    pol = _policy(p, party_type)
    if pol is not None:
        if not pol.is_personal and not pol.keep_masked:
            return None
        return pol.mask_kind or "generic"
    tpl = p.template()
    if tpl == "identifiers[].value":
        return _SCHEME_KIND_FALLBACK.get(p.selector_value("scheme") or "", "generic")
    if tpl == "contact_points[].value":
        return _CONTACT_KIND.get(p.selector_value("type") or "", "generic")
    if party_type == "ORGANISATION" and tpl.startswith("name."):
        return None
    return _FALLBACK_KINDS.get(tpl)


def _crm_projection(path: Path, party_type: str | None) -> str | None:
    pol = _policy(path, party_type)
    if pol is not None:
        return str(pol.crm.value)
    kind = mask_kind_for(path, party_type)
    if path.template() == "aum.amount":
        return "derived"
    return "masked" if kind else None


def _show(value: Any, kind: str | None) -> str:
    """A value for an error message: masked unless known to be non-personal."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v, kind) for v in value) + "]"
    return mask(kind or "generic", value) if kind != "none" else repr(value)


# ==============================================================================================================
# language models (the steps)


class TransformCall(BaseModel):
    """A transform with parameters: ``{name: date, format: "%Y%m%d"}``."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="A registered transform name.")


TransformSpec = Annotated[str | TransformCall, Field(
    description="A transform: 'trim', 'name:shorthand' (e.g. 'mask:ric', 'date:%Y%m%d') or {name: …, params…}.")]


def _spec_arg(t: str | TransformCall) -> Any:
    if isinstance(t, TransformCall):
        return {"name": t.name, **(t.model_extra or {})}
    return t


@dataclass
class _CompileContext:
    code_tables: dict[str, CodeTable]
    party_type: str | None          # INDIVIDUAL | ORGANISATION | None (decided per record)
    system: str
    problems: list[tuple[tuple[str | int, ...], str, str]] = field(default_factory=list)

    def error(self, rel: tuple[str | int, ...], message: str, severity: str = "error") -> None:
        self.problems.append((rel, message, severity))


@dataclass
class TraceRow:
    """One line of a preview: what a step read and wrote."""

    step: int
    vendor: str
    vendor_value: Any
    canonical: str
    canonical_value: Any
    mask_kind: str | None
    note: str = ""


class _InRecord:
    """The state of one record being mapped in."""

    def __init__(self, mapping: Mapping, raw: AbcMapping[str, Any]) -> None:
        self.mapping = mapping
        self.raw = raw
        self.canon: dict[str, Any] = {}
        self.problems: list[tuple[str | None, str, str]] = []   # (vendor field, canonical label, message)
        self.provenance: dict[tuple[str | int, ...], tuple[str, str, Any, str | None]] = {}
        self.trace: list[TraceRow] = []
        self.step_no = -1
        self.modified: datetime | None = None

    def put(self, path: Path, value: Any, vendor: str, raw_value: Any, kind: str | None) -> None:
        loc = path_set(self.canon, path, value)
        self.provenance[loc] = (vendor, path.text, raw_value, kind)
        self.trace.append(TraceRow(self.step_no, vendor, raw_value, path.text, value, kind))

    def problem(self, vendor: str | None, canonical: str, message: str) -> None:
        self.problems.append((vendor, canonical, message))


class _OutRecord:
    """The state of one party being mapped out."""

    def __init__(self, mapping: Mapping, party: dict[str, Any]) -> None:
        self.mapping = mapping
        self.party = party
        self.payload: dict[str, Any] = {}
        self.problems: list[tuple[str | None, str, str]] = []
        self.trace: list[TraceRow] = []
        self.step_no = -1

    def consent_granted(self, purpose: str) -> bool:
        """Whether the latest consent record for ``purpose`` is GRANTED and not withdrawn."""
        records = [c for c in self.party.get("consents") or []
                   if isinstance(c, AbcMapping) and plain_value(c.get("purpose")) == purpose]
        if not records:
            return False
        latest = max(records, key=lambda c: str(c.get("captured_at") or ""))
        return plain_value(latest.get("status")) == "GRANTED" and not latest.get("withdrawn_at")

    def put(self, vendor: Path, value: Any, canonical: str, canonical_value: Any, kind: str | None,
            note: str = "") -> None:
        path_set(self.payload, vendor, value)
        self.trace.append(TraceRow(self.step_no, vendor.text, value, canonical, canonical_value, kind, note))

    def problem(self, vendor: str | None, canonical: str, message: str) -> None:
        self.problems.append((vendor, canonical, message))


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str | None = Field(default=None, description="What the step is for (shown in previews).")
    direction: Direction = Field(default="both", description="in (vendor → canonical), out, or both.")
    party_type: PartyTypeName | None = Field(default=None, description=(
        "Run the step only for parties of this type (mappings whose party type is decided per record)."))

    def runs(self, direction: str) -> bool:
        return self.direction in (direction, "both")

    def applies_to(self, party_type: Any) -> bool:
        """Whether the step runs for a party of ``party_type`` (always, unless the step names a type)."""
        return self.party_type is None or party_type is None or plain_value(party_type) == self.party_type

    def compile(self, ctx: _CompileContext) -> None:
        """Parse paths and build transform chains; report problems through ``ctx`` (relative key paths)."""

    def vendor_paths(self) -> list[Path]:
        return []

    def canonical_paths(self) -> list[Path]:
        return []

    def apply_in(self, rec: _InRecord) -> None:  # pragma: no cover - every step overrides
        raise NotImplementedError

    def apply_out(self, rec: _OutRecord) -> None:  # pragma: no cover - every step overrides
        raise NotImplementedError


def _compile_path(ctx: _CompileContext, rel: tuple[str | int, ...], text: str, *, canonical: bool) -> Path | None:
    try:
        p = parse_path(text)
    except ValueError as exc:
        ctx.error(rel, f"bad path: {exc}")
        return None
    if canonical:
        classes = _model_classes()
        if classes is None:
            return p
        order = [classes[ctx.party_type]] if ctx.party_type in classes else list(classes.values())
        errors = []
        for cls in order:
            try:
                resolve_canonical(cls, p)
                return p
            except ValueError as exc:
                errors.append(str(exc))
        ctx.error(rel, f"unknown canonical path {text!r}: {errors[0]}")
        return None
    return p


_INDIVIDUAL_SEGMENTS = frozenset({"MASS", "AFFLUENT", "WEALTH", "PRIVATE"})
_ORG_SEGMENTS = frozenset({"MICRO", "SMALL", "MEDIUM", "LARGE", "STRATEGIC"})
#: enum values a party of one type cannot hold (the model's cross-field rules), so code tables need not cover them.
_EXCLUDED_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("segment.code", "INDIVIDUAL"): _ORG_SEGMENTS,
    ("segment.code", "ORGANISATION"): _INDIVIDUAL_SEGMENTS,
    ("lifecycle_stage", "INDIVIDUAL"): frozenset({"DISSOLVED"}),
    ("lifecycle_stage", "ORGANISATION"): frozenset({"DECEASED"}),
}


def _canonical_leaf(ctx: _CompileContext, p: Path) -> _Leaf | None:
    classes = _model_classes()
    if classes is None:
        return None
    order = [classes[ctx.party_type]] if ctx.party_type in classes else list(classes.values())
    for cls in order:
        try:
            leaf = resolve_canonical(cls, p)
        except ValueError:
            continue
        excluded = _EXCLUDED_VALUES.get((p.template(), ctx.party_type or ""))
        if leaf.allowed and excluded:
            leaf = _Leaf(leaf.annotation, leaf.allowed - excluded)
        return leaf
    return None


class _ValueStep(_Step):
    """Shared machinery of the steps that carry one value between vendor path(s) and one canonical path."""

    vendor: str | list[str] = Field(description="Vendor path, or a list of paths whose values form a list "
                                                "(e.g. [Last_Name, First_Name] with join_name).")
    transform: list[TransformSpec] = Field(default_factory=list, description=(
        "Transforms for both directions: in runs them in order (to_canonical), out in reverse (to_vendor)."))
    in_: list[TransformSpec] = Field(default_factory=list, alias="in",
                                     description="Extra transforms for the in direction, after 'transform'.")
    out: list[TransformSpec] = Field(default_factory=list,
                                     description="Extra transforms for the out direction, after 'transform'.")
    required: bool = Field(default=False, description="A missing value is a record error (in: vendor value; "
                                                      "out: the value to write).")
    default: Any = Field(default=None, description="Canonical value used when the vendor value is missing (in).")
    out_mask: str | None = Field(default=None, description=(
        "Mask kind applied last on the way out ('none' to push in clear). Identifier and contact steps mask by "
        "default; see when_consent."))
    when_consent: str | None = Field(default=None, description=(
        "Out: push the value in clear only if the party's consent for this purpose is GRANTED, masked otherwise."))
    when_consent_else: Literal["mask", "omit"] = Field(default="mask", description=(
        "Out, without the when_consent consent: push the masked value (mask) or leave the field out (omit)."))
    unmasked_reason: str | None = Field(default=None, description=(
        "Out to a CRM: the documented purpose for pushing a personal (C2) value in clear."))
    write_null: bool = Field(default=False, description="Out: write null when the canonical value is empty "
                                                        "(default: leave the vendor field out of the payload).")

    _vpaths: list[Path] = PrivateAttr(default_factory=list)
    _cpath: Path | None = PrivateAttr(default=None)
    _in_chain: list[tuple[Transform, str]] = PrivateAttr(default_factory=list)
    _out_chain: list[tuple[Transform, str]] = PrivateAttr(default_factory=list)
    _kind: str | None = PrivateAttr(default=None)
    _mask_out: str | None = PrivateAttr(default=None)
    _label: str = PrivateAttr(default="")

    def canonical_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def default_out_mask(self) -> str | None:
        return None

    def vendor_paths(self) -> list[Path]:
        return list(self._vpaths)

    def canonical_paths(self) -> list[Path]:
        return [self._cpath] if self._cpath else []

    def _vendor_label(self) -> str:
        return ", ".join(p.text for p in self._vpaths) if self._vpaths else str(self.vendor)

    def _code_table(self) -> str | None:
        return None

    def compile(self, ctx: _CompileContext) -> None:
        vendors = self.vendor if isinstance(self.vendor, list) else [self.vendor]
        if not vendors:
            ctx.error(("vendor",), "at least one vendor path is needed")
        for i, v in enumerate(vendors):
            p = _compile_path(ctx, ("vendor", i) if isinstance(self.vendor, list) else ("vendor",), v,
                              canonical=False)
            if p:
                self._vpaths.append(p)
        self._cpath = _compile_path(ctx, self._canonical_rel(), self.canonical_text(), canonical=True)
        both: list[Transform] = []
        for i, spec in enumerate(self.transform):
            try:
                t = build_transform(_spec_arg(spec), code_tables=ctx.code_tables)
                if t.directions != frozenset({"in", "out"}):
                    raise MappingError(f"transform {t.name!r} applies to the {'/'.join(sorted(t.directions))} "
                                       f"direction only; put it under '{next(iter(t.directions))}:'")
                both.append(t)
            except MappingError as exc:
                ctx.error(("transform", i), exc.message)
        ins: list[Transform] = []
        for i, spec in enumerate(self.in_):
            try:
                ins.append(build_transform(_spec_arg(spec), direction="in", code_tables=ctx.code_tables))
            except MappingError as exc:
                ctx.error(("in", i), exc.message)
        outs: list[Transform] = []
        for i, spec in enumerate(self.out):
            try:
                outs.append(build_transform(_spec_arg(spec), direction="out", code_tables=ctx.code_tables))
            except MappingError as exc:
                ctx.error(("out", i), exc.message)
        table = self._code_table()
        code = [CodeTransform(table=table)] if table else []
        if table and table not in ctx.code_tables:
            ctx.error(("table",), f"unknown code table {table!r}; declared tables: "
                                  f"{', '.join(sorted(ctx.code_tables)) or '(none)'}")
        self._in_chain = [(t, "in") for t in (*both, *ins, *code)]
        self._out_chain = [(t, "out") for t in (*code, *reversed(both), *outs)]
        if self.out_mask is not None and self.out_mask != "none" and self.out_mask not in MASK_KINDS:
            ctx.error(("out_mask",), f"unknown mask kind {self.out_mask!r}; known: none, "
                                     f"{', '.join(sorted(MASK_KINDS))}")
        if self._cpath is not None:
            self._kind = mask_kind_for(self._cpath, ctx.party_type)
        if self.out_mask == "none" or (self.out_mask is None and self.unmasked_reason):
            self._mask_out = None
        elif self.out_mask is not None:
            self._mask_out = self.out_mask
        else:
            # identifiers and contact points go to a CRM masked unless the step says otherwise; core banking gets
            # what it owns in clear
            self._mask_out = self.default_out_mask() if ctx.system in CRM_SYSTEMS else None
        if len(self._vpaths) > 1 and self.direction != "in" and not any(
                getattr(t, "name", "") == "join_name" for t, _ in self._out_chain):
            ctx.error(("vendor",), "several vendor paths on the way out need a transform that returns a list "
                                   "(join_name), or direction: in")
        self._label = self._vendor_label()
        self._check_minimisation(ctx)

    def _canonical_rel(self) -> tuple[str | int, ...]:
        return ("canonical",)

    def _check_minimisation(self, ctx: _CompileContext) -> None:
        if ctx.system not in CRM_SYSTEMS or not self.runs("out") or self._cpath is None:
            return
        proj = _crm_projection(self._cpath, ctx.party_type)
        if self._cpath.template() == "identifiers[].value" and self._cpath.selector_value("scheme") in _ORG_SCHEMES:
            proj = "push"  # a legal entity's USCC may go out in full (docs/canonical.md §3)
        masked = self._mask_out is not None or any(isinstance(t, Mask) for t, _ in self._out_chain)
        derived = any(isinstance(t, AumBand) for t, _ in self._out_chain)
        if proj == "never" and not derived and not self.unmasked_reason:
            ctx.error(self._canonical_rel(), f"{self._cpath.text} is never pushed to a CRM (docs/canonical.md §3); "
                                             "use direction: in")
        elif proj == "derived" and not derived and not self.unmasked_reason:
            ctx.error(self._canonical_rel(), f"{self._cpath.text} goes to a CRM only as a derived value "
                                             "(e.g. aum_band); never the amount (docs/canonical.md §3)")
        elif proj == "masked" and not masked and not self.when_consent and not self.unmasked_reason:
            ctx.error(self._canonical_rel(), f"{self._cpath.text} is personal data (C2): push it masked (out_mask "
                                             "or mask:<kind>), only with consent (when_consent), or state "
                                             "unmasked_reason")

    # ---- in (compiled state is read once from __pydantic_private__: pydantic's __getattr__ is slow per record)
    def _read(self, rec: _InRecord, vpaths: list[Path]) -> tuple[Any, bool]:
        if len(vpaths) == 1 and not isinstance(self.vendor, list):
            v = path_get(rec.raw, vpaths[0])
            return v, v is None or (isinstance(v, str) and not v.strip())
        vals = [path_get(rec.raw, p) for p in vpaths]
        return vals, all(v is None or (isinstance(v, str) and not v.strip()) for v in vals)

    def _extra_in(self, rec: _InRecord, loc_path: Path) -> None:
        """Hook: set sibling attributes after the value was written (identifiers, contact points)."""

    def apply_in(self, rec: _InRecord) -> None:
        priv = self.__pydantic_private__
        cpath: Path | None = priv["_cpath"]
        if cpath is None:
            return
        kind, label = priv["_kind"], priv["_label"]
        raw, missing = self._read(rec, priv["_vpaths"])
        if missing:
            if self.default is not None:
                rec.put(cpath, self.default, label, raw, kind)
                self._extra_in(rec, cpath)
            elif self.required:
                rec.problem(label, cpath.text, REQUIRED_MISSING)
            return
        try:
            value = run_chain(priv["_in_chain"], raw, rec.mapping.tctx)
        except TransformError as exc:
            rec.problem(label, cpath.text, f"{exc} (value {_show(raw, self._error_kind())})")
            return
        if value is None:
            if self.required:
                rec.problem(label, cpath.text, REQUIRED_MISSING)
            return
        rec.put(cpath, value, label, raw, kind)
        self._extra_in(rec, cpath)

    def _error_kind(self) -> str | None:
        return self._kind

    # ---- out
    def apply_out(self, rec: _OutRecord) -> None:
        priv = self.__pydantic_private__
        cpath: Path | None = priv["_cpath"]
        vpaths: list[Path] = priv["_vpaths"]
        if cpath is None or not vpaths:
            return
        ckind, label, mask_out = priv["_kind"], priv["_label"], priv["_mask_out"]
        value = plain_value(path_get(rec.party, cpath))
        note = ""
        out: Any = None
        if value is not None:
            try:
                out = run_chain(priv["_out_chain"], value, rec.mapping.tctx)
            except TransformError as exc:
                rec.problem(label, cpath.text, f"{exc} (value {_show(value, self._error_kind())})")
                return
            kind: str | None = mask_out
            if out is not None and self.when_consent:
                if rec.consent_granted(self.when_consent):
                    kind, note = None, f"clear: consent {self.when_consent} granted"
                elif self.when_consent_else == "omit":
                    rec.trace.append(TraceRow(rec.step_no, label, None, cpath.text, value, ckind,
                                              f"omitted: no consent {self.when_consent}"))
                    return
                else:
                    kind = mask_out or ckind or "generic"
            if out is not None and kind:
                out = ([mask(kind, x) if x is not None else None for x in out]
                       if isinstance(out, list) and len(vpaths) > 1 else mask(kind, out))
                note = f"masked ({kind})"
        if out is None:
            if self.required:
                rec.problem(label, cpath.text, "the vendor field is mandatory but the canonical value is empty")
                return
            if not self.write_null:
                return
        if len(vpaths) > 1:
            seq = out if isinstance(out, list | tuple) else [None] * len(vpaths)
            for vp, v in zip(vpaths, seq, strict=False):
                if v is not None or self.write_null:
                    rec.put(vp, v, cpath.text, value, ckind, note)
        else:
            rec.put(vpaths[0], out, cpath.text, value, ckind, note)


class FieldStep(_ValueStep):
    """A vendor value ↔ a canonical field, through transforms.

    Example::

        - type: field
          vendor: Date_of_Birth
          canonical: date_of_birth
          transform: [date]
          direction: in

        - type: field                       # two vendor fields form one canonical value
          vendor: [Last_Name, First_Name]
          canonical: name.legal_zh
          in: [join_name]
          direction: in

        - type: field
          vendor: Last_Name
          canonical: name.legal_zh
          out: ["mask:name"]                # minimised CRM projection: 张*
          direction: out
          required: true
    """

    type: Literal["field"]
    canonical: str = Field(description="Canonical path, e.g. name.legal_zh or addresses[type=MAILING].city.")

    def canonical_text(self) -> str:
        return self.canonical


class CodeStep(_ValueStep):
    """A vendor code ↔ a canonical enum value through a named code table (both directions).

    An unmapped value is a record error naming the table and the value (masked when personal).

    Example::

        - type: code
          vendor: Segment__c
          canonical: segment.code
          table: segment
    """

    type: Literal["code"]
    canonical: str = Field(description="Canonical path of the coded value.")
    table: str = Field(description="Name of a table under code_tables.")

    def canonical_text(self) -> str:
        return self.canonical

    def _code_table(self) -> str | None:
        return self.table

    def _error_kind(self) -> str | None:
        tbl = self._table_obj
        if tbl is not None and tbl.personal:
            return self._kind or "generic"
        return self._kind or "none"

    _table_obj: CodeTable | None = PrivateAttr(default=None)

    def compile(self, ctx: _CompileContext) -> None:
        super().compile(ctx)
        self._table_obj = ctx.code_tables.get(self.table)


class IdentifierStep(_ValueStep):
    """A vendor field ↔ ``identifiers[scheme=SCHEME].value``. Out: masked by default (``1*************002X``);
    the USCC and other organisation identifiers go out in clear (docs/canonical.md §3).

    Example::

        - type: identifier
          vendor: RIC__c
          scheme: CN_RIC
          transform: [fullwidth_to_halfwidth, trim, upper]
          attributes: {issuing_country: CN}
    """

    type: Literal["identifier"]
    scheme: str = Field(description="Identifier scheme (CN_RIC, PASSPORT, CN_USCC…).")
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       description="Other identifier fields set on the way in (issuing_country…).")

    def canonical_text(self) -> str:
        return f"identifiers[scheme={self.scheme}].value"

    def _canonical_rel(self) -> tuple[str | int, ...]:
        return ("scheme",)

    def default_out_mask(self) -> str | None:
        if self.scheme in _ORG_SCHEMES:
            return None
        return _SCHEME_KIND_FALLBACK.get(self.scheme, "generic") if self._kind is None else self._kind

    def _extra_in(self, rec: _InRecord, loc_path: Path) -> None:
        for k, v in self.attributes.items():
            path_set(rec.canon, Path(k, (*loc_path.ops[:-1], PathKey(k))), v)


class ContactStep(_ValueStep):
    """A vendor field ↔ ``contact_points[type=TYPE].value``. Out: masked unless ``when_consent`` is granted.

    Example::

        - type: contact
          vendor: Mobile
          contact_type: MOBILE
          transform: [{name: phone_e164, mobile_only: true}]
          when_consent: MARKETING_SMS       # full number only with SMS marketing consent, else 138****5678
    """

    type: Literal["contact"]
    contact_type: str = Field(description="MOBILE, LANDLINE, EMAIL or WECHAT_OPENID.")
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       description="Other contact-point fields set on the way in.")

    def canonical_text(self) -> str:
        return f"contact_points[type={self.contact_type}].value"

    def _canonical_rel(self) -> tuple[str | int, ...]:
        return ("contact_type",)

    def default_out_mask(self) -> str | None:
        return self._kind or _CONTACT_KIND.get(self.contact_type, "generic")

    def _extra_in(self, rec: _InRecord, loc_path: Path) -> None:
        for k, v in self.attributes.items():
            path_set(rec.canon, Path(k, (*loc_path.ops[:-1], PathKey(k))), v)


class ConsentStep(_Step):
    """A vendor flag ↔ ``consents[purpose=PURPOSE].status``.

    In: the vendor value equal to ``granted`` gives GRANTED, equal to ``denied`` gives ``denied_status``; any other
    value is a record error. Out: GRANTED writes ``granted``, anything else (or no consent) writes ``denied``.

    Example (Zoho's Email_Opt_Out is true when the contact refused e-mail)::

        - type: consent
          vendor: Email_Opt_Out
          purpose: MARKETING_EMAIL
          granted: false
          denied: true
          no_information: [false]           # not opting out is not a consent (PIPL Art. 14): skip it on the way in
          attributes: {legal_basis: PIPL13_1_CONSENT, channel: ZOHO}
    """

    type: Literal["consent"]
    vendor: str = Field(description="Vendor path of the flag.")
    purpose: str = Field(description="Consent purpose (MARKETING_SMS, MARKETING_EMAIL…).")
    granted: Any = Field(default=True, description="Vendor value meaning consent granted.")
    denied: Any = Field(default=False, description="Vendor value meaning consent not granted.")
    denied_status: Literal["DENIED", "WITHDRAWN"] = Field(default="DENIED",
                                                           description="Canonical status for the denied value.")
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       description="Other consent fields set on the way in (legal_basis…).")
    no_information: list[Any] = Field(default_factory=list, description=(
        "Vendor values that say nothing about consent (skipped on the way in), e.g. Email_Opt_Out: false."))
    required: bool = False

    _vpath: Path | None = PrivateAttr(default=None)
    _cpath: Path | None = PrivateAttr(default=None)

    def vendor_paths(self) -> list[Path]:
        return [self._vpath] if self._vpath else []

    def canonical_paths(self) -> list[Path]:
        return [self._cpath] if self._cpath else []

    def compile(self, ctx: _CompileContext) -> None:
        self._vpath = _compile_path(ctx, ("vendor",), self.vendor, canonical=False)
        self._cpath = _compile_path(ctx, ("purpose",), f"consents[purpose={self.purpose}].status", canonical=True)
        if self._cpath is not None:
            for k in self.attributes:
                _compile_path(ctx, ("attributes", k), f"consents[purpose={self.purpose}].{k}", canonical=True)

    @staticmethod
    def _same(a: Any, b: Any) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return a.strip().lower() == b.strip().lower()
        return a == b and type(a) is type(b)

    def apply_in(self, rec: _InRecord) -> None:
        if self._vpath is None or self._cpath is None:
            return
        raw = path_get(rec.raw, self._vpath)
        if raw is None or raw == "":
            if self.required:
                rec.problem(self._vpath.text, self._cpath.text, REQUIRED_MISSING)
            return
        if any(self._same(raw, x) for x in self.no_information):
            return
        if self._same(raw, self.granted):
            status = "GRANTED"
        elif self._same(raw, self.denied):
            status = self.denied_status
        else:
            rec.problem(self._vpath.text, self._cpath.text,
                        f"expected {self.granted!r} or {self.denied!r} (value {_show(raw, 'none')})")
            return
        rec.put(self._cpath, status, self._vpath.text, raw, None)
        attrs = dict(self.attributes)
        if "captured_at" not in attrs:
            # the vendor flag carries no capture time: the record's own modification time is the best evidence
            attrs["captured_at"] = rec.modified or datetime.now(UTC)
        if status == "WITHDRAWN" and "withdrawn_at" not in attrs:
            attrs["withdrawn_at"] = attrs["captured_at"]
        for k, v in attrs.items():
            path_set(rec.canon, Path(k, (*self._cpath.ops[:-1], PathKey(k))), v)

    def apply_out(self, rec: _OutRecord) -> None:
        if self._vpath is None or self._cpath is None:
            return
        status = plain_value(path_get(rec.party, self._cpath))
        rec.put(self._vpath, self.granted if status == "GRANTED" else self.denied, self._cpath.text, status, None)


class ConstantStep(_Step):
    """A fixed value. In: sets ``canonical`` to ``value``; out: sets ``vendor`` to ``vendor_value`` (or ``value``).

    Example::

        - type: constant
          vendor: Lead_Source
          value: Core banking (crmbridge)
          direction: out
    """

    type: Literal["constant"]
    canonical: str | None = Field(default=None, description="Canonical path set on the way in.")
    vendor: str | None = Field(default=None, description="Vendor path set on the way out.")
    value: Any = Field(description="The value.")
    vendor_value: Any = Field(default=None, description="Value written out when it differs from value.")

    _vpath: Path | None = PrivateAttr(default=None)
    _cpath: Path | None = PrivateAttr(default=None)

    def vendor_paths(self) -> list[Path]:
        return [self._vpath] if self._vpath else []

    def canonical_paths(self) -> list[Path]:
        return [self._cpath] if self._cpath else []

    def runs(self, direction: str) -> bool:
        if direction == "in" and self.canonical is None:
            return False
        if direction == "out" and self.vendor is None:
            return False
        return super().runs(direction)

    def compile(self, ctx: _CompileContext) -> None:
        if self.canonical is None and self.vendor is None:
            ctx.error((), "a constant needs canonical (in), vendor (out) or both")
        if self.canonical is not None:
            self._cpath = _compile_path(ctx, ("canonical",), self.canonical, canonical=True)
            leaf = _canonical_leaf(ctx, self._cpath) if self._cpath else None
            if leaf and leaf.allowed and str(plain_value(self.value)) not in leaf.allowed:
                ctx.error(("value",), f"{self.value!r} is not a valid {self.canonical} "
                                      f"(valid: {', '.join(sorted(leaf.allowed))})")
        if self.vendor is not None:
            self._vpath = _compile_path(ctx, ("vendor",), self.vendor, canonical=False)

    def apply_in(self, rec: _InRecord) -> None:
        if self._cpath is not None:
            rec.put(self._cpath, self.value, "(constant)", None, None)

    def apply_out(self, rec: _OutRecord) -> None:
        if self._vpath is not None:
            v = self.vendor_value if self.vendor_value is not None else self.value
            rec.put(self._vpath, v, "(constant)", None, None)


class UniquePart(BaseModel):
    """One piece of a ``unique_masked`` value: a canonical value, masked and/or cut to its last characters."""

    model_config = ConfigDict(extra="forbid")
    canonical: str = Field(description=(
        "Canonical path: party_id, name.legal_zh, source_refs[system=FLEXCUBE].system_id, "
        "identifiers[scheme=CN_RIC].value…"))
    mask: str | None = Field(default=None, description=(
        "Mask kind applied first (name: 张*). Required in a CRM mapping for personal (C2) data."))
    last: int | None = Field(default=None, ge=1, le=64, description=(
        "Keep only the last N characters (after the mask). A unique key cut short can collide."))


#: canonical path templates whose full value is unique per party (what makes a unique_masked value unique)
_UNIQUE_KEYS = frozenset({"party_id", "source_refs[].system_id"})


class UniqueMaskedStep(_Step):
    """Out only: one vendor field gets a minimised value that cannot collide, built from several canonical values.

    A CRM duplicate rule that matches on the name sees every ``张*`` as the same customer. This step writes the
    masked name joined with a value that is unique per party, so the field stays minimised (nothing beyond what the
    CRM projection allows goes out in clear) and two parties never get the same value. ``validate`` checks that
    every personal (C2) part is masked, that no part is a field the CRM never receives (date of birth, KYC…), and
    warns when no part is a unique key in full (``party_id``, or ``source_refs[system=X].system_id``): a key cut
    with ``last`` can collide. A missing part means no value (a record error when ``required``).

    Example (Fxiaoke ContactObj: the name its duplicate rule compares)::

        - type: unique_masked
          vendor: name
          parts:
            - {canonical: name.legal_zh, mask: name}     # 张*
            - {canonical: party_id}                      # C1, opaque, already pushed as the key field
          separator: "-"                                 # → 张*-6f1c2b0e-8d2a-4c35-9e61-2b7f4a1d9c10
          required: true

        - type: unique_masked                            # shorter, not collision-proof (validate warns)
          vendor: name
          parts:
            - {canonical: name.legal_zh, mask: name}
            - {canonical: party_id, last: 4}             # → 张*-9c10
    """

    type: Literal["unique_masked"]
    direction: Literal["out"] = Field(default="out", description="Always out: the value is built, never read.")
    vendor: str = Field(description="Vendor path the value is written to (e.g. Fxiaoke name).")
    parts: list[UniquePart] = Field(min_length=2, description="The values joined, in order.")
    separator: str = Field(default="-", max_length=8, description="Text between the parts.")
    required: bool = Field(default=False, description="A missing part is a record error (default: field left out).")
    max_length: int | None = Field(default=None, ge=1, description=(
        "Longest value the vendor field takes: a longer value is a record error (never cut: cutting can collide)."))

    _vpath: Path | None = PrivateAttr(default=None)
    _cpaths: list[Path | None] = PrivateAttr(default_factory=list)

    def vendor_paths(self) -> list[Path]:
        return [self._vpath] if self._vpath else []

    def canonical_paths(self) -> list[Path]:
        return [p for p in self._cpaths if p is not None]

    @property
    def carries_mask_marker(self) -> bool:
        """Whether every value holds the mask character, so ``drop_masked`` recognises it when it flows back."""
        return any(p.mask is not None and p.last is None for p in self.parts)

    def compile(self, ctx: _CompileContext) -> None:
        self._vpath = _compile_path(ctx, ("vendor",), self.vendor, canonical=False)
        self._cpaths = []
        unique = False
        for i, part in enumerate(self.parts):
            cpath = _compile_path(ctx, ("parts", i, "canonical"), part.canonical, canonical=True)
            self._cpaths.append(cpath)
            if part.mask is not None and part.mask not in MASK_KINDS:
                ctx.error(("parts", i, "mask"), f"unknown mask kind {part.mask!r}; known: "
                                                f"{', '.join(sorted(MASK_KINDS))}")
            if cpath is None:
                continue
            if cpath.template() in _UNIQUE_KEYS and part.mask is None and part.last is None:
                unique = True
            if ctx.system not in CRM_SYSTEMS:
                continue
            proj = _crm_projection(cpath, ctx.party_type)
            if (cpath.template() == "identifiers[].value"
                    and cpath.selector_value("scheme") in _ORG_SCHEMES):
                proj = "push"
            if proj in ("never", "derived", "internal"):
                ctx.error(("parts", i, "canonical"), f"{cpath.text} is not part of the CRM projection "
                                                     f"({proj}; docs/canonical.md §3): it cannot be part of a value")
            elif proj == "masked":
                kind = mask_kind_for(cpath, ctx.party_type) or "generic"
                if part.mask is None:
                    ctx.error(("parts", i, "canonical"), f"{cpath.text} is personal data (C2): give the part "
                                                         f"mask: {kind} so only the minimised form goes out")
                elif part.mask != kind:
                    ctx.error(("parts", i, "mask"), f"{cpath.text} is masked as {kind} in a CRM projection; "
                                                    f"mask {part.mask!r} may show more of it")
        if not unique:
            ctx.error(("parts",), "no part is a unique key in full (party_id, or source_refs[system=X].system_id "
                                  "without last:): two parties can get the same value (last: 4 of a party_id "
                                  "gives 65,536 values; thousands of customers share 张*)", "warning")

    def apply_in(self, rec: _InRecord) -> None:  # pragma: no cover - direction is always out
        return

    def apply_out(self, rec: _OutRecord) -> None:
        vpath = self._vpath
        if vpath is None:
            return
        pieces: list[str] = []
        labels = " + ".join(p.canonical for p in self.parts)
        for part, cpath in zip(self.parts, self._cpaths, strict=True):
            value = plain_value(path_get(rec.party, cpath)) if cpath is not None else None
            text = "" if value is None else str(value).strip()
            if not text:
                if self.required:
                    rec.problem(vpath.text, part.canonical, "the vendor field is mandatory but this part of its "
                                                            "value is empty")
                return
            if part.mask is not None:
                text = mask(part.mask, text)
            if part.last is not None:
                text = text[-part.last:]
            pieces.append(text)
        value = self.separator.join(pieces)
        if self.max_length is not None and len(value) > self.max_length:
            rec.problem(vpath.text, labels, f"the value has {len(value)} characters, more than max_length "
                                            f"{self.max_length} (it is never cut: a cut value can collide)")
            return
        rec.put(vpath, value, labels, None, None, "unique minimised value")


Step = Annotated[FieldStep | CodeStep | IdentifierStep | ContactStep | ConsentStep | ConstantStep | UniqueMaskedStep,
                 Field(discriminator="type")]
STEP_TYPES: dict[str, type[_Step]] = {"field": FieldStep, "code": CodeStep, "identifier": IdentifierStep,
                                      "contact": ContactStep, "consent": ConsentStep, "constant": ConstantStep,
                                      "unique_masked": UniqueMaskedStep}


# ==============================================================================================================
# the header


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
    """A mapping file: one (system, object) ↔ the canonical party.

    Example::

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

    system: str = Field(description="Adapter name (zoho, fxiaoke, corebank_soap, corebank_rest, memory).")
    object: str = Field(description="Vendor object (Contacts, AccountObj, Customer…).")
    version: int | str = Field(description="Version of this mapping; bump it on every change.")
    description: str = Field(description="What the mapping is for, including custom vendor fields it relies on.")
    party_type: PartyTypeName | PartyTypeRule = Field(description="INDIVIDUAL, ORGANISATION, or a rule.")
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
    schema["description"] = ("A crmbridge mapping: one (system, object) ↔ the canonical party. "
                             "See mappings/README.md.")
    return schema


# ==============================================================================================================
# YAML with line numbers


def _keypath(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _refusal(file: str, exc: YamlLimitError) -> MappingProblem:
    mark = exc.problem_mark
    return MappingProblem(file, mark.line + 1 if mark else None, "", str(exc.problem))


def _load_yaml(text: str, file: str) -> tuple[Any, dict[tuple[str | int, ...], int], list[MappingProblem]]:
    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[MappingProblem] = []
    try:
        # bounded: no alias bombs, no deep nesting, no huge documents (core/safeyaml.py); the reader checks the
        # characters here (a NUL byte is refused)
        loader = BoundedLoader(text)
    except YamlLimitError as exc:
        problems.append(_refusal(file, exc))
        return None, lines, problems
    except yaml.YAMLError as exc:
        problems.append(MappingProblem(file, None, "", f"YAML error: {exc}"))
        return None, lines, problems

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = loader.construct_object(knode, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    problems.append(MappingProblem(file, knode.start_mark.line + 1, _keypath(path),
                                                   "keys must be plain scalars"))
                    continue
                if key in out:
                    problems.append(MappingProblem(file, knode.start_mark.line + 1, _keypath((*path, key)),
                                                   "duplicate key"))
                lines[(*path, key)] = knode.start_mark.line + 1
                out[key] = walk(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, (*path, i)) for i, v in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        node = loader.get_single_node()
        data = walk(node, ()) if node is not None else None
    except YamlLimitError as exc:
        problems.append(_refusal(file, exc))
        return None, lines, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            msg = f"YAML syntax error: {exc.problem} ({exc.context})"
        problems.append(MappingProblem(file, mark.line + 1 if mark else None, "", msg))
        return None, lines, problems
    except yaml.YAMLError as exc:
        problems.append(MappingProblem(file, None, "", f"YAML error: {exc}"))
        return None, lines, problems
    finally:
        loader.dispose()
    return data, lines, problems


def _align(data: Any, loc: Sequence[Any]) -> tuple[str | int, ...]:
    """Keep the parts of a pydantic error location that navigate ``data`` (drop union tags and type names)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and part == loc[-1]:
            out.append(part)  # a missing or unknown key: name it
            cur = None
    return tuple(out)


def _line_for(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    p = path
    while True:
        if p in lines:
            return lines[p]
        if not p:
            return None
        p = p[:-1]


def _friendly(err: Any, data: Any, aligned: tuple[str | int, ...]) -> str:
    typ = err["type"]
    if typ == "extra_forbidden":
        return f"unknown key {aligned[-1]!r}" if aligned else "unknown key"
    if typ == "missing":
        return f"required key {err['loc'][-1]!r} is missing"
    if typ == "union_tag_invalid":
        return f"unknown step type {err.get('input', {}).get('type')!r}; known: {', '.join(sorted(STEP_TYPES))}"
    if typ == "union_tag_not_found":
        return f"a step needs 'type' (one of: {', '.join(sorted(STEP_TYPES))})"
    return str(err["msg"])


# ==============================================================================================================
# the Mapping


class Mapping:
    """A loaded, checked mapping: the engine other parts call.

    Attributes:
        spec: the parsed :class:`MappingSpec`.
        path: the file it came from.
        version_hash: SHA-256 (hex) of the file's bytes, recorded in the ledger with every mapped record.
    """

    def __init__(self, spec: MappingSpec, *, path: str, version_hash: str,
                 lines: dict[tuple[str | int, ...], int] | None = None) -> None:
        self.spec = spec
        self.path = path
        self.version_hash = version_hash
        self.lines = lines or {}
        self.tctx = TransformContext(code_tables=spec.code_tables)
        self._external = _try_path(spec.external_id) or Path(spec.external_id, (PathKey(spec.external_id),))
        self._key = _try_path(spec.key_field) if spec.key_field else None
        self._modified: Path | None = None
        self._modified_chain: list[tuple[Transform, str]] = []
        self._deleted: Path | None = None
        self._type_rule: Path | None = None

    # ---- header
    @property
    def system(self) -> str:
        return self.spec.system

    @property
    def object(self) -> str:
        return self.spec.object

    @property
    def fixed_party_type(self) -> str | None:
        return self.spec.party_type if isinstance(self.spec.party_type, str) else None

    @property
    def source_system(self) -> str | None:
        return self.spec.source_system or _SOURCE_SYSTEM_BY_ADAPTER.get(self.spec.system)

    def __repr__(self) -> str:
        return f"<Mapping {self.spec.system}/{self.spec.object} v{self.spec.version} {self.path}>"

    def _compile(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        spec = self.spec
        out: list[tuple[tuple[str | int, ...], str, str]] = []
        ctx = _CompileContext(code_tables=spec.code_tables, party_type=self.fixed_party_type, system=spec.system)
        for i, step in enumerate(spec.steps):
            ctx.problems = []
            ctx.party_type = step.party_type or self.fixed_party_type
            if step.party_type and self.fixed_party_type and step.party_type != self.fixed_party_type:
                ctx.error(("party_type",), f"this mapping is for {self.fixed_party_type} parties only")
            step.compile(ctx)
            out.extend((("steps", i, *rel), msg, sev) for rel, msg, sev in ctx.problems)
        ctx.problems = []
        ctx.party_type = self.fixed_party_type
        for key in ("external_id", "key_field"):
            txt = getattr(spec, key)
            if txt:
                _compile_path(ctx, (key,), txt, canonical=False)
        if spec.modified_at:
            self._modified = _compile_path(ctx, ("modified_at", "vendor"), spec.modified_at.vendor, canonical=False)
            for j, t in enumerate(spec.modified_at.transform):
                try:
                    self._modified_chain.append((build_transform(_spec_arg(t), direction="in"), "in"))
                except MappingError as exc:
                    ctx.error(("modified_at", "transform", j), exc.message)
        if spec.deleted_when:
            self._deleted = _compile_path(ctx, ("deleted_when", "vendor"), spec.deleted_when.vendor, canonical=False)
        if isinstance(spec.party_type, PartyTypeRule):
            self._type_rule = _compile_path(ctx, ("party_type", "vendor"), spec.party_type.vendor, canonical=False)
        out.extend(ctx.problems)
        return out

    # ---- record helpers
    def external_id(self, raw: AbcMapping[str, Any]) -> str:
        """The vendor's id of ``raw``. Raises ValidationError when it is missing."""
        v = path_get(raw, self._external)
        if v is None or v == "":
            raise ValidationError(f"record has no id at {self._external.text}", field=self._external.text,
                                  code="missing_id", where=self._where())
        return str(v)

    def modified_at(self, raw: AbcMapping[str, Any]) -> datetime | None:
        """The vendor's last-modified time of ``raw`` as an aware UTC datetime (None when the mapping has none)."""
        if self._modified is None:
            return None
        v = path_get(raw, self._modified)
        if v is None:
            return None
        try:
            out = run_chain(self._modified_chain, v, self.tctx)
        except TransformError as exc:
            raise ValidationError(f"{self._modified.text}: {exc}", field=self._modified.text,
                                  code="bad_modified_at", where=self._where()) from None
        if not isinstance(out, datetime) or out.tzinfo is None:
            raise ValidationError(f"{self._modified.text}: not an aware date-time after its transforms",
                                  field=self._modified.text, code="bad_modified_at", where=self._where())
        return out

    def is_deleted(self, raw: AbcMapping[str, Any]) -> bool:
        """Whether ``raw`` is a deletion per ``deleted_when``."""
        if self._deleted is None or self.spec.deleted_when is None:
            return False
        v = path_get(raw, self._deleted)
        return any(ConsentStep._same(v, x) for x in self.spec.deleted_when.values)

    def _where(self) -> str:
        return f"mapping {self.spec.system}/{self.spec.object} v{self.spec.version}"

    def _steps(self, direction: str) -> list[tuple[int, _Step]]:
        return [(i, s) for i, s in enumerate(self.spec.steps) if s.runs(direction)]

    def vendor_paths(self, direction: Literal["in", "out"] = "in") -> list[Path]:
        """Every vendor path the steps of ``direction`` read or write, nested ones whole (``crmbridge doctor``
        looks for them in real records)."""
        seen: dict[str, Path] = {}
        for _, step in self._steps(direction):
            for p in step.vendor_paths():
                seen.setdefault(str(p), p)
        return list(seen.values())

    def vendor_fields(self, direction: Literal["in", "out"] = "in") -> list[str]:
        """Top-level vendor field names read (``in``: the ``fields=`` of a Zoho read) or written (``out``)."""
        seen: dict[str, None] = {}
        if direction == "in":
            for p in (self._external, self._modified, self._deleted, self._type_rule, self._key):
                if p is not None:
                    seen.setdefault(p.head)
        elif self._key is not None:
            seen.setdefault(self._key.head)
        if direction == "out" and self._type_rule is not None:
            seen.setdefault(self._type_rule.head)
        for _, step in self._steps(direction):
            for p in step.vendor_paths():
                seen.setdefault(p.head)
        return list(seen)

    def owned_canonical_paths(self, direction: Literal["in", "out"] = "in") -> list[str]:
        """Canonical paths the mapping writes (``in``) or reads (``out``), selectors included."""
        seen: dict[str, None] = {}
        if direction == "in":
            seen.setdefault("party_type")
            if self.source_system:
                seen.setdefault(f"source_refs[system={self.source_system}].system_id")
        for _, step in self._steps(direction):
            for p in step.canonical_paths():
                seen.setdefault(p.text)
        return list(seen)

    # ---- in
    def _party_type(self, raw: AbcMapping[str, Any], rec: _InRecord) -> str | None:
        rule = self.spec.party_type
        if isinstance(rule, str):
            return rule
        v = path_get(raw, self._type_rule) if self._type_rule else None
        if v is None or v == "":
            if rule.default is None:
                rec.problem(rule.vendor, "party_type", REQUIRED_MISSING)
            return rule.default
        key = str(plain_value(v)).strip()
        if key not in rule.map:
            rec.problem(rule.vendor, "party_type", f"unknown party type code {key!r}")
            return None
        return rule.map[key]

    def _run_in(self, raw: AbcMapping[str, Any], party_id: uuid.UUID | None) -> _InRecord:
        if not isinstance(raw, AbcMapping):
            raise ValidationError("a vendor record must be a JSON object", code="bad_record", where=self._where())
        rec = _InRecord(self, raw)
        ptype = self._party_type(raw, rec)
        if ptype:
            rec.canon["party_type"] = ptype
        pid = party_id
        if pid is None and self._key is not None:
            key = path_get(raw, self._key)
            if key not in (None, ""):
                try:
                    pid = uuid.UUID(str(key))
                except ValueError:
                    rec.problem(self._key.text, "party_id", "not a crmbridge party id (UUID)")
        if pid is not None:
            rec.canon["party_id"] = pid
        ext = path_get(raw, self._external)
        if ext in (None, ""):
            rec.problem(self._external.text, "source_refs[].system_id", "record has no id")
        elif self.source_system:
            ref: dict[str, Any] = {"system": self.source_system, "system_id": str(ext)}
            try:
                mod = self.modified_at(raw)
            except ValidationError as exc:
                rec.problem(self._modified.text if self._modified else None, "source_refs[].source_updated_at",
                            exc.message)
                mod = None
            if mod is not None:
                ref["source_updated_at"] = mod
                rec.modified = mod
            rec.canon["source_refs"] = [ref]
        for i, step in self._steps("in"):
            if step.applies_to(ptype):
                rec.step_no = i
                step.apply_in(rec)
        return rec

    def _raise(self, problems: list[tuple[str | None, str, str]], *, code: str = "mapping_failed") -> None:
        text = "; ".join(f"{v or '?'} → {c}: {m}" for v, c, m in problems)
        err = ValidationError(text, field=problems[0][0], code=code, where=self._where())
        err.problems = problems  # type: ignore[attr-defined]
        err.canonical_path = problems[0][1]  # type: ignore[attr-defined]
        raise err

    def map_in(self, raw: AbcMapping[str, Any], *, party_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Map one vendor record to a canonical dict (not yet validated by the model).

        Raises:
            ValidationError: every problem of the record in one message (vendor field → canonical path: what;
                values masked); ``field`` is the first vendor field at fault.
        """
        rec = self._run_in(raw, party_id)
        if rec.problems:
            self._raise(rec.problems)
        return rec.canon

    def map_in_partial(self, raw: AbcMapping[str, Any], *, party_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Map what a record carries, for a two-way merge: a required value that is missing is not an error here
        (a CRM never gets some fields back, e.g. the full name it only saw masked; the merge keeps the last synced
        value), every other problem still raises as in :meth:`map_in`."""
        rec = self._run_in(raw, party_id)
        problems = [p for p in rec.problems if p[2] != REQUIRED_MISSING]
        if problems:
            self._raise(problems)
        return rec.canon

    def trace_in(self, raw: AbcMapping[str, Any], *, party_id: uuid.UUID | None = None
                 ) -> tuple[dict[str, Any], list[TraceRow]]:
        """Like :meth:`map_in`, also returning what each step read and wrote (for previews)."""
        rec = self._run_in(raw, party_id)
        if rec.problems:
            self._raise(rec.problems)
        return rec.canon, rec.trace

    def to_party(self, raw: AbcMapping[str, Any], *, party_id: uuid.UUID | None = None) -> Any:
        """Map one vendor record and validate it into an ``Individual`` or ``Organisation``.

        Raises:
            ValidationError: mapping or model validation failed; ``field`` names the vendor field, the message the
                canonical path, values masked.
        """
        rec = self._run_in(raw, party_id)
        if rec.problems:
            self._raise(rec.problems)
        return self._validate(rec)

    def _validate(self, rec: _InRecord) -> Any:
        from crmbridge.canonical.model import AnyParty

        adapter = _party_adapter(AnyParty)
        try:
            return adapter.validate_python(rec.canon)
        except PydanticValidationError as exc:
            problems = [self._locate(rec, e) for e in exc.errors(include_url=False, include_input=False)]
            self._raise(problems, code=str(exc.errors()[0]["type"]) if exc.errors() else "invalid")
        except ValidationError as exc:  # a validator raising crmbridge's own error
            self._raise([(exc.field, exc.field or "?", exc.message)], code=exc.code or "invalid")
        raise AssertionError("unreachable")  # pragma: no cover

    def _locate(self, rec: _InRecord, err: Any) -> tuple[str | None, str, str]:
        loc = list(err.get("loc", ()))
        while loc and not (isinstance(loc[0], str) and loc[0] in rec.canon):
            loc.pop(0)
        extra = (err.get("ctx") or {}).get("field")
        if isinstance(extra, str) and extra:
            try:
                loc.extend(op.name if isinstance(op, PathKey) else op.index if isinstance(op, PathIndex) else 0
                           for op in parse_path(extra).ops)
            except ValueError:
                pass
        tloc = tuple(loc)
        best: tuple[str | int, ...] | None = None
        for key in rec.provenance:
            if tloc[:len(key)] == key or key[:len(tloc)] == tloc:
                if best is None or len(key) > len(best):
                    best = key
        msg = str(err.get("msg", "invalid"))
        if best is not None:
            vendor, ctext, raw, kind = rec.provenance[best]
            # the model's message might quote the value: replace it by its masked form
            for v in (raw, path_get_loc(rec.canon, best)):
                if isinstance(v, str) and len(v) > 1 and v in msg:
                    msg = msg.replace(v, _show(v, kind))
            return vendor, ctext, f"{msg} (value {_show(raw, kind)})"
        return None, _keypath(tloc) or "(record)", msg

    # ---- out
    def map_out(self, party: Any) -> dict[str, Any]:
        """Build the vendor payload for ``party`` (an Individual/Organisation or a canonical dict).

        The key field gets ``party_id``. C2 values are minimised per the steps (masks, consent conditions).

        Raises:
            ValidationError: the party does not fit this mapping, or a mandatory vendor field has no value.
        """
        payload, _ = self.trace_out(party)
        return payload

    def trace_out(self, party: Any) -> tuple[dict[str, Any], list[TraceRow]]:
        """Like :meth:`map_out`, also returning what each step read and wrote (for previews)."""
        data = party.model_dump(mode="python") if isinstance(party, BaseModel) else dict(party)
        data = _unsecret(data)
        rec = _OutRecord(self, data)
        ptype = plain_value(data.get("party_type"))
        fixed = self.fixed_party_type
        if fixed and ptype and ptype != fixed:
            raise ValidationError(f"this mapping is for {fixed} parties, not {ptype}", field="party_type",
                                  code="wrong_party_type", where=self._where())
        if self._key is not None:
            pid = data.get("party_id")
            if pid is None:
                rec.problem(self._key.text, "party_id", "the party has no party_id for the key field")
            else:
                rec.put(self._key, str(pid), "party_id", pid, None)
        rule = self.spec.party_type
        if isinstance(rule, PartyTypeRule) and self._type_rule is not None and ptype:
            code = next((k for k, v in rule.map.items() if v == ptype), None)
            if code is not None:
                rec.put(self._type_rule, code, "party_type", ptype, None)
        for i, step in self._steps("out"):
            if step.applies_to(ptype):
                rec.step_no = i
                step.apply_out(rec)
        if rec.problems:
            self._raise(rec.problems)
        return rec.payload, rec.trace


_ADAPTERS: dict[int, Any] = {}


def _party_adapter(any_party: Any) -> Any:
    from pydantic import TypeAdapter

    key = id(any_party)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(any_party)
    return _ADAPTERS[key]


def path_get_loc(obj: Any, loc: Sequence[str | int]) -> Any:
    cur = obj
    for p in loc:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _unsecret(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _unsecret(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_unsecret(x) for x in v]
    if isinstance(v, SecretStr | SecretBytes):
        return v.get_secret_value()
    return v


# ==============================================================================================================
# loading and checking


def _structural(data: Any, file: str, lines: dict[tuple[str | int, ...], int]
                ) -> tuple[MappingSpec | None, list[MappingProblem]]:
    if not isinstance(data, dict):
        return None, [MappingProblem(file, 1, "", "a mapping file is a YAML mapping with system, object, steps…")]
    try:
        return MappingSpec.model_validate(data), []
    except PydanticValidationError as exc:
        grouped: dict[tuple[str | int, ...], list[str]] = {}
        for err in exc.errors():
            aligned = _align(data, err["loc"])
            msg = _friendly(err, data, aligned)
            msgs = grouped.setdefault(aligned, [])
            if msg not in msgs:
                msgs.append(msg)
        problems = [MappingProblem(file, _line_for(lines, path), _keypath(path), " or ".join(msgs))
                    for path, msgs in grouped.items()]
        return None, problems


def _semantic(m: Mapping) -> list[tuple[tuple[str | int, ...], str, str]]:
    spec = m.spec
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    try:
        from crmbridge.adapters.registry import adapter_names

        known = adapter_names()
        if spec.system not in known:
            out.append((("system",), f"unknown system {spec.system!r}; known: {', '.join(sorted(known))}", "error"))
    except Exception:  # pragma: no cover - the registry is optional here
        pass
    if _model_classes() is None:
        out.append(((), "the canonical model (crmbridge.canonical.model) is not importable: canonical paths "
                        "were not checked", "warning"))
    # code tables: canonical values valid, inverse unambiguous where the out direction uses it, coverage
    classes = _model_classes()
    ctx = _CompileContext(code_tables=spec.code_tables, party_type=m.fixed_party_type, system=spec.system)
    for name, table in spec.code_tables.items():
        if table.vendor_values is not None:
            for v in table.vendor_values:
                if v not in table.map:
                    out.append((("code_tables", name, "vendor_values"),
                                f"vendor value {v!r} is not covered by map", "error"))
    for i, step in enumerate(spec.steps):
        ctx.party_type = step.party_type or m.fixed_party_type
        table_name = step.table if isinstance(step, CodeStep) else None
        tables = [table_name] if table_name else []
        if isinstance(step, _ValueStep):
            tables += [t.table for t, _ in (*step._in_chain, *step._out_chain)
                       if isinstance(t, CodeTransform) and t.table != table_name]
        for tname in dict.fromkeys(tables):
            table = spec.code_tables.get(tname)
            if table is None or not isinstance(step, _ValueStep) or step._cpath is None:
                continue
            leaf = _canonical_leaf(ctx, step._cpath) if classes else None
            allowed = leaf.allowed if leaf else None
            if allowed:
                for vendor, canon in table.map.items():
                    if canon not in allowed:
                        out.append((("code_tables", tname, "map", vendor),
                                    f"{canon!r} is not a valid {step._cpath.text} "
                                    f"(valid: {', '.join(sorted(allowed))})",
                                    "error"))
                for canon in table.out:
                    if canon not in allowed:
                        out.append((("code_tables", tname, "out", canon),
                                    f"{canon!r} is not a valid {step._cpath.text}", "error"))
            if step.runs("out"):
                inv, ambiguous = table.inverse()
                for canon in sorted(ambiguous):
                    out.append((("code_tables", tname, "map"),
                                f"{canon!r} comes from several vendor values; say which to write under out:", "error"))
                if allowed:
                    missing = sorted(a for a in allowed if a not in inv)
                    if missing:
                        out.append((("steps", i, "table"),
                                    f"code table {tname!r} does not cover {', '.join(missing)} for the out direction "
                                    f"({step._cpath.text} can hold them)", "error"))
    # a unique_masked value flowing back in must be dropped, never read as the canonical value
    for i, step in enumerate(spec.steps):
        if not isinstance(step, UniqueMaskedStep) or step._vpath is None:
            continue
        for j, other in enumerate(spec.steps):
            if not (isinstance(other, _ValueStep) and other.runs("in")):
                continue
            if step._vpath.text not in (p.text for p in other._vpaths):
                continue
            drops = any(isinstance(t, DropMasked) for t, _ in other._in_chain)
            if not (drops and step.carries_mask_marker):
                out.append((("steps", j), f"reads {step._vpath.text}, which steps[{i}] (unique_masked) writes: "
                                          "put drop_masked in its in: chain, and mask a part of that value "
                                          "(without last:) so it is recognised", "error"))
    # mandatory vendor fields
    mandatory = MANDATORY_VENDOR_FIELDS.get((spec.system, spec.object), ())
    if mandatory and any(s.runs("out") for s in spec.steps):
        written = set(m.vendor_fields("out"))
        for f in mandatory:
            if f not in written:
                out.append((("steps",), f"mandatory {spec.system} {spec.object} field {f!r} is not mapped in the "
                                        "out direction", "error"))
    if spec.system in CRM_SYSTEMS and spec.key_field is None:
        out.append((("key_field",), "a CRM mapping needs key_field (the vendor field holding party_id) for "
                                    "idempotent upserts", "error"))
    return out


def check_mapping_file(path: str | FsPath, *, display: str | None = None
                       ) -> tuple[Mapping | None, list[MappingProblem]]:
    """Load and check one mapping file, returning the mapping (None when it cannot be built) and every problem."""
    p = FsPath(path)
    file = display or str(path)
    try:
        raw = read_bounded(p)
    except OSError as exc:
        return None, [MappingProblem(file, None, "", f"cannot read the file: {exc.strerror or exc}")]
    if (too_big := size_problem(len(raw))) is not None:
        return None, [MappingProblem(file, None, "", too_big)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [MappingProblem(file, None, "", f"not UTF-8 ({exc.reason} at byte {exc.start})")]
    data, lines, problems = _load_yaml(text, file)
    if problems and data is None:
        return None, problems
    spec, structural = _structural(data, file, lines)
    problems += structural
    index_map: list[int] | None = None
    if spec is None:
        # keep going with the steps that are well-formed, so one run reports every problem
        spec, index_map = _partial_spec(data)
        if spec is None:
            return None, problems
    m = Mapping(spec, path=str(path), version_hash=hashlib.sha256(raw).hexdigest(), lines=lines)
    for rel, msg, sev in (*m._compile(), *_semantic(m)):
        if index_map is not None and len(rel) >= 2 and rel[0] == "steps" and isinstance(rel[1], int):
            rel = ("steps", index_map[rel[1]], *rel[2:])
        problems.append(MappingProblem(file, _line_for(lines, rel), _keypath(rel), msg,
                                       "warning" if sev == "warning" else "error"))
    problems.sort(key=lambda pr: (pr.line or 0, pr.path))
    return (m if index_map is None else None), problems


def _partial_spec(data: Any) -> tuple[MappingSpec | None, list[int]]:
    """The spec with only its well-formed steps (and their original indices), or None if the header is broken."""
    if not isinstance(data, dict):
        return None, []
    from pydantic import TypeAdapter

    step_adapter: TypeAdapter[Any] = TypeAdapter(Step)
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    good: list[Any] = []
    index_map: list[int] = []
    for i, st in enumerate(raw_steps):
        try:
            step_adapter.validate_python(st)
        except PydanticValidationError:
            continue
        good.append(st)
        index_map.append(i)
    try:
        return MappingSpec.model_validate({**data, "steps": good}), index_map
    except PydanticValidationError:
        return None, []


def load_mapping(path: str | FsPath) -> Mapping:
    """Load, check and compile a mapping file.

    Raises:
        MappingLoadError: (a MappingError) with every problem, each located ``file:line: key.path: message``.
    """
    m, problems = check_mapping_file(path)
    errors = [p for p in problems if p.severity == "error"]
    if errors or m is None:
        raise MappingLoadError(errors or problems)
    return m


def validate_against(mapping: Mapping, fields: Iterable[FieldInfo], *,
                     filled: Iterable[str] = ()) -> list[MappingProblem]:
    """Check a mapping against the vendor's field metadata (``crmbridge mapping validate --against SYSTEM``).

    Reports vendor fields that do not exist, read-only fields written on the way out, vendor-required fields the out
    direction does not write (but those in ``filled``, which the adapter fills itself), and code-table values that
    are not in the vendor picklist (and picklist values the in direction cannot read).
    """
    by_name = {f.name: f for f in fields}
    file = mapping.path
    problems: list[MappingProblem] = []

    def add(rel: tuple[str | int, ...], msg: str) -> None:
        problems.append(MappingProblem(file, _line_for(mapping.lines, rel), _keypath(rel), msg))

    spec = mapping.spec
    for key, p in (("external_id", mapping._external), ("key_field", mapping._key),
                   ("modified_at", mapping._modified), ("deleted_when", mapping._deleted)):
        if p is not None and p.head not in by_name and p.head not in ("id", "_id"):
            add((key,), f"{spec.system} {spec.object} has no field {p.head!r}")
    writes_out = any(s.runs("out") for s in spec.steps)
    for i, step in enumerate(spec.steps):
        for p in step.vendor_paths():
            info = by_name.get(p.head)
            if info is None:
                add(("steps", i, "vendor"), f"{spec.system} {spec.object} has no field {p.head!r}")
                continue
            if step.runs("out") and info.read_only:
                add(("steps", i, "vendor"), f"{p.head!r} is read-only in {spec.system}; use direction: in")
            table = spec.code_tables.get(step.table) if isinstance(step, CodeStep) else None
            if table is not None and info.picklist is not None:
                pick = set(info.picklist)
                if step.runs("out"):
                    inv, _ = table.inverse()
                    for canon, vendor in inv.items():
                        if vendor not in pick:
                            add(("code_tables", step.table),
                                f"{vendor!r} (for {canon}) is not a {p.head} picklist value")
                if step.runs("in"):
                    for v in info.picklist:
                        if v not in table.map:
                            add(("code_tables", step.table), f"{p.head} picklist value {v!r} is not covered by map")
    if writes_out:
        written = set(mapping.vendor_fields("out")) | set(filled)
        for f in fields:
            if f.required and not f.read_only and f.name not in written:
                add(("steps",), f"{spec.system} requires {f.name!r} but the out direction does not write it")
    return problems
