"""Small, dependency-free SVG charts for the HTML report.

Vector output drawn straight from numpy arrays: a report renders in
milliseconds, stays sharp at any zoom, and needs neither matplotlib nor a
raster image. Only what the report draws: bands, lines, markers, stacked
areas, intervals, violins, vertical spans and lines, on a linear or a date x
axis, with "nice" ticks, grid lines, a title, axis labels and a legend row.
Every user string is escaped.

>>> p = Panel(title="fit", x=np.arange(3.0), y=(0.0, 2.0))
>>> p.line(np.arange(3.0), np.array([0.0, 1.0, 2.0]), color="#1f77b4", label="mean")
>>> p.svg().startswith("<svg")
True
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Panel", "fmt_number", "nice_ticks"]

_FONT = 'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif"'


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def fmt_number(v: float) -> str:
    """A tick label: thousands separators, k / M / B for large values, few digits."""
    if not math.isfinite(v):
        return ""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}B"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:,.0f}k"
    if a >= 1000:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return np.array([0.0])
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = np.arange(start, hi + step * 0.5, step)
    return ticks[(ticks >= lo - 1e-9 * step) & (ticks <= hi + 1e-9 * step)]


def _date_ticks(lo: np.datetime64, hi: np.datetime64) -> tuple[list[np.datetime64], str]:
    """Month starts (or quarter / year starts for long spans) between lo and hi, and their format."""
    days = (hi - lo) / np.timedelta64(1, "D")
    step, fmt = (1, "%b %Y") if days <= 400 else (3, "%b %Y") if days <= 1200 else (12, "%Y")
    m = np.datetime64(lo, "M")
    out = []
    while np.datetime64(m, "D") <= hi:
        if np.datetime64(m, "D") >= lo and (step == 1 or (m.astype(int) % step == 0)):
            out.append(np.datetime64(m, "D"))
        m = m + np.timedelta64(1, "M")
    return out, fmt


@dataclass
class _Item:
    """One mark: its kind, legend label, colour and what draws it (positions in data units)."""

    kind: str
    label: str | None
    color: str
    data: tuple
    dash: str = ""


@dataclass
class Panel:
    """One chart. ``x`` gives the x domain (numbers or datetime64 values) or, with
    ``categories``, category labels at x = 0, 1, ...; ``y`` an initial (lo, hi)."""

    title: str = ""
    x: np.ndarray | None = None
    y: tuple[float, float] | None = None
    xlabel: str = ""
    ylabel: str = ""
    categories: list[str] | None = None
    width: int = 1000
    height: int = 380
    margin: tuple[int, int, int, int] = (34, 24, 48, 78)  # top, right, bottom, left
    #: Font size multiplier (small panels shown shrunk use a larger one).
    font: float = 1.0
    _items: list[_Item] = field(default_factory=list)
    _ylo: float = math.inf
    _yhi: float = -math.inf
    _dates: bool = False

    def __post_init__(self):
        if self.categories is not None:
            self._xlo, self._xhi = -0.6, len(self.categories) - 0.4
        else:
            xs = np.asarray(self.x)
            self._dates = np.issubdtype(xs.dtype, np.datetime64)
            v = self._xnum(xs)
            self._xlo, self._xhi = float(np.nanmin(v)), float(np.nanmax(v))
            if self._xhi <= self._xlo:
                self._xhi = self._xlo + 1.0
        if self.y is not None:
            self._grow(np.asarray(self.y, dtype=float))

    # -------------------------------------------------------------- scales
    def _xnum(self, x) -> np.ndarray:
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.datetime64):
            return x.astype("datetime64[D]").astype(np.int64).astype(float)
        return x.astype(float)

    def _grow(self, v) -> None:
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            self._ylo, self._yhi = min(self._ylo, float(v.min())), max(self._yhi, float(v.max()))

    def _frame(self):
        top, right, bottom, left = self.margin
        return left, top, self.width - left - right, self.height - top - bottom

    def _sx(self, x) -> np.ndarray:
        left, _, w, _ = self._frame()
        return left + (self._xnum(x) - self._xlo) / (self._xhi - self._xlo) * w

    def _sy(self, y) -> np.ndarray:
        _, top, _, h = self._frame()
        lo, hi = self._yrange
        return top + (1.0 - (np.asarray(y, dtype=float) - lo) / (hi - lo)) * h

    @property
    def _yrange(self) -> tuple[float, float]:
        lo, hi = (self._ylo, self._yhi) if math.isfinite(self._ylo) else (0.0, 1.0)
        if hi <= lo:
            hi = lo + (abs(lo) if lo else 1.0)
        pad = 0.04 * (hi - lo)
        return lo - pad, hi + pad

    @staticmethod
    def _pts(xs, ys) -> str:
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b))

    # -------------------------------------------------------------- marks (drawn when svg() runs)
    def band(self, x, lo, hi, *, color: str, opacity: float = 0.2, label: str | None = None) -> None:
        self._grow(lo)
        self._grow(hi)
        self._items.append(
            _Item(
                "band", label, color, (np.asarray(x), np.asarray(lo, float), np.asarray(hi, float), opacity)
            )
        )

    def line(
        self,
        x,
        y,
        *,
        color: str,
        width: float = 1.6,
        dash: str = "",
        label: str | None = None,
        marker: float = 0.0,
    ) -> None:
        self._grow(y)
        self._items.append(
            _Item("line", label, color, (np.asarray(x), np.asarray(y, float), width, marker), dash)
        )

    def points(
        self, x, y, *, color: str, size: float = 3.0, fill: str | None = None, label: str | None = None
    ) -> None:
        self._grow(y)
        self._items.append(
            _Item("points", label, color, (np.asarray(x), np.asarray(y, float), size, fill or color))
        )

    def area(self, x, y0, y1, *, color: str, opacity: float = 0.85, label: str | None = None) -> None:
        self.band(x, y0, y1, color=color, opacity=opacity, label=label)

    def interval(
        self, x: float, lo: float, hi: float, *, color: str, width: float = 5.0, label: str | None = None
    ) -> None:
        self._grow([lo, hi])
        self._items.append(_Item("interval", label, color, (float(x), float(lo), float(hi), width)))

    def violin(
        self, x: float, values, *, color: str, half_width: float = 0.17, label: str | None = None
    ) -> None:
        """The density of ``values`` (Gaussian kernel, Scott's bandwidth) mirrored around x."""
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size < 2 or np.ptp(v) == 0:
            return
        lo, hi = np.quantile(v, [0.005, 0.995])
        grid = np.linspace(lo, hi, 60)
        bw = 1.06 * v.std() * v.size ** (-1 / 5)
        sample = v if v.size <= 2000 else v[:: int(np.ceil(v.size / 2000))]
        dens = np.exp(-0.5 * ((grid[:, None] - sample[None, :]) / bw) ** 2).sum(axis=1)
        dens = dens / dens.max() * half_width
        self._grow(grid)
        self._items.append(_Item("violin", label, color, (float(x), grid, dens)))

    def vspan(self, x0, x1, *, color: str, opacity: float = 0.06) -> None:
        self._items.append(_Item("vspan", None, color, (x0, x1, opacity)))

    def vline(
        self, x, *, color: str, dash: str = "5,4", width: float = 1.0, label: str | None = None
    ) -> None:
        self._items.append(_Item("vline", label, color, (x, width), dash))

    def hline(self, y: float, *, color: str = "#222", width: float = 0.7) -> None:
        self._grow([y])
        self._items.append(_Item("hline", None, color, (float(y), width)))

    def text(self, x, y: float, s: str, *, color: str = "#444", rotate: bool = False) -> None:
        self._items.append(_Item("text", None, color, (x, float(y), s, rotate)))

    # -------------------------------------------------------------- output
    def _axes(self) -> list[str]:
        left, top, w, h = self._frame()
        out = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>']
        lo, hi = self._yrange
        for t in nice_ticks(lo, hi):
            y = float(self._sy(t))
            out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>')
            out.append(
                f'<text x="{left - 6}" y="{y + 4 * self.font:.1f}" text-anchor="end" font-size="{11 * self.font:.1f}" '
                f'fill="#555">{_e(fmt_number(float(t)))}</text>'
            )
        base = top + h
        if self.categories is not None:
            for i, c in enumerate(self.categories):
                x = float(self._sx(i))
                out.append(
                    f'<text x="{x:.1f}" y="{base + 16 * self.font:.1f}" text-anchor="middle" font-size="{12 * self.font:.1f}" '
                    f'fill="#333">{_e(c)}</text>'
                )
        elif self._dates:
            lo_d = np.datetime64(int(self._xlo), "D")
            hi_d = np.datetime64(int(self._xhi), "D")
            ticks, fmt = _date_ticks(lo_d, hi_d)
            import datetime as dt

            for t in ticks:
                x = float(self._sx(np.array([t]))[0])
                d = dt.date.fromisoformat(str(t))
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{base}" stroke="#f0f0f0"/>')
                out.append(
                    f'<text x="{x:.1f}" y="{base + 16 * self.font:.1f}" text-anchor="middle" font-size="{11 * self.font:.1f}" '
                    f'fill="#555">{_e(d.strftime(fmt))}</text>'
                )
        else:
            for t in nice_ticks(self._xlo, self._xhi):
                x = float(self._sx(t))
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{base}" stroke="#f0f0f0"/>')
                out.append(
                    f'<text x="{x:.1f}" y="{base + 16 * self.font:.1f}" text-anchor="middle" font-size="{11 * self.font:.1f}" '
                    f'fill="#555">{_e(fmt_number(float(t)))}</text>'
                )
        if self.title:
            out.append(
                f'<text x="{left}" y="{top - 12}" font-size="{14 * self.font:.1f}" font-weight="600" fill="#222">'
                f"{_e(self.title)}</text>"
            )
        if self.ylabel:
            cy = top + h / 2
            out.append(
                f'<text x="14" y="{cy:.1f}" font-size="{12 * self.font:.1f}" fill="#444" text-anchor="middle" '
                f'transform="rotate(-90 14 {cy:.1f})">{_e(self.ylabel)}</text>'
            )
        if self.xlabel:
            out.append(
                f'<text x="{left + w / 2:.1f}" y="{base + 34 * self.font:.1f}" font-size="{12 * self.font:.1f}" fill="#444" '
                f'text-anchor="middle">{_e(self.xlabel)}</text>'
            )
        return out

    def _mark(self, it: _Item) -> str:
        d = it.data
        kind = it.kind
        left, top, w, h = self._frame()
        if kind == "band":
            x, lo, hi, op = d
            xs = self._sx(x)
            path = self._pts(np.r_[xs, xs[::-1]], np.r_[self._sy(hi), self._sy(lo)[::-1]])
            return f'<polygon points="{path}" fill="{it.color}" fill-opacity="{op}" stroke="none"/>'
        if kind == "line":
            x, y, width, marker = d
            xs, ys = self._sx(x), self._sy(y)
            dash = f' stroke-dasharray="{it.dash}"' if it.dash else ""
            s = (
                f'<polyline points="{self._pts(xs, ys)}" fill="none" stroke="{it.color}" '
                f'stroke-width="{width}" stroke-linejoin="round"{dash}/>'
            )
            if marker:
                s += "".join(
                    f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{marker}" fill="{it.color}"/>'
                    for a, b in zip(xs, ys)
                    if math.isfinite(b)
                )
            return s
        if kind == "points":
            x, y, size, fill = d
            return "".join(
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{size}" fill="{fill}" stroke="{it.color}"/>'
                for a, b in zip(self._sx(x), self._sy(y))
                if math.isfinite(b)
            )
        if kind == "interval":
            x, lo, hi, width = d
            sx = float(self._sx(x))
            return (
                f'<line x1="{sx:.1f}" x2="{sx:.1f}" y1="{float(self._sy(lo)):.1f}" '
                f'y2="{float(self._sy(hi)):.1f}" stroke="{it.color}" stroke-width="{width}"/>'
            )
        if kind == "violin":
            x, grid, dens = d
            span = (self._xhi - self._xlo) or 1.0
            scale = w / span
            cx = float(self._sx(x))
            xs = np.r_[cx + dens * scale, (cx - dens * scale)[::-1]]
            ys = np.r_[self._sy(grid), self._sy(grid)[::-1]]
            return (
                f'<polygon points="{self._pts(xs, ys)}" fill="{it.color}" fill-opacity="0.4" '
                f'stroke="{it.color}" stroke-opacity="0.8"/>'
            )
        if kind == "vspan":
            x0, x1, op = d
            a, b = float(self._sx(np.array([x0]))[0]), float(self._sx(np.array([x1]))[0])
            return f'<rect x="{a:.1f}" y="{top}" width="{max(b - a, 0):.1f}" height="{h}" fill="{it.color}" fill-opacity="{op}"/>'
        if kind == "vline":
            x, width = d
            a = float(self._sx(np.array([x]))[0])
            dash = f' stroke-dasharray="{it.dash}"' if it.dash else ""
            return f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{top}" y2="{top + h}" stroke="{it.color}" stroke-width="{width}"{dash}/>'
        if kind == "hline":
            y, width = d
            b = float(self._sy(y))
            return f'<line x1="{left}" x2="{left + w}" y1="{b:.1f}" y2="{b:.1f}" stroke="{it.color}" stroke-width="{width}"/>'
        if kind == "text":
            x, y, s, rotate = d
            a, b = float(self._sx(np.array([x]))[0]), float(self._sy(y))
            rot = f' transform="rotate(-90 {a:.1f} {b:.1f})"' if rotate else ""
            return f'<text x="{a:.1f}" y="{b:.1f}" font-size="{11 * self.font:.1f}" fill="{it.color}"{rot}>{_e(s)}</text>'
        raise ValueError(kind)

    def _legend(self) -> tuple[list[str], int]:
        seen, entries = set(), []
        for it in self._items:
            if it.label and it.label not in seen:
                seen.add(it.label)
                entries.append(it)
        if not entries:
            return [], 0
        left, top, w, h = self._frame()
        y0 = top + h + (52 if self.xlabel else 30) * self.font
        out, x, y = [], float(left), float(y0)
        for it in entries:
            wlabel = (34 + 6.6 * len(it.label)) * self.font
            if x + wlabel > left + w and x > left:
                x, y = float(left), y + 18 * self.font
            if it.kind in ("band", "violin"):
                sym = f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="22" height="11" fill="{it.color}" fill-opacity="0.45"/>'
            elif it.kind in ("points",):
                sym = f'<circle cx="{x + 11:.1f}" cy="{y - 4:.1f}" r="4" fill="{it.data[3]}" stroke="{it.color}"/>'
            elif it.kind == "interval":
                sym = f'<line x1="{x:.1f}" x2="{x + 22:.1f}" y1="{y - 4:.1f}" y2="{y - 4:.1f}" stroke="{it.color}" stroke-width="5"/>'
            else:
                dash = f' stroke-dasharray="{it.dash}"' if it.dash else ""
                sym = f'<line x1="{x:.1f}" x2="{x + 22:.1f}" y1="{y - 4:.1f}" y2="{y - 4:.1f}" stroke="{it.color}" stroke-width="2"{dash}/>'
            out.append(
                sym
                + f'<text x="{x + 28:.1f}" y="{y:.1f}" font-size="{11 * self.font:.1f}" fill="#333">{_e(it.label)}</text>'
            )
            x += wlabel
        return out, int(y - y0 + 18 * self.font + (8 if self.xlabel else 0))

    def svg(self) -> str:
        """The chart as one ``<svg>`` element (responsive: it scales to its container's width)."""
        legend, extra = self._legend()
        height = self.height + extra
        body = self._axes()
        order = {
            "vspan": 0,
            "band": 1,
            "violin": 1,
            "hline": 2,
            "interval": 3,
            "line": 4,
            "vline": 4,
            "points": 5,
            "text": 6,
        }
        for it in sorted(self._items, key=lambda i: order[i.kind]):
            body.append(self._mark(it))
        body += legend
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {height}" width="100%" '
            f'role="img" aria-label="{_e(self.title)}" {_FONT}>' + "".join(body) + "</svg>"
        )
