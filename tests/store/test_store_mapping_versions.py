"""The mapping versions archive: every mapping version a run loads is kept (text by content hash), and
``crmbridge mapping history|show --version|diff`` read it."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import typer
from typer.testing import CliRunner

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import load_mapping
from crmbridge.cli import mapping_cmd
from crmbridge.sync.bootstrap import archive_mapping, bootstrap
from crmbridge.sync.state.migrate import upgrade
from crmbridge.sync.state.store import StateStore

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
app = typer.Typer()
mapping_cmd.register(app)
runner = CliRunner()


def _copy(tmp_path: Path, name: str = "zoho_contacts.yaml") -> Path:
    p = tmp_path / "mappings" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text((MAPPINGS / name).read_text(encoding="utf-8"), encoding="utf-8")
    return p


def test_archive_is_idempotent_and_found_by_file_or_object(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    store = StateStore.from_url(db_url)
    path = _copy(tmp_path)
    first = load_mapping(path, profile=target_profile)
    path.write_text(path.read_text(encoding="utf-8").replace("version: 1", "version: 2"), encoding="utf-8")
    second = load_mapping(path, profile=target_profile)
    try:
        with store.transaction() as tx:
            assert archive_mapping(tx, first) is True
            assert archive_mapping(tx, first) is False        # same content: nothing new
        with store.transaction() as tx:
            assert archive_mapping(tx, second) is True
        with store.transaction(read_only=True) as tx:
            by_file = tx.mapping_versions(str(path))
            assert [r["content_hash"] for r in by_file] == [first.version_hash, second.version_hash]
            assert tx.mapping_versions("zoho/Contacts") == by_file == tx.mapping_versions("zoho.Contacts")
            assert tx.mapping_versions("fxiaoke_accountobj.yaml") == []
            assert tx.mapping_text(second.version_hash) == path.read_text(encoding="utf-8")
            assert tx.mapping_text(first.version_hash[:10]) == second.text.replace("version: 2", "version: 1")
            assert tx.mapping_text("abc") is None          # too short to be a prefix
    finally:
        store.dispose()


def _config(tmp_path: Path) -> Path:
    key = tmp_path / "master.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode(), encoding="utf-8")
    key.chmod(0o600)
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: sqlite:///{tmp_path / 'state.db'}\nkeys:\n  master_key: file:master.key\n",
                   encoding="utf-8")
    return cfg


def test_a_runtime_archives_the_mappings_it_loads_and_the_cli_reads_them(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    path = _copy(tmp_path)
    rt = bootstrap(cfg)
    try:
        v1 = rt.mapping(str(path)).version_hash
    finally:
        rt.close()
    path.write_text(path.read_text(encoding="utf-8").replace("version: 1", "version: 2").replace(
        "    vendor: Email\n", "    vendor: Secondary_Email\n"), encoding="utf-8")
    rt = bootstrap(cfg)
    try:
        v2 = rt.mapping(str(path)).version_hash
        rt.mapping(str(path))                  # cached: archived once
    finally:
        rt.close()
    assert v1 != v2

    hist = runner.invoke(app, ["mapping", "history", str(path), "-c", str(cfg)], catch_exceptions=False)
    assert hist.exit_code == 0, hist.output
    assert hist.output.index(v1[:12]) < hist.output.index(v2[:12])
    assert "= file now" in hist.output.splitlines()[[i for i, ln in enumerate(hist.output.splitlines())
                                                      if v2[:12] in ln][0]]

    shown = runner.invoke(app, ["mapping", "show", "--version", v1, "-c", str(cfg)], catch_exceptions=False)
    assert shown.exit_code == 0 and "version: 1" in shown.output and "vendor: Email\n" in shown.output

    d = runner.invoke(app, ["mapping", "diff", v1[:12], v2, "-c", str(cfg)], catch_exceptions=False)
    assert d.exit_code == 0, d.output
    assert "-version: 1" in d.output and "+version: 2" in d.output and "+    vendor: Secondary_Email" in d.output
    same = runner.invoke(app, ["mapping", "diff", v2, str(path), "-c", str(cfg)], catch_exceptions=False)
    assert same.output.strip() == "no differences"

    missing = runner.invoke(app, ["mapping", "show", "--version", "0" * 64, "-c", str(cfg)])
    assert missing.exit_code == 2
