"""``crmbridge keys``, ``crmbridge ledger`` and ``crmbridge erase`` end to end on a migrated SQLite database."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
import typer

from crmbridge.cli import erase_cmd, keys_cmd, ledger_cmd
from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.security.crypto import FieldCipher, load_key_provider
from crmbridge.sync.state.db import make_engine
from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn, LedgerSigner
from crmbridge.sync.state.store import StateStore


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("COLUMNS", "250")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: {url}\nkeys:\n  master_key: file:master.key\n"
                   f"  signing_key: file:secrets/ledger.pem\n", encoding="utf-8")
    return {"cfg": str(cfg), "url": url, "dir": tmp_path}


def _app() -> typer.Typer:
    """The three command groups as ``crmbridge.cli.main`` registers them (without the other groups)."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    for mod in (keys_cmd, ledger_cmd, erase_cmd):
        mod.register(app)
    return app


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    if code:
        with pytest.raises(SystemExit) as exc:
            _app()(list(argv), standalone_mode=False)
        assert exc.value.code == code
    else:
        _app()(list(argv), standalone_mode=False)
    out = capsys.readouterr()
    return out.out + out.err


def test_keys_ledger_erase_end_to_end(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg, d = setup["cfg"], setup["dir"]
    assert isinstance(d, Path) and isinstance(cfg, str)
    out = run(capsys, "keys", "init", "-c", cfg, "--new-master-key-file", str(d / "master.key"))
    assert "data keys ready: version 1" in out and "ledger signing key" in out
    assert (d / "master.key").stat().st_mode & 0o777 == 0o600
    assert (d / "secrets" / "ledger.pem").stat().st_mode & 0o777 == 0o600
    master = (d / "master.key").read_text().strip()
    assert master not in out

    # the engine's work, through the public APIs
    cipher = FieldCipher(load_key_provider("file:master.key", base_dir=d))
    signer = LedgerSigner.load("file:secrets/ledger.pem", base_dir=d)
    pid = str(uuid.uuid4())
    store = StateStore(make_engine(str(setup["url"])))
    with store.transaction() as tx:
        from crmbridge.sync.security.blindindex import BlindIndexer

        tx.add_identity("CN_RIC", BlindIndexer.from_cipher(tx.connection, cipher).identifier(
            "CN_RIC", "11010519491231002X"), pid)
        ledger = Ledger(tx.connection, signer, cipher=cipher)
        ledger.append([LedgerEntryIn(action=Action.CREATED, run_id="7", job="core_to_zoho", party_id=pid,
                                     changed_fields=["identifiers[0].value"],
                                     after={"identifiers[0].value": "1*************002X"},
                                     diff={"identifiers[0].value": [None, "11010519491231002X"]})])
        ledger.checkpoint(run_id="7")
    store.dispose()

    assert "1 (current)" in run(capsys, "keys", "status", "-c", cfg)
    out = run(capsys, "keys", "rotate", "-c", cfg, "--reencrypt")
    assert "new data key version 2" in out and "re-encryption complete" in out
    out = run(capsys, "ledger", "runs", "-c", cfg)
    assert "core_to_zoho" in out and "created 1" in out
    out = run(capsys, "ledger", "show", "7", "-c", cfg, "--values")
    assert pid in out and "1*************002X" in out and "11010519491231002X" not in out
    out = run(capsys, "ledger", "history", "--identifier", "CN_RIC:11010519491231002x", "-c", cfg)
    assert pid in out and "created" in out
    assert "OK: 2 entries" in run(capsys, "ledger", "verify", "-c", cfg, "--require-signed")

    pub, export = d / "pub.pem", d / "ledger.jsonl"
    run(capsys, "ledger", "public-key", "-c", cfg, "-o", str(pub))
    run(capsys, "ledger", "export", "-c", cfg, "--format", "jsonl", "-o", str(export))
    assert "OK: 2 entries" in run(capsys, "ledger", "verify", "--file", str(export), "--public-key", str(pub))
    csv_out = run(capsys, "ledger", "export", "-c", cfg, "--format", "csv", "--job", "core_to_zoho")
    assert csv_out.count("\n") == 2 and "11010519491231002X" not in csv_out

    # tamper with the export: verification fails (exit 1) naming the entry
    lines = export.read_text().splitlines()
    first = json.loads(lines[0])
    first["actor"] = "someone else"
    export.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    out = run(capsys, "ledger", "verify", "--file", str(export), "--public-key", str(pub), code=1)
    assert "TAMPERED" in out and "first bad entry: seq 1" in out

    out = run(capsys, "erase", pid, "-y", "-c", cfg, "--reason", "customer request")
    assert "1 data key(s) destroyed" in out and "identity_index 1" in out
    out = run(capsys, "ledger", "history", pid, "-c", cfg)
    assert "erased" in out and "customer request" in out
    assert "OK: 3 entries" in run(capsys, "ledger", "verify", "-c", cfg, "--public-key", str(pub),
                                  "--require-signed")
    assert "1 destroyed by erasure" in run(capsys, "keys", "status", "-c", cfg)


def test_wrong_master_key_and_bad_options(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg, d = setup["cfg"], setup["dir"]
    assert isinstance(d, Path) and isinstance(cfg, str)
    run(capsys, "keys", "init", "-c", cfg, "--new-master-key-file", str(d / "master.key"))
    cipher = FieldCipher(load_key_provider("file:master.key", base_dir=d))
    engine = make_engine(str(setup["url"]))
    with engine.begin() as conn:
        token = cipher.encrypt(conn, "x", table="t", column="c", record="1")
    engine.dispose()
    (d / "master.key").unlink()
    (d / "master.key").write_text(base64.b64encode(b"k" * 32).decode())
    out = run(capsys, "keys", "rotate", "-c", cfg, code=0)  # rotation itself does not need the old keys
    assert "version 2" in out
    other = FieldCipher(load_key_provider("file:master.key", base_dir=d))
    engine = make_engine(str(setup["url"]))
    from crmbridge.sync.security.crypto import DecryptionError

    with engine.connect() as conn, pytest.raises(DecryptionError, match="wrong master key"):
        other.decrypt(conn, token, table="t", column="c", record="1")
    engine.dispose()
    with pytest.raises(ConfigurationError, match="unknown format 'xml'"):
        run(capsys, "ledger", "export", "-c", cfg, "--format", "xml")
    with pytest.raises(ConfigurationError, match="PARTY_ID or --identifier"):
        run(capsys, "ledger", "history", "-c", cfg)


def test_security_from_config_for_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crmbridge.config import load_config
    from crmbridge.sync.security.crypto import generate_master_key
    from crmbridge.sync.security.privacy import security_from_config
    from crmbridge.sync.state.db import Base, import_models
    from crmbridge.sync.state.ledger import generate_signing_key

    monkeypatch.setenv("CRMB_TEST_MK", generate_master_key())
    generate_signing_key(tmp_path / "sk.pem")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"state:\n  url: sqlite:///{tmp_path / 's.db'}\nkeys:\n  master_key: env:CRMB_TEST_MK\n"
                        f"  algorithm: sm4-gcm\n  signing_key: file:sk.pem\n", encoding="utf-8")
    sec = security_from_config(load_config(cfg_file))
    assert sec.signer is not None and sec.cipher.algorithm.name == "SM4-GCM" and sec.cipher.hash_algorithm == "sm3"
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    import_models()
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        sec.cipher.init(conn)
        ledger = sec.ledger(conn)
        ledger.append([LedgerEntryIn(action=Action.CREATED, party_id="p", diff={"a": ["1", "2"]})])
        ledger.checkpoint()
        assert sec.indexer(conn).identifier("CN_RIC", "11010519491231002x").startswith("b2:")
    with engine.connect() as conn:
        (entry,) = list(Ledger(conn).iter_entries())
        assert entry["hash_alg"] == "sm3"
        assert Ledger(conn).verify(sec.signer.public_key, require_signed=True).ok
    engine.dispose()
