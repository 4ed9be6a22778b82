"""The GB/T 2260 table behind the resident-ID area check: derived from python-stdnum, historical codes kept."""

from __future__ import annotations

from importlib import resources

import pytest
import stdnum

from crmbridge.canonical import gb2260
from crmbridge.canonical.gb2260 import AreaCode, area_code, area_codes, is_area_code, parse_loc_dat


def _shipped() -> str:
    return resources.files("crmbridge.canonical").joinpath("gb2260_areas.tsv").read_text(encoding="utf-8")


def test_table_holds_current_and_historical_codes() -> None:
    codes = area_codes()
    current = [a for a in codes.values() if a.current]
    historical = [a for a in codes.values() if not a.current]
    assert len(codes) >= 6885 and len(current) >= 3500 and len(historical) >= 3300
    assert area_code("110103") == AreaCode("110103", None, 2010, "崇文区")
    assert area_code("120110") is not None and area_code("120110").current  # 东郊区 → 东丽区: same code, renamed
    for never in ("000000", "990101", "999999", "110199", "830000"):
        assert not is_area_code(never)


def test_shipped_table_is_the_generator_output_not_a_hand_list() -> None:
    header = _shipped().splitlines()[1]
    if f"python-stdnum {stdnum.__version__} " not in header:
        pytest.skip(f"table made from another python-stdnum ({header}); regenerate it after an upgrade")
    assert _shipped() == "\n".join(gb2260._generate()) + "\n"


def test_shipped_table_alone_covers_the_installed_python_stdnum() -> None:
    # the run-time join with python-stdnum only ever adds codes; this says when to regenerate the shipped table
    shipped = gb2260._read_table()
    missing = sorted(set(gb2260._read_stdnum()) - set(shipped))
    assert not missing, f"python-stdnum knows codes the shipped table lacks: regenerate it ({missing[:5]}...)"


def test_parser_reads_both_python_stdnum_layouts() -> None:
    nested = ['# comment', '11 province="北京市"', '  0103 county="[-2010]崇文区"',
              '  0221 county="[1982-1999]昌平县"', '12 province="天津市"',
              '  0110 county="[-1991]东郊区,[1992-]东丽区"', '  0118 county="[2015-]静海区"']
    assert list(parse_loc_dat(nested)) == [
        AreaCode("110103", None, 2010, "崇文区"), AreaCode("110221", 1982, 1999, "昌平县"),
        AreaCode("120110", None, None, "东丽区"), AreaCode("120118", 2015, None, "静海区")]
    flat = ['110101 county="东城区" prefecture="市辖区" province="北京市"']  # python-stdnum 1.x
    assert list(parse_loc_dat(flat)) == [AreaCode("110101", None, None, "东城区")]


def test_join_keeps_the_widest_period() -> None:
    a = AreaCode("110221", 1982, 1999, "昌平县")
    assert gb2260._merge(a, AreaCode("110221", 1980, None, "昌平区")) == AreaCode("110221", 1980, None, "昌平区")
    assert gb2260._merge(a, AreaCode("110221", 1990, 1995, "x")) == a
