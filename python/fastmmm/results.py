"""A fitted MMM: contributions, ROAS, marginal ROAS, response curves,
forecasts, validation, and saving/loading (netCDF + JSON, never pickle).

All quantities are reported in the data's original units: contributions in
target units, ROAS as contribution per unit of spend.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fastmmm import kernels as K
from fastmmm.data import PreparedData
from fastmmm.layout import GROUP_DIM, amplitude_kind
from fastmmm.posterior import Group, Posterior
from fastmmm.spec import ModelSpec

__all__ = ["MMMResult", "load"]

_FORMAT_VERSION = 1
#: Draws processed at once when evaluating media transforms over the posterior.
_DRAW_CHUNK = 256
# Values of (draw, date, channel) contributions reduced at a time (16 MB of float64).
_CONTRIBUTION_BLOCK = 1 << 21


def _thin(n: int, max_draws: int | None) -> slice:
    """Every k-th of n draws, at most ``max_draws`` of them (all with None)."""
    if max_draws is None or n <= max_draws:
        return slice(None)
    return slice(None, None, int(np.ceil(n / max_draws)))


def _interval(samples: np.ndarray, interval: float, axis: int = 0) -> dict[str, float | np.ndarray]:
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    q = np.quantile(samples, [lo, hi], axis=axis)
    return {"mean": samples.mean(axis=axis), "low": q[0], "high": q[1]}


def _channel_table(draws: dict[str, np.ndarray], channels: list[str], interval: float) -> pd.DataFrame:
    """channel_summary's table of one national result or group from its channel_draws:
    ``spend`` and ``{quantity}_{mean|low|high}`` per channel."""
    rows: dict[str, dict] = {ch: {} for ch in channels}
    for name, vals in draws.items():
        for c, ch in enumerate(channels):
            if name == "spend":
                rows[ch]["spend"] = float(vals[c])
                continue
            for k, v in _interval(vals[:, c], interval).items():
                rows[ch][f"{name}_{k}"] = float(v)
    return pd.DataFrame.from_dict(rows, orient="index")


def _floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


class PanelAccessError(AttributeError, ValueError):
    """A national-only attribute read on a panel result (an AttributeError, so ``hasattr`` /
    ``getattr(..., default)`` work; a ValueError, as every other refusal here)."""


#: ``holdout`` not given (None means "no hold-out").
_UNSET = object()


@dataclass(init=False, repr=False, eq=False)
class MMMResult:
    """The result of :meth:`fastmmm.MMM.fit` and of :meth:`fastmmm.HierarchicalMMM.fit`.

    One type for both: a national result is one group without a group axis; a
    panel (hierarchical) result has one (``group`` names the group column,
    ``groups`` its values, ``datas`` / ``holdouts`` hold each group's data), and
    :meth:`group_result` is any one group as a national result (its own
    draws of every per-group and pooled parameter). Per-group outputs of a
    panel are the national ones stacked: arrays gain a group axis after the
    draws, tables a leading group column or index level.

    Attributes
    ----------
    posterior : fastmmm.posterior.Posterior
        The draws as numpy arrays: ``posterior`` (parameters,
        ``channel_contribution`` ([geo,] date, channel) and ``mu`` ([geo,] date),
        scaled) and ``sample_stats``. ``result.idata`` is the same as an ArviZ
        object (built on first use; with ``posterior_predictive`` and
        ``observed_data``).
    spec : ModelSpec
    data : PreparedData
        The training data (with its scales); a national result's only.
    holdout : PreparedData or None
        Held-out final periods, scaled with the training scales; a national result's only.
    datas, holdouts : lists of PreparedData, one per group (holdouts None without hold-out)
    group : str or None
        The group column of a panel; None for a national result.
    groups : list of str
        The groups' names (``[""]`` for a national result).
    pooled : tuple
        Which media parameter kinds a panel pools across groups.
    timing : dict
        build_s, compile_s, sample_s, total_s (the whole ``fit()`` call); on the Rust
        sampler also sample_core_s (its chains' CPU time drawing, summed over chains).
    backend : str
        "rust" (fused log-density sampled in the Rust core) or "pytensor"
        (PyMC model on Rust Ops, compiled and sampled by nutpie).
    lift_tests : fastmmm.lift.LiftTests or None
        The lift tests the model was calibrated with (original units);
        ``lift_groups`` the group index of each on a panel.
    backend_note : str
        Why the fit ran on another backend than asked for ("" when it did not).
    """

    posterior: object
    spec: ModelSpec
    datas: list
    holdouts: list | None
    timing: dict
    backend: str
    seed: int | None
    lift_tests: object
    backend_note: str
    group: str | None
    groups: list
    pooled: tuple
    lift_groups: list | None

    def __init__(
        self,
        posterior,
        spec: ModelSpec,
        data: PreparedData | None = None,
        holdout=_UNSET,
        timing: dict | None = None,
        backend: str = "rust",
        seed: int | None = None,
        lift_tests=None,
        backend_note: str = "",
        *,
        group: str | None = None,
        groups: list | None = None,
        datas: list | None = None,
        holdouts: list | None = None,
        pooled: tuple = (),
        lift_groups: list | None = None,
    ):
        # data= / holdout= name a national result's (and win over datas= / holdouts=, as
        # dataclasses.replace(result, holdout=...) passes both).
        if group is None:
            if data is not None:
                datas = [data]
            if datas is None or len(datas) != 1:
                raise TypeError("MMMResult: a national result takes data= (and holdout=)")
            if holdout is not _UNSET:
                holdouts = None if holdout is None else [holdout]
            groups = [""]
        elif datas is None or groups is None or len(datas) != len(groups):
            raise TypeError("MMMResult: a panel result takes datas= and groups= (one per group)")
        elif data is not None or holdout is not _UNSET:
            raise TypeError("MMMResult: a panel result takes datas= and holdouts=, not data= / holdout=")
        self.posterior = posterior
        self.spec = spec
        self.datas = list(datas)
        self.holdouts = None if not holdouts else list(holdouts)
        self.timing = dict(timing or {})
        self.backend = backend
        self.seed = seed
        self.lift_tests = lift_tests
        self.backend_note = backend_note
        self.group = group
        self.groups = [str(g) for g in groups]
        self.pooled = tuple(pooled)
        self.lift_groups = None if lift_groups is None else [int(g) for g in lift_groups]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fit(
        cls, *, posterior, spec, data, holdout, timing, backend, seed, lift_tests=None, backend_note=""
    ):
        post = posterior.posterior
        post.coords["date"] = np.asarray(pd.DatetimeIndex(data.dates).values)
        return cls(
            posterior=posterior,
            spec=spec,
            data=data,
            holdout=holdout,
            timing=dict(timing),
            backend=backend,
            seed=seed,
            lift_tests=lift_tests,
            backend_note=backend_note,
        )

    # ------------------------------------------------------------------ the group axis
    @property
    def is_panel(self) -> bool:
        """Whether this result has a group axis (a hierarchical fit)."""
        return self.group is not None

    @property
    def data(self) -> PreparedData:
        if self.is_panel:
            raise PanelAccessError(
                f"a panel result has data per {self.group}: result.datas[g], or result.group_result(g).data"
            )
        return self.datas[0]

    @property
    def holdout(self) -> PreparedData | None:
        if self.is_panel:
            raise PanelAccessError(
                f"a panel result has hold-outs per {self.group}: result.holdouts[g], or "
                "result.group_result(g).holdout"
            )
        return None if not self.holdouts else self.holdouts[0]

    def _group_index(self, g) -> int:
        if isinstance(g, (int, np.integer)) and not isinstance(g, bool):
            if not 0 <= g < len(self.groups):
                raise ValueError(f"{self.group}: index {g} out of range (0..{len(self.groups) - 1})")
            return int(g)
        if str(g) not in self.groups:
            raise ValueError(f"{self.group}: {g!r} is not one of {self.groups}")
        return self.groups.index(str(g))

    def group_result(self, g) -> MMMResult:
        """Group ``g`` (index or name) of a panel as a national result: its data, and its own
        draws of every per-group quantity (a pooled parameter's ``{name}_geo`` values under
        the parameter's name); shared parameters and the sample stats are the panel's."""
        if not self.is_panel:
            raise ValueError("group_result: a national result has no group axis")
        i = self._group_index(g)
        views = self.__dict__.setdefault("_group_results", {})
        if i not in views:
            views[i] = MMMResult(
                posterior=group_posterior(self.posterior, i, self.windows[i]),
                spec=self.spec,
                data=self.datas[i],
                holdout=None if not self.holdouts else self.holdouts[i],
                timing=self.timing,
                backend=self.backend,
                seed=None if self.seed is None else self.seed + i,
                backend_note=self.backend_note,
            )
            views[i]._panel_slot = (self, i)  # its predictive draws are the panel's, sliced
        return views[i]

    def group_results(self) -> list[MMMResult]:
        """Every group as a national result (:meth:`group_result`), in group order."""
        return [self.group_result(i) for i in range(len(self.groups))]

    @property
    def dates(self) -> pd.DatetimeIndex:
        """The training dates; on a panel every group's together (groups may start late or
        stop early: :attr:`windows`)."""
        if not self.is_panel:
            return pd.DatetimeIndex(self.data.dates)
        return self._grid[0]

    @property
    def windows(self) -> list[tuple[int, int]]:
        """Each group's training dates as ``[start, end)`` on :attr:`dates` (a panel)."""
        return self._grid[1] if self.is_panel else [(0, len(self.data.dates))]

    @property
    def _grid(self):
        cached = self.__dict__.get("_grid_cache")
        if cached is None:
            from fastmmm.data import panel_grid

            cached = self.__dict__["_grid_cache"] = panel_grid(self.datas)
        return cached

    def _on_panel_dates(self, per_group: list[np.ndarray], axis: int) -> np.ndarray:
        """Per-group arrays over each group's own dates (at ``axis``) stacked on the panel's
        dates (group axis just before it), NaN outside a group's window."""
        T = len(self.dates)
        shape = list(per_group[0].shape)
        shape[axis] = T
        out = np.full(shape[:axis] + [len(per_group)] + shape[axis:], np.nan)
        for g, (v, (a, b)) in enumerate(zip(per_group, self.windows)):
            idx = (slice(None),) * axis + (g, slice(a, b))
            out[idx] = v
        return out

    def _national_only(self, what: str) -> None:
        if self.is_panel:
            raise ValueError(
                f"{what}: a panel result has one per {self.group}; use result.group_result(g).{what}(...)"
            )

    def _stacked_frames(self, frames, names=None) -> pd.DataFrame:
        """Date-indexed per-group frames (of ``names``, default every group) as one table with
        leading group and date columns."""
        names = self.groups if names is None else names
        df = pd.concat(
            [f.reset_index().assign(**{self.group: n}) for n, f in zip(names, frames)], ignore_index=True
        )
        return df[[self.group] + [c for c in df.columns if c != self.group]]

    def posterior_predictive(self) -> np.ndarray:
        """(chain, draw, [geo,] date) draws of ``y`` on the scaled space: ``mu + sigma * noise``
        (Student-t noise for that likelihood), seeded from the fit's seed; the same on
        every call and after a save and load."""
        cached = getattr(self, "_ppc", None)
        if cached is not None:
            return cached
        slot = getattr(self, "_panel_slot", None)
        if slot is not None:
            panel, i = slot
            a, b = panel.windows[i]
            self._ppc = panel.posterior_predictive()[:, :, i, a:b]
            return self._ppc
        pp = self.posterior.groups.get("posterior_predictive")
        if pp is not None and "y_obs" in pp:
            self._ppc = np.asarray(pp["y_obs"])
            return self._ppc
        mu = self.posterior["mu"]
        sigma = self.posterior["sigma"]
        rng = np.random.default_rng(None if self.seed is None else self.seed + 7919)
        if self.spec.likelihood == "studentt":
            nu = self.posterior["nu"]  # shared by every group
            noise = rng.standard_t(np.broadcast_to(nu.reshape(nu.shape + (1,) * (mu.ndim - 2)), mu.shape))
        else:
            noise = rng.standard_normal(mu.shape)
        self._ppc = mu + sigma[..., None] * noise
        return self._ppc

    @property
    def idata(self):
        """The fit as an ArviZ object (InferenceData, or DataTree with ArviZ >= 1): posterior,
        sample_stats, posterior_predictive and observed_data (``y_obs``, scaled). Built on
        first use (it imports ArviZ)."""
        cached = getattr(self, "_idata", None)
        if cached is None:
            coords = {"date": np.asarray(self.dates.values)}
            obs_dims: tuple = ("date",)
            if self.is_panel:
                coords[GROUP_DIM] = np.asarray(self.groups)
                obs_dims = (GROUP_DIM, "date")
            # A ragged panel's groups are NaN outside their windows.
            observed = self._on_panel_dates([np.asarray(d.y_scaled, dtype=float) for d in self.datas], 0)
            groups = dict(self.posterior.groups)
            if not self.is_panel and "channel_contribution" not in self.posterior:
                # Left out of a saved fit's file (:meth:`save`): ArviZ users find it here still.
                post = groups["posterior"]
                cc = self.draws("channel_contribution")
                shape = (self.posterior.n_chains, self.posterior.n_draws, *cc.shape[1:])
                groups["posterior"] = Group(
                    {**post.values, "channel_contribution": cc.reshape(shape)},
                    {**post.dims, "channel_contribution": ("chain", "draw", "date", "channel")},
                    {**post.coords, "date": coords["date"], "channel": np.asarray(self.channels)},
                )
            groups["posterior_predictive"] = Group(
                {"y_obs": self.posterior_predictive()}, {"y_obs": ("chain", "draw", *obs_dims)}, coords
            )
            groups["observed_data"] = Group(
                {"y_obs": observed if self.is_panel else observed[0]}, {"y_obs": obs_dims}, coords
            )
            cached = self._idata = Posterior(groups, self.posterior.attrs).to_arviz()
        return cached

    # ------------------------------------------------------------------ posterior access
    @property
    def channels(self) -> list[str]:
        return list(self.spec.channels)

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of ``name`` with chain and draw flattened: (S, ...).

        A national result's (or a panel group's) ``channel_contribution`` is
        :meth:`_media_terms`, recomputed from the parameters."""
        if name == "channel_contribution" and not self.is_panel:
            return self._media_terms(slice(None))
        return self.posterior.flat(name)

    def _media_terms(self, sel: slice) -> np.ndarray:
        """(S_sel, T, C) draws ``sel`` of ``channel_contribution`` (model scale): the media
        kernel on the training spend with each draw's parameters; only the selected draws
        are computed. Recomputed also where the fit stored them (equal to rounding,
        ``test_recomputed_contributions_equal_the_fitted_ones``): every summary is then the
        same numbers in memory and after a save and load, whose file leaves them out
        (:meth:`_stored_draws`), as does a large panel's fit
        (:func:`fastmmm.fastpath.left_out`)."""
        terms = self._static_media_contributions(np.asarray(self.data.spend, dtype=float), draws=sel)
        if getattr(self.spec, "time_varying_media", False):
            terms *= self.draws("media_multiplier")[sel][:, :, None]
        return terms

    @property
    def n_draws(self) -> int:
        return self.posterior.n_samples

    def media_designs(self):
        from fastmmm.layout import media_designs

        return media_designs(self.spec)

    def kernel_params(self, design):
        """Per-draw kernel parameters of one channel group: (adstock tuple, saturation tuple), each (S, C_g)."""
        from fastmmm.layout import FIXED_SATURATION_PARAMS, kappa_scale

        d = design
        cols = list(d.channels)
        a = tuple(self.draws(d.var(f"adstock_{p}")) for p in d.adstock_params)
        scale = kappa_scale(np.asarray(self.data.spend_scaled)[:, cols])
        fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
        s = []
        for p in K.SATURATION_PARAMS[d.saturation]:
            if p in fixed:
                s.append(np.full((self.n_draws, len(cols)), fixed[p]))
            else:
                v = self.draws(d.var(f"saturation_{p}"))
                s.append(v * scale if p == d.relative_param else v)
        return a, tuple(s)

    def channel_groups(self, *, draws: slice | None = None, multiplier_weeks: int = 13) -> list:
        """The channel groups with their posterior draws (``draws`` selects them), for the
        response kernel: list of :class:`fastmmm.optimize.budget.ChannelGroup`. With
        ``time_varying_media``, beta is scaled by the mean media multiplier of the last
        ``multiplier_weeks`` weeks (the plan is assumed to meet today's effectiveness)."""
        from fastmmm.optimize.budget import ChannelGroup

        self._national_only("channel_groups")
        sel = slice(None) if draws is None else draws
        beta = self.draws("beta")[sel]
        if getattr(self.spec, "time_varying_media", False):
            from fastmmm.tvp import periods_per_week

            if (
                isinstance(multiplier_weeks, bool)
                or not isinstance(multiplier_weeks, (int, np.integer))
                or multiplier_weeks < 1
            ):
                raise ValueError(f"multiplier_weeks: must be an integer >= 1, got {multiplier_weeks!r}")
            t = len(self.data.dates)
            k = min(t, round(multiplier_weeks * periods_per_week(self.data.frequency)))
            trend = np.arange(t - k, t, dtype=float) / float(self.data.scales.trend_span)
            beta = beta * self.media_multiplier_draws(trend, draws=sel).mean(axis=1)[:, None]
        groups = []
        for d in self.media_designs():
            a, s = self.kernel_params(d)
            cols = list(d.channels)
            groups.append(
                ChannelGroup(
                    d.adstock,
                    d.saturation,
                    int(d.l_max),
                    d.normalize,
                    cols,
                    tuple(np.ascontiguousarray(p[sel]) for p in a),
                    tuple(np.ascontiguousarray(p[sel]) for p in s),
                    np.ascontiguousarray(beta[:, cols]),
                )
            )
        return groups

    def media_contributions(
        self, spend: np.ndarray, *, group=None, draws: slice | None = None, dates=None
    ) -> np.ndarray:
        """Channel contributions of a raw spend matrix, per posterior draw.

        Parameters
        ----------
        spend : (T, C) array in original spend units (history included for carry-over)
        group : on a panel, the group (index or name) whose draws and scales apply
        dates : (T,) dates of the rows, optional; only used with
            ``spec.time_varying_media``, where row ``t`` is multiplied by the
            media multiplier ``exp(g)`` at its date. Default: the training
            dates, continued one period at a time past their end. Within the
            training window that is the fitted multiplier per date; past it, the
            GP evaluated at the later dates (:func:`fastmmm.tvp.hsgp_effect`).

        Returns
        -------
        (S, T, C) contributions in original target units.

        With ``spec.log_target`` a channel's contribution depends on the baseline
        it multiplies, so it is not a function of spend alone: use
        :meth:`contribution_totals`, :meth:`channel_summary` or
        :meth:`contributions_over_time` (this raises ValueError).
        """
        if self.spec.log_target:
            raise ValueError(
                "media_contributions: on a log_target model a contribution depends on the baseline it "
                "multiplies; use contribution_totals(), channel_summary() or contributions_over_time()"
            )
        if self.is_panel:
            if group is None:
                raise ValueError(f"media_contributions: a panel result needs group= (one of {self.groups})")
            return self.group_result(group).media_contributions(spend, draws=draws, dates=dates)
        if group is not None:
            raise ValueError("media_contributions: group= is for panel results; this one is national")
        return self._media_effects(spend, draws=draws, dates=dates) * float(self.data.scales.target_scale)

    def _media_effects(self, spend: np.ndarray, *, draws: slice | None = None, dates=None) -> np.ndarray:
        """(S, T, C) media terms of a raw spend matrix on the model scale (``beta * sat``, times
        the media multiplier with ``time_varying_media``): scaled target units, or log-scale
        effects with ``log_target``. See :meth:`media_contributions` for ``dates``."""
        spend = np.asarray(spend, dtype=float)
        if spend.ndim != 2 or spend.shape[1] != len(self.channels):
            raise ValueError(f"spend: expected shape (T, {len(self.channels)}), got {spend.shape}")
        out = self._static_media_contributions(spend, draws=draws)
        if self.spec.time_varying_media:
            out = (
                out
                * self.media_multiplier_draws(self._row_trend(spend.shape[0], dates), draws=draws)[:, :, None]
            )
        return out

    def _row_trend(self, n_rows: int, dates=None) -> np.ndarray:
        """(n_rows,) trend feature of the rows of a spend matrix (see media_contributions)."""
        if dates is None:
            return np.arange(n_rows, dtype=float) / float(self.data.scales.trend_span)
        dates = pd.DatetimeIndex(dates)
        if len(dates) != n_rows:
            raise ValueError(f"dates: expected {n_rows} dates (one per spend row), got {len(dates)}")
        return self.data.scales.trend_at(dates)

    def media_multiplier_draws(self, trend, *, draws: slice | None = None) -> np.ndarray:
        """(S, n) media multiplier ``exp(g)`` at dates with trend feature ``trend`` (n,); ones without
        ``spec.time_varying_media``. ``trend`` is ``result.data.scales.trend_at(dates)``."""
        from fastmmm.tvp import hsgp_effect

        trend = np.asarray(trend, dtype=float).reshape(-1)
        if not self.spec.time_varying_media:
            n = self.draws("beta")[draws if draws is not None else slice(None)].shape[0]
            return np.ones((n, len(trend)))
        return np.exp(hsgp_effect(self, "media", trend, draws=draws))

    def time_varying(self, dates=None, interval: float = 0.95) -> pd.DataFrame:
        """Posterior of the time-varying parts per date (see :mod:`fastmmm.tvp`).

        Parameters
        ----------
        dates : dates to evaluate at, default the training dates; later dates
            give the GPs' forecasts.

        Returns
        -------
        DataFrame indexed by date with ``intercept_tv_{mean,low,high}`` (the
        time-varying intercept ``intercept + f(t)``, original target units;
        with ``time_varying_intercept``; ``f`` has no linear part in-sample, which
        the trend carries) and ``media_multiplier_{mean,low,high}``
        (``exp(g(t))``; with ``time_varying_media``). With ``log_target`` the
        intercept columns are the level factor ``exp(intercept + f(t)) *
        target_scale`` (without trend, seasonality, controls or the noise term). On a panel:
        every group's, with leading group and date columns.
        """
        from fastmmm.tvp import hsgp_effect, parts

        if self.is_panel:  # each group's parts (a shared multiplier repeats in every group)
            return self._stacked_frames(r.time_varying(dates, interval) for r in self.group_results())
        if not parts(self.spec):
            raise ValueError("this model has no time-varying parts (spec.time_varying_intercept / _media)")
        dates = pd.DatetimeIndex(self.data.dates if dates is None else dates)
        trend = self.data.scales.trend_at(dates)
        cols = {}
        if self.spec.time_varying_intercept:
            f = hsgp_effect(self, "intercept", trend)
            if "intercept" in self.posterior:
                f = f + self.draws("intercept")[:, None]
            # Log target: exp(intercept + f) * target_scale, the baseline's level factor.
            f = np.exp(f) if self.spec.log_target else f
            for k, v in _interval(f * float(self.data.scales.target_scale), interval).items():
                cols[f"intercept_tv_{k}"] = v
        if self.spec.time_varying_media:
            for k, v in _interval(self.media_multiplier_draws(trend), interval).items():
                cols[f"media_multiplier_{k}"] = v
        return pd.DataFrame(cols, index=pd.DatetimeIndex(dates, name="date"))

    def _static_media_contributions(self, spend: np.ndarray, *, draws: slice | None = None) -> np.ndarray:
        """``beta * sat`` of a raw spend matrix without the time-varying multiplier: (S, T, C),
        model scale."""
        xs_all = spend / np.asarray(self.data.scales.channel_scale)
        sel = draws if draws is not None else slice(None)
        beta_all = self.draws("beta")[sel]
        n = beta_all.shape[0]
        out = np.empty((n, xs_all.shape[0], xs_all.shape[1]))
        for d in self.media_designs():
            cols = list(d.channels)
            xs = np.ascontiguousarray(xs_all[:, cols])
            a, s = self.kernel_params(d)
            a = tuple(p[sel] for p in a)
            s = tuple(p[sel] for p in s)
            for i in range(0, n, _DRAW_CHUNK):
                j = min(n, i + _DRAW_CHUNK)
                x3 = np.broadcast_to(xs, (j - i,) + xs.shape)
                y, _ = K.media_transform(
                    x3,
                    d.adstock,
                    d.saturation,
                    tuple(p[i:j] for p in a),
                    tuple(p[i:j] for p in s),
                    l_max=d.l_max,
                    normalize=d.normalize,
                )
                out[i:j][:, :, cols] = y * beta_all[i:j, None, :][:, :, cols]
        return out

    # ------------------------------------------------------------------ summaries
    def _expected_level(self, mu: np.ndarray, sel: slice = slice(None)) -> np.ndarray:
        """Expected target in original units of model-scale means ``mu`` (S, ...) of draws ``sel``.

        Additive: ``mu * target_scale``. Log target: ``exp(mu + sigma^2 / 2) * target_scale``,
        the LogNormal mean; used for every level, contribution and ROAS of that model (with
        Student-t noise the same formula with its scale: the mean of exp(t noise) does not exist).
        """
        ts = float(self.data.scales.target_scale)
        if not self.spec.log_target:
            return mu * ts
        half_var = 0.5 * np.square(self.draws("sigma")[sel])
        return np.exp(mu + half_var.reshape((-1,) + (1,) * (np.ndim(mu) - 1))) * ts

    def contribution_draws(self, draws: slice | None = None) -> np.ndarray:
        """(S, [G,] T, C) channel contributions in original units over the training dates
        (``draws`` selects the draws: only those are computed).

        Additive: the fitted deterministic ``channel_contribution`` times the target scale.
        Log target: by counterfactual, per draw and date, ``E[y_t] - E[y_t | channel c's
        media term removed] = level_t * (1 - exp(-m_ct))`` with ``m`` the channel's log-scale
        term (its carry-over inside the window included).
        """
        if self.is_panel:  # NaN outside a group's window (a ragged panel)
            return self._on_panel_dates([r.contribution_draws(draws) for r in self.group_results()], 1)
        sel = slice(None) if draws is None else draws
        m = self._media_terms(sel)
        if not self.spec.log_target:
            m *= float(self.data.scales.target_scale)  # recomputed, so ours: scaled in place
            return m
        level = self._expected_level(self.draws("mu")[sel], sel)
        return level[:, :, None] * -np.expm1(-m)

    def _contribution_sums(self) -> np.ndarray:
        """(S, C) each channel's contribution summed over the training dates (national or one
        group), keeping the (T, C) posterior mean for :meth:`contributions_over_time`. In
        blocks of draws: a large panel's group recomputes its draws from the parameters (they
        are not stored), and all of them at once would be ~100 MB at 208 weeks x 30 channels."""
        n, t, c = self.n_draws, len(self.data.dates), len(self.channels)
        if self._has_static_sums():
            _, win, over = self._static_sums([1.0], window=True)
            self.__dict__["_contribution_mean_cache"] = over[0] / n
            return win[:, 0]
        step = max(1, _CONTRIBUTION_BLOCK // max(1, t * c))
        sums, total = np.empty((n, c)), np.zeros((t, c))
        for i in range(0, n, step):
            sel = slice(i, min(n, i + step))
            block = self.contribution_draws(sel)
            sums[sel] = block.sum(axis=1)
            total += block.sum(axis=0)
        self.__dict__["_contribution_mean_cache"] = total / n
        return sums

    def roas_draws(self) -> np.ndarray:
        """(S, [G,] C) ROAS: contribution over the data window per unit of its spend (NaN
        where a channel had no spend)."""
        if self.is_panel:
            return np.stack([r.roas_draws() for r in self.group_results()], axis=1)
        contrib = self._contribution_sums()
        spend = np.asarray(self.data.spend, dtype=float).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(spend > 0, contrib / spend, np.nan)

    def channel_summary(self, interval: float = 0.95) -> pd.DataFrame:
        """Per channel: spend, contribution, share, ROAS and marginal ROAS with intervals.

        Returns a DataFrame indexed by channel (on a panel by group and channel)
        with columns ``{quantity}_{mean|low|high}`` for contribution,
        contribution_share, roas and mroas, plus ``spend`` (total training
        spend, original units).
        """
        draws = self.channel_draws()
        if self.is_panel:  # from the panel's draws: no group keeps its own copy
            return pd.concat(
                [
                    _channel_table(
                        {k: v[g] if k == "spend" else v[:, g] for k, v in draws.items()},
                        self.channels,
                        interval,
                    )
                    for g in range(len(self.groups))
                ],
                keys=self.groups,
                names=[self.group, "channel"],
            )
        return _channel_table(draws, self.channels, interval)

    def channel_draws(self) -> dict[str, np.ndarray]:
        """Per-draw channel quantities: contribution, contribution_share, roas and mroas
        (S, [G,] C), and spend ([G,] C), in original units."""
        if getattr(self, "_cd_cache", None) is None:
            self._cd_cache = self._panel_channel_draws() if self.is_panel else self._compute_channel_draws()
        return self._cd_cache

    def _panel_channel_draws(self) -> dict[str, np.ndarray]:
        """channel_draws of a panel, one group at a time into the panel's arrays: a group's
        (S, T, C) contribution draws (~100 MB on a 50-geo x 208-week x 30-channel panel)
        are freed before the next group's, and no group keeps a cache of its own."""
        out: dict[str, np.ndarray] = {}
        G = len(self.groups)
        for g, r in enumerate(self.group_results()):
            for k, v in r._compute_channel_draws().items():
                if k not in out:
                    out[k] = np.empty((G,) + v.shape if k == "spend" else (v.shape[0], G) + v.shape[1:])
                if k == "spend":
                    out[k][g] = v
                else:
                    out[k][:, g] = v
        return out

    def _compute_channel_draws(self) -> dict[str, np.ndarray]:
        """channel_draws of a national result or one group, uncached."""
        # Marginal ROAS: extra contribution from 1% more spend in every period of the
        # training window (including what carries over past its end), per unit of that spend.
        eps = 0.01
        if self._has_static_sums():  # one pass: contributions, their mean and the +1% totals
            tot, win, over = self._static_sums([1.0, 1.0 + eps], window=True)
            contrib = win[:, 0]
            self.__dict__["_contribution_mean_cache"] = over[0] / self.n_draws
        else:
            contrib = self._contribution_sums()  # (S, C)
            tot = self.contribution_totals([1.0, 1.0 + eps])  # (S, 2, C)
        spend = np.asarray(self.data.spend, dtype=float)
        total_spend = spend.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            roas = np.where(total_spend > 0, contrib / total_spend, np.nan)
            share = contrib / np.where(
                contrib.sum(axis=1, keepdims=True) == 0, 1, contrib.sum(axis=1, keepdims=True)
            )
        delta = tot[:, 1] - tot[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            mroas = np.where(total_spend > 0, delta / (eps * total_spend), np.nan)
        return {
            "contribution": contrib,
            "contribution_share": share,
            "roas": roas,
            "mroas": mroas,
            "spend": total_spend,
        }

    def _contribution_mean(self) -> np.ndarray:
        """(T, C) posterior mean of :meth:`contribution_draws` (national or one group)."""
        mean = self.__dict__.get("_contribution_mean_cache")
        if mean is None:
            self._contribution_sums()  # keeps the mean: the summaries and this share one pass
            mean = self.__dict__["_contribution_mean_cache"]
        return mean

    def _with_tail(self, spend: np.ndarray) -> np.ndarray:
        """Spend followed by l_max zero periods, so carry-over past the end is counted."""
        tail = int(self.spec.l_max or 0)
        return np.vstack([spend, np.zeros((tail, spend.shape[1]))])

    def contributions_over_time(self) -> pd.DataFrame:
        """Posterior-mean contribution of every component per date, original units.

        Columns: ``intercept``, ``trend``, ``seasonality``, one per control, one
        per channel, and ``fitted`` (= their sum = posterior mean of mu). With
        ``spec.time_varying_intercept`` the ``intercept`` column is the
        time-varying ``intercept_tv``; with ``time_varying_media`` the channel
        columns include the media multiplier.

        Log target: columns ``baseline`` (the expected level with every media
        term removed, ``level_t * exp(-M_t)``, ``M_t = sum_c m_ct``), one per
        channel and ``fitted`` (the expected level ``level_t``, see
        :meth:`_expected_level`). The joint media effect ``level_t * (1 -
        exp(-M_t))`` is split between channels in proportion to their log-scale
        terms ``m_ct``, so the columns sum to the fitted level on every date; a
        channel's total here can differ slightly from its one-at-a-time
        counterfactual in :meth:`channel_summary` (channels interact on this model).
        """
        if self.is_panel:
            return self._stacked_frames(r.contributions_over_time() for r in self.group_results())
        if self.spec.log_target:
            return self._log_contributions_over_time()
        scale = float(self.data.scales.target_scale)
        t = len(self.data.dates)
        cols = {}
        post = self.posterior
        if "intercept_tv" in post:
            cols["intercept"] = self.draws("intercept_tv").mean(axis=0) * scale
        elif "intercept" in post:
            cols["intercept"] = np.full(t, float(post["intercept"].mean()) * scale)
        if "trend" in post:
            cols["trend"] = float(post["trend"].mean()) * np.asarray(self.data.trend) * scale
        if "gamma_fourier" in post:
            g = self.draws("gamma_fourier").mean(axis=0)
            cols["seasonality"] = np.asarray(self.data.fourier) @ g * scale
        if "gamma_control" in post:
            g = self.draws("gamma_control").mean(axis=0)
            for k, name in enumerate(self.spec.controls):
                cols[name] = np.asarray(self.data.controls_scaled)[:, k] * g[k] * scale
        contrib = self._contribution_mean()
        for c, ch in enumerate(self.channels):
            cols[ch] = contrib[:, c]
        df = pd.DataFrame(cols, index=pd.DatetimeIndex(self.data.dates, name="date"))
        df["fitted"] = df.sum(axis=1)
        return df

    def _log_contributions_over_time(self) -> pd.DataFrame:
        """contributions_over_time of a log-target model (proportional split of the media effect)."""
        level = self._expected_level(self.draws("mu"))  # (S, T)
        m = self.draws("channel_contribution")  # (S, T, C) log-scale media terms
        total = m.sum(axis=2)
        # Channel c's part of the joint effect level * (1 - exp(-M)) is level * m_c * g(M) with
        # g(M) = (1 - exp(-M)) / M (g(0) = 1): exact for terms of any sign, also where M ~ 0.
        small = np.abs(total) < 1e-8
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(small, 1.0 - 0.5 * total, -np.expm1(-total) / np.where(small, 1.0, total))
        cols = {"baseline": (level * np.exp(-total)).mean(axis=0)}
        per_channel = ((level * g)[:, :, None] * m).mean(axis=0)
        for c, ch in enumerate(self.channels):
            cols[ch] = per_channel[:, c]
        df = pd.DataFrame(cols, index=pd.DatetimeIndex(self.data.dates, name="date"))
        df["fitted"] = df.sum(axis=1)
        return df

    def fitted(self, interval: float = 0.95) -> pd.DataFrame:
        """In-sample posterior predictive: mean and interval per date, original units (the
        mean is the expected level, see :meth:`_expected_level`); on a panel per group and
        date (columns group, date, actual, mean, low, high)."""
        if self.is_panel:
            return self._stacked_frames(r.fitted(interval) for r in self.group_results())
        mean = self.fitted_mean()
        pp = self.data.scales.unscale_target(self.posterior_predictive().reshape(-1, mean.shape[0]))
        q = np.quantile(pp, [(1 - interval) / 2, 1 - (1 - interval) / 2], axis=0)
        return pd.DataFrame(
            {"actual": np.asarray(self.data.y), "mean": mean, "low": q[0], "high": q[1]},
            index=pd.DatetimeIndex(self.data.dates, name="date"),
        )

    def fitted_mean(self) -> np.ndarray:
        """(T,) posterior mean of the expected level per training date, original units: the
        ``mean`` column of :meth:`fitted` without its posterior predictive draws (on a panel
        every group's dates one after another, as in :meth:`fitted`)."""
        if self.is_panel:
            return np.concatenate([r.fitted_mean() for r in self.group_results()])
        return self._expected_level(self.draws("mu")).mean(axis=0)

    def predict(self, new=None, interval: float = 0.95, *, seed=None) -> pd.DataFrame:
        """Out-of-sample posterior predictive for new periods after the training data.

        Carry-over from the training spend is included: the media transforms run
        over the training history followed by the new periods. Time-varying
        parts (:mod:`fastmmm.tvp`) are their GPs evaluated at the new dates
        (the HSGP basis of the training window, extended).

        Parameters
        ----------
        new : DataFrame (same columns as the training data; the target may be
            absent) or a PreparedData from ``PreparedData.transform_new``; default
            the hold-out periods. On a panel a DataFrame with the group column.
        seed : int, None or a numpy Generator (its stream continues)

        Returns
        -------
        DataFrame indexed by date: mean, low, high (original units) and ``actual``
        when the target is present; on a panel with leading group and date columns.
        """
        if self.is_panel:
            return self._panel_predict(new, interval, seed)
        if new is None:
            if self.holdout is None:
                raise ValueError(
                    "predict: this fit has no hold-out periods (fit with holdout_weeks=N) and no new= data"
                )
            new = self.holdout
        nd = new if isinstance(new, PreparedData) else self.data.transform_new(new)
        unfitted = [
            c
            for c, had, has in zip(
                self.channels,
                np.asarray(self.data.spend, dtype=float).sum(axis=0) > 0,
                np.asarray(nd.spend, dtype=float).sum(axis=0) > 0,
            )
            if has and not had
        ]
        if unfitted:  # a channel absent from this group of a panel: its effect was never fitted
            raise ValueError(
                f"predict: spend on {', '.join(map(repr, unfitted))}, which had no spend in the "
                "training data; the model has no estimate of its effect"
            )
        t_new = len(nd.dates)
        base = self.baseline_draws(nd)
        hist = np.asarray(self.data.spend, dtype=float)
        full = np.vstack([hist, np.asarray(nd.spend, dtype=float)])
        dates = (
            pd.DatetimeIndex(self.data.dates).append(pd.DatetimeIndex(nd.dates))
            if self.spec.time_varying_media
            else None
        )
        media = self._media_effects(full, dates=dates)[:, hist.shape[0] :, :].sum(axis=2)
        mu = base + media
        rng = np.random.default_rng(seed)
        sigma = self.draws("sigma")[:, None]
        if self.spec.likelihood == "studentt":
            noise = rng.standard_t(np.broadcast_to(self.draws("nu")[:, None], mu.shape))
        else:
            noise = rng.standard_normal(mu.shape)
        pp = self.data.scales.unscale_target(mu + sigma * noise)
        q = np.quantile(pp, [(1 - interval) / 2, 1 - (1 - interval) / 2], axis=0)
        out = pd.DataFrame(
            {"mean": self._expected_level(mu).mean(axis=0), "low": q[0], "high": q[1]},
            index=pd.DatetimeIndex(nd.dates, name="date"),
        )
        y = getattr(nd, "y", None)
        if y is not None and len(y) == t_new and np.all(np.isfinite(y)):
            out["actual"] = np.asarray(y)
        return out

    def _panel_predict(self, new, interval: float, seed: int | None) -> pd.DataFrame:
        """predict() of every group of a panel: its hold-out, or its rows of ``new``."""
        if new is None:
            if not self.holdouts:
                raise ValueError(
                    "predict: this fit has no hold-out periods (fit with holdout_weeks=N) and no new= data"
                )
            news = list(self.holdouts)
        else:
            if not isinstance(new, pd.DataFrame) or self.group not in new.columns:
                raise ValueError(
                    f"predict: new data of a panel must be a DataFrame with the {self.group!r} column"
                )
            unknown = sorted(set(new[self.group].astype(str)) - set(self.groups))
            if unknown:
                raise ValueError(f"predict: {self.group} {unknown} not in the fitted panel ({self.groups})")
            keys = new[self.group].astype(str)
            news = [new[keys == g].drop(columns=[self.group]).reset_index(drop=True) for g in self.groups]
        rng = np.random.default_rng(seed)  # one stream through the groups, in order
        frames, names = [], []
        for i, (name, nd) in enumerate(zip(self.groups, news)):
            if len(nd) == 0:
                continue
            frames.append(self.group_result(i).predict(nd, interval, seed=rng))
            names.append(name)
        return self._stacked_frames(frames, names)

    def baseline_draws(self, new: PreparedData, *, draws: slice | None = None) -> np.ndarray:
        """(S, T_new) everything but media on the model scale at the rows of ``new`` (prepared
        with the training scales, ``self.data.transform_new``): intercept, trend,
        seasonality, controls and the time-varying intercept's GP at those dates."""
        self._national_only("baseline_draws")
        sel = draws if draws is not None else slice(None)
        post = self.posterior
        base = np.zeros((self.draws("sigma")[sel].shape[0], len(new.dates)))
        if "intercept" in post:
            base += self.draws("intercept")[sel, None]
        if "trend" in post:
            base += self.draws("trend")[sel, None] * np.asarray(new.trend)[None, :]
        if "gamma_fourier" in post:
            base += self.draws("gamma_fourier")[sel] @ np.asarray(new.fourier).T
        if "gamma_control" in post:
            base += self.draws("gamma_control")[sel] @ np.asarray(new.controls_scaled).T
        if self.spec.time_varying_intercept:
            from fastmmm.tvp import hsgp_effect

            base += hsgp_effect(self, "intercept", np.asarray(new.trend), draws=draws)
        return base

    def future_rows(self, periods: int) -> PreparedData:
        """The ``periods`` dates after the training data, prepared with the training scales:
        no spend, controls at their training means (what a plan's baseline is valued at)."""
        self._national_only("future_rows")
        period = self.data.scales.period
        last = pd.DatetimeIndex(self.data.dates)[-1]
        dates = pd.DatetimeIndex([last + period * (i + 1) for i in range(int(periods))])
        df = pd.DataFrame({self.spec.date_column: dates})
        for ch in self.channels:
            df[ch] = 0.0
        for k, name in enumerate(self.spec.controls):
            df[name] = float(np.asarray(self.data.scales.control_mean)[k])
        return self.data.transform_new(df)

    def contribution_totals(self, multipliers, *, max_draws: int | None = None) -> np.ndarray:
        """Total contribution of every channel, training window plus carry-over, when its
        training-period spend is scaled by each multiplier: ``(S, K, C)``, original units.

        One batched Rust evaluation over the draws (``fastmmm._core.contribution_sums``):
        channels do not interact, so one scaled copy of the spend serves every channel.
        ``max_draws`` evenly thins the draws. With a time-varying media multiplier the
        multiplier of each date applies (a per-period evaluation). With ``log_target``
        the totals are counterfactual over the training dates only (no carry-over past
        their end: the baseline it would multiply is not fitted there), see
        :meth:`_log_contribution_totals`.
        """
        self._national_only("contribution_totals")
        mult = np.asarray(multipliers, dtype=float).reshape(-1)
        spend = np.asarray(self.data.spend, dtype=float)
        sel = _thin(self.n_draws, max_draws)
        if self.spec.log_target:
            return self._log_contribution_totals(mult, sel)
        if self.spec.time_varying_media:
            out = []
            for m in mult:
                x = self._with_tail(spend)
                x[: spend.shape[0]] *= m
                out.append(self.media_contributions(x, draws=sel).sum(axis=1))
            return np.stack(out, axis=1)
        return self._static_sums(mult, sel)[0]

    def _has_static_sums(self) -> bool:
        """Whether :meth:`_static_sums` covers this model: additive, media without a
        time-varying multiplier (then a channel's contribution is ``beta * sat(adstock)``)."""
        return not self.spec.log_target and not getattr(self.spec, "time_varying_media", False)

    def _static_sums(self, mult, sel: slice = slice(None), *, window: bool = False):
        """Of an additive model with static media (:meth:`_has_static_sums`), one batched Rust
        evaluation over draws ``sel`` with the training spend scaled by each of ``mult``:
        contribution totals including carry-over past the window ``(S, K, C)`` and, with
        ``window``, the totals over the training dates ``(S, K, C)`` and each date's
        contribution summed over the draws ``(K, T, C)`` (else None, None); original units.
        """
        from fastmmm import _core

        spend = np.asarray(self.data.spend, dtype=float)
        x = self._with_tail(spend) / np.asarray(self.data.scales.channel_scale)
        beta = self.draws("beta")[sel]
        n, k, c, t = beta.shape[0], len(mult), len(self.channels), spend.shape[0]
        totals = np.empty((n, k, c))
        win = np.empty((n, k, c)) if window else None
        over = np.empty((k, t, c)) if window else None
        for d in self.media_designs():
            cols = list(d.channels)
            a, sp = self.kernel_params(d)
            a = [np.ascontiguousarray(p[sel]) for p in a]
            sp = [np.ascontiguousarray(p[sel]) for p in sp]
            media = (d.adstock, d.saturation, int(d.l_max or 0), bool(d.normalize))
            xs, ms = np.ascontiguousarray(x[:, cols]), [float(m) for m in mult]
            params = (a[0], a[1] if len(a) > 1 else None, sp[0], sp[1] if len(sp) > 1 else None)
            bc = np.ascontiguousarray(beta[:, cols])
            tot_d, win_d, over_d = _core.contribution_sums(*media, xs, ms, t if window else 0, *params, bc)
            totals[:, :, cols] = tot_d
            if window:
                win[:, :, cols], over[:, :, cols] = win_d, over_d
        ts = float(self.data.scales.target_scale)
        return totals * ts, None if win is None else win * ts, None if over is None else over * ts

    def _log_contribution_totals(self, mult: np.ndarray, sel: slice) -> np.ndarray:
        """contribution_totals of a log-target model: ``(S, K, C)``, original units.

        Per draw, channel and multiplier ``k``, one channel at a time: ``sum_t level_t *
        exp(-m_ct) * (exp(m_ct(k)) - 1)``, the expected target with the channel's spend scaled
        by ``k`` minus that with no spend on it, ``level_t`` the fitted expected level and
        ``m(k)`` the channel's log-scale term at the scaled spend. Over the training dates:
        past their end the baseline the carry-over would multiply is not fitted.
        """
        spend = np.asarray(self.data.spend, dtype=float)
        level = self._expected_level(self.draws("mu")[sel], sel)  # (S, T)
        fitted = self.draws("channel_contribution")[sel]  # (S, T, C)
        base = level[:, :, None] * np.exp(-fitted)
        out = np.empty((base.shape[0], len(mult), len(self.channels)))
        for k, m in enumerate(mult):
            if m == 1.0:
                effect = fitted
            elif m == 0.0:
                effect = np.zeros_like(fitted)
            else:
                effect = self._media_effects(spend * m, draws=sel)
            out[:, k] = np.einsum("stc,stc->sc", base, np.expm1(effect))
        return out

    def response_curves(
        self, multipliers=None, interval: float = 0.95, *, max_draws: int | None = 1000
    ) -> pd.DataFrame:
        """Every channel's response curve from one batched evaluation.

        Columns channel, multiplier, spend (total over the training period,
        original units), mean, low, high (the channel's contribution over the
        period plus its carry-over (log target: over the period only), with the ``interval``
        of the draws; up to
        ``max_draws`` draws, evenly thinned). On a panel, per group (a leading group column).
        """
        if self.is_panel:
            frames = [
                r.response_curves(multipliers, interval, max_draws=max_draws) for r in self.group_results()
            ]
            df = pd.concat(
                [f.assign(**{self.group: n}) for n, f in zip(self.groups, frames)], ignore_index=True
            )
            return df[[self.group] + [c for c in df.columns if c != self.group]]
        mult = np.linspace(0.0, 2.0, 21) if multipliers is None else np.asarray(multipliers, dtype=float)
        tot = self.contribution_totals(mult, max_draws=max_draws)  # (S, K, C)
        lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
        q = np.quantile(tot, [lo, hi], axis=0)
        spend = np.asarray(self.data.spend, dtype=float).sum(axis=0)
        rows = []
        for c, ch in enumerate(self.channels):
            for k, m in enumerate(mult):
                rows.append(
                    {
                        "channel": ch,
                        "multiplier": float(m),
                        "spend": float(spend[c] * m),
                        "mean": float(tot[:, k, c].mean()),
                        "low": float(q[0, k, c]),
                        "high": float(q[1, k, c]),
                    }
                )
        return pd.DataFrame(rows)

    def response_curve(self, channel: str, multipliers=None, interval: float = 0.95) -> pd.DataFrame:
        """Total contribution of ``channel`` when its training-period spend is scaled.

        Returns a DataFrame with columns multiplier, spend (total, original
        units), mean, low, high (contribution over the period plus its carry-over).
        """
        self._national_only("response_curve")
        if channel not in self.channels:
            raise ValueError(f"channel: {channel!r} is not one of {self.channels}")
        rc = self.response_curves(multipliers, interval, max_draws=None)
        return rc[rc["channel"] == channel].drop(columns="channel").reset_index(drop=True)

    # ------------------------------------------------------------------ budget
    def optimize_budget(
        self,
        total: float,
        weeks: int,
        *,
        bounds=None,
        objective="mean",
        pattern=None,
        interval: float = 0.95,
        max_draws: int | None = 1000,
        group_totals: dict | None = None,
    ):
        """Optimal split of ``total`` over the next ``weeks`` periods.

        See :func:`fastmmm.optimize.optimize_budget` for the arguments; the
        response is evaluated over (up to ``max_draws``) posterior draws by the
        Rust response kernel, with carry-over from the last ``l_max`` weeks of
        history and past the end of the horizon.

        On a panel the budget is split over every (group, channel) cell with spend
        (:class:`fastmmm.optimize.PanelResponse`): ``bounds`` per cell
        (``{(group, channel): (lo, hi)}`` or ``{group: {channel: (lo, hi)}}``) or per
        channel (every group's cell of it), ``group_totals`` ``{group: total}`` fixes
        some groups' budgets; the result's dicts are keyed by cell.
        """
        from fastmmm.optimize import PosteriorResponse, optimize_budget

        if self.is_panel:
            from fastmmm.optimize import PanelResponse, cell_bounds

            model = PanelResponse.from_result(self, max_draws=max_draws)
            return optimize_budget(
                model,
                total,
                weeks,
                bounds=cell_bounds(model, bounds),
                objective=objective,
                pattern=pattern,
                interval=interval,
                group_totals=group_totals,
            )
        if group_totals:
            raise ValueError("optimize_budget: group_totals= is for panel results; this one is national")
        model = PosteriorResponse.from_result(self, max_draws=max_draws)  # refuses log_target
        return optimize_budget(
            model, total, weeks, bounds=bounds, objective=objective, pattern=pattern, interval=interval
        )

    # ------------------------------------------------------------------ validation
    def validate(self, **thresholds):
        """Validation suite: MAPE, R^2, hold-out MAPE, R-hat, ESS, divergences.

        Keyword arguments override thresholds (mape, rhat, ess, divergences).
        Returns :class:`fastmmm.diagnostics.Validation`.
        """
        from fastmmm.diagnostics import validate

        return validate(self, **thresholds)

    def report_diagnostics(self) -> None:
        """Warn (once per fit) when sampling diagnostics fail their thresholds."""
        from fastmmm.diagnostics import sampler_checks

        v = sampler_checks(self)
        if v.failures:
            lines = "\n".join(f"  - {f}" for f in v.failures)
            warnings.warn(
                f"fastmmm: sampling diagnostics failed (R-hat {v.rhat_max}, min bulk ESS "
                f"{v.ess_bulk_min:.0f}, {v.divergences} divergences):\n{lines}\n"
                "See result.validate() for the full validation block.",
                stacklevel=3,
            )

    def lift_test_summary(self, interval: float = 0.95) -> list[dict]:
        """Per lift test: its inputs, the observed lift and lift_se, and the posterior
        modelled lift ``lift_model`` (mean, low, high; target units). Empty without lift tests.
        On a panel each row leads with the test's group."""
        from fastmmm.lift import lift_summary

        if not self.is_panel:
            return lift_summary(self, interval)
        if self.lift_tests is None:
            return []
        lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
        lm = self.draws("lift_model")
        t = self.lift_tests
        out = []
        for i, g in enumerate(self.lift_groups):
            v = lm[:, i] * float(self.datas[g].scales.target_scale)
            out.append(
                {
                    self.group: self.groups[g],
                    "channel": t.channel[i],
                    "spend_before": float(t.spend_before[i]),
                    "spend_after": float(t.spend_after[i]),
                    "periods": float(t.periods[i]),
                    "lift": float(t.lift[i]),
                    "lift_se": float(t.lift_se[i]),
                    "lift_model": {
                        "mean": float(v.mean()),
                        "low": float(np.quantile(v, lo)),
                        "high": float(np.quantile(v, hi)),
                    },
                }
            )
        return out

    def plot_roas(self, path=None, interval: float = 0.95, truth=None):
        """Forest plot: per channel, every group's ROAS mean and interval (and ``truth``
        ([G,] C) if given). Returns the matplotlib Figure; saved as PNG when ``path`` is given."""
        from matplotlib.figure import Figure

        cs = self.channel_summary(interval)
        if not self.is_panel:
            cs = pd.concat([cs], keys=self.groups, names=["group", "channel"])
        truth = None if truth is None else np.asarray(truth, dtype=float).reshape(len(self.groups), -1)
        C, G = len(self.channels), len(self.groups)
        fig = Figure(figsize=(3.2 * C + 1.2, 0.32 * G + 1.6), layout="constrained")
        axes = fig.subplots(1, C, sharey=True, squeeze=False)[0]
        ypos = np.arange(G)[::-1]
        for c, (ch, ax) in enumerate(zip(self.channels, axes)):
            rows = cs.xs(ch, level="channel").loc[self.groups]
            ax.hlines(ypos, rows["roas_low"], rows["roas_high"], color="tab:blue", lw=2)
            ax.plot(rows["roas_mean"], ypos, "o", color="tab:blue", ms=4, label="posterior mean")
            if truth is not None:
                ax.plot(truth[:, c], ypos, "x", color="tab:red", ms=6, label="truth")
            ax.set_title(ch)
            ax.set_xlabel(f"ROAS ({int(100 * interval)}% interval)")
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(ypos, self.groups if self.is_panel else [""] * G)
        if truth is not None:
            axes[-1].legend(loc="lower right", fontsize="small")
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def summary(self, interval: float = 0.95) -> dict:
        """The summary.json document: channels (on a panel ``groups``: per group its
        channels), diagnostics, timing (and lift_tests when given)."""
        cs = self.channel_summary(interval)

        def channels(rows) -> dict:
            out = {}
            for ch in self.channels:
                row = rows.loc[ch]
                out[ch] = {
                    q: {k: float(row[f"{q}_{k}"]) for k in ("mean", "low", "high")}
                    for q in ("roas", "mroas", "contribution", "contribution_share")
                }
                out[ch]["spend"] = float(row["spend"])
            return out

        v = self.validate()
        out = {
            "interval": interval,
            "backend": self.backend,
            "backend_note": self.backend_note,
            # What each channel's amplitude prior was on: roas, mroas, share or beta (direct).
            "media_prior": amplitude_kind(self.spec),
        }
        if self.is_panel:
            out["group"] = self.group
            out["pooled"] = list(self.pooled)
            out["groups"] = {g: channels(cs.xs(g, level=self.group)) for g in self.groups}
        else:
            out["channels"] = channels(cs)
        out["diagnostics"] = v.to_dict()
        out["timing"] = {
            k: float(self.timing.get(k, 0.0)) for k in ("build_s", "compile_s", "sample_s", "total_s")
        }
        if "sample_core_s" in self.timing:  # CPU time of the Rust sampler's chains, summed
            out["timing"]["sample_core_s"] = float(self.timing["sample_core_s"])
        attrs = self.posterior.attrs
        # How the sampler ran: the draws it took (more than planned when extended until
        # converged) and, where divergences made it sample again, why.
        out["sampler"] = {
            "chains": int(self.posterior.n_chains),
            "draws": int(self.posterior.n_draws),
            "draws_planned": int(attrs.get("draws_planned", self.posterior.n_draws)),
            "target_accept": attrs.get("target_accept"),
            "resampled": attrs.get("resampled", ""),
        }
        if self.lift_tests is not None or self.is_panel:
            out["lift_tests"] = self.lift_test_summary(interval)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save to a directory: ``idata.nc`` (netCDF), ``meta.json`` (spec, scales,
        data, timing). Written to a temporary directory and renamed, so an
        interrupted save never leaves a half-written result; an existing
        directory is replaced only after the new one is complete.
        """
        meta = {
            "format_version": _FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "timing": self.timing,
            "backend": self.backend,
            "backend_note": self.backend_note,
            "seed": self.seed,
            "lift_tests": None if self.lift_tests is None else self.lift_tests.to_dict(),
        }
        if self.is_panel:  # the layout hierarchical results have always been saved in
            meta.update(
                kind="hierarchical",
                group=self.group,
                groups=self.groups,
                datas=[d.to_dict() for d in self.datas],
                pooled=list(self.pooled),
                holdouts=None if not self.holdouts else [d.to_dict() for d in self.holdouts],
                lift_groups=self.lift_groups,
            )
        else:
            meta.update(
                data=self.data.to_dict(), holdout=None if self.holdout is None else self.holdout.to_dict()
            )
        return save_dir(path, self._stored_draws(), meta)

    def _stored_draws(self) -> Posterior:
        """The draws a save writes: a national fit's ``channel_contribution`` is left out, as
        its summaries recompute it from the parameters anyway (:meth:`_media_terms`). It is
        most of the file (2000 draws x 104 weeks x 4 channels: 6.7 of 8.5 MB), and writing
        it was a third of the cost of a brand's outputs in fit-many."""
        if self.is_panel:
            return self.posterior
        return self.posterior.without("channel_contribution")

    @classmethod
    def load(cls, path) -> MMMResult:
        """Load a result saved with :meth:`save`, national or panel, by this or an earlier
        version (netCDF + JSON; no pickle)."""
        meta, posterior = read_dir(path)
        kind = meta.get("kind", "national")
        common = dict(
            posterior=posterior,
            spec=ModelSpec.from_dict(meta["spec"]),
            timing=meta["timing"],
            backend=meta["backend"],
            seed=meta.get("seed"),
            lift_tests=_load_lift(meta.get("lift_tests")),
            backend_note=meta.get("backend_note", ""),
        )
        if kind == "national":
            return cls(
                data=PreparedData.from_dict(meta["data"]),
                holdout=None if meta["holdout"] is None else PreparedData.from_dict(meta["holdout"]),
                **common,
            )
        if kind != "hierarchical":
            raise ValueError(f"{path}: unknown result kind {kind!r}")
        return cls(
            group=meta["group"],
            groups=meta["groups"],
            datas=[PreparedData.from_dict(d) for d in meta["datas"]],
            holdouts=None
            if not meta.get("holdouts")
            else [PreparedData.from_dict(d) for d in meta["holdouts"]],
            pooled=tuple(meta["pooled"]),
            lift_groups=meta.get("lift_groups"),
            **common,
        )


def group_posterior(posterior, i: int, window: tuple[int, int] | None = None):
    """Group ``i`` of a panel's draws as a national posterior: every variable with the group
    dimension at index ``i`` (numpy views, no copies), a pooled parameter's per-group
    ``{name}_geo`` under ``name``; variables without the group axis are shared. Every
    group of draws (sample stats, a stored posterior predictive) is sliced the same way.
    ``window``: the group's own dates ``[start, end)`` on the panel's (a ragged panel);
    variables with a date axis are cut to them."""
    suffix = f"_{GROUP_DIM}"
    groups = {}
    for key, src in posterior.groups.items():
        coords = {k: v for k, v in src.coords.items() if k != GROUP_DIM}
        if window is not None and "date" in coords:
            coords["date"] = coords["date"][window[0] : window[1]]
        out = Group(coords=coords)
        own = {}
        for name in src:
            v, dims = src[name], src.dims[name]
            if GROUP_DIM in dims:
                ax = dims.index(GROUP_DIM)
                v, dims = v[(slice(None),) * ax + (i,)], dims[:ax] + dims[ax + 1 :]
            if window is not None and "date" in dims:
                ax = dims.index("date")
                v = v[(slice(None),) * ax + (slice(*window),)]
            if key == "posterior" and name.endswith(suffix):
                own[name[: -len(suffix)]] = (v, dims)
            else:
                out.add(name, v, dims)
        for name, (v, dims) in own.items():  # the group's own values of a pooled parameter
            out.add(name, v, dims)
        groups[key] = out
    return Posterior(groups, posterior.attrs)


def _load_lift(d):
    if d is None:
        return None
    from fastmmm.lift import LiftTests

    return LiftTests.from_dict(d)


def read_dir(path) -> tuple[dict, object]:
    """``meta.json`` and the draws (``idata.nc``) of a saved result directory."""
    path = Path(path)
    meta_p, nc_p = path / "meta.json", path / "idata.nc"
    if not meta_p.exists() or not nc_p.exists():
        raise FileNotFoundError(f"{path} is not a saved fastmmm result (needs meta.json and idata.nc)")
    meta = json.loads(meta_p.read_text())
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    return meta, Posterior.load(nc_p)


def save_dir(path, posterior, meta: dict) -> Path:
    """Write ``idata.nc`` (netCDF: the draws' groups) and ``meta.json`` to directory ``path`` atomically.

    Both go to a temporary directory beside ``path`` that is renamed into place,
    so an interrupted save never leaves a half-written result; an existing
    directory is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        # Uncompressed: posterior draws are incompressible noise, and saving is on fit_many's path.
        posterior.save(tmp / "idata.nc")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    if isinstance(o, float) and math.isnan(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load(path) -> MMMResult:
    """Load a saved result, national or panel (hierarchical): :meth:`MMMResult.load`."""
    return MMMResult.load(path)
