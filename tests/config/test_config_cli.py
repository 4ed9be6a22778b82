"""``crmbridge config check|schema`` through the real command line (typer runner and the installed script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from crmbridge.cli import config_cmd
from crmbridge.testing.plugin import install_entry_points

REPO = Path(__file__).resolve().parents[2]
CRMBRIDGE = Path(sys.executable).parent / "crmbridge"

#: the command group as registered on the root app (the installed script is exercised below too)
app = typer.Typer()
config_cmd.register(app)

#: base64 of 32 bytes: the only master key shape config check accepts
VALID_MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

CONFIG = """\
keys:
  master_key: env:CRMBRIDGE_CLI_MASTER_KEY
systems:
  a:
    adapter: memory
    base_url: http://127.0.0.1:8900
    client_id: a
    client_secret: env:CRMBRIDGE_CLI_A_SECRET
  b:
    adapter: memory
    base_url: http://127.0.0.1:8901
    client_id: b
    client_secret: env:CRMBRIDGE_CLI_B_SECRET
jobs:
  a_to_b:
    source: a.Customer
    target: b.Contacts
    source_mapping: a.yaml
    target_mapping: b.yaml
"""


#: the smallest mapping a job can run with: an id, and one field both ways
MAPPING = """\
system: memory
object: {obj}
version: 1
description: test mapping
party_type: INDIVIDUAL
external_id: id
steps:
  - type: field
    vendor: name
    canonical: name.legal_zh
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    for name, obj in (("a.yaml", "Customer"), ("b.yaml", "Contacts")):
        (tmp_path / name).write_text(MAPPING.format(obj=obj), encoding="utf-8")
    path = tmp_path / "crmbridge.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CRMBRIDGE_CLI_MASTER_KEY", "CRMBRIDGE_CLI_A_SECRET", "CRMBRIDGE_CLI_B_SECRET"):
        monkeypatch.setenv(name, "s3cr3t-value")
    monkeypatch.setenv("CRMBRIDGE_CLI_MASTER_KEY", VALID_MASTER_KEY)   # config check decodes the master key


def test_check_ok(config_file: Path, secrets_set: None) -> None:
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 2 systems, 1 job")


def test_check_reads_environment_variable(config_file: Path, secrets_set: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBRIDGE_CONFIG", str(config_file))
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "OK: 2 systems, 1 job" in result.output


def test_check_lists_every_error_exit_2(config_file: Path, secrets_set: None) -> None:
    config_file.write_text(CONFIG.replace("target: b.Contacts", "target: c.Contacts")
                           .replace("env:CRMBRIDGE_CLI_A_SECRET", "literal-pass"), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "2 configuration errors" in result.output
    assert f"{config_file}:8: systems.a.client_secret:" in result.output
    assert f"{config_file}:17: jobs.a_to_b.target: unknown system 'c'" in result.output
    assert "literal-pass" not in result.output


def test_check_resolves_secrets(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMBRIDGE_CLI_MASTER_KEY", "x")
    monkeypatch.delenv("CRMBRIDGE_CLI_A_SECRET", raising=False)
    monkeypatch.delenv("CRMBRIDGE_CLI_B_SECRET", raising=False)
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "2 secret reference(s) cannot be resolved" in result.output
    assert f"{config_file}:8: systems.a.client_secret: environment variable CRMBRIDGE_CLI_A_SECRET is not set" \
        in result.output
    assert "systems.b.client_secret" in result.output


def test_schema_prints_json_and_writes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert "jobs" in schema["properties"]
    out = tmp_path / "schema.json"
    result = CliRunner().invoke(app, ["config", "schema", "--output", str(out)])
    assert result.exit_code == 0 and json.loads(out.read_text(encoding="utf-8")) == schema


def test_installed_script(config_file: Path, tmp_path: Path) -> None:
    # the script is another process: the test adapter reaches it as a third-party plugin would, declared as a
    # crmbridge.adapters entry point of a distribution on its path
    plugins = install_entry_points(tmp_path / "plugins", {"memory": "crmbridge.testing.memory:MemoryAdapter"})
    env = {**os.environ, "CRMBRIDGE_CLI_MASTER_KEY": VALID_MASTER_KEY, "CRMBRIDGE_CLI_A_SECRET": "a",
           "CRMBRIDGE_CLI_B_SECRET": "b",
           "PYTHONPATH": os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH")) if p)}
    ok = subprocess.run([str(CRMBRIDGE), "config", "check", "--config", str(config_file)], env=env,
                        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 2 systems, 1 job")
    config_file.write_text(CONFIG.replace("source: a.Customer", "source: a.Customer\n    schedule: 'x y'"),
                           encoding="utf-8")
    bad = subprocess.run([str(CRMBRIDGE), "config", "check", "--config", str(config_file)], env=env,
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad.returncode == 2
    assert f"{config_file}:17: jobs.a_to_b.schedule: must be a 5-field crontab" in bad.stderr


def test_check_refuses_a_job_whose_mapping_does_not_load(config_file: Path, secrets_set: None) -> None:
    """run would refuse this job: config check must say so first, naming the job, the file and the line."""
    (config_file.parent / "b.yaml").write_text("system: memory\nobject: Contacts\nsteps: [{type: nonsense}]\n",
                                               encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "jobs.a_to_b.target_mapping" in result.output and "b.yaml" in result.output


def test_committed_schema_is_what_the_command_prints() -> None:
    """config/schema.json, the whole document, equals ``crmbridge config schema`` (the installed script)."""
    res = subprocess.run([str(CRMBRIDGE), "config", "schema"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    committed = json.loads((REPO / "config" / "schema.json").read_text(encoding="utf-8"))
    assert json.loads(res.stdout) == committed, "regenerate: crmbridge config schema --write"
