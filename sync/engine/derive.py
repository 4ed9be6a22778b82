"""Segmentation and lifecycle rules in party runs: derived fields computed after a party is mapped in.

A one-way party job whose configuration names a rules file (``jobs.<name>.rules: rules.yaml``, docs/rules.md §7)
derives, for every party it maps in, the rules' fields (:func:`crmbridge.canonical.rules.derive`) from

* the party as just mapped in (its AUM band among others),
* its holdings in the state store (``StoreTx.holdings_of(party_id, cipher=…)``),
* its history: the AUM band of every stored snapshot of the party (when it was synced; the snapshots of both sides
  of every configured job, read for the whole batch at once) and the band now,

and places them with :meth:`Derivation.apply_to` (``segment.code``, ``extensions.<field>``) before the consent
check and the map-out: the target mapping pushes them like any field, the snapshot keeps them, the payload hash
makes an unchanged derivation cost no call, and the ledger entry lists them among the changed fields, its reason
naming the rules file and version. The rules file is versioned with the job's mappings
(:mod:`crmbridge.sync.engine.versions`): a changed file re-derives every party. A derivation that fails (a
derived value the party model refuses) is the record's dead letter at stage ``derive``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmbridge.adapters.base import RawRecord
from crmbridge.canonical.model import Party
from crmbridge.canonical.rules import Derivation, Rules, derive, load_rules
from crmbridge.core.errors import CrmBridgeError, RecordError
from crmbridge.sync.engine.context import Decision, RunContext
from crmbridge.sync.engine.records import TOMBSTONE
from crmbridge.sync.engine.versions import Versions
from crmbridge.sync.state.ledger import Action
from crmbridge.sync.state.store import StoreTx

__all__ = ["RULES_ROLE", "Derive", "derived_reason"]

log = logging.getLogger("crmbridge.sync")

#: the role of a job's rules file among its versioned files (beside ``source`` and ``target``)
RULES_ROLE = "rules"


def derived_reason(rules: Rules, derivation: Derivation, ref: str) -> str:
    """The ledger reason of a write carrying derived fields: which fields, which rules file, which version."""
    names = ", ".join(sorted(derivation.fields)) or "none"
    return f"derived by rules {ref} version {rules.version_hash}: {names}"


class Derive(Versions):
    """Rules in party runs (a part of :class:`~crmbridge.sync.engine.runner.JobRunner`)."""

    _loaded_rules: Rules | None = None

    def job_rules(self) -> Rules | None:
        """The job's rules (loaded once per runner), or ``None`` when its configuration names no rules file."""
        ref = getattr(self.job, "rules", None)
        if ref is None:
            return None
        if self._loaded_rules is None:
            self._loaded_rules = load_rules(self.rt.config.mapping_path(ref))
        return self._loaded_rules

    # -- versions: the rules file is versioned like the job's mappings ---------------------------------
    def _mapping_refs(self) -> dict[str, str]:
        refs = super()._mapping_refs()
        ref = getattr(self.job, "rules", None)
        return {**refs, RULES_ROLE: ref} if ref is not None else refs

    def mapping_versions(self) -> dict[str, str]:
        out = {role: self.rt.mapping(ref).version_hash for role, ref in super()._mapping_refs().items()}
        rules = self.job_rules()
        if rules is not None:
            out[RULES_ROLE] = rules.version_hash
        return out

    def _mapping_texts(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ref in super()._mapping_refs().values():
            m = self.rt.mapping(ref)
            try:
                out[m.version_hash] = Path(m.path).read_text(encoding="utf-8")
            except OSError:
                continue
        rules = self.job_rules()
        if rules is not None:
            text = rules.text
            if text is None:
                try:
                    text = Path(rules.path).read_text(encoding="utf-8")
                except OSError:
                    text = None
            if text is not None:
                out[rules.version_hash] = text
        return out

    # -- deriving --------------------------------------------------------------------------------------
    _known: set[str] | None = None

    def _history_pairs(self) -> list[tuple[str, str]]:
        """The (system, object)s a party's snapshots are kept for: both sides of every configured job."""
        pairs = {(j.target_system, j.target_object) for j in self.rt.config.jobs.values()}
        pairs |= {(j.source_system, j.source_object) for j in self.rt.config.jobs.values()}
        return sorted(pairs)

    def _prefetch(self, tx: StoreTx, ctx: RunContext, raws: list[RawRecord], *, retry: bool) -> None:
        """With rules: the batch's known parties' snapshots of every system too (their history), one query per
        (system, object) for the whole batch instead of one per record."""
        super()._prefetch(tx, ctx, raws, retry=retry)
        if self.job_rules() is None or ctx.job.direction != "one_way":
            return
        src = ctx.source
        pids = {p for p in (tx.get_xref(src.system, src.object, r.external_id) for r in raws) if p is not None}
        self._known = pids
        tx.prefetch_parties(pids, snapshots_of=self._history_pairs())

    def derive_party(self, tx: StoreTx, ctx: RunContext, d: Decision, party: Party) -> Party | None:
        """The party with the rules' derived fields applied (itself when the job has no rules; ``None``: the
        derivation failed and ``d`` says why)."""
        rules = self.job_rules()
        if rules is None or ctx.job.direction != "one_way":
            return party
        pid = str(party.party_id)
        try:   # the party's holdings as the holdings jobs stored them (sealed under its key)
            holdings = tx.holdings_of(pid, cipher=self.rt.cipher) if d.party_id is not None else []
        except CrmBridgeError as exc:
            log.warning("party %s: stored holdings unreadable (%s): derived without holdings", pid, exc)
            holdings = []
        try:
            derivation = derive(party, holdings, self._history(tx, pid, party), rules)
            derived, left = derivation.apply_to(party)
        except CrmBridgeError as exc:
            d.action, d.stage = Action.FAILED, "derive"
            d.error = exc if isinstance(exc, RecordError) else RecordError(str(exc), code="derive")
            return None
        if left and not any(w.startswith(f"rules {ctx.job.rules}: derived field") for w in ctx.report.warnings):
            ctx.report.warnings.append(f"rules {ctx.job.rules}: derived field(s) {', '.join(sorted(left))} have no "
                                       "place in the party (declare them as C1 extensions: docs/rules.md §7)")
        d.reason = derived_reason(rules, derivation, str(ctx.job.rules))
        return derived

    def _history(self, tx: StoreTx, party_id: str, party: Party) -> list[dict[str, Any]]:
        """The AUM band of each stored snapshot of the party (when it was synced), then the band now."""
        points: list[dict[str, Any]] = []
        pairs = self._history_pairs()
        if self._known is not None and party_id not in self._known:   # minted in this batch: no snapshot anywhere
            tx.assume_new_party(party_id, snapshots_of=pairs)
        for system, obj in pairs:
            snap = tx.get_snapshot(party_id, system, obj)
            if snap is None:
                continue
            row = {"system": system, "object": obj, "content_hash": snap.content_hash, "blob": snap.blob,
                   "synced_at": getattr(snap, "synced_at", None)}
            if row["content_hash"] == TOMBSTONE or not row["blob"] or row["synced_at"] is None:
                continue
            try:
                data = tx.unseal(self.rt.cipher, "snapshots", "blob", token=row["blob"],
                                 row={"party_id": party_id, "system": row["system"], "object": row["object"]})
            except CrmBridgeError:
                continue   # erased or unreadable: no history point
            band = (data.get("aum") or {}).get("band") if isinstance(data, dict) else None
            at = row["synced_at"]
            if band is not None:
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
                points.append({"at": at.isoformat(), "aum_band": band})
        now = (party.canonical_dict().get("aum") or {}).get("band")
        if now is not None:
            points.append({"at": datetime.now(UTC).isoformat(), "aum_band": now})
        return sorted(points, key=lambda p: p["at"])
