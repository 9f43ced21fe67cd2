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

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.ops.media import media_transform
from fastmmm.priors import Prior

__all__ = ["build_model", "default_prior", "MediaDesign", "media_designs", "FIXED_SATURATION_PARAMS"]

#: Saturation parameters fixed to 1 because beta already is the amplitude.
FIXED_SATURATION_PARAMS = {"michaelis_menten": {"alpha": 1.0}, "tanh": {"b": 1.0}}


def default_prior(name: str, *, l_max: int = 8, n_channels: int = 1) -> Prior:
    """The default prior of a model parameter (on the scaled space)."""
    if name == "channel_share":
        return Prior("HalfNormal", sigma=0.5 / max(n_channels, 1))
    if name.startswith("tvp_"):
        from fastmmm.tvp import default_tvp_prior

        return default_tvp_prior(name)
    table = {
        "intercept": Prior("Normal", mu=0.5, sigma=1.0),
        "trend": Prior("Normal", mu=0.0, sigma=0.5),
        "gamma_control": Prior("Normal", mu=0.0, sigma=0.5),
        "gamma_fourier": Prior("Normal", mu=0.0, sigma=0.5),
        "beta": Prior("HalfNormal", sigma=1.0),
        "channel_share": Prior("HalfNormal", sigma=0.5),
        "sigma": Prior("HalfNormal", sigma=0.5),
        "nu": Prior("Gamma", alpha=2.0, beta=0.1),
        "adstock_alpha": Prior("Beta", alpha=2.0, beta=2.0),
        "adstock_theta": Prior("Uniform", lower=0.0, upper=float(max(l_max - 1, 1))),
        "adstock_lam": Prior("Gamma", alpha=4.0, beta=2.0),
        "adstock_k": Prior("Gamma", alpha=9.0, beta=3.0),
        "saturation_kappa": Prior("LogNormal", mu=0.0, sigma=0.7),
        "saturation_slope": Prior("TruncatedNormal", mu=1.5, sigma=1.0, lower=0.5, upper=4.0),
        "saturation_lam": Prior("Gamma", alpha=3.0, beta=1.0),
        "saturation_c": Prior("Gamma", alpha=3.0, beta=3.0),
    }
    if name not in table:
        raise KeyError(f"no default prior for {name!r}")
    return table[name]


# Per-kind overrides of the table above (same parameter name, different meaning).
_KIND_DEFAULTS = {
    ("weibull_cdf", "adstock_lam"): Prior("Gamma", alpha=2.0, beta=1.0),
    ("weibull_cdf", "adstock_k"): Prior("Gamma", alpha=2.0, beta=1.0),
    # Michaelis-Menten half-saturation point, relative like Hill's kappa.
    ("michaelis_menten", "saturation_lam"): Prior("LogNormal", mu=0.0, sigma=0.7),
}


@dataclass(frozen=True)
class MediaDesign:
    """One group of channels sharing an adstock and a saturation kind.

    ``channels`` are indices into ``spec.channels``. With one group (the usual
    case) variables are named ``adstock_alpha`` etc. with the ``channel``
    dimension; with several, each group's are suffixed ``__{adstock}_{saturation}``
    and use the dimension ``channel__{adstock}_{saturation}``.
    """

    adstock: str
    saturation: str
    l_max: int | None
    normalize: bool
    channels: tuple[int, ...] = ()
    label: str = ""

    @property
    def adstock_params(self) -> tuple[str, ...]:
        return ADSTOCK_PARAMS[self.adstock]

    @property
    def saturation_params(self) -> tuple[str, ...]:
        fixed = FIXED_SATURATION_PARAMS.get(self.saturation, {})
        return tuple(p for p in SATURATION_PARAMS[self.saturation] if p not in fixed)

    @property
    def relative_param(self) -> str | None:
        """The saturation parameter expressed relative to each channel's spend scale."""
        return {"hill": "kappa", "michaelis_menten": "lam"}.get(self.saturation)

    def var(self, name: str) -> str:
        """Model variable name of ``name`` for this group."""
        return f"{name}__{self.label}" if self.label else name

    @property
    def dim(self) -> str:
        return f"channel__{self.label}" if self.label else "channel"

    @staticmethod
    def from_spec(spec) -> "MediaDesign":
        """The design of a spec whose channels all share one adstock and one saturation."""
        designs = media_designs(spec)
        if len(designs) != 1:
            raise ValueError("this spec mixes adstock/saturation kinds; use media_designs(spec)")
        return designs[0]


def media_designs(spec) -> list[MediaDesign]:
    """Channel groups by (adstock, saturation) kind, in order of first appearance."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (a, s) in enumerate(zip(spec.adstock_by_channel, spec.saturation_by_channel)):
        groups.setdefault((a, s), []).append(i)
    single = len(groups) == 1
    return [
        MediaDesign(a, s, spec.l_max, bool(spec.adstock_normalize), tuple(idx), "" if single else f"{a}_{s}")
        for (a, s), idx in groups.items()
    ]


def _prior(spec, name: str, design: MediaDesign | None = None, channels=None) -> Prior:
    """The user's prior for ``name`` (with per-channel overrides merged), else the default."""
    base = spec.prior(name) if spec is not None else None
    if base is None:
        kind = None
        if design is not None:
            kind = design.adstock if name.startswith("adstock_") else design.saturation
        base = _KIND_DEFAULTS.get((kind, name)) or default_prior(
            name, l_max=spec.l_max if spec else 8, n_channels=len(spec.channels) if spec else 1
        )
    if channels is None:
        return base
    overrides = {c: spec.prior(name, channel=c) for c in channels}
    overrides = {c: p for c, p in overrides.items() if p is not None}
    if not overrides:
        return base
    # Per-channel overrides must share the distribution; their parameters become per-channel arrays.
    dists = {p.dist for p in overrides.values()} | {base.dist}
    if len(dists) > 1:
        raise ValueError(
            f"prior {name}: per-channel overrides must use the same distribution as the others "
            f"({sorted(dists)} given)"
        )
    params = {}
    for key, _ in base.params:
        params[key] = [float(np.broadcast_to(overrides.get(c, base)[key], (1,))[0]) for c in channels]
    return Prior(base.dist, **params)


def uses_direct_beta(spec) -> bool:
    """True when the user gave a prior on beta (direct amplitude parameterisation)."""
    return any(spec.prior("beta", channel=c) is not None for c in spec.channels) or spec.prior("beta") is not None


def kappa_scale(spend_scaled: np.ndarray) -> np.ndarray:
    """Mean non-zero scaled spend per channel: the unit of relative saturation points.

    Parameters
    ----------
    spend_scaled : (T, C)

    Returns
    -------
    (C,) array, positive
    """
    x = np.asarray(spend_scaled, dtype=float)
    nz = x > 0
    s = np.where(nz.any(axis=0), (x * nz).sum(axis=0) / np.maximum(nz.sum(axis=0), 1), 1.0)
    return np.maximum(s, 1e-12)


def _hsgp(spec, data, part: str):
    """The non-centred HSGP of a time-varying ``part`` ("intercept" or "media"), a (T,) tensor.

    ``phi @ gp_weights(omega, ls, eta, mean_t(phi^2), z)`` with ``phi`` (date,
    hsgp_basis) and ``omega`` (hsgp_basis) as data containers
    ``hsgp_phi_{part}`` / ``hsgp_omega_{part}`` from :mod:`fastmmm.tvp` (which
    results.py evaluates with numpy at new dates), and free ``tvp_{part}_ls``
    (weeks), ``tvp_{part}_eta`` (the in-sample RMS of the GP) and
    ``tvp_{part}_z`` (hsgp_basis).
    """
    from fastmmm.tvp import HSGPBasis, gp_weights

    basis = HSGPBasis.for_part(spec, data, part)
    phi = pm.Data(f"hsgp_phi_{part}", basis.basis(data.trend), dims=("date", "hsgp_basis"))
    omega = pm.Data(f"hsgp_omega_{part}", basis.omega, dims="hsgp_basis")
    ls = _prior(spec, f"tvp_{part}_ls").create(f"tvp_{part}_ls")
    eta = _prior(spec, f"tvp_{part}_eta").create(f"tvp_{part}_eta")
    z = pm.Normal(f"tvp_{part}_z", mu=0.0, sigma=1.0, dims="hsgp_basis")
    return pt.dot(phi, gp_weights(omega, ls, eta, pt.mean(pt.square(phi), axis=0), z, xp=pt))


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
        coords["fourier_mode"] = [f"sin_{k}" for k in range(1, order + 1)] + [f"cos_{k}" for k in range(1, order + 1)]
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
            drift = _hsgp(spec, data, "intercept")
            mu = mu + drift

        # Media: one fused Rust Op per group of channels sharing kernel kinds.
        sats, order = [], []
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
                scale = pm.Data(d.var("kappa_scale"), kappa_scale(data.spend_scaled[:, list(d.channels)]), dims=d.dim)
            fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
            s_params = []
            for p in SATURATION_PARAMS[d.saturation]:
                if p in fixed:
                    s_params.append(pt.as_tensor_variable(np.full(len(names), fixed[p])))
                    continue
                v = _prior(spec, f"saturation_{p}", d, names).create(d.var(f"saturation_{p}"), dims=d.dim)
                s_params.append(v * scale if p == rel else v)
            sats.append(
                media_transform(
                    x, d.adstock, d.saturation, tuple(a_params), tuple(s_params), l_max=d.l_max, normalize=d.normalize
                )
            )
            order += list(d.channels)
        if len(sats) == 1:
            sat = sats[0]
        else:
            sat = pt.concatenate(sats, axis=1)[:, np.argsort(order)]
        if uses_direct_beta(spec):
            beta = _prior(spec, "beta", None, channels).create("beta", dims="channel")
        else:
            share = _prior(spec, "channel_share", None, channels).create("channel_share", dims="channel")
            beta = pm.Deterministic("beta", share * pt.mean(y_obs) / pt.mean(sat, axis=0), dims="channel")
        if spec.time_varying_media:
            mult = pm.Deterministic("media_multiplier", pt.exp(_hsgp(spec, data, "media")), dims="date")
            contrib = pm.Deterministic("channel_contribution", sat * beta * mult[:, None], dims=("date", "channel"))
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
