"""Split a budget across channels to maximise the posterior response.

The optimiser depends only on :class:`ResponseModel` (a Protocol): anything that
returns, for a weekly spend plan, the incremental response per posterior draw
and its gradient. :class:`PosteriorResponse` implements it with fastmmm's Rust
response kernel (all draws in one call, threaded), for a fitted result or for
explicit parameters.

Known failure modes of other optimisers are handled here: the problem is
scaled to O(1) (budget shares, objective relative to the current allocation)
so gradients are not vanishingly small; channels with zero spend have finite
gradients (the kernels' conventions at x = 0); a warning is issued when the
solution equals the starting point; the result is never worse than the current
allocation under the chosen objective.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fastmmm import _core

__all__ = [
    "ResponseModel",
    "PosteriorResponse",
    "LogTargetResponse",
    "BudgetResult",
    "optimize_budget",
    "parse_objective",
    "plot_allocation",
]


class ResponseModel(Protocol):
    """What the optimiser needs from a model."""

    channels: list[str]

    def response(self, plan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Incremental response of a weekly plan.

        plan : (H, C) spend per week and channel, original units.
        Returns (resp (S,), grad (S, H, C)) in target units per unit of spend.
        """

    def average_weekly_spend(self) -> np.ndarray:
        """(C,) historical average weekly spend (the 'current' allocation)."""


@dataclass
class ChannelGroup:
    """Channels sharing an adstock and a saturation kind, with their posterior draws: what a
    response model needs of a fitted result (``MMMResult.channel_groups``)."""

    adstock: str
    saturation: str
    l_max: int
    normalize: bool
    cols: list[int]
    a: tuple  # (S, Cg) arrays
    s: tuple
    beta: np.ndarray  # (S, Cg)


class PosteriorResponse:
    """Response over posterior draws, computed by the Rust response kernel.

    Parameters
    ----------
    channels : list of channel names (C,)
    groups : channel groups, each with its kernel kinds and (S, Cg) parameters
    channel_scale : (C,) spend scale (kernels work on spend / scale)
    target_scale : response multiplier to target units
    history : (Lh, C) spend before the plan, original units (carry-over into it)
    tail : periods after the plan over which carry-over is counted
    avg_spend : (C,) historical average weekly spend
    """

    def __init__(self, channels, groups, channel_scale, target_scale, history, tail, avg_spend):
        self.channels = list(channels)
        self.groups = list(groups)
        self.channel_scale = np.asarray(channel_scale, dtype=float)
        self.target_scale = float(target_scale)
        self.history = np.asarray(history, dtype=float).reshape(-1, len(self.channels))
        self.tail = int(tail)
        self._avg = np.asarray(avg_spend, dtype=float)
        self.n_draws = self.groups[0].beta.shape[0]

    @classmethod
    def from_params(
        cls,
        channels,
        *,
        adstock="geometric",
        saturation="hill",
        l_max=8,
        normalize=True,
        adstock_params=(),
        saturation_params=(),
        beta,
        channel_scale=None,
        target_scale=1.0,
        history=None,
        avg_spend=None,
    ) -> PosteriorResponse:
        """A response model from explicit kernel parameters, each (S, C) or (C,)."""
        c = len(channels)
        beta = np.atleast_2d(np.asarray(beta, dtype=float))
        s = beta.shape[0]

        def prep(p):
            return np.ascontiguousarray(np.broadcast_to(np.asarray(p, dtype=float), (s, c)))

        g = ChannelGroup(
            adstock,
            saturation,
            int(l_max),
            bool(normalize),
            list(range(c)),
            tuple(prep(p) for p in adstock_params),
            tuple(prep(p) for p in saturation_params),
            prep(beta),
        )
        hist = np.zeros((l_max, c)) if history is None else history
        avg = np.ones(c) if avg_spend is None else avg_spend
        return cls(
            channels,
            [g],
            np.ones(c) if channel_scale is None else channel_scale,
            target_scale,
            hist,
            l_max,
            avg,
        )

    @classmethod
    def from_result(
        cls, result, max_draws: int | None = None, multiplier_weeks: int = 13
    ) -> PosteriorResponse:
        """The response model of a fitted :class:`fastmmm.results.MMMResult`.

        With a time-varying media effect (``spec.time_varying_media``) each
        draw's ``beta`` is multiplied by that draw's media multiplier
        ``exp(g(t))`` averaged over the last ``multiplier_weeks`` weeks of the
        training data: plans are valued at the recent media effectiveness,
        held constant over the horizon (the response kernel takes one amplitude
        per draw and channel). ``result.time_varying(future_dates)`` shows how
        the GP itself extrapolates.
        """
        if getattr(result, "is_panel", False):
            raise ValueError("a panel result's response model is PanelResponse.from_result(result)")
        if getattr(result.spec, "log_target", False):
            return LogTargetResponse.from_result(
                result, max_draws=max_draws, multiplier_weeks=multiplier_weeks
            )
        _, groups, history, tail, avg = _result_parts(result, max_draws, multiplier_weeks)
        return cls(
            result.channels,
            groups,
            np.asarray(result.data.scales.channel_scale, dtype=float),
            float(result.data.scales.target_scale),
            history,
            tail,
            avg,
        )

    def average_weekly_spend(self) -> np.ndarray:
        return self._avg.copy()

    def response(self, plan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        plan = np.asarray(plan, dtype=float)
        h, c = plan.shape
        if c != len(self.channels):
            raise ValueError(f"plan: expected {len(self.channels)} channels, got {c}")
        ps = np.ascontiguousarray(plan / self.channel_scale)
        hs = np.ascontiguousarray(self.history / self.channel_scale)
        resp = np.zeros(self.n_draws)
        grad = np.zeros((self.n_draws, h, c))
        for g in self.groups:
            r, gr = _core.response_draws(
                g.adstock,
                g.saturation,
                g.l_max,
                g.normalize,
                np.ascontiguousarray(hs[:, g.cols]),
                np.ascontiguousarray(ps[:, g.cols]),
                self.tail,
                g.a[0],
                g.a[1] if len(g.a) > 1 else None,
                g.s[0],
                g.s[1] if len(g.s) > 1 else None,
                g.beta,
            )
            resp += r
            grad[:, :, g.cols] += gr
        return resp * self.target_scale, grad * (self.target_scale / self.channel_scale)


class LogTargetResponse(PosteriorResponse):
    """Response over posterior draws for the multiplicative (log-target) model.

    For draw ``s`` the expected target at a period ``t`` after the training data is
    ``L[s, t] * exp(M[s, t])``: ``L`` the baseline level there (intercept, trend,
    seasonality, controls at their means and the time-varying intercept, times
    ``exp(sigma^2 / 2)`` and the target scale) and ``M`` the sum of the channels' log-scale
    media terms of ``[history; plan; zeros]``. The response of a plan is what it adds over
    the plan and ``tail`` periods after it: ``sum_t L (exp(M) - exp(M0))``, ``M0`` the media
    terms of the history alone (its carry-over). Channels multiply one another here, so the
    media terms and their spend gradient come from the fused Rust kernels batched over all
    draws (:func:`fastmmm.kernels.media_transform` / ``_vjp``), combined in numpy.
    """

    def __init__(self, channels, groups, channel_scale, target_scale, history, tail, avg_spend, level_at):
        super().__init__(channels, groups, channel_scale, target_scale, history, tail, avg_spend)
        # level_at(n) -> (S, n) baseline level at the n periods after the training data.
        self._level_at = level_at
        self._levels = np.zeros((self.n_draws, 0))
        self._no_plan: dict[int, np.ndarray] = {}  # horizon -> (S,) expected sales without a plan

    @classmethod
    def from_result(cls, result, max_draws: int | None = None, multiplier_weeks: int = 13):
        if not getattr(result.spec, "log_target", False):
            raise ValueError("LogTargetResponse: the result is not a log_target model")
        sel, groups, history, tail, avg = _result_parts(result, max_draws, multiplier_weeks)
        half_var = 0.5 * np.square(result.draws("sigma")[sel])[:, None]
        ts = float(result.data.scales.target_scale)

        def level_at(periods: int) -> np.ndarray:
            base = result.baseline_draws(result.future_rows(periods), draws=sel)
            return np.exp(base + half_var)

        # The kernels' outputs are log-scale terms: the target scale enters through the level.
        cs = np.asarray(result.data.scales.channel_scale, dtype=float)
        return cls(result.channels, groups, cs, ts, history, tail, avg, level_at)

    def _level(self, n: int) -> np.ndarray:
        if self._levels.shape[1] < n:
            self._levels = self._level_at(n)
        return self._levels[:, :n]

    def _media_terms(self, plan: np.ndarray):
        """Summed log-scale media terms of ``[history; plan; zeros]`` (S, Lh + H + tail) and,
        per channel group, what its spend VJP needs."""
        from fastmmm import kernels as K

        lh, s = self.history.shape[0], self.n_draws
        series = np.vstack([self.history, plan, np.zeros((self.tail, plan.shape[1]))]) / self.channel_scale
        m = np.zeros((s, series.shape[0]))
        parts = []
        for g in self.groups:
            x = np.broadcast_to(series[:, g.cols], (s, series.shape[0], len(g.cols)))
            kw = dict(l_max=g.l_max, normalize=g.normalize)
            y, cache = K.media_transform(x, g.adstock, g.saturation, g.a, g.s, **kw)
            m += np.einsum("stc,sc->st", y, g.beta)
            parts.append((g, x, cache, kw))
        return m[:, lh:], parts

    def _without_plan(self, h: int) -> np.ndarray:
        """(S,) expected sales over the horizon and tail with no plan (the history's carry-over
        only): the same for every plan of length ``h``, so computed once."""
        if h not in self._no_plan:
            m0, _ = self._media_terms(np.zeros((h, len(self.channels))))
            self._no_plan[h] = (self._level(h + self.tail) * np.exp(m0)).sum(axis=1)
        return self._no_plan[h]

    def response(self, plan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from fastmmm import kernels as K

        plan = np.asarray(plan, dtype=float)
        h, c = plan.shape
        if c != len(self.channels):
            raise ValueError(f"plan: expected {len(self.channels)} channels, got {c}")
        lh, s = self.history.shape[0], self.n_draws
        m, parts = self._media_terms(plan)
        with_plan = self._level(h + self.tail) * np.exp(m)
        resp = (with_plan.sum(axis=1) - self._without_plan(h)) * self.target_scale
        grad = np.zeros((s, h, c))
        for g, x, cache, kw in parts:
            cot = np.zeros(x.shape)
            cot[:, lh:, :] = with_plan[:, :, None] * g.beta[:, None, :]
            gx, _, _ = K.media_transform_vjp(
                x, cot, cache, g.adstock, g.saturation, g.a, g.s, want_gx=True, **kw
            )
            grad[:, :, g.cols] = gx[:, lh : lh + h, :]
        return resp, grad * (self.target_scale / self.channel_scale)


class PanelResponse:
    """Response over every (group, channel) cell of a fitted panel: the sum of each
    group's own response model (:class:`PosteriorResponse` of
    ``result.group_result(g)``), evaluated on the same posterior draws so that risk
    objectives see the joint uncertainty. ``channels`` are the cells, ``(group,
    channel)`` pairs; a cell without training spend in its group is left out (its
    response was not learned). ``cell_groups`` names each cell's group.
    """

    def __init__(self, group_names, parts):
        self.group_names = [str(g) for g in group_names]
        self.parts = list(parts)
        self.channels: list = []
        self._cols = []  # per group: (cell indices, channel indices)
        for g, part in zip(self.group_names, self.parts):
            chans = [i for i, a in enumerate(part.average_weekly_spend()) if a > 0]
            start = len(self.channels)
            self.channels += [(g, part.channels[i]) for i in chans]
            self._cols.append((np.arange(start, len(self.channels)), np.array(chans, dtype=int)))
        self.cell_groups = [g for g, _ in self.channels]
        self.n_draws = self.parts[0].n_draws

    @classmethod
    def from_result(cls, result, max_draws: int | None = None, multiplier_weeks: int = 13) -> PanelResponse:
        """The response model of a fitted panel result (``result.is_panel``)."""
        parts = [
            PosteriorResponse.from_result(r, max_draws=max_draws, multiplier_weeks=multiplier_weeks)
            for r in result.group_results()
        ]
        # Plans start after the panel's last date. A group that stopped early has spent nothing
        # since its own last date: its carry-over into the plan is what its last spend leaves
        # after that gap (none once the gap reaches l_max), not its spend as of its last date.
        periods = len(result.dates)
        for part, (_, end) in zip(parts, result.windows):
            gap = periods - end
            if gap > 0:
                lh, c = part.history.shape
                part.history = np.vstack([part.history, np.zeros((gap, c))])[-lh:]
        return cls(result.groups, parts)

    def average_weekly_spend(self) -> np.ndarray:
        return np.concatenate([p.average_weekly_spend()[ch] for p, (_, ch) in zip(self.parts, self._cols)])

    def response(self, plan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        plan = np.asarray(plan, dtype=float)
        h, n = plan.shape
        if n != len(self.channels):
            raise ValueError(f"plan: expected {len(self.channels)} cells, got {n}")
        resp = np.zeros(self.n_draws)
        grad = np.zeros((self.n_draws, h, n))
        for part, (cells, chans) in zip(self.parts, self._cols):
            gp = np.zeros((h, len(part.channels)))
            gp[:, chans] = plan[:, cells]
            r, gr = part.response(gp)
            resp += r
            grad[:, :, cells] = gr[:, :, chans]
        return resp, grad


def cell_bounds(model: PanelResponse, bounds) -> dict:
    """Bounds of a panel's cells from per-cell ``{(group, channel): (lo, hi)}`` or
    ``{group: {channel: (lo, hi)}}`` entries and per-channel ``{channel: (lo, hi)}`` ones
    (the same bounds for that channel's cell in every group; a cell's own entry wins)."""
    cells = list(model.channels)
    channels = {ch for _, ch in cells}
    groups = set(model.group_names)
    per_channel, per_cell = {}, {}
    for key, val in (bounds or {}).items():
        if isinstance(key, tuple):
            per_cell[(str(key[0]), key[1])] = val
        elif isinstance(val, dict):
            if str(key) not in groups:
                raise ValueError(f"bounds: unknown group {key!r}; groups are {sorted(groups)}")
            for ch, v in val.items():
                per_cell[(str(key), ch)] = v
        elif key in channels:
            per_channel[key] = val
        elif key in model.parts[0].channels:
            raise ValueError(f"bounds: no group spent on channel {key!r} (it has no cell)")
        else:
            raise ValueError(f"bounds: {key!r} is neither a channel ({sorted(channels)}) nor a group's cells")
    for cell in per_cell:
        if cell not in cells:
            raise ValueError(f"bounds: no cell {cell!r} (a group and a channel it spent on)")
    out = {cell: per_channel[cell[1]] for cell in cells if cell[1] in per_channel}
    out.update(per_cell)
    return out


def _result_parts(result, max_draws, multiplier_weeks):
    """What a response model takes from a fitted result: the draws used (a slice), its channel
    groups (:class:`ChannelGroup`, beta times the recent media multiplier with
    ``time_varying_media``), the last ``l_max`` periods of spend, the tail length and the
    average spend per period."""
    n = result.n_draws
    sel = slice(None) if max_draws is None or max_draws >= n else slice(0, n, max(1, n // max_draws))
    groups = result.channel_groups(draws=sel, multiplier_weeks=multiplier_weeks)
    spend = np.asarray(result.data.spend, dtype=float)
    lh = int(result.spec.l_max)
    return sel, groups, spend[-lh:], lh, spend.mean(axis=0)


@dataclass
class BudgetResult:
    """The optimised allocation and what it is expected to bring (target units)."""

    budget: float
    weeks: int
    objective: str
    allocation: dict
    expected_response: dict
    current_allocation: dict
    current_response: dict
    uplift: dict
    mroas: dict
    weekly_plan: np.ndarray = field(repr=False)
    success: bool = True
    message: str = ""
    #: Per channel (cell), the response of its optimal budget alone (mean, low, high).
    response: dict = field(default_factory=dict)
    #: The fixed totals per group the allocation was held to (panels), if any.
    group_totals: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready; a panel's per-cell dicts nest as ``{group: {channel: value}}``."""
        out = {
            "budget": self.budget,
            "weeks": self.weeks,
            "objective": self.objective,
            "allocation": _nested(self.allocation),
            "expected_response": self.expected_response,
            "current_allocation": _nested(self.current_allocation),
            "current_response": self.current_response,
            "uplift": self.uplift,
            "mroas": _nested(self.mroas),
            "response": _nested(self.response),
            "success": self.success,
            "message": self.message,
        }
        if self.group_totals is not None:
            out["group_totals"] = self.group_totals
        return out


def _nested(d: dict) -> dict:
    """``{(group, channel): v}`` as ``{group: {channel: v}}``; other dicts unchanged."""
    if not d or not all(isinstance(k, tuple) for k in d):
        return dict(d)
    out: dict = {}
    for (g, ch), v in d.items():
        out.setdefault(str(g), {})[ch] = v
    return out


def parse_objective(objective) -> tuple[str, float]:
    """'mean' | 'quantile:Q' | 'mean_sd:LAMBDA' | 'profit:TARGET_ROAS' -> (kind, parameter)."""
    if isinstance(objective, tuple):
        return objective
    kind, _, arg = str(objective).partition(":")
    if kind == "mean" and not arg:
        return "mean", 0.0
    try:
        val = float(arg)
    except ValueError:
        raise ValueError(
            f"objective: {objective!r} is not one of mean, quantile:Q, mean_sd:LAMBDA, profit:TARGET_ROAS"
        ) from None
    if kind == "quantile" and 0 < val < 1:
        return kind, val
    if kind in ("mean_sd", "profit") and val > 0:
        return kind, val
    raise ValueError(f"objective: bad value in {objective!r}")


def _objective(kind, arg, resp, gch, spend_total):
    """Objective value and gradient w.r.t. channel budgets; gch is (S, C)."""
    if kind == "mean":
        return resp.mean(), gch.mean(axis=0)
    if kind == "mean_sd":
        sd = resp.std()
        cov = ((resp - resp.mean())[:, None] * (gch - gch.mean(axis=0))).mean(axis=0)
        return resp.mean() - arg * sd, gch.mean(axis=0) - arg * (cov / sd if sd > 0 else 0.0)
    if kind == "quantile":
        # Empirical quantile with linear interpolation; its gradient is the same
        # interpolation of the two bracketing draws' gradients.
        order = np.argsort(resp)
        pos = arg * (len(resp) - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, len(resp) - 1)
        w = pos - lo
        i, j = order[lo], order[hi]
        return (1 - w) * resp[i] + w * resp[j], (1 - w) * gch[i] + w * gch[j]
    if kind == "profit":
        # Each unit of spend has to return `arg` units of response to pay off: a channel is
        # funded while its marginal ROAS is above the target.
        return resp.mean() - arg * spend_total, gch.mean(axis=0) - arg
    raise ValueError(kind)


def _interval(x, interval):
    q = np.quantile(x, [(1 - interval) / 2, 1 - (1 - interval) / 2])
    return {"mean": float(np.mean(x)), "low": float(q[0]), "high": float(q[1])}


def _project(a, lo, hi, total, iters=100):
    """Nearest point (approximately) with lo <= a <= hi and sum(a) == total."""
    a = np.clip(a, lo, hi)
    for _ in range(iters):
        resid = total - a.sum()
        if abs(resid) <= 1e-12 * max(total, 1.0):
            break
        room = (hi - a) if resid > 0 else (a - lo)
        free = room > 0
        if not free.any():
            break
        step = resid * room * free / (room * free).sum()
        a = np.clip(a + step, lo, hi)
    return a


def optimize_budget(
    model: ResponseModel,
    total: float,
    weeks: int,
    *,
    bounds: dict | None = None,
    objective="mean",
    pattern=None,
    start=None,
    interval: float = 0.95,
    group_totals: dict | None = None,
) -> BudgetResult:
    """Maximise the objective over channel budgets for the next ``weeks`` periods.

    Parameters
    ----------
    model : ResponseModel (e.g. ``PosteriorResponse.from_result(result)``)
    total : total budget over the horizon (original spend units)
    weeks : horizon H
    bounds : {channel: (lo, hi)} budget bounds over the horizon; None or missing
        channels mean (0, total); ``hi=None`` means no upper bound.
    objective : "mean", "quantile:0.1", "mean_sd:1.0" or "profit:TARGET_ROAS"
        (profit maximises ``response - TARGET_ROAS * spend`` and treats ``total``
        as a cap: sum(budgets) <= total; at its optimum every funded channel's
        marginal ROAS is the target, or the cap binds).
    pattern : weekly spend pattern, (H,) or (H, C), normalised per channel
        (default flat).
    start : starting budgets (C,), default the historical average mix.
    group_totals : {group: total} fixed budgets of some groups of a panel's cells
        (:class:`PanelResponse`); the rest of ``total`` goes to the other groups' cells.
        On a panel ``bounds`` are keyed by cell, ``(group, channel)``.

    Returns
    -------
    BudgetResult
    """
    from scipy.optimize import minimize

    channels = list(model.channels)
    c = len(channels)
    total = float(total)
    weeks = int(weeks)
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"total: the budget must be a positive number, got {total}")
    if weeks < 1:
        raise ValueError(f"weeks: must be >= 1, got {weeks}")
    kind, arg = parse_objective(objective)
    lo = np.zeros(c)
    hi = np.full(c, total)
    for ch, (b_lo, b_hi) in (bounds or {}).items():
        if ch not in channels:
            raise ValueError(f"bounds: unknown channel {ch!r}; channels are {channels}")
        i = channels.index(ch)
        lo[i] = 0.0 if b_lo is None else float(b_lo)
        hi[i] = total if b_hi is None else float(b_hi)
        if lo[i] < 0 or hi[i] < lo[i]:
            raise ValueError(f"bounds: {ch} needs 0 <= lo <= hi, got ({b_lo}, {b_hi})")
    blocks = _budget_blocks(model, total, group_totals, kind)
    for idx, t, what in blocks:
        if lo[idx].sum() > t * (1 + 1e-12):
            raise ValueError(
                f"bounds are infeasible: the lower bounds add up to {lo[idx].sum():g} > {what} {t:g}"
            )
        if kind != "profit" and hi[idx].sum() < t * (1 - 1e-12):
            raise ValueError(
                f"bounds are infeasible: the upper bounds add up to {hi[idx].sum():g} < {what} {t:g}"
            )
    if pattern is None:
        pat = np.full((weeks, c), 1.0 / weeks)
    else:
        pat = np.asarray(pattern, dtype=float)
        pat = np.broadcast_to(pat[:, None] if pat.ndim == 1 else pat, (weeks, c)).copy()
        if (pat < 0).any() or (pat.sum(axis=0) <= 0).any():
            raise ValueError("pattern: weights must be >= 0 with a positive sum per channel")
        pat /= pat.sum(axis=0)

    def evaluate(a):
        resp, grad = model.response(pat * a[None, :])
        gch = np.einsum("shc,hc->sc", grad, pat)
        return resp, gch

    avg = model.average_weekly_spend() * weeks
    current = avg * (total / avg.sum()) if avg.sum() > 0 else np.full(c, total / c)
    if group_totals:  # today's mix within each group, scaled to the group's total
        current = np.zeros(c)
        for idx, t, _ in blocks:
            w = avg[idx]
            current[idx] = w * (t / w.sum()) if w.sum() > 0 else t / len(idx)
    current_feasible = _project_blocks(current, lo, hi, blocks)
    a0 = (
        current_feasible if start is None else _project_blocks(np.asarray(start, dtype=float), lo, hi, blocks)
    )

    r_start, g_start = evaluate(a0)
    v_start, _ = _objective(kind, arg, r_start, g_start, a0.sum())
    scale = max(abs(v_start), 1e-12)

    def fun(u):
        a = u * total
        r, gch = evaluate(a)
        v, gv = _objective(kind, arg, r, gch, a.sum())
        return -v / scale, -gv * total / scale

    def block_sum(idx, share):
        mask = np.zeros(c)
        mask[idx] = 1.0
        return {"type": "eq", "fun": lambda u: mask @ u - share, "jac": lambda u: mask}

    cons = (
        [{"type": "ineq", "fun": lambda u: 1.0 - u.sum(), "jac": lambda u: -np.ones(c)}]
        if kind == "profit"
        else [block_sum(idx, t / total) for idx, t, _ in blocks]
    )
    res = minimize(
        fun,
        a0 / total,
        jac=True,
        method="SLSQP",
        bounds=list(zip(lo / total, hi / total)),
        constraints=cons,
        options={"maxiter": 500, "ftol": 1e-14},
    )
    a = np.clip(res.x * total, lo, hi)
    if kind != "profit":
        a = _project_blocks(a, lo, hi, blocks)
    r_opt, g_opt = evaluate(a)
    v_opt, _ = _objective(kind, arg, r_opt, g_opt, a.sum())
    message = str(res.message)
    if v_opt < v_start:
        warnings.warn(
            "fastmmm: the optimiser did not improve on the start; returning the starting allocation",
            stacklevel=2,
        )
        a, r_opt, g_opt, message = a0, r_start, g_start, "no improvement over the start: " + message
    elif np.allclose(a, a0, rtol=0, atol=1e-6 * total):
        warnings.warn(
            "fastmmm: the optimal allocation equals the starting allocation (already optimal, or bounds bind)",
            stacklevel=2,
        )
    r_cur, _ = evaluate(current_feasible)
    alone = {}
    for i, ch in enumerate(channels):  # each channel's (cell's) optimal budget on its own
        only = np.zeros(c)
        only[i] = a[i]
        alone[ch] = _interval(evaluate(only)[0], interval)
    return BudgetResult(
        budget=total,
        weeks=weeks,
        objective=f"{kind}:{arg:g}" if kind != "mean" else "mean",
        allocation={ch: float(v) for ch, v in zip(channels, a)},
        expected_response=_interval(r_opt, interval),
        current_allocation={ch: float(v) for ch, v in zip(channels, current_feasible)},
        current_response=_interval(r_cur, interval),
        uplift=_interval(r_opt - r_cur, interval),
        mroas={ch: float(v) for ch, v in zip(channels, g_opt.mean(axis=0))},
        weekly_plan=pat * a[None, :],
        success=bool(res.success),
        message=message,
        response=alone,
        group_totals=None if not group_totals else {str(g): float(t) for g, t in group_totals.items()},
    )


def _budget_blocks(model, total: float, group_totals, kind: str) -> list:
    """The sets of cells whose budgets have a fixed sum: ``[(indices, total, name)]``; one
    block (every cell, the budget) unless ``group_totals`` fixes some groups' totals."""
    c = len(model.channels)
    if not group_totals:
        return [(np.arange(c), total, "budget")]
    cell_groups = getattr(model, "cell_groups", None)
    if cell_groups is None:
        raise ValueError("group_totals: only a panel's response model has groups")
    if kind == "profit":
        raise ValueError("group_totals: not with the profit objective (it treats the budget as a cap)")
    cell_groups = np.asarray([str(g) for g in cell_groups])
    blocks, fixed = [], 0.0
    for g, t in group_totals.items():
        t = float(t)
        if str(g) not in cell_groups:
            if str(g) in getattr(model, "group_names", ()):
                raise ValueError(f"group_totals: group {g!r} had no spend on any channel (no cell to fund)")
            raise ValueError(f"group_totals: unknown group {g!r}; groups are {sorted(set(cell_groups))}")
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"group_totals: {g} needs a finite total >= 0, got {t}")
        blocks.append((np.flatnonzero(cell_groups == str(g)), t, f"group {g}'s total"))
        fixed += t
    rest = np.flatnonzero(~np.isin(cell_groups, [str(g) for g in group_totals]))
    remainder = total - fixed
    if remainder < -1e-9 * total:
        raise ValueError(f"group_totals add up to {fixed:g}, more than the budget {total:g}")
    if len(rest):
        blocks.append((rest, max(remainder, 0.0), "the other groups' remainder"))
    elif abs(remainder) > 1e-9 * total:
        raise ValueError(f"group_totals fix every group and add up to {fixed:g}, not the budget {total:g}")
    return blocks


def _project_blocks(a, lo, hi, blocks):
    """:func:`_project` within each block of fixed-sum cells."""
    a = np.array(a, dtype=float)
    for idx, t, _ in blocks:
        a[idx] = _project(a[idx], lo[idx], hi[idx], t)
    return a


def plot_allocation(model: ResponseModel, result: BudgetResult, path, points: int = 15):
    """Per-channel response curves (other channels at the optimum) with the
    optimal and current budgets marked; saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    channels = list(model.channels)
    opt = np.array([result.allocation[c] for c in channels])
    cur = np.array([result.current_allocation[c] for c in channels])
    pat = result.weekly_plan / np.where(opt > 0, opt, 1.0)[None, :]
    pat[:, opt <= 0] = 1.0 / result.weeks
    n = len(channels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    for i, ch in enumerate(channels):
        ax = fig.add_subplot(rows, cols, i + 1)
        top = max(opt[i], cur[i], result.budget / n) * 2.0
        grid = np.linspace(0.0, top, points)
        mean, lo, hi = [], [], []
        for v in grid:
            a = opt.copy()
            a[i] = v
            resp, _ = model.response(pat * a[None, :])
            mean.append(resp.mean())
            q = np.quantile(resp, [0.05, 0.95])
            lo.append(q[0])
            hi.append(q[1])
        ax.fill_between(grid, lo, hi, alpha=0.25, label="90% interval")
        ax.plot(grid, mean, label="expected response")
        for v, style, label in ((opt[i], "o", "optimal"), (cur[i], "s", "current")):
            a = opt.copy()
            a[i] = v
            ax.plot([v], [model.response(pat * a[None, :])[0].mean()], style, label=label)
        ax.set_title("/".join(map(str, ch)) if isinstance(ch, tuple) else str(ch))
        ax.set_xlabel(f"budget over {result.weeks} weeks")
        ax.set_ylabel("total response")
        if i == 0:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)
    return path
