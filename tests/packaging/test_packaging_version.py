"""``crmbridge --version`` prints the installed distribution's version, from its metadata."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

CRMBRIDGE = Path(sys.executable).parent / "crmbridge"


def test_version_of_the_installed_script() -> None:
    res = subprocess.run([str(CRMBRIDGE), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"crmbridge {version('crmbridge')}\n"
    assert re.fullmatch(r"crmbridge \d+\.\d+\.\d+\S*\n", res.stdout)


def test_version_wins_over_commands_and_needs_no_configuration(tmp_path: Path) -> None:
    # eager: printed before any command or configuration is looked at, and works as `python -m crmbridge`
    res = subprocess.run([sys.executable, "-m", "crmbridge", "--version", "run", "nosuchjob"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path, env={"CRMBRIDGE_CONFIG": str(tmp_path / "missing.yaml"),
                                                                   "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"crmbridge {version('crmbridge')}\n"
