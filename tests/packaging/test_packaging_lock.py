"""Dependencies are bounded, split into extras, and locked: uv.lock matches pyproject.toml (docs/install.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _uv() -> list[str]:
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("uv")
    assert found, "uv is part of the dev extra (pip install -e '.[dev]')"
    return [found]


def _all_requirements() -> list[tuple[str, Requirement]]:
    out = [("dependencies", Requirement(r)) for r in PROJECT["project"]["dependencies"]]
    for extra, reqs in PROJECT["project"]["optional-dependencies"].items():
        out += [(f"[{extra}]", Requirement(r)) for r in reqs]
    out += [("build-system", Requirement(r)) for r in PROJECT["build-system"]["requires"]]
    return out


def test_lock_matches_pyproject() -> None:
    res = subprocess.run([*_uv(), "lock", "--check"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "UV_NO_PROGRESS": "1"})
    assert res.returncode == 0, f"uv.lock is out of date with pyproject.toml: run `make lock`\n{res.stderr}"


def test_lock_covers_linux_x86_64_for_python_311_and_312() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    markers = " | ".join(lock.get("required-markers", []))
    for py in ("python_full_version < '3.12'", "python_full_version == '3.12.*'"):
        assert py in markers
    assert "platform_machine == 'x86_64'" in markers and "sys_platform == 'linux'" in markers
    # hashes for every registry package
    for pkg in lock["package"]:
        if "registry" in pkg.get("source", {}):
            files = pkg.get("wheels", []) + ([pkg["sdist"]] if "sdist" in pkg else [])
            assert files and all(f.get("hash", "").startswith("sha256:") for f in files), pkg["name"]


def test_every_dependency_has_an_upper_bound_at_the_next_major_or_minor() -> None:
    for where, req in _all_requirements():
        uppers = [Version(s.version) for s in req.specifier if s.operator == "<"]
        lowers = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert uppers and lowers, f"{where}: {req} needs a lower and an upper bound"
        (upper,), (lower,) = uppers, lowers
        assert upper > lower, f"{where}: {req}"
        if upper.major == 0:   # pre-1.0: the next minor, 0.N
            assert len(upper.release) == 2, f"{where}: {req}: a pre-1.0 package is bounded at a minor (<0.N)"
        else:                  # the next major: N alone
            assert len(upper.release) == 1, f"{where}: {req}: bounded at a major (<N)"


def test_core_install_has_no_broker_or_postgresql_driver() -> None:
    core = {Requirement(r).name.lower() for r in PROJECT["project"]["dependencies"]}
    assert not core & {"celery", "redis", "kombu", "psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"}
    extras = PROJECT["project"]["optional-dependencies"]
    assert {Requirement(r).name for r in extras["distributed"]} == {"celery", "kombu", "redis"}
    assert [Requirement(r).name for r in extras["postgres"]] == ["psycopg"]
    # the Makefile's development install takes every extra
    make = (REPO / "Makefile").read_text()
    assert re.search(r'pip install .*-e "\.\[test,dev,postgres,distributed,console\]"', make)
    # ... at the locked versions
    assert re.search(r"uv export .*--frozen .*--all-extras", make) and "--require-hashes" in make
