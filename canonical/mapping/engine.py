"""The :class:`Mapping`: a loaded, checked mapping that maps records in and parties out."""

from __future__ import annotations

import collections.abc
import decimal
import enum
import types
import typing
import uuid
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
    SecretBytes,
    SecretStr,
    TypeAdapter,
)
from pydantic import ValidationError as PydanticValidationError

from crmbridge.canonical.mapping.compiled import CompiledMapping
from crmbridge.canonical.mapping.introspect import model_key
from crmbridge.canonical.mapping.policy import _show
from crmbridge.canonical.mapping.profile import UNDECLARED, TargetProfile
from crmbridge.canonical.mapping.spec import MappingSpec, PartyTypeRule
from crmbridge.canonical.mapping.steps import (
    REQUIRED_MISSING,
    ConsentStep,
    TraceRow,
    _compile_path,
    _CompileContext,
    _InRecord,
    _OutRecord,
    _spec_arg,
    _Step,
)
from crmbridge.canonical.mapping.yamlio import keypath
from crmbridge.canonical.model import (
    AnyParty,
    Individual,
    Organisation,
)
from crmbridge.canonical.objects import ID_FIELDS, object_classes
from crmbridge.canonical.transforms import (
    Transform,
    TransformContext,
    TransformError,
    build_transform,
    run_chain,
)
from crmbridge.core.errors import MappingError, ValidationError
from crmbridge.core.paths import Path, PathIndex, PathKey, parse_path, path_get, plain_value
from crmbridge.core.paths import try_path as _try_path


class Mapping:
    """A loaded, checked mapping: the engine other parts call.

    Attributes:
        spec: the parsed :class:`MappingSpec`.
        path: the file it came from.
        version_hash: SHA-256 (hex) of the file's bytes, recorded in the ledger with every mapped record.
        text: the file's text as loaded (``None`` for a mapping built in memory).
        profile: the target system's :class:`TargetProfile` (none given: a CRM, personal data minimised).
    """

    def __init__(self, spec: MappingSpec, *, path: str, version_hash: str,
                 lines: dict[tuple[str | int, ...], int] | None = None,
                 profile: TargetProfile = UNDECLARED, text: str | None = None) -> None:
        self.spec = spec
        #: the file's text as loaded (what ``version_hash`` hashes), archived per version in the state store
        self.text = text
        self.profile = profile
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
        self._plan: CompiledMapping | None = None
        self._owned: dict[str, list[str]] = {}

    @property
    def plan(self) -> CompiledMapping:
        """The mapping compiled into per-record closures (:mod:`~crmbridge.canonical.mapping.compiled`): built at
        load by :func:`~crmbridge.canonical.mapping.loader.load_mapping`, else on first use."""
        plan = self._plan
        if plan is None:
            plan = self._plan = CompiledMapping(self)
        return plan

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

    # ---- the canonical object (``canonical:``; issue 20): Party by default, else Holding, Interaction...
    @property
    def canonical(self) -> str:
        """The canonical object the mapping maps (``Party``, ``Holding``, ``Interaction``, ``CampaignResponse``)."""
        return self.spec.canonical

    @property
    def id_field(self) -> str:
        """The canonical field holding the mapped record's own canonical id (``party_id``, ``holding_id``...): what
        ``key_field`` carries and what ``map_in(..., party_id=)`` sets."""
        return ID_FIELDS[self.spec.canonical]

    @property
    def model_key(self) -> str | None:
        """What the steps' canonical paths are checked against: the fixed party type, or the object's name."""
        return model_key(self.spec.canonical, self.fixed_party_type)

    @property
    def source_system(self) -> str | None:
        return self.spec.source_system or self.profile.source_system

    def __repr__(self) -> str:
        return f"<Mapping {self.spec.system}/{self.spec.object} v{self.spec.version} {self.path}>"

    def _compile(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        spec = self.spec
        out: list[tuple[tuple[str | int, ...], str, str]] = []
        ctx = _CompileContext(code_tables=spec.code_tables, party_type=self.model_key, system=spec.system,
                              profile=self.profile)
        for i, step in enumerate(spec.steps):
            ctx.problems = []
            ctx.party_type = (step.party_type if self.canonical == "Party" else None) or self.model_key
            if step.party_type and self.canonical != "Party":
                ctx.error(("party_type",), f"party_type applies to Party mappings; this one maps {self.canonical}")
            if step.party_type and self.fixed_party_type and step.party_type != self.fixed_party_type:
                ctx.error(("party_type",), f"this mapping is for {self.fixed_party_type} parties only")
            step.compile_all(ctx)
            out.extend((("steps", i, *rel), msg, sev) for rel, msg, sev in ctx.problems)
        ctx.problems = []
        ctx.party_type = self.model_key
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
            if direction == "in":
                for p in step.when_vendor_paths():
                    seen.setdefault(p.head)
        return list(seen)

    def owned_canonical_paths(self, direction: Literal["in", "out"] = "in") -> list[str]:
        """Canonical paths the mapping writes (``in``) or reads (``out``), selectors included."""
        owned = self._owned.get(direction)
        if owned is None:   # the steps do not change once compiled: worked out once per direction
            owned = self._owned[direction] = self._owned_canonical_paths(direction)
        return list(owned)

    def _owned_canonical_paths(self, direction: str) -> list[str]:
        seen: dict[str, None] = {}
        if direction == "in":
            if self.canonical == "Party":
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
        if rule is None:        # not a Party mapping
            return None
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

    def _run_in(self, raw: AbcMapping[str, Any], party_id: uuid.UUID | None, *,
                interpret: bool = False) -> _InRecord:
        """Map ``raw`` in: through the compiled plan, or (``interpret``: previews, and the reference the compiled
        plan is tested against) step by step, recording what each step read and wrote."""
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
                    rec.problem(self._key.text, self.id_field,
                                f"not a crmbridge {self.id_field.replace('_', ' ')} (UUID)")
        if pid is not None:
            rec.canon[self.id_field] = pid
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
        if not interpret:
            for when, apply in self.plan.steps_in(ptype):
                if when is None or when(rec):
                    apply(rec)
            return rec
        for i, step in self._steps("in"):
            if step.applies_to(ptype) and (step.when is None or step.when.holds_in(rec)):
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
        rec = self._run_in(raw, party_id, interpret=True)
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

    def _validate(self, rec: _InRecord, *, union: bool = False) -> Any:
        """Validate the mapped record as its party type's model (straight to the model when the type is plain
        text, which is what the discriminated union would pick; ``union``: through the union, the reference), or
        as the mapping's canonical object."""
        ptype = rec.canon.get("party_type")
        model = None if union or type(ptype) is not str else _PARTY_MODELS.get(ptype)
        adapter = _party_adapter() if self.canonical == "Party" else _object_adapter(self.canonical)
        if self.canonical != "Party":
            model = None
        try:
            if model is not None:
                return model.model_validate(rec.canon)
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
        return None, keypath(tloc) or "(record)", msg

    # ---- out
    def map_out(self, party: Any) -> dict[str, Any]:
        """Build the vendor payload for ``party`` (an Individual/Organisation or a canonical dict).

        The key field gets ``party_id``. C2 values are minimised per the steps (masks, consent conditions).

        Raises:
            ValidationError: the party does not fit this mapping, or a mandatory vendor field has no value.
        """
        return self._run_out(party, interpret=False).payload

    def trace_out(self, party: Any) -> tuple[dict[str, Any], list[TraceRow]]:
        """Like :meth:`map_out`, also returning what each step read and wrote (for previews)."""
        rec = self._run_out(party, interpret=True)
        return rec.payload, rec.trace

    def _run_out(self, party: Any, *, interpret: bool) -> _OutRecord:
        if isinstance(party, BaseModel):
            data = party.model_dump(mode="python")
            data = _unsecret(data) if interpret else _unsecret_model(type(party), data)
        else:
            data = _unsecret(dict(party))
        rec = _OutRecord(self, data)
        ptype = plain_value(data.get("party_type"))
        fixed = self.fixed_party_type
        if fixed and ptype and ptype != fixed:
            raise ValidationError(f"this mapping is for {fixed} parties, not {ptype}", field="party_type",
                                  code="wrong_party_type", where=self._where())
        if self._key is not None:
            idf = self.id_field
            pid = data.get(idf)
            if pid is None:
                rec.problem(self._key.text, idf, f"the {self.canonical} has no {idf} for the key field")
            else:
                rec.put(self._key, str(pid), idf, pid, None)
        rule = self.spec.party_type
        if isinstance(rule, PartyTypeRule) and self._type_rule is not None and ptype:
            code = next((k for k, v in rule.map.items() if v == ptype), None)
            if code is not None:
                rec.put(self._type_rule, code, "party_type", ptype, None)
        if not interpret:
            for when, apply in self.plan.steps_out(ptype):
                if when is None or when(rec):
                    apply(rec)
        else:
            for i, step in self._steps("out"):
                if step.applies_to(ptype) and (step.when is None or step.when.holds_out(rec)):
                    rec.step_no = i
                    step.apply_out(rec)
        if rec.problems:
            self._raise(rec.problems)
        return rec


#: the model a party type's record validates as (the union's discriminator, without the union)
_PARTY_MODELS: dict[str, type[BaseModel]] = {"INDIVIDUAL": Individual, "ORGANISATION": Organisation}


@cache
def _party_adapter() -> TypeAdapter[Any]:
    """Validates a canonical dict as an Individual or an Organisation (built once, on first use)."""
    return TypeAdapter(AnyParty)


@cache
def _object_adapter(name: str) -> TypeAdapter[Any]:
    """Validates a canonical dict as the canonical object ``name`` (Holding, Interaction, CampaignResponse)."""
    return TypeAdapter(object_classes(name)[0])


def path_get_loc(obj: Any, loc: Sequence[str | int]) -> Any:
    cur = obj
    for p in loc:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _unsecret_model(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """:func:`_unsecret` of ``cls``'s python dump, walking only the fields whose declared type can hold a secret
    (found once per model class: a typed field of the canonical model never dumps a ``SecretStr``; ``Any`` can)."""
    fields = _secret_fields(cls)
    if fields:
        data = {k: (_unsecret(v) if k in fields else v) for k, v in data.items()}
    return data


@cache
def _secret_fields(cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in cls.model_fields.items() if _may_hold_secret(f.annotation))


#: declared types whose python dump is a plain value (never a secret)
_PLAIN_TYPES = frozenset({str, bytes, int, float, bool, complex, datetime, date, time, timedelta, decimal.Decimal,
                          uuid.UUID, AwareDatetime, NaiveDatetime, PastDate, FutureDate, PastDatetime,
                          FutureDatetime})


def _may_hold_secret(tp: Any, depth: int = 0) -> bool:
    """Whether a value of declared type ``tp`` can hold a ``SecretStr``/``SecretBytes`` anywhere (failing safe: an
    annotation not understood answers yes)."""
    if depth > 12:
        return True
    if tp is None or tp is type(None):
        return False
    if isinstance(tp, type):
        if issubclass(tp, SecretStr | SecretBytes):
            return True
        if issubclass(tp, BaseModel):
            return any(_may_hold_secret(f.annotation, depth + 1) for f in tp.model_fields.values())
        if tp in _PLAIN_TYPES or issubclass(tp, enum.Enum):
            return False
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _may_hold_secret(typing.get_args(tp)[0], depth + 1)
    if origin is typing.Literal:
        return False
    if origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict, collections.abc.Sequence,
                  collections.abc.Mapping):
        return any(_may_hold_secret(a, depth + 1) for a in typing.get_args(tp) if a is not Ellipsis)
    return True


def _unsecret(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _unsecret(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_unsecret(x) for x in v]
    if isinstance(v, SecretStr | SecretBytes):
        return v.get_secret_value()
    return v
