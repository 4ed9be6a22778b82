"""Reading a mapping file: YAML with line numbers (core/safeyaml.py) and pydantic errors located in the file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crmbridge.canonical.mapping.problems import MappingProblem
from crmbridge.canonical.mapping.steps import STEP_TYPES
from crmbridge.core.safeyaml import YamlProblem, load_with_lines


def keypath(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _yaml_problem(file: str, pr: YamlProblem) -> MappingProblem:
    if pr.kind == "syntax":
        what = f"{pr.message} ({pr.context})" if pr.message and pr.context else pr.message or pr.context
        return MappingProblem(file, pr.line, "", f"YAML syntax error: {what}")
    if pr.kind == "error":
        return MappingProblem(file, None, "", f"YAML error: {pr.message}")
    return MappingProblem(file, pr.line, keypath(pr.path), pr.message)


def _load_yaml(text: str, file: str) -> tuple[Any, dict[tuple[str | int, ...], int], list[MappingProblem]]:
    """The document, the line of each key path and its problems (bounded: core/safeyaml.py)."""
    doc = load_with_lines(text)
    return doc.data, doc.lines, [_yaml_problem(file, pr) for pr in doc.problems]


def _align(data: Any, loc: Sequence[Any]) -> tuple[str | int, ...]:
    """Keep the parts of a pydantic error location that navigate ``data`` (drop union tags and type names)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and part == loc[-1]:
            out.append(part)  # a missing or unknown key: name it
            cur = None
    return tuple(out)


def line_for(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    p = path
    while True:
        if p in lines:
            return lines[p]
        if not p:
            return None
        p = p[:-1]


def _friendly(err: Any, data: Any, aligned: tuple[str | int, ...]) -> str:
    typ = err["type"]
    if typ == "extra_forbidden":
        return f"unknown key {aligned[-1]!r}" if aligned else "unknown key"
    if typ == "missing":
        return f"required key {err['loc'][-1]!r} is missing"
    if typ == "union_tag_invalid":
        return f"unknown step type {err.get('input', {}).get('type')!r}; known: {', '.join(sorted(STEP_TYPES))}"
    if typ == "union_tag_not_found":
        return f"a step needs 'type' (one of: {', '.join(sorted(STEP_TYPES))})"
    return str(err["msg"])
