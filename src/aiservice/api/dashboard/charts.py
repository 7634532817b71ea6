"""Charts for the dashboard's server-rendered pages, as inline SVG.

Why SVG drawn here rather than a JavaScript charting library: there is no library to vendor,
pin and audit, nothing is fetched from a CDN (the dashboard works offline and under a strict
Content-Security-Policy with no script at all), the page is complete when it arrives, and every
number drawn is also in the DOM (`data-category`, `data-series`, `data-value` on each bar
segment or point, `data-total` on the total) so that a browser test, or a screen-scraping
user, reads the exact figures instead of guessing them from pixels.

`bar_chart` stacks one bar per category (a day, say) from one segment per series (a model, a
feature, a user); `line_chart` draws one line per series over the same axes. Both scale to the
width of their container through `viewBox` (drawn for `width` by `height` user units; the legend
adds height when it needs more rows). Below about 480 px of page width, put the chart in a box
that scrolls sideways, or ask for a narrower `width`: its x labels are thinned to fit it.

Values are finite and not negative (usage: requests, tokens, dollars). A zero segment of a bar
is not drawn; a line has a point for every category. Every label is XML-escaped, so a model or
user named `<script>` is text, never markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

# Eight colours, each with at least 3:1 contrast on white (WCAG's ratio for graphics), told
# apart by hue and lightness; a ninth series takes the first colour again.
PALETTE = (
    "#1f77b4",  # blue
    "#d95f02",  # orange
    "#1b9e77",  # green
    "#7570b3",  # violet
    "#e7298a",  # magenta
    "#a6761d",  # ochre
    "#666666",  # grey
    "#b2182b",  # dark red
)
EMPTY_TEXT = "No usage in this period"
CURRENCIES = frozenset({"$", "€", "£", "¥"})  # written before the number; any other unit after
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
MAX_X_LABELS = 12

_FONT_SIZE = 12
_CHAR_W = 7.0  # the average width of a character at _FONT_SIZE, in user units
_TITLE_BAND = 40  # the title and total, above the plot
_X_LABEL_BAND = 22
_LEGEND_ROW = 18
_MIN_PLOT_H = 80
_EMPTY_HEIGHT = 96
_MAX_LABEL_CHARS = 18  # longer axis labels and legend names are cut, with an ellipsis
_BAR_FILL = 0.7  # of each category's band
_MAX_BAR_W = 56


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where things go: the whole drawing, the plot's box inside it, the y scale."""

    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    ticks: tuple[float, ...]
    categories: int
    legend_rows: tuple[tuple[tuple[int, float], ...], ...]  # (series index, x) per row

    @property
    def band(self) -> float:
        return (self.right - self.left) / self.categories

    def x(self, index: int) -> float:
        """The centre of category `index`'s band."""
        return self.left + (index + 0.5) * self.band

    def y(self, value: float) -> float:
        return self.bottom - value / self.ticks[-1] * (self.bottom - self.top)


def bar_chart(
    categories: list[str],
    series: dict[str, list[float]],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 280,
) -> Markup:
    """Stacked bars: one per category, one segment per series (stacked in the dict's order,
    the first at the bottom), scaled to the tallest bar."""
    return _chart(categories, series, title, unit, width, height, stacked=True, draw=_bars)


def line_chart(
    categories: list[str],
    series: dict[str, list[float]],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 280,
) -> Markup:
    """One line per series, a point (with its value) per category, scaled to the largest."""
    return _chart(categories, series, title, unit, width, height, stacked=False, draw=_lines)


Draw = Callable[[_Frame, Sequence[str], dict[str, list[float]], str], list[str]]


def _chart(
    categories: Sequence[str],
    series: dict[str, list[float]],
    title: str,
    unit: str,
    width: int,
    height: int,
    *,
    stacked: bool,
    draw: Draw,
) -> Markup:
    _check(categories, series, width, height)
    total = math.fsum(value for values in series.values() for value in values)
    if not categories or not series or total == 0:
        return _empty(title, unit, width)
    if stacked:
        peak = max(math.fsum(column) for column in zip(*series.values(), strict=True))
    else:
        peak = max(max(values) for values in series.values())
    frame = _frame(categories, list(series), width, height, nice_ticks(peak), unit)
    parts = [
        *_header(frame, title, total, unit),
        *_y_axis(frame, unit),
        *_x_axis(frame, categories),
        *draw(frame, categories, series, unit),
        *_legend(frame, list(series)),
    ]
    return _svg(frame.width, frame.height, title, total, unit, parts)


def _check(
    categories: Sequence[str], series: dict[str, list[float]], width: int, height: int
) -> None:
    if width < 200 or height < 120:
        raise ValueError("A chart needs a width of at least 200 and a height of at least 120.")
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(
                f"Series {name!r} has {len(values)} values for {len(categories)} categories."
            )
        if not all(math.isfinite(value) and value >= 0 for value in values):
            raise ValueError(f"Series {name!r} holds a negative or non-finite value.")


def nice_ticks(peak: float) -> tuple[float, ...]:
    """4 to 6 round ticks from 0 whose last covers `peak` (> 0): the smallest step of 1, 2,
    2.5 or 5 times a power of ten that needs at most 5 intervals. Successive candidate steps
    differ by at most a factor 2, so at least 3 intervals are needed: never fewer than 4 ticks."""
    power = 10.0 ** math.floor(math.log10(peak / 5))  # peak / 5 is in [power, 10 power)
    for mantissa in (1, 2, 2.5, 5, 10):
        step = mantissa * power
        intervals = math.ceil(peak / step - 1e-9)  # a peak just on a tick needs no more
        if intervals <= 5:
            return tuple(_rounded(i * step, step) for i in range(intervals + 1))
    raise AssertionError("unreachable: a step of 10 power needs at most 5 intervals")


def _rounded(value: float, step: float) -> float:
    """`value` without the float noise of i * step (0.30000000000000004 is 0.3)."""
    return round(value, _decimals(step) + 1)


def _decimals(step: float) -> int:
    """How many decimals the multiples of `step` need (0.25: 2, 2.5: 1, 50: 0)."""
    digits = Decimal(plain_number(step)).as_tuple()
    return max(0, -int(digits.exponent))


def plain_number(value: float) -> str:
    """`value` as a plain decimal of at most 10 significant digits: no exponent, no float
    noise (0.1 + 0.2 is "0.3", 1e-05 is "0.00001", 3.0 is "3")."""
    if value == 0:
        return "0"
    text = format(Decimal(format(value, ".10g")), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def display_number(value: float, unit: str = "") -> str:
    """`value` for a reader: four significant digits at most (whole numbers whole), thousands
    separated, with its unit ("$0.01234", "12,345 tokens")."""
    if value == int(value) and abs(value) < 1e15:
        text = f"{int(value):,}"
    else:
        decimals = min(10, max(0, 3 - math.floor(math.log10(abs(value)))))
        text = f"{value:,.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return _with_unit(text, unit)


def tick_labels(ticks: Sequence[float], unit: str = "") -> list[str]:
    """The ticks' labels, as precise as their step needs, compact (k, M, B) when the top
    tick reaches a thousand; a currency before each number ("$0.5"), any other unit apart."""
    step = ticks[1] - ticks[0]
    divisor, suffix = next(
        ((d, s) for d, s in ((1e9, "B"), (1e6, "M"), (1e3, "k")) if ticks[-1] >= d), (1.0, "")
    )
    decimals = _decimals(step / divisor)
    labels = []
    for tick in ticks:
        text = "0" if tick == 0 else f"{tick / divisor:.{decimals}f}{suffix}"
        labels.append(f"{unit}{text}" if unit in CURRENCIES else text)
    return labels


def _with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    return f"{unit}{text}" if unit in CURRENCIES else f"{text} {unit}"


def _frame(
    categories: Sequence[str],
    names: list[str],
    width: int,
    height: int,
    ticks: tuple[float, ...],
    unit: str,
) -> _Frame:
    widest = max(len(label) for label in tick_labels(ticks, unit))
    left = 12 + widest * _CHAR_W
    right = width - 16
    rows = _legend_layout(names, left, right)
    bottom_band = _X_LABEL_BAND + len(rows) * _LEGEND_ROW + 10
    height = max(height, math.ceil(_TITLE_BAND + _MIN_PLOT_H + bottom_band))
    return _Frame(
        width=width,
        height=height,
        left=left,
        right=right,
        top=_TITLE_BAND + 8,
        bottom=height - bottom_band,
        ticks=ticks,
        categories=len(categories),
        legend_rows=rows,
    )


def _legend_layout(
    names: list[str], left: float, right: float
) -> tuple[tuple[tuple[int, float], ...], ...]:
    """Legend items left to right, wrapped into rows within the plot's width."""
    rows: list[list[tuple[int, float]]] = [[]]
    x = left
    for index, name in enumerate(names):
        item_w = 16 + len(_cut(name)) * _CHAR_W + 14
        if rows[-1] and x + item_w > right:
            rows.append([])
            x = left
        rows[-1].append((index, x))
        x += item_w
    return tuple(tuple(row) for row in rows)


def _cut(label: str) -> str:
    return label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…"


def _header(frame: _Frame, title: str, total: float, unit: str) -> list[str]:
    shown_total = "Total: " + display_number(total, unit)
    room = (frame.width - 24) / (_CHAR_W * 1.2) - len(shown_total) - 2  # the title is larger
    shown_title = title if len(title) <= room else title[: max(1, int(room) - 1)] + "…"
    return [
        f'<text class="chart-title" x="12" y="24" font-size="{_FONT_SIZE + 3}" '
        f'font-weight="600">{_esc(shown_title)}</text>',
        f'<text class="chart-total" data-total="{plain_number(total)}" '
        f'x="{frame.width - 12}" y="24" text-anchor="end">{_esc(shown_total)}</text>',
    ]


def _y_axis(frame: _Frame, unit: str) -> list[str]:
    parts = ['<g class="chart-y-axis">']
    for tick, label in zip(frame.ticks, tick_labels(frame.ticks, unit), strict=True):
        y = _n(frame.y(tick))
        stroke = "#bbbbbb" if tick == 0 else "#e6e6e6"
        parts.append(
            f'<g class="chart-tick" data-tick="{plain_number(tick)}">'
            f'<line x1="{_n(frame.left)}" x2="{_n(frame.right)}" y1="{y}" y2="{y}" '
            f'stroke="{stroke}"/>'
            f'<text x="{_n(frame.left - 6)}" y="{y}" dy="0.32em" text-anchor="end">'
            f"{_esc(label)}</text></g>"
        )
    if unit and unit not in CURRENCIES:
        parts.append(
            f'<text class="chart-unit" x="12" y="{_n(frame.top - 10)}">{_esc(unit)}</text>'
        )
    parts.append("</g>")
    return parts


def x_label_indices(count: int, plot_width: float, longest: int) -> range:
    """The categories labelled on the x axis: every one that fits, else every n-th (the
    first always), never more than MAX_X_LABELS, never two closer than a label's width."""
    label_w = min(longest, _MAX_LABEL_CHARS) * _CHAR_W + 10
    fitting = max(1, min(MAX_X_LABELS, int(plot_width // label_w)))
    return range(0, count, math.ceil(count / fitting))


def _x_axis(frame: _Frame, categories: Sequence[str]) -> list[str]:
    longest = max(len(category) for category in categories)
    y = _n(frame.bottom + 16)
    parts = ['<g class="chart-x-axis">']
    for index in x_label_indices(len(categories), frame.right - frame.left, longest):
        parts.append(
            f'<text class="chart-x-label" x="{_n(frame.x(index))}" y="{y}" '
            f'text-anchor="middle">{_esc(_cut(categories[index]))}</text>'
        )
    parts.append("</g>")
    return parts


def _bars(
    frame: _Frame, categories: Sequence[str], series: dict[str, list[float]], unit: str
) -> list[str]:
    bar_w = min(_MAX_BAR_W, max(1.0, frame.band * _BAR_FILL))
    scale = (frame.bottom - frame.top) / frame.ticks[-1]
    parts = ['<g class="chart-bars">']
    for index, category in enumerate(categories):
        base = frame.bottom
        x = _n(frame.x(index) - bar_w / 2)
        for number, (name, values) in enumerate(series.items()):
            value = values[index]
            if value == 0:
                continue
            height = value * scale
            parts.append(
                f'<rect class="chart-bar" x="{x}" y="{_n(base - height)}" '
                f'width="{_n(bar_w)}" height="{_n(height)}" fill="{colour(number)}" '
                f"{_data(category, name, value)}>"
                f"<title>{_esc(_hover(category, name, value, unit))}</title></rect>"
            )
            base -= height
    parts.append("</g>")
    return parts


def _lines(
    frame: _Frame, categories: Sequence[str], series: dict[str, list[float]], unit: str
) -> list[str]:
    parts = ['<g class="chart-lines">']
    for number, (name, values) in enumerate(series.items()):
        points = [(frame.x(index), frame.y(value)) for index, value in enumerate(values)]
        parts.append(
            f'<g class="chart-series" data-series="{_esc(name)}">'
            f'<polyline class="chart-line" fill="none" stroke="{colour(number)}" '
            f'stroke-width="2" points="{" ".join(f"{_n(x)},{_n(y)}" for x, y in points)}"/>'
        )
        for (x, y), category, value in zip(points, categories, values, strict=True):
            parts.append(
                f'<circle class="chart-point" cx="{_n(x)}" cy="{_n(y)}" r="3.5" '
                f'fill="{colour(number)}" {_data(category, name, value)}>'
                f"<title>{_esc(_hover(category, name, value, unit))}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</g>")
    return parts


def _legend(frame: _Frame, names: list[str]) -> list[str]:
    parts = ['<g class="chart-legend">']
    first_row_y = frame.bottom + _X_LABEL_BAND + 12
    for row, items in enumerate(frame.legend_rows):
        y = first_row_y + row * _LEGEND_ROW
        for index, x in items:
            name = names[index]
            parts.append(
                f'<g class="chart-legend-item" data-series="{_esc(name)}">'
                f"<title>{_esc(name)}</title>"
                f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" '
                f'fill="{colour(index)}"/>'
                f'<text x="{_n(x + 16)}" y="{_n(y)}">{_esc(_cut(name))}</text></g>'
            )
    parts.append("</g>")
    return parts


def _empty(title: str, unit: str, width: int) -> Markup:
    parts = [
        f'<text class="chart-title" x="12" y="24" font-size="{_FONT_SIZE + 3}" '
        f'font-weight="600">{_esc(title)}</text>',
        f'<text class="chart-total" data-total="0" x="{width - 12}" y="24" '
        f'text-anchor="end">{_esc("Total: " + display_number(0, unit))}</text>',
        f'<text class="chart-empty" x="{width / 2:g}" y="{_EMPTY_HEIGHT - 30}" '
        f'text-anchor="middle" fill="#666666">{EMPTY_TEXT}</text>',
    ]
    return _svg(width, _EMPTY_HEIGHT, title, 0.0, unit, parts)


def _svg(width: int, height: int, title: str, total: float, unit: str, parts: list[str]) -> Markup:
    label = f"{title} (total {display_number(total, unit)})"
    opening = (
        f'<svg xmlns="{SVG_NAMESPACE}" class="chart" role="img" aria-label="{_esc(label)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
        # No style attribute: the dashboard's CSP allows no inline style (its stylesheet caps
        # the width instead).
        'font-family="system-ui, sans-serif" '
        f'font-size="{_FONT_SIZE}" fill="#333333">'
    )
    return Markup(opening + "".join(parts) + "</svg>")  # every part was escaped as made


def colour(index: int) -> str:
    """The colour of the `index`-th series: the palette, round again after its eighth."""
    return PALETTE[index % len(PALETTE)]


def _data(category: str, name: str, value: float) -> str:
    return (
        f'data-category="{_esc(category)}" data-series="{_esc(name)}" '
        f'data-value="{plain_number(value)}"'
    )


def _hover(category: str, name: str, value: float, unit: str) -> str:
    return f"{category} · {name}: {display_number(value, unit)}"


def _esc(text: str) -> str:
    return str(escape(text))


def _n(value: float) -> str:
    """A coordinate, to a hundredth of a unit."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
