"""The dashboard's SVG charts (api/dashboard/charts.py), read back with ElementTree: the exact
values in the DOM, bars proportional to them and stacked without gaps, round ticks covering the
largest, escaped labels, the empty chart, thinned x labels, the total."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from aiservice.api.dashboard.charts import (
    EMPTY_TEXT,
    MAX_X_LABELS,
    PALETTE,
    SVG_NAMESPACE,
    bar_chart,
    display_number,
    line_chart,
    nice_ticks,
    plain_number,
    tick_labels,
)

NS = {"svg": SVG_NAMESPACE}
DAYS = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
COSTS = {
    "gpt-4o-mini": [0.125, 0.0, 1.5, 0.3333333333],
    "smollm2-135m-instruct": [0.0025, 0.75, 0.0, 2.0],
    "text-embedding-3-small": [0.00001, 0.1, 0.2, 0.0],
}


def parsed(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))
    assert root.tag == f"{{{SVG_NAMESPACE}}}svg"
    return root


def segments(root: ET.Element, tag: str = "rect") -> list[ET.Element]:
    return [e for e in root.iterfind(f".//svg:{tag}", NS) if "data-value" in e.attrib]


def ticks(root: ET.Element) -> list[tuple[float, float]]:
    """(value, y) of each y tick, from its group's data-tick and its grid line."""
    found = []
    for group in root.iterfind(".//svg:g[@class='chart-tick']", NS):
        line = group.find("svg:line", NS)
        assert line is not None and line.get("y1") == line.get("y2")
        found.append((float(group.attrib["data-tick"]), float(line.attrib["y1"])))
    return found


def px_per_unit(root: ET.Element) -> float:
    (zero, y0), *_, (top, y_top) = ticks(root)
    assert zero == 0
    return (y0 - y_top) / top


def test_each_segment_carries_its_exact_value_category_and_series() -> None:
    root = parsed(bar_chart(DAYS, COSTS, title="Cost per day", unit="$"))
    drawn = {
        (e.attrib["data-category"], e.attrib["data-series"]): e.attrib["data-value"]
        for e in segments(root)
    }
    expected = {
        (day, name): values[i]
        for name, values in COSTS.items()
        for i, day in enumerate(DAYS)
        if values[i] != 0  # a zero segment is not drawn
    }
    assert set(drawn) == set(expected)
    for key, text in drawn.items():
        assert "e" not in text.lower() and float(text) == expected[key], (key, text)
    assert drawn[(DAYS[0], "text-embedding-3-small")] == "0.00001"  # no exponent
    for rect in segments(root):
        title = rect.find("svg:title", NS)
        assert title is not None and rect.attrib["data-series"] in (title.text or "")


def test_bar_heights_are_proportional_and_stack_without_gaps() -> None:
    root = parsed(bar_chart(DAYS, COSTS, title="Cost per day", unit="$"))
    scale = px_per_unit(root)
    (_, zero_y), *_ = ticks(root)
    for index, day in enumerate(DAYS):
        rects = [r for r in segments(root) if r.attrib["data-category"] == day]
        heights = [float(r.attrib["height"]) for r in rects]
        for rect, height in zip(rects, heights, strict=True):
            assert height == pytest.approx(float(rect.attrib["data-value"]) * scale, abs=0.01)
        stacked = math.fsum(values[index] for values in COSTS.values())
        assert abs(sum(heights) - stacked * scale) < 0.5, day
        # Each segment starts where the one below it ends, the first on the axis.
        base = zero_y
        for rect in rects:
            top = float(rect.attrib["y"])
            assert top + float(rect.attrib["height"]) == pytest.approx(base, abs=0.02)
            base = top
        assert len({r.attrib["x"] for r in rects}) == 1  # one bar


def test_ticks_are_increasing_round_numbers_covering_the_tallest_bar() -> None:
    root = parsed(bar_chart(DAYS, COSTS, title="Cost per day", unit="$"))
    values = [value for value, _ in ticks(root)]
    tallest = max(math.fsum(column) for column in zip(*COSTS.values(), strict=True))
    assert 4 <= len(values) <= 6 and values[0] == 0
    assert values[-1] >= tallest and values[-2] < tallest
    step = values[1]
    assert step == 0.5  # 2.3333: 0.5 is the smallest 1/2/2.5/5 step of at most 5 intervals
    assert all(b > a for a, b in itertools.pairwise(values))
    assert all(math.isclose(v, i * step) for i, v in enumerate(values))
    y = [position for _, position in ticks(root)]
    assert all(b < a for a, b in itertools.pairwise(y))  # upwards on the page
    labels = [t.text for t in root.iterfind(".//svg:g[@class='chart-tick']/svg:text", NS)]
    assert labels == ["$0", "$0.5", "$1.0", "$1.5", "$2.0", "$2.5"]


@pytest.mark.parametrize(
    "peak", [1e-7, 0.0123, 0.7, 1, 3, 6, 7, 10, 12.5, 26, 999, 1001, 48_213, 2.5e6, 7.7e9]
)
def test_nice_ticks_are_four_to_six_multiples_of_a_round_step(peak: float) -> None:
    values = nice_ticks(peak)
    step = values[1]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), (peak, values)
    assert 4 <= len(values) <= 6 and values[0] == 0
    assert values[-1] >= peak > values[-2]
    assert all(math.isclose(v, i * step, rel_tol=1e-12) for i, v in enumerate(values))
    assert len(set(tick_labels(values, "tokens"))) == len(values)  # told apart when printed


def test_tick_labels_are_compact_and_as_precise_as_the_step() -> None:
    assert tick_labels(nice_ticks(2.5e6), "tokens") == ["0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"]
    assert tick_labels(nice_ticks(0.7), "$") == ["$0", "$0.2", "$0.4", "$0.6", "$0.8"]
    assert tick_labels(nice_ticks(26)) == ["0", "10", "20", "30"]


def test_labels_with_markup_are_escaped_and_the_document_still_parses() -> None:
    hostile = '<script>alert("x")</script> & co'
    series = {hostile: [1.0, 2.0], "plain": [0.5, 0.5]}
    for chart in (bar_chart, line_chart):
        svg = chart(["<b>day</b>", "a&b"], series, title=f"Usage of {hostile}", unit="<u>")
        assert "<script>" not in svg and "<b>" not in svg and "<u>" not in svg
        root = parsed(svg)
        assert not list(root.iter("script")) and not list(root.iter(f"{{{SVG_NAMESPACE}}}script"))
        assert hostile in root.attrib["aria-label"] and root.attrib["role"] == "img"
        texts = {t.text for t in root.iter(f"{{{SVG_NAMESPACE}}}text")}
        assert f"Usage of {hostile}" in texts and "<u>" in texts  # the unit, as text
        assert {e.attrib["data-series"] for e in segments(root, _point(chart))} == set(series)
        assert {e.attrib["data-category"] for e in segments(root, _point(chart))} == {
            "<b>day</b>",
            "a&b",
        }


def _point(chart: object) -> str:
    return "rect" if chart is bar_chart else "circle"


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
@pytest.mark.parametrize(
    ("categories", "series"),
    [([], {}), ([], {"a": []}), (DAYS, {}), (DAYS, {"a": [0, 0, 0, 0], "b": [0.0] * 4})],
)
def test_no_usage_gives_a_small_chart_saying_so(chart, categories, series) -> None:
    root = parsed(chart(categories, series, title="Tokens", unit="tokens"))
    texts = {t.get("class"): t.text for t in root.iter(f"{{{SVG_NAMESPACE}}}text")}
    assert texts["chart-empty"] == EMPTY_TEXT
    assert root.find(".//svg:text[@class='chart-total']", NS).attrib["data-total"] == "0"
    assert not segments(root, "rect") and not segments(root, "circle")
    _, _, width, height = (float(n) for n in root.attrib["viewBox"].split())
    assert height < 120 and width == 720


def test_sixty_days_get_at_most_twelve_x_labels_that_never_overlap() -> None:
    days = [f"2026-{10 + i // 30}-{1 + i % 30:02d}" for i in range(60)]
    series = {"requests": [float(i % 7 + 1) for i in range(60)]}
    for chart in (bar_chart, line_chart):
        root = parsed(chart(days, series, title="Requests", width=720))
        labels = list(root.iterfind(".//svg:text[@class='chart-x-label']", NS))
        assert 2 <= len(labels) <= MAX_X_LABELS
        assert labels[0].text == days[0] and {t.text for t in labels} <= set(days)
        xs = [float(t.attrib["x"]) for t in labels]
        widest = max(len(t.text or "") for t in labels) * 7.0  # the chart's estimate
        assert all(b - a > widest for a, b in itertools.pairwise(xs))
        assert len(segments(root, _point(chart))) == 60


def test_a_narrow_chart_has_fewer_labels() -> None:
    days = [f"2026-12-{d:02d}" for d in range(1, 31)]
    wide = parsed(bar_chart(days, {"a": [1.0] * 30}, title="t", width=1200))
    narrow = parsed(bar_chart(days, {"a": [1.0] * 30}, title="t", width=360))
    count = [
        len(list(r.iterfind(".//svg:text[@class='chart-x-label']", NS))) for r in (wide, narrow)
    ]
    assert count[0] > count[1] >= 1


def test_the_total_is_the_sum_of_every_value() -> None:
    for chart in (bar_chart, line_chart):
        root = parsed(chart(DAYS, COSTS, title="Cost per day", unit="$"))
        total = root.find(".//svg:text[@class='chart-total']", NS)
        expected = math.fsum(v for values in COSTS.values() for v in values)
        assert float(total.attrib["data-total"]) == pytest.approx(expected, rel=1e-9)
        assert total.attrib["data-total"] == plain_number(expected)
        assert total.text == f"Total: {display_number(expected, '$')}" == "Total: $5.011"
        assert "$5.011" in root.attrib["aria-label"]
        assert sum(float(e.attrib["data-value"]) for e in segments(root, _point(chart))) == (
            pytest.approx(expected)
        )


def test_the_svg_scales_to_its_container() -> None:
    root = parsed(bar_chart(DAYS, COSTS, title="Cost per day", width=900, height=300))
    assert root.attrib["viewBox"] == "0 0 900 300" and root.attrib["width"] == "100%"
    assert "height" not in root.attrib  # the viewBox's ratio decides it


def test_many_series_grow_the_legend_and_reuse_the_palette() -> None:
    names = [f"user-{n}@example.com" for n in range(12)]
    series = {name: [1.0, 2.0] for name in names}
    root = parsed(bar_chart(["a", "b"], series, title="Per user", height=200))
    items = list(root.iterfind(".//svg:g[@class='chart-legend-item']", NS))
    assert [item.attrib["data-series"] for item in items] == names
    fills = {r.attrib["data-series"]: r.attrib["fill"] for r in segments(root)}
    assert [fills[name] for name in names] == [PALETTE[n % len(PALETTE)] for n in range(12)]
    rows = {item.find("svg:rect", NS).attrib["y"] for item in items}
    assert len(rows) > 1
    _, _, _, height = (float(n) for n in root.attrib["viewBox"].split())
    assert height > 200  # the plot keeps its room; the legend's rows add to the height
    assert max(float(r.attrib["y"]) for r in segments(root)) < min(float(y) for y in rows)


def test_the_palette_contrasts_with_white_and_repeats_no_colour() -> None:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    assert len(set(PALETTE)) == len(PALETTE) == 8
    assert all(1.05 / (luminance(colour) + 0.05) >= 3 for colour in PALETTE)


def test_a_line_chart_has_one_polyline_per_series_through_its_points() -> None:
    root = parsed(line_chart(DAYS, COSTS, title="Cost per day", unit="$"))
    scale = px_per_unit(root)
    (_, zero_y), *_ = ticks(root)
    groups = list(root.iterfind(".//svg:g[@class='chart-series']", NS))
    assert [g.attrib["data-series"] for g in groups] == list(COSTS)
    for group, values in zip(groups, COSTS.values(), strict=True):
        line = group.find("svg:polyline", NS)
        points = [tuple(map(float, p.split(","))) for p in line.attrib["points"].split()]
        circles = group.findall("svg:circle", NS)
        assert [(float(c.attrib["cx"]), float(c.attrib["cy"])) for c in circles] == points
        assert [float(c.attrib["data-value"]) for c in circles] == values
        for (_, y), value in zip(points, values, strict=True):
            assert zero_y - y == pytest.approx(value * scale, abs=0.01)
    assert ticks(root)[-1][0] >= max(max(v) for v in COSTS.values())


def test_mismatched_or_negative_values_are_refused() -> None:
    with pytest.raises(ValueError, match="3 values for 4 categories"):
        bar_chart(DAYS, {"a": [1.0, 2.0, 3.0]}, title="t")
    with pytest.raises(ValueError, match="negative or non-finite"):
        line_chart(DAYS, {"a": [1.0, -2.0, 3.0, 4.0]}, title="t")
    with pytest.raises(ValueError, match="negative or non-finite"):
        bar_chart(DAYS, {"a": [1.0, math.nan, 3.0, 4.0]}, title="t")
