"""The PyMC model of an MMM, built on fastmmm's Rust-backed PyTensor Ops.

Everything is on the scaled space of :mod:`fastmmm.data`: the target divided
by its scale, each channel's spend divided by its scale, controls
standardised. For a design with channels ``c``::

    mu[t] = intercept + trend * t_trend[t] + fourier[t] @ gamma_fourier
            + controls[t] @ gamma_control
            + sum_c beta[c] * saturation_c(adstock_c(spend[:, c]))[t]

sampled as ``level + trend * (t_trend[t] - mean(t_trend)) + (media[t] - mean(media)) + ...``
with ``intercept = level - trend * mean(t_trend) - mean(media)`` a deterministic:
centring decorrelates the baseline from the trend and from always-on channels
(a linear ridge that otherwise slows mixing). The ``intercept`` prior of a spec
applies to ``level``, the baseline at average trend and media.
    y[t] ~ Normal(mu[t], sigma)   (or StudentT(nu, mu[t], sigma))

Time-varying parts (:mod:`fastmmm.tvp`, switched on in the spec): a smooth
baseline drift ``+ f(t)`` and a media multiplier ``media[t] * exp(g(t))``,
both Hilbert-space GP approximations, non-centred.

Default priors are chosen so that the posterior geometry is benign (no funnel
between beta, kappa and slope), which is what lets the default Hill model sample
without divergences where pymc-marketing's does not:

* adstock ``alpha ~ Beta(2, 2)`` (geometric, delayed), weights normalised by
  default so that adstocked spend keeps the scale of spend;
* Hill ``kappa`` is *relative*: the kernel's half-saturation point is
  ``saturation_kappa * kappa_scale[c]`` where ``kappa_scale[c]`` is the mean
  non-zero scaled spend of channel ``c`` (held as data, so a refit on another
  brand's data updates it without recompiling); ``saturation_kappa ~
  LogNormal(0, 0.7)``;
* Hill ``slope ~ TruncatedNormal(1.5, 1, lower=0.5, upper=4)``: bounded away
  from 0, where ``beta`` and ``kappa`` stop being identified;
* the channel amplitude is parameterised by the channel's *average
  contribution as a fraction of the average target*,
  ``channel_share[c] ~ HalfNormal(0.5 / C)``, and ``beta[c] =
  channel_share[c] * mean(y) / mean_t(sat_c(t))`` is a deterministic. The
  shape parameters (alpha, kappa, slope) then change only the shape of the
  contribution over time, not its level, which removes the beta-kappa-slope
  funnel (the same idea as Meridian's ROI priors). A user prior on ``beta``
  switches to the direct parameterisation ``beta ~ prior``.

Saturation amplitudes: every saturation is multiplied by ``beta``. For
Michaelis-Menten and tanh that makes their own amplitude redundant, so the
kernels run with ``alpha = 1`` (``beta * x / (lam + x)``) and ``b = 1``
(``beta * tanh(x / c)``), the same curve families with one amplitude.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from fastmmm.kernels import SATURATION_PARAMS
from fastmmm.layout import (  # noqa: F401  (re-exported: the model's vocabulary)
    FIXED_SATURATION_PARAMS,
    MediaDesign,
    amplitude_kind,
    amplitude_name,
    amplitude_prior,
    default_prior,
    kappa_scale,
    media_designs,
    resolve_prior,
    roas_scale,
    uses_direct_beta,
)
from fastmmm.ops.media import media_transform

#: The relative spend increase that defines marginal ROAS (as results report it).
MROAS_BUMP = 0.01

__all__ = [
    "build_model",
    "data_updates",
    "default_prior",
    "MediaDesign",
    "media_designs",
    "FIXED_SATURATION_PARAMS",
]

# The PyMC-free parts of the model definition live in fastmmm.layout (the fast path needs no PyMC).
_prior = resolve_prior


def amplitude_rv(spec, datas, dims):
    """The channel amplitude's random variable (in the current model). The default (marginal)
    ROAS prior depends on the data (its mean is the reference ROAS): its ``mu`` is then the data
    container ``roas_prior_mu``, so that a compiled model refitted on other data (another brand)
    gets the prior of those data."""
    name = amplitude_name(spec)
    prior = amplitude_prior(spec, datas)
    if name in ("roas", "mroas") and spec.prior(name) is None:
        c = len(spec.channels)
        p = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (c,)) for k, v in prior.params}
        mu = pm.Data("roas_prior_mu", p["mu"], dims=dims if isinstance(dims, str) else dims[-1])
        return pm.LogNormal(name, mu=mu, sigma=p["sigma"], dims=dims)
    return prior.create(name, dims=dims)


def data_updates(data, model) -> dict[str, np.ndarray]:
    """Values of a built model's data containers for ``data`` (another brand, a refresh):
    what ``pm.set_data`` or a compiled nutpie model's ``with_data`` takes."""
    values = {
        "spend": data.spend_scaled,
        "y": data.y_scaled,
        "trend_t": data.trend,
        "fourier": data.fourier,
        "controls": data.controls_scaled,
        "roas_scale": roas_scale(data),
    }
    name = amplitude_name(data.spec)
    if name in ("roas", "mroas") and data.spec.prior(name) is None:
        prior = amplitude_prior(data.spec, data)
        values["roas_prior_mu"] = np.broadcast_to(
            np.asarray(prior["mu"], dtype=np.float64), (len(data.spec.channels),)
        )
    for d in media_designs(data.spec):
        values[d.var("kappa_scale")] = kappa_scale(np.asarray(data.spend_scaled)[:, list(d.channels)])
    from fastmmm.tvp import hsgp_data  # the time-varying parts' basis (depends on T and frequency)

    values.update(hsgp_data(data))
    names = {v.name for v in model.data_vars}
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items() if k in names}


def hsgp_rv(spec, data, part: str, group_dim: str | None = None):
    """The non-centred HSGP of a time-varying ``part`` ("intercept" or "media"), a (T,) tensor,
    or with ``group_dim`` one per group, (G, T), sharing the lengthscale and amplitude.

    ``phi @ gp_weights(omega, ls, eta, mean_t(phi^2), z)`` with ``phi`` (date,
    hsgp_basis) and ``omega`` (hsgp_basis) as data containers
    ``hsgp_phi_{part}`` / ``hsgp_omega_{part}`` from :mod:`fastmmm.tvp` (which
    results.py evaluates with numpy at new dates), and free ``tvp_{part}_ls``
    (weeks), ``tvp_{part}_eta`` (the in-sample RMS of the GP) and
    ``tvp_{part}_z`` (hsgp_basis), or (group_dim, hsgp_basis).
    """
    from fastmmm.tvp import HSGPBasis, gp_weights

    basis = HSGPBasis.for_part(spec, data, part)
    phi = pm.Data(f"hsgp_phi_{part}", basis.basis(data.trend), dims=("date", "hsgp_basis"))
    omega = pm.Data(f"hsgp_omega_{part}", basis.omega, dims="hsgp_basis")
    ls = _prior(spec, f"tvp_{part}_ls").create(f"tvp_{part}_ls")
    eta = _prior(spec, f"tvp_{part}_eta").create(f"tvp_{part}_eta")
    z = pm.Normal(
        f"tvp_{part}_z", mu=0.0, sigma=1.0, dims=(group_dim, "hsgp_basis") if group_dim else "hsgp_basis"
    )
    w = gp_weights(omega, ls, eta, pt.mean(pt.square(phi), axis=0), z, xp=pt)
    return pt.dot(w, phi.T) if group_dim else pt.dot(phi, w)


def build_model(data, spec) -> pm.Model:
    """Build the PyMC model for prepared data and a spec.

    Parameters
    ----------
    data : fastmmm.data.PreparedData
        Scaled arrays: ``y_scaled`` (T,), ``spend_scaled`` (T, C),
        ``controls_scaled`` (T, K), ``fourier`` (T, F), ``trend`` (T,).
    spec : fastmmm.spec.ModelSpec

    Returns
    -------
    pm.Model with data containers ``spend``, ``controls``, ``fourier``, ``trend_t``,
    ``kappa_scale`` and ``y`` (swap them with ``pm.set_data`` or nutpie's
    ``with_data``), free parameters named ``{prefix}_{param}`` with a ``channel``
    dimension, and deterministics ``channel_contribution`` (date, channel) and
    ``mu`` (date), all on the scaled space.

    With ``spec.time_varying_intercept`` the baseline gets a drift ``f(t)``
    (HSGP, :mod:`fastmmm.tvp`) and the deterministic ``intercept_tv`` (date)
    = ``intercept + f``; with ``spec.time_varying_media`` the channel
    contributions are multiplied by the deterministic ``media_multiplier``
    (date) = ``exp(g(t))``. Both add data containers ``hsgp_phi_{part}`` and
    ``hsgp_omega_{part}``.
    """
    designs = media_designs(spec)
    channels = list(spec.channels)
    controls = list(spec.controls)
    n_four = data.fourier.shape[1]
    coords = {
        "date": np.asarray(data.dates),
        "channel": channels,
    }
    if controls:
        coords["control"] = controls
    for d in designs:
        if d.label:
            coords[d.dim] = [channels[i] for i in d.channels]
    if n_four:
        order = n_four // 2
        coords["fourier_mode"] = [f"sin_{k}" for k in range(1, order + 1)] + [
            f"cos_{k}" for k in range(1, order + 1)
        ]
    if spec.time_varying_intercept or spec.time_varying_media:
        coords["hsgp_basis"] = np.arange(spec.hsgp_m)

    with pm.Model(coords=coords) as model:
        spend = pm.Data("spend", data.spend_scaled, dims=("date", "channel"))
        y_obs = pm.Data("y", data.y_scaled, dims="date")
        mu = pt.zeros(data.y_scaled.shape[0])
        # With an intercept, the trend and media terms enter centred on their in-sample means,
        # so the free "level" (the baseline at average trend and media) is nearly uncorrelated
        # with them; the uncentred intercept is reported as a deterministic.
        centre = bool(spec.intercept)
        offset = pt.as_tensor_variable(0.0)
        if spec.intercept:
            level = _prior(spec, "intercept").create("level")
            mu = mu + level
        if spec.trend:
            t_trend = pm.Data("trend_t", data.trend, dims="date")
            trend = _prior(spec, "trend").create("trend")
            mu = mu + trend * t_trend
            if centre:
                offset = offset + trend * pt.mean(t_trend)
        if n_four:
            four = pm.Data("fourier", data.fourier, dims=("date", "fourier_mode"))
            gamma_f = _prior(spec, "gamma_fourier").create("gamma_fourier", dims="fourier_mode")
            mu = mu + pt.dot(four, gamma_f)
        if controls:
            ctrl = pm.Data("controls", data.controls_scaled, dims=("date", "control"))
            gamma_c = _prior(spec, "gamma_control", channels=None).create("gamma_control", dims="control")
            mu = mu + pt.dot(ctrl, gamma_c)
        drift = None
        if spec.time_varying_intercept:
            drift = hsgp_rv(spec, data, "intercept")
            mu = mu + drift

        # Media: one fused Rust Op per group of channels sharing kernel kinds.
        sats, bumped, order = [], [], []
        amp_kind = amplitude_kind(spec)
        for d in designs:
            names = [channels[i] for i in d.channels]
            x = spend if not d.label else spend[:, list(d.channels)]
            a_params = [
                _prior(spec, f"adstock_{p}", d, names).create(d.var(f"adstock_{p}"), dims=d.dim)
                for p in d.adstock_params
            ]
            rel = d.relative_param
            scale = None
            if rel:
                scale = pm.Data(
                    d.var("kappa_scale"), kappa_scale(data.spend_scaled[:, list(d.channels)]), dims=d.dim
                )
            fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
            s_params = []
            for p in SATURATION_PARAMS[d.saturation]:
                if p in fixed:
                    s_params.append(pt.as_tensor_variable(np.full(len(names), fixed[p])))
                    continue
                v = _prior(spec, f"saturation_{p}", d, names).create(d.var(f"saturation_{p}"), dims=d.dim)
                s_params.append(v * scale if p == rel else v)
            for factor, out in ((1.0, sats), (1.0 + MROAS_BUMP, bumped)):
                if out is bumped and amp_kind != "mroas":
                    continue
                out.append(
                    media_transform(
                        x if factor == 1.0 else x * factor,
                        d.adstock,
                        d.saturation,
                        tuple(a_params),
                        tuple(s_params),
                        l_max=d.l_max,
                        normalize=d.normalize,
                    )
                )
            order += list(d.channels)

        def by_channel(parts):
            return parts[0] if len(parts) == 1 else pt.concatenate(parts, axis=1)[:, np.argsort(order)]

        sat = by_channel(sats)
        amp = amplitude_rv(spec, data, dims="channel")
        if amp_kind == "beta":
            beta = amp
        elif amp_kind == "share":
            beta = pm.Deterministic("beta", amp * pt.mean(y_obs) / pt.mean(sat, axis=0), dims="channel")
        else:
            # roas * roas_scale is the channel's mean contribution per period at that ROAS; for an
            # mROAS it is the mean extra contribution of 1% more spend, per 1% of the spend.
            rs = pm.Data("roas_scale", roas_scale(data), dims="channel")
            if amp_kind == "roas":
                per_unit = pt.mean(sat, axis=0)
            else:
                per_unit = pt.mean(by_channel(bumped) - sat, axis=0) / MROAS_BUMP
            beta = pm.Deterministic("beta", amp * rs / per_unit, dims="channel")
        if spec.time_varying_media:
            mult = pm.Deterministic("media_multiplier", pt.exp(hsgp_rv(spec, data, "media")), dims="date")
            contrib = pm.Deterministic(
                "channel_contribution", sat * beta * mult[:, None], dims=("date", "channel")
            )
        else:
            contrib = pm.Deterministic("channel_contribution", sat * beta, dims=("date", "channel"))
        media = contrib.sum(axis=1)
        if centre:
            offset = offset + pt.mean(media)
            pm.Deterministic("intercept", level - offset)
        if drift is not None:
            pm.Deterministic("intercept_tv", (level - offset + drift) if centre else drift, dims="date")
        mu = pm.Deterministic("mu", mu + media - offset, dims="date")

        sigma = _prior(spec, "sigma").create("sigma")
        if spec.likelihood == "studentt":
            nu = _prior(spec, "nu").create("nu")
            pm.StudentT("y_obs", nu=nu, mu=mu, sigma=sigma, observed=y_obs, dims="date")
        else:
            pm.Normal("y_obs", mu=mu, sigma=sigma, observed=y_obs, dims="date")
    return model
