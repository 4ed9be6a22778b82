"""Mappings compiled once into straight-line closures: what ``map_in``/``to_party``/``map_out`` run per record.

The interpreter (each step's ``apply_in``/``apply_out`` over :func:`~crmbridge.core.paths.path_get` and
:func:`~crmbridge.core.paths.path_set`) stays the reference: previews (``trace_in``/``trace_out``) run it, and
tests/mapping/test_mapping_compiled.py checks that both give the same canonical record, the same payload, the
same problems and the same error locations over the shipped mappings. Nothing here evaluates text from a mapping
file: every closure is built from the validated, already-compiled steps (their parsed paths, their transform
objects), with the per-record decisions that do not depend on the record (which steps run for a party type, the
``when:`` value sets, the setters of fixed attributes, the C3-free vendor-kind plan) taken once.

What a closure saves against the interpreter: pydantic attribute access per record, the ``isinstance`` tests of
the generic path walkers on every step of every path, the per-record ``Path`` objects of attribute setters, the
preview rows (``TraceRow``) nobody reads outside a preview, and the list of steps rebuilt per record.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as AbcMapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from crmbridge.canonical.mapping.policy import _show
from crmbridge.canonical.mapping.steps import (
    REQUIRED_MISSING,
    ConsentStep,
    ConstantStep,
    ContactStep,
    IdentifierStep,
    SelectStep,
    StepCondition,
    _as_text,
    _InRecord,
    _OutRecord,
    _Step,
    _ValueStep,
)
from crmbridge.canonical.transforms import Transform, TransformError
from crmbridge.core.masking import mask
from crmbridge.core.paths import (
    Path,
    PathIndex,
    PathKey,
    PathSelect,
    _cond_value,
    cond_matches,
    plain_value,
)

if TYPE_CHECKING:
    from crmbridge.canonical.mapping.engine import Mapping

Getter = Callable[[Any], Any]
Setter = Callable[[dict[str, Any], Any], tuple[str | int, ...]]
InFn = Callable[[_InRecord], None]
OutFn = Callable[[_OutRecord], None]

__all__ = ["CompiledMapping", "compile_chain", "compile_get", "compile_set"]


# ------------------------------------------------------------------------------------------------------ paths
def _get_key(name: str) -> Getter:
    def get(cur: Any) -> Any:
        if type(cur) is dict:
            return cur.get(name)
        if isinstance(cur, AbcMapping):
            return cur.get(name)
        if isinstance(cur, BaseModel):
            return getattr(cur, name, None)
        return None
    return get


def _get_index(index: int) -> Getter:
    def get(cur: Any) -> Any:
        if not isinstance(cur, list | tuple) or index >= len(cur):
            return None
        return cur[index]
    return get


def _get_select(conds: tuple[tuple[str, str], ...]) -> Getter:
    match = _matcher(conds)

    def get(cur: Any) -> Any:
        if not isinstance(cur, list | tuple):
            return None
        for x in cur:
            if match(x):
                return x
        return None
    return get


def compile_get(path: Path) -> Getter:
    """A function answering exactly what ``path_get(obj, path)`` answers."""
    fns = [_get_key(op.name) if isinstance(op, PathKey) else _get_index(op.index) if isinstance(op, PathIndex)
           else _get_select(op.conds) for op in path.ops]
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda obj: b(a(obj))
    if len(fns) == 3:
        a, b, c = fns
        return lambda obj: c(b(a(obj)))

    def get(obj: Any) -> Any:
        for f in fns:   # each answers None for None
            obj = f(obj)
        return obj
    return get


def compile_set(path: Path) -> Setter:
    """A function doing exactly what ``path_set(obj, path, value)`` does, returning the same location."""
    ops = path.ops
    if ops and all(isinstance(op, PathKey) for op in ops):
        names = tuple(op.name for op in ops)  # type: ignore[union-attr]
        head, last = names[:-1], names[-1]
        if not head:
            def set_top(obj: dict[str, Any], value: Any) -> tuple[str | int, ...]:
                obj[last] = value
                return names
            return set_top

        def set_keys(obj: dict[str, Any], value: Any) -> tuple[str | int, ...]:
            cur: Any = obj
            for n in head:
                nxt = cur.get(n)
                if not isinstance(nxt, dict | list):
                    nxt = cur[n] = {}
                cur = nxt
            cur[last] = value
            return names
        return set_keys
    if (len(ops) == 3 and isinstance(ops[0], PathKey) and isinstance(ops[1], PathSelect)
            and isinstance(ops[2], PathKey)):
        return _set_selected(ops[0].name, ops[1].conds, ops[2].name)
    plan: list[tuple[int, Any, bool, type]] = []
    for n, op in enumerate(ops):
        last = n == len(ops) - 1
        fresh: type = dict if not last and isinstance(ops[n + 1], PathKey) else list
        if isinstance(op, PathKey):
            plan.append((0, op.name, last, fresh))
        elif isinstance(op, PathIndex):
            plan.append((1, op.index, last, fresh))
        else:
            plan.append((2, (_matcher(op.conds), op.conds), last, fresh))

    def set_any(obj: dict[str, Any], value: Any) -> tuple[str | int, ...]:
        loc: list[str | int] = []
        cur: Any = obj
        for kind, arg, last, fresh in plan:
            if kind == 0:
                if last:
                    cur[arg] = value
                else:
                    nxt = cur.get(arg)
                    if not isinstance(nxt, dict | list):
                        nxt = cur[arg] = fresh()
                    cur = nxt
                loc.append(arg)
            elif kind == 1:
                while len(cur) <= arg:
                    cur.append(None)
                if last:
                    cur[arg] = value
                elif not isinstance(cur[arg], dict | list):
                    cur[arg] = fresh()
                loc.append(arg)
                cur = cur[arg]
            else:
                match, conds = arg
                idx = next((i for i, x in enumerate(cur) if match(x)), None)
                if idx is None:
                    cur.append({k: _cond_value(v) for k, v in conds})
                    idx = len(cur) - 1
                if last:
                    cur[idx] = value
                loc.append(idx)
                cur = cur[idx]
        return tuple(loc)
    return set_any


def _set_selected(head: str, conds: tuple[tuple[str, str], ...], leaf: str) -> Setter:
    """``path_set`` of ``head[k=v].leaf`` (``identifiers[scheme=CN_RIC].value``, a consent's attribute): the list,
    the selected element (appended when missing), the leaf."""
    match = _matcher(conds)

    def set_selected(obj: dict[str, Any], value: Any) -> tuple[str | int, ...]:
        items = obj.get(head)
        if not isinstance(items, dict | list):
            items = obj[head] = []
        idx = -1
        for i, x in enumerate(items):
            if match(x):
                idx = i
                break
        if idx < 0:
            items.append({k: _cond_value(v) for k, v in conds})
            idx = len(items) - 1
        items[idx][leaf] = value
        return (head, idx, leaf)
    return set_selected


def _matcher(conds: tuple[tuple[str, str], ...]) -> Callable[[Any], bool]:
    """``cond_matches(x, conds)`` for fixed ``conds``, a text value of a plain dict compared at once."""
    if len(conds) != 1:
        return lambda x: cond_matches(x, conds)
    (key, want), = conds

    def match(x: Any) -> bool:
        if type(x) is dict:
            have = x.get(key)
            if isinstance(have, Enum):   # what cond_matches compares too (a party dumped in python mode)
                have = have.value
            if type(have) is str:
                return have == want
        return cond_matches(x, conds)
    return match


def _attr_path(base: Path, key: str) -> Path:
    """The sibling ``key`` of the element ``base`` ends in (what ``_extra_in`` and consents set)."""
    return Path(key, (*base.ops[:-1], PathKey(key)))


def _sel_setter(base: Path, key: str) -> Setter:
    return compile_set(_attr_path(base, key))


# ------------------------------------------------------------------------------------------------- transforms
def compile_chain(chain: list[tuple[Transform, str]]) -> Callable[[Any, Any], Any]:
    """A function doing exactly what ``run_chain(chain, value, ctx)`` does (same results, same errors)."""
    if not chain:
        return lambda value, ctx: value
    steps = [((t.to_canonical if way == "in" else t.to_vendor), t.handles_none, t.name) for t, way in chain]

    def run(value: Any, ctx: Any) -> Any:
        for fn, handles_none, name in steps:
            if value is None and not handles_none:
                continue
            try:
                value = fn(value, ctx)
            except TransformError:
                raise
            except (TypeError, ValueError, AttributeError, LookupError, ArithmeticError, RecursionError) as exc:
                raise TransformError(f"{name}: cannot transform a {type(value).__name__} value") from exc
        return value
    return run


# ---------------------------------------------------------------------------------------------- conditions
def _compile_when(when: StepCondition | None, *, direction: str) -> Callable[[Any], bool] | None:
    """The ``when:`` test, its value sets built once; ``None``: the step always runs."""
    if when is None or when._path is None:
        return None
    get = compile_get(when._path)
    vendor = when.vendor is not None
    present = when.present
    not_in = frozenset(_as_text(x) for x in when.not_in) if when.not_in is not None else None
    in_ = frozenset(_as_text(x) for x in when.in_) if when.in_ is not None else None
    equals = _as_text(when.equals)

    def holds(value: Any) -> bool:
        text = _as_text(value)
        missing = text is None or text == ""
        if present is not None:
            return present != missing
        if not_in is not None:
            return missing or text not in not_in
        if missing:
            return False
        if in_ is not None:
            return text in in_
        return text == equals

    if direction == "in":
        if vendor:
            return lambda rec: holds(get(rec.raw))
        return lambda rec: holds(get(rec.canon))
    if vendor:
        return lambda rec: holds(get(rec.payload))
    return lambda rec: holds(get(rec.party))


# ------------------------------------------------------------------------------------------------------ in
def _value_in(step: _ValueStep, *, required_override: bool = False) -> InFn | None:
    priv = step.__pydantic_private__
    cpath: Path | None = priv["_cpath"]
    if cpath is None:
        return None
    kind, label, ctext = priv["_kind"], priv["_label"], cpath.text
    vpaths: list[Path] = priv["_vpaths"]
    single = len(vpaths) == 1 and not isinstance(step.vendor, list)
    getters = [compile_get(p) for p in vpaths]
    run = compile_chain(priv["_in_chain"])
    setter = compile_set(cpath)
    error_kind = step._error_kind()
    default = step.default
    required = step.required or required_override
    extras: list[tuple[Setter, Any]] = []
    call_extra: Callable[[_InRecord, Path], None] | None = None
    if isinstance(step, IdentifierStep | ContactStep):
        extras = [(_sel_setter(cpath, k), v) for k, v in step.attributes.items()]
    elif type(step)._extra_in is not _ValueStep._extra_in:   # pragma: no cover - no other step sets siblings
        call_extra = step._extra_in

    def put(rec: _InRecord, value: Any, raw: Any) -> None:
        canon = rec.canon
        rec.provenance[setter(canon, value)] = (label, ctext, raw, kind)
        for set_attr, v in extras:
            set_attr(canon, v)
        if call_extra is not None:
            call_extra(rec, cpath)

    get0 = getters[0] if getters else None

    def apply(rec: _InRecord) -> None:
        if single:
            raw: Any = get0(rec.raw)  # type: ignore[misc]
            missing = raw is None or (isinstance(raw, str) and not raw.strip())
        else:
            raw = [g(rec.raw) for g in getters]
            missing = all(v is None or (isinstance(v, str) and not v.strip()) for v in raw)
        if missing:
            if default is not None:
                put(rec, default, raw)
            elif required:
                rec.problems.append((label, ctext, REQUIRED_MISSING))
            return
        try:
            value = run(raw, rec.mapping.tctx)
        except TransformError as exc:
            rec.problems.append((label, ctext, f"{exc} (value {_show(raw, error_kind)})"))
            return
        if value is None:
            if required:
                rec.problems.append((label, ctext, REQUIRED_MISSING))
            return
        put(rec, value, raw)
    return apply


def _same_fn(b: Any) -> Callable[[Any], bool]:
    """``ConsentStep._same(a, b)`` for a fixed ``b``."""
    if isinstance(b, str):
        low = b.strip().lower()

        def same_str(a: Any) -> bool:
            if isinstance(a, str):
                return a.strip().lower() == low
            return a == b and type(a) is type(b)
        return same_str
    tb = type(b)
    return lambda a: a == b and type(a) is tb


def _consent_in(step: ConsentStep) -> InFn | None:
    vpath, cpath = step._vpath, step._cpath
    if vpath is None or cpath is None:
        return None
    get, setter = compile_get(vpath), compile_set(cpath)
    vtext, ctext = vpath.text, cpath.text
    no_info = [_same_fn(x) for x in step.no_information]
    is_granted, is_denied = _same_fn(step.granted), _same_fn(step.denied)
    denied_status, required = step.denied_status, step.required
    bad = f"expected {step.granted!r} or {step.denied!r}"
    attrs = dict(step.attributes)
    setters = {k: _sel_setter(cpath, k) for k in (*attrs, "captured_at", "withdrawn_at")}

    def apply(rec: _InRecord) -> None:
        raw = get(rec.raw)
        if raw is None or raw == "":
            if required:
                rec.problems.append((vtext, ctext, REQUIRED_MISSING))
            return
        for same in no_info:
            if same(raw):
                return
        if is_granted(raw):
            status = "GRANTED"
        elif is_denied(raw):
            status = denied_status
        else:
            rec.problems.append((vtext, ctext, f"{bad} (value {_show(raw, 'none')})"))
            return
        canon = rec.canon
        rec.provenance[setter(canon, status)] = (vtext, ctext, raw, None)
        values = dict(attrs)
        if "captured_at" not in values:
            values["captured_at"] = rec.modified or datetime.now(UTC)
        if status == "WITHDRAWN" and "withdrawn_at" not in values:
            values["withdrawn_at"] = values["captured_at"]
        for k, v in values.items():
            setters[k](canon, v)
    return apply


def _constant_in(step: ConstantStep) -> InFn | None:
    cpath = step._cpath
    if cpath is None:
        return None
    setter, ctext, value = compile_set(cpath), cpath.text, step.value

    def apply(rec: _InRecord) -> None:
        rec.provenance[setter(rec.canon, value)] = ("(constant)", ctext, None, None)
    return apply


def _select_in(step: SelectStep) -> InFn | None:
    bypath, vpath = step._bypath, step._vpath
    if bypath is None or vpath is None:
        return None
    get_by, get_v = compile_get(bypath), compile_get(vpath)
    cases = {k: _value_in(s, required_override=step.required) for k, s in step._case_steps.items()}
    no_choice = f"no {bypath.text} value to choose where {vpath.text} goes"
    known = ", ".join(step.cases)
    required, unknown, btext = step.required, step.unknown, bypath.text

    def apply(rec: _InRecord) -> None:
        key = _as_text(get_by(rec.raw))
        if not key:
            value = get_v(rec.raw)
            if value not in (None, "") or required:
                rec.problems.append((btext, "(select)", no_choice))
            return
        if key not in cases:
            if unknown == "error":
                rec.problems.append((btext, "(select)", f"{btext} value {key!r} has no case (cases: {known})"))
            return
        fn = cases[key]
        if fn is not None:
            fn(rec)
    return apply


def _compile_in(step: _Step) -> InFn | None:
    if isinstance(step, _ValueStep):
        return _value_in(step)
    if isinstance(step, ConsentStep):
        return _consent_in(step)
    if isinstance(step, ConstantStep):
        return _constant_in(step)
    if isinstance(step, SelectStep):
        return _select_in(step)
    return step.apply_in   # out-only steps (unique_masked, format): nothing to do on the way in


# ----------------------------------------------------------------------------------------------------- out
def _value_out(step: _ValueStep) -> OutFn | None:
    priv = step.__pydantic_private__
    cpath: Path | None = priv["_cpath"]
    vpaths: list[Path] = priv["_vpaths"]
    if cpath is None or not vpaths:
        return None
    ckind, label, mask_out, ctext = priv["_kind"], priv["_label"], priv["_mask_out"], cpath.text
    get = compile_get(cpath)
    run = compile_chain(priv["_out_chain"])
    error_kind = step._error_kind()
    when_consent, omit = step.when_consent, step.when_consent_else == "omit"
    required, write_null = step.required, step.write_null
    multi = len(vpaths) > 1
    n_paths = len(vpaths)
    setters = [compile_set(p) for p in vpaths]
    set0 = setters[0]

    def apply(rec: _OutRecord) -> None:
        value = plain_value(get(rec.party))
        out: Any = None
        if value is not None:
            try:
                out = run(value, rec.mapping.tctx)
            except TransformError as exc:
                rec.problems.append((label, ctext, f"{exc} (value {_show(value, error_kind)})"))
                return
            kind: str | None = mask_out
            if out is not None and when_consent:
                if rec.consent_granted(when_consent):
                    kind = None
                elif omit:
                    return
                else:
                    kind = mask_out or ckind or "generic"
            if out is not None and kind:
                out = ([mask(kind, x) if x is not None else None for x in out]
                       if isinstance(out, list) and multi else mask(kind, out))
        if out is None:
            if required:
                rec.problems.append((label, ctext, "the vendor field is mandatory but the canonical value is empty"))
                return
            if not write_null:
                return
        if multi:
            seq = out if isinstance(out, list | tuple) else [None] * n_paths
            payload = rec.payload
            for set_v, v in zip(setters, seq, strict=False):
                if v is not None or write_null:
                    set_v(payload, v)
        else:
            set0(rec.payload, out)
    return apply


def _consent_out(step: ConsentStep) -> OutFn | None:
    vpath, cpath = step._vpath, step._cpath
    if vpath is None or cpath is None:
        return None
    get, setter = compile_get(cpath), compile_set(vpath)
    granted, denied = step.granted, step.denied

    def apply(rec: _OutRecord) -> None:
        setter(rec.payload, granted if plain_value(get(rec.party)) == "GRANTED" else denied)
    return apply


def _constant_out(step: ConstantStep) -> OutFn | None:
    vpath = step._vpath
    if vpath is None:
        return None
    setter = compile_set(vpath)
    value = step.vendor_value if step.vendor_value is not None else step.value

    def apply(rec: _OutRecord) -> None:
        setter(rec.payload, value)
    return apply


def _compile_out(step: _Step) -> OutFn | None:
    if isinstance(step, _ValueStep):
        return _value_out(step)
    if isinstance(step, ConsentStep):
        return _consent_out(step)
    if isinstance(step, ConstantStep):
        return _constant_out(step)
    return step.apply_out   # select, unique_masked, format: the step's own code (rare, not on a hot path)


# ------------------------------------------------------------------------------------------------- mapping
class CompiledMapping:
    """The per-record plan of one :class:`~crmbridge.canonical.mapping.engine.Mapping`, built once at load."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self._in = [(s, _compile_when(s.when, direction="in"), _compile_in(s))
                    for s in mapping.spec.steps if s.runs("in")]
        self._out = [(s, _compile_when(s.when, direction="out"), _compile_out(s))
                     for s in mapping.spec.steps if s.runs("out")]
        self._in_by_type: dict[Any, list[tuple[Callable[[Any], bool] | None, InFn]]] = {}
        self._out_by_type: dict[Any, list[tuple[Callable[[Any], bool] | None, OutFn]]] = {}
        m = mapping
        self.get_external = compile_get(m._external)
        self.get_key = compile_get(m._key) if m._key is not None else None
        self.get_type = compile_get(m._type_rule) if m._type_rule is not None else None
        self.get_modified = compile_get(m._modified) if m._modified is not None else None
        self.get_deleted = compile_get(m._deleted) if m._deleted is not None else None
        self.set_key = compile_set(m._key) if m._key is not None else None
        self.set_type = compile_set(m._type_rule) if m._type_rule is not None else None

    def steps_in(self, ptype: Any) -> list[tuple[Callable[[Any], bool] | None, InFn]]:
        """The in closures that run for a party of ``ptype`` (decided per type once, not per record)."""
        try:
            return self._in_by_type[ptype]
        except (KeyError, TypeError):
            pass
        plan = [(w, f) for s, w, f in self._in if f is not None and s.applies_to(ptype)]
        try:
            self._in_by_type[ptype] = plan
        except TypeError:   # pragma: no cover - an unhashable type value: planned per record
            pass
        return plan

    def steps_out(self, ptype: Any) -> list[tuple[Callable[[Any], bool] | None, OutFn]]:
        try:
            return self._out_by_type[ptype]
        except (KeyError, TypeError):
            pass
        plan = [(w, f) for s, w, f in self._out if f is not None and s.applies_to(ptype)]
        try:
            self._out_by_type[ptype] = plan
        except TypeError:   # pragma: no cover
            pass
        return plan
