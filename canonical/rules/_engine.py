"""Loading and checking a rules file (every problem located ``file:line: key.path``) and deriving fields."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from crmbridge.canonical.mapping.introspect import PARTY_CLASS, _allowed_values, resolve_canonical
from crmbridge.canonical.mapping.loader import _sha256, read_text
from crmbridge.canonical.mapping.policy import mask_kind_for
from crmbridge.canonical.mapping.problems import MappingProblem
from crmbridge.canonical.mapping.yamlio import _align, _friendly, _load_yaml, keypath, line_for
from crmbridge.canonical.masking import mask
from crmbridge.canonical.model import INDIVIDUAL_SEGMENTS, Party, parse_party
from crmbridge.canonical.objects import Holding, parse_object
from crmbridge.canonical.rules._language import (
    FACTS,
    Condition,
    DerivedFields,
    FactContext,
    HistoryPoint,
    Rule,
    RulesSpec,
)
from crmbridge.core.errors import MappingError, ValidationError
from crmbridge.core.paths import parse_path, path_get, plain_value

Rel = tuple[str | int, ...]

_NUMERIC_OPS = frozenset({"gt", "gte", "lt", "lte"})


class RulesLoadError(MappingError):
    """A rules file has problems; ``problems`` holds every one (each ``file:line: key.path: message``)."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.message}{more}",
                         where=f"{first.file}:{first.line if first.line is not None else '?'}: {first.path or '(top)'}")


@dataclass(frozen=True)
class RuleTrace:
    """One line of a derivation's trace: a test, what the fact's value was (masked by its class) and the result."""

    rule: str
    case: int | None       # None: the rule's own ``when``, or the rule's outcome
    depth: int
    test: str
    value: str
    result: bool | None
    note: str = ""


@dataclass
class Derivation:
    """What :func:`derive` found: the derived fields (only those a case decided), the step-by-step trace and the
    version (content hash) of the rules file, to ledger with the fields."""

    fields: dict[str, Any]
    trace: list[RuleTrace]
    rules_version: str
    as_of: dt.date
    rules_applied: dict[str, str] = field(default_factory=dict)   # derived field → rule name

    def model(self) -> DerivedFields:
        """The derived fields as the classified model."""
        return DerivedFields.model_validate(self.fields)

    def apply_to(self, party: Any) -> tuple[Party, list[str]]:
        """The party with the derived fields placed where a party mapping reads them, and the fields left out.

        ``segment`` becomes ``segment.code`` (``segment.source`` = ``rules:<first 12 of the version>``, the tier
        kept only when the code is unchanged); ``lifecycle_stage`` and ``churn_risk`` become
        ``extensions.<field>`` when the configuration declares an extension of that name (its declared class
        must be C1, as the derived field's); a field with nowhere to go is returned in the second list.

        Raises:
            ValidationError: the result is not a valid party, or a declared extension is not C1.
        """
        from crmbridge.canonical.extensions import declared_extensions

        data = _as_party(party)
        left: list[str] = []
        declared = declared_extensions()
        for name, value in self.fields.items():
            if name == "segment":
                old = data.get("segment") or {}
                data["segment"] = {"code": value, "tier": old.get("tier") if old.get("code") == value else None,
                                   "source": f"rules:{self.rules_version[:12]}"}
            elif name in declared:
                if declared[name].data_class != "C1":
                    raise ValidationError(f"extension {name!r} is declared {declared[name].data_class}; a derived "
                                          f"{name} is C1", field=f"extensions.{name}", code="class_mismatch")
                data.setdefault("extensions", {})[name] = value
            else:
                left.append(name)
        return parse_party(data, where="derived party"), left


class Rules:
    """A loaded, checked rules file."""

    def __init__(self, spec: RulesSpec, *, path: str, version_hash: str, lines: dict[Rel, int] | None = None,
                 text: str | None = None) -> None:
        self.spec = spec
        self.path = path
        self.version_hash = version_hash
        self.lines = lines or {}
        self.text = text

    def __repr__(self) -> str:
        return f"<Rules v{self.spec.version} {self.path}>"

    def where(self, rel: Rel) -> str:
        return f"{self.path}:{line_for(self.lines, rel) or '?'}: {keypath(rel)}"

    def derive(self, party: Any, holdings: Iterable[Any] = (), history: Iterable[Any] = (), *,
               as_of: dt.date | None = None) -> Derivation:
        """See :func:`derive`."""
        return derive(party, holdings, history, self, as_of=as_of)


# --------------------------------------------------------------------------------------------------- checking


def _fact_problems(cond: Condition, rel: Rel, derived_before: set[str], out: list[tuple[Rel, str]]) -> None:
    assert cond.fact is not None
    name, op = cond.fact, cond.operator
    allowed: frozenset[str] | None = None
    kind = "text"
    if name.startswith("party."):
        try:
            path = parse_path(name[len("party."):])
        except ValueError as exc:
            out.append(((*rel, "fact"), f"bad canonical path: {exc}"))
            return
        errors: list[str] = []
        leaves = []
        for cls in PARTY_CLASS.values():
            try:
                leaves.append(resolve_canonical(cls, path))
            except ValueError as exc:
                errors.append(str(exc))
        if not leaves:
            out.append(((*rel, "fact"), f"unknown party path {path.text!r}: {errors[0]}"))
            return
        values = [leaf.allowed for leaf in leaves if leaf.allowed]
        allowed = frozenset().union(*values) if values else None
        kind = "any"
    elif name.startswith("derived."):
        target = name[len("derived."):]
        if target not in DerivedFields.model_fields:
            out.append(((*rel, "fact"), f"{target!r} is not a derived field (derived fields: "
                                        f"{', '.join(DerivedFields.model_fields)})"))
            return
        if target not in derived_before:
            out.append(((*rel, "fact"), f"derived.{target} is not derived by an earlier rule"))
            return
        allowed = _allowed_values(DerivedFields.model_fields[target].annotation)
        kind = "bool" if target == "churn_risk" else "text"
    elif name in FACTS:
        fact = FACTS[name]
        kind, allowed = fact.type, frozenset(fact.values) if fact.values else None
    else:
        out.append(((*rel, "fact"), f"unknown fact {name!r}; known: {', '.join(sorted(FACTS))}, party.<path>, "
                                    "derived.<field>"))
        return
    if cond.days is not None and not (name in FACTS and "days" in FACTS[name].params):
        out.append(((*rel, "days"), f"days does not apply to {name}"))
    if op in _NUMERIC_OPS and kind not in ("number", "any"):
        out.append(((*rel, op), f"{op} compares numbers; {name} is {kind}"))
    if op == "contains" and kind not in ("list", "any"):
        out.append(((*rel, op), f"contains applies to lists; {name} is {kind}"))
    if kind == "list" and op in ("equals", "in_", "not_in"):
        out.append(((*rel, op.rstrip("_")), f"{name} is a list: use contains"))
    if allowed and op in ("equals", "in_", "not_in", "contains"):
        operand = cond.operand
        for v in operand if isinstance(operand, list) else [operand]:
            text = _text(v)
            if text not in allowed:
                out.append(((*rel, op.rstrip("_")),
                            f"{v!r} is not a valid {name} (valid: {', '.join(sorted(allowed))})"))


def _condition_problems(cond: Condition, rel: Rel, derived_before: set[str], out: list[tuple[Rel, str]]) -> None:
    if cond.all is not None or cond.any is not None:
        key = "all" if cond.all is not None else "any"
        for j, sub in enumerate(cond.all or cond.any or []):
            _condition_problems(sub, (*rel, key, j), derived_before, out)
    elif cond.not_ is not None:
        _condition_problems(cond.not_, (*rel, "not"), derived_before, out)
    else:
        _fact_problems(cond, rel, derived_before, out)


def _semantic(spec: RulesSpec) -> list[tuple[Rel, str]]:
    out: list[tuple[Rel, str]] = []
    names: dict[str, int] = {}
    derived: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        rel: Rel = ("rules", i)
        if rule.name in names:
            out.append(((*rel, "name"), f"rule name {rule.name!r} is also rules[{names[rule.name]}]'s"))
        names.setdefault(rule.name, i)
        if rule.derive in derived:
            out.append(((*rel, "derive"), f"{rule.derive} is already derived by rules[{derived[rule.derive]}]"))
        before = set(derived)
        if rule.when is not None:
            _condition_problems(rule.when, (*rel, "when"), before, out)
        for j, case in enumerate(rule.cases):
            crel: Rel = (*rel, "cases", j)
            if case.when is None and j < len(rule.cases) - 1:
                out.append(((*crel,), f"a case without when always holds: the {len(rule.cases) - 1 - j} case(s) "
                                      "after it never run (put it last)"))
            if case.when is not None:
                _condition_problems(case.when, (*crel, "when"), before, out)
            if case.value is not None:
                try:
                    DerivedFields.model_validate({rule.derive: case.value})
                except PydanticValidationError as exc:
                    out.append(((*crel, "value"), f"{case.value!r} is not a valid {rule.derive}: "
                                                  f"{exc.errors(include_url=False)[0]['msg']}"))
        derived.setdefault(rule.derive, i)
    return out


def check_rules_file(path: str | FsPath, *, display: str | None = None) -> tuple[Rules | None, list[MappingProblem]]:
    """Load and check one rules file: the rules (None when they cannot be built) and every problem, located."""
    p = FsPath(path)
    file = display or str(path)
    text, problem = read_text(p, file)
    if text is None:
        return None, [problem]
    data, lines, problems = _load_yaml(text, file)
    if problems and data is None:
        return None, problems
    if not isinstance(data, dict):
        return None, [*problems, MappingProblem(file, 1, "", "a rules file is a YAML mapping with version, "
                                                             "description and rules")]
    try:
        spec = RulesSpec.model_validate(data)
    except PydanticValidationError as exc:
        grouped: dict[Rel, list[str]] = {}
        for err in exc.errors():
            aligned = _align(data, err["loc"])
            msg = _friendly(err, data, aligned).removeprefix("Value error, ")
            msgs = grouped.setdefault(aligned, [])
            if msg not in msgs:
                msgs.append(msg)
        problems += [MappingProblem(file, line_for(lines, rel), keypath(rel), " or ".join(msgs))
                     for rel, msgs in grouped.items()]
        problems.sort(key=lambda pr: (pr.line or 0, pr.path))
        return None, problems
    problems += [MappingProblem(file, line_for(lines, rel), keypath(rel), msg) for rel, msg in _semantic(spec)]
    problems.sort(key=lambda pr: (pr.line or 0, pr.path))
    rules = Rules(spec, path=str(path), version_hash=_sha256(text), lines=lines, text=text)
    return (None if problems else rules), problems


def load_rules(path: str | FsPath) -> Rules:
    """Load and check a rules file.

    Raises:
        RulesLoadError: (a MappingError) with every problem, each located ``file:line: key.path: message``.
    """
    rules, problems = check_rules_file(path)
    if rules is None:
        raise RulesLoadError(problems or [MappingProblem(str(path), None, "", "the rules cannot be built")])
    return rules


# --------------------------------------------------------------------------------------------------- evaluation


def _text(v: Any) -> str:
    v = plain_value(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip()


def _number(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return Decimal(str(plain_value(v)))
    except (InvalidOperation, ValueError):
        return None


def _eq(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return _text(a) == _text(b)


def _holds(op: str, value: Any, operand: Any) -> bool:
    if op == "present":
        return (value is not None and value != []) is bool(operand)
    if op == "not_in":
        return value is None or not any(_eq(value, x) for x in operand)
    if value is None:
        return False
    if op == "equals":
        return _eq(value, operand)
    if op == "in_":
        return any(_eq(value, x) for x in operand)
    if op == "contains":
        return isinstance(value, list) and any(_eq(x, operand) for x in value)
    n = _number(value)
    if n is None:
        return False
    return {"gt": n > operand, "gte": n >= operand, "lt": n < operand, "lte": n <= operand}[op]


_SYMBOL = {"equals": "==", "in_": "in", "not_in": "not in", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
           "present": "present is", "contains": "contains"}


def _operand_text(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_text(x) for x in v) + "]"
    return _text(v)


def _fact_value(cond: Condition, ctx: FactContext) -> tuple[Any, str]:
    """The fact's value and how the trace shows it (masked by its class)."""
    name = cond.fact or ""
    if name.startswith("party."):
        ptext = name[len("party."):]
        value = plain_value(path_get(ctx.party, parse_path(ptext)))
        kind = mask_kind_for(ptext, str(ctx.party.get("party_type") or "") or None)
        shown = "(none)" if value is None else (mask(kind, _text(value)) if kind else _text(value))
        return value, shown
    if name.startswith("derived."):
        value = ctx.derived.get(name[len("derived."):])
        return value, "(none)" if value is None else _text(value)
    fact = FACTS[name]
    value = fact.compute(ctx, {"days": cond.days} if cond.days else {})
    if value is None:
        return None, "(none)"
    if fact.data_class == "C2":
        return value, mask(fact.mask or "generic", _text(value))
    return value, _operand_text(value) if isinstance(value, list) else _text(value)


def _evaluate(cond: Condition, ctx: FactContext, rule: str, case: int | None, depth: int,
              trace: list[RuleTrace]) -> bool:
    if cond.all is not None or cond.any is not None:
        is_all = cond.all is not None
        row = len(trace)
        trace.append(RuleTrace(rule, case, depth, "all of" if is_all else "any of", "", None))
        result = is_all
        for sub in cond.all or cond.any or []:
            r = _evaluate(sub, ctx, rule, case, depth + 1, trace)
            if is_all and not r:
                result = False
                break
            if not is_all and r:
                result = True
                break
        trace[row] = RuleTrace(rule, case, depth, trace[row].test, "", result)
        return result
    if cond.not_ is not None:
        row = len(trace)
        trace.append(RuleTrace(rule, case, depth, "not", "", None))
        result = not _evaluate(cond.not_, ctx, rule, case, depth + 1, trace)
        trace[row] = RuleTrace(rule, case, depth, "not", "", result)
        return result
    value, shown = _fact_value(cond, ctx)
    label = f"{cond.fact}(days={cond.days})" if cond.days else str(cond.fact)
    op = cond.operator
    result = _holds(op, value, cond.operand)
    trace.append(RuleTrace(rule, case, depth, f"{label} {_SYMBOL[op]} {_operand_text(cond.operand)}", shown, result))
    return result


def _as_party(party: Any) -> dict[str, Any]:
    model = party if isinstance(party, Party) else parse_party(party, where="party")
    return model.model_dump(mode="json")


def _as_holdings(holdings: Iterable[Any]) -> list[Holding]:
    return [h if isinstance(h, Holding) else parse_object("Holding", h, where=f"holdings[{i}]")
            for i, h in enumerate(holdings)]


def _as_history(history: Iterable[Any]) -> list[HistoryPoint]:
    out: list[HistoryPoint] = []
    for i, h in enumerate(history):
        if isinstance(h, HistoryPoint):
            out.append(h)
            continue
        if not isinstance(h, Mapping) or "at" not in h:
            raise ValidationError(f"history[{i}]: a history point is {{at, aum_band}} or {{at, party}}",
                                  field=f"history[{i}]", code="bad_history")
        at = h["at"]
        if isinstance(at, str):
            try:
                at = dt.datetime.fromisoformat(at) if "T" in at else dt.date.fromisoformat(at)
            except ValueError:
                raise ValidationError(f"history[{i}].at: not an ISO date or date-time", field=f"history[{i}].at",
                                      code="bad_history") from None
        band = h.get("aum_band")
        if band is None and isinstance(h.get("party"), Mapping):
            band = (h["party"].get("aum") or {}).get("band")
        out.append(HistoryPoint(at=at, aum_band=band))
    return out


def derive(party: Any, holdings: Iterable[Any], history: Iterable[Any], rules: Rules, *,
           as_of: dt.date | None = None) -> Derivation:
    """Derive the rules' fields for one party.

    Args:
        party: an Individual / Organisation, or its canonical dict (validated).
        holdings: the party's holdings (:class:`~crmbridge.canonical.objects.Holding` or dicts), open and closed.
        history: earlier states: :class:`HistoryPoint`, ``{"at": ..., "aum_band": ...}`` or ``{"at": ...,
            "party": {...}}`` (a stored snapshot), any order.
        rules: the loaded rules (:func:`load_rules`).
        as_of: the evaluation date (default: today, UTC); ages and windows count from it.

    Returns:
        :class:`Derivation`: the derived fields, a trace whose values are masked by class, the rules' version.

    Raises:
        ValidationError: a bad party, holding or history point, or a rule deriving a segment of the other party
            type (what and where, never a value).
    """
    day = as_of or dt.datetime.now(dt.UTC).date()
    ctx = FactContext(party=_as_party(party), holdings=_as_holdings(holdings), history=_as_history(history),
                      as_of=day, derived={})
    trace: list[RuleTrace] = []
    applied: dict[str, str] = {}
    for i, rule in enumerate(rules.spec.rules):
        if rule.when is not None and not _evaluate(rule.when, ctx, rule.name, None, 0, trace):
            trace.append(RuleTrace(rule.name, None, 0, f"→ {rule.derive}", "", None, "rule does not apply"))
            continue
        for j, case in enumerate(rule.cases):
            if case.when is None:
                trace.append(RuleTrace(rule.name, j, 0, "otherwise", "", True))
                hit = True
            else:
                hit = _evaluate(case.when, ctx, rule.name, j, 0, trace)
            if hit:
                _check_value(rule, i, j, case.value, ctx, rules)
                if case.value is not None:
                    ctx.derived[rule.derive] = DerivedFields.model_validate(
                        {rule.derive: case.value}).model_dump(mode="json")[rule.derive]
                    applied[rule.derive] = rule.name
                trace.append(RuleTrace(rule.name, j, 0, f"→ {rule.derive}", _text(case.value), None,
                                       f"case {j} decides" if case.value is not None else "not derived"))
                break
        else:
            trace.append(RuleTrace(rule.name, None, 0, f"→ {rule.derive}", "", None, "no case holds: not derived"))
    return Derivation(fields=dict(ctx.derived), trace=trace, rules_version=rules.version_hash, as_of=day,
                      rules_applied=applied)


def _check_value(rule: Rule, i: int, j: int, value: Any, ctx: FactContext, rules: Rules) -> None:
    if rule.derive != "segment" or value is None:
        return
    ptype = str(ctx.party.get("party_type"))
    if (str(value) in INDIVIDUAL_SEGMENTS) != (ptype == "INDIVIDUAL"):
        raise ValidationError(f"rule {rule.name!r} derives segment {value} for an {ptype.lower()} party",
                              field="segment", code="segment_mismatch",
                              where=rules.where(("rules", i, "cases", j, "value")))
