"""Small PNG charts for the dashboard, drawn with Pillow (already a dependency for the sticker grids):
a line chart over time, horizontal bars, and grouped bars. Labels are ASCII (languages by code),
so Pillow's built-in font suffices."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 640, 300
SCALE = 2  # drawn at twice the size: sharp on high-density screens, shown at WIDTH x HEIGHT
INK, GRID, MUTED = "#1f2933", "#e4e7eb", "#7b8794"
COLOURS = {"en": "#2f7dd3", "zh": "#e0533d"}
PALETTE = ("#2f7dd3", "#e0533d", "#3aa876", "#f0a030", "#8c5bd6", "#7b8794", "#d6478a")


class _Canvas:
    def __init__(self, width: int = WIDTH, height: int = HEIGHT):
        self.image = Image.new("RGB", (width * SCALE, height * SCALE), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.fonts = {size: ImageFont.load_default(size=size * SCALE) for size in (11, 13)}

    def text(self, xy, text: str, size: int = 11, fill: str = INK, anchor: str = "la") -> None:
        self.draw.text((xy[0] * SCALE, xy[1] * SCALE), text, fill=fill, font=self.fonts[size], anchor=anchor)

    def line(self, points, fill: str, width: float = 1) -> None:
        self.draw.line([(x * SCALE, y * SCALE) for x, y in points], fill=fill, width=max(1, int(width * SCALE)),
                       joint="curve")

    def rect(self, box, fill: str) -> None:
        x0, y0, x1, y1 = box
        self.draw.rectangle((x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE), fill=fill)

    def dot(self, xy, radius: float, fill: str) -> None:
        x, y = xy
        self.draw.ellipse(((x - radius) * SCALE, (y - radius) * SCALE, (x + radius) * SCALE, (y + radius) * SCALE),
                          fill=fill)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, "PNG", optimize=False, compress_level=3)
        return buffer.getvalue()


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _legend(canvas: _Canvas, series: dict, x: float, y: float) -> None:
    for name, (colour, _) in series.items():
        canvas.rect((x, y + 2, x + 10, y + 12), colour)
        canvas.text((x + 14, y), name)
        x += 24 + 7 * len(name)


def line_chart(title: str, labels: Sequence[str], series: dict[str, tuple[str, Sequence[float]]],
               empty: str = "no data yet") -> bytes:
    """`series`: name -> (colour, values), each as long as `labels` (shown under the x axis)."""
    canvas = _Canvas()
    canvas.text((16, 12), title, size=13)
    left, right, top, bottom = 48, WIDTH - 16, 44, HEIGHT - 36
    values = [v for _, points in series.values() for v in points]
    if not labels or not values:
        canvas.text(((left + right) / 2, (top + bottom) / 2), empty, fill=MUTED, anchor="mm")
        return canvas.png()
    peak = _nice_max(max(values))
    for i in range(5):
        y = bottom - (bottom - top) * i / 4
        canvas.line([(left, y), (right, y)], GRID)
        canvas.text((left - 6, y), f"{peak * i / 4:g}", fill=MUTED, anchor="rm")
    count = len(labels)

    def x_of(i: int) -> float:
        return left + (right - left) * (i / (count - 1) if count > 1 else 0.5)

    for i in sorted({0, count - 1, *range(0, count, max(1, count // 5))}):
        canvas.text((x_of(i), bottom + 8), labels[i], fill=MUTED, anchor="ma")
    for colour, points in series.values():
        xy = [(x_of(i), bottom - (bottom - top) * v / peak) for i, v in enumerate(points)]
        if len(xy) > 1:
            canvas.line(xy, colour, width=2.5)
        canvas.dot(xy[-1], 3.5, colour)
    _legend(canvas, series, right - 120, 12)
    return canvas.png()


def bar_chart(title: str, bars: Sequence[tuple[str, float]], highlight: str | None = None) -> bytes:
    """Horizontal bars, one per (label, value); the `highlight` label is drawn in red."""
    height = max(120, 56 + 26 * len(bars))
    canvas = _Canvas(height=height)
    canvas.text((16, 12), title, size=13)
    left, right, top = 120, WIDTH - 56, 44
    peak = _nice_max(max((v for _, v in bars), default=0))
    for n, (label, value) in enumerate(bars):
        y = top + 26 * n
        canvas.text((left - 8, y + 9), label, anchor="rm")
        width = (right - left) * value / peak
        canvas.rect((left, y + 2, left + max(width, 1), y + 18), COLOURS["zh"] if label == highlight else PALETTE[0])
        canvas.text((left + width + 6, y + 9), f"{value:g}", anchor="lm")
    return canvas.png()


def grouped_bars(title: str, groups: Sequence[str], series: dict[str, tuple[str, Sequence[float | None]]],
                 peak: float = 1.0, empty: str = "no export yet") -> bytes:
    """Vertical bars: for each group (x axis), one bar per series; None is a missing value."""
    canvas = _Canvas()
    canvas.text((16, 12), title, size=13)
    left, right, top, bottom = 48, WIDTH - 16, 44, HEIGHT - 36
    if not groups or not series:
        canvas.text(((left + right) / 2, (top + bottom) / 2), empty, fill=MUTED, anchor="mm")
        return canvas.png()
    for i in range(5):
        y = bottom - (bottom - top) * i / 4
        canvas.line([(left, y), (right, y)], GRID)
        canvas.text((left - 6, y), f"{peak * i / 4:g}", fill=MUTED, anchor="rm")
    slot = (right - left) / len(groups)
    bar = min(36, slot * 0.8 / len(series))
    for g, group in enumerate(groups):
        centre = left + slot * (g + 0.5)
        canvas.text((centre, bottom + 8), group, fill=MUTED, anchor="ma")
        for s, (colour, values) in enumerate(series.values()):
            value = values[g]
            if value is None:
                continue
            x0 = centre - bar * len(series) / 2 + bar * s
            y = bottom - (bottom - top) * min(value, peak) / peak
            canvas.rect((x0 + 1, y, x0 + bar - 1, bottom), colour)
            canvas.text((x0 + bar / 2, y - 3), f"{value:.2f}", fill=MUTED, anchor="md")
    _legend(canvas, series, right - 120, 12)
    return canvas.png()
