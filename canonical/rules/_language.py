"""The rules language: derived fields (classified), facts, conditions, cases and rules, and the file's JSON Schema.

Nothing here evaluates text: a condition is a tree of validated nodes (``all``, ``any``, ``not`` and one comparison
of a named fact), each fact a function of the party, its holdings and its history registered in :data:`FACTS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from crmbridge.canonical.classification import FieldPolicy, classified, field_policies
from crmbridge.canonical.model import AUM_BANDS, CanonicalModel, SegmentCode, aum_band
from crmbridge.canonical.objects import Holding, HoldingStatus, ProductFamily

# --------------------------------------------------------------------------------------------------- derived fields


class CustomerLifecycle(StrEnum):
    """The marketing lifecycle stage of a customer relationship (not the party's BIAN ``lifecycle_stage``)."""

    ACQUISITION = "ACQUISITION"
    GROWTH = "GROWTH"
    RETENTION = "RETENTION"
    WIN_BACK = "WIN_BACK"


class DerivedFields(CanonicalModel):
    """The fields a rules file can derive, each classified like every canonical field (docs/rules.md)."""

    segment: SegmentCode | None = classified(None, cls="C1", description="Derived segment (party.segment.code).")
    lifecycle_stage: CustomerLifecycle | None = classified(None, cls="C1", description=(
        "Marketing lifecycle stage: ACQUISITION, GROWTH, RETENTION, WIN_BACK."))
    churn_risk: bool | None = classified(None, cls="C1", description="Churn-risk flag.")


DerivedName = Literal["segment", "lifecycle_stage", "churn_risk"]

#: the AUM band codes in ascending order (docs/canonical.md §3)
BAND_ORDER: tuple[str, ...] = (*(code for _, code in AUM_BANDS), "GE_30M")


# --------------------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class HistoryPoint:
    """One point of a party's history: when, and the AUM band it had then (from a stored snapshot)."""

    at: dt.datetime | dt.date
    aum_band: str | None

    @property
    def day(self) -> dt.date:
        return self.at.date() if isinstance(self.at, dt.datetime) else self.at


@dataclass
class FactContext:
    """What facts are computed from (built once per derivation)."""

    party: dict[str, Any]
    holdings: Sequence[Holding]
    history: Sequence[HistoryPoint]
    as_of: dt.date
    derived: dict[str, Any]


FactType = Literal["text", "number", "bool", "list"]


@dataclass(frozen=True)
class Fact:
    """A named fact: its type (which comparisons fit), class (how the trace shows it) and what it says."""

    name: str
    type: FactType
    description: str
    compute: Callable[[FactContext, dict[str, Any]], Any]
    data_class: Literal["C1", "C2"] = "C1"
    mask: str | None = None
    params: tuple[str, ...] = ()
    values: tuple[str, ...] | None = None


def _open(ctx: FactContext) -> list[Holding]:
    return [h for h in ctx.holdings if h.status is not HoldingStatus.CLOSED and h.closed_on is None]


def _total_balance(ctx: FactContext) -> Decimal | None:
    amounts = [h.balance.amount for h in _open(ctx) if h.balance is not None and h.balance.currency == "CNY"]
    return sum(amounts, Decimal("0.00")) if amounts else None


def _aum_band(ctx: FactContext) -> str | None:
    band = (ctx.party.get("aum") or {}).get("band")
    if band:
        return str(band)
    total = _total_balance(ctx)
    return aum_band(total) if total is not None else None


def _rank(band: str | None) -> int | None:
    return BAND_ORDER.index(band) if band in BAND_ORDER else None


def _band_drop(ctx: FactContext, params: dict[str, Any]) -> int:
    now = _rank(_aum_band(ctx))
    if now is None:
        return 0
    since = ctx.as_of - dt.timedelta(days=int(params.get("days") or 90))
    ranks = [r for p in ctx.history if since <= p.day <= ctx.as_of and (r := _rank(p.aum_band)) is not None]
    return max(0, max(ranks, default=now) - now)


def _days_since(ctx: FactContext, days: list[dt.date]) -> int | None:
    return (ctx.as_of - max(days)).days if days else None


def _days_since_first_opened(ctx: FactContext) -> int | None:
    opened = [h.opened_on for h in ctx.holdings if h.opened_on is not None]
    return (ctx.as_of - min(opened)).days if opened else None


def _activity_days(ctx: FactContext) -> list[dt.date]:
    out: list[dt.date] = []
    for h in ctx.holdings:
        out += [d for d in (h.opened_on, h.closed_on, h.balance.as_of if h.balance else None) if d is not None]
    return [d for d in out if d <= ctx.as_of]


def _families(ctx: FactContext) -> list[str]:
    return sorted({h.product_family.value for h in _open(ctx)})


_FACT_LIST: tuple[Fact, ...] = (
    Fact("aum_band", "text", "The party's AUM band (aum.band), else the band of its open CNY holdings' total.",
         lambda c, p: _aum_band(c), values=BAND_ORDER),
    Fact("aum_band_rank", "number", "The AUM band's rank: 0 (LT_50K) to 4 (GE_30M).",
         lambda c, p: _rank(_aum_band(c))),
    Fact("band_drop", "number", "How many AUM bands the party fell: highest band in the history within `days` "
                                "(default 90) before the evaluation date, minus the band now (0 if none).",
         _band_drop, params=("days",)),
    Fact("total_balance", "number", "Sum of the open holdings' CNY balances (C2: masked in every trace).",
         lambda c, p: _total_balance(c), data_class="C2", mask="amount"),
    Fact("holdings", "number", "How many holdings the party has (open or closed).", lambda c, p: len(c.holdings)),
    Fact("open_holdings", "number", "How many holdings are open.", lambda c, p: len(_open(c))),
    Fact("closed_holdings", "number", "How many holdings are closed.",
         lambda c, p: len(c.holdings) - len(_open(c))),
    Fact("all_holdings_closed", "bool", "The party had holdings and every one is closed.",
         lambda c, p: bool(c.holdings) and not _open(c)),
    Fact("open_families", "list", "The product families of the open holdings (use contains).", lambda c, p:
         _families(c), values=tuple(f.value for f in ProductFamily)),
    Fact("open_family_count", "number", "How many product families the open holdings span.",
         lambda c, p: len(_families(c))),
    Fact("days_since_first_opened", "number", "Days since the first holding was opened (none: no date).",
         lambda c, p: _days_since_first_opened(c)),
    Fact("days_since_last_opened", "number", "Days since the last holding was opened.",
         lambda c, p: _days_since(c, [h.opened_on for h in c.holdings if h.opened_on is not None])),
    Fact("days_since_last_closed", "number", "Days since the last holding was closed.",
         lambda c, p: _days_since(c, [h.closed_on for h in c.holdings if h.closed_on is not None])),
    Fact("days_since_last_activity", "number", "Days since the last holding event (opened, closed, balance date).",
         lambda c, p: _days_since(c, _activity_days(c))),
)

#: every named fact; besides these a condition may read ``party.<canonical path>`` and ``derived.<field>``
FACTS: dict[str, Fact] = {f.name: f for f in _FACT_LIST}


def derived_policies() -> dict[str, FieldPolicy]:
    """The classification of every derived field."""
    return field_policies(DerivedFields)


# --------------------------------------------------------------------------------------------------- the file

_OPERATORS = ("equals", "in_", "not_in", "gt", "gte", "lt", "lte", "present", "contains")
_SHAPES = ("all", "any", "not_", "fact")


class Condition(BaseModel):
    """A condition: ``all`` / ``any`` of conditions, ``not`` a condition, or one comparison of a ``fact``.

    A comparison gives exactly one of ``equals``, ``in``, ``not_in``, ``gt``, ``gte``, ``lt``, ``lte``,
    ``present``, ``contains`` (lists). A missing value (no holdings, no band) satisfies only ``present: false`` and
    ``not_in``.

    Example::

        when:
          all:
            - {fact: party.party_type, equals: INDIVIDUAL}
            - {fact: band_drop, days: 90, gte: 2}
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    all: list[Condition] | None = Field(default=None, min_length=1, description="Every condition holds.")
    any: list[Condition] | None = Field(default=None, min_length=1, description="At least one holds.")
    not_: Condition | None = Field(default=None, alias="not", description="The condition does not hold.")
    fact: str | None = Field(default=None, description=(
        "A named fact (aum_band, band_drop, open_holdings…), party.<canonical path> or derived.<field>."))
    days: int | None = Field(default=None, ge=1, le=3650, description="Window in days (band_drop).")
    equals: Any = Field(default=None, description="The value equals this.")
    in_: list[Any] | None = Field(default=None, alias="in", min_length=1, description="The value is one of these.")
    not_in: list[Any] | None = Field(default=None, min_length=1, description=(
        "The value is none of these (or missing)."))
    gt: Decimal | None = Field(default=None, description="The value is greater than this.")
    gte: Decimal | None = Field(default=None, description="The value is at least this.")
    lt: Decimal | None = Field(default=None, description="The value is less than this.")
    lte: Decimal | None = Field(default=None, description="The value is at most this.")
    present: bool | None = Field(default=None, description="true: the value is there; false: it is missing.")
    contains: Any = Field(default=None, description="The list value contains this.")

    @model_validator(mode="after")
    def _one_shape(self) -> Condition:
        shapes = [s for s in _SHAPES if getattr(self, s) is not None]
        if len(shapes) != 1:
            raise ValueError("a condition is exactly one of: all, any, not, fact")
        ops = [o for o in _OPERATORS if o in self.model_fields_set]
        if self.fact is None:
            if ops or self.days is not None:
                raise ValueError("comparisons (equals, in, gte…) and days go with fact:")
        elif len(ops) != 1:
            raise ValueError("a fact needs exactly one of equals, in, not_in, gt, gte, lt, lte, present, contains")
        elif getattr(self, ops[0]) is None:
            raise ValueError(f"{ops[0].rstrip('_')}: null compares nothing; to test a missing value use present: false")
        return self

    _op: str | None = PrivateAttr(default=None)

    @property
    def operator(self) -> str:
        """The comparison given (``in_`` for ``in``); computed once, conditions are evaluated per party."""
        if self._op is None:
            self._op = next(o for o in _OPERATORS if o in self.model_fields_set)
        return self._op

    @property
    def operand(self) -> Any:
        return getattr(self, self.operator)


class Case(BaseModel):
    """``value`` when ``when`` holds (a case without ``when`` always holds: put it last)."""

    model_config = ConfigDict(extra="forbid")
    when: Condition | None = Field(default=None, description="The condition (none: always).")
    value: Any = Field(description="The derived value (checked against the derived field's type).")


class Rule(BaseModel):
    """One derived field: the first case that holds gives its value; none holds: not derived.

    Example::

        - name: churn_risk
          description: AUM down two bands within 90 days, or the last holding closed lately
          derive: churn_risk
          cases:
            - when: {fact: band_drop, days: 90, gte: 2}
              value: true
            - value: false
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Unique name (shown in traces and ledgers).")
    description: str = Field(description="What the rule is for.")
    derive: DerivedName = Field(description="The derived field: segment, lifecycle_stage or churn_risk.")
    when: Condition | None = Field(default=None, description="The rule applies only when this holds.")
    cases: list[Case] = Field(min_length=1, description="Tried in order; the first that holds decides.")


class RulesSpec(BaseModel):
    """A rules file (``mappings/rules.yaml``): derived canonical fields from canonical data."""

    model_config = ConfigDict(extra="forbid", title="crmbridge rules")
    version: int | str = Field(description="Version of this rules file; bump it on every change.")
    description: str = Field(description="What the rules are for.")
    rules: list[Rule] = Field(min_length=1, description="The rules, evaluated in order.")


def rules_json_schema() -> dict[str, Any]:
    """The JSON Schema of the rules language (``crmbridge rules schema``; ``mappings/rules.schema.json``)."""
    schema = RulesSpec.model_json_schema(by_alias=True)
    cond = schema.get("$defs", {}).get("Condition", {})
    names = "|".join(sorted(FACTS))
    if "properties" in cond:
        cond["properties"]["fact"] = {
            "anyOf": [{"type": "string", "pattern": rf"^({names}|party\..+|derived\.[a-z_]+)$"}, {"type": "null"}],
            "default": None, "description": cond["properties"]["fact"].get("description", ""), "title": "Fact"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://crmbridge.invalid/rules.schema.json"
    schema["description"] = "crmbridge segmentation and lifecycle rules: derived fields from canonical data. See " \
                            "docs/rules.md."
    return schema
