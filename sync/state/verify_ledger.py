#!/usr/bin/env python3
"""Standalone verifier of a crmbridge ledger export. Standard library plus ``cryptography``; nothing else.

Print it with ``crmbridge ledger verifier > verify_ledger.py`` and run it anywhere::

    python3 verify_ledger.py ledger.jsonl --public-key crmbridge-ledger.pub \\
        [--trusted FINGERPRINT ...] [--published heads.jsonl] [--with-archive DIR] [--require-signed]

Exit status: 0 OK, 1 tampered (each finding named: ``hash-mismatch``, ``broken-link``, ``missing``,
``out-of-order``, ``checkpoint-mismatch``, ``bad-signature``, ``untrusted-key``, ``truncated``, ``forged``,
``forged-run``, ``unsigned``...), 2 cannot say (no trust anchor, unreadable input).

The export format (JSON Lines, one object per line, as ``crmbridge ledger export`` writes it):

* ``{"type": "entry", "seq": n, "prev_hash": ..., "entry_hash": ..., "hash_alg": "sha256"|"sm3", ...}``:
  ``entry_hash = H(canonical_json(every field but type and entry_hash))``; canonical JSON has sorted keys,
  compact separators and UTF-8 kept; ``prev_hash`` of entry 1 is 64 zeros.
* ``{"type": "checkpoint", "tree_size": n, "root_hash": ..., "chain_head": ..., "body": ..., "signature": ...,
  "key_id": ...}``: ``body`` is ``"crm-sync-audit\\n<size>\\n<RFC 6962 Merkle root>\\nhead <chain head>\\n"``
  optionally followed by ``"run <run id> start|end\\n"``; ``signature`` is Ed25519 over ``body`` (base64).
* ``{"type": "mapping_version_set", "ref": key, "versions": {mapping name: content hash}}``: what an entry of
  encoding 4 names by ``mapping_versions`` = ``[key]`` (not part of any hash: the key is the first 16 bytes of
  SHA-256 of the set's canonical JSON, base64url, and a set that does not match its key is refused);
* ``{"type": "anchor", "seq": n, "entry_hash": ..., "hash_alg": ..., "frontier": [[height, hex], ...]}``: entries
  1..n were archived (``crmbridge ledger archive``); the export continues the chain from that anchor.

Trust: a checkpoint counts only when signed by a trusted key: one given with ``--public-key`` or pinned by
fingerprint (``--trusted``, the SHA-256 of the 32 raw public-key bytes, hex), or one reached from a trusted key
through a signing-key hand-over: a ``key-rotated`` entry on ``signing-key`` naming the old key (``source_id``) and the
new key (``target_id``, both ``ed25519:<base64>``), with checkpoints at that entry signed by both keys. The old key
is trusted up to the hand-over, the new one from it on.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
ORIGIN = "crm-sync-audit"
HANDOVER_OBJECT = "signing-key"
KEY_PREFIX = "ed25519:"
_INF = float("inf")

__all__ = ["Finding", "Report", "fingerprint", "load_export", "load_archive", "load_published", "main",
           "parse_public_key", "verify"]


# ------------------------------------------------------------------------------------------------ primitives


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _h(data: bytes, alg: str) -> bytes:
    if alg == "sm3":
        d = hashes.Hash(hashes.SM3())
        d.update(data)
        return d.finalize()
    return hashlib.sha256(data).digest()


def _push_leaf(frontier: list[tuple[int, bytes]], leaf: bytes, alg: str) -> None:
    frontier.append((0, leaf))
    while len(frontier) >= 2 and frontier[-1][0] == frontier[-2][0]:
        (height, right), (_, left) = frontier.pop(), frontier.pop()
        frontier.append((height + 1, _h(b"\x01" + left + right, alg)))


def _root(frontier: Sequence[tuple[int, bytes]], alg: str) -> str:
    if not frontier:
        return _h(b"", alg).hex()
    root = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        root = _h(b"\x01" + left + root, alg)
    return root.hex()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey | bytes) -> str:
    """SHA-256 of the 32 raw public-key bytes, hex (its first 16 characters are the checkpoints' key id)."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    return hashlib.sha256(raw).hexdigest()


def _decode(text: str) -> bytes:
    t = text.strip()
    try:
        return bytes.fromhex(t)
    except ValueError:
        pass
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def parse_public_key(data: str | bytes) -> Ed25519PublicKey:
    """A PEM public key, ``ed25519:<base64>``, or the 32 raw bytes as hex/base64."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    if "BEGIN" in text:
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    if text.strip().startswith(KEY_PREFIX):
        text = text.strip()[len(KEY_PREFIX):]
    return Ed25519PublicKey.from_public_bytes(_decode(text))


def checkpoint_base(size: int, root: str, head: str) -> str:
    return f"{ORIGIN}\n{size}\n{root}\nhead {head}\n"


def body_runs(body: str, base: str) -> list[tuple[str, str]] | None:
    """The ``run <id> start|end`` extension lines after ``base``; None when the body is not base + extensions."""
    if not isinstance(body, str) or not body.startswith(base):
        return None
    out = []
    for line in body[len(base):].splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "run" or parts[2] not in ("start", "end") or not parts[1]:
            return None
        out.append((parts[1], parts[2]))
    return out


def _sig_ok(key: Ed25519PublicKey, cp: Mapping[str, Any]) -> bool:
    try:
        key.verify(base64.b64decode(str(cp.get("signature", ""))), str(cp.get("body", "")).encode("utf-8"))
        return True
    except (InvalidSignature, binascii.Error, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Finding:
    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}" if self.seq is not None else self.message


@dataclass
class Report:
    entries: int = 0
    first_seq: int = 1
    checkpoints: int = 0
    signed_size: int = 0
    head_hash: str = GENESIS
    anchored: bool = False
    trusted: list[str] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.anchored and not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


# ------------------------------------------------------------------------------------------------ trust


def _handover(rec: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    if rec.get("action") != "key-rotated" or rec.get("source_object") != HANDOVER_OBJECT \
            or rec.get("target_object") != HANDOVER_OBJECT:
        return None
    old, new = str(rec.get("source_id") or ""), str(rec.get("target_id") or "")
    if not (old.startswith(KEY_PREFIX) and new.startswith(KEY_PREFIX)):
        return None
    old_raw, new_raw = _decode(old[len(KEY_PREFIX):]), _decode(new[len(KEY_PREFIX):])
    if len(old_raw) != 32 or len(new_raw) != 32:
        return None
    return old_raw, new_raw


@dataclass
class _Trust:
    keys: dict[str, Ed25519PublicKey]            # key id (16 hex) -> key
    windows: dict[str, tuple[float, float]]      # key id -> [from size, to size]

    def check(self, cp: Mapping[str, Any], size: int) -> str | None:
        """None when the checkpoint is signed by a key trusted at ``size``; else the finding kind."""
        kid = str(cp.get("key_id") or "")
        key = self.keys.get(kid)
        if key is None:
            return "untrusted-key"
        if not _sig_ok(key, cp):
            return "bad-signature"
        lo, hi = self.windows.get(kid, (_INF, -_INF))
        return None if lo <= size <= hi else "untrusted-key"


def _resolve_trust(handovers: Sequence[tuple[int, bytes, bytes]], checkpoints: Sequence[Mapping[str, Any]],
                   public_keys: Sequence[Ed25519PublicKey], pinned: Iterable[str], report: Report,
                   known_keys: Sequence[Ed25519PublicKey] = ()) -> _Trust:
    keys: dict[str, Ed25519PublicKey] = {}
    for k in (*known_keys, *public_keys):
        keys[fingerprint(k)[:16]] = k
    for _, old, new in handovers:
        for raw in (old, new):
            keys.setdefault(fingerprint(raw)[:16], Ed25519PublicKey.from_public_bytes(raw))
    pins = {p.strip().lower().removeprefix("sha256:") for p in pinned if p and p.strip()}
    pins |= {fingerprint(k) for k in public_keys}
    trusted = {kid for kid, k in keys.items() if fingerprint(k) in pins}
    unknown_pins = pins - {fingerprint(k) for k in keys.values()}
    windows: dict[str, tuple[float, float]] = {kid: (0, _INF) for kid in trusted}
    by_size: dict[int, list[Mapping[str, Any]]] = {}
    for cp in checkpoints:
        if isinstance(cp.get("tree_size"), int):
            by_size.setdefault(cp["tree_size"], []).append(cp)
    valid: list[tuple[int, str, str]] = []
    for seq, old, new in handovers:
        okid, nkid = fingerprint(old)[:16], fingerprint(new)[:16]
        signed_by = {str(cp.get("key_id")) for cp in by_size.get(seq, [])
                     if str(cp.get("key_id")) in (okid, nkid) and _sig_ok(keys[str(cp.get("key_id"))], cp)}
        if {okid, nkid} <= signed_by:
            valid.append((seq, okid, nkid))
        else:
            report.problems.append(Finding(seq, "bad-handover", "signing-key hand-over not signed by both the old "
                                                                "and the new key at its own entry"))
    changed = True
    while changed:
        changed = False
        for seq, okid, nkid in valid:
            if okid in windows and nkid not in windows:
                windows[nkid] = (seq, _INF)
                changed = True
            elif nkid in windows and okid not in windows:
                windows[okid] = (0, _INF)
                changed = True
    for seq, okid, _ in valid:   # a handed-over key signs nothing after its hand-over
        if okid in windows:
            lo, hi = windows[okid]
            windows[okid] = (lo, min(hi, seq))
    report.trusted = sorted(fingerprint(keys[k]) for k in windows)
    report.anchored = bool(windows)
    if unknown_pins and not windows:
        report.warnings.append("no key at hand matches a pinned fingerprint: give the public key itself "
                               "(--public-key) when no hand-over in the ledger names it")
    return _Trust(keys, windows)


# ------------------------------------------------------------------------------------------------ verify


def _body(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("type", "entry_hash")}


def verify(entries: Iterable[Mapping[str, Any]], checkpoints: Sequence[Mapping[str, Any]], *,
           public_keys: Sequence[Ed25519PublicKey] = (), trusted: Iterable[str] = (),
           published: Sequence[Mapping[str, Any]] = (), anchor: Mapping[str, Any] | None = None,
           handovers: Sequence[tuple[int, bytes, bytes]] | None = None, require_signed: bool = False,
           expected_head: tuple[int, str] | None = None, known_keys: Sequence[Ed25519PublicKey] = ()) -> Report:
    """Verify entries (in stored order) against themselves, the checkpoints, the trusted keys and published heads.

    ``public_keys`` are trusted (the caller vouches for them); ``known_keys`` only when ``trusted`` pins their
    fingerprint. ``handovers`` may be given when ``entries`` can be iterated only once (else it is read twice).
    """
    rep = Report(checkpoints=len(checkpoints))
    if handovers is None:
        entries = list(entries)
        handovers = [(int(e["seq"]), *h) for e in entries if isinstance(e.get("seq"), int)
                     and (h := _handover(e)) is not None]
    trust = _resolve_trust(handovers, checkpoints, public_keys, trusted, rep, known_keys)

    by_size: dict[int, list[Mapping[str, Any]]] = {}
    for cp in checkpoints:
        size = cp.get("tree_size")
        if not isinstance(size, int):
            rep.problems.append(Finding(None, "malformed", "a checkpoint without a valid tree_size"))
            continue
        by_size.setdefault(size, []).append(cp)
    started: dict[str, int] = {}
    ended: dict[str, int] = {}
    suspects: dict[str, list[int]] = {}   # run -> unsigned entries of a run with no signed start yet
    wanted = {int(p["tree_size"]) for p in published if isinstance(p.get("tree_size"), int)}
    if expected_head is not None:
        wanted.add(expected_head[0])
    chain_at: dict[int, str] = {}

    frontier: list[tuple[int, bytes]] = []
    expected_seq, prev = 1, GENESIS
    if anchor is not None:
        expected_seq, prev = int(anchor["seq"]) + 1, str(anchor["entry_hash"])
        frontier = [(int(h), bytes.fromhex(x)) for h, x in anchor.get("frontier") or []]
        rep.first_seq = expected_seq
        rep.signed_size = rep.entries = int(anchor["seq"])
        rep.head_hash = prev
        chain_at[int(anchor["seq"])] = prev

    def at_size(size: int, head: str, alg: str) -> None:
        for cp in by_size.get(size, []):
            base = checkpoint_base(size, _root(frontier, alg), head)
            runs = body_runs(str(cp.get("body", "")), base)
            if runs is None or cp.get("root_hash") != _root(frontier, alg) or cp.get("chain_head") != head:
                rep.problems.append(Finding(size, "checkpoint-mismatch", f"the checkpoint at size {size} does not "
                                            f"match the entries up to seq {size} (history rewritten)"))
                continue
            if not rep.anchored:   # no trusted key: the structure is checked, signatures prove nothing
                continue
            kind = trust.check(cp, size)
            if kind == "bad-signature":
                rep.problems.append(Finding(size, kind, f"checkpoint at size {size} has an invalid signature "
                                                        f"(key {cp.get('key_id')})"))
                continue
            if kind is not None:
                rep.problems.append(Finding(size, kind, f"checkpoint at size {size} is signed by key "
                                            f"{cp.get('key_id')}, which is neither trusted nor reached from a "
                                            "trusted key by a signing-key hand-over (history re-signed?)"))
                continue
            rep.signed_size = max(rep.signed_size, size)
            for run, event in runs:
                (started if event == "start" else ended).setdefault(run, size)
            if cp.get("run_id") and not runs:     # checkpoints written before runs were bound into the body
                ended.setdefault(str(cp["run_id"]), size)
            for run in list(suspects):
                suspects[run] = [s for s in suspects[run] if s > size]
                if not suspects[run]:
                    del suspects[run]

    if anchor is None and 0 in by_size:
        at_size(0, GENESIS, "sha256")
    elif anchor is not None:   # a checkpoint signed right after an archive, before any new entry
        at_size(int(anchor["seq"]), prev, str(anchor.get("hash_alg") or "sha256"))
    for rec in entries:
        seq = rec.get("seq")
        if not isinstance(seq, int):
            rep.problems.append(Finding(None, "malformed", f"an entry without a valid seq after {expected_seq - 1}"))
            continue
        alg = rec.get("hash_alg") if rec.get("hash_alg") in ("sha256", "sm3") else "sha256"
        if seq < expected_seq:
            rep.problems.append(Finding(seq, "out-of-order", f"seq {seq} appears again or out of order "
                                                             f"(after {expected_seq - 1})"))
            continue
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            rep.problems.append(Finding(expected_seq, "missing", f"entries {missing} are missing (deleted)"))
        data = canonical_json(_body(rec)).encode("utf-8")
        actual = _h(data, alg).hex()
        stored = rec.get("entry_hash")
        if actual != stored:
            rep.problems.append(Finding(seq, "hash-mismatch",
                                        "content does not match its hash (edited, corrupted or swapped)"))
        if rec.get("prev_hash") != prev:
            rep.problems.append(Finding(seq, "broken-link", "previous-hash link does not match the entry before it"))
        run = rec.get("run_id")
        if run is not None:
            run = str(run)
            if run in ended:
                rep.problems.append(Finding(seq, "forged", f"entry for run {run} after the signed checkpoint that "
                                                           f"closed that run (size {ended[run]})"))
            elif run not in started:
                suspects.setdefault(run, []).append(seq)
        _push_leaf(frontier, _h(b"\x00" + data, alg), alg)
        prev = stored if isinstance(stored, str) else actual
        if seq in wanted:
            chain_at[seq] = prev
        rep.entries, rep.head_hash, expected_seq = seq, prev, seq + 1
        at_size(seq, prev, alg)
    last = expected_seq - 1
    beyond = [s for s in by_size if s > last]
    if beyond:
        rep.problems.append(Finding(last + 1, "truncated", f"a checkpoint covers {max(beyond)} entries but the "
                                    f"ledger ends at seq {last}: entries {last + 1}..{max(beyond)} were removed"))
    for run, seqs in sorted(suspects.items(), key=lambda kv: kv[1][0]) if rep.anchored else ():
        rep.problems.append(Finding(seqs[0], "forged-run", f"entries {seqs[0]}..{seqs[-1]} of run {run} are "
                                    "neither under a trusted checkpoint nor after a signed start of that run: "
                                    "a run nobody signed for"))
    for p in published:
        size, head = p.get("tree_size"), p.get("chain_head")
        if not isinstance(size, int) or not isinstance(head, str):
            rep.warnings.append("a published head without tree_size/chain_head was ignored")
            continue
        base = checkpoint_base(size, str(p.get("root_hash")), head)
        if body_runs(str(p.get("body", "")), base) is None or trust.check(p, size) is not None:
            rep.warnings.append(f"published head at size {size} is not signed by a trusted key: ignored")
            continue
        if size > last:
            rep.problems.append(Finding(last + 1, "truncated", f"a published head covers {size} entries but the "
                                        f"ledger ends at seq {last}: entries {last + 1}..{size} were removed "
                                        "(or the head was set back)"))
        elif size in chain_at and chain_at[size] != head:
            rep.problems.append(Finding(size, "head-mismatch", f"entry {size} does not have the hash of the "
                                                               "published head (history rewritten)"))
        elif size not in chain_at:
            rep.warnings.append(f"published head at size {size} lies in the archived part: check with the archive")
    if expected_head is not None:
        eseq, ehash = expected_head
        if eseq > last:
            rep.problems.append(Finding(last + 1, "truncated", f"expected the ledger to reach seq {eseq}, "
                                                               f"it ends at {last}"))
        elif chain_at.get(eseq) != ehash:
            rep.problems.append(Finding(eseq, "head-mismatch", f"entry {eseq} does not have the expected hash"))
    if not rep.anchored:
        rep.warnings.append("no trusted key (public key or pinned fingerprint): signatures prove nothing; "
                            "no verdict")
    if last > rep.signed_size:
        msg = (f"entries {rep.signed_size + 1}..{last} are not covered by a trusted signed checkpoint: they are "
               "chained but not authenticated (a run still going, or a process that died before signing); "
               "whoever can write the database could have added, changed or removed them without trace")
        if require_signed and rep.anchored:
            rep.problems.append(Finding(rep.signed_size + 1, "unsigned", msg))
        else:
            rep.warnings.append(msg)
    return rep


# ------------------------------------------------------------------------------------------------ files


def _set_ref(versions: Any) -> str | None:
    """The key of a mapping-version set: base64url (no padding) of the first 16 bytes of SHA-256 of its canonical
    JSON (as crmbridge.sync.state.version_sets computes it)."""
    if not isinstance(versions, dict):
        return None
    text = json.dumps({str(k): str(v) for k, v in versions.items()}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode("utf-8")).digest()[:16]).decode("ascii").rstrip("=")


def load_export(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """Entries, checkpoints and the archive anchor (if any) of a JSONL export."""
    entries: list[dict[str, Any]] = []
    cps: list[dict[str, Any]] = []
    anchor = None
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
            kind = rec.pop("type", None) if isinstance(rec, dict) else None
            if kind == "entry":
                entries.append(rec)
            elif kind == "checkpoint":
                cps.append(rec)
            elif kind == "anchor":
                anchor = rec
            elif kind == "mapping_version_set":   # what encoding-4 entries name by its key (not in their hash)
                if _set_ref(rec.get("versions")) != rec.get("ref"):
                    raise ValueError(f"{path}:{lineno}: mapping-version set {rec.get('ref')!r} does not match "
                                     "its content (edited)")
            else:
                raise ValueError(f"{path}:{lineno}: unknown record type {kind!r}")
    return entries, cps, anchor


def load_published(path: Path) -> list[dict[str, Any]]:
    """Published heads: one JSON checkpoint per line (syslog/webhook copies may carry a prefix before the '{')."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if "{" not in line:
            continue
        try:
            rec = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_archive(directory: Path, public_keys: Sequence[Ed25519PublicKey], trusted: Iterable[str],
                 report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Entries and checkpoints of the sealed segments in ``directory``, each checked against its signed manifest."""
    entries: list[dict[str, Any]] = []
    cps: list[dict[str, Any]] = []
    keys = {fingerprint(k)[:16]: k for k in public_keys}
    pins = {p.strip().lower().removeprefix("sha256:") for p in trusted if p}
    manifests = sorted(directory.glob("segment-*.manifest.json"))
    if not manifests:
        report.problems.append(Finding(None, "archive", f"no segment manifest in {directory}"))
    for mpath in manifests:
        try:
            doc = json.loads(mpath.read_text(encoding="utf-8"))
            manifest, sig, kid = doc["manifest"], doc["signature"], doc["key_id"]
            seg = directory / manifest["file"]
            data = seg.read_bytes()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.problems.append(Finding(None, "archive", f"{mpath.name}: unreadable ({exc})"))
            continue
        key = keys.get(kid)
        if key is None:
            for e in entries:   # a key handed over earlier in the archive
                h = _handover(e)
                if h is not None and fingerprint(h[1])[:16] == kid and fingerprint(h[0])[:16] in keys:
                    key = keys[kid] = Ed25519PublicKey.from_public_bytes(h[1])
        body = canonical_json(manifest).encode("utf-8")
        try:
            if key is None:
                raise InvalidSignature
            key.verify(base64.b64decode(sig), body)
        except (InvalidSignature, binascii.Error, ValueError):
            report.problems.append(Finding(manifest.get("first_seq"), "archive", f"{mpath.name}: manifest not "
                                           f"signed by a trusted key (key {kid})"))
            continue
        if pins and fingerprint(key) not in pins and kid not in {fingerprint(k)[:16] for k in public_keys}:
            report.warnings.append(f"{mpath.name}: signed by key {kid}, trusted through a hand-over")
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            report.problems.append(Finding(manifest.get("first_seq"), "archive", f"{seg.name}: content does not "
                                           "match its signed manifest (edited)"))
            continue
        for line in data.decode("utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            kind = rec.pop("type", None)
            if kind != "mapping_version_set":
                (entries if kind == "entry" else cps).append(rec)
    entries.sort(key=lambda e: e.get("seq") if isinstance(e.get("seq"), int) else -1)
    return entries, cps


def combine_archive(entries: list[dict[str, Any]], cps: list[dict[str, Any]], anchor: dict[str, Any] | None,
                    arch_entries: list[dict[str, Any]], arch_cps: list[dict[str, Any]],
                    report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Archive + database as one ledger from genesis; the database's anchor must be the archive's last entry."""
    if anchor is not None:
        last = arch_entries[-1] if arch_entries else None
        if last is None or last.get("seq") != anchor.get("seq") or last.get("entry_hash") != anchor.get("entry_hash"):
            report.problems.append(Finding(anchor.get("seq"), "archive", "the database's archive anchor is not the "
                                           "last entry of the archive (segments missing or anchor moved)"))
    seen = {(c.get("tree_size"), c.get("signature")) for c in cps}
    return arch_entries + entries, [c for c in arch_cps if (c.get("tree_size"), c.get("signature")) not in seen] + cps


# ------------------------------------------------------------------------------------------------ command line


def render(rep: Report, source: str, out: Any = sys.stdout) -> None:
    if rep.ok:
        span = f" (seq {rep.first_seq}..{rep.entries})" if rep.first_seq > 1 else ""
        print(f"OK: {rep.entries - rep.first_seq + 1} entries{span}, {rep.checkpoints} checkpoints "
              f"({rep.signed_size} entries under a trusted signature), head {rep.head_hash[:16]}… ({source})", file=out)
    elif not rep.problems:
        print(f"NOT VERIFIED: no trust anchor ({source}): give the signing key's public key (--public-key) or "
              "its pinned fingerprint (--trusted)", file=out)
    else:
        print(f"TAMPERED: first bad entry: seq {rep.first_bad_seq} ({source})", file=out)
        for p in rep.problems[:50]:
            print(f"  {p.kind}: {p}", file=out)
        if len(rep.problems) > 50:
            print(f"  … and {len(rep.problems) - 50} more", file=out)
    for w in rep.warnings:
        print(f"warning: {w}", file=out)
    if rep.trusted:
        print(f"trusted keys: {', '.join(rep.trusted)}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify a crmbridge ledger export offline.")
    ap.add_argument("export", type=Path, help="JSONL file written by `crmbridge ledger export`")
    ap.add_argument("--public-key", type=Path, action="append", default=[], help="Ed25519 public key (PEM)")
    ap.add_argument("--trusted", action="append", default=[], help="pinned key fingerprint (SHA-256 hex)")
    ap.add_argument("--published", type=Path, action="append", default=[], help="published heads (JSON lines)")
    ap.add_argument("--with-archive", type=Path, help="directory of sealed archive segments")
    ap.add_argument("--require-signed", action="store_true", help="unsigned entries count as tampering")
    args = ap.parse_args(argv)
    try:
        keys = [parse_public_key(p.read_text(encoding="utf-8")) for p in args.public_key]
        entries, cps, anchor = load_export(args.export)
        published = [r for p in args.published for r in load_published(p)]
    except (OSError, ValueError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    pre = Report()
    if args.with_archive is not None:
        a_entries, a_cps = load_archive(args.with_archive, keys, args.trusted, pre)
        entries, cps = combine_archive(entries, cps, anchor, a_entries, a_cps, pre)
        anchor = None
    rep = verify(entries, cps, public_keys=keys, trusted=args.trusted, published=published, anchor=anchor,
                 require_signed=args.require_signed)
    rep.problems[:0] = pre.problems
    rep.warnings[:0] = pre.warnings
    render(rep, str(args.export))
    if not rep.anchored:
        return 2
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
