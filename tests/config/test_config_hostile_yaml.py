"""Hostile YAML in a configuration file (issue 14 item 4): an alias bomb, deep nesting, a recursive alias and a huge
file are refused while composing, as a ConfigurationError naming the file and line, fast and in little memory; the
CLI commands that read the configuration print one clear line with exit code 2 (they hung or said "internal error:
RecursionError"). A configuration using anchors and merge keys moderately still loads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crmbridge.config import load_config
from crmbridge.core.errors import ConfigurationError
from crmbridge.demo import DemoEnvironment

REPO = Path(__file__).resolve().parents[2]

#: the 342-byte bomb of the review: 9 levels of 9 aliases, 9^9 (387 million) nodes expanded
BOMB = "".join(f"{c}: &{c} [{','.join([f'*{p}'] * 9) if p else ','.join(['lol'] * 9)}]\n"
               for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True))
DEEP = "state: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_MAP = "state:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + "  " * 201 + "x: 1\n"
RECURSIVE = "state: &s {url: [*s]}\n"


@pytest.mark.parametrize(("text", "line", "words"), [
    (BOMB, 5, "alias bomb"), (DEEP, 1, "nesting deeper than 64"), (DEEP_MAP, 64, "nesting deeper than 64"),
    (RECURSIVE, 1, "recursive")], ids=["alias-bomb", "deep-flow", "deep-block", "recursive-alias"])
def test_hostile_yaml_is_refused_with_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "crmbridge.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert time.monotonic() - start < 2.0
    assert f"{path}:{line}:" in str(info.value) and words in str(info.value), str(info.value)


def test_a_value_its_yaml_type_cannot_hold_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "crmbridge.yaml"
    path.write_text("state:\n  url: sqlite:///x.db\nlogging:\n  since: 2026-13-45\n")
    with pytest.raises(ConfigurationError) as info:   # was a bare ValueError out of PyYAML's constructor
        load_config(path)
    assert f"{path}:4:" in str(info.value) and "month must be in 1..12" in str(info.value), str(info.value)


def test_a_config_larger_than_the_limit_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "crmbridge.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigurationError, match=r"larger than 1048576 bytes") as info:
        load_config(path)
    assert str(path) in str(info.value)
    monkeypatch.setenv("CRMBRIDGE_YAML_MAX_BYTES", str(4 << 20))   # configurable: now it is read (and is empty)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "larger than" not in str(info.value)


def test_moderate_anchors_and_merge_keys_still_load_with_line_numbers(tmp_path: Path) -> None:
    with DemoEnvironment(tmp_path / "demo", customers=3) as env:
        text = env.config_path.read_text()
        # share a retry block between the top level and every system through an anchor (a legitimate use)
        text = text.replace("systems:", "x-shared: &retry {max_attempts: 3}\nretry: *retry\nsystems:", 1)
        path = env.config_path.parent / "anchored.yaml"
        path.write_text(text.replace("x-shared: &retry", "retry: &retry", 1).replace("\nretry: *retry", "", 1))
        cfg = load_config(path)
        assert cfg.retry.max_attempts == 3
        bad = env.config_path.parent / "bad.yaml"
        bad.write_text(path.read_text().replace("max_attempts: 3", "max_attempts: many"))
        with pytest.raises(ConfigurationError) as info:
            load_config(bad)
        assert f"{bad}:" in str(info.value) and "retry.max_attempts" in str(info.value)


@pytest.mark.parametrize("argv", [["config", "check"], ["run", "core_to_zoho"], ["ledger", "verify"],
                                  ["scheduler", "status"]])
def test_cli_commands_refuse_a_bombed_config_in_one_line(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / "crmbridge.yaml"
    path.write_text(BOMB)
    env = {**os.environ, "CRMBRIDGE_CONFIG": str(path)}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "crmbridge", *argv], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert time.monotonic() - start < 30
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "alias bomb" in out.stderr and str(path) in out.stderr, out.stderr[-2000:]
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
