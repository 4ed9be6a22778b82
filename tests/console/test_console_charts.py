"""The dashboard's charts: SVG drawn on the server (console/charts.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("markupsafe")

from crmbridge.console.charts import Series, bar_chart, nice_ceiling  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (23, 25), (26, 50),
                                            (980, 1000), (1001, 2000), (0.3, 0.5)])
def test_the_axis_ends_at_a_number_a_reader_can_divide(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_grouped_bars_are_as_tall_as_their_values_and_say_them() -> None:
    svg = bar_chart("records", ["#1", "#2"], [Series("read", [10, 5]), Series("refused", [2, 0])])
    bars = _bars(svg)
    assert len(bars) == 4
    heights = {b.find(f"{SVG}title").text: float(b.get("height")) for b in bars}   # type: ignore[union-attr]
    assert heights["#1 · read: 10"] == pytest.approx(2 * heights["#2 · read: 5"])
    assert heights["#1 · refused: 2"] == pytest.approx(heights["#1 · read: 10"] / 5)
    assert heights["#2 · refused: 0"] == 0
    # side by side: the two bars of a group do not overlap
    xs = sorted(float(b.get("x")) for b in bars[:2])   # type: ignore[arg-type]
    assert xs[1] >= xs[0] + float(bars[0].get("width")) - 0.05   # type: ignore[arg-type]


def test_stacked_bars_sit_on_each_other() -> None:
    svg = bar_chart("calls", ["#1"], [Series("corebank", [3]), Series("zoho_cn", [1])], stacked=True)
    low, high = _bars(svg)
    assert float(low.get("x")) == float(high.get("x"))   # type: ignore[arg-type]
    # the second series starts where the first ends
    assert float(high.get("y")) + float(high.get("height")) == pytest.approx(float(low.get("y")))  # type: ignore[arg-type]
    # the axis covers the stack (4), not the tallest series (3): 5 is the nice ceiling
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "5" in texts


def test_text_is_escaped_and_nothing_runs() -> None:
    svg = bar_chart('<script>alert("x")</script>', ["<b>"], [Series("a&b", [1])])
    assert "<script>" not in svg and "<b>" not in svg
    root = ET.fromstring(svg)      # still well-formed
    assert root.get("aria-label") == '<script>alert("x")</script>'
    assert not list(root.iter(f"{SVG}script"))


def test_an_empty_chart_says_so() -> None:
    svg = bar_chart("records", [], [Series("read", [])])
    assert "no runs yet" in svg and not _bars(svg)


def test_long_series_show_a_readable_number_of_labels() -> None:
    labels = [f"#{i}" for i in range(60)]
    svg = bar_chart("records", labels, [Series("read", list(range(60)))])
    shown = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if (t.text or "").startswith("#")]
    assert 6 <= len(shown) <= 13 and shown[0] == "#0"
    assert len(_bars(svg)) == 60
