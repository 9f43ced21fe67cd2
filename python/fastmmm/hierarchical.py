"""Hierarchical (multi-geo / multi-brand) MMM: one model over several groups
with partial pooling of the media parameters.

Every group ``g`` (a geo or a brand, a value of the ``group`` column) has the
single-model structure of :mod:`fastmmm.model` on its own scaled data (target
and spend scaled per group), with its own baseline: ``level[g]``,
``trend[g]``, ``gamma_fourier[g]``, ``gamma_control[g]`` and ``sigma[g]``
(StudentT's ``nu`` is shared). The media parameters are *partially pooled*,
on the unconstrained scale of their prior, non-centred for the adstock and
saturation parameters::

    u_c           = forward(theta_c)                 # theta_c: the global parameter, usual prior
    theta[g, c]   = backward(u_c + theta_sd * theta_z[g, c])
    theta_sd      ~ HalfNormal(0.5)                   # one per parameter kind
    theta_z[g, c] ~ Normal(0, 1)

and centred for the channel amplitude, which every group's data pin down
(:data:`fastmmm.layout.CENTRED_POOLS`): ``theta[g, c] = backward(theta_w[g, c])``,
``theta_w[g, c] ~ Normal(u_c, theta_sd)``, the same model in other coordinates.

where ``forward``/``backward`` are PyMC's transform of the global parameter
(log for positive parameters, log-odds for decay rates, the interval map for
bounded ones): a group's decay rate is a logit-normal draw around the global
one, its channel share a log-normal one. This holds for every adstock and
saturation parameter and for the channel amplitude (``channel_share``, or
``beta`` with a user prior on it); ``pooled=`` chooses which are pooled (the
others are shared by all groups).

The fused Rust log-density (:mod:`fastmmm.fastpath`) covers this model with
the groups as the batch axis of its media kernel: one gradient evaluation
covers every group. The PyMC model (:func:`build_hierarchical_model`) is the
reference, and the ``pytensor`` backend samples it with nutpie's numba
compilation.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pandas as pd

from fastmmm import defaults
from fastmmm.data import DataError, PreparedData, panel_grid, prepare
from fastmmm.kernels import SATURATION_PARAMS
from fastmmm.layout import CENTRED_POOLS, POOLABLE, check_pooled, is_pooled
from fastmmm.results import MMMResult
from fastmmm.spec import ModelSpec

__all__ = [
    "POOLABLE",
    "HierarchicalMMM",
    "HierarchicalResult",
    "build_hierarchical_model",
    "prepare_panel",
]

log = logging.getLogger("fastmmm")


# ---------------------------------------------------------------------- data
def prepare_panel(df, spec: ModelSpec, group: str) -> tuple[list[str], list[PreparedData]]:
    """Validate and scale a panel: one ``PreparedData`` per group on its own dates.

    Groups may start late or stop early (a ragged panel: each group's likelihood covers its
    own dates, :func:`fastmmm.data.panel_grid`), and a channel may have no spend in some
    groups (its cell has no contribution and no ROAS there).

    Raises
    ------
    DataError
        Missing group column, fewer than one group, groups off one date grid, a channel
        without spend in every group, or any per-group problem (named with its group:
        too few weeks of its own, gaps, bad values, ...).
    """
    if isinstance(df, (str, os.PathLike)):
        df = pd.read_csv(df)
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"data: expected a DataFrame or a CSV path, got {type(df).__name__}")
    if group not in df.columns:
        raise DataError(
            f"group column {group!r} is not in the data (columns: {', '.join(map(str, df.columns))})"
        )
    if df[group].isna().any():
        raise DataError(f"group column {group!r} has {int(df[group].isna().sum())} missing value(s)")
    names = [str(g) for g in pd.unique(df[group])]
    if not names:
        raise DataError("data: no rows")
    datas = []
    for name, sub in df.groupby(df[group].astype(str), sort=False):
        try:
            d = prepare(sub.drop(columns=[group]).reset_index(drop=True), spec, allow_absent_channels=True)
        except DataError as e:
            raise DataError(f"group {name!r}: {e}") from None
        datas.append(d)
    _check_panel(names, datas, spec)
    return names, datas


def _check_panel(names, datas, spec) -> None:
    """DataError unless the groups' dates lie on one grid and every channel has spend in some
    group."""
    from fastmmm.data import panel_grid

    panel_grid(datas, names)
    spent = np.stack([np.asarray(d.spend, dtype=float).sum(axis=0) > 0 for d in datas])
    never = [c for c, any_spend in zip(spec.channels, spent.any(axis=0)) if not any_spend]
    if never:
        raise DataError(
            f"channel(s) with zero spend in every group: {', '.join(map(repr, never))}; drop them from the spec"
        )


def _check_ragged_support(spec, datas, lift, media_multiplier: str = "shared") -> None:
    """What a ragged panel (groups on different dates) cannot have: a media multiplier
    shared by the groups (its one basis would be on dates they do not share; each group's
    GP has the basis of its own window, :func:`fastmmm.tvp.panel_hsgp_data`) and, not yet,
    level lifts (log target: they read the level at the panel's dates)."""
    dates0 = pd.DatetimeIndex(datas[0].dates)
    if all(pd.DatetimeIndex(d.dates).equals(dates0) for d in datas[1:]):
        return
    if spec.time_varying_media and media_multiplier != "group":
        raise NotImplementedError(
            "time-varying media with one multiplier shared by the groups needs groups on the same "
            "dates; on a panel whose groups start or stop at different dates use "
            "media_multiplier='group' (--media-multiplier group): one multiplier per group"
        )
    if lift is not None and spec.log_target:
        raise NotImplementedError(
            "lift tests on a log-target panel whose groups have different dates are not implemented"
        )


def _unfitted_spend(train: PreparedData, new: PreparedData) -> list[str]:
    """Channels with spend in ``new`` rows but none in the group's training data."""
    had = np.asarray(train.spend, dtype=float).sum(axis=0) > 0
    has = np.asarray(new.spend, dtype=float).sum(axis=0) > 0
    return [c for c, h, n in zip(train.spec.channels, had, has) if n and not h]


def is_ragged(datas) -> bool:
    """Whether a panel's groups are on different dates or lack channels (the model then masks
    each group's likelihood to its own window and absent cells' contributions)."""
    dates0 = pd.DatetimeIndex(datas[0].dates)
    if any(not pd.DatetimeIndex(d.dates).equals(dates0) for d in datas[1:]):
        return True
    return any(not (np.asarray(d.spend, dtype=float).sum(axis=0) > 0).all() for d in datas)


def read_group_lift_tests(obj, spec: ModelSpec, group: str, groups: list[str], frequency: str = "W"):
    """Lift tests of a hierarchical model: the columns of :mod:`fastmmm.lift` plus the
    ``group`` column naming each test's geo/brand (a geo experiment).

    Returns
    -------
    (LiftTests, (n,) int array of group indices), or None when ``obj`` is None.
    """
    from fastmmm.lift import read_lift_tests, read_table, rows_text

    if obj is None:
        return None
    df = read_table(obj)
    cols = {str(c).lower(): c for c in df.columns}
    if group.lower() not in cols:
        raise DataError(
            f"lift_tests: a hierarchical model needs the group column {group!r} in its lift tests "
            f"(columns: {', '.join(map(str, df.columns))})"
        )
    col = df[cols[group.lower()]]
    names = col.astype(str).to_numpy()
    unknown = col.isna().to_numpy() | ~np.isin(names, [str(g) for g in groups])
    if unknown.any():
        raise DataError(
            f"lift_tests: {group!r} values not among the model's groups in {rows_text(unknown)} "
            f"(groups: {', '.join(map(str, groups))})"
        )
    lift = read_lift_tests(df.drop(columns=[cols[group.lower()]]), spec, frequency=frequency)
    index = {str(g): i for i, g in enumerate(groups)}
    return lift, np.array([index[n] for n in names], dtype=np.int64)


def _stack(datas: list[PreparedData]) -> dict[str, np.ndarray]:
    """The PyMC model's data containers: the panel's arrays on its dates (G, T, ...)."""
    from fastmmm.fastpath import panel_grid_arrays

    arr = panel_grid_arrays(datas)
    del arr["window"]
    return arr


# ---------------------------------------------------------------------- model
_check_pooled = check_pooled
_is_pooled = is_pooled


def _pool(rv, name: str, model, sd_prior, centred: bool = False, dims=("geo", "channel")):
    """Per-group values of global ``rv``: backward(forward(rv) + sd * z), non-centred, or
    backward(w) with w ~ Normal(forward(rv), sd), centred (layout.CENTRED_POOLS)."""
    import pymc as pm

    tr = model.rvs_to_transforms.get(rv)
    inputs = rv.owner.inputs
    u = tr.forward(rv, *inputs) if tr is not None else rv
    sd = sd_prior.create(f"{name}_sd")
    if centred:
        w = pm.Normal(f"{name}_w", u, sd, dims=dims)
    else:
        w = u + sd * pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
    return pm.Deterministic(f"{name}_geo", tr.backward(w, *inputs) if tr is not None else w, dims=dims)


def _panel_hsgp_rv(spec, datas, part: str, by_group: bool):
    """The HSGP of a panel's time-varying ``part``: (G, T) with ``by_group`` (one GP per
    group, sharing the lengthscale and amplitude), else (T,). Groups on the same dates
    share one basis (:func:`fastmmm.model.hsgp_rv`); a ragged panel's each have the basis
    of their own window (:func:`fastmmm.tvp.panel_hsgp_data`)."""
    import pymc as pm
    import pytensor.tensor as pt

    from fastmmm.layout import resolve_prior
    from fastmmm.model import hsgp_rv
    from fastmmm.tvp import gp_weights, panel_hsgp_data

    h = panel_hsgp_data(spec, datas)
    if h[f"hsgp_phi_{part}"].ndim == 2:
        return hsgp_rv(spec, datas[0], part, group_dim="geo" if by_group else None)
    if not by_group:  # refused earlier (_check_ragged_support)
        raise NotImplementedError("a GP shared by groups on different dates")
    dims = ("geo", "hsgp_basis")
    phi = pm.Data(f"hsgp_phi_{part}", h[f"hsgp_phi_{part}"], dims=("geo", "date", "hsgp_basis"))
    omega = pm.Data(f"hsgp_omega_{part}", h[f"hsgp_omega_{part}"], dims=dims)
    col_ms = pm.Data(f"hsgp_col_ms_{part}", h[f"hsgp_col_ms_{part}"], dims=dims)
    ls = resolve_prior(spec, f"tvp_{part}_ls").create(f"tvp_{part}_ls")
    eta = resolve_prior(spec, f"tvp_{part}_eta").create(f"tvp_{part}_eta")
    z = pm.Normal(f"tvp_{part}_z", mu=0.0, sigma=1.0, dims=dims)
    w = gp_weights(omega, ls, eta, col_ms, z, xp=pt)  # (G, m)
    return (phi * w[:, None, :]).sum(axis=2)


def build_hierarchical_model(
    datas: list[PreparedData],
    spec: ModelSpec,
    groups: list[str],
    *,
    pooled=POOLABLE,
    pool_sd=None,
    lift=None,
    media_multiplier: str = "shared",
):
    """The PyMC model of a hierarchical MMM (see the module docstring).

    Parameters
    ----------
    datas : one PreparedData per group (on its own dates), from :func:`prepare_panel`.
    spec : ModelSpec (one adstock and one saturation kind for all channels).
    groups : group names.
    pooled : which media parameters are partially pooled: kinds of :data:`POOLABLE`
        and/or parameter names (``"saturation_kappa"``); the others are shared by all groups.
    pool_sd : Prior of the pooling scales (default HalfNormal(0.5)).
    lift : (LiftTests, group indices) from :func:`read_group_lift_tests`, optional:
        adds ``lift_obs ~ Normal(lift_model, lift_se)`` per test with ``lift_model =
        periods * beta[g, c] * (f_gc(x1) - f_gc(x0))`` (scaled by the test's group), the
        curve of the test's own group (see :mod:`fastmmm.lift`).
    media_multiplier : with ``spec.time_varying_media``, one multiplier for all groups
        (``"shared"``) or one per group (``"group"``).

    With ``spec.time_varying_intercept`` each group's baseline gets its own drift (an HSGP
    per group on the shared dates, :mod:`fastmmm.tvp`, the lengthscale and amplitude shared
    by all groups, which pools how wiggly and how large drifts are) and the deterministic
    ``intercept_tv`` (geo, date); with ``spec.time_varying_media`` the contributions are
    multiplied by ``media_multiplier`` (date), or (geo, date) per group.

    Returns
    -------
    pm.Model with data ``spend`` (geo, date, channel), ``y`` (geo, date),
    ``trend_t``, ``fourier``, ``controls``, ``kappa_scale`` (geo, channel) and
    deterministics ``{param}_geo`` (geo, channel) per pooled parameter,
    ``beta`` (geo, channel), ``channel_contribution`` (geo, date, channel),
    ``intercept`` (geo), ``mu`` (geo, date), all on each group's scaled space.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from fastmmm.layout import (
        FIXED_SATURATION_PARAMS,
        MEDIA_MULTIPLIERS,
        amplitude_kind,
        amplitude_name,
        media_designs,
    )
    from fastmmm.layout import (
        resolve_prior as _prior,
    )
    from fastmmm.model import amplitude_rv
    from fastmmm.ops.media import media_transform
    from fastmmm.priors import Prior

    pooled = _check_pooled(pooled)
    if media_multiplier not in MEDIA_MULTIPLIERS:
        raise ValueError(f"media_multiplier: must be one of {MEDIA_MULTIPLIERS}, got {media_multiplier!r}")
    designs = media_designs(spec)
    if len(designs) != 1:
        raise ValueError("hierarchical model: all channels must share one adstock and one saturation kind")
    d = designs[0]
    pool_sd = pool_sd or Prior("HalfNormal", sigma=0.5)
    arr = _stack(datas)
    channels = list(spec.channels)
    controls = list(spec.controls)
    n_four = arr["fourier"].shape[2]
    dates, windows = panel_grid(datas)
    coords = {"geo": list(groups), "date": np.asarray(dates), "channel": channels}
    if controls:
        coords["control"] = controls
    if n_four:
        order = n_four // 2
        coords["fourier_mode"] = [f"sin_{k}" for k in range(1, order + 1)] + [
            f"cos_{k}" for k in range(1, order + 1)
        ]
    if spec.time_varying_intercept or spec.time_varying_media:
        coords["hsgp_basis"] = np.arange(spec.hsgp_m)
    # A ragged panel: each group observed on its window only, channels absent from groups.
    observed = np.zeros((len(datas), len(dates)), dtype=bool)
    for g, (a, b) in enumerate(windows):
        observed[g, a:b] = True
    ragged = not observed.all()
    n_obs = observed.sum(axis=1).astype(float)
    absent = ~(arr["spend"].sum(axis=1) > 0)  # (G, C)

    def window_mean(x):
        """Mean over each group's window along axis 1 of (G, T) or (G, T, C)."""
        if not ragged:
            return pt.mean(x, axis=1)
        w = observed if x.ndim == 2 else observed[:, :, None]
        return (x * w).sum(axis=1) / (n_obs if x.ndim == 2 else n_obs[:, None])

    with pm.Model(coords=coords) as model:
        spend = pm.Data("spend", arr["spend"], dims=("geo", "date", "channel"))
        y_obs = pm.Data("y", arr["y"], dims=("geo", "date"))
        G, T = arr["y"].shape
        mu = pt.zeros((G, T))
        centre = bool(spec.intercept)
        offset = pt.zeros(G)
        if spec.intercept:
            level = _prior(spec, "intercept").create("level", dims="geo")
            mu = mu + level[:, None]
        if spec.trend:
            t_trend = pm.Data("trend_t", arr["trend_t"], dims=("geo", "date"))
            trend = _prior(spec, "trend").create("trend", dims="geo")
            mu = mu + trend[:, None] * t_trend
            if centre:
                offset = offset + trend * window_mean(t_trend)
        if n_four:
            four = pm.Data("fourier", arr["fourier"], dims=("geo", "date", "fourier_mode"))
            gf = _prior(spec, "gamma_fourier").create("gamma_fourier", dims=("geo", "fourier_mode"))
            mu = mu + (four * gf[:, None, :]).sum(axis=2)
        if controls:
            ctrl = pm.Data("controls", arr["controls"], dims=("geo", "date", "control"))
            gc = _prior(spec, "gamma_control").create("gamma_control", dims=("geo", "control"))
            mu = mu + (ctrl * gc[:, None, :]).sum(axis=2)
        drift = None
        if spec.time_varying_intercept:
            drift = _panel_hsgp_rv(spec, datas, "intercept", by_group=True)
            mu = mu + drift

        a_params = []
        for p in d.adstock_params:
            name = f"adstock_{p}"
            rv = _prior(spec, name, d, channels).create(name, dims="channel")
            a_params.append(
                _pool(rv, name, model, pool_sd, centred="adstock" in CENTRED_POOLS)
                if _is_pooled(name, "adstock", pooled)
                else rv[None, :]
            )
        rel = d.relative_param
        scale = pm.Data("kappa_scale", arr["kappa_scale"], dims=("geo", "channel")) if rel else None
        fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
        s_params = []
        for p in SATURATION_PARAMS[d.saturation]:
            if p in fixed:
                s_params.append(pt.as_tensor_variable(np.full((1, len(channels)), fixed[p])))
                continue
            name = f"saturation_{p}"
            rv = _prior(spec, name, d, channels).create(name, dims="channel")
            v = (
                _pool(rv, name, model, pool_sd, centred="saturation" in CENTRED_POOLS)
                if _is_pooled(name, "saturation", pooled)
                else rv[None, :]
            )
            s_params.append(v * scale if p == rel else v)
        sat = media_transform(
            spend,
            d.adstock,
            d.saturation,
            tuple(a_params),
            tuple(s_params),
            l_max=d.l_max,
            normalize=d.normalize,
        )  # (G, T, C)
        kind = amplitude_kind(spec)
        if kind == "mroas":
            raise ValueError(
                "hierarchical model: media_prior='mroas' is not implemented; use 'roas' or 'share'"
            )
        amp_name = amplitude_name(spec)
        amp = amplitude_rv(spec, datas, dims="channel")
        # Pooled on the unconstrained scale of its prior: log-ROAS for a LogNormal ROAS prior.
        amp_g = (
            _pool(amp, amp_name, model, pool_sd, centred="amplitude" in CENTRED_POOLS)
            if _is_pooled(amp_name, "amplitude", pooled)
            else amp[None, :]
        )
        if kind == "beta":
            beta = amp_g
        else:
            if kind == "roas":
                k = pm.Data("roas_scale", arr["roas_scale"], dims=("geo", "channel"))
            else:
                k = window_mean(y_obs)[:, None]
            msat = window_mean(sat)
            if absent.any():  # no spend, no contribution: beta 0 (not 0 / 0)
                beta = pt.switch(absent, 0.0, amp_g * k / pt.switch(absent, 1.0, msat))
            else:
                beta = amp_g * k / msat
            beta = pm.Deterministic("beta", beta, dims=("geo", "channel"))
        if spec.time_varying_media:
            by_group = media_multiplier == "group"
            g_t = _panel_hsgp_rv(spec, datas, "media", by_group=by_group)
            mult = pm.Deterministic(
                "media_multiplier", pt.exp(g_t), dims=("geo", "date") if by_group else "date"
            )
            contrib = pm.Deterministic(
                "channel_contribution",
                sat * beta[:, None, :] * (mult[:, :, None] if by_group else mult[None, :, None]),
                dims=("geo", "date", "channel"),
            )
        else:
            contrib = pm.Deterministic(
                "channel_contribution", sat * beta[:, None, :], dims=("geo", "date", "channel")
            )
        media = contrib.sum(axis=2)
        if centre:
            offset = offset + window_mean(media)
            pm.Deterministic("intercept", level - offset, dims="geo")
        if drift is not None:
            pm.Deterministic(
                "intercept_tv", ((level - offset)[:, None] + drift) if centre else drift, dims=("geo", "date")
            )
        mu = pm.Deterministic("mu", mu + media - offset[:, None], dims=("geo", "date"))
        sigma = _prior(spec, "sigma").create("sigma", dims="geo")
        lik = dict(mu=mu, sigma=sigma[:, None], observed=y_obs, dims=("geo", "date"))
        if ragged:  # the observed (group, date) cells only
            cells = np.flatnonzero(observed.ravel())
            model.add_coord("observation", np.arange(cells.size))
            lik = dict(
                mu=mu.reshape((-1,))[cells],
                sigma=pt.broadcast_to(sigma[:, None], (G, T)).reshape((-1,))[cells],
                observed=y_obs.reshape((-1,))[cells],
                dims="observation",
            )
        if spec.likelihood == "studentt":
            nu = _prior(spec, "nu").create("nu")
            pm.StudentT("y_obs", nu=nu, **lik)
        else:
            pm.Normal("y_obs", **lik)
        if lift is not None:  # no free variables: after sigma, which a log-target lift reads
            _add_group_lift(model, spec, datas, lift, d, a_params, s_params, beta)
    return model


def _add_group_lift(model, spec, datas, lift, design, a_params, s_params, beta):
    """The lift-test likelihood of a hierarchical model (inside its ``with model``)."""
    import pymc as pm
    import pytensor.tensor as pt

    from fastmmm.fastpath import lift_arrays
    from fastmmm.ops.media import media_transform

    tests, gidx = lift
    arr = lift_arrays(tests, datas, spec, gidx)
    n, C, G = len(tests), len(spec.channels), len(datas)
    onehot = np.zeros((n, C))
    onehot[np.arange(n), arr["lift_channel"]] = 1.0
    model.add_coord("lift_test", np.arange(n))
    x0 = pm.Data("lift_x0", onehot * arr["lift_x0"][:, None], dims=("lift_test", "channel"))
    x1 = pm.Data("lift_x1", onehot * arr["lift_x1"][:, None], dims=("lift_test", "channel"))
    periods = pm.Data("lift_periods", arr["lift_periods"], dims="lift_test")
    delta = pm.Data("lift_delta", arr["lift_delta"], dims="lift_test")
    se = pm.Data("lift_se", arr["lift_se"], dims="lift_test")
    g2 = np.concatenate([gidx, gidx])
    steady = arr["lift_steady"]
    xs = pt.concatenate([x0, x1], axis=0)
    x3 = pt.broadcast_to(xs[:, None, :], (2 * n, steady, C))
    per_test = lambda v: pt.broadcast_to(v, (G, C))[g2]  # noqa: E731
    y = media_transform(
        x3,
        design.adstock,
        design.saturation,
        tuple(per_test(v) for v in a_params),
        tuple(per_test(v) for v in s_params),
        l_max=design.l_max,
        normalize=design.normalize,
    )
    sat = y[:, -1, :]
    b = pt.broadcast_to(beta, (G, C))[gidx]
    if spec.log_target:
        # Level lift at the test's dates in its own group (fastmmm.lift's module docstring).
        w = pm.Data("lift_time_weights", arr["lift_weights"].reshape(n, -1), dims=("lift_test", "date"))
        mask = pt.as_tensor_variable(onehot)
        own = (model["channel_contribution"][gidx] * mask[:, None, :]).sum(axis=2)  # (n, T)
        level = pt.exp(model["mu"][gidx] - own + 0.5 * model["sigma"][gidx][:, None] ** 2)
        bc = (b * mask).sum(axis=1)
        f0, f1 = (sat[:n] * mask).sum(axis=1), (sat[n:] * mask).sum(axis=1)
        gain = pt.exp(bc * f1) - pt.exp(bc * f0)
        lift_model = periods * gain * (w * level).sum(axis=1)
    else:
        lift_model = periods * ((sat[n:] - sat[:n]) * b).sum(axis=1)
    lift_model = pm.Deterministic("lift_model", lift_model, dims="lift_test")
    pm.Normal("lift_obs", mu=lift_model, sigma=se, observed=delta, dims="lift_test")


# ---------------------------------------------------------------------- fast path
def panel_model_layout(
    datas,
    spec: ModelSpec,
    groups,
    *,
    pooled=POOLABLE,
    pool_sd=None,
    lift=None,
    group: str = "geo",
    media_multiplier: str = "shared",
):
    """The :class:`fastmmm.layout.ModelLayout` of :func:`build_hierarchical_model`."""
    from fastmmm.layout import panel_layout

    return panel_layout(
        spec,
        datas,
        groups,
        pooled=pooled,
        pool_sd=pool_sd,
        n_lift=0 if lift is None else len(lift[0]),
        group_dim="geo",
        media_multiplier=media_multiplier,
    )


def grouped_problem(
    datas,
    spec: ModelSpec,
    groups,
    *,
    pooled=POOLABLE,
    pool_sd=None,
    lift=None,
    problem_cls=None,
    media_multiplier: str = "shared",
):
    """(fused Rust problem, layout) of the hierarchical model: the groups on the batch axis."""
    from fastmmm import fastpath

    _check_ragged_support(spec, datas, lift, media_multiplier)
    layout = panel_model_layout(
        datas, spec, groups, pooled=pooled, pool_sd=pool_sd, lift=lift, media_multiplier=media_multiplier
    )
    data = fastpath.problem_data(
        spec, list(datas), None if lift is None else lift[0], None if lift is None else lift[1]
    )
    return fastpath.build_problem(layout, data, problem_cls), layout


# ---------------------------------------------------------------------- fitting
class HierarchicalMMM:
    """A hierarchical MMM over groups (geos or brands) with partially pooled media effects.

    Parameters
    ----------
    spec : ModelSpec, optional (or its fields as keyword arguments)
    group : str
        The group column (e.g. ``"geo"``).
    pooled : sequence of {"adstock", "saturation", "amplitude"} or parameter names
        Media parameters pooled across groups (default all); the others are
        shared. Parameter names (``"adstock_alpha"``, ``"saturation_kappa"``,
        ``"saturation_slope"``, ``"channel_share"``) pick single parameters.
    pool_sd : Prior, optional
        Prior of the pooling scales on the unconstrained scale (default HalfNormal(0.5)).
    media_multiplier : {"shared", "group"}
        With ``time_varying_media``: one multiplier for all groups (default) or one per group.
        A ``time_varying_intercept`` is always one drift per group (lengthscale and amplitude
        shared by the groups).

    Examples
    --------
    >>> h = HierarchicalMMM(group="geo", date_column="date", target="sales",
    ...                     channels=["tv", "search"], saturation="hill")   # doctest: +SKIP
    >>> res = h.fit(panel_df, seed=1)                                        # doctest: +SKIP
    >>> res.channel_summary()                                                # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec | None = None,
        *,
        group: str = "geo",
        pooled=POOLABLE,
        pool_sd=None,
        media_multiplier: str = "shared",
        **kwargs,
    ):
        if spec is not None and kwargs:
            raise TypeError("give either a ModelSpec or keyword arguments, not both")
        self.spec = spec if spec is not None else ModelSpec(**kwargs)
        if not isinstance(group, str) or not group:
            raise ValueError(f"group: must be a column name, got {group!r}")
        if group in (self.spec.date_column, self.spec.target, *self.spec.channels, *self.spec.controls):
            raise ValueError(f"group: column {group!r} already has a role in the spec")
        from fastmmm.layout import MEDIA_MULTIPLIERS

        if media_multiplier not in MEDIA_MULTIPLIERS:
            raise ValueError(
                f"media_multiplier: must be one of {', '.join(map(repr, MEDIA_MULTIPLIERS))}, "
                f"got {media_multiplier!r}"
            )
        if len(set(self.spec.adstock_by_channel)) > 1 or len(set(self.spec.saturation_by_channel)) > 1:
            raise ValueError(
                "hierarchical model: all channels must share one adstock and one saturation kind"
            )
        self.group = group
        self.pooled = _check_pooled(pooled)
        self.pool_sd = pool_sd
        self.media_multiplier = media_multiplier

    def build(self, df):
        """(group names, per-group data, PyMC model) for ``df``."""
        groups, datas = prepare_panel(df, self.spec, self.group)
        _check_ragged_support(self.spec, datas, None, self.media_multiplier)
        model = build_hierarchical_model(
            datas,
            self.spec,
            groups,
            pooled=self.pooled,
            pool_sd=self.pool_sd,
            media_multiplier=self.media_multiplier,
        )
        return groups, datas, model

    def fit(
        self,
        df,
        *,
        draws: int = defaults.DRAWS,
        tune: int = defaults.TUNE,
        chains: int = defaults.CHAINS,
        seed: int | None = None,
        progress: bool = True,
        backend: str = "auto",
        cores: int | None = None,
        holdout_weeks: int = 0,
        lift_tests=None,
        **sampler_kwargs,
    ):
        """Validate the panel, build the model and sample with nutpie.

        ``backend``: ``"rust"`` (fused log-density over all groups, nothing
        compiled), ``"pytensor"`` (nutpie's numba compilation of the PyMC
        model), ``"auto"`` (rust when available). The sampler defaults are
        every fit's (:mod:`fastmmm.defaults`: 2 chains); the pooled saturation
        parameters mix more slowly than a single model's (bulk ESS about 10-20%
        of the draws): use ``chains=4, draws=2000`` for a final model. ``lift_tests``: geo experiments, the columns of
        :mod:`fastmmm.lift` plus the group column (see
        :func:`read_group_lift_tests`). ``holdout_weeks``: the
        last N weeks of every group are held out (each group's training part
        keeps its own scales) and ``validate()`` reports the hold-out MAPE.
        """
        from fastmmm import fastpath
        from fastmmm.fit import BACKENDS, ModelBuild, check_counts, sample_model

        t0 = time.perf_counter()
        if backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        check_counts(draws, tune, chains)
        groups, datas = prepare_panel(df, self.spec, self.group)
        holdouts = None
        if holdout_weeks:
            from fastmmm.data import split_holdout

            pairs = []
            for name, d in zip(groups, datas):
                try:
                    pairs.append(split_holdout(d, holdout_weeks, allow_absent_channels=True))
                except DataError as e:
                    raise DataError(f"group {name!r}: {e}") from None
            datas, holdouts = [p[0] for p in pairs], [p[1] for p in pairs]
            _check_panel(groups, datas, self.spec)
            for name, d, h in zip(groups, datas, holdouts):
                new = _unfitted_spend(d, h)
                if new:
                    raise DataError(
                        f"group {name!r}: {', '.join(map(repr, new))} spend only in the hold-out weeks; "
                        "the model cannot learn their effect there (hold out fewer weeks)"
                    )
        lift = read_group_lift_tests(lift_tests, self.spec, self.group, groups, frequency=datas[0].frequency)
        _check_ragged_support(self.spec, datas, lift, self.media_multiplier)
        if lift is not None and self.spec.time_varying_media:
            raise NotImplementedError(
                "lift tests with a time-varying media multiplier are not implemented for panels "
                "(the multiplier at a test's dates is not in its modelled lift)"
            )
        if lift is not None:  # a test of a channel in a group that never spends on it measures nothing
            chans = list(self.spec.channels)
            for ch, g in zip(lift[0].channel, lift[1]):
                if not np.any(np.asarray(datas[g].spend)[:, chans.index(ch)] > 0):
                    raise DataError(
                        f"lift_tests: a test of {ch!r} in {self.group} {groups[g]!r}, which has no {ch!r} spend"
                    )
        spec, pooled, pool_sd, mm = self.spec, self.pooled, self.pool_sd, self.media_multiplier

        def data_updates(model):
            from fastmmm.layout import amplitude_name, amplitude_prior
            from fastmmm.tvp import panel_hsgp_data

            arr = {**_stack(datas), **panel_hsgp_data(spec, datas)}
            name = amplitude_name(spec)
            if name in ("roas", "mroas") and spec.prior(name) is None:  # the data-based default prior
                mu = amplitude_prior(spec, datas)["mu"]
                arr["roas_prior_mu"] = np.broadcast_to(
                    np.asarray(mu, dtype=np.float64), (len(spec.channels),)
                )
            names = {v.name for v in model.data_vars}
            return {k: v for k, v in arr.items() if k in names}

        build = ModelBuild(
            spec=spec,
            layout=lambda: panel_model_layout(
                datas, spec, groups, pooled=pooled, pool_sd=pool_sd, lift=lift, media_multiplier=mm
            ),
            problem_data=lambda: fastpath.problem_data(
                spec, datas, None if lift is None else lift[0], None if lift is None else lift[1]
            ),
            pymc_model=lambda: build_hierarchical_model(
                datas, spec, groups, pooled=pooled, pool_sd=pool_sd, lift=lift, media_multiplier=mm
            ),
            data_updates=data_updates,
            cache_key=(
                "hierarchical",
                spec.structure_key(),
                pooled,
                str(pool_sd),
                mm,
                len(groups),
                datas[0].spend_scaled.shape,
                datas[0].controls_scaled.shape,
                datas[0].fourier.shape,
                0 if lift is None else len(lift[0]),
                tuple(groups),
                # A ragged panel's windows and absent cells are constants of the PyMC graph.
                tuple(panel_grid(datas)[1]),
                tuple(bool(v) for d in datas for v in np.asarray(d.spend).sum(axis=0) > 0),
                # The tests are constants of the PyMC graph: a model is reused for the same tests only.
                None
                if lift is None
                else (json.dumps(lift[0].to_dict(), default=str), tuple(lift[1].tolist())),
            ),
        )
        out = sample_model(
            build,
            backend=backend,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            progress=progress,
            **sampler_kwargs,
        )
        timing = out.timing()
        posterior = out.posterior
        posterior.posterior.coords["date"] = np.asarray(panel_grid(datas)[0].values)
        res = MMMResult(
            posterior=posterior,
            spec=self.spec,
            timing=timing,
            backend=out.backend,
            seed=seed,
            lift_tests=None if lift is None else lift[0],
            backend_note=out.note,
            group=self.group,
            groups=groups,
            datas=datas,
            holdouts=holdouts,
            pooled=self.pooled,
            lift_groups=None if lift is None else [int(g) for g in lift[1]],
        )
        res.report_diagnostics()
        res.timing["total_s"] = time.perf_counter() - t0
        return res


#: A panel's result is the national result type with a group axis (kept under its old name).
HierarchicalResult = MMMResult
