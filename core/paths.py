"""The one path language of crmbridge: mapping paths, vendor paths in configuration and adapter clients.

``a.b[0].c[key=VALUE,k2=V2]`` walks nested dicts and lists (a ``[key=VALUE]`` selector picks the first list element
whose ``key`` equals ``VALUE``); ``["DOTTED.NAME"]`` quotes a name holding dots. :func:`parse_path` reports where a
path is malformed; :func:`path_get` answers ``None`` for any missing step; :func:`path_set` creates what is missing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = [
    "Path", "PathIndex", "PathKey", "PathOp", "PathSelect", "cond_matches", "parse_path", "path_get", "path_locations",
    "path_set", "plain_value", "try_path",
]




@dataclass(frozen=True)
class PathKey:
    name: str


@dataclass(frozen=True)
class PathIndex:
    index: int


@dataclass(frozen=True)
class PathSelect:
    conds: tuple[tuple[str, str], ...]


PathOp = PathKey | PathIndex | PathSelect


@dataclass(frozen=True)
class Path:
    """A parsed canonical or vendor path."""

    text: str
    ops: tuple[PathOp, ...]

    @property
    def head(self) -> str:
        """The first key (the vendor field name a read must request)."""
        first = self.ops[0]
        return first.name if isinstance(first, PathKey) else self.text

    def template(self) -> str:
        """``identifiers[scheme=CN_RIC].value`` → ``identifiers[].value`` (classification paths)."""
        out = ""
        for op in self.ops:
            if isinstance(op, PathKey):
                out += ("." if out else "") + op.name
            else:
                out += "[]"
        return out

    def parent(self) -> Path:
        """The path one step up (``Custpersonal.MOBNUM`` → ``Custpersonal``)."""
        return Path(self.text.rsplit(".", 1)[0] if "." in self.text else self.text, self.ops[:-1])

    def selector_value(self, key: str) -> str | None:
        for op in self.ops:
            if isinstance(op, PathSelect):
                for k, v in op.conds:
                    if k == key:
                        return v
        return None

    def __str__(self) -> str:
        return self.text


_NAME = re.compile(r'"((?:[^"\\]|\\.)+)"|([^.\[\]"=,\s][^.\[\]"=,]*)')


def parse_path(text: str) -> Path:
    """Parse ``a.b[0].c[key=VALUE,k2=V2]`` (and ``["DOTTED.NAME"]``) into a :class:`Path`.

    Raises:
        ValueError: with a message saying where the path is malformed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty path")
    s = text.strip()
    ops: list[PathOp] = []
    i = 0
    expect_name = True
    while i < len(s):
        ch = s[i]
        if expect_name:
            if s.startswith('["', i):
                j = s.find('"]', i + 2)
                if j < 0:
                    raise ValueError(f"unterminated [\"…\"] at position {i} in {text!r}")
                ops.append(PathKey(s[i + 2:j]))
                i = j + 2
            else:
                m = re.compile(r"[^.\[\]]+").match(s, i)
                if not m:
                    raise ValueError(f"a name is expected at position {i} in {text!r}")
                ops.append(PathKey(m.group(0).strip()))
                i = m.end()
            expect_name = False
            continue
        if ch == ".":
            expect_name = True
            i += 1
            continue
        if ch == "[":
            j = s.find("]", i)
            if j < 0:
                raise ValueError(f"unterminated [ at position {i} in {text!r}")
            inner = s[i + 1:j].strip()
            if re.fullmatch(r"\d+", inner):
                ops.append(PathIndex(int(inner)))
            else:
                conds = []
                for part in inner.split(","):
                    k, eq, v = part.partition("=")
                    if not eq or not k.strip() or not v.strip():
                        raise ValueError(f"a selector is [index] or [key=VALUE] (got [{inner}]) in {text!r}")
                    conds.append((k.strip(), v.strip()))
                ops.append(PathSelect(tuple(conds)))
            i = j + 1
            continue
        raise ValueError(f"unexpected {ch!r} at position {i} in {text!r}")
    if expect_name:
        raise ValueError(f"path ends with '.' in {text!r}")
    return Path(text=s, ops=tuple(ops))


def try_path(text: str) -> Path | None:
    try:
        return parse_path(text)
    except ValueError:
        return None  # reported, located, by Mapping._compile


def plain_value(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    return v


def cond_matches(item: Any, conds: tuple[tuple[str, str], ...]) -> bool:
    if not isinstance(item, AbcMapping):
        return False
    for k, v in conds:
        have = plain_value(item.get(k))
        if isinstance(have, bool):
            have = "true" if have else "false"
        if have is None or str(have) != v:
            return False
    return True


def path_get(obj: Any, path: Path) -> Any:
    """The value at ``path`` in nested dicts/lists, or ``None`` when any step is missing."""
    cur = obj
    for op in path.ops:
        if cur is None:
            return None
        if isinstance(op, PathKey):
            if isinstance(cur, AbcMapping):
                cur = cur.get(op.name)
            elif isinstance(cur, BaseModel):
                cur = getattr(cur, op.name, None)
            else:
                return None
        elif isinstance(op, PathIndex):
            if not isinstance(cur, list | tuple) or op.index >= len(cur):
                return None
            cur = cur[op.index]
        else:
            if not isinstance(cur, list | tuple):
                return None
            cur = next((x for x in cur if cond_matches(x, op.conds)), None)
    return cur


def _cond_value(v: str) -> Any:
    return {"true": True, "false": False}.get(v, v)


def path_set(obj: dict[str, Any], path: Path, value: Any) -> tuple[str | int, ...]:
    """Set ``value`` at ``path``, creating dicts, lists and selected elements. Returns the concrete location."""
    loc: list[str | int] = []
    cur: Any = obj
    ops = path.ops
    for n, op in enumerate(ops):
        last = n == len(ops) - 1
        nxt = None if last else ops[n + 1]
        fresh: Any = dict if isinstance(nxt, PathKey) else list
        if isinstance(op, PathKey):
            if last:
                cur[op.name] = value
            else:
                if not isinstance(cur.get(op.name), dict | list):
                    cur[op.name] = fresh()
                cur = cur[op.name]
            loc.append(op.name)
        elif isinstance(op, PathIndex):
            while len(cur) <= op.index:
                cur.append(None)
            if last:
                cur[op.index] = value
            elif not isinstance(cur[op.index], dict | list):
                cur[op.index] = fresh()
            loc.append(op.index)
            cur = cur[op.index]
        else:
            idx = next((i for i, x in enumerate(cur) if cond_matches(x, op.conds)), None)
            if idx is None:
                cur.append({k: _cond_value(v) for k, v in op.conds})
                idx = len(cur) - 1
            if last:
                cur[idx] = value
            loc.append(idx)
            cur = cur[idx]
    return tuple(loc)


def path_locations(obj: Any, path: Path) -> list[tuple[str | int, ...]]:
    """Every concrete location in ``obj`` that ``path`` reaches (a selector may match several list elements)."""
    found: list[tuple[tuple[str | int, ...], Any]] = [((), obj)]
    for op in path.ops:
        nxt: list[tuple[tuple[str | int, ...], Any]] = []
        for loc, cur in found:
            if isinstance(op, PathKey) and isinstance(cur, dict) and op.name in cur:
                nxt.append(((*loc, op.name), cur[op.name]))
            elif isinstance(op, PathIndex) and isinstance(cur, list) and op.index < len(cur):
                nxt.append(((*loc, op.index), cur[op.index]))
            elif isinstance(op, PathSelect) and isinstance(cur, list):
                nxt.extend(((*loc, i), x) for i, x in enumerate(cur) if cond_matches(x, op.conds))
        found = nxt
    return [loc for loc, _ in found]
