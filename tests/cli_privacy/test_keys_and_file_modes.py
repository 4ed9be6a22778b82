"""Issue 14 item 9: ``config check`` validates the master key and the ledger signing key (located errors, keys
never shown); every file crmbridge creates that holds state, keys or exports is 0600 whatever the umask; a
``systems:`` given as a list says so instead of reporting an unrelated "unknown system"."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from crmbridge.cli import config_cmd, keys_cmd, ledger_cmd
from crmbridge.config import load_config
from crmbridge.core.errors import ConfigurationError
from crmbridge.sync.state.ledger import generate_signing_key

app = typer.Typer()
for _mod in (config_cmd, keys_cmd, ledger_cmd):
    _mod.register(app)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _config(d: Path, master: str, signing: str | None = None) -> Path:
    (d / "master.key").write_text(master + "\n")
    text = f"state:\n  url: sqlite:///{d / 'state.db'}\nkeys:\n  master_key: file:master.key\n"
    if signing is not None:
        (d / "ledger.pem").write_text(signing)
        text += "  signing_key: file:ledger.pem\n"
    cfg = d / "crmbridge.yaml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _check(cfg: Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])


def test_config_check_refuses_a_master_key_of_the_wrong_size_or_not_decodable(tmp_path: Path) -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    res = _check(_config(tmp_path, short))
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'crmbridge.yaml'}:4: keys.master_key:" in res.output
    assert "16 bytes" in res.output and "32" in res.output and short not in res.output
    res = _check(_config(tmp_path, "not a key at all!"))
    assert res.exit_code == 2 and "keys.master_key" in res.output and "base64" in res.output, res.output
    assert "not a key at all" not in res.output
    good = _check(_config(tmp_path, base64.b64encode(os.urandom(32)).decode()))
    assert good.exit_code == 0 and "OK" in good.output, good.output


def test_config_check_sm4_takes_the_same_32_byte_master_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path, base64.b64encode(os.urandom(32)).decode())
    cfg.write_text(cfg.read_text() + "  algorithm: sm4-gcm\n")
    assert _check(cfg).exit_code == 0
    (tmp_path / "master.key").write_text(base64.b64encode(os.urandom(16)).decode())   # an SM4-sized key
    res = _check(cfg)
    assert res.exit_code == 2 and "keys.master_key" in res.output and "sm4-gcm" in res.output, res.output


def test_config_check_refuses_a_garbage_or_non_ed25519_signing_key(tmp_path: Path) -> None:
    master = base64.b64encode(os.urandom(32)).decode()
    res = _check(_config(tmp_path, master, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"))
    assert res.exit_code == 2, res.output
    assert f"{tmp_path / 'crmbridge.yaml'}:5: keys.signing_key:" in res.output and "Ed25519" in res.output
    assert "garbage" not in res.output
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    (tmp_path / "ledger.pem").unlink()
    res = _check(_config(tmp_path, master, p256))
    assert res.exit_code == 2 and "not an Ed25519 key" in res.output, res.output
    (tmp_path / "ledger.pem").unlink()
    generate_signing_key(tmp_path / "ledger.pem")
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(cfg.read_text())
    assert _check(cfg).exit_code == 0


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_state_keys_and_exports_are_0600_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: sqlite:///{tmp_path / 'state.db'}\nkeys:\n  master_key: file:master.key\n"
                   "  signing_key: file:secrets/ledger.pem\n", encoding="utf-8")
    run = CliRunner()
    res = run.invoke(app, ["keys", "init", "-c", str(cfg), "--new-master-key-file", str(tmp_path / "master.key")])
    assert res.exit_code == 0, res.output
    # some ledger content to export, through the runtime as a run would write it (and the database it opens)
    from crmbridge.sync.bootstrap import bootstrap
    from crmbridge.sync.state.ledger import Action, Ledger, LedgerEntryIn

    rt = bootstrap(cfg)
    try:
        with rt.store.transaction() as tx:
            Ledger(tx.connection, rt.signer, cipher=rt.cipher).append([LedgerEntryIn(
                action=Action.CREATED, run_id="1", job="j", party_id=str(uuid.uuid4()))])
            side = [p for p in tmp_path.iterdir() if p.name.startswith("state.db-")]
            assert side and all(_mode(p) == 0o600 for p in side), [(p.name, oct(_mode(p))) for p in side]
    finally:
        rt.close()
    out, pub = tmp_path / "ledger.jsonl", tmp_path / "pub.pem"
    assert run.invoke(app, ["ledger", "export", "-c", str(cfg), "-o", str(out)]).exit_code == 0
    assert run.invoke(app, ["ledger", "public-key", "-c", str(cfg), "-o", str(pub)]).exit_code == 0
    files = [tmp_path / "state.db", tmp_path / "master.key", tmp_path / "secrets" / "ledger.pem", out, pub]
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}
    # an export written over an existing world-readable file is tightened too
    out.chmod(0o666)
    assert run.invoke(app, ["ledger", "export", "-c", str(cfg), "-o", str(out)]).exit_code == 0
    assert _mode(out) == 0o600


def test_an_existing_loose_state_database_is_tightened(tmp_path: Path) -> None:
    from crmbridge.sync.state.store import StateStore

    db = tmp_path / "state.db"
    db.touch()
    db.chmod(0o644)
    store = StateStore.from_url(f"sqlite:///{db}")
    with store.transaction():
        pass
    store.dispose()
    assert _mode(db) == 0o600


def test_demo_key_files_are_0600_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    from crmbridge.demo import DemoEnvironment

    with DemoEnvironment(tmp_path / "demo", customers=1) as env:
        for name in ("master.key", "ledger-signing.pem"):
            assert _mode(env.workdir / name) == 0o600, name


def test_systems_given_as_a_list_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text("keys: {master_key: env:X}\nsystems:\n  - corebank:\n      adapter: corebank_soap\n"
                   "  - name: zoho_cn\n    adapter: zoho\njobs:\n  core_to_zoho: {source: corebank.Customer, "
                   "target: zoho_cn.Contacts, source_mapping: corebank_soap_customer.yaml, "
                   "target_mapping: zoho_contacts.yaml}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as exc:
        load_config(cfg)
    text = str(exc.value)
    assert f"{cfg}:2: systems: must be a mapping of system name → settings, not a list" in text
    assert "corebank, zoho_cn" in text and "without a leading '- '" in text
    assert "unknown system" not in text and "1 configuration error" in text
