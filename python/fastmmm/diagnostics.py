"""Validation a user can trust: fit accuracy (MAPE, R^2, hold-out MAPE) and
sampler health (R-hat, bulk and tail ESS, divergences), each compared with a
threshold, with a sentence for every failure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["Validation", "validate", "sampler_checks", "DEFAULT_THRESHOLDS"]

#: ``ess`` is per chain: the bulk-ESS threshold is ``ess * chains`` (100 per chain,
#: the usual rule, i.e. 400 for 4 chains).
DEFAULT_THRESHOLDS = {"mape": 0.10, "rhat": 1.01, "ess": 100.0, "divergences": 0}

#: Variables left out of the convergence statistics: deterministics, whose R-hat follows
#: the parameters' (the sampler's own checks between rounds leave out the same ones).
CONVERGENCE_SKIP = frozenset({"mu", "channel_contribution"})
#: Parameters per block of the convergence statistics (bounds their memory).
_CONVERGENCE_BLOCK = 512


@dataclass
class Validation:
    """Diagnostics of a fit. MAPEs are fractions (0.05 = 5%)."""

    mape_in_sample: float | None = None
    mape_holdout: float | None = None
    r2: float | None = None
    rhat_max: float | None = None
    ess_bulk_min: float | None = None
    ess_tail_min: float | None = None
    divergences: int | None = None
    thresholds: dict = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    checks: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def block(self) -> str:
        """A human-readable diagnostics block."""

        def f(v, fmt, suffix=""):
            return "n/a" if v is None else format(v, fmt) + suffix

        def pct(v):
            return None if v is None else 100 * v

        lines = [
            "diagnostics:",
            f"  in-sample MAPE   {f(pct(self.mape_in_sample), '.2f', '%')}   (< {100 * self.thresholds['mape']:.0f}%)",
            f"  hold-out MAPE    {f(pct(self.mape_holdout), '.2f', '%')}   (< {100 * self.thresholds['mape']:.0f}%)",
            f"  R^2              {f(self.r2, '.3f')}",
            f"  max R-hat        {f(self.rhat_max, '.4f')}   (< {self.thresholds['rhat']})",
            f"  min bulk ESS     {f(self.ess_bulk_min, '.0f')}   (>= {self.thresholds['ess']:.0f} per chain x chains)",
            f"  min tail ESS     {f(self.ess_tail_min, '.0f')}",
            f"  divergences      {f(self.divergences, 'd')}   (= {self.thresholds['divergences']})",
            f"  passed           {self.passed}",
        ]
        lines += [f"  - {s}" for s in self.failures]
        return "\n".join(lines)


def _column_blocks(post, names: list[str], c: int, d: int, size: int):
    """Every element of the variables ``names`` as (chain, draw, <= size) float64 blocks, in
    order. Small variables share a block, so a national model's ~40 parameters are one call
    into the core rather than one per variable. Blocks bound the memory of a large panel's
    thousands of parameters (a block, not a concatenated copy of every draw); each element is
    copied once, into its block."""
    block, fill = None, 0
    for n in names:
        x = np.asarray(post[n]).reshape(c, d, -1)
        i = 0
        while i < x.shape[2]:
            if block is None:
                block, fill = np.empty((c, d, size)), 0
            k = min(size - fill, x.shape[2] - i)
            block[:, :, fill : fill + k] = x[:, :, i : i + k]
            fill, i = fill + k, i + k
            if fill == size:
                yield block
                block = None
    if block is not None:
        yield block[:, :, :fill]


def convergence_summary(posterior) -> dict:
    """Max R-hat, min bulk and tail ESS over every element of the posterior's parameters
    (deterministics ``mu`` and ``channel_contribution`` left out). Computed once per
    posterior object and kept on it: report_diagnostics, validate and summary reuse it."""
    from fastmmm.convergence import summary

    cached = getattr(posterior, "convergence", None)
    if cached is not None:
        return cached
    post = posterior.posterior
    names = [
        n for n in post if n not in CONVERGENCE_SKIP and np.issubdtype(np.asarray(post[n]).dtype, np.number)
    ]
    c, d = posterior.n_chains, posterior.n_draws
    parts = [summary(block) for block in _column_blocks(post, names, c, d, _CONVERGENCE_BLOCK)]
    stats = {k: np.concatenate([p[k] for p in parts]) for k in ("rhat", "ess_bulk", "ess_tail")}
    posterior.convergence = reduce_convergence(stats, c)
    return posterior.convergence


def reduce_convergence(stats: dict, n_chains: int) -> dict:
    """Max R-hat and min bulk and tail ESS of per-column ``rhat``, ``ess_bulk`` and
    ``ess_tail`` arrays (NaN columns left out; R-hat None with one chain)."""
    r = np.asarray(stats["rhat"], dtype=float)
    return {
        "ess_bulk_min": float(np.nanmin(stats["ess_bulk"])),
        "ess_tail_min": float(np.nanmin(stats["ess_tail"])),
        "rhat_max": None if n_chains < 2 or np.all(np.isnan(r)) else float(np.nanmax(r)),
    }


def _mape(actual: np.ndarray, pred: np.ndarray) -> float:
    actual = np.asarray(actual, dtype=float)
    ok = actual != 0
    return float(np.mean(np.abs(actual[ok] - pred[ok]) / np.abs(actual[ok])))


def sampler_checks(result, thresholds: dict | None = None) -> Validation:
    """R-hat, ESS and divergences of a result's posterior."""
    th = dict(DEFAULT_THRESHOLDS)
    th.update(thresholds or {})
    v = Validation(thresholds=th)
    posterior = result.posterior
    n_chains = posterior.n_chains
    stats = convergence_summary(posterior)
    v.ess_bulk_min, v.ess_tail_min, v.rhat_max = (
        stats["ess_bulk_min"],
        stats["ess_tail_min"],
        stats["rhat_max"],
    )
    div = posterior.stat("diverging")
    v.divergences = int(np.asarray(div).sum()) if div is not None else 0

    if v.rhat_max is None:
        v.checks["rhat"] = None
    else:
        v.checks["rhat"] = v.rhat_max < th["rhat"]
        if not v.checks["rhat"]:
            v.failures.append(
                f"Max R-hat is {v.rhat_max:.3f} (threshold {th['rhat']}): chains disagree; "
                "sample longer (more tune/draws) or simplify the model."
            )
    ess_needed = th["ess"] * n_chains
    v.checks["ess"] = v.ess_bulk_min >= ess_needed
    if not v.checks["ess"]:
        v.failures.append(
            f"Minimum bulk ESS is {v.ess_bulk_min:.0f} (threshold {ess_needed:.0f}, {th['ess']:.0f} per chain): "
            "too few effective draws for stable intervals; increase draws."
        )
    v.checks["divergences"] = v.divergences <= th["divergences"]
    if not v.checks["divergences"]:
        v.failures.append(
            f"{v.divergences} divergent transitions: the posterior has regions the sampler cannot explore; "
            "results may be biased. Tighten priors or reparameterise."
        )
    return v


def validate(result, **thresholds) -> Validation:
    """Full validation of a fitted result (see :class:`Validation`)."""
    v = sampler_checks(result, thresholds)
    th = v.thresholds
    # The fitted mean only: fitted()'s predictive intervals would draw a panel's whole
    # posterior predictive (as large as its mu) for nothing.
    pred = result.fitted_mean()
    actual = np.concatenate([np.asarray(d.y, dtype=float) for d in result.datas])
    v.mape_in_sample = _mape(actual, pred)
    ss_res = float(np.sum((actual - pred) ** 2))
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    # Not on a panel: pooled over groups of different scales, R^2 would reward their spread.
    v.r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 and not result.is_panel else None
    v.checks["mape_in_sample"] = v.mape_in_sample < th["mape"]
    if not v.checks["mape_in_sample"]:
        v.failures.append(
            f"In-sample MAPE is {100 * v.mape_in_sample:.1f}% (threshold {100 * th['mape']:.0f}%): "
            "the model misses structure in the target (missing controls, seasonality or events?)."
        )
    if result.holdouts and sum(len(h.dates) for h in result.holdouts):
        pr = result.predict(seed=result.seed)  # every group's hold-out on a panel
        v.mape_holdout = _mape(pr["actual"].to_numpy(), pr["mean"].to_numpy())
        v.checks["mape_holdout"] = v.mape_holdout < th["mape"]
        if not v.checks["mape_holdout"]:
            v.failures.append(
                f"Hold-out MAPE is {100 * v.mape_holdout:.1f}% (threshold {100 * th['mape']:.0f}%): "
                "forecasts of the held-out periods are poor; the model may overfit or miss a recent change."
            )
    return v
