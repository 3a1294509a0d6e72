"""The server-drawn bar chart: bars stay inside the plot, heights follow the values, the axis covers the tallest."""

from decimal import Decimal

from dashboard.charts import Series, bar_chart


def _heights(chart, color):
    return [bar.height for bar in chart.bars if bar.color == color]


def test_stacked_bars_are_proportional_and_inside_the_plot():
    chart = bar_chart(
        title="t",
        labels=["a", "b", "c"],
        series=[Series("x", [10, 0, 30]), Series("y", [10, 5, 0])],
        stacked=True,
    )
    colors = dict(chart.legend)
    assert len(chart.bars) == 4, "zero values draw nothing"
    x, y = _heights(chart, colors["x"]), _heights(chart, colors["y"])
    assert abs(x[1] - 3 * x[0]) < 0.05 and abs(y[0] - x[0]) < 0.05 and abs(y[1] - x[0] / 2) < 0.05
    for bar in chart.bars:
        assert chart.left <= bar.x and bar.x + bar.width <= chart.right
        assert chart.top <= bar.y and bar.y + bar.height <= chart.bottom + 0.01
    top_tick = max(float(t.label.replace(",", "")) for t in chart.ticks)
    assert top_tick >= 30
    stacked_a = [bar for bar in chart.bars if bar.title.startswith("a ·")]
    assert abs(stacked_a[0].y - (stacked_a[1].y + stacked_a[1].height)) < 0.05, "y sits on top of x"


def test_grouped_bars_sit_side_by_side_and_decimals_are_labelled():
    chart = bar_chart(
        title="t",
        labels=["d1"],
        series=[Series("revenue", [Decimal("0.0021")]), Series("payouts", [Decimal("0.00147")])],
        fmt=lambda v: f"${v}",
    )
    first, second = chart.bars
    assert first.x + first.width <= second.x + 0.01
    assert first.title == "d1 · revenue: $0.0021"
    assert max(float(t.label) for t in chart.ticks) >= 0.0021


def test_an_empty_chart_says_so():
    chart = bar_chart(title="t", labels=["a", "b"], series=[Series("x", [0, 0])])
    assert chart.empty and chart.bars == []
