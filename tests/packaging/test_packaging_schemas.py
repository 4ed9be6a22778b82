"""The published JSON Schemas are standard JSON Schema 2020-12 (no OpenAPI-only keywords) and the shipped YAML
files name them for editors (``# yaml-language-server: $schema=...``), and validate against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = {"config": REPO / "config" / "schema.json", "mapping": REPO / "mappings" / "mapping.schema.json"}
#: keywords of OpenAPI's schema object that JSON Schema 2020-12 does not have
OPENAPI_ONLY = {"nullable", "discriminator", "example", "xml", "externalDocs"}
#: keys whose value is a map of names to schemas (the names are data, not keywords)
NAME_MAPS = {"properties", "$defs", "patternProperties", "dependentSchemas"}


def _keywords(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in NAME_MAPS and isinstance(value, dict):
                for sub in value.values():
                    _keywords(sub, found)
            else:
                found.add(key)
                if key not in ("default", "const", "enum", "examples"):   # those hold values, not schemas
                    _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_is_standard_json_schema(name: str) -> None:
    schema = json.loads(SCHEMAS[name].read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    used = _keywords(schema, set())
    assert not used & OPENAPI_ONLY, f"OpenAPI-only keywords in {SCHEMAS[name].name}: {sorted(used & OPENAPI_ONLY)}"
    assert not {k for k in used if k.startswith("x-")}


def test_config_example_names_its_schema_and_validates() -> None:
    path = REPO / "config" / "crmbridge.yaml"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schema.json"
    assert (path.parent / first.split("$schema=", 1)[1]).resolve() == SCHEMAS["config"]
    schema = json.loads(SCHEMAS["config"].read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_every_shipped_mapping_names_its_schema_and_validates() -> None:
    schema = json.loads(SCHEMAS["mapping"].read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(p for p in (REPO / "mappings").glob("*.yaml") if p.name != "rules.yaml")   # rules: own schema
    assert files
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=./mapping.schema.json", path.name
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert not errors, (path.name, [f"{list(e.absolute_path)}: {e.message}" for e in errors])
