"""Four eyes: revealing a C2 value in clear, and erasing a party, need one user's request with a reason and a
DIFFERENT user's approval; both are ledgered with their reasons (``four-eyes-requested``, ``four-eyes-approved`` /
``four-eyes-rejected``), with the signed-in users as actors.

- **Reveal**: an auditor or steward asks for named fields of one party (concrete paths such as
  ``identifiers[0].value`` or templates such as ``identifiers[].value``, C2 fields only). Once approved it lasts
  ``ConsoleSettings.reveal_minutes``, for the requester only and those fields of that party only:
  :func:`revealed_fields` returns the clear values (decrypted from the state store's snapshots of the party) and
  ledgers each viewing as ``revealed`` before returning them. Every page that shows a clear value gets it from
  :func:`revealed_fields`, never from the snapshots itself.
- **Erasure**: a steward asks; on approval crmbridge's erasure (:func:`crmbridge.sync.security.privacy.erase_party`,
  as ``crmbridge erase`` does) runs in the same transaction that moves the request from ``pending`` to
  ``executed``, with the approver as actor and the requester in the annotation beside it. The move is a
  conditional update (:meth:`ConsoleRepository.decide_request`): of two approvals at once exactly one wins, so
  an erasure executes once.

The requester can never decide their own request (refused and ledgered as ``refused``, why ``self-approval``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from crmbridge.console.actions import append_entries, publish
from crmbridge.core.errors import CrmBridgeError
from crmbridge.sync.state.console import ConsoleRepository
from crmbridge.sync.state.ledger import Action, LedgerEntryIn, format_actor

__all__ = ["KINDS", "FieldValue", "FourEyesError", "decide", "file_request", "party_fields", "party_key",
           "revealed_fields"]

#: what a four-eyes request may ask for
KINDS = ("reveal", "erasure")
#: the longest reason kept (a reason is free text: masked like any in the ledger)
REASON_WIDTH = 500


class FourEyesError(CrmBridgeError):
    """A request or decision refused; ``status`` is the HTTP status the console answers with."""

    def __init__(self, message: str, *, status: int = 400, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.status = status


@dataclass(frozen=True)
class FieldValue:
    """One C2 value of a party: its concrete path, template path, masked form and clear value."""

    path: str
    template: str
    masked: str
    clear: str


def _rt(target: Any) -> Any:
    state = getattr(target, "state", target)
    return getattr(state, "runtime", state)


def _settings(target: Any) -> Any:
    state = getattr(target, "state", target)
    return state.settings


def party_key(party_id: str) -> str:
    """A party id in its one form (a lower-case UUID); 404 when it is not one."""
    try:
        return str(uuid.UUID(str(party_id).strip()))
    except ValueError:
        raise FourEyesError("a party id is a UUID (as the lineage and ledger pages show it)", status=404,
                            where="party_id") from None


def _reason(reason: str | None, what: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise FourEyesError(f"{what} needs a reason (recorded in the ledger)", where="reason")
    return text[:REASON_WIDTH]


def party_fields(target: Any, party_id: str) -> list[FieldValue]:
    """Every C2 value the state store holds for ``party_id`` (its snapshots, newest first; a path once), masked and
    clear. For the four-eyes pages: show only ``masked`` unless :func:`revealed_fields` allowed it."""
    from crmbridge.canonical.classification import iter_classified_values, template_path
    from crmbridge.canonical.model import parse_party
    from crmbridge.sync.engine import snapshot_row

    rt = _rt(target)
    pid = party_key(party_id)
    out: dict[str, FieldValue] = {}
    with rt.store.transaction(read_only=True) as tx:
        rows = sorted(tx.snapshots_of_party(pid), key=lambda r: r["synced_at"], reverse=True)
        for r in rows:
            data = tx.unseal(rt.cipher, "snapshots", "blob", row=snapshot_row(pid, r["system"], r["object"]),
                             token=r["blob"])
            party = parse_party({**data, "party_id": pid})
            for path, value, pol in iter_classified_values(party):
                if not pol.is_personal or path in out:
                    continue
                clear = str(getattr(value, "value", value))
                out[path] = FieldValue(path, template_path(path), pol.mask(clear), clear)
    return sorted(out.values(), key=lambda f: f.path)


def _matches(f: FieldValue, asked: set[str]) -> bool:
    return f.path in asked or f.template in asked


def file_request(target: Any, principal: Any, *, kind: str, party_id: str, fields: list[str] | None,
                 reason: str | None) -> int:
    """File a four-eyes request (the caller checked the role: ``reveal.request`` / ``erasure.request``) and ledger
    it; its id."""
    if kind not in KINDS:
        raise FourEyesError(f"unknown request kind {kind!r}; known: {', '.join(KINDS)}", where="kind")
    rt = _rt(target)
    pid = party_key(party_id)
    why = _reason(reason, f"a {kind} request")
    asked = sorted({f.strip() for f in fields or [] if f.strip()})
    if kind == "reveal":
        known = party_fields(rt, pid)
        if not known:
            raise FourEyesError(f"party {pid} has no personal data in the state store (unknown, or erased)",
                                status=404, where="party_id")
        unknown = [a for a in asked if not any(_matches(f, {a}) for f in known)]
        if not asked or unknown:
            raise FourEyesError("name the C2 fields to reveal, among the party's: "
                                + ", ".join(f.path for f in known)
                                + (f" (not among them: {', '.join(unknown)})" if unknown else ""), where="fields")
    else:
        asked = []
        with rt.store.transaction(read_only=True) as tx:
            if not tx.xrefs_for_party(pid) and not tx.snapshots_of_party(pid):
                raise FourEyesError(f"crmbridge knows no party {pid}", status=404, where="party_id")
    now = rt.store.clock()
    with rt.store.transaction() as tx:
        rid = ConsoleRepository(tx).add_request(kind=kind, party_id=pid, fields=asked, reason=why,
                                                requested_by=principal.username, now=now)
        append_entries(rt, [LedgerEntryIn(action=Action.FOUR_EYES_REQUESTED, party_id=pid, changed_fields=asked,
                                   actor=principal.actor, source_system="console", source_object=kind,
                                   source_id=str(rid), reason=f"{kind} request #{rid}: {why}")], tx=tx)
    publish(rt)
    return rid


def decide(target: Any, principal: Any, request_id: int, *, kind: str, approve: bool, reason: str | None,
           audit: Any = None) -> dict[str, Any]:
    """Approve or reject a pending request of ``kind`` (the caller checked the role: ``reveal.approve`` /
    ``erasure.approve``) by a user other than its requester; ledgered. An approved erasure is executed here.
    Returns the request as decided. A requester deciding their own request is ledgered through ``audit`` (by
    default the console's hook, when ``target`` is a ConsoleRequest or the ConsoleState)."""
    rt = _rt(target)
    settings = _settings(target)
    audit = audit if audit is not None else getattr(getattr(target, "state", target), "audit", None)
    why = _reason(reason, "a decision")
    with rt.store.transaction(read_only=True) as tx:
        req = ConsoleRepository(tx).request(request_id)
    if req is None or req["kind"] != kind:
        raise FourEyesError(f"no {kind} request #{request_id}", status=404)
    if req["requested_by"] == principal.username:
        if audit is not None:
            audit("refused", principal.actor, action=f"{kind}.approve", why="self-approval",
                  path=f"request #{request_id}")
        raise FourEyesError(f"you filed {kind} request #{request_id}: a different user must decide it", status=403)
    if req["status"] != "pending":
        raise FourEyesError(f"{kind} request #{request_id} is already {req['status']}", status=409)
    now = rt.store.clock()
    requester = f"{req['requested_by']}@console"
    status = ("executed" if kind == "erasure" else "approved") if approve else "rejected"
    values: dict[str, Any] = {"decided_by": principal.username, "decided_at": now, "decision_reason": why}
    if approve and kind == "reveal":
        values["expires_at"] = now + timedelta(minutes=float(settings.reveal_minutes))
    with rt.store.transaction() as tx:
        if not ConsoleRepository(tx).decide_request(request_id, expected_status="pending", status=status, **values):
            raise FourEyesError(f"{kind} request #{request_id} was decided by someone else meanwhile", status=409)
        verdict = "approved" if approve else "rejected"
        entry = LedgerEntryIn(
            action=Action.FOUR_EYES_APPROVED if approve else Action.FOUR_EYES_REJECTED, party_id=req["party_id"],
            changed_fields=list(req["fields"] or []), actor=principal.actor, actor_note=f"requested by {requester}",
            source_system="console", source_object=kind, source_id=str(request_id),
            reason=f"{kind} request #{request_id} {verdict}: {why}"
                   + (f" (reveal until {values['expires_at']:%Y-%m-%d %H:%M:%S} UTC)" if "expires_at" in values
                      else ""))
        append_entries(rt, [entry], tx=tx)
        if approve and kind == "erasure":
            _erase(rt, tx, req, principal, requester, why)
    publish(rt)
    with rt.store.transaction(read_only=True) as tx:
        return ConsoleRepository(tx).request(request_id) or req


def _erase(rt: Any, tx: Any, req: dict[str, Any], principal: Any, requester: str, why: str) -> None:
    """crmbridge's erasure (as ``crmbridge erase`` runs it), in the decision's transaction."""
    from crmbridge.sync.security.privacy import erase_party

    jobs = rt.config.jobs.values()
    sources = {(j.source_system, j.source_object) for j in jobs}
    targets = {(j.target_system, j.target_object) for j in jobs} - sources
    ledger = tx.ledger(rt.signer, cipher=rt.cipher)
    erase_party(tx, rt.cipher, req["party_id"], ledger=ledger,
                reason=f"erasure request #{req['id']} by {requester}: {req['reason']}; approved: {why}",
                actor=format_actor(principal.actor, f"four eyes, requested by {requester}"), targets=targets)
    ledger.checkpoint()


def revealed_fields(target: Any, principal: Any, party_id: str, *, where: str = "console") -> dict[str, str]:
    """The clear values ``principal`` may see of ``party_id`` now: the fields of their approved, unexpired reveal
    requests for that party (path → clear value); empty when none. Each non-empty answer is ledgered as
    ``revealed`` (who, which fields, which requests, ``where``) before it is returned: a reveal that cannot be
    ledgered does not happen. ``target`` is a ConsoleRequest, the ConsoleState or the Runtime."""
    rt = _rt(target)
    pid = party_key(party_id)
    with rt.store.transaction(read_only=True) as tx:
        active = ConsoleRepository(tx).active_reveals(principal.username, pid, rt.store.clock())
    if not active:
        return {}
    asked = {f for r in active for f in (r["fields"] or [])}
    values = {f.path: f.clear for f in party_fields(rt, pid) if _matches(f, asked)}
    if values:
        ids = ", ".join(f"#{r['id']} (approved by {r['decided_by']}@console)" for r in active)
        append_entries(rt, [LedgerEntryIn(action=Action.REVEALED, party_id=pid, changed_fields=sorted(values),
                                   actor=principal.actor, source_system="console", source_object="reveal",
                                   reason=f"{where}: four-eyes reveal {ids}")])
    return values
