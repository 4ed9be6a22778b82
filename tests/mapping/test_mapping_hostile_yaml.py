"""Hostile YAML in a mapping file (issue 14 item 4): the review's 342-byte alias bomb drove ``mapping validate`` to
3.7 GB in 40 s; deep nesting gave "internal error: RecursionError". Each is now a MappingError naming the file and
line, found while composing (milliseconds, no expansion); a mapping using an anchor moderately still loads; and a
configuration whose job points at a bombed mapping is refused, not expanded by the header check."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crmbridge.adapters.registry import target_profile
from crmbridge.canonical.mapping import check_mapping_file, load_mapping
from crmbridge.core.errors import ConfigurationError, MappingError

REPO = Path(__file__).resolve().parents[2]
BOMB = "".join(f"{c}: &{c} [{','.join([f'*{p}'] * 9) if p else ','.join(['lol'] * 9)}]\n"
               for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True))


@pytest.mark.parametrize(("text", "line", "words"), [
    (BOMB, 5, "alias bomb"),
    ("system: zoho\nsteps: " + "[" * 3000 + "]" * 3000, 2, "nesting deeper than 64"),
    ("system: zoho\nsteps: &s [{in: *s}]\n", 2, "recursive"),
    ("steps:\n" + "".join(f"- &a{i} {{x: 1}}\n" for i in range(60)) + "more: [" + ", ".join(
        f"*a{i % 60}" for i in range(150)) + "]\n", 62, "more than 100 aliases")],
    ids=["alias-bomb", "deep", "recursive", "many-aliases"])
def test_hostile_mapping_yaml_is_a_located_mapping_error(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(MappingError) as info:
        load_mapping(path, profile=target_profile)
    assert time.monotonic() - start < 2.0
    assert f"{path}:{line}:" in str(info.value) and words in str(info.value), str(info.value)


def test_a_mapping_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    m, problems = check_mapping_file(path, profile=target_profile)
    assert m is None and any("larger than 1048576 bytes" in p.message for p in problems)


def test_a_shipped_mapping_with_an_anchor_still_loads_and_reports_lines(tmp_path: Path) -> None:
    src = (REPO / "mappings" / "zoho_contacts.yaml").read_text()
    path = tmp_path / "zoho_contacts.yaml"
    path.write_text("x-note: &note shared\n" + src + "\ndescription_copy: *note\n")
    m, problems = check_mapping_file(path, profile=target_profile)
    assert any("description_copy" in p.path for p in problems)   # an unknown key, located, not a refusal
    assert not any("alias" in p.message for p in problems)
    assert load_mapping(REPO / "mappings" / "zoho_contacts.yaml", profile=target_profile) is not None


def test_mapping_validate_cli_refuses_the_bomb_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "crmbridge", "mapping", "validate", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert out.returncode == 2 and "alias bomb" in out.stdout + out.stderr, (out.stdout, out.stderr[-1500:])


def test_a_config_whose_job_maps_through_a_bombed_file_is_refused(tmp_path: Path) -> None:
    from crmbridge.config import load_config
    from crmbridge.demo import DemoEnvironment

    with DemoEnvironment(tmp_path / "demo", customers=3) as env:
        text = env.config_path.read_text()
        bomb = env.config_path.parent / "bomb_mapping.yaml"
        bomb.write_text(BOMB)
        ref = "mappings/zoho_contacts.yaml" if "mappings/zoho_contacts.yaml" in text else "zoho_contacts.yaml"
        assert ref in text
        cfg_path = env.config_path.parent / "bombed.yaml"
        cfg_path.write_text(text.replace(ref, str(bomb)))
        start = time.monotonic()
        try:
            load_config(cfg_path)
        except ConfigurationError:
            pass
        assert time.monotonic() - start < 5.0
        shutil.rmtree(tmp_path / "demo", ignore_errors=True)
