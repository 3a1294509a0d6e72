"""Bar charts as plain geometry, drawn as inline SVG by dashboard/templates/dashboard/_bar_chart.html (no JS, no CDN).

Amounts stay exact everywhere else; floats appear here only as pixel coordinates.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PALETTE = ["#5b3df5", "#0f9d8a", "#e0822a", "#d03c6b", "#3c8ad0", "#7a8a1f", "#8e44ad", "#5d6475"]

WIDTH = 720
HEIGHT = 260
LEFT = 64
RIGHT = 12
TOP = 12
BOTTOM = 36

Number = int | Decimal


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Number]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    ticks: list[Tick]
    xlabels: list[XLabel]
    legend: list[tuple[str, str]]
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def center_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2


def nice_step(maximum: float, *, ticks: int = 4) -> float:
    """A 1-2-5 step so that `ticks` steps cover `maximum`."""
    if maximum <= 0:
        return 1.0
    raw = maximum / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def _tick_label(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:,.0f}"
    places = min(max(0, -math.floor(math.log10(step))) + 1, 9)
    return f"{value:,.{places}f}".rstrip("0").rstrip(".")


def bar_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    stacked: bool = False,
    fmt: Callable[[Any], str] = str,
    label_every: int = 1,
) -> Chart:
    """One group of bars per label: stacked (a total per label) or side by side (one bar per series)."""
    colors = {s.name: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    count = max(len(labels), 1)
    totals = [
        sum((s.values[i] for s in series), Decimal(0)) if stacked else max((s.values[i] for s in series), default=0)
        for i in range(len(labels))
    ]
    top_value = float(max(totals, default=0))
    step = nice_step(top_value)
    scale_max = step * max(1, math.ceil(top_value / step)) if top_value > 0 else step * 4
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - RIGHT - LEFT) / count
    gap = min(slot * 0.2, 8)

    def y_of(value: float) -> float:
        return TOP + plot_height * (1 - value / scale_max)

    bars = []
    for i, label in enumerate(labels):
        x0 = LEFT + i * slot + gap / 2
        width = slot - gap
        base = 0.0
        for index, s in enumerate(series):
            value = s.values[i]
            if not value:
                continue
            if stacked:
                top, bottom = y_of(base + float(value)), y_of(base)
                base += float(value)
                x, w = x0, width
            else:
                w = width / len(series)
                x = x0 + index * w
                top, bottom = y_of(float(value)), y_of(0)
            bars.append(
                Bar(
                    x=round(x, 2),
                    y=round(top, 2),
                    width=round(max(w, 1), 2),
                    height=round(max(bottom - top, 0.5), 2),
                    color=colors[s.name],
                    title=f"{label} · {s.name}: {fmt(value)}",
                )
            )
    ticks = []
    tick = 0.0
    while tick <= scale_max + step / 2:
        ticks.append(Tick(y=round(y_of(tick), 2), label=_tick_label(tick, step)))
        tick += step
    xlabels = [
        XLabel(x=round(LEFT + i * slot + slot / 2, 2), label=label)
        for i, label in enumerate(labels)
        if i % max(label_every, 1) == 0
    ]
    return Chart(
        title=title,
        bars=bars,
        ticks=ticks,
        xlabels=xlabels,
        legend=list(colors.items()),
        empty=not bars,
    )
