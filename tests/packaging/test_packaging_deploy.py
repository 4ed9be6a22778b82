"""deploy/: the systemd units and the logrotate snippet (docs/install.md, "Running as services").

Each unit is read with configparser and must carry the hardening and paths an operator relies on; where
``systemd-analyze`` exists it must verify them with no complaint (units copied with ExecStart pointing at this
environment's ``crmbridge``, since it checks the executable exists); where ``logrotate`` exists it must parse the
snippet and find the rotation rule.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
INSTALLED = "/opt/crmbridge/bin/crmbridge"
NAMES = ["crmbridge-scheduler.service", "crmbridge-worker@.service", "crmbridge-console.service"]


def _read(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"),
                                   empty_lines_in_values=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]   systemd keys are case-sensitive
    cp.read_string(path.read_text())
    return cp


@pytest.mark.parametrize("name", NAMES)
def test_unit_is_hardened_and_names_state_keys_and_secrets(name: str) -> None:
    unit = _read(UNITS / name)
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    svc = unit["Service"]
    assert svc["User"] == "crmbridge" and svc["Group"] == "crmbridge"
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["ProtectHome"] == "yes" and svc["PrivateTmp"] == "yes" and svc["CapabilityBoundingSet"] == ""
    assert set(svc["ReadWritePaths"].split()) == {"/var/lib/crmbridge", "/var/log/crmbridge"}
    assert svc["EnvironmentFile"] == "/etc/crmbridge/crmbridge.env"
    assert svc["WorkingDirectory"] == "/var/lib/crmbridge" and svc["UMask"] == "0077"
    assert svc["ExecStart"].startswith(f"{INSTALLED} ") and "--config /etc/crmbridge/crmbridge.yaml" in svc["ExecStart"]
    assert svc["KillSignal"] == "SIGTERM" and int(svc["TimeoutStopSec"]) >= 30
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_each_unit_runs_its_command() -> None:
    commands = {name: _read(UNITS / name)["Service"]["ExecStart"].split()[1] for name in NAMES}
    assert commands == {"crmbridge-scheduler.service": "scheduler", "crmbridge-worker@.service": "worker",
                        "crmbridge-console.service": "console"}
    worker = _read(UNITS / "crmbridge-worker@.service")["Service"]["ExecStart"]
    assert "--hostname %i@%H" in worker
    scheduler = _read(UNITS / "crmbridge-scheduler.service")["Service"]
    assert scheduler["ExecStartPre"].startswith(f"{INSTALLED} db upgrade ")
    # the commands the units call exist with those options (the console arrives in a later release)
    exe = Path(sys.executable).with_name("crmbridge")
    for argv in (["scheduler", "start", "--help"], ["worker", "--help"], ["db", "upgrade", "--help"]):
        out = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=60,
                             env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, (argv, out.stderr)
        assert "--config" in out.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here "
                    "(the configparser checks above still run)")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("crmbridge"))
    paths = []
    for name in NAMES:
        text = (UNITS / name).read_text().replace(INSTALLED, exe)
        target = tmp_path / name.replace("@.", "@w1.")   # a template is verified as an instance
        if "@." in name:
            (tmp_path / name).write_text(text)
        target.write_text(text)
        paths.append(str(target))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    said = res.stdout + res.stderr
    assert res.returncode == 0, said
    complaints = [line for line in said.splitlines() if "crmbridge-" in line]
    assert not complaints, "\n".join(complaints)


def test_sysusers_declares_the_dedicated_user() -> None:
    lines = [ln.split() for ln in (REPO / "deploy/sysusers.d/crmbridge.conf").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines and lines[0][:2] == ["u", "crmbridge"] and "/var/lib/crmbridge" in lines[0]


def test_logrotate_snippet(tmp_path: Path) -> None:
    text = (REPO / "deploy/logrotate/crmbridge").read_text()
    body = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert body[0] == "/var/log/crmbridge/*.jsonl /var/log/crmbridge/*.log {" and body[-1] == "}"
    directives = {ln.split()[0]: ln.split()[1:] for ln in body[1:-1]}
    assert "copytruncate" not in directives   # crmbridge's WatchedFileHandler reopens a renamed file
    assert directives["create"] == ["0640", "crmbridge", "crmbridge"] and directives["su"] == ["crmbridge", "crmbridge"]
    assert {"rotate", "compress", "missingok", "notifempty"} <= set(directives)
    if shutil.which("logrotate") is None:
        return
    # logrotate's own parser (the user is root here: this machine has no crmbridge user)
    conf = tmp_path / "crmbridge"
    conf.write_text(text.replace("crmbridge crmbridge", "root root"))
    res = subprocess.run(["logrotate", "--debug", "--state", str(tmp_path / "state"), str(conf)],
                         capture_output=True, text=True, timeout=60)
    said = res.stdout + res.stderr
    assert res.returncode == 0 and "error" not in said.lower(), said
    assert "Handling 1 logs" in said and "rotating pattern: /var/log/crmbridge/*.jsonl" in said
