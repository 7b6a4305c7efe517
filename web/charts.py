"""Small server-drawn SVG charts: no chart script to load, nothing fetched, tiny pages."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 30


def _scale(values: Sequence[float]) -> float:
    top = max((v for v in values if v == v), default=0.0)
    return top * 1.08 if top > 0 else 1.0


def _frame(labels: Sequence[str], top: float, unit: str) -> list[str]:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = TOP + (HEIGHT - TOP - BOTTOM) * (1 - i / 4)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    step = max(1, len(labels) // 8)
    for i in range(0, len(labels), step):
        x = _x(i, len(labels))
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="middle">{escape(labels[i])}</text>'
        )
    parts.append(f'<text x="{LEFT}" y="{TOP - 2}">{escape(unit)}</text>')
    return parts


def _x(i: int, n: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * ((i + 0.5) / max(n, 1))


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def line_chart(
    labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], unit: str, title: str
) -> Markup:
    """Return an SVG line chart; series are (name, colour, values) aligned with labels."""
    top = _scale([v for _, _, values in series for v in values])
    parts = _frame(labels, top, unit)
    for name, colour, values in series:
        points = " ".join(
            f"{_x(i, len(labels)):.1f},{_y(v, top):.1f}" for i, v in enumerate(values) if v == v
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
    return _svg(title, parts, series)


def bar_chart(
    labels: Sequence[str], values: Sequence[float], targets: Sequence[float], unit: str, title: str
) -> Markup:
    """Return an SVG bar chart of values with the target drawn as a line over the bars."""
    top = _scale([*values, *targets])
    parts = _frame(labels, top, unit)
    width = max(1.0, (WIDTH - LEFT - RIGHT) / max(len(values), 1) * 0.8)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = _y(value, top)
        parts.append(
            f'<rect x="{_x(i, len(values)) - width / 2:.1f}" y="{y:.1f}" '
            f'width="{width:.1f}" height="{HEIGHT - BOTTOM - y:.1f}" fill="#54aeff">'
            f"<title>{escape(label)}: {value:,.1f}</title></rect>"
        )
    points = " ".join(
        f"{_x(i, len(targets)):.1f},{_y(t, top):.1f}" for i, t in enumerate(targets) if t == t
    )
    parts.append(
        f'<polyline fill="none" stroke="#cf222e" stroke-width="2" stroke-dasharray="4 3" '
        f'points="{points}"><title>target</title></polyline>'
    )
    return _svg(title, parts, [("presence", "#54aeff", ()), ("target", "#cf222e", ())])


def _svg(title: str, parts: list[str], legend) -> Markup:
    keys = []
    for i, (name, colour, _values) in enumerate(legend):
        x = WIDTH - RIGHT - 150 + 0 * i
        y = TOP + 4 + 14 * i
        keys.append(
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{y + 9}">{escape(name)}</text>'
        )
    body = "".join(parts + keys)
    return Markup(  # noqa: S704 (every text above is escaped)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>'
    )
