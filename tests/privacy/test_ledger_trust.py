"""Trust in the ledger: the standalone verifier (run as a subprocess, standard library + cryptography only) passes
a genuine export and names each tamper kind on altered copies; signed heads on demand; pinned keys and their
hand-over; published heads catching a truncation; archive round trips on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from crmbridge.sync.security.crypto import FieldCipher
from crmbridge.sync.state import verify_ledger as vl
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, LedgerSigner, export_ledger, generate_signing_key
from crmbridge.sync.state.ledger_archive import archive, read_anchor
from crmbridge.sync.state.ledger_trust import (
    Publisher,
    fingerprint,
    publish_pending,
    rotate_signing_key,
    sign_now,
    verify_database,
)

VERIFIER = Path(vl.__file__)
PARTY = "123e4567-e89b-12d3-a456-426614174000"


def _entry(i: int, run: str | None = "1", **kw: Any) -> LedgerEntryIn:
    base: dict[str, Any] = dict(
        action=Action.UPDATED, run_id=run, job="core_to_zoho", source_system="corebank", source_object="Customer",
        source_id=f"CIF{i:06d}", target_system="zoho_cn", target_object="Contacts", target_id=f"48768760{i:05d}",
        party_id=PARTY, changed_fields=["contact_points[0].value"],
        before={"contact_points[0].value": "+86138****5678"}, after={"contact_points[0].value": "+86139****0000"},
        mapping_version="zoho.contacts@3", actor="scheduler")
    base.update(kw)
    return LedgerEntryIn(**base)


def _run(engine: Engine, signer: LedgerSigner, cipher: FieldCipher, run: str, n: int) -> None:
    with engine.begin() as conn:
        ledger = Ledger(conn, signer, cipher=cipher)
        ledger.checkpoint(run_id=run, run_event="start")
        ledger.append([_entry(i, run=run, diff={"x": [1, 2]}) for i in range(n)])
        ledger.checkpoint(run_id=run)


def _resolve_like_the_cli(engine: Engine, signer: LedgerSigner) -> None:
    """An entry appended outside a run (conflict resolved, erasure...), signed by its own checkpoint."""
    with engine.begin() as conn:
        Ledger(conn, signer).append([_entry(50, run=None, action=Action.CONFLICT_RESOLVED, actor="os:alice@host")])
        assert sign_now(conn, signer) is not None


def _export(engine: Engine, path: Path) -> Path:
    with engine.connect() as conn, path.open("w", encoding="utf-8") as fh:
        export_ledger(Ledger(conn), fh)
    return path


def _verifier(export: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, nothing of crmbridge on the path; the file alone must do
    return subprocess.run([sys.executable, "-I", str(VERIFIER), str(export), *args], capture_output=True, text=True,
                          timeout=60, cwd=export.parent)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _write(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(vl.canonical_json(r) + "\n" for r in recs), encoding="utf-8")
    return path


def _rechain(recs: list[dict[str, Any]], sk: Ed25519PrivateKey) -> list[dict[str, Any]]:
    """What a forger with write access and their own key does: rehash every entry, re-sign every checkpoint."""
    kid = vl.fingerprint(sk.public_key())[:16]
    entries = [r for r in recs if r["type"] == "entry"]
    cps = [r for r in recs if r["type"] == "checkpoint"]
    frontier: list[tuple[int, bytes]] = []
    prev, heads = vl.GENESIS, {0: (vl.GENESIS, vl._root([], "sha256"))}
    for e in entries:
        e["prev_hash"] = prev
        body = {k: v for k, v in e.items() if k not in ("type", "entry_hash")}
        data = vl.canonical_json(body).encode()
        e["entry_hash"] = prev = vl._h(data, "sha256").hex()
        vl._push_leaf(frontier, vl._h(b"\x00" + data, "sha256"), "sha256")
        heads[e["seq"]] = (prev, vl._root(frontier, "sha256"))
    for cp in cps:
        head, root = heads[cp["tree_size"]]
        ext = cp["body"].split(f"head {cp['chain_head']}\n", 1)[1]
        cp.update(chain_head=head, root_hash=root, key_id=kid,
                  body=vl.checkpoint_base(cp["tree_size"], root, head) + ext)
        cp["signature"] = base64.b64encode(sk.sign(cp["body"].encode())).decode()
    return entries + cps


@pytest.fixture
def genuine(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tmp_path: Path) -> dict[str, Any]:
    """Two runs and a conflict resolved after the last one, each checkpoint published to a file."""
    heads = tmp_path / "published" / "heads.jsonl"
    pub = [Publisher("file", str(heads))]
    _run(engine, signer, cipher, "1", 4)
    _resolve_like_the_cli(engine, signer)
    assert publish_pending(engine, pub) == []
    _run(engine, signer, cipher, "2", 3)
    assert publish_pending(engine, pub) == []
    _resolve_like_the_cli(engine, signer)
    assert publish_pending(engine, pub) == []
    pem = tmp_path / "ledger.pub"
    pem.write_text(signer.public_pem(), encoding="utf-8")
    return {"export": _export(engine, tmp_path / "ledger.jsonl"), "pub": pem, "heads": heads, "dir": tmp_path}


def test_a_genuine_export_passes_the_standalone_verifier(genuine: dict[str, Any], signer: LedgerSigner) -> None:
    ok = _verifier(genuine["export"], "--public-key", str(genuine["pub"]), "--require-signed",
                   "--published", str(genuine["heads"]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: 9 entries") and fingerprint(signer) in ok.stdout
    # pinned by fingerprint alone: the public key comes from nowhere else, so no verdict yet
    by_pin = _verifier(genuine["export"], "--trusted", fingerprint(signer))
    assert by_pin.returncode == 2
    # no trust anchor at all: the verifier refuses to say OK
    none = _verifier(genuine["export"])
    assert none.returncode == 2 and "NOT VERIFIED" in none.stdout and "OK" not in none.stdout


def _tampered(genuine: dict[str, Any], name: str, change) -> subprocess.CompletedProcess[str]:  # type: ignore
    recs = _lines(genuine["export"])
    out = _write(genuine["dir"] / f"{name}.jsonl", change(recs))
    return _verifier(out, "--public-key", str(genuine["pub"]), "--published", str(genuine["heads"]))


def _edit(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs[2]["masked_after"] = {"contact_points[0].value": "+86137****1111"}
    return recs


def _swap(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs[1], recs[2] = recs[2], recs[1]
    return recs


def _forge_checkpoint(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cp = next(r for r in recs if r["type"] == "checkpoint" and r["tree_size"] == 4)
    cp["body"] = cp["body"].replace("run 1 end", "run 3 end")
    return recs


def _cut_tail(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # the last run, the resolution after it and their checkpoints removed; a head set back
    return [r for r in recs if (r["type"] == "entry" and r["seq"] <= 5) or
            (r["type"] == "checkpoint" and r["tree_size"] <= 5)]


def _resign(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs[3]["masked_after"] = {"contact_points[0].value": "+86137****1111"}
    return _rechain(recs, Ed25519PrivateKey.generate())


def _forge_run(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = [r for r in recs if r["type"] == "entry"]
    last = entries[-1]
    forged = dict(last, seq=last["seq"] + 1, run_id="99", action="deleted", prev_hash=last["entry_hash"])
    body = {k: v for k, v in forged.items() if k not in ("type", "entry_hash")}
    forged["entry_hash"] = vl._h(vl.canonical_json(body).encode(), "sha256").hex()
    return [*recs, forged]


@pytest.mark.parametrize(("name", "change", "kind", "seq"), [
    ("edited-entry", _edit, "hash-mismatch", 3),
    ("removed-entry", lambda r: r[:3] + r[4:], "missing", 4),
    ("reordered-entries", _swap, "out-of-order", 2),
    ("forged-checkpoint", _forge_checkpoint, "bad-signature", 4),
    ("removed-tail-behind-published-head", _cut_tail, "truncated", 6),
    ("history-re-signed-with-another-key", _resign, "untrusted-key", 0),
    ("forged-run", _forge_run, "forged-run", 10),
])
def test_each_tamper_is_named(genuine: dict[str, Any], name: str, change, kind: str, seq: int) -> None:  # type: ignore
    res = _tampered(genuine, name, change)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith("TAMPERED")
    assert f"  {kind}: entry {seq}:" in res.stdout, res.stdout


def test_a_tail_cut_without_published_heads_is_not_detectable_offline(genuine: dict[str, Any]) -> None:
    """Why publishing matters: the same truncation passes when no published head is given."""
    out = _write(genuine["dir"] / "cut.jsonl", _cut_tail(_lines(genuine["export"])))
    assert _verifier(out, "--public-key", str(genuine["pub"]), "--require-signed").returncode == 0


def test_published_heads_catch_an_unsigned_tail_removed(engine: Engine, cipher: FieldCipher, signer: LedgerSigner,
                                                       tmp_path: Path, tamper) -> None:  # type: ignore
    heads = tmp_path / "heads.jsonl"
    _run(engine, signer, cipher, "1", 3)
    _resolve_like_the_cli(engine, signer)
    assert publish_pending(engine, [Publisher("file", str(heads))]) == []
    published = vl.load_published(heads)
    assert [p["tree_size"] for p in published] == [0, 3, 4] and all(p["type"] == "ledger-head" for p in published)
    with engine.begin() as conn:   # the DBA removes the resolution and its checkpoint, sets the head back
        tamper(conn, "DELETE FROM ledger_checkpoints WHERE tree_size = 4")
        tamper(conn, "DELETE FROM ledger_entries WHERE seq = 4")
        e = conn.exec_driver_sql("SELECT entry_hash FROM ledger_entries WHERE seq = 3").scalar()
        tamper(conn, "UPDATE ledger_head SET seq = 3, entry_hash = :h", h=e)
    with engine.connect() as conn:
        plain = verify_database(conn, public_keys=[signer.public_key], require_signed=True)
        caught = verify_database(conn, public_keys=[signer.public_key], published=published)
    assert plain.ok
    assert not caught.ok and caught.problems[0].kind == "truncated" and caught.first_bad_seq == 4


def test_the_signing_key_hand_over_is_followed(engine: Engine, cipher: FieldCipher, signer: LedgerSigner,
                                               tmp_path: Path) -> None:
    _run(engine, signer, cipher, "1", 3)
    new = generate_signing_key(tmp_path / "new.pem")
    with engine.begin() as conn:
        seq = rotate_signing_key(conn, signer, new, actor="os:ops@host")
    _run(engine, new, cipher, "2", 2)
    with engine.connect() as conn:
        assert seq == 4
        # pinned old key: trusted forward through the hand-over
        old_only = verify_database(conn, trusted=[fingerprint(signer)], known_keys=[signer.public_key],
                                   require_signed=True)
        assert old_only.ok, old_only.problems
        assert set(old_only.trusted) == {fingerprint(signer), fingerprint(new)}
        # pinned new key (an auditor who joined later): the old key is reached backwards
        new_only = verify_database(conn, trusted=[fingerprint(new)], known_keys=[new.public_key],
                                   require_signed=True)
        assert new_only.ok, new_only.problems
        # pinned key unrelated to the chain: every checkpoint is untrusted
        other = generate_signing_key(tmp_path / "other.pem")
        stranger = verify_database(conn, public_keys=[other.public_key])
        assert not stranger.ok and stranger.problems[0].kind == "untrusted-key"
    # the old key keeps signing after its hand-over: not trusted any more
    with engine.begin() as conn:
        Ledger(conn, signer).append([_entry(9, run=None)])
        sign_now(conn, signer)
    with engine.connect() as conn:
        late = verify_database(conn, public_keys=[signer.public_key])
    assert not late.ok and {p.kind for p in late.problems} == {"untrusted-key"}


def test_a_hand_over_signed_by_one_key_only_is_refused(engine: Engine, cipher: FieldCipher, signer: LedgerSigner,
                                                      tmp_path: Path, tamper) -> None:  # type: ignore
    _run(engine, signer, cipher, "1", 2)
    new = generate_signing_key(tmp_path / "new.pem")
    with engine.begin() as conn:
        rotate_signing_key(conn, signer, new, actor="os:ops@host")
    with engine.begin() as conn:   # the new key's signature at the hand-over removed
        tamper(conn, "DELETE FROM ledger_checkpoints WHERE key_id = :k", k=new.key_id)
    with engine.connect() as conn:
        res = verify_database(conn, public_keys=[signer.public_key])
    assert "bad-handover" in {p.kind for p in res.problems}


def test_archive_round_trip(engine: Engine, cipher: FieldCipher, signer: LedgerSigner, tmp_path: Path) -> None:
    _run(engine, signer, cipher, "1", 4)
    _resolve_like_the_cli(engine, signer)
    arch = tmp_path / "archive"
    with engine.begin() as conn:
        res = archive(conn, signer, before=datetime.now(UTC) + timedelta(days=1), to=arch)
    assert res is not None and (res.first_seq, res.last_seq, res.entries) == (1, 5, 5)
    assert res.segment.stat().st_mode & 0o777 == 0o444
    with engine.begin() as conn:   # signed right after the archive, nothing new yet: checked from the anchor
        assert sign_now(conn, signer) is not None   # its checkpoint went to the archive with it
    _run(engine, signer, cipher, "2", 3)
    with engine.connect() as conn:
        assert read_anchor(conn)["seq"] == 5  # type: ignore[index]
        assert [e["seq"] for e in Ledger(conn).iter_entries()] == [6, 7, 8]
        alone = verify_database(conn, public_keys=[signer.public_key], require_signed=True)
        both = verify_database(conn, public_keys=[signer.public_key], require_signed=True, archive=arch)
    assert alone.ok and any("archived" in w for w in alone.warnings)
    assert both.ok, both.problems
    assert both.first_seq == 1 and both.entries == 8
    # a second archive continues from the anchor
    with engine.begin() as conn:
        res2 = archive(conn, signer, before=datetime.now(UTC) + timedelta(days=1), to=arch)
    assert res2 is not None and (res2.first_seq, res2.last_seq) == (6, 8)
    with engine.connect() as conn:
        assert verify_database(conn, public_keys=[signer.public_key], archive=arch).ok
        export = _export(engine, tmp_path / "after.jsonl")
    assert _lines(export)[0]["type"] == "anchor"
    pub = tmp_path / "ledger.pub"
    pub.write_text(signer.public_pem(), encoding="utf-8")
    ok = _verifier(export, "--public-key", str(pub), "--with-archive", str(arch))
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 8 entries"), ok.stdout
    # an edited segment no longer matches its signed manifest
    seg = res.segment
    seg.chmod(0o644)
    seg.write_text(seg.read_text(encoding="utf-8").replace("CIF000001", "CIF000009"), encoding="utf-8")
    bad = _verifier(export, "--public-key", str(pub), "--with-archive", str(arch))
    assert bad.returncode == 1 and "archive: " in bad.stdout
    # a segment removed: the anchor is not where the archive ends
    seg2 = res2.segment
    for p in (seg2, res2.manifest):
        p.chmod(0o644)
        p.unlink()
    seg.write_text(seg.read_text(encoding="utf-8").replace("CIF000009", "CIF000001"), encoding="utf-8")
    gone = _verifier(export, "--public-key", str(pub), "--with-archive", str(arch))
    assert gone.returncode == 1 and "not the last entry of the archive" in gone.stdout


def test_the_verifier_imports_nothing_of_crmbridge() -> None:
    src = VERIFIER.read_text(encoding="utf-8")
    imports = [x.split()[1] for x in src.splitlines() if x.startswith(("import ", "from "))]
    assert all(m.split(".")[0] in {"__future__", "argparse", "base64", "binascii", "hashlib", "json", "sys",
                                   "collections", "dataclasses", "pathlib", "typing", "cryptography"}
               for m in imports), imports


def test_heads_are_posted_to_a_webhook_and_retried_when_it_was_down(engine: Engine, cipher: FieldCipher,
                                                                    signer: LedgerSigner) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict[str, Any]] = []
    up = threading.Event()

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if up.is_set():
                got.append(body)
            self.send_response(204 if up.is_set() else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    url = f"http://127.0.0.1:{server.server_port}/heads"
    pub = [Publisher("webhook", url)]
    _run(engine, signer, cipher, "1", 2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        down = publish_pending(engine, pub)      # the receiver answers 503: reported, not raised, not advanced
        assert len(down) == 1 and down[0].startswith(f"webhook:{url}") and "503" in down[0]
        up.set()
        assert publish_pending(engine, pub) == []
        assert [h["tree_size"] for h in got] == [0, 2]
        _resolve_like_the_cli(engine, signer)
        assert publish_pending(engine, pub) == []
        assert [h["tree_size"] for h in got] == [0, 2, 3]   # only what was new
    finally:
        server.shutdown()
        server.server_close()
    with engine.connect() as conn:
        assert verify_database(conn, public_keys=[signer.public_key], published=got, require_signed=True).ok
