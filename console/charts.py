"""Charts drawn on the server as inline SVG: no JavaScript, no chart library, nothing fetched by the browser.

One kind is enough for the dashboard: a bar chart over a few series (records and refusals per run, API calls per
system per run), grouped side by side or stacked::

    svg = bar_chart("Records per run", ["#1", "#2"], [Series("read", [30, 29]), Series("failed", [3, 0])])

Colours are SVG presentation attributes (the console's Content-Security-Policy allows no inline style); every text
is escaped; each bar carries a ``<title>`` (the browser's tooltip) with its exact value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = ["PALETTE", "Series", "bar_chart", "nice_ceiling"]

#: series colours in order (blue, orange, green, red, purple, grey): distinguishable for the common colour blindness
PALETTE = ("#0b5cad", "#e8821a", "#2e9e4f", "#c62828", "#7b4bb7", "#6b7785")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str | None = None


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above ``value`` (an axis maximum a reader can divide); 1 for 0."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10 ** exp
        if top >= value:
            return float(top)
    return float(10 ** (exp + 1))   # pragma: no cover (the loop ends at 10)


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, stacked: bool = False,
              width: int = 540, height: int = 200, max_slot: float = 44.0) -> Markup:
    """An SVG bar chart: one group (or stack) of bars per label, one bar per series.

    Args:
        title: the chart's accessible name (``<title>`` and ``aria-label``), also drawn at the top left.
        labels: the x-axis labels (run ids, dates); long lists show every n-th label only.
        series: the values, one per label each (a missing value counts as 0).
        stacked: stack the series in one bar per label instead of side by side.
        max_slot: the widest a label's group may be (a few runs make narrow bars on the left, not slabs).
    """
    left, right, top, bottom = 40, 8, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)
    vals = [[float(s.values[i]) if i < len(s.values) and s.values[i] is not None else 0.0 for i in range(n)]
            for s in series]
    peak = max((sum(col) for col in zip(*vals, strict=True)), default=0.0) if stacked and vals else \
        max((v for row in vals for v in row), default=0.0)
    ymax = nice_ceiling(peak)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>",
           f'<text x="{left}" y="14" font-size="12" font-weight="600" fill="#1d2733">{escape(title)}</text>']
    # axis and grid: 0, half, max
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h - frac * plot_h
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#d9e0e7" '
                   f'stroke-width="1"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5d6b7a">'
                   f"{_num(ymax * frac)}</text>")
    if n == 0 or not series:
        out.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" font-size="12" '
                   f'text-anchor="middle" fill="#5d6b7a">no runs yet</text>')
    else:
        slot = min(plot_w / n, float(max_slot))
        gap = min(6.0, slot * 0.2)
        bar_w = (slot - gap) if stacked else (slot - gap) / len(series)
        every = max(1, math.ceil(n / 12))   # at most ~12 labels under the axis
        for i, label in enumerate(labels):
            x0 = left + i * slot + gap / 2
            base = 0.0
            for k, s in enumerate(series):
                v = vals[k][i]
                h = v / ymax * plot_h
                colour = s.colour or PALETTE[k % len(PALETTE)]
                x = x0 if stacked else x0 + k * bar_w
                y = top + plot_h - (base + h if stacked else h)
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w, 1.0):.1f}" height="{h:.1f}" '
                           f'fill="{escape(colour)}"><title>{escape(str(label))} · {escape(s.name)}: {_num(v)}'
                           f"</title></rect>")
                if stacked:
                    base += h
            if i % every == 0:
                cx = left + i * slot + slot / 2
                out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" '
                           f'fill="#5d6b7a">{escape(str(label))}</text>')
    # legend, bottom right to left
    x = left
    for k, s in enumerate(series):
        colour = s.colour or PALETTE[k % len(PALETTE)]
        y = height - 8
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{escape(colour)}"/>')
        out.append(f'<text x="{x + 14}" y="{y}" font-size="11" fill="#1d2733">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    out.append("</svg>")
    return Markup("".join(out))
