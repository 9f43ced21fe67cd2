"""Time-varying baseline and media effects: the Hilbert-space GP (HSGP) basis.

A spec with ``time_varying_intercept=True`` adds a smooth drift ``f(t)`` to the
baseline; one with ``time_varying_media=True`` multiplies the total media
contribution by ``exp(g(t))``. ``f`` and ``g`` are Gaussian processes with a
Matern-3/2 kernel, approximated as in PyMC's :class:`pymc.gp.HSGP` (Solin &
Saerkkae 2020; Riutort-Mayol et al. 2023) by ``m`` Laplace eigenfunctions on
``[-L, L]``, non-centred::

    f(x) = phi(x) @ w,   w = gp_weights(omega; ls, eta) * z,   z ~ Normal(0, 1), (m,)

This module is the single numpy definition of ``phi``, ``sqrt_psd`` and
``gp_weights``: the PyMC model (:func:`fastmmm.model.build_model`) gets
``phi`` and ``omega`` as data containers computed here and evaluates
:func:`gp_weights` with ``pytensor.tensor``; :class:`fastmmm.results.MMMResult`
evaluates the same functions with numpy on the posterior draws of ``z``,
``ls`` and ``eta`` (at new dates too), so the two cannot drift apart. The
tests hold ``phi`` and ``sqrt_psd`` equal to
:meth:`pymc.gp.HSGP.prior_linearized`.

Time axis
---------
``x`` is time in **weeks** from the midpoint of the training window (for
daily data too), ``x = (trend - 0.5) * trend_span / periods_per_week`` with
``trend`` the data's trend feature (0 at the first and 1 at the last training
date). The half-width is ``S = trend_span / 2 / periods_per_week`` and the
boundary ``L = hsgp_c * S``; the lengthscale prior is in weeks. Beyond
``|x| > L`` the eigenfunctions are set to 0 (where they vanish anyway), so the
raw GP equals its prior mean there: forecasts that far out (more than
``(hsgp_c - 1) * S`` weeks after the training end) fall back on the fixed
effects, and :func:`hsgp_effect` warns.

Identifiability and geometry
----------------------------
* The basis is projected, on the training dates, onto the orthogonal
  complement of the fixed effects it would duplicate: the constant (for the
  intercept GP when the spec has an intercept, and always for the media GP)
  and the linear trend (for the intercept GP when the spec has a trend). The
  in-sample drift then has mean zero and no linear part, so
  ``level``/``intercept`` and ``trend`` keep their meaning and the posterior
  has no flat ridge between them and the GP weights. The projection is linear
  in ``trend``, so the same matrix applies at new dates. For the media GP
  ``exp(g)`` has geometric mean 1 over the training window: ``beta`` /
  ``channel_share`` stay the average amplitude.
* ``eta`` is the GP's prior root-mean-square *over the training dates*
  (:func:`gp_weights` rescales the spectral weights for every lengthscale), not
  the kernel's marginal sd: with the constant and linear parts projected out,
  a long lengthscale would otherwise need a large kernel amplitude to produce
  the same in-sample drift, a curved ridge between ``ls`` and ``eta``.
* Matern-3/2 rather than the squared exponential: its spectral density falls
  off polynomially, so the weights change smoothly with ``ls`` (the squared
  exponential's ``exp(-ls^2 omega^2 / 2)`` makes the log-density stiff in
  ``ls``). Measured on a 148-week drifting-baseline fit (the data of
  tests/test_tvp.py, 2 chains, ``target_accept=0.95``): squared exponential
  2-6 divergences per fit (500 draws, 3 seeds), Matern-5/2 3-26 and
  Matern-3/2 0-3 (1000 draws, 4 seeds); Matern-3/2 at
  ``target_accept=0.99``, which :meth:`fastmmm.MMM.fit` uses for specs with a
  time-varying part, 0-1 with min bulk ESS 450-600.

Default priors (override with the spec's ``priors``; scaled target units):

======================= ============================================
``tvp_intercept_ls``    ``LogNormal(log(26), 0.6)`` weeks (95%: 8-85)
``tvp_intercept_eta``   ``HalfNormal(0.1)``: in-sample RMS of the drift
``tvp_media_ls``        ``LogNormal(log(52), 0.6)`` weeks
``tvp_media_eta``       ``HalfNormal(0.2)``: in-sample RMS of log multiplier
======================= ============================================
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmmm.priors import Prior

__all__ = [
    "TVP_PARTS",
    "HSGPBasis",
    "default_tvp_prior",
    "gp_weights",
    "hsgp_data",
    "hsgp_effect",
    "panel_hsgp_data",
    "parts",
    "periods_per_week",
    "sqrt_psd",
]

#: The time-varying components: ``"intercept"`` (additive drift) and ``"media"`` (multiplier).
TVP_PARTS: tuple[str, ...] = ("intercept", "media")

_PERIODS_PER_WEEK = {"W": 1.0, "D": 7.0}

_DEFAULTS = {
    "tvp_intercept_ls": Prior("LogNormal", mu=math.log(26.0), sigma=0.6),
    "tvp_intercept_eta": Prior("HalfNormal", sigma=0.1),
    "tvp_media_ls": Prior("LogNormal", mu=math.log(52.0), sigma=0.6),
    "tvp_media_eta": Prior("HalfNormal", sigma=0.2),
}


def default_tvp_prior(name: str) -> Prior:
    """Default prior of ``tvp_{part}_{ls|eta}`` (see the module docstring)."""
    return _DEFAULTS[name]


def parts(spec) -> tuple[str, ...]:
    """The time-varying parts a spec switches on, a subset of :data:`TVP_PARTS`."""
    out = []
    if getattr(spec, "time_varying_intercept", False):
        out.append("intercept")
    if getattr(spec, "time_varying_media", False):
        out.append("media")
    return tuple(out)


def periods_per_week(frequency: str) -> float:
    """1 for weekly, 7 for daily data."""
    try:
        return _PERIODS_PER_WEEK[frequency]
    except KeyError:
        raise ValueError(f"unknown data frequency {frequency!r}; expected 'W' or 'D'") from None


#: Matern-3/2 spectral density constant in one dimension, ``4 * 3^(3/2)``.
_M32 = 4.0 * 3.0**1.5


def sqrt_psd(omega: Any, ls: Any, eta: Any, xp: Any = np) -> Any:
    """Square root of the Matern-3/2 kernel's spectral density.

    ``eta * sqrt(4 * 3^(3/2) * ls * (3 + ls^2 omega^2)^-2)``, as PyMC's
    ``(eta**2 * Matern32(1, ls)).power_spectral_density`` in one dimension.

    Parameters
    ----------
    omega : (m,) angular frequencies (rad/week), broadcast against ls and eta
    ls, eta : lengthscale (weeks) and amplitude; scalars or e.g. (S, 1) draws
    xp : ``numpy`` or ``pytensor.tensor`` (the module providing sqrt and exp)

    Returns
    -------
    broadcast shape of ``omega``, ``ls`` and ``eta``, e.g. (m,) or (S, m)
    """
    return eta * xp.sqrt(_M32 * ls) / (3.0 + xp.square(ls * omega))


def gp_weights(omega: Any, ls: Any, eta: Any, col_ms: Any, z: Any, xp: Any = np) -> Any:
    """Basis weights ``w`` of a GP whose in-sample root-mean-square is ``eta`` a priori.

    ``w = eta * s / sqrt(col_ms @ s^2) * z`` with ``s = sqrt_psd(omega, ls, 1)``:
    the kernel's spectral weights, rescaled so that the prior expectation of
    ``mean_t f(t)^2`` over the training dates (``col_ms[j] = mean_t
    basis[t, j]^2``) is ``eta^2`` for every lengthscale. Parameterising the
    amplitude in-sample removes the ridge between ``ls`` and the kernel's
    amplitude (a long lengthscale puts the prior variance into the constant
    and linear components the basis has projected out, which a larger
    amplitude would have to make up), which otherwise costs divergences and
    R-hat.

    Parameters
    ----------
    omega, col_ms : (m,)
    ls, eta : scalars, or (S, 1) draws
    z : (m,) or (S, m) standard-normal coefficients
    xp : ``numpy`` or ``pytensor.tensor``

    Returns
    -------
    (m,) or (S, m); ``f = basis @ w`` (or ``w @ basis.T`` for draws)
    """
    spec = sqrt_psd(omega, ls, 1.0, xp)
    norm = xp.sqrt(xp.sum(col_ms * xp.square(spec), axis=-1, keepdims=True))
    return eta * spec / norm * z


@dataclass(frozen=True)
class HSGPBasis:
    """The HSGP basis of one time-varying part of a model fitted on ``T`` periods.

    Attributes
    ----------
    m : int
        Number of basis functions.
    c : float
        Boundary factor: ``L = c * S``.
    trend_span : float
        ``T - 1``, periods from the first to the last training date
        (``Scales.trend_span``).
    periods_per_week : float
        1 (weekly) or 7 (daily).
    remove : tuple of {"const", "trend"}
        Fixed effects projected out of the basis on the training dates.
    """

    m: int
    c: float
    trend_span: float
    periods_per_week: float
    remove: tuple[str, ...] = ()

    @classmethod
    def for_part(cls, spec, data, part: str) -> HSGPBasis:
        """The basis of ``part`` ("intercept" or "media") for training ``data`` (PreparedData)."""
        if part not in TVP_PARTS:
            raise ValueError(f"unknown time-varying part {part!r}; valid: {', '.join(TVP_PARTS)}")
        if part == "intercept":
            remove = tuple(n for n, on in (("const", spec.intercept), ("trend", spec.trend)) if on)
        else:
            remove = ("const",)
        return cls(
            m=int(spec.hsgp_m),
            c=float(spec.hsgp_c),
            trend_span=float(data.scales.trend_span),
            periods_per_week=periods_per_week(data.frequency),
            remove=remove,
        )

    # ---------------------------------------------------------------- geometry
    @property
    def half_width(self) -> float:
        """``S``: weeks from the training midpoint to either end."""
        return self.trend_span / 2.0 / self.periods_per_week

    @property
    def L(self) -> float:
        """Boundary of the approximation, weeks: ``c * S``."""
        return self.c * self.half_width

    @property
    def omega(self) -> np.ndarray:
        """``(m,)`` square roots of the Laplacian's eigenvalues, ``pi j / (2 L)``, rad/week."""
        return np.pi * np.arange(1, self.m + 1, dtype=np.float64) / (2.0 * self.L)

    def x(self, trend: Any) -> np.ndarray:
        """Weeks from the training midpoint of dates with trend feature ``trend`` ``(n,)``."""
        return (np.asarray(trend, dtype=np.float64) - 0.5) * self.trend_span / self.periods_per_week

    def beyond(self, trend: Any) -> np.ndarray:
        """``(n,)`` bool: dates outside ``[-L, L]`` (the GP is at its prior mean there)."""
        return np.abs(self.x(trend)) > self.L

    def eigenfunctions(self, trend: Any) -> np.ndarray:
        """``(n, m)`` raw Laplace eigenfunctions ``sin(omega_j (x + L)) / sqrt(L)``; 0 outside ``[-L, L]``.

        Equal to ``phi`` of :meth:`pymc.gp.HSGP.prior_linearized` (with ``L`` given
        and the training dates as ``X``) inside the boundary.
        """
        x = self.x(trend)
        phi = np.sin(self.omega[None, :] * (x[:, None] + self.L)) / math.sqrt(self.L)
        phi[self.beyond(trend)] = 0.0
        return phi

    @property
    def train_trend(self) -> np.ndarray:
        """``(T,)`` trend feature of the training dates: ``0, 1/(T-1), ..., 1``."""
        n = round(self.trend_span) + 1
        return np.arange(n, dtype=np.float64) / self.trend_span

    def _fixed(self, trend: np.ndarray) -> np.ndarray:
        cols = {"const": np.ones_like(trend), "trend": trend}
        return np.column_stack([cols[r] for r in self.remove]) if self.remove else np.zeros((len(trend), 0))

    def projection(self) -> np.ndarray:
        """``(R, m)``: least-squares coefficients of the eigenfunctions on the removed fixed effects."""
        t = self.train_trend
        x0 = self._fixed(t)
        if x0.shape[1] == 0:
            return np.zeros((0, self.m))
        coef, *_ = np.linalg.lstsq(x0, self.eigenfunctions(t), rcond=None)
        return coef

    @property
    def col_ms(self) -> np.ndarray:
        """``(m,)`` mean square of each basis column over the training dates."""
        return np.mean(np.square(self.basis(self.train_trend)), axis=0)

    def basis(self, trend: Any) -> np.ndarray:
        """``(n, m)`` model basis at dates with trend feature ``trend``.

        The eigenfunctions minus their projection on the removed fixed effects
        (fitted on the training dates, applied to any dates).
        """
        t = np.asarray(trend, dtype=np.float64).reshape(-1)
        return self.eigenfunctions(t) - self._fixed(t) @ self.projection()


def hsgp_data(data) -> dict[str, np.ndarray]:
    """Values of the model's HSGP data containers for training ``data`` (PreparedData).

    ``hsgp_phi_{part}`` (T, m) and ``hsgp_omega_{part}`` (m,) for each part the
    spec switches on; ``{}`` for a spec without time-varying parts.
    """
    out: dict[str, np.ndarray] = {}
    for part in parts(data.spec):
        b = HSGPBasis.for_part(data.spec, data, part)
        out[f"hsgp_phi_{part}"] = b.basis(data.trend)
        out[f"hsgp_omega_{part}"] = b.omega
    return out


def panel_hsgp_data(spec, datas) -> dict[str, np.ndarray]:
    """The HSGP data of a panel's time-varying parts (``datas``: one PreparedData per group).

    Groups on the same dates share one basis: :func:`hsgp_data` of the first group. A
    ragged panel's groups (on different dates) each have their own, the national one of
    their training window (its half-width, boundary and projection), evaluated on the
    panel's dates with the group's trend feature, so that a group's drift is exactly what
    its own national model would have: ``hsgp_phi_{part}`` (G, T, m), ``hsgp_omega_{part}``
    and ``hsgp_col_ms_{part}`` (G, m), the mean square of each column over the group's
    window. Only per-group parts can be ragged (a GP shared by all groups has one basis).
    """
    from fastmmm.data import panel_grid

    dates, windows = panel_grid(datas)
    if all(w == (0, len(dates)) for w in windows):
        return hsgp_data(datas[0])
    out: dict[str, np.ndarray] = {}
    for part in parts(spec):
        bases = [HSGPBasis.for_part(spec, d, part) for d in datas]
        out[f"hsgp_phi_{part}"] = np.stack([b.basis(d.scales.trend_at(dates)) for b, d in zip(bases, datas)])
        out[f"hsgp_omega_{part}"] = np.stack([b.omega for b in bases])
        out[f"hsgp_col_ms_{part}"] = np.stack([b.col_ms for b in bases])
    return out


def hsgp_effect(result, part: str, trend: Any, *, draws: Any = None, warn: bool = True) -> np.ndarray:
    """Posterior draws of a part's GP at dates with trend feature ``trend``.

    Parameters
    ----------
    result : fastmmm.results.MMMResult with ``part`` switched on
    part : "intercept" (drift ``f``, scaled target units) or "media" (log multiplier ``g``)
    trend : (n,) trend feature of the dates (``result.data.scales.trend_at(dates)``)
    draws : slice or index array selecting draws (default all)
    warn : warn when dates lie beyond the boundary ``L``

    Returns
    -------
    (S, n) array
    """
    if part not in parts(result.spec):
        raise ValueError(f"this model has no time-varying {part}")
    sel = slice(None) if draws is None else draws
    b = HSGPBasis.for_part(result.spec, result.data, part)
    trend = np.asarray(trend, dtype=np.float64).reshape(-1)
    if warn and b.beyond(trend).any():
        n = int(b.beyond(trend).sum())
        warnings.warn(
            f"fastmmm: {n} date(s) lie more than {b.L - b.half_width:.0f} weeks past the training window, beyond "
            f"the HSGP boundary (hsgp_c={b.c:g}); the time-varying {part} is at its prior mean there",
            stacklevel=3,
        )
    ls = result.draws(f"tvp_{part}_ls")[sel]
    eta = result.draws(f"tvp_{part}_eta")[sel]
    z = result.draws(f"tvp_{part}_z")[sel]
    w = gp_weights(b.omega, ls[:, None], eta[:, None], b.col_ms, z)  # (S, m)
    return w @ b.basis(trend).T
