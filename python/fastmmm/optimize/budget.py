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

    def to_dict(self) -> dict:
        return {
            "budget": self.budget,
            "weeks": self.weeks,
            "objective": self.objective,
            "allocation": self.allocation,
            "expected_response": self.expected_response,
            "current_allocation": self.current_allocation,
            "current_response": self.current_response,
            "uplift": self.uplift,
            "mroas": self.mroas,
            "success": self.success,
            "message": self.message,
        }


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
    if lo.sum() > total * (1 + 1e-12):
        raise ValueError(f"bounds are infeasible: the lower bounds add up to {lo.sum():g} > budget {total:g}")
    if kind != "profit" and hi.sum() < total * (1 - 1e-12):
        raise ValueError(f"bounds are infeasible: the upper bounds add up to {hi.sum():g} < budget {total:g}")
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
    current_feasible = _project(current, lo, hi, total)
    a0 = current_feasible if start is None else _project(np.asarray(start, dtype=float), lo, hi, total)

    r_start, g_start = evaluate(a0)
    v_start, _ = _objective(kind, arg, r_start, g_start, a0.sum())
    scale = max(abs(v_start), 1e-12)

    def fun(u):
        a = u * total
        r, gch = evaluate(a)
        v, gv = _objective(kind, arg, r, gch, a.sum())
        return -v / scale, -gv * total / scale

    cons = (
        {"type": "ineq", "fun": lambda u: 1.0 - u.sum(), "jac": lambda u: -np.ones(c)}
        if kind == "profit"
        else {"type": "eq", "fun": lambda u: u.sum() - 1.0, "jac": lambda u: np.ones(c)}
    )
    res = minimize(
        fun,
        a0 / total,
        jac=True,
        method="SLSQP",
        bounds=list(zip(lo / total, hi / total)),
        constraints=[cons],
        options={"maxiter": 500, "ftol": 1e-14},
    )
    a = np.clip(res.x * total, lo, hi)
    if kind != "profit":
        a = _project(a, lo, hi, total)
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
    )


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
        ax.set_title(str(ch))
        ax.set_xlabel(f"budget over {result.weeks} weeks")
        ax.set_ylabel("total response")
        if i == 0:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)
    return path
