"""The offline bundle (``make wheelhouse``) installs on a machine with no registry access and runs the demo; the
core install it makes has no Celery, redis, kombu or PostgreSQL driver, and says which extra a command needs.

Builds the bundle once (downloading the locked wheels, from the pip cache when it has them), then installs it
into a fresh virtual environment with every index blocked — inside a network namespace with no interface at all
where ``unshare -n`` is allowed, else with ``--no-index`` and an unreachable index URL.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
NAME = f"crmbridge-{VERSION}-wheelhouse"

pytestmark = pytest.mark.slow

#: a package index nobody listens on: any attempt to reach a registry fails at once
BLOCKED = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
           "UV_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_CONFIG_FILE": os.devnull}


def _no_network_prefix() -> list[str]:
    """``unshare -n`` (a namespace with no network interface up) when this user may create one."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return ["unshare", "-n"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make wheelhouse``'s script, run into a temporary dist folder; the tarball's path."""
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHON": sys.executable, "DIST": str(dist)}
    res = subprocess.run(["bash", str(REPO / "deploy/wheelhouse/build.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    out = dist / f"{NAME}.tar.gz"
    assert out.is_file(), res.stdout
    return out


@pytest.fixture(scope="module")
def unpacked(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("bundle")
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    return where / NAME


@pytest.fixture(scope="module")
def core_venv(unpacked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle's install.sh with no extras, with no registry reachable."""
    venv = tmp_path_factory.mktemp("offline") / "venv"
    env = {**os.environ, **BLOCKED, "PYTHON": sys.executable}
    res = subprocess.run([*_no_network_prefix(), "sh", str(unpacked / "install.sh"), str(venv)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"crmbridge {VERSION}" in res.stdout
    return venv


def test_bundle_holds_wheels_lock_installer_and_checksums(unpacked: Path) -> None:
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    for required in ("install.sh", "SHA256SUMS", "uv.lock", "requirements.txt", "requirements-postgres.txt",
                     "requirements-distributed.txt", "requirements-distributed-postgres.txt",
                     f"wheels/crmbridge-{VERSION}-py3-none-any.whl"):
        assert required in files
    assert (unpacked / "uv.lock").read_bytes() == (REPO / "uv.lock").read_bytes()
    # every file but the list itself is listed, with its true digest
    listed = {}
    for line in (unpacked / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    assert set(listed) == files - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256((unpacked / name).read_bytes()).hexdigest() == digest, name
    # a wheel of every locked Linux requirement, for CPython 3.11 and 3.12
    wheels = [w.name.lower() for w in (unpacked / "wheels").glob("*.whl")]
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)(?: ; (.*?))? \\$",
                      (unpacked / "requirements-distributed-postgres.txt").read_text(), re.M)
    assert len(pins) > 30
    from packaging.markers import Marker

    linux = [{"python_version": v[:4], "python_full_version": v, "sys_platform": "linux", "os_name": "posix",
              "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
              "platform_python_implementation": "CPython"} for v in ("3.11.0", "3.11.99", "3.12.0", "3.12.99")]
    for name, version, marker in pins:
        if marker and not any(Marker(marker).evaluate(t) for t in linux):
            continue   # never installed on a supported server (Windows-only)
        stem = f"{re.sub(r'[-_.]+', '_', name.lower())}-{version}-"
        have = [w for w in wheels if w.startswith(stem)]
        assert have, f"no wheel of {name}=={version}"
        for tag in ("cp311", "cp312"):
            assert any("-py3-" in w or "-py2.py3-" in w or "abi3" in w or f"-{tag}-" in w for w in have), \
                f"{name}=={version} has no wheel for {tag}: {have}"


def test_core_install_runs_the_demo_offline_without_celery_redis_or_postgres_driver(core_venv: Path,
                                                                                   tmp_path: Path) -> None:
    py = core_venv / "bin" / "python"
    for module in ("celery", "kombu", "redis", "psycopg", "psycopg2"):
        res = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True)
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, f"{module} is importable"
    # everything crmbridge itself ships imports without them
    res = subprocess.run([str(py), "-c", "import crmbridge.cli.main, crmbridge.sync.runners.distributed, "
                                         "crmbridge.sync.bootstrap, crmbridge.demo"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    env = {**os.environ, **BLOCKED}
    env.pop("CRMBRIDGE_CONFIG", None)
    cmd = [str(core_venv / "bin" / "crmbridge"), "demo", "--workdir", str(tmp_path / "demo"), "--customers", "40"]
    if _no_network_prefix() and shutil.which("ip"):   # only loopback, for the demo's simulators
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]
    res = subprocess.run(cmd,
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "ledger:" in res.stdout and "verifies" in res.stdout
    assert (tmp_path / "demo" / "crmbridge.yaml").is_file()


def test_core_install_names_the_extra_a_command_needs(core_venv: Path, tmp_path: Path) -> None:
    exe = str(core_venv / "bin" / "crmbridge")
    env = {**os.environ, **BLOCKED}
    env.pop("CRMBRIDGE_CONFIG", None)
    cfg = tmp_path / "crmbridge.yaml"
    shutil.copy(REPO / "config" / "crmbridge.yaml", cfg)
    res = subprocess.run([exe, "worker", "-c", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "pip install 'crmbridge[distributed]'" in " ".join(res.stderr.split())

    # an existing postgresql+psycopg2 URL without psycopg2: one message naming the extra, exit 2
    text = cfg.read_text()
    text = re.sub(r"(?m)^(\s*url:\s*)sqlite\S*", r"\1postgresql+psycopg2://crm@127.0.0.1:1/crm", text, count=1)
    assert "postgresql+psycopg2://crm@127.0.0.1:1/crm" in text
    cfg.write_text(text)
    res = subprocess.run([exe, "db", "upgrade", "-c", str(cfg)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    said = " ".join(res.stderr.split())
    assert "postgresql+psycopg://" in said and "pip install 'crmbridge[postgres]'" in said
    assert "Traceback" not in res.stderr


def test_installer_refuses_a_tampered_bundle(unpacked: Path, tmp_path: Path) -> None:
    copy = tmp_path / NAME
    shutil.copytree(unpacked, copy, ignore=shutil.ignore_patterns("*.whl"))
    for whl in (unpacked / "wheels").glob("*.whl"):   # hard links: no 40 MB copy
        os.link(whl, copy / "wheels" / whl.name)
    with (copy / "requirements.txt").open("a") as fh:
        fh.write("evil==1.0\n")
    venv = tmp_path / "venv"
    res = subprocess.run(["sh", str(copy / "install.sh"), str(venv)], env={**os.environ, **BLOCKED},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "requirements.txt" in res.stdout + res.stderr
    assert not venv.exists()


@pytest.mark.postgres
def test_bundle_with_both_extras_migrates_a_postgresql_state_database_offline(unpacked: Path, tmp_path: Path,
                                                                              pg_url: str) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, **BLOCKED, "PYTHON": sys.executable}
    res = subprocess.run([*_no_network_prefix(), "sh", str(unpacked / "install.sh"), str(venv), "distributed",
                          "postgres"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    py = str(venv / "bin" / "python")
    res = subprocess.run([py, "-c", "import celery, kombu, redis, psycopg; print(psycopg.pq.__impl__)"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "python"   # the pure-Python psycopg on the system's libpq, not a bundled one
    assert subprocess.run([py, "-c", "import psycopg2"], capture_output=True).returncode != 0
    cfg = tmp_path / "crmbridge.yaml"
    text = (REPO / "config" / "crmbridge.yaml").read_text()
    url = pg_url
    assert url.startswith("postgresql+psycopg://")
    cfg.write_text(re.sub(r"(?m)^(\s*url:\s*)sqlite\S*", lambda m: m.group(1) + url, text, count=1))
    env = {k: v for k, v in {**os.environ, **BLOCKED}.items() if k != "CRMBRIDGE_CONFIG"}
    res = subprocess.run([str(venv / "bin" / "crmbridge"), "db", "upgrade", "-c", str(cfg)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
