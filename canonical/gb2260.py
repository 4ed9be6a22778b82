"""GB/T 2260 administrative-division codes, current and historical, for the resident-ID area check.

A resident ID number (GB 11643) starts with the 6-digit GB/T 2260 code of the division that issued it, *as it was in
the year of issue*: the number never changes when the county is later renamed, merged or abolished. So the check is
"was this code ever a GB/T 2260 division", not "is it one today". ``000000``, ``990101`` or ``999999`` never were.

Data, and where it comes from
-----------------------------
``gb2260_areas.tsv`` (next to this module, shipped as package data) is **derived, not hand-written**: it is generated
by this module from python-stdnum's ``stdnum/cn/loc.dat``. python-stdnum (LGPL-2.1, maintained by Arthur de Jong)
builds that file from the Chinese Wikipedia lists 中华人民共和国行政区划代码 (1区…8区), which record every change of
GB/T 2260 since the 1980 edition with the years a code was in use (``[1983-]德安县``, ``[-2010]崇文区``). The header of
the TSV records the python-stdnum version it was made from. python-stdnum 2.2 holds 6,885 codes: 3,514 still in use
and 3,371 historical only. Older python-stdnum releases (1.x) carry a 2002-2014 county-only table, which is why the
derived table is shipped instead of relying on whatever version is installed.

At run time the shipped table is **joined** with the installed python-stdnum's ``loc.dat`` when that file is readable,
so upgrading python-stdnum adds newly created divisions without a crmbridge release; a code is never removed.

Regenerate the shipped table after upgrading python-stdnum, and commit it::

    .venv/bin/python -m crmbridge.canonical.gb2260 > canonical/gb2260_areas.tsv

Columns: ``code``, ``since`` (first year in use, empty = in the 1980 edition or earlier), ``until`` (last year in
use, empty = current), ``name`` (the latest name).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["AreaCode", "area_code", "area_codes", "is_area_code", "parse_loc_dat"]

_TABLE = "gb2260_areas.tsv"
_PROVINCE = re.compile(r'^(\d{2}) province="')
_COUNTY = re.compile(r'^\s+(\d{4}) county="([^"]*)"')
_FLAT = re.compile(r'^(\d{6}) county="([^"]*)"')       # python-stdnum 1.x layout: one 6-digit code per line
_PERIOD = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


@dataclass(frozen=True, slots=True)
class AreaCode:
    """One GB/T 2260 code and the years it was in use (``None``: open-ended)."""

    code: str
    since: int | None
    until: int | None
    name: str

    @property
    def current(self) -> bool:
        """Still a division today."""
        return self.until is None


def _periods(value: str) -> AreaCode:
    """``[-1991]东郊区,[1992-]东丽区`` → the union of the periods (one code, several names over time)."""
    since: list[int | None] = []
    until: list[int | None] = []
    name = ""
    for part in value.split(","):
        m = _PERIOD.match(part)
        if m:
            since.append(int(m[1]) if m[1] else None)
            until.append(int(m[2]) if m[2] else None)
            name = m[3]
        else:
            since.append(None)
            until.append(None)
            name = part
    return AreaCode("", None if None in since else min(s for s in since if s is not None),
                    None if None in until else max(u for u in until if u is not None), name)


def parse_loc_dat(lines: Iterable[str]) -> Iterator[AreaCode]:
    """Codes of a python-stdnum ``cn/loc.dat`` (2.x nested layout, or the flat 1.x layout)."""
    province: str | None = None
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        if m := _PROVINCE.match(line):
            province = m[1]
            continue
        if (m := _COUNTY.match(line)) and province is not None:
            code, value = province + m[1], m[2]
        elif m := _FLAT.match(line):
            code, value = m[1], m[2]
        else:
            continue
        entry = _periods(value)
        yield AreaCode(code, entry.since, entry.until, entry.name)


def _read_table() -> dict[str, AreaCode]:
    out: dict[str, AreaCode] = {}
    text = resources.files("crmbridge.canonical").joinpath(_TABLE).read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("code\t"):
            continue
        code, since, until, name = line.split("\t")
        out[code] = AreaCode(code, int(since) if since else None, int(until) if until else None, name)
    return out


def _read_stdnum() -> dict[str, AreaCode]:
    try:
        import stdnum

        path = resources.files(stdnum).joinpath("cn", "loc.dat")
        text = path.read_text(encoding="utf-8")
    except (ImportError, OSError, UnicodeDecodeError):
        return {}
    return {a.code: a for a in parse_loc_dat(text.splitlines())}


def _merge(a: AreaCode, b: AreaCode) -> AreaCode:
    since = None if a.since is None or b.since is None else min(a.since, b.since)
    until = None if a.until is None or b.until is None else max(a.until, b.until)
    newer = b if (b.until or 9999) >= (a.until or 9999) else a   # the name of the code's latest use
    return AreaCode(a.code, since, until, newer.name)


@lru_cache(maxsize=1)
def area_codes() -> dict[str, AreaCode]:
    """Every code ever in GB/T 2260: the shipped table joined with the installed python-stdnum's (loaded once)."""
    table = _read_table()
    for code, entry in _read_stdnum().items():
        table[code] = _merge(table[code], entry) if code in table else entry
    return table


def area_code(code: str) -> AreaCode | None:
    """The entry of ``code`` (``None``: never a GB/T 2260 division)."""
    return area_codes().get(code)


def is_area_code(code: str) -> bool:
    """Whether ``code`` was ever a GB/T 2260 division (a retired code counts)."""
    return code in area_codes()


def _generate() -> Iterator[str]:
    import stdnum

    text = resources.files(stdnum).joinpath("cn", "loc.dat").read_text(encoding="utf-8")
    entries = sorted(parse_loc_dat(text.splitlines()), key=lambda a: a.code)
    current = sum(1 for a in entries if a.current)
    yield "# GB/T 2260 division codes, current and historical (crmbridge.canonical.gb2260; do not edit by hand)."
    yield f"# Generated from python-stdnum {stdnum.__version__} stdnum/cn/loc.dat (from the Chinese Wikipedia lists"
    yield "# 中华人民共和国行政区划代码); regenerate: python -m crmbridge.canonical.gb2260 > canonical/gb2260_areas.tsv"
    yield f"# {len(entries)} codes: {current} current, {len(entries) - current} historical only."
    yield "code\tsince\tuntil\tname"
    for a in entries:
        yield f"{a.code}\t{a.since or ''}\t{a.until or ''}\t{a.name}"


def main() -> int:
    """Print the derived table (see the module docstring)."""
    sys.stdout.write("\n".join(_generate()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
