"""``crmbridge db upgrade|current`` through the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.cli import db_cmd
from crmbridge.sync.state.migrate import current, heads

CRMBRIDGE = Path(sys.executable).parent / "crmbridge"

#: the command group as registered on the root app (the installed script is exercised below too)
app = typer.Typer()
db_cmd.register(app)


def test_db_upgrade_and_current_by_url(db_url: str) -> None:
    runner = CliRunner()
    newest = ", ".join(heads())
    res = runner.invoke(app, ["db", "current", "--url", db_url])
    assert res.exit_code == 0, res.output
    assert "at empty" in res.output and "needs `crmbridge db upgrade`" in res.output
    res = runner.invoke(app, ["db", "upgrade", "--url", db_url])
    assert res.exit_code == 0, res.output
    assert f"upgraded from empty to {newest}" in res.output
    assert current(db_url) == heads()
    res = runner.invoke(app, ["db", "upgrade", "--url", db_url])
    assert res.exit_code == 0 and f"already at {newest}" in res.output
    res = runner.invoke(app, ["db", "current", "--url", db_url])
    assert f"at {newest}; newest {newest} (up to date)" in res.output


def test_db_url_password_hidden(pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:topsecret@")
    res = CliRunner().invoke(app, ["db", "upgrade", "--url", url])
    assert res.exit_code == 0, res.output
    assert "topsecret" not in res.output and "***" in res.output


def test_db_upgrade_from_config_relative_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """state.url from the configuration; a relative SQLite path lands under the current directory."""
    cfg = tmp_path / "conf" / "crmbridge.yaml"
    cfg.parent.mkdir()
    cfg.write_text("state:\n  url: sqlite:///var/state.db\nkeys:\n  master_key: env:UNUSED_KEY\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = CliRunner().invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert (work / "var" / "state.db").is_file()
    assert not (cfg.parent / "var").exists()


def test_db_upgrade_bad_config_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text("state:\n  url: oracle://x\nkeys:\n  master_key: env:K\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert res.exit_code == 2
    assert f"{cfg}:2: state.url: must be a sqlite:/// or postgresql://" in res.output


def test_installed_script_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    res = subprocess.run([str(CRMBRIDGE), "db", "upgrade", "--url", url], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    assert current(url) == heads()
