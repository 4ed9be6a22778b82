"""Trust in the ledger: checkpoints on demand, pinned signing keys and their hand-over, published heads, and the
verification that ties them together (docs/auditor.md).

* :func:`sign_now` signs the current head; every command that appends outside a run calls it before committing.
* :func:`fingerprint` is what operators pin (``ledger.trusted_keys``) and auditors keep.
* :func:`rotate_signing_key` ledgers a hand-over (a ``key-rotated`` entry on ``signing-key`` naming the old and the
  new public key) and signs the head at that entry with BOTH keys; verification follows the chain.
* :func:`publish_pending` sends every checkpoint not yet published to each configured target (an append-only
  file, a webhook, syslog), after the checkpoint's transaction committed: a published head never names a
  checkpoint that was rolled back. Each target's progress is kept in ``ledger_published``.
* :func:`verify_database` verifies the database (from the archive anchor, or with the archive) with the
  standalone verifier's rules (:mod:`crmbridge.sync.state.verify_ledger`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import syslog as _syslog
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Integer, String, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.state import verify_ledger as vl
from crmbridge.sync.state.db import Base
from crmbridge.sync.state.keys import as_connection
from crmbridge.sync.state.ledger import (
    Action,
    Ledger,
    LedgerCheckpoint,
    LedgerEntry,
    LedgerEntryIn,
    LedgerSigner,
)

__all__ = ["HANDOVER_OBJECT", "LedgerPublished", "Publisher", "fingerprint", "handover_entries",
           "publish_configured", "publish_pending", "rotate_signing_key", "sign_now", "verify_database"]

log = logging.getLogger(__name__)
HANDOVER_OBJECT = vl.HANDOVER_OBJECT


class LedgerPublished(Base):
    """How far each publishing target got: the id of the last checkpoint sent to it."""

    __tablename__ = "ledger_published"

    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(Integer)


def fingerprint(key: Ed25519PublicKey | LedgerSigner) -> str:
    """SHA-256 of the raw public key, hex: what ``ledger.trusted_keys`` pins (its first 16 characters: key id)."""
    return vl.fingerprint(key.public_key if isinstance(key, LedgerSigner) else key)


def _key_text(key: Ed25519PublicKey) -> str:
    return vl.KEY_PREFIX + base64.b64encode(vl.raw_public_key(key)).decode("ascii")


def sign_now(conn: Any, signer: LedgerSigner | None) -> dict[str, Any] | None:
    """Sign the current head inside the caller's transaction (None without a signer or when nothing is new)."""
    conn = as_connection(conn)
    if signer is None:
        return None
    ledger = Ledger(conn, signer)
    seq, head = ledger.head()
    t = LedgerCheckpoint.__table__
    last = conn.execute(select(t.c.tree_size, t.c.chain_head, t.c.key_id).order_by(t.c.id.desc()).limit(1)).first()
    if last is not None and int(last[0]) == seq and last[1] == head and last[2] == signer.key_id:
        return None
    return ledger.checkpoint()


def rotate_signing_key(conn: Any, old: LedgerSigner, new: LedgerSigner, *, actor: str,
                       reason: str | None = None) -> int:
    """Ledger the hand-over from ``old`` to ``new`` and sign it with both; returns the hand-over's seq."""
    conn = as_connection(conn)
    if old.key_id == new.key_id:
        raise ConfigurationError("the new signing key is the current one")
    ledger = Ledger(conn, old)
    sign_now(conn, old)   # whatever came before is signed by the key that saw it
    (entry,) = ledger.append([LedgerEntryIn(
        action=Action.KEY_ROTATED, source_system="ledger", source_object=HANDOVER_OBJECT,
        source_id=_key_text(old.public_key), target_system="ledger", target_object=HANDOVER_OBJECT,
        target_id=_key_text(new.public_key), actor=actor,
        reason=reason or f"ledger signing key {old.key_id} hands over to {new.key_id}")])
    ledger.checkpoint(signer=old)
    ledger.checkpoint(signer=new)
    return entry.seq


def handover_entries(conn: Any) -> list[tuple[int, bytes, bytes]]:
    conn = as_connection(conn)
    t = LedgerEntry.__table__
    rows = conn.execute(select(t).where(t.c.action == Action.KEY_ROTATED.value,
                                        t.c.source_object == HANDOVER_OBJECT).order_by(t.c.seq)).mappings()
    out = []
    for r in rows:
        h = vl._handover(dict(r))
        if h is not None:
            out.append((int(r["seq"]), *h))
    return out


# ------------------------------------------------------------------------------------------------ publishing


@dataclass(frozen=True)
class Publisher:
    """One publishing target from ``ledger.publish``."""

    kind: str          # file | webhook | syslog
    where: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.where}"[:255]

    @classmethod
    def from_config(cls, targets: Sequence[Any], base_dir: Path | None = None) -> list[Publisher]:
        out = []
        for t in targets:
            if getattr(t, "file", None):
                p = Path(t.file)
                if not p.is_absolute() and base_dir is not None:
                    p = base_dir / p
                out.append(cls("file", str(p)))
            elif getattr(t, "webhook", None):
                out.append(cls("webhook", str(t.webhook)))
            elif getattr(t, "syslog", None):
                out.append(cls("syslog", str(t.syslog)))
        return out

    def send(self, cp: dict[str, Any]) -> None:
        line = vl.canonical_json({"type": "ledger-head", **cp})
        if self.kind == "file":
            path = Path(self.where)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        elif self.kind == "webhook":
            r = requests.post(self.where, data=line.encode("utf-8"), timeout=10,
                              headers={"Content-Type": "application/json"})
            r.raise_for_status()
        elif self.kind == "syslog":
            facility = getattr(_syslog, f"LOG_{self.where.upper()}", None)
            if not isinstance(facility, int):
                raise ConfigurationError(f"unknown syslog facility {self.where!r}", where="ledger.publish")
            _syslog.openlog("crmbridge-ledger", 0, facility)
            _syslog.syslog(_syslog.LOG_NOTICE, line)
        else:
            raise ConfigurationError(f"unknown publishing target {self.kind!r}", where="ledger.publish")


def publish_pending(engine: Any, publishers: Sequence[Publisher]) -> list[str]:
    """Send each target the checkpoints committed since its last one. Returns problems (a target that failed is
    retried from the same place next time); never raises for a target's failure. ``engine``: an Engine or a
    StateStore."""
    engine = getattr(engine, "engine", engine)
    problems: list[str] = []
    t, p = LedgerCheckpoint.__table__, LedgerPublished.__table__
    cols = [c for c in t.c if c.name != "id"]
    for pub in publishers:
        try:
            with engine.begin() as conn:
                last = conn.execute(select(p.c.checkpoint_id).where(p.c.target == pub.name)).scalar()
                rows = conn.execute(select(t.c.id, *cols).where(t.c.id > (last or 0)).order_by(t.c.id)).mappings()
                sent = last
                for r in rows:
                    cp = {k: v for k, v in r.items() if k != "id"}
                    pub.send(cp)
                    sent = r["id"]
                if sent != last:
                    if last is None:
                        conn.execute(insert(p).values(target=pub.name, checkpoint_id=sent))
                    else:
                        conn.execute(update(p).where(p.c.target == pub.name).values(checkpoint_id=sent))
        except Exception as exc:  # noqa: BLE001 - a publishing target down must not fail a run
            log.warning("ledger head not published to %s: %s", pub.name, exc)
            problems.append(f"{pub.name}: {exc}")
    return problems


def publish_configured(config: Any, engine: Any) -> list[str]:
    """:func:`publish_pending` to the targets of ``ledger.publish`` (nothing when none is configured)."""
    targets = getattr(getattr(config, "ledger", None), "publish", None)
    if not targets:
        return []
    return publish_pending(engine, Publisher.from_config(targets, getattr(config, "base_dir", None)))


# ------------------------------------------------------------------------------------------------ verify


def database_records(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """Entries, checkpoints and archive anchor as an export holds them."""
    conn = as_connection(conn)
    from crmbridge.sync.state.ledger_archive import read_anchor

    ledger = Ledger(conn)
    return list(ledger.iter_entries()), ledger.checkpoints(), read_anchor(conn)


def verify_database(conn: Any, *, public_keys: Sequence[Ed25519PublicKey] = (), trusted: Sequence[str] = (),
                    published: Sequence[dict[str, Any]] = (), require_signed: bool = False,
                    expected_head: tuple[int, str] | None = None, archive: Path | None = None,
                    known_keys: Sequence[Ed25519PublicKey] = ()) -> vl.Report:
    """The database checked like an export: chain, Merkle roots, trusted signatures, runs, published heads."""
    conn = as_connection(conn)
    if archive is None:   # streamed: the ledger may hold millions of entries
        from crmbridge.sync.state.ledger_archive import read_anchor

        ledger = Ledger(conn)
        anchor = read_anchor(conn)
        rep = vl.verify(ledger.iter_entries(), ledger.checkpoints(), public_keys=public_keys, trusted=trusted,
                        published=published, anchor=anchor, handovers=handover_entries(conn),
                        require_signed=require_signed, expected_head=expected_head, known_keys=known_keys)
        _anchor_note(rep, anchor)
        return rep
    entries, cps, anchor = database_records(conn)
    return verify_loaded(entries, cps, anchor, public_keys=public_keys, trusted=trusted, published=published,
                         require_signed=require_signed, expected_head=expected_head, archive=archive,
                         known_keys=known_keys)


def verify_loaded(entries: list[dict[str, Any]], cps: list[dict[str, Any]], anchor: dict[str, Any] | None, *,
                  public_keys: Sequence[Ed25519PublicKey] = (), trusted: Sequence[str] = (),
                  published: Sequence[dict[str, Any]] = (), require_signed: bool = False,
                  expected_head: tuple[int, str] | None = None, archive: Path | None = None,
                  known_keys: Sequence[Ed25519PublicKey] = ()) -> vl.Report:
    pre = vl.Report()
    if archive is not None:
        a_entries, a_cps = vl.load_archive(archive, [*public_keys, *known_keys], trusted, pre)
        entries, cps = vl.combine_archive(entries, cps, anchor, a_entries, a_cps, pre)
        anchor = None
    rep = vl.verify(entries, cps, public_keys=public_keys, trusted=trusted, published=published, anchor=anchor,
                    require_signed=require_signed, expected_head=expected_head, known_keys=known_keys)
    rep.problems[:0] = pre.problems
    rep.warnings[:0] = pre.warnings
    _anchor_note(rep, anchor)
    return rep


def _anchor_note(rep: vl.Report, anchor: dict[str, Any] | None) -> None:
    if anchor is not None:
        rep.warnings.append(f"entries 1..{anchor['seq']} are archived: verified from the archive anchor on; "
                            "check the archive too with --with-archive DIR")


def read_published(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [r for p in paths for r in vl.load_published(p)]


def published_json(cp: dict[str, Any]) -> str:
    return json.dumps(cp, sort_keys=True)
