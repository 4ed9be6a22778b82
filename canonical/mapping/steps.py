"""The mapping language: the ``type:``-tagged steps, each with one ``apply_in`` and one ``apply_out``."""

from __future__ import annotations

import string
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from crmbridge.canonical.mapping.introspect import _classes_for, _Leaf, resolve_canonical
from crmbridge.canonical.mapping.policy import _ORG_SCHEMES, _crm_projection, _show, mask_kind_for
from crmbridge.canonical.mapping.profile import TargetProfile
from crmbridge.canonical.model import (
    INDIVIDUAL_SEGMENTS,
    LifecycleStage,
    SegmentCode,
)
from crmbridge.canonical.transforms import (
    AumBand,
    CodeTable,
    CodeTransform,
    Mask,
    Transform,
    TransformError,
    build_transform,
    run_chain,
)
from crmbridge.core.errors import MappingError
from crmbridge.core.masking import MASK_KINDS, mask
from crmbridge.core.paths import Path, PathKey, parse_path, path_get, path_set, plain_value

if TYPE_CHECKING:
    from crmbridge.canonical.mapping.engine import Mapping


#: the problem text of a required value that is missing (``map_in_partial`` tolerates it)
REQUIRED_MISSING = "required value missing"


Direction = Literal["in", "out", "both"]


PartyTypeName = Literal["INDIVIDUAL", "ORGANISATION"]


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
    profile: TargetProfile
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


def _as_text(v: Any) -> str | None:
    v = plain_value(v)
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip()


class StepCondition(BaseModel):
    """``when:`` on a step: run the step only if a vendor or canonical value matches.

    A ``vendor`` path is read from the vendor record on the way in and from the payload built so far on the way
    out; a ``canonical`` path from the canonical record built so far on the way in and from the party on the way
    out. Values compare as trimmed text (``1`` matches ``"1"``, ``true`` matches ``"true"``). Give exactly one of
    ``equals``, ``in``, ``not_in``, ``present``.

    Example (a passport number only when the ID-type field says so)::

        - type: identifier
          vendor: ID_NO
          scheme: PASSPORT
          direction: in
          when: {vendor: ID_TYPE, in: ["03", "04"]}
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    vendor: str | None = Field(default=None, description="Vendor path whose value decides.")
    canonical: str | None = Field(default=None, description="Canonical path whose value decides.")
    equals: Any = Field(default=None, description="Run when the value equals this.")
    in_: list[Any] | None = Field(default=None, alias="in", description="Run when the value is one of these.")
    not_in: list[Any] | None = Field(default=None, description="Run when the value is none of these (or missing).")
    present: bool | None = Field(default=None, description="true: run when a value is there; false: when not.")

    _path: Path | None = PrivateAttr(default=None)
    _tests: int = PrivateAttr(default=0)

    def compile(self, ctx: _CompileContext, rel: tuple[str | int, ...]) -> None:
        if (self.vendor is None) == (self.canonical is None):
            ctx.error(rel, "when: needs exactly one of vendor or canonical")
            return
        given = [k for k in ("equals", "in_", "not_in", "present") if k in self.model_fields_set]
        if len(given) != 1:
            ctx.error(rel, "when: needs exactly one of equals, in, not_in, present")
        if self.vendor is not None:
            self._path = _compile_path(ctx, (*rel, "vendor"), self.vendor, canonical=False)
        else:
            assert self.canonical is not None
            self._path = _compile_path(ctx, (*rel, "canonical"), self.canonical, canonical=True)
            leaf = _canonical_leaf(ctx, self._path) if self._path else None
            values = [self.equals] if "equals" in self.model_fields_set else (self.in_ or self.not_in or [])
            if leaf and leaf.allowed:
                for v in values:
                    if _as_text(v) not in leaf.allowed:
                        ctx.error((*rel, "equals" if "equals" in self.model_fields_set else
                                   ("in" if self.in_ is not None else "not_in")),
                                  f"{v!r} is not a valid {self.canonical} (valid: {', '.join(sorted(leaf.allowed))})")

    def holds(self, value: Any) -> bool:
        text = _as_text(value)
        missing = text is None or text == ""
        if self.present is not None:
            return self.present != missing
        if self.not_in is not None:
            return missing or text not in {_as_text(x) for x in self.not_in}
        if missing:
            return False
        if self.in_ is not None:
            return text in {_as_text(x) for x in self.in_}
        return text == _as_text(self.equals)

    def holds_in(self, rec: _InRecord) -> bool:
        if self._path is None:
            return True
        return self.holds(path_get(rec.raw if self.vendor is not None else rec.canon, self._path))

    def holds_out(self, rec: _OutRecord) -> bool:
        if self._path is None:
            return True
        return self.holds(path_get(rec.payload if self.vendor is not None else rec.party, self._path))


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str | None = Field(default=None, description="What the step is for (shown in previews).")
    direction: Direction = Field(default="both", description="in (vendor → canonical), out, or both.")
    party_type: PartyTypeName | None = Field(default=None, description=(
        "Run the step only for parties of this type (mappings whose party type is decided per record)."))
    when: StepCondition | None = Field(default=None, description=(
        "Run the step only if a vendor or canonical value matches (equals, in, not_in, present)."))

    def runs(self, direction: str) -> bool:
        return self.direction in (direction, "both")

    def applies_to(self, party_type: Any) -> bool:
        """Whether the step runs for a party of ``party_type`` (always, unless the step names a type)."""
        return self.party_type is None or party_type is None or plain_value(party_type) == self.party_type

    def compile_all(self, ctx: _CompileContext) -> None:
        """:meth:`compile` and the ``when:`` condition."""
        self.compile(ctx)
        if self.when is not None:
            self.when.compile(ctx, ("when",))

    def compile(self, ctx: _CompileContext) -> None:
        """Parse paths and build transform chains; report problems through ``ctx`` (relative key paths)."""

    def when_vendor_paths(self) -> list[Path]:
        """The vendor path a ``when:`` reads (the in direction reads it from the record)."""
        w = self.when
        return [w._path] if w is not None and w.vendor is not None and w._path is not None else []

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
        errors = []
        for cls in _classes_for(ctx.party_type):
            try:
                resolve_canonical(cls, p)
                return p
            except ValueError as exc:
                errors.append(str(exc))
        ctx.error(rel, f"unknown canonical path {text!r}: {errors[0]}")
        return None
    return p


_INDIVIDUAL_SEGMENTS = frozenset(str(s) for s in INDIVIDUAL_SEGMENTS)


_ORG_SEGMENTS = frozenset(str(s) for s in SegmentCode) - _INDIVIDUAL_SEGMENTS


#: enum values a party of one type cannot hold (the model's cross-field rules), so code tables need not cover them.
_EXCLUDED_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("segment.code", "INDIVIDUAL"): _ORG_SEGMENTS,
    ("segment.code", "ORGANISATION"): _INDIVIDUAL_SEGMENTS,
    ("lifecycle_stage", "INDIVIDUAL"): frozenset({str(LifecycleStage.DISSOLVED)}),
    ("lifecycle_stage", "ORGANISATION"): frozenset({str(LifecycleStage.DECEASED)}),
}


def _canonical_leaf(ctx: _CompileContext, p: Path) -> _Leaf | None:
    for cls in _classes_for(ctx.party_type):
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
            self._mask_out = self.default_out_mask() if ctx.profile.is_crm else None
        if len(self._vpaths) > 1 and self.direction != "in" and not any(
                getattr(t, "name", "") == "join_name" for t, _ in self._out_chain):
            ctx.error(("vendor",), "several vendor paths on the way out need a transform that returns a list "
                                   "(join_name), or direction: in")
        self._label = self._vendor_label()
        self._check_minimisation(ctx)

    def _canonical_rel(self) -> tuple[str | int, ...]:
        return ("canonical",)

    def _check_minimisation(self, ctx: _CompileContext) -> None:
        if not ctx.profile.is_crm or not self.runs("out") or self._cpath is None:
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
        return self._kind or "generic"

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
        return self._kind or "generic"

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


def _compile_part(ctx: _CompileContext, rel: tuple[str | int, ...], part: UniquePart) -> tuple[Path | None, bool]:
    """Check one part of a built value (unique_masked, format): its path, its mask, the CRM projection.
    Returns the compiled path and whether the part is a unique key in full."""
    cpath = _compile_path(ctx, (*rel, "canonical"), part.canonical, canonical=True)
    if part.mask is not None and part.mask not in MASK_KINDS:
        ctx.error((*rel, "mask"), f"unknown mask kind {part.mask!r}; known: {', '.join(sorted(MASK_KINDS))}")
    if cpath is None:
        return None, False
    unique = cpath.template() in _UNIQUE_KEYS and part.mask is None and part.last is None
    if not ctx.profile.is_crm:
        return cpath, unique
    proj = _crm_projection(cpath, ctx.party_type)
    if cpath.template() == "identifiers[].value" and cpath.selector_value("scheme") in _ORG_SCHEMES:
        proj = "push"
    if proj in ("never", "derived", "internal"):
        ctx.error((*rel, "canonical"), f"{cpath.text} is not part of the CRM projection "
                                       f"({proj}; docs/canonical.md §3): it cannot be part of a value")
    elif proj == "masked":
        kind = mask_kind_for(cpath, ctx.party_type) or "generic"
        if part.mask is None:
            ctx.error((*rel, "canonical"), f"{cpath.text} is personal data (C2): give the part "
                                           f"mask: {kind} so only the minimised form goes out")
        elif part.mask != kind:
            ctx.error((*rel, "mask"), f"{cpath.text} is masked as {kind} in a CRM projection; "
                                      f"mask {part.mask!r} may show more of it")
    return cpath, unique


def _part_text(rec: _OutRecord, vpath: Path, part: UniquePart, cpath: Path | None, required: bool) -> str | None:
    """The text of one part (masked, cut), or None when it is empty (a record problem when ``required``)."""
    value = plain_value(path_get(rec.party, cpath)) if cpath is not None else None
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            rec.problem(vpath.text, part.canonical, "the vendor field is mandatory but this part of its value is "
                                                    "empty")
        return None
    if part.mask is not None:
        text = mask(part.mask, text)
    if part.last is not None:
        text = text[-part.last:]
    return text


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
            cpath, is_key = _compile_part(ctx, ("parts", i), part)
            self._cpaths.append(cpath)
            unique = unique or is_key
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
            text = _part_text(rec, vpath, part, cpath, self.required)
            if text is None:
                return
            pieces.append(text)
        value = self.separator.join(pieces)
        if self.max_length is not None and len(value) > self.max_length:
            rec.problem(vpath.text, labels, f"the value has {len(value)} characters, more than max_length "
                                            f"{self.max_length} (it is never cut: a cut value can collide)")
            return
        rec.put(vpath, value, labels, None, None, "unique minimised value")


class FormatStep(_Step):
    """Out only: one vendor field gets a text built from several canonical values by a template.

    ``template`` names the parts in braces (``{name}``); each part is a canonical value, masked and/or cut to its
    last characters like a ``unique_masked`` part, and ``validate`` applies the same checks (a personal part is
    masked for a CRM, nothing outside the CRM projection). Every placeholder must be a part and every part used.
    A missing part means no value (a record error when ``required``). Braces are doubled to write them: ``{{``.

    Example (a unique minimised display name)::

        - type: format
          vendor: Account_Name
          template: "{name} ({branch}-{key})"
          parts:
            name: {canonical: name.legal_zh, mask: name}
            branch: {canonical: home_branch.branch_code}
            key: {canonical: party_id}
          required: true                                  # → 张* (0101-6f1c2b0e-…)
    """

    type: Literal["format"]
    direction: Literal["out"] = Field(default="out", description="Always out: the value is built, never read.")
    vendor: str = Field(description="Vendor path the text is written to.")
    template: str = Field(min_length=1, description="The text with {part} placeholders.")
    parts: dict[str, UniquePart] = Field(min_length=1, description="The named values the template uses.")
    required: bool = Field(default=False, description="A missing part is a record error (default: field left out).")
    max_length: int | None = Field(default=None, ge=1, description="Longest value the vendor field takes.")

    _vpath: Path | None = PrivateAttr(default=None)
    _cpaths: dict[str, Path | None] = PrivateAttr(default_factory=dict)

    def vendor_paths(self) -> list[Path]:
        return [self._vpath] if self._vpath else []

    def canonical_paths(self) -> list[Path]:
        return [p for p in self._cpaths.values() if p is not None]

    def compile(self, ctx: _CompileContext) -> None:
        self._vpath = _compile_path(ctx, ("vendor",), self.vendor, canonical=False)
        try:
            fields = [(f, spec or conv) for _, f, spec, conv in string.Formatter().parse(self.template)
                      if f is not None]
            used = [f for f, _ in fields]
            bad = [f for f, odd in fields if odd]
        except ValueError as exc:
            ctx.error(("template",), f"bad template: {exc} (write a literal brace as {{{{ or }}}})")
            used, bad = [], []
        for f in bad:
            ctx.error(("template",), f"placeholder {{{f}}}: no format spec or conversion (the parts say how)")
        for f in dict.fromkeys(used):
            if f not in self.parts:
                ctx.error(("template",), f"placeholder {{{f}}} is not a part; parts: {', '.join(self.parts)}")
        for name, part in self.parts.items():
            if name not in used:
                ctx.error(("parts", name), f"part {name!r} is not used in the template")
            cpath, _ = _compile_part(ctx, ("parts", name), part)
            self._cpaths[name] = cpath

    def apply_in(self, rec: _InRecord) -> None:  # pragma: no cover - direction is always out
        return

    def apply_out(self, rec: _OutRecord) -> None:
        vpath = self._vpath
        if vpath is None:
            return
        texts: dict[str, str] = {}
        for name, part in self.parts.items():
            text = _part_text(rec, vpath, part, self._cpaths.get(name), self.required)
            if text is None:
                return
            texts[name] = text
        labels = " + ".join(p.canonical for p in self.parts.values())
        try:
            value = self.template.format(**texts)
        except (KeyError, IndexError, ValueError):
            rec.problem(vpath.text, labels, "the template does not fit its parts")
            return
        if self.max_length is not None and len(value) > self.max_length:
            rec.problem(vpath.text, labels, f"the value has {len(value)} characters, more than max_length "
                                            f"{self.max_length}")
            return
        rec.put(vpath, value, labels, None, None, "formatted")


class SelectStep(_Step):
    """One vendor value goes to the canonical path its sibling vendor field chooses.

    In: the ``by`` field's value picks a case and the value is mapped to that case's canonical path (a value with
    no case is a record error, or skipped with ``unknown: skip``). Out: the first case whose canonical path holds a
    value writes it to ``vendor`` and the case key to ``by``. An identifier or contact-point case masks on the way
    out like an ``identifier``/``contact`` step.

    Example (FLEXCUBE: the ID scheme comes from the record's ID-type field)::

        - type: select
          vendor: IDNUMBER
          by: IDTYPE
          cases:
            "01": identifiers[scheme=CN_RIC].value
            "02": identifiers[scheme=PASSPORT].value
            "03": identifiers[scheme=HK_MO_PERMIT].value
          transform: [trim, upper]
    """

    type: Literal["select"]
    vendor: str = Field(description="Vendor path of the value.")
    by: str = Field(description="Vendor path of the sibling field whose value chooses the case.")
    cases: dict[str, str] = Field(min_length=1, description="Value of 'by' → canonical path of the value.")
    unknown: Literal["error", "skip"] = Field(default="error", description=(
        "In: a 'by' value with no case is a record error (error) or leaves the value out (skip)."))
    transform: list[TransformSpec] = Field(default_factory=list, description="Transforms for both directions.")
    in_: list[TransformSpec] = Field(default_factory=list, alias="in", description="Extra in transforms.")
    out: list[TransformSpec] = Field(default_factory=list, description="Extra out transforms.")
    required: bool = Field(default=False, description="A missing value is a record error.")
    out_mask: str | None = Field(default=None, description="Mask kind applied last on the way out ('none': clear).")
    unmasked_reason: str | None = Field(default=None, description="Out to a CRM: why a C2 value goes in clear.")

    _case_steps: dict[str, _ValueStep] = PrivateAttr(default_factory=dict)
    _vpath: Path | None = PrivateAttr(default=None)
    _bypath: Path | None = PrivateAttr(default=None)

    def vendor_paths(self) -> list[Path]:
        return [p for p in (self._vpath, self._bypath) if p is not None]

    def canonical_paths(self) -> list[Path]:
        return [p for st in self._case_steps.values() for p in st.canonical_paths()]

    def _case_step(self, canonical: str) -> _ValueStep:
        common: dict[str, Any] = {
            "vendor": self.vendor, "transform": self.transform, "in": self.in_, "out": self.out,
            "out_mask": self.out_mask, "unmasked_reason": self.unmasked_reason, "direction": self.direction,
            "description": self.description}
        try:
            p = parse_path(canonical)
        except ValueError:
            p = None
        if p is not None and p.template() == "identifiers[].value" and p.selector_value("scheme"):
            return IdentifierStep(type="identifier", scheme=p.selector_value("scheme"), **common)
        if p is not None and p.template() == "contact_points[].value" and p.selector_value("type"):
            return ContactStep(type="contact", contact_type=p.selector_value("type"), **common)
        return FieldStep(type="field", canonical=canonical, **common)

    def compile(self, ctx: _CompileContext) -> None:
        self._vpath = _compile_path(ctx, ("vendor",), self.vendor, canonical=False)
        self._bypath = _compile_path(ctx, ("by",), self.by, canonical=False)
        seen: set[tuple[tuple[str | int, ...], str]] = set()
        outer = ctx.problems
        for key, canonical in self.cases.items():
            ctx.problems = []
            step = self._case_step(canonical)
            step.compile(ctx)
            for rel, msg, sev in ctx.problems:
                rel = ("cases", key) if rel[:1] in (("canonical",), ("scheme",), ("contact_type",)) else rel
                if (rel, msg) not in seen:
                    seen.add((rel, msg))
                    outer.append((rel, msg, sev))
            self._case_steps[key] = step
        ctx.problems = outer

    def apply_in(self, rec: _InRecord) -> None:
        if self._bypath is None or self._vpath is None:
            return
        key = _as_text(path_get(rec.raw, self._bypath))
        if not key:
            value = path_get(rec.raw, self._vpath)
            if value not in (None, "") or self.required:
                rec.problem(self._bypath.text, "(select)", f"no {self._bypath.text} value to choose where "
                                                           f"{self._vpath.text} goes")
            return
        step = self._case_steps.get(key)
        if step is None:
            if self.unknown == "error":
                rec.problem(self._bypath.text, "(select)", f"{self._bypath.text} value {key!r} has no case "
                                                           f"(cases: {', '.join(self.cases)})")
            return
        if self.required:
            step.required = True
        step.apply_in(rec)

    def apply_out(self, rec: _OutRecord) -> None:
        if self._bypath is None:
            return
        for key, step in self._case_steps.items():
            cpath = step._cpath
            if cpath is None or path_get(rec.party, cpath) in (None, ""):
                continue
            step.apply_out(rec)
            rec.put(self._bypath, key, "(select)", None, None, f"case of {cpath.text}")
            return
        if self.required:
            rec.problem(self._vpath.text if self._vpath else self.vendor, "(select)",
                        "the vendor field is mandatory but no case has a value")


Step = Annotated[FieldStep | CodeStep | IdentifierStep | ContactStep | ConsentStep | ConstantStep | UniqueMaskedStep
                 | FormatStep | SelectStep, Field(discriminator="type")]


STEP_TYPES: dict[str, type[_Step]] = {"field": FieldStep, "code": CodeStep, "identifier": IdentifierStep,
                                      "contact": ContactStep, "consent": ConsentStep, "constant": ConstantStep,
                                      "unique_masked": UniqueMaskedStep, "format": FormatStep,
                                      "select": SelectStep}
