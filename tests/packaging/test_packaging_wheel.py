"""The wheel ships exactly the crmbridge package, with its data files, and installs the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow   # slow tier: builds a wheel
def test_wheel_contents(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("crmbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"crmbridge"}
    for required in ("crmbridge/py.typed", "crmbridge/__main__.py", "crmbridge/mappings/zoho_contacts.yaml",
                     "crmbridge/mappings/mapping.schema.json", "crmbridge/mappings/README.md",
                     "crmbridge/config/crmbridge.yaml", "crmbridge/config/schema.json",
                     "crmbridge/canonical/gb2260_areas.tsv",
                     "crmbridge/adapters/corebank_soap/fcubs_customer.wsdl",
                     "crmbridge/adapters/corebank_soap/fcubs_account.wsdl",
                     "crmbridge/adapters/complaints/simulator/__init__.py",
                     "crmbridge/sync/state/migrations/versions/0001_initial_state_store.py",
                     "crmbridge/sync/state/migrations/env.py",
                     "crmbridge/testing/contract.py", "crmbridge/testing/plugin.py",
                     "crmbridge/testing/memory/simulator.py", "crmbridge/adapters/zoho/simulator/__init__.py"):
        assert required in names, f"{required} missing from the wheel"
    assert not [n for n in names if n.startswith(("crmbridge/tests/", "crmbridge/bench/", "crmbridge/build/",
                                                  "crmbridge/.venv/", "crmbridge/var/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "crmbridge = crmbridge.cli.main:main" in text and "[crmbridge.adapters]" in text
    # the test adapter is no production adapter; the contract suite is a pytest plugin for any adapter's tests
    assert "memory" not in text and "[pytest11]" in text and "crmbridge.testing.plugin" in text


def test_every_subpackage_is_declared_in_pyproject() -> None:
    import tomllib

    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"crmbridge"}
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts and rel.parts[0] in (".venv", "build", "tests", "bench", "var", "dist"):
            continue
        if rel.parts:
            found.add("crmbridge." + ".".join(rel.parts))
    assert found == declared


def test_python_dash_m_runs_the_cli() -> None:
    res = subprocess.run([sys.executable, "-m", "crmbridge", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for command in ("run", "demo", "mapping", "config", "db", "keys", "ledger", "deadletters", "conflicts",
                    "reconcile", "simulate", "erase"):
        assert command in res.stdout
