"""The ledger's trust commands as an operator and an auditor run them, against the demo simulators: a conflict
resolved after the last run is signed at once (verify --require-signed passes on the export), a pinned
fingerprint, a signing-key rotation followed by verify, published heads, and the printed standalone verifier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crmbridge.adapters.base import WriteItem

CRMBRIDGE = Path(sys.executable).with_name("crmbridge")


def cli(env, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([str(CRMBRIDGE), "--config", str(env.config_path), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, COLUMNS="200"))


@pytest.mark.slow   # a command-line run over a full sync: the slow tier
def test_resolve_after_the_last_run_then_verify_signed_export(env, rt, tmp_path: Path) -> None:  # type: ignore
    heads = tmp_path / "outside-state" / "ledger-heads.jsonl"
    fp = cli(env, "ledger", "fingerprint")
    assert fp.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", fp.stdout), fp.stdout + fp.stderr
    cfg = yaml.safe_load(env.config_path.read_text(encoding="utf-8"))
    cfg["ledger"] = {"trusted_keys": [fp.stdout.strip()], "publish": [{"file": str(heads)}]}
    env.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")

    assert cli(env, "run", "core_fxiaoke").returncode == 3
    person = next(r for r in env.fxiaoke.records("AccountObj") if r.get("party_type__c") == "INDIVIDUAL")
    rt.adapter("fxiaoke").write("AccountObj", [WriteItem(key="rm", payload={"name": "欧阳修"},
                                                         external_id=person["_id"])])
    assert cli(env, "run", "core_fxiaoke").returncode == 3   # the conflict waits for review
    resolved = cli(env, "conflicts", "resolve", "1", "--take", "source", "--actor", "user:reviewer")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr

    export, pub = tmp_path / "ledger.jsonl", tmp_path / "ledger.pub"
    assert cli(env, "ledger", "export", "-o", str(export)).returncode == 0
    assert cli(env, "ledger", "public-key", "-o", str(pub)).returncode == 0
    last = [json.loads(x) for x in export.read_text(encoding="utf-8").splitlines()]
    size = max(r["seq"] for r in last if r["type"] == "entry")
    assert any(r["type"] == "entry" and r["seq"] == size and r["action"] == "conflict-resolved" for r in last)
    ok = cli(env, "ledger", "verify", "--file", str(export), "--public-key", str(pub), "--require-signed",
             "--published", str(heads))
    assert ok.returncode == 0 and "OK:" in ok.stdout, ok.stdout + ok.stderr
    # the resolution's own checkpoint was published: the last published head is the whole ledger
    published = [json.loads(x) for x in heads.read_text(encoding="utf-8").splitlines()]
    assert published[-1]["tree_size"] == size
    # offline without a trusted key: no verdict
    unanchored = cli(env, "ledger", "verify", "--file", str(export))
    assert unanchored.returncode == 2 and "NOT VERIFIED" in unanchored.stdout and "OK" not in unanchored.stdout
    # the database against the pinned fingerprint
    db = cli(env, "ledger", "verify", "--require-signed", "--published", str(heads))
    assert db.returncode == 0, db.stdout + db.stderr

    # rotation: a new key in place of the old one, the hand-over signed by both, verify follows it
    rotated = cli(env, "ledger", "rotate-signing-key", "--reason", "yearly rotation")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "signed by both" in rotated.stdout
    assert cli(env, "run", "core_fxiaoke").returncode in (0, 3)
    after = cli(env, "ledger", "verify", "--require-signed", "--published", str(heads))
    assert after.returncode == 0, after.stdout + after.stderr
    assert cli(env, "ledger", "checkpoint").returncode == 0

    # the standalone verifier, printed for the auditor, with the ORIGINAL public key only
    script = tmp_path / "verify_ledger.py"
    printed = cli(env, "ledger", "verifier")
    assert printed.returncode == 0
    script.write_text(printed.stdout, encoding="utf-8")
    export2 = tmp_path / "ledger2.jsonl"
    assert cli(env, "ledger", "export", "-o", str(export2)).returncode == 0
    standalone = subprocess.run([sys.executable, "-I", str(script), str(export2), "--public-key", str(pub),
                                 "--require-signed", "--published", str(heads)],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr
