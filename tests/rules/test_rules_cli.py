"""``crmbridge rules validate|preview|schema`` through the real command line, previews from a JSON document and from
a real state store's sealed snapshots."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmbridge.cli.main import app
from crmbridge.sync.bootstrap import bootstrap

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "mappings" / "rules.yaml"
INPUT = ROOT / "mappings" / "samples" / "rules_input.json"
PARTY = json.loads((ROOT / "mappings" / "samples" / "party_individual.json").read_text(encoding="utf-8"))
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["rules", *args], catch_exceptions=False)


def test_validate_shipped_and_default(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    res = run("validate")
    assert res.exit_code == 0, res.output
    assert "ok: mappings/rules.yaml (version 1," in res.output


def test_validate_reports_located_problems_and_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    text = RULES.read_text(encoding="utf-8").replace("{fact: band_drop, days: 90, gte: 2}",
                                                     "{fact: band_drop, days: 90, gte: two}")
    bad.write_text(text, encoding="utf-8")
    res = run("validate", str(bad), str(RULES))
    assert res.exit_code == 2
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "gte: two" in t)
    assert f"bad.yaml:{line}: rules[2].cases[0].when.gte:" in res.output
    assert "ok: " in res.output and "1 of 2 rules file(s) have errors" in res.output


def test_preview_from_input_shows_each_step_masked() -> None:
    res = run("preview", str(RULES), "--input", str(INPUT), "--as-of", "2025-06-30")
    assert res.exit_code == 0, res.output
    for text in ("aum_band == 500K_6M", "days_since_last_opened <= 365", "band_drop(days=90) >= 2",
                 'derived: segment="WEALTH", lifecycle_stage="GROWTH", churn_risk=false', "rules version: "):
        assert text in res.output, text
    assert "850000" not in res.output and PARTY["name"]["legal_zh"] not in res.output


def test_preview_refuses_a_bad_document_and_bad_options(tmp_path) -> None:
    doc = json.loads(INPUT.read_text(encoding="utf-8"))
    doc["holdings"][0]["balance"]["amount"] = "-1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    res = run("preview", str(RULES), "--input", str(bad))
    assert res.exit_code == 3 and "holdings[0]" in res.output and "balance.amount" in res.output
    doc = json.loads(INPUT.read_text(encoding="utf-8"))
    doc["party"]["card_pin"] = "123456"
    bad.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    res = run("preview", str(RULES), "--input", str(bad))
    assert res.exit_code == 3 and "123456" not in res.output
    res = runner.invoke(app, ["rules", "preview", str(RULES)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["rules", "preview", str(RULES), "--input", str(INPUT), "--as-of", "30/06/2025"])
    assert res.exit_code == 2


def _config(tmp_path: Path, url: str) -> Path:
    key = tmp_path / "master.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode(), encoding="utf-8")
    key.chmod(0o600)
    cfg = tmp_path / "crmbridge.yaml"
    cfg.write_text(f"state:\n  url: {url}\nkeys:\n  master_key: file:master.key\n", encoding="utf-8")
    return cfg


def test_preview_from_the_state_store_uses_sealed_snapshots_as_history(tmp_path, db_url) -> None:
    cfg = _config(tmp_path, db_url)
    pid = PARTY["party_id"]
    rt = bootstrap(cfg)
    try:
        for system, band in (("corebank_soap", "GE_30M"), ("zoho", "500K_6M")):     # older first
            data = {**{k: v for k, v in PARTY.items() if k != "party_id"},
                    "aum": {"amount": "1.00", "currency": "CNY", "band": band}}
            row = {"party_id": pid, "system": system, "object": "Contacts"}
            with rt.store.transaction() as tx:
                blob = tx.seal(rt.cipher, "snapshots", "blob", row=row, value=data)
                tx.put_snapshot(pid, system, "Contacts", content_hash=system, blob=blob)
    finally:
        rt.close()
    res = run("preview", str(RULES), "--party", pid, "--config", str(cfg))
    assert res.exit_code == 0, res.output
    assert "2 stored snapshot(s)" in res.output
    assert "band_drop(days=90) >= 2" in res.output and "churn_risk=true" in res.output   # GE_30M → 500K_6M
    assert 'segment="WEALTH"' in res.output and PARTY["name"]["legal_zh"] not in res.output
    res = runner.invoke(app, ["rules", "preview", str(RULES), "--party", str(uuid.uuid4()), "--config", str(cfg)])
    assert res.exit_code == 2 and "no stored snapshot" in res.output


def test_preview_of_a_broken_rules_file_lists_its_problems(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.read_text(encoding="utf-8").replace("derive: churn_risk", "derive: churn"), encoding="utf-8")
    res = run("preview", str(bad), "--input", str(INPUT))
    assert res.exit_code == 2 and "rules[2].derive" in res.output


@pytest.mark.parametrize("command", [["rules", "schema"]])
def test_schema_command_prints_the_committed_schema(command) -> None:
    res = runner.invoke(app, command, catch_exceptions=False)
    assert json.loads(res.output) == json.loads((ROOT / "mappings" / "rules.schema.json").read_text())
