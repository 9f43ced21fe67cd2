"""Plots of a fitted MMM and a self-contained HTML report.

Every plot function takes an :class:`~fastmmm.results.MMMResult` and an
optional matplotlib ``ax`` and returns the :class:`matplotlib.figure.Figure`
it drew on. Without ``ax`` a new figure is made with
:class:`matplotlib.figure.Figure` directly, not through ``pyplot``: nothing is
registered with pyplot, so no GUI backend is touched, ``plt.show`` is never
called and the figure is freed like any Python object (rendered with Agg by
``savefig``). Display one in a notebook by returning it from a cell.

:func:`write_report` writes one ``report.html`` with the same charts as inline
SVG (``svg_*``, drawn by :mod:`fastmmm.svgplot` without matplotlib, in
milliseconds), the channel summary table and the diagnostics; it needs no
other files and loads nothing from the network.
"""

from __future__ import annotations

import html
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "plot_contributions",
    "plot_fit",
    "plot_response_curves",
    "plot_roas",
    "write_report",
]

#: Interval shown by every plot and table of the report.
INTERVAL = 0.95

_ACTUAL = "#222222"
_FIT = "#1f77b4"
_FORECAST = "#d62728"
_BASELINE = "#b0b0b0"
_SEASONALITY = "#e6c88a"
_CONTROLS = "#b39ddb"
# Channel colours: the matplotlib "tab10" cycle without grey (kept for the baseline)
# and without the fit / forecast blue and red.
_CHANNEL_COLORS = [
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
]


def _channel_color(i: int) -> str:
    return _CHANNEL_COLORS[i % len(_CHANNEL_COLORS)]


def _new_figure(figsize=(11.0, 4.2)):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _axes(ax, figsize=(11.0, 4.2)):
    """(figure, axes): the given axes and its figure, or a new single-axes figure."""
    if ax is not None:
        return ax.get_figure(), ax
    fig = _new_figure(figsize)
    return fig, fig.add_subplot()


def _thousands(axis) -> None:
    """Tick labels with thousands separators (12,000 rather than 12000 or 1.2e4)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"))


def _t(text) -> str:
    """A user string (column name) for matplotlib text, with ``$`` escaped so that
    a name is never parsed as mathtext (where a malformed formula fails to draw)."""
    return str(text).replace("$", r"\$")


def _pct(interval: float) -> str:
    return f"{100 * interval:g}%"


def _units_note(result) -> str:
    # Log-target results are in original units too (counterfactual contributions).
    return " (multiplicative model)" if getattr(result.spec, "log_target", False) else ""


def _legend_below(ax) -> None:
    """The legend in one row (or a few) under the x axis: time axes stay aligned between plots."""
    handles, labels = ax.get_legend_handles_labels()
    # Columns so that the legend stays about as wide as the axes (~140 characters of
    # small text on the default 11 inch figure): a wider legend would shrink the axes.
    widest = max((len(x) for x in labels), default=1) + 5
    ncol = max(1, min(len(labels), 140 // widest))
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=ncol,
        fontsize="small",
        frameon=False,
    )


# ---------------------------------------------------------------------------- plots
def plot_fit(result, ax=None):
    """Actual vs posterior-predictive mean with its 95% interval over the dates.

    With a hold-out set (``result.holdout``), the forecast of the held-out
    periods (:meth:`~fastmmm.results.MMMResult.predict`) and their actuals are
    drawn after the training period, in another colour, on a shaded band that
    starts at a dashed vertical line.

    Lines: fitted mean and actual (+ the boundary line, the forecast mean and
    the hold-out actuals). Collections: one interval band (+ the hold-out
    shading and the forecast band).
    """
    fig, ax = _axes(ax)
    fit = result.fitted(INTERVAL)
    ax.fill_between(
        fit.index,
        fit["low"],
        fit["high"],
        color=_FIT,
        alpha=0.2,
        linewidth=0,
        label=f"{_pct(INTERVAL)} predictive interval",
    )
    ax.plot(fit.index, fit["mean"], color=_FIT, linewidth=1.6, label="posterior predictive mean")
    ax.plot(
        fit.index,
        fit["actual"],
        color=_ACTUAL,
        linewidth=0.9,
        marker=".",
        markersize=3,
        label="actual",
    )

    holdout = getattr(result, "holdout", None)
    if holdout is not None and len(holdout.dates):
        pr = result.predict(holdout, INTERVAL, seed=result.seed)
        start = pr.index[0]
        if len(fit.index):
            # The boundary half a period before the first hold-out date.
            start = fit.index[-1] + (pr.index[0] - fit.index[-1]) / 2
        ax.axvspan(start, pr.index[-1], color=_FORECAST, alpha=0.06, linewidth=0)
        ax.axvline(start, color=_FORECAST, linestyle="--", linewidth=1.0, label="hold-out start")
        ax.fill_between(
            pr.index,
            pr["low"],
            pr["high"],
            color=_FORECAST,
            alpha=0.2,
            linewidth=0,
            label=f"hold-out {_pct(INTERVAL)} interval",
        )
        ax.plot(pr.index, pr["mean"], color=_FORECAST, linewidth=1.6, label="forecast mean")
        if "actual" in pr:
            ax.plot(
                pr.index,
                pr["actual"],
                color=_ACTUAL,
                linewidth=0.9,
                marker="o",
                markersize=3.5,
                label="hold-out actual",
            )

    ax.set_title("Model fit: actual vs posterior predictive" + _units_note(result))
    ax.set_ylabel(_t(result.spec.target))
    _thousands(ax.yaxis)
    ax.grid(True, alpha=0.3)
    _legend_below(ax)
    return fig


def _components(result) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Grouped components per date, the fitted line, and the colours in column order."""
    cot = result.contributions_over_time()
    cols: dict[str, np.ndarray] = {}
    colors: list[str] = []
    t = len(cot)
    base = np.zeros(t)
    has_base = False
    for k in ("baseline", "intercept", "trend"):  # baseline: a log-target model's non-media level
        if k in cot:
            base = base + cot[k].to_numpy()
            has_base = True
    if has_base:
        cols["baseline"] = base
        colors.append(_BASELINE)
    if "seasonality" in cot:
        cols["seasonality"] = cot["seasonality"].to_numpy()
        colors.append(_SEASONALITY)
    controls = [c for c in result.spec.controls if c in cot]
    if controls:
        cols["controls"] = cot[controls].sum(axis=1).to_numpy()
        colors.append(_CONTROLS)
    for i, ch in enumerate(result.channels):
        if ch in cot:
            cols[ch] = cot[ch].to_numpy()
            colors.append(_channel_color(i))
    return pd.DataFrame(cols, index=cot.index), cot["fitted"], colors


def plot_contributions(result, ax=None):
    """Stacked areas of the posterior-mean contribution of every component over time.

    Components: baseline (intercept + trend), seasonality, controls (summed)
    and one per channel (in ``result.contributions_over_time()`` units).
    Positive parts are stacked upwards from zero and negative parts downwards,
    so a component that is sometimes negative (seasonality, an event control)
    never hides another; the stacks' net is the fitted line drawn on top.

    One legend entry per component; lines: fitted and actual.
    """
    fig, ax = _axes(ax)
    comp, fitted, colors = _components(result)
    x = comp.index
    pos_top = np.zeros(len(comp))
    neg_bottom = np.zeros(len(comp))
    for (name, v), color in zip(comp.items(), colors):
        v = np.nan_to_num(v.to_numpy(dtype=float))
        pos, neg = np.clip(v, 0, None), np.clip(v, None, 0)
        label = _t(name)
        if np.any(pos > 0):
            ax.fill_between(x, pos_top, pos_top + pos, color=color, alpha=0.85, linewidth=0, label=label)
            pos_top = pos_top + pos
            label = None
        if np.any(neg < 0):
            ax.fill_between(
                x, neg_bottom + neg, neg_bottom, color=color, alpha=0.85, linewidth=0, label=label
            )
            neg_bottom = neg_bottom + neg
    ax.plot(x, fitted.to_numpy(), color=_ACTUAL, linewidth=1.4, label="fitted (sum)")
    if result.data.y is not None:
        ax.plot(
            x,
            np.asarray(result.data.y),
            color=_ACTUAL,
            linestyle="none",
            marker=".",
            markersize=3,
            alpha=0.6,
            label="actual",
        )
    if np.any(neg_bottom < 0):
        ax.axhline(0, color=_ACTUAL, linewidth=0.6)
    ax.set_title("Contributions over time (posterior mean; negative parts below zero)" + _units_note(result))
    ax.set_ylabel(f"contribution to {_t(result.spec.target)}")
    _thousands(ax.yaxis)
    ax.grid(True, alpha=0.3)
    _legend_below(ax)
    return fig


def plot_roas(result, ax=None):
    """Posterior of each channel's ROAS and marginal ROAS as violins.

    For every channel two violins side by side: ROAS (contribution per unit of
    spend over the training period) and mROAS (extra contribution per extra
    unit of spend at the current level), each with its mean (white dot) and
    95% interval (thick bar). A channel without spend (all draws NaN) is
    labelled instead.

    Collections: one violin body per channel and quantity with finite draws.
    """
    fig, ax = _axes(ax, figsize=(11.0, 3.8))
    draws = result.channel_draws()
    lo_q, hi_q = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
    width = 0.36
    kinds = (("roas", "ROAS", -0.2), ("mroas", "mROAS", 0.2))
    colors = {"roas": "#1f77b4", "mroas": "#ff7f0e"}
    labelled = set()
    for c in range(len(result.channels)):
        for key, name, off in kinds:
            v = np.asarray(draws[key])[:, c]
            v = v[np.isfinite(v)]
            pos = c + off
            if v.size == 0:
                ax.text(pos, 0, "no spend", rotation=90, ha="center", va="bottom", fontsize="small")
                continue
            if np.ptp(v) > 0:
                parts = ax.violinplot([v], positions=[pos], widths=width, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(colors[key])
                    body.set_edgecolor(colors[key])
                    body.set_alpha(0.45)
                    if key not in labelled:
                        body.set_label(f"{name} posterior")
                        labelled.add(key)
            lo, hi = np.quantile(v, [lo_q, hi_q])
            ax.vlines(pos, lo, hi, color=colors[key], linewidth=4)
            ax.plot(
                [pos],
                [v.mean()],
                marker="o",
                markersize=6,
                markerfacecolor="white",
                markeredgecolor=_ACTUAL,
                linestyle="none",
            )
    ax.plot(
        [],
        [],
        marker="o",
        markerfacecolor="white",
        markeredgecolor=_ACTUAL,
        linestyle="none",
        label="mean",
    )
    ax.plot([], [], color="#555555", linewidth=4, label=f"{_pct(INTERVAL)} interval")
    ax.set_xticks(range(len(result.channels)), [_t(c) for c in result.channels])
    ax.set_xlim(-0.6, len(result.channels) - 0.4)
    ax.axhline(0, color=_ACTUAL, linewidth=0.6)
    ax.set_title("Return on ad spend: ROAS and marginal ROAS posteriors" + _units_note(result))
    ax.set_ylabel(f"{_t(result.spec.target)} per unit of spend")
    _thousands(ax.yaxis)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    return fig


def plot_response_curves(result, ax=None):
    """Response curve of each channel: total contribution against total spend.

    From :meth:`~fastmmm.results.MMMResult.response_curve` (the training-period
    spend scaled by 0..2, carry-over included): the posterior mean as a line
    with its 95% interval band and the current spend marked with a dot
    (multiplier 1) and a dotted vertical line.

    ``ax``: None (a new figure with one panel per channel, each with its own
    spend axis), one Axes (every channel overlaid on it) or a sequence of one
    Axes per channel.

    Per channel: lines = mean curve, current-spend marker and vertical line;
    collections = one interval band.
    """
    channels = result.channels
    n = len(channels)
    if ax is None:
        ncols = min(n, 3)
        nrows = math.ceil(n / ncols)
        fig = _new_figure((11.0, 3.3 * nrows))
        axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    elif isinstance(ax, (list, tuple, np.ndarray)):
        axes = list(np.ravel(ax))
        if len(axes) != n:
            raise ValueError(f"ax: expected {n} axes (one per channel), got {len(axes)}")
        fig = axes[0].get_figure()
    else:
        fig, axes = ax.get_figure(), [ax] * n
    overlaid = n > 1 and len({id(a) for a in axes}) == 1
    curves = result.response_curves(interval=INTERVAL)
    for i, ch in enumerate(channels):
        a = axes[i]
        rc = curves[curves["channel"] == ch].reset_index(drop=True)
        color = _channel_color(i)
        a.fill_between(
            rc["spend"],
            rc["low"],
            rc["high"],
            color=color,
            alpha=0.2,
            linewidth=0,
            label=f"{_t(ch)} {_pct(INTERVAL)} interval" if overlaid else f"{_pct(INTERVAL)} interval",
        )
        a.plot(
            rc["spend"],
            rc["mean"],
            color=color,
            linewidth=1.8,
            label=f"{_t(ch)} mean" if overlaid else "posterior mean",
        )
        cur = rc.iloc[int(np.argmin(np.abs(rc["multiplier"].to_numpy() - 1.0)))]
        if not np.isclose(cur["multiplier"], 1.0):
            cur = result.response_curve(ch, multipliers=[1.0], interval=INTERVAL).iloc[0]
        a.axvline(cur["spend"], color=color, linestyle=":", linewidth=1.0)
        a.plot(
            [cur["spend"]],
            [cur["mean"]],
            marker="o",
            markersize=7,
            color=color,
            markeredgecolor=_ACTUAL,
            linestyle="none",
            label=f"{_t(ch)} current spend" if overlaid else "current spend",
        )
        if not overlaid or i == 0:
            _thousands(a.xaxis)
            _thousands(a.yaxis)
            a.set_xlabel("total spend over the training period")
            a.set_ylabel(f"contribution to {_t(result.spec.target)}")
            a.grid(True, alpha=0.3)
        if not overlaid:
            a.set_title(f"Response curve: {_t(ch)}" + _units_note(result))
            a.legend(loc="upper left", fontsize="small", framealpha=0.85)
    if overlaid:
        axes[0].set_title("Response curves" + _units_note(result))
        axes[0].legend(loc="upper left", fontsize="small", framealpha=0.85)
    return fig


# ---------------------------------------------------------------------------- the same charts as SVG
def _dates(index) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(index).values.astype("datetime64[D]"))


def svg_fit(result) -> str:
    """:func:`plot_fit` as an SVG element (for the HTML report; no matplotlib)."""
    from fastmmm.svgplot import Panel

    fit = result.fitted(INTERVAL)
    x = _dates(fit.index)
    holdout = getattr(result, "holdout", None)
    pr = None
    if holdout is not None and len(holdout.dates):
        pr = result.predict(holdout, INTERVAL, seed=result.seed)
    xall = x if pr is None else np.concatenate([x, _dates(pr.index)])
    p = Panel(
        title="Model fit: actual vs posterior predictive" + _units_note(result),
        x=xall,
        ylabel=str(result.spec.target),
    )
    p.band(x, fit["low"], fit["high"], color=_FIT, label=f"{_pct(INTERVAL)} predictive interval")
    p.line(x, fit["mean"], color=_FIT, width=1.8, label="posterior predictive mean")
    p.line(x, fit["actual"], color=_ACTUAL, width=0.9, marker=1.6, label="actual")
    if pr is not None:
        xp = _dates(pr.index)
        start = x[-1] + (xp[0] - x[-1]) / 2 if len(x) else xp[0]
        p.vspan(start, xp[-1], color=_FORECAST)
        p.vline(start, color=_FORECAST, label="hold-out start")
        p.band(xp, pr["low"], pr["high"], color=_FORECAST, label=f"hold-out {_pct(INTERVAL)} interval")
        p.line(xp, pr["mean"], color=_FORECAST, width=1.8, label="forecast mean")
        if "actual" in pr:
            p.points(xp, pr["actual"], color=_ACTUAL, size=2.6, label="hold-out actual")
    return p.svg()


def svg_contributions(result) -> str:
    """:func:`plot_contributions` as an SVG element."""
    from fastmmm.svgplot import Panel

    comp, fitted, colors = _components(result)
    x = _dates(comp.index)
    p = Panel(
        title="Contributions over time (posterior mean; negative parts below zero)" + _units_note(result),
        x=x,
        ylabel=f"contribution to {result.spec.target}",
    )
    pos_top = np.zeros(len(comp))
    neg_bottom = np.zeros(len(comp))
    for (name, v), color in zip(comp.items(), colors):
        v = np.nan_to_num(v.to_numpy(dtype=float))
        pos, neg = np.clip(v, 0, None), np.clip(v, None, 0)
        label = str(name)
        if np.any(pos > 0):
            p.area(x, pos_top, pos_top + pos, color=color, label=label)
            pos_top = pos_top + pos
        if np.any(neg < 0):
            p.area(x, neg_bottom + neg, neg_bottom, color=color, label=label)
            neg_bottom = neg_bottom + neg
    p.line(x, fitted.to_numpy(), color=_ACTUAL, width=1.4, label="fitted (sum)")
    if result.data.y is not None:
        p.points(x, np.asarray(result.data.y), color=_ACTUAL, size=1.4, label="actual")
    if np.any(neg_bottom < 0):
        p.hline(0.0)
    return p.svg()


def svg_roas(result) -> str:
    """:func:`plot_roas` as an SVG element: violins of ROAS and mROAS, mean dot, interval bar."""
    from fastmmm.svgplot import Panel

    draws = result.channel_draws()
    lo_q, hi_q = (1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2
    p = Panel(
        title="Return on ad spend: ROAS and marginal ROAS posteriors" + _units_note(result),
        categories=[str(c) for c in result.channels],
        height=340,
        ylabel=f"{result.spec.target} per unit of spend",
        y=(0.0, 0.0),
    )
    colors = {"roas": "#1f77b4", "mroas": "#ff7f0e"}
    for c in range(len(result.channels)):
        for key, name, off in (("roas", "ROAS", -0.2), ("mroas", "mROAS", 0.2)):
            v = np.asarray(draws[key])[:, c]
            v = v[np.isfinite(v)]
            if v.size == 0:
                p.text(c + off, 0.0, "no spend", rotate=True)
                continue
            p.violin(c + off, v, color=colors[key], label=f"{name} posterior")
            lo, hi = np.quantile(v, [lo_q, hi_q])
            p.interval(c + off, lo, hi, color=colors[key], label=f"{_pct(INTERVAL)} interval")
            p.points([c + off], [v.mean()], color=_ACTUAL, fill="#fff", size=4, label="mean")
    p.hline(0.0)
    return p.svg()


def svg_response_curves(result) -> str:
    """:func:`plot_response_curves` as SVG elements, one small panel per channel."""
    from fastmmm.svgplot import Panel

    # The current spend (multiplier 1) is one of the curve's points: one batched evaluation.
    mult = np.linspace(0.0, 2.0, 21)
    curves = result.response_curves(mult, interval=INTERVAL)
    spend = np.asarray(result.data.spend, dtype=float).sum(axis=0)
    cur = curves[np.isclose(curves["multiplier"], 1.0)]
    panels = []
    for i, ch in enumerate(result.channels):
        rc = curves[curves["channel"] == ch]
        color = _channel_color(i)
        p = Panel(
            title=f"{ch}" + _units_note(result),
            x=rc["spend"].to_numpy(),
            width=480,
            height=320,
            margin=(34, 18, 58, 84),
            font=1.35,
            xlabel="total spend over the training period",
            ylabel=f"contribution to {result.spec.target}",
            y=(0.0, 0.0),
        )
        p.band(rc["spend"], rc["low"], rc["high"], color=color, label=f"{_pct(INTERVAL)} interval")
        p.line(rc["spend"], rc["mean"], color=color, width=2.0, label="posterior mean")
        now = cur[cur["channel"] == ch]
        p.vline(float(spend[i]), color=color, dash="2,3")
        p.points(
            [float(spend[i])],
            now["mean"].to_numpy(),
            color=_ACTUAL,
            fill=color,
            size=5,
            label="current spend",
        )
        panels.append(f'<div class="panel">{p.svg()}</div>')
    return '<div class="panels">' + "".join(panels) + "</div>"


# ---------------------------------------------------------------------------- report
def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _num(v, digits: int = 3) -> str:
    """A number for a table: significant digits, thousands separators, n/a for None/NaN."""
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e(v)
    if not math.isfinite(f):
        return "n/a"
    if abs(f) >= 999.5:
        return f"{f:,.0f}"
    if f == 0:
        return "0"
    return f"{f:#.{digits}g}".rstrip(".")  # 29.0 rather than 29 next to 55.3


def _kinds(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items())
    return ", ".join(str(x) for x in v)


def _header(result) -> str:
    spec, data = result.spec, result.data
    dates = pd.DatetimeIndex(data.dates)
    freq = {"W": "weekly", "D": "daily"}.get(str(data.frequency), str(data.frequency))
    hold = result.holdout
    n_hold = 0 if hold is None else len(hold.dates)
    chains, n_draw = result.posterior.n_chains, result.posterior.n_draws
    timing = result.timing or {}
    tparts = [
        f"{k.removesuffix('_s')} {float(timing[k]):.2f} s"
        for k in ("build_s", "compile_s", "sample_s", "total_s")
        if k in timing
    ]
    normalised = ", normalised" if spec.adstock_normalize else ""
    seasonality = f"yearly, Fourier order {spec.yearly_seasonality}" if spec.yearly_seasonality else "none"
    rows = [
        ("target", spec.target),
        ("channels", ", ".join(spec.channels)),
        ("controls", ", ".join(spec.controls) or "none"),
        ("adstock", f"{_kinds(spec.adstock)} (l_max {spec.l_max}{normalised})"),
        ("saturation", _kinds(spec.saturation)),
        ("seasonality", seasonality),
        (
            "trend / intercept",
            f"{'yes' if spec.trend else 'no'} / {'yes' if spec.intercept else 'no'}",
        ),
        ("likelihood", spec.likelihood + (", log target" if spec.log_target else "")),
        (
            "dates",
            f"{dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d} ({freq})" if len(dates) else "none",
        ),
        (
            "observations",
            f"{len(dates)} training"
            + (
                f" + {n_hold} hold-out ({pd.Timestamp(hold.dates[0]):%Y-%m-%d} to "
                f"{pd.Timestamp(hold.dates[-1]):%Y-%m-%d})"
                if n_hold
                else ""
            ),
        ),
        ("sampling", f"{chains} chains x {n_draw} draws, seed {result.seed}"),
        ("timing", ", ".join(tparts) or "n/a"),
        ("backend", result.backend),
    ]
    half = (len(rows) + 1) // 2
    tables = []
    for part in (rows[:half], rows[half:]):
        body = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in part)
        tables.append(f'<table class="kv">\n{body}\n</table>')
    return '<div class="header">\n' + "\n".join(tables) + "\n</div>"


def _channel_table(result) -> str:
    cs = result.channel_summary(INTERVAL)
    pct = _pct(INTERVAL)
    head = (
        "<tr><th>channel</th><th>spend</th><th>contribution</th><th>share</th>"
        "<th>ROAS</th><th>mROAS</th></tr>"
    )

    def cell(row, q, scale=1.0, suffix=""):
        m, lo, hi = (row.get(f"{q}_{k}") for k in ("mean", "low", "high"))
        f = (lambda x: _num(None if x is None else float(x) * scale)) if scale != 1.0 else _num
        return (
            f'<td><span class="m">{f(m)}{suffix}</span>'
            f'<span class="ci">[{f(lo)}{suffix}, {f(hi)}{suffix}]</span></td>'
        )

    rows = []
    for ch in result.channels:
        row = cs.loc[ch].to_dict() if ch in cs.index else {}
        rows.append(
            f"<tr><th>{_e(ch)}</th><td>{_num(row.get('spend'))}</td>"
            + cell(row, "contribution")
            + cell(row, "contribution_share", 100.0, "%")
            + cell(row, "roas")
            + cell(row, "mroas")
            + "</tr>"
        )
    note = (
        f"Posterior mean with its {pct} interval in brackets. Spend and contribution are totals over "
        "the training period (contribution includes carry-over); ROAS = contribution / spend; "
        "mROAS = extra contribution per extra unit of spend at the current level (1% more spend)."
    )
    if getattr(result.spec, "log_target", False):
        note += (
            " Multiplicative model: a contribution is the expected sales minus those without the "
            "channel (counterfactual); mROAS and response curves count the fitted dates only (no "
            "carry-over past the last one)."
        )
    return f'<table class="grid">\n{head}\n' + "\n".join(rows) + f'\n</table>\n<p class="note">{_e(note)}</p>'


def _diagnostics(v) -> str:
    th = v.thresholds

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    def num(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    rows = [
        ("in-sample MAPE", pct(v.mape_in_sample), f"&lt; {100 * th['mape']:g}%", "mape_in_sample"),
        ("hold-out MAPE", pct(v.mape_holdout), f"&lt; {100 * th['mape']:g}%", "mape_holdout"),
        ("R&sup2;", num(v.r2, ".3f"), "", None),
        ("max R-hat", num(v.rhat_max, ".4f"), f"&lt; {_e(th['rhat'])}", "rhat"),
        ("min bulk ESS", num(v.ess_bulk_min, ".0f"), f"&ge; {float(th['ess']):g} per chain", "ess"),
        ("min tail ESS", num(v.ess_tail_min, ".0f"), "", None),
        ("divergences", num(v.divergences, "d"), f"&le; {_e(th['divergences'])}", "divergences"),
    ]
    out = []
    for name, value, thresh, key in rows:
        ok = v.checks.get(key) if key else None
        if key is None:
            status, cls = "", "info"
        elif ok is None:
            status, cls = "n/a", "na"
        else:
            status, cls = ("pass", "pass") if ok else ("FAIL", "fail")
        out.append(
            f'<tr class="{cls}"><th>{name}</th><td>{_e(value)}</td><td>{thresh}</td>'
            f'<td class="status">{status}</td></tr>'
        )
    verdict = (
        '<p class="verdict pass">All checks passed.</p>'
        if v.passed
        else f'<p class="verdict fail">{len(v.failures)} check(s) failed.</p>'
    )
    fails = ""
    if v.failures:
        fails = '<ul class="failures">\n' + "\n".join(f"<li>{_e(s)}</li>" for s in v.failures) + "\n</ul>"
    return (
        verdict + '\n<table class="grid diag">\n'
        "<tr><th>check</th><th>value</th><th>threshold</th><th>status</th></tr>\n"
        + "\n".join(out)
        + "\n</table>\n"
        + fails
    )


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1140px; margin: 24px auto; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; }
.header { display: flex; flex-wrap: wrap; gap: 0 48px; align-items: flex-start; }
table.kv th { text-align: left; padding: 2px 16px 2px 0; color: #555; font-weight: 600;
              vertical-align: top; white-space: nowrap; }
table.kv td { padding: 2px 0; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
table.grid tr:first-child th { background: #f3f3f3; text-align: center; }
table.grid th { text-align: left; }
table.grid td .m { display: block; font-weight: 600; }
table.grid td .ci { display: block; color: #666; font-size: 0.85em; white-space: nowrap; }
table.diag td, table.diag th { text-align: left; }
tr.pass td.status { color: #1a7f37; font-weight: 700; }
tr.fail td.status { color: #c62828; font-weight: 700; }
tr.fail { background: #fdecea; }
tr.na td.status { color: #888; }
.verdict { font-weight: 700; padding: 6px 10px; border-radius: 4px; display: inline-block; }
.verdict.pass { background: #e6f4ea; color: #1a7f37; }
.verdict.fail { background: #fdecea; color: #c62828; }
ul.failures li { color: #c62828; margin: 4px 0; }
.note { color: #666; font-size: 0.9em; }
figure { margin: 8px 0 12px 0; }
figure svg { display: block; max-width: 100%; height: auto; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 8px 16px; }
figcaption { color: #555; font-size: 0.9em; }
footer { color: #888; font-size: 0.85em; margin-top: 2em; }
"""

_PLOTS = (
    (
        "fit",
        "Model fit",
        svg_fit,
        (
            "Actual target against the posterior-predictive mean and its {pct} interval; the hold-out "
            "forecast, if any, is drawn after the dashed line."
        ),
    ),
    (
        "contributions",
        "Contributions over time",
        svg_contributions,
        (
            "Posterior-mean contribution of each component, positive parts stacked above zero and "
            "negative parts below; the black line is their sum (the fitted mean)."
        ),
    ),
    (
        "roas",
        "ROAS and marginal ROAS",
        svg_roas,
        (
            "Posterior distribution of each channel's ROAS and mROAS: the dot is the mean, the bar the "
            "{pct} interval."
        ),
    ),
    (
        "response",
        "Response curves",
        svg_response_curves,
        (
            "Total contribution if the channel's training-period spend were scaled from 0x to 2x; the "
            "dot marks the current spend."
        ),
    ),
)


def write_report(result, path) -> Path:
    """Write a self-contained HTML report of ``result`` and return its path.

    The report has a header (model spec, dates, number of observations,
    timing, backend), the channel summary table, the diagnostics of
    :meth:`~fastmmm.results.MMMResult.validate` (pass/fail per check and a
    sentence per failure) and the four charts of this module as inline SVG
    (vector graphics drawn by :mod:`fastmmm.svgplot`: no matplotlib, no images). ``path`` is a file name, or a directory (existing or
    ending in a separator) in which ``report.html`` is written; parent
    directories are created. The file is written to a temporary name and
    renamed, so a failed write never leaves a partial report.
    """
    raw = os.fspath(path)
    path = Path(raw)
    if path.is_dir() or raw.endswith(("/", os.sep)):
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)

    pct = _pct(INTERVAL)
    figures = []
    for key, title, fn, caption in _PLOTS:
        figures.append(
            f'<h2 id="{key}">{_e(title)}</h2>\n<figure>{fn(result)}\n'
            f"<figcaption>{_e(caption.format(pct=pct))}</figcaption></figure>"
        )
    v = result.validate()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    from fastmmm import __version__

    title = f"fastmmm report: {result.spec.target}"
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="sub">Bayesian media mix model; generated {_e(stamp)} by fastmmm {_e(__version__)}.</p>
{_header(result)}
<h2 id="diagnostics">Diagnostics</h2>
{_diagnostics(v)}
<h2 id="channels">Channel summary</h2>
{_channel_table(result)}
{chr(10).join(figures)}
<footer>Generated by fastmmm {_e(__version__)}. All charts are inline SVG; this file needs no other files.</footer>
</body>
</html>
"""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
