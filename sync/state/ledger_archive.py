"""Retention: move old ledger entries into sealed segment files, keeping an anchor so the chain stays verifiable.

``archive(conn, signer, before=DATE, to=DIR)`` takes the oldest entries recorded before DATE, up to the last signed
checkpoint among them, and writes

* ``segment-<first>-<last>.jsonl``: those entries and their checkpoints, in the export format;
* ``segment-<first>-<last>.manifest.json``: first/last seq, the hash the segment continues from and ends at, the
  Merkle frontier at its end, the segment's SHA-256, signed with the ledger key (Ed25519 over its canonical JSON).

Both files are made read-only. Then, in the same transaction, ``ledger_anchor`` records the last archived entry
(seq, hash, Merkle frontier) and the archived entries and checkpoints are deleted: the database's chain continues
from the anchor, and ``ledger verify --with-archive DIR`` checks archive and database as one chain.

The deletion is the one sanctioned exception to the append-only rule. On PostgreSQL the trigger lets a DELETE
through only for rows at or below the recorded anchor, in a transaction that set ``crmbridge.ledger_archive``;
and only the owner role has DELETE on the ledger tables (``crmbridge db grant``): archive runs as the owner.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, delete, insert, inspect, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from crmbridge.sync.state import verify_ledger as vl
from crmbridge.sync.state.db import Base
from crmbridge.sync.state.keys import as_connection
from crmbridge.sync.state.ledger import (
    GENESIS,
    Ledger,
    LedgerCheckpoint,
    LedgerEntry,
    LedgerError,
    LedgerSigner,
    _body_from_record,
)

__all__ = ["ArchiveResult", "LedgerAnchor", "archive", "read_anchor"]

_BigInt = BigInteger().with_variant(Integer(), "sqlite")


class LedgerAnchor(Base):
    """The last archived entry (one row, id 1): the database's chain continues from it."""

    __tablename__ = "ledger_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(_BigInt)
    entry_hash: Mapped[str] = mapped_column(String(64))
    hash_alg: Mapped[str] = mapped_column(String(8))
    frontier: Mapped[str] = mapped_column(Text)     # JSON [[height, hex], ...] after entry ``seq``
    segment: Mapped[str] = mapped_column(String(255))
    archived_at: Mapped[str] = mapped_column(String(32))


def read_anchor(conn: Any) -> dict[str, Any] | None:
    """The archive anchor, or None (nothing archived, or a schema from before archiving existed)."""
    conn = as_connection(conn)
    t = LedgerAnchor.__table__
    if not inspect(conn).has_table(t.name):
        return None
    r = conn.execute(select(t).where(t.c.id == 1)).mappings().first()
    if r is None:
        return None
    return {"seq": int(r["seq"]), "entry_hash": r["entry_hash"], "hash_alg": r["hash_alg"],
            "frontier": json.loads(r["frontier"]), "segment": r["segment"]}


@dataclass(frozen=True)
class ArchiveResult:
    first_seq: int
    last_seq: int
    entries: int
    checkpoints: int
    segment: Path
    manifest: Path


def _seal(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o444)


def archive(conn: Any, signer: LedgerSigner, *, before: datetime, to: Path) -> ArchiveResult | None:
    """Archive the entries recorded before ``before`` (up to their last signed checkpoint) into ``to``.

    Runs inside the caller's transaction; returns None when nothing is old enough (or no checkpoint covers it).
    """
    conn = as_connection(conn)
    ledger = Ledger(conn, signer)
    ledger._lock_head()   # no appender between choosing the range and deleting it
    anchor = read_anchor(conn)
    start = anchor["seq"] if anchor else 0
    e, c = LedgerEntry.__table__, LedgerCheckpoint.__table__
    cutoff = before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    young = conn.execute(select(e.c.seq).where(e.c.seq > start, e.c.recorded_at >= cutoff)
                         .order_by(e.c.seq).limit(1)).scalar()
    limit = (young - 1) if young is not None else ledger.head()[0]
    last = conn.execute(select(c.c.tree_size).where(c.c.tree_size > start, c.c.tree_size <= limit,
                                                    c.c.key_id == signer.key_id)
                        .order_by(c.c.tree_size.desc()).limit(1)).scalar()
    if last is None:
        return None
    last = int(last)
    entries = []
    for r in conn.execute(select(e).where(e.c.seq > start, e.c.seq <= last).order_by(e.c.seq)).mappings():
        rec = _body_from_record(r)
        rec["entry_hash"] = r["entry_hash"]
        entries.append(rec)
    cps = [cp for cp in ledger.checkpoints() if int(cp["tree_size"]) <= last]
    check = vl.verify(entries, cps, public_keys=[signer.public_key], anchor=anchor)
    bad = [p for p in check.problems if p.kind != "forged-run"]
    if bad or check.entries != last:
        raise LedgerError(f"the entries to archive do not verify ({bad[0] if bad else 'incomplete'}); "
                          "archive refused")
    frontier: list[tuple[int, bytes]] = [(int(h), bytes.fromhex(x)) for h, x in (anchor or {}).get("frontier", [])]
    alg = "sha256"
    for rec in entries:
        alg = rec.get("hash_alg") or "sha256"
        body = {k: v for k, v in rec.items() if k != "entry_hash"}
        vl._push_leaf(frontier, vl._h(b"\x00" + vl.canonical_json(body).encode("utf-8"), alg), alg)
    lines = [vl.canonical_json({"type": "entry", **x}) for x in entries]
    lines += [vl.canonical_json({"type": "checkpoint", **cp}) for cp in cps]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    name = f"segment-{start + 1:012d}-{last:012d}"
    to.mkdir(parents=True, exist_ok=True)
    seg, man = to / f"{name}.jsonl", to / f"{name}.manifest.json"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    manifest = {"file": seg.name, "first_seq": start + 1, "last_seq": last,
                "prev_hash": anchor["entry_hash"] if anchor else GENESIS, "last_hash": entries[-1]["entry_hash"],
                "entries": len(entries), "checkpoints": len(cps), "hash_alg": alg,
                "frontier": [[h, x.hex()] for h, x in frontier], "sha256": hashlib.sha256(data).hexdigest(),
                "before": cutoff, "created_at": now}
    doc = {"manifest": manifest, "signature": signer.sign(vl.canonical_json(manifest)), "key_id": signer.key_id}
    _seal(seg, data)
    try:
        _seal(man, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        a = LedgerAnchor.__table__
        row = {"seq": last, "entry_hash": entries[-1]["entry_hash"], "hash_alg": alg,
               "frontier": json.dumps(manifest["frontier"]), "segment": seg.name, "archived_at": now}
        if anchor is None:
            conn.execute(insert(a).values(id=1, **row))
        else:
            conn.execute(update(a).where(a.c.id == 1).values(**row))
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL crmbridge.ledger_archive = 'on'"))
        conn.execute(delete(e).where(e.c.seq <= last))
        conn.execute(delete(c).where(c.c.tree_size <= last))
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL crmbridge.ledger_archive = 'off'"))
    except BaseException:
        for p in (seg, man):
            if p.exists():
                os.chmod(p, 0o600)
                p.unlink()
        raise
    return ArchiveResult(start + 1, last, len(entries), len(cps), seg, man)

