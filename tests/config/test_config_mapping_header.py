"""The mapping-header check of a configuration (``system:``/``object:`` of each job's mapping file) decides an
agreeing header from libyaml's event stream (issue 19: start-up) and reads every other file with the bounded
loader, as before. Each case is decided both ways and must come out as the full reading says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from crmbridge.config.model import PACKAGE_ROOT, _header_agrees, _mapping_mismatch, _mismatch_message
from crmbridge.core.safeyaml import BoundedLoader


def _full_reading(text: str, adapter: str, obj: str) -> str | None:
    """What the check said before the fast path: the whole file through the bounded loader."""
    loader = BoundedLoader(text)
    try:
        head: Any = loader.get_single_data()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    if not isinstance(head, dict):
        return None
    return _mismatch_message(head.get("system"), head.get("object"), adapter, obj)


CASES = {
    "agrees": "system: zoho\nobject: Contacts\nfields: {a: 1}\n",
    "adapter spelt with a dash": "system: zoho-crm\nobject: Contacts\n",
    "other adapter": "system: fxiaoke\nobject: Contacts\n",
    "other object": "system: zoho\nobject: Leads\n",
    "a later duplicate wins": "system: zoho\nobject: Contacts\nsystem: fxiaoke\n",
    "merge key": "d: &d {system: fxiaoke}\n<<: *d\nobject: Contacts\n",
    "not a string": "system: 123\nobject: Contacts\n",
    "explicit str tag": "system: !!str 123\nobject: Contacts\n",
    "quoted key and value": "'system': \"fxiaoke\"\nobject: Contacts\n",
    "alias as the value": "x: &s fxiaoke\nsystem: *s\nobject: Contacts\n",
    "list as the value": "system: [fxiaoke]\nobject: Contacts\n",
    "broken after the header": "system: fxiaoke\nobject: Contacts\nx: [\n",
    "nested keys do not count": "a: {system: fxiaoke, object: X}\nsystem: zoho\nobject: Contacts\n",
    "root is a list": "- system: fxiaoke\n",
    "two documents": "system: fxiaoke\n---\nsystem: zoho\n",
    "no header": "fields: {a: 1}\n",
    "billion laughs after the header": "system: fxiaoke\nobject: Contacts\n"
    + "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_check_says_what_the_full_reading_says(tmp_path: Path, name: str) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(CASES[name], encoding="utf-8")
    assert _mapping_mismatch(f, "zoho", "Contacts") == _full_reading(CASES[name], "zoho", "Contacts")


def test_the_fast_path_decides_only_agreement() -> None:
    assert _header_agrees(CASES["agrees"], "zoho", "Contacts")
    for name in ("other adapter", "other object", "a later duplicate wins", "merge key", "alias as the value"):
        assert not _header_agrees(CASES[name], "zoho", "Contacts"), name


def test_every_shipped_mapping_is_judged_as_before() -> None:
    files = sorted((PACKAGE_ROOT / "mappings").glob("*.yaml"))
    assert files
    for f in files:
        text = f.read_text(encoding="utf-8")
        head = yaml.safe_load(text)
        for adapter, obj in ((head.get("system"), head.get("object")), ("zoho", "Contacts"), ("fxiaoke", "Nope")):
            adapter = str(adapter).replace("-", "_")
            assert _mapping_mismatch(f, adapter, str(obj)) == _full_reading(text, adapter, str(obj)), f.name
