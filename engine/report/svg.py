"""Three chart kinds as inline SVG strings (no script, no fonts, no network): a forest plot of estimates
with intervals, horizontal grouped bars with intervals, and a diverging heat map."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

PALETTE = ("#2f6db3", "#d9822b", "#3a9d5d", "#b8405e", "#7b5ea7", "#8c6d31", "#4a8fa3", "#666666")
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12"'
LABEL_W = 230
ROW_H = 22


@dataclass(frozen=True)
class Point:
    label: str
    estimate: float | None
    lo: float | None = None
    hi: float | None = None
    strong: bool = False  # significant after BH: filled marker
    faint: bool = False  # under the minimum size: hollow, greyed


def _finite(*xs: float | None) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def _label_width(labels: list[str]) -> int:
    return max(LABEL_W, 16 + 7 * max((len(t) for t in labels), default=0))


def _scale(values: list[float], lo: float, hi: float, width: float, left: float = LABEL_W):
    vmin, vmax = min(values + [lo]), max(values + [hi])
    pad = (vmax - vmin) * 0.05 or 0.05
    vmin, vmax = vmin - pad, vmax + pad
    return (lambda v: left + (v - vmin) / (vmax - vmin) * width), vmin, vmax


def _axis(x, vmin: float, vmax: float, top: float, bottom: float, zero: bool) -> list[str]:
    step = _nice_step((vmax - vmin) / 5)
    parts = []
    tick = math.ceil(vmin / step) * step
    while tick <= vmax + 1e-12:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{bottom}" stroke="#e5e5e5"/>')
        label = f"{tick:+.2f}" if zero else f"{tick:.2f}"
        parts.append(f'<text x="{x(tick):.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555">{label}</text>')
        tick += step
    if zero and vmin < 0 < vmax:
        parts.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/>')
    return parts


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 0.1
    exp = 10 ** math.floor(math.log10(raw))
    return next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)


def forest(points: list[Point], title: str, width: int = 760) -> str:
    """Estimates as dots with interval whiskers against a dashed zero line."""
    left = _label_width([p.label for p in points])
    plot_w = width - left - 30
    values = _finite(*(v for p in points for v in (p.estimate, p.lo, p.hi)))
    x, vmin, vmax = _scale(values or [0.0], 0.0, 0.0, plot_w, left)
    top, height = 34, 34 + ROW_H * len(points)
    parts = [f'<text x="8" y="18" font-weight="600">{escape(title)}</text>', *_axis(x, vmin, vmax, top - 6, height, zero=True)]
    for i, p in enumerate(points):
        y = top + ROW_H * i + ROW_H / 2
        colour = "#999" if p.faint else ("#b8405e" if p.strong else "#2f6db3")
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{"#888" if p.faint else "#222"}">{escape(p.label)}</text>')
        if p.lo is not None and p.hi is not None and _finite(p.lo, p.hi):
            parts.append(f'<line x1="{x(p.lo):.1f}" y1="{y:.1f}" x2="{x(p.hi):.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>')
        if _finite(p.estimate):
            fill = "white" if p.faint else colour
            parts.append(f'<circle cx="{x(p.estimate):.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2"><title>{escape(p.label)}: {p.estimate:+.3f}</title></circle>')
    return _svg(width, height + 24, parts)


def bars(groups: list[str], series: dict[str, list[Point]], title: str, marker: dict[str, list[float | None]] | None = None, width: int = 760) -> str:
    """Horizontal bars per group, one per series (model), with interval whiskers; `marker` draws a tick
    (e.g. the baseline score) on each bar."""
    plot_w = width - LABEL_W - 30
    names = list(series)
    bar_h = max(8, min(16, 40 // max(len(names), 1)))
    group_h = bar_h * len(names) + 10
    values = _finite(*(v for pts in series.values() for p in pts for v in (p.estimate, p.hi)))
    x, vmin, vmax = _scale(values or [1.0], 0.0, 0.0, plot_w)
    legend_h = 20
    top = 34 + legend_h
    height = top + group_h * len(groups)
    parts = [f'<text x="8" y="18" font-weight="600">{escape(title)}</text>', *_axis(x, vmin, vmax, top - 4, height, zero=False)]
    for j, name in enumerate(names):
        lx = LABEL_W + j * 150
        parts.append(f'<rect x="{lx}" y="28" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/><text x="{lx + 16}" y="38">{escape(name)}</text>')
    if marker:
        lx = LABEL_W + len(names) * 150
        parts.append(f'<line x1="{lx + 6}" y1="27" x2="{lx + 6}" y2="41" stroke="#111" stroke-width="2"/><text x="{lx + 14}" y="38">baseline</text>')
    for i, group in enumerate(groups):
        gy = top + group_h * i
        parts.append(f'<text x="{LABEL_W - 8}" y="{gy + group_h / 2 + 2:.1f}" text-anchor="end">{escape(group)}</text>')
        for j, name in enumerate(names):
            p = series[name][i]
            if not _finite(p.estimate):
                continue
            y = gy + 4 + bar_h * j
            colour = PALETTE[j % len(PALETTE)]
            parts.append(f'<rect x="{x(vmin):.1f}" y="{y:.1f}" width="{max(x(p.estimate) - x(vmin), 0):.1f}" height="{bar_h - 2}" fill="{colour}" opacity="{0.45 if p.faint else 0.85}"><title>{escape(name)} · {escape(group)}: {p.estimate:.3f}</title></rect>')
            if _finite(p.lo, p.hi) and p.lo is not None and p.hi is not None:
                cy = y + (bar_h - 2) / 2
                parts.append(f'<line x1="{x(p.lo):.1f}" y1="{cy:.1f}" x2="{x(p.hi):.1f}" y2="{cy:.1f}" stroke="#111" stroke-width="1.2"/>')
            tick = marker[name][i] if marker else None
            if tick is not None and _finite(tick):
                parts.append(f'<line x1="{x(tick):.1f}" y1="{y - 1:.1f}" x2="{x(tick):.1f}" y2="{y + bar_h - 1:.1f}" stroke="#111" stroke-width="2"/>')
    return _svg(width, height + 24, parts)


def heatmap(rows: list[str], cols: list[str], values: list[list[float | None]], title: str, cell: int = 46) -> str:
    """Diverging colour per cell (blue up, red down, white at 0), scaled to the largest |value|."""
    label_w = max(90, 8 * max((len(r) for r in rows), default=0))
    head_h = 20 + 7 * max((len(c) for c in cols), default=0) * 0.72
    limit = max((abs(v) for row in values for v in row if v is not None and math.isfinite(v)), default=0.0) or 1.0
    parts = [f'<text x="8" y="18" font-weight="600">{escape(title)} (colour scale ±{limit:.3f})</text>']
    top = 30 + head_h
    for j, col in enumerate(cols):
        cx = label_w + cell * j + cell / 2
        parts.append(f'<text transform="translate({cx:.1f},{top - 6:.1f}) rotate(-45)" fill="#333">{escape(col)}</text>')
    for i, row in enumerate(rows):
        y = top + cell * 0.6 * i
        parts.append(f'<text x="{label_w - 8}" y="{y + cell * 0.36:.1f}" text-anchor="end">{escape(row)}</text>')
        for j, v in enumerate(values[i]):
            fill, text = ("#f0f0f0", "–") if v is None or not math.isfinite(v) else (_diverging(v / limit), f"{v:+.2f}")
            parts.append(f'<rect x="{label_w + cell * j}" y="{y:.1f}" width="{cell - 2}" height="{cell * 0.6 - 2:.1f}" fill="{fill}"><title>{escape(row)} · {escape(cols[j])}: {text}</title></rect>')
            parts.append(f'<text x="{label_w + cell * j + cell / 2 - 1:.1f}" y="{y + cell * 0.36:.1f}" text-anchor="middle" font-size="10">{text}</text>')
    return _svg(int(label_w + cell * len(cols) + 60), int(top + cell * 0.6 * len(rows) + 12), parts)


def _diverging(t: float) -> str:
    t = max(-1.0, min(1.0, t))
    far = (47, 109, 179) if t > 0 else (184, 64, 94)
    r, g, b = (round(255 + (c - 255) * abs(t)) for c in far)
    return f"rgb({r},{g},{b})"


def _svg(width: float, height: float, parts: list[str]) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" {FONT}>' + "".join(parts) + "</svg>"
