"""Canonical objects beside the party (docs/canonical.md §10): :class:`Holding`, :class:`Interaction` and
:class:`CampaignResponse`.

Each follows the party model's conventions (:mod:`crmbridge.canonical.model`): unknown keys rejected, input values
never echoed in errors, aware datetimes converted to UTC, every leaf field declared with
:func:`~crmbridge.canonical.classification.classified` (JR/T 0171 class, treatment at rest, CRM projection), custom
rule failures raised with a short code and the field they concern.

**Relationships are by canonical id.** Every object has its own id minted by crmbridge (``holding_id``,
``interaction_id``, ``response_id``; ``None`` on a record freshly mapped from a source, like a party's
``party_id``) and names its party by ``party_id``. A record read from a system that knows the party only by its own
number (a FLEXCUBE CUSTNO, a Zoho Contact id) carries that reference in ``party_source`` (system + id) until the
cross-reference resolves it to ``party_id``; an object needs one of the two (``missing_party``).

**Change detection.** :meth:`CanonicalObject.canonical_json` and :meth:`CanonicalObject.content_hash` follow the
party's rules (sorted keys, compact, lists of objects sorted, ``Decimal`` at the currency's minor unit), leaving out
the same volatile bookkeeping (``version``, ``updated_at``, ``source_updated_at``, ``synced_at`` and the volatile
members of ``source_refs``).

:data:`CANONICAL_OBJECTS` names every canonical object a mapping can declare (``canonical: Holding``), with the
model classes a path is looked up in; :func:`parse_object` validates a dict as one of them and raises
:class:`crmbridge.core.errors.ValidationError` (``field``, ``code``, message without values).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar

import pydantic
from pydantic import Field, model_validator

from crmbridge.canonical.classification import classified
from crmbridge.canonical.model import (
    PARTY_CLASSES,
    CanonicalModel,
    ConsentPurpose,
    Money,
    SourceRef,
    UtcDateTime,
    _custom,
    _dumps,
    aum_band,
    canonical_dict_of,
    hash_canonical,
    record_error,
)

__all__ = [
    "Balance",
    "CANONICAL_OBJECTS",
    "CHANNEL_CONSENT",
    "CampaignChannel",
    "CampaignResponse",
    "CanonicalObject",
    "ComplaintCategory",
    "Holding",
    "HoldingStatus",
    "ID_FIELDS",
    "Interaction",
    "InteractionChannel",
    "InteractionKind",
    "InteractionStatus",
    "Priority",
    "ProductFamily",
    "ResponseKind",
    "object_classes",
    "parse_object",
]


# --------------------------------------------------------------------------------------------------- code lists


class ProductFamily(StrEnum):
    """The family of a product a party holds."""

    DEPOSIT = "DEPOSIT"                          # 存款 (current, time, call deposits)
    WEALTH_MANAGEMENT = "WEALTH_MANAGEMENT"      # 理财产品
    FUND = "FUND"                                # 基金 (sold as an agent)
    INSURANCE = "INSURANCE"                      # 保险 (bancassurance, sold as an agent)
    LOAN = "LOAN"                                # 贷款
    CARD = "CARD"                                # 银行卡 (debit or credit card arrangement)


class HoldingStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DORMANT = "DORMANT"        # 久悬 / 睡眠户
    FROZEN = "FROZEN"          # 冻结
    MATURED = "MATURED"        # matured, not yet paid out or rolled over
    CLOSED = "CLOSED"


class InteractionKind(StrEnum):
    SERVICE_CASE = "SERVICE_CASE"
    COMPLAINT = "COMPLAINT"


class InteractionChannel(StrEnum):
    BRANCH = "BRANCH"
    PHONE = "PHONE"                  # call centre (95xxx)
    ONLINE_BANKING = "ONLINE_BANKING"
    MOBILE_APP = "MOBILE_APP"
    WECHAT = "WECHAT"
    EMAIL = "EMAIL"
    LETTER = "LETTER"
    RELATIONSHIP_MANAGER = "RELATIONSHIP_MANAGER"
    REGULATOR_REFERRAL = "REGULATOR_REFERRAL"   # transferred by the regulator (12378 / 12363 hotlines)
    OTHER = "OTHER"


class ComplaintCategory(StrEnum):
    """Consumer-complaint cause categories as the regulators' complaint statistics group them (the financial
    consumer-protection complaint classification of the PBoC and NFRA; codes are crmbridge's, the grouping is
    unverified against the current official text, see docs/canonical.md §10)."""

    SERVICE_ATTITUDE_QUALITY = "SERVICE_ATTITUDE_QUALITY"      # 服务态度及服务质量
    MARKETING_PRACTICE = "MARKETING_PRACTICE"                  # 营销方式和手段
    INFORMATION_DISCLOSURE = "INFORMATION_DISCLOSURE"          # 信息披露
    FREE_CHOICE = "FREE_CHOICE"                                # 自主选择权
    PRICING_AND_FEES = "PRICING_AND_FEES"                      # 定价收费
    FUND_LOSS = "FUND_LOSS"                                    # 消费者资金损失
    PERSONAL_INFORMATION = "PERSONAL_INFORMATION"              # 个人信息
    CONTRACT_TERMS = "CONTRACT_TERMS"                          # 合同条款
    DEBT_COLLECTION = "DEBT_COLLECTION"                        # 债务催收
    OPERATIONS_AND_SYSTEMS = "OPERATIONS_AND_SYSTEMS"          # 业务办理流程与规章制度 / 系统
    OTHER = "OTHER"                                            # 其他


class Priority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    URGENT = "URGENT"


class InteractionStatus(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    ESCALATED = "ESCALATED"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


_DONE = frozenset({InteractionStatus.RESOLVED, InteractionStatus.CLOSED})


class ResponseKind(StrEnum):
    INTERESTED = "INTERESTED"
    DECLINED = "DECLINED"
    CONVERTED = "CONVERTED"
    OPTED_OUT = "OPTED_OUT"


class CampaignChannel(StrEnum):
    SMS = "SMS"
    CALL = "CALL"
    EMAIL = "EMAIL"
    WECHAT = "WECHAT"
    APP_PUSH = "APP_PUSH"
    BRANCH = "BRANCH"
    RELATIONSHIP_MANAGER = "RELATIONSHIP_MANAGER"


#: the marketing consent an opt-out through a channel withdraws (a channel without its own consent purpose: all)
CHANNEL_CONSENT: dict[CampaignChannel, tuple[ConsentPurpose, ...]] = {
    CampaignChannel.SMS: (ConsentPurpose.MARKETING_SMS,),
    CampaignChannel.CALL: (ConsentPurpose.MARKETING_CALL,),
    CampaignChannel.EMAIL: (ConsentPurpose.MARKETING_EMAIL,),
}
_ALL_MARKETING = (ConsentPurpose.MARKETING_SMS, ConsentPurpose.MARKETING_CALL, ConsentPurpose.MARKETING_EMAIL)


# --------------------------------------------------------------------------------------------------- base


class Balance(Money):
    """A holding's balance (exact amount C2, never pushed; ``band`` C1, derived from a CNY amount when absent, with
    the AUM bands of docs/canonical.md §3). Negative amounts are refused: a loan or card carries what is owed."""

    as_of: dt.date | None = classified(None, cls="C1", crm="internal")
    band: str | None = classified(None, cls="C1", max_length=20)

    @model_validator(mode="after")
    def _band(self) -> Balance:
        if self.amount < 0:
            raise _custom("invalid_amount", "a balance cannot be negative (a loan or card carries what is owed)",
                          "amount")
        if self.band is None and self.currency == "CNY":
            self.band = aum_band(self.amount)
        return self


class CanonicalObject(CanonicalModel):
    """Base of the objects beside the party: own id, the party by canonical id (or by its source reference until
    resolved), source references, bookkeeping, canonical JSON and content hash."""

    #: the field holding the object's own canonical id
    id_field: ClassVar[str] = ""

    party_id: uuid.UUID | None = classified(None, cls="C1", description="The party (canonical id).")
    party_source: SourceRef | None = Field(default=None, description=(
        "The party as the source system knows it (system + its id), until the cross-reference resolves party_id."))
    source_refs: list[SourceRef] = Field(default_factory=list)
    created_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    updated_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    source_updated_at: UtcDateTime | None = classified(None, cls="C1", crm="internal")
    synced_at: dict[str, UtcDateTime] = classified(default_factory=dict, cls="C1", crm="internal")
    deleted_at: UtcDateTime | None = classified(None, cls="C1")
    version: int = classified(0, cls="C1", crm="internal", ge=0)

    @model_validator(mode="after")
    def _party_known(self) -> CanonicalObject:
        if self.party_id is None and self.party_source is None:
            raise _custom("missing_party", "the party is needed: party_id, or party_source until it is resolved",
                          "party_id")
        return self

    @property
    def object_id(self) -> uuid.UUID | None:
        """The object's own canonical id (``holding_id``...)."""
        return getattr(self, self.id_field)

    def canonical_dict(self, *, include_volatile: bool = False) -> dict[str, Any]:
        """The JSON-able dict behind :meth:`canonical_json` (the party's rules, docs/canonical.md §2)."""
        return canonical_dict_of(self, include_volatile=include_volatile)

    def canonical_json(self, *, include_volatile: bool = False) -> bytes:
        return _dumps(self.canonical_dict(include_volatile=include_volatile))

    def content_hash(self, key: bytes | None = None) -> str:
        """Hex HMAC-SHA256 (with ``key``) or SHA-256 of :meth:`canonical_json`."""
        return hash_canonical(self.canonical_dict(), key)


# --------------------------------------------------------------------------------------------------- objects


class Holding(CanonicalObject):
    """An arrangement a party holds (BIAN: a product arrangement): a deposit, a wealth management product, a fund, an
    insurance policy, a loan or a card.

    ``status`` CLOSED needs ``closed_on``; ``closed_on`` is allowed with CLOSED or MATURED only and never before
    ``opened_on``. The exact ``balance.amount`` is C2 (encrypted at rest, never pushed); ``balance.band`` is pushed.
    ``account_number`` (C2) goes to a CRM masked, last four digits at most.
    """

    id_field: ClassVar[str] = "holding_id"

    holding_id: uuid.UUID | None = classified(None, cls="C1", description="Minted by crmbridge.")
    product_family: ProductFamily = classified(cls="C1")
    product_code: str = classified(cls="C1", min_length=1, max_length=40)
    product_name: str | None = classified(None, cls="C1", max_length=200)
    status: HoldingStatus = classified(HoldingStatus.ACTIVE, cls="C1")
    opened_on: dt.date | None = classified(None, cls="C1", description="Account-opening date (C1 per JR/T 0171).")
    closed_on: dt.date | None = classified(None, cls="C1")
    maturity_on: dt.date | None = classified(None, cls="C1")
    balance: Balance | None = None
    account_number: str | None = classified(None, cls="C2", treat="BEM", mask="account_short", crm="masked",
                                            pattern=r"^[0-9A-Za-z -]{4,40}$")
    branch_code: str | None = classified(None, cls="C1", max_length=20)

    @model_validator(mode="after")
    def _dates(self) -> Holding:
        if self.status is HoldingStatus.CLOSED and self.closed_on is None:
            raise _custom("missing_closed_on", "a CLOSED holding needs closed_on", "closed_on")
        if self.closed_on is not None and self.status not in (HoldingStatus.CLOSED, HoldingStatus.MATURED):
            raise _custom("closed_on_mismatch", f"closed_on is given but the status is {self.status.value}",
                          "closed_on")
        if self.opened_on and self.closed_on and self.closed_on < self.opened_on:
            raise _custom("invalid_date_range", "closed_on is before opened_on", "closed_on")
        if self.opened_on and self.maturity_on and self.maturity_on < self.opened_on:
            raise _custom("invalid_date_range", "maturity_on is before opened_on", "maturity_on")
        return self

    def is_open(self, on: dt.date | None = None) -> bool:
        """Whether the holding is open (on ``on``: opened by then and not closed by then)."""
        if on is None:
            return self.status is not HoldingStatus.CLOSED and self.closed_on is None
        if self.opened_on is not None and self.opened_on > on:
            return False
        return self.closed_on is None or self.closed_on > on


class Interaction(CanonicalObject):
    """A service case or a complaint.

    ``regulator_category`` (the regulators' consumer-complaint category) is for complaints only. RESOLVED and
    CLOSED need ``closed_at``, which is allowed with them only; ``due_at`` and ``closed_at`` are never before
    ``opened_at``. ``sla_breached`` is derived when absent: closed after ``due_at`` (an open case is not judged
    here: the clock of whoever reads it decides). ``summary`` is free text written by people about a person:
    personal data (C2, encrypted at rest, never shown, never pushed to a CRM that did not write it).
    """

    id_field: ClassVar[str] = "interaction_id"

    interaction_id: uuid.UUID | None = classified(None, cls="C1", description="Minted by crmbridge.")
    kind: InteractionKind = classified(cls="C1")
    channel: InteractionChannel = classified(cls="C1")
    category: str | None = classified(None, cls="C1", max_length=60, description="The bank's own category code.")
    regulator_category: ComplaintCategory | None = classified(None, cls="C1")
    priority: Priority = classified(Priority.MEDIUM, cls="C1")
    status: InteractionStatus = classified(InteractionStatus.OPEN, cls="C1")
    opened_at: UtcDateTime = classified(cls="C1")
    due_at: UtcDateTime | None = classified(None, cls="C1")
    closed_at: UtcDateTime | None = classified(None, cls="C1")
    sla_breached: bool | None = classified(None, cls="C1")
    summary: str | None = classified(None, cls="C2", treat="E", mask="text", crm="never", max_length=4000)

    @model_validator(mode="after")
    def _rules(self) -> Interaction:
        if self.regulator_category is not None and self.kind is not InteractionKind.COMPLAINT:
            raise _custom("category_mismatch", "regulator_category applies to complaints only", "regulator_category")
        if self.status in _DONE and self.closed_at is None:
            raise _custom("missing_closed_at", f"a {self.status.value} interaction needs closed_at", "closed_at")
        if self.closed_at is not None and self.status not in _DONE:
            raise _custom("closed_at_mismatch", f"closed_at is given but the status is {self.status.value}",
                          "closed_at")
        if self.due_at is not None and self.due_at < self.opened_at:
            raise _custom("invalid_date_range", "due_at is before opened_at", "due_at")
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise _custom("invalid_date_range", "closed_at is before opened_at", "closed_at")
        if self.sla_breached is None and self.closed_at is not None and self.due_at is not None:
            self.sla_breached = self.closed_at > self.due_at
        return self


class CampaignResponse(CanonicalObject):
    """A party's response to a marketing campaign. An ``OPTED_OUT`` response withdraws the marketing consent of its
    channel (:meth:`withdrawn_consents`; all marketing purposes for a channel without its own)."""

    id_field: ClassVar[str] = "response_id"

    response_id: uuid.UUID | None = classified(None, cls="C1", description="Minted by crmbridge.")
    campaign_id: str = classified(cls="C1", min_length=1, max_length=64)
    campaign_name: str | None = classified(None, cls="C1", max_length=200)
    response: ResponseKind = classified(cls="C1")
    channel: CampaignChannel = classified(cls="C1")
    responded_at: UtcDateTime = classified(cls="C1")

    def withdrawn_consents(self) -> tuple[ConsentPurpose, ...]:
        """The consent purposes this response withdraws (none unless it is an opt-out)."""
        if self.response is not ResponseKind.OPTED_OUT:
            return ()
        return CHANNEL_CONSENT.get(self.channel, _ALL_MARKETING)


# --------------------------------------------------------------------------------------------------- registry

#: canonical object name → the model classes its paths are looked up in (the party: Individual, then Organisation)
CANONICAL_OBJECTS: dict[str, tuple[type[pydantic.BaseModel], ...]] = {
    "Party": PARTY_CLASSES,
    "Holding": (Holding,),
    "Interaction": (Interaction,),
    "CampaignResponse": (CampaignResponse,),
}

#: canonical object name → the field holding its own canonical id
ID_FIELDS: dict[str, str] = {"Party": "party_id", "Holding": "holding_id", "Interaction": "interaction_id",
                             "CampaignResponse": "response_id"}


def object_classes(name: str) -> tuple[type[pydantic.BaseModel], ...]:
    """The model classes of canonical object ``name``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    try:
        return CANONICAL_OBJECTS[name]
    except KeyError:
        raise KeyError(f"unknown canonical object {name!r}; known: {', '.join(CANONICAL_OBJECTS)}") from None


@cache
def _adapter(name: str) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(object_classes(name)[0])


def parse_object(name: str, data: Mapping[str, Any] | pydantic.BaseModel, *, where: str | None = None) -> Any:
    """Validate ``data`` as canonical object ``name`` (``Holding``, ``Interaction``, ``CampaignResponse``; ``Party``
    goes to :func:`crmbridge.canonical.model.parse_party`).

    Raises:
        ValidationError: with ``field`` (canonical path), ``code`` and a message without values.
        KeyError: ``name`` is not a canonical object.
    """
    if name == "Party":
        from crmbridge.canonical.model import parse_party

        return parse_party(data, where=where)   # type: ignore[arg-type]
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump()
    try:
        return _adapter(name).validate_python(data)
    except pydantic.ValidationError as exc:
        raise record_error(exc, where=where) from None
