"""What the console's pages read, as repository methods over one open unit of work (the only SQL the pages need
beyond :class:`~crmbridge.sync.state.store.StoreTx` and the ledger's own readers).

Every list is paginated on an indexed key, never with OFFSET: a page asks for rows *after* (or *before*) the last
key it showed, so the hundredth page costs what the first does, however long the ledger grows:

- runs: ``runs.id`` (the primary key), newest first, with job / status / start-date filters;
- ledger entries: ``seq`` (the primary key), with ``run_id`` or ``party_id`` through their indexes;
- dead letters and conflicts: their ``id``.

Nothing here decrypts: rows come back as stored (masked values, ciphertext untouched).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from crmbridge.sync.state.ledger import LedgerCheckpoint, LedgerEntry
from crmbridge.sync.state.store import StoreTx
from crmbridge.sync.state.tables import conflicts, cursors, dead_letters, mapping_versions, runs
from crmbridge.sync.state.version_sets import load_sets as load_version_sets
from crmbridge.sync.state.version_sets import ref_of as version_set_ref

__all__ = ["ConsoleViews"]


class ConsoleViews:
    """Read-only queries of the console's pages, inside one open :class:`StoreTx`."""

    def __init__(self, tx: StoreTx) -> None:
        self._conn = tx.connection

    # -- runs ------------------------------------------------------------------------------------------
    def runs_page(self, *, job: str | None = None, status: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, before_id: int | None = None, limit: int = 50
                  ) -> list[dict[str, Any]]:
        """Runs newest first (by id), ``limit + 1`` at most so the caller knows whether an older page exists;
        ``before_id``: only runs older than that id (the keyset of the next page)."""
        q = select(runs).order_by(runs.c.id.desc()).limit(limit + 1)
        if job:
            q = q.where(runs.c.job == job)
        if status:
            q = q.where(runs.c.status == status)
        if since is not None:
            q = q.where(runs.c.started_at >= since)
        if until is not None:
            q = q.where(runs.c.started_at < until)
        if before_id is not None:
            q = q.where(runs.c.id < before_id)
        return [dict(r) for r in self._conn.execute(q).mappings()]

    def recent_runs(self, job: str, *, limit: int = 30) -> list[dict[str, Any]]:
        """The ``limit`` latest runs of ``job``, oldest first (a chart's series), dry runs left out."""
        q = (select(runs.c.id, runs.c.status, runs.c.started_at, runs.c.finished_at, runs.c.counts)
             .where(runs.c.job == job, runs.c.dry_run.is_(False))
             .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit))
        return [dict(r) for r in reversed(self._conn.execute(q).mappings().all())]

    def statuses(self) -> list[str]:
        return sorted(str(s) for s in self._conn.execute(select(runs.c.status).distinct()).scalars())

    def cursors_of(self, job: str) -> list[dict[str, Any]]:
        q = select(cursors.c.object, cursors.c.field, cursors.c.value, cursors.c.updated_at).where(
            cursors.c.job == job).order_by(cursors.c.object)
        return [dict(r) for r in self._conn.execute(q).mappings()]

    # -- ledger ----------------------------------------------------------------------------------------
    def entries(self, *, run_id: str | None = None, party_ids: list[str] | None = None, after_seq: int = 0,
                before_seq: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Ledger entries as stored (JSON columns as text: :func:`~crmbridge.sync.state.ledger.decode_entry`
        reads them), ``limit + 1`` at most. Oldest first after ``after_seq``; newest first when ``before_seq`` is
        given (0 means from the head)."""
        t = LedgerEntry.__table__
        q = select(t)
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        if party_ids is not None:
            q = q.where(t.c.party_id.in_(party_ids))
        if before_seq is not None:
            if before_seq > 0:
                q = q.where(t.c.seq < before_seq)
            q = q.order_by(t.c.seq.desc())
        else:
            q = q.where(t.c.seq > after_seq).order_by(t.c.seq)
        rows = [dict(r) for r in self._conn.execute(q.limit(limit + 1)).mappings()]
        # encoding 4 names its mapping versions by the key of their set: attached for decode_entry
        refs = {r["seq"]: version_set_ref(json.loads(r["mapping_versions"])) for r in rows
                if r.get("enc") == 4 and r.get("mapping_versions")}
        sets = load_version_sets(self._conn, [[k] for k in refs.values() if k]) if refs else {}
        for r in rows:
            found = sets.get(refs.get(r["seq"]) or "")
            if found is not None:   # (decode_entry would also find it among the sets read)
                r["mapping_versions_set"] = found
        return rows

    def last_checkpoint(self) -> dict[str, Any] | None:
        t = LedgerCheckpoint.__table__
        row = self._conn.execute(select(t).order_by(t.c.id.desc()).limit(1)).mappings().first()
        return None if row is None else dict(row)

    # -- dead letters ----------------------------------------------------------------------------------
    def dead_letter_reasons(self, *, status: list[str] | None) -> list[dict[str, Any]]:
        """(job, stage, reason code) → how many letters and the oldest, most first."""
        t = dead_letters
        q = (select(t.c.job, t.c.stage, t.c.reason_code, func.count().label("n"),
                    func.min(t.c.created_at).label("oldest"))
             .group_by(t.c.job, t.c.stage, t.c.reason_code))
        if status:
            q = q.where(t.c.status.in_(status))
        rows = [dict(r) for r in self._conn.execute(q).mappings()]
        return sorted(rows, key=lambda r: (-int(r["n"]), r["job"], r["stage"], r["reason_code"]))

    def dead_letters_page(self, *, job: str | None = None, reason_code: str | None = None,
                          status: list[str] | None = None, after_id: int = 0, limit: int = 50
                          ) -> list[dict[str, Any]]:
        """Dead letters oldest first after ``after_id`` (their encrypted payload left out), ``limit + 1`` at most."""
        t = dead_letters
        q = select(*[c for c in t.c if c.name != "payload"]).where(t.c.id > after_id).order_by(t.c.id)
        if job:
            q = q.where(t.c.job == job)
        if reason_code:
            q = q.where(t.c.reason_code == reason_code)
        if status:
            q = q.where(t.c.status.in_(status))
        return [dict(r) for r in self._conn.execute(q.limit(limit + 1)).mappings()]

    # -- conflicts -------------------------------------------------------------------------------------
    def conflicts_page(self, *, status: str | None = "open", job: str | None = None, after_id: int = 0,
                       limit: int = 50) -> list[dict[str, Any]]:
        t = conflicts
        cols = [c for c in t.c if c.name not in ("base_value", "source_value", "target_value")]
        q = select(*cols).where(t.c.id > after_id).order_by(t.c.id)
        if status:
            q = q.where(t.c.status == status)
        if job:
            q = q.where(t.c.job == job)
        return [dict(r) for r in self._conn.execute(q.limit(limit + 1)).mappings()]

    # -- mappings --------------------------------------------------------------------------------------
    def all_mapping_versions(self) -> list[dict[str, Any]]:
        """Every archived mapping version (without its text), by file then oldest first."""
        t = mapping_versions
        q = (select(t.c.content_hash, t.c.system, t.c.object, t.c.file_name, t.c.first_seen_at)
             .order_by(t.c.file_name, t.c.first_seen_at, t.c.content_hash))
        return [dict(r) for r in self._conn.execute(q).mappings()]
