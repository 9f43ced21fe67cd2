"""The model specification: which columns play which role and how the model is built.

:class:`ModelSpec` is a frozen, validated, hashable dataclass. It is the only
thing a saved model stores about its configuration (as JSON, via
:meth:`ModelSpec.to_json`; never pickled), and :meth:`ModelSpec.structure_key`
tells whether two specs compile to the same model graph.

Priors
------
The spec stores only the user's prior *overrides*; the model module chooses
defaults for everything not overridden (``spec.prior(name)`` returns None).
Prior names:

==================== ========================================================
``intercept``        intercept (only when ``intercept=True``)
``trend``            trend coefficient (only when ``trend=True``)
``gamma_control``    control coefficients (only with controls); a list value
                     has one entry per control
``gamma_fourier``    Fourier coefficients (only when ``yearly_seasonality >
                     0``); a list value has ``2 * yearly_seasonality`` entries
                     ordered ``[sin_1..sin_n, cos_1..cos_n]``
``beta``             channel coefficient
``adstock_<p>``      adstock parameter ``p`` of the channels' adstock kinds
                     (``adstock_alpha``, ``adstock_theta``, ``adstock_lam``,
                     ``adstock_k``)
``saturation_<p>``   saturation parameter ``p`` (``saturation_kappa``,
                     ``saturation_slope``, ``saturation_lam``,
                     ``saturation_alpha``, ``saturation_b``, ``saturation_c``)
``sigma``            observation noise scale
``nu``               Student-t degrees of freedom (only with
                     ``likelihood="studentt"``)
==================== ========================================================

With ``time_varying_intercept=True`` also ``tvp_intercept_ls`` and
``tvp_intercept_eta``, the lengthscale (weeks) and amplitude (scaled target)
of the baseline drift's Gaussian process; with ``time_varying_media=True``
``tvp_media_ls`` and ``tvp_media_eta`` (amplitude of the log multiplier).
They must have positive support (LogNormal, Gamma, HalfNormal, Exponential,
HalfStudentT, or TruncatedNormal / Uniform with ``lower >= 0``); see
:mod:`fastmmm.tvp` for their defaults.

For the channel-level names (``beta``, ``adstock_*``, ``saturation_*``) a list
parameter value holds one value per channel in ``channels`` order (for a
parameter that only some channels' kinds use, the other entries are ignored),
and a per-channel override is written ``"<name>.<channel>"``, e.g.
``"beta.tv"``; it must be scalar and wins over the global ``"<name>"`` prior.
Priors may be given as :class:`~fastmmm.priors.Prior` objects, compact strings
(``"HalfNormal(sigma=2)"``) or dicts (``{"dist": "HalfNormal", "sigma": 2}``).

Example TOML (``ModelSpec.from_toml``)::

    date_column = "date_week"
    target = "y"
    channels = ["x1", "x2"]
    controls = ["event_1", "event_2"]
    adstock = "geometric"
    saturation = { x1 = "hill", x2 = "logistic" }
    l_max = 8
    yearly_seasonality = 2

    [priors]
    beta = "HalfNormal(sigma=2)"
    adstock_alpha = { dist = "Beta", alpha = 1, beta = 3 }
    "beta.x1" = "HalfNormal(sigma=1)"     # dotted names must be quoted in TOML
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.priors import Prior, as_prior

__all__ = [
    "ADSTOCK_KINDS",
    "LIKELIHOODS",
    "SATURATION_KINDS",
    "SCALINGS",
    "SPEC_VERSION",
    "ModelSpec",
    "PriorMap",
]

ADSTOCK_KINDS: tuple[str, ...] = tuple(ADSTOCK_PARAMS)
SATURATION_KINDS: tuple[str, ...] = tuple(SATURATION_PARAMS)
LIKELIHOODS: tuple[str, ...] = ("normal", "studentt")
SCALINGS: tuple[str, ...] = ("max", "mean")
#: Version number written by :meth:`ModelSpec.to_dict`.
SPEC_VERSION = 2
#: What each channel's amplitude prior is on (Meridian's roi / mroi / contribution prior types):
#: ``roas`` its ROAS over the fitted period, ``mroas`` its marginal ROAS there (1% more spend),
#: ``share`` its average contribution as a share of the average target (fastmmm <= 0.1's default).
MEDIA_PRIORS: tuple[str, ...] = ("roas", "mroas", "share")

_ALL_ADSTOCK_PRIORS = tuple(sorted({f"adstock_{p}" for ps in ADSTOCK_PARAMS.values() for p in ps}))
_ALL_SATURATION_PRIORS = tuple(sorted({f"saturation_{p}" for ps in SATURATION_PARAMS.values() for p in ps}))
#: Every prior name any spec can use.
ALL_PRIOR_NAMES: tuple[str, ...] = (
    ("intercept", "trend", "gamma_control", "gamma_fourier", "roas", "mroas", "channel_share", "beta")
    + _ALL_ADSTOCK_PRIORS
    + _ALL_SATURATION_PRIORS
    + ("sigma", "nu")
    + ("tvp_intercept_ls", "tvp_intercept_eta", "tvp_media_ls", "tvp_media_eta")
)
#: Distributions with positive support, as the tvp_* (lengthscale, amplitude) priors need.
_POSITIVE_DISTS = ("LogNormal", "Gamma", "HalfNormal", "Exponential", "HalfStudentT")


class PriorMap(Mapping):
    """An immutable, hashable mapping ``prior name -> Prior`` (keys sorted)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Prior] | None = None) -> None:
        self._items: tuple[tuple[str, Prior], ...] = tuple(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> Prior:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PriorMap):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return "PriorMap({" + ", ".join(f"{k!r}: {v!r}" for k, v in self._items) + "})"


def _names(what: str, value: Any) -> tuple[str, ...]:
    """A tuple of unique non-empty column names (a single str is one name)."""
    if isinstance(value, str):
        value = (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{what} must be a list of column names, got {value!r}") from None
    for v in out:
        if not isinstance(v, str) or not v:
            raise ValueError(f"{what} must be non-empty strings, got {v!r}")
    dups = sorted({v for v in out if out.count(v) > 1})
    if dups:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(map(repr, dups))}")
    return out


def _choice(what: str, value: Any, valid: tuple[str, ...]) -> str:
    v = value.strip().lower() if isinstance(value, str) else value
    if v not in valid:
        raise ValueError(f"invalid {what} {value!r}; valid: {', '.join(map(repr, valid))}")
    return v


def _kinds(what: str, value: Any, channels: tuple[str, ...], valid: tuple[str, ...]) -> tuple[str, ...]:
    """Normalise a kind given as str, {channel: kind} or a per-channel sequence."""
    if isinstance(value, str):
        return (_choice(f"{what} kind", value, valid),) * len(channels)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in channels]
        if unknown:
            raise ValueError(
                f"{what}: unknown channel(s) {', '.join(map(repr, unknown))}; channels: {', '.join(channels)}"
            )
        missing = [c for c in channels if c not in value]
        if missing:
            raise ValueError(f"{what}: no kind given for channel(s) {', '.join(map(repr, missing))}")
        return tuple(_choice(f"{what} kind for channel {c!r}", value[c], valid) for c in channels)
    try:
        seq = tuple(value)
    except TypeError:
        raise ValueError(
            f"{what} must be a kind name or a {{channel: kind}} mapping, got {value!r}"
        ) from None
    if len(seq) != len(channels):
        raise ValueError(f"{what}: got {len(seq)} kinds for {len(channels)} channels")
    return tuple(_choice(f"{what} kind for channel {c!r}", k, valid) for c, k in zip(channels, seq))


def _canonical(kinds: tuple[str, ...]) -> str | tuple[str, ...]:
    """One str when every channel has the same kind, else the per-channel tuple."""
    return kinds[0] if len(set(kinds)) == 1 else kinds


def _per_channel(kinds: str | tuple[str, ...], n: int) -> tuple[str, ...]:
    return (kinds,) * n if isinstance(kinds, str) else kinds


def _bool(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")  # noqa: TRY004
    return value


def _int(what: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")  # noqa: TRY004
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _float(what: str, value: Any, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")  # noqa: TRY004
    v = float(value)
    if not minimum <= v <= maximum:
        raise ValueError(f"{what} must be between {minimum:g} and {maximum:g}, got {value!r}")
    return v


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A validated, immutable MMM specification.

    Parameters
    ----------
    channels : sequence of str
        Media spend columns (at least one, unique). A single str is one channel.
    date_column : str, default "date"
        Date column (weekly or daily).
    target : str, default "y"
        Target (sales) column.
    controls : sequence of str, default ()
        Control columns (unique, disjoint from the channels).
    adstock : str, {channel: str} or sequence of str, default "geometric"
        Adstock kind for all channels, per channel, or one per channel in
        ``channels`` order; one of :data:`ADSTOCK_KINDS` (case-insensitive).
        Stored canonically: one str if all channels share the kind, else the
        ``(C,)`` tuple of kinds in ``channels`` order. Use
        :attr:`adstock_by_channel` for the per-channel ``(C,)`` tuple.
    saturation : str, {channel: str} or sequence of str, default "logistic"
        Saturation kind(s), one of :data:`SATURATION_KINDS`; stored like
        ``adstock``; per channel: :attr:`saturation_by_channel`.
    l_max : int, default 8
        Maximum adstock lag (>= 1).
    adstock_normalize : bool, default True
        Normalise adstock weights to sum 1.
    yearly_seasonality : int, default 2
        Fourier order of the yearly seasonality (0 = none); adds
        ``2 * yearly_seasonality`` features.
    trend : bool, default True
        Linear trend.
    intercept : bool, default True
        Intercept.
    likelihood : {"normal", "studentt"}, default "normal"
    log_target : bool, default False
        The multiplicative model: ``log(y)`` is the sum of the terms (the target
        must be > 0; noise on the log scale, LogNormal sales). Contributions and
        ROAS are counterfactual, in original units (see :class:`fastmmm.results.MMMResult`).
    target_scaling, channel_scaling : {"max", "mean"}, default "max"
        How the target / each channel is scaled before modelling.
    time_varying_intercept : bool, default False
        Add a smooth drift to the baseline: ``intercept_tv[t] = intercept +
        f(t)``, ``f`` a Gaussian process (HSGP approximation, see
        :mod:`fastmmm.tvp`) orthogonal in-sample to the intercept and trend
        (the linear part of a drift stays in ``trend``: the baseline is
        ``intercept_tv + trend``). Fits use the pytensor backend.
    time_varying_media : bool, default False
        Multiply the total media contribution by ``media_multiplier[t] =
        exp(g(t))``, ``g`` a Gaussian process with mean zero in-sample.
    hsgp_m : int, default 20
        Number of HSGP basis functions (2..500); enough for lengthscales down
        to about ``1.75 * hsgp_c * (half the training span) / hsgp_m``
        (Riutort-Mayol et al. 2023).
    hsgp_c : float, default 1.5
        HSGP boundary factor (1.2..10): the approximation holds up to
        ``(hsgp_c - 1) * (half the training span)`` past the training end.
    priors : mapping of str to Prior, str or dict, default {}
        Prior overrides; see the module docstring for the names. Stored as a
        :class:`PriorMap` of :class:`~fastmmm.priors.Prior`.

    Raises
    ------
    ValueError
        Any invalid field, naming the valid values.
    """

    channels: tuple[str, ...]
    date_column: str = "date"
    target: str = "y"
    controls: tuple[str, ...] = ()
    adstock: str | tuple[str, ...] | Mapping[str, str] = "geometric"
    saturation: str | tuple[str, ...] | Mapping[str, str] = "logistic"
    l_max: int = 8
    adstock_normalize: bool = True
    yearly_seasonality: int = 2
    trend: bool = True
    intercept: bool = True
    likelihood: str = "normal"
    log_target: bool = False
    target_scaling: str = "max"
    channel_scaling: str = "max"
    time_varying_intercept: bool = False
    time_varying_media: bool = False
    hsgp_m: int = 20
    hsgp_c: float = 1.5
    media_prior: str = "roas"
    priors: PriorMap | Mapping[str, Any] = field(default_factory=PriorMap)

    def __post_init__(self) -> None:

        def setf(k, v):
            object.__setattr__(self, k, v)

        for name in ("date_column", "target"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a non-empty column name, got {v!r}")
        channels = _names("channels", self.channels)
        if not channels:
            raise ValueError("channels: at least one channel column is required")
        controls = _names("controls", self.controls)
        setf("channels", channels)
        setf("controls", controls)
        self._check_roles()
        setf("adstock", _canonical(_kinds("adstock", self.adstock, channels, ADSTOCK_KINDS)))
        setf(
            "saturation",
            _canonical(_kinds("saturation", self.saturation, channels, SATURATION_KINDS)),
        )
        setf("l_max", _int("l_max", self.l_max, 1))
        setf("yearly_seasonality", _int("yearly_seasonality", self.yearly_seasonality, 0))
        for name in (
            "adstock_normalize",
            "trend",
            "intercept",
            "log_target",
            "time_varying_intercept",
            "time_varying_media",
        ):
            setf(name, _bool(name, getattr(self, name)))
        setf("hsgp_m", _int("hsgp_m", self.hsgp_m, 2))
        if self.hsgp_m > 500:
            raise ValueError(f"hsgp_m must be <= 500, got {self.hsgp_m}")
        setf("hsgp_c", _float("hsgp_c", self.hsgp_c, 1.2, 10.0))
        setf("likelihood", _choice("likelihood", self.likelihood, LIKELIHOODS))
        setf("target_scaling", _choice("target_scaling", self.target_scaling, SCALINGS))
        setf("channel_scaling", _choice("channel_scaling", self.channel_scaling, SCALINGS))
        setf("media_prior", _choice("media_prior", self.media_prior, MEDIA_PRIORS))
        if self.log_target and self.media_prior == "share":
            # The share parameterisation scales beta by the mean of the modelled target, which
            # is log(y / mean y), about 0: it has no meaning on the log scale.
            raise ValueError(
                "log_target=True needs media_prior='roas' (the default) or 'mroas'; "
                "media_prior='share' (a share of the target) has no meaning on the log scale"
            )
        setf("priors", self._validate_priors(self.priors))

    # ------------------------------------------------------------------ validation
    def _check_roles(self) -> None:
        roles: dict[str, list[str]] = {}
        for role, cols in (
            ("date", (self.date_column,)),
            ("target", (self.target,)),
            ("channel", self.channels),
            ("control", self.controls),
        ):
            for c in cols:
                roles.setdefault(c, []).append(role)
        clash = {c: r for c, r in roles.items() if len(r) > 1}
        if clash:
            desc = "; ".join(f"{c!r} is used as {' and '.join(r)}" for c, r in clash.items())
            raise ValueError(f"each column may have one role only: {desc}")

    def prior_names(self) -> tuple[str, ...]:
        """The prior names that apply to this spec (valid keys of ``priors``, without channel suffix)."""
        names: list[str] = []
        if self.intercept:
            names.append("intercept")
        if self.trend:
            names.append("trend")
        if self.controls:
            names.append("gamma_control")
        if self.yearly_seasonality:
            names.append("gamma_fourier")
        names += [self.amplitude_prior_name, "beta"]
        names += self._adstock_prior_names()
        names += self._saturation_prior_names()
        names.append("sigma")
        if self.likelihood == "studentt":
            names.append("nu")
        if self.time_varying_intercept:
            names += ["tvp_intercept_ls", "tvp_intercept_eta"]
        if self.time_varying_media:
            names += ["tvp_media_ls", "tvp_media_eta"]
        return tuple(names)

    def _adstock_prior_names(self) -> list[str]:
        out: list[str] = []
        for kind in self.adstock_by_channel:
            out += [f"adstock_{p}" for p in ADSTOCK_PARAMS[kind] if f"adstock_{p}" not in out]
        return out

    def _saturation_prior_names(self) -> list[str]:
        out: list[str] = []
        for kind in self.saturation_by_channel:
            out += [f"saturation_{p}" for p in SATURATION_PARAMS[kind] if f"saturation_{p}" not in out]
        return out

    @property
    def amplitude_prior_name(self) -> str:
        """The prior name of the channel amplitude under ``media_prior``: roas, mroas or channel_share."""
        return {"roas": "roas", "mroas": "mroas", "share": "channel_share"}[self.media_prior]

    def _channel_prior_names(self, channel: str) -> tuple[str, ...]:
        i = self.channels.index(channel)
        return (
            (self.amplitude_prior_name, "beta")
            + tuple(f"adstock_{p}" for p in ADSTOCK_PARAMS[self.adstock_by_channel[i]])
            + tuple(f"saturation_{p}" for p in SATURATION_PARAMS[self.saturation_by_channel[i]])
        )

    def _validate_priors(self, priors: Any) -> PriorMap:
        if priors is None:
            return PriorMap()
        if not isinstance(priors, Mapping):
            raise ValueError(f"priors must be a mapping of prior name to prior, got {priors!r}")  # noqa: TRY004
        flat: dict[str, Any] = {}
        for key, value in priors.items():
            if not isinstance(key, str):
                raise ValueError(f"prior names must be strings, got {key!r}")  # noqa: TRY004
            # Nested per-channel form {"beta": {"tv": ..., "radio": ...}} (e.g. unquoted TOML dotted keys).
            if isinstance(value, Mapping) and "dist" not in value and "." not in key:
                for ch, v in value.items():
                    flat[f"{key}.{ch}"] = v
            else:
                flat[key] = value
        valid = self.prior_names()
        channel_level = {
            "roas",
            "mroas",
            "channel_share",
            "beta",
            *_ALL_ADSTOCK_PRIORS,
            *_ALL_SATURATION_PRIORS,
        }
        out: dict[str, Prior] = {}
        for key, value in flat.items():
            base, _, channel = key.partition(".")
            if base not in valid:
                why = ""
                if base in ALL_PRIOR_NAMES:
                    why = f" (it does not apply to this spec: {self._why_not(base)})"
                raise ValueError(
                    f"unknown prior name {key!r}{why}; valid names for this spec: {', '.join(valid)} "
                    f"(channel-level ones also as '<name>.<channel>')"
                )
            try:
                prior = as_prior(value)
            except ValueError as e:
                raise ValueError(f"prior {key!r}: {e}") from None
            if channel:
                if base not in channel_level:
                    raise ValueError(
                        f"prior {key!r}: per-channel overrides are only for beta, adstock_* and saturation_* priors"
                    )
                if channel not in self.channels:
                    raise ValueError(
                        f"prior {key!r}: unknown channel {channel!r}; channels: {', '.join(self.channels)}"
                    )
                if base not in self._channel_prior_names(channel):
                    i = self.channels.index(channel)
                    raise ValueError(
                        f"prior {key!r}: channel {channel!r} (adstock {self.adstock_by_channel[i]!r}, saturation "
                        f"{self.saturation_by_channel[i]!r}) has no parameter {base!r}; its priors: "
                        f"{', '.join(self._channel_prior_names(channel))}"
                    )
                if prior.size is not None:
                    raise ValueError(f"prior {key!r}: a per-channel override must have scalar parameters")
            elif prior.size is not None:
                expected = {
                    "gamma_control": (len(self.controls), "controls"),
                    "gamma_fourier": (2 * self.yearly_seasonality, "Fourier features"),
                }.get(base)
                if expected is None and base in channel_level:
                    expected = (len(self.channels), "channels")
                if expected is None:
                    raise ValueError(f"prior {key!r} is a scalar parameter: list values are not allowed")
                if prior.size != expected[0]:
                    raise ValueError(
                        f"prior {key!r}: list values have length {prior.size}, expected {expected[0]} "
                        f"(one per {expected[1][:-1]}; {expected[1]}: {expected[0]})"
                    )
            if base.startswith("tvp_") or base in ("roas", "mroas", "channel_share"):
                kw = prior.kwargs
                ok = prior.dist in _POSITIVE_DISTS or (
                    prior.dist in ("TruncatedNormal", "Uniform") and kw.get("lower", -1.0) >= 0
                )
                if not ok:
                    what = (
                        "a GP lengthscale / amplitude"
                        if base.startswith("tvp_")
                        else "a channel's (marginal) ROAS or share"
                    )
                    raise ValueError(
                        f"prior {key!r}: {what} must be positive; use a distribution "
                        f"with positive support ({', '.join(_POSITIVE_DISTS)}, or TruncatedNormal / "
                        f"Uniform with lower >= 0), got {prior}"
                    )
            out[key] = prior
        return PriorMap(out)

    def _why_not(self, base: str) -> str:
        if base == "intercept":
            return "intercept=False"
        if base == "trend":
            return "trend=False"
        if base == "gamma_control":
            return "no controls"
        if base == "gamma_fourier":
            return "yearly_seasonality=0"
        if base == "nu":
            return "nu is only used with likelihood='studentt'"
        if base.startswith("tvp_intercept_"):
            return "time_varying_intercept=False"
        if base.startswith("tvp_media_"):
            return "time_varying_media=False"
        if base in ("roas", "mroas", "channel_share"):
            return (
                f"media_prior={self.media_prior!r} puts the amplitude prior on {self.amplitude_prior_name!r}"
            )
        if base.startswith("adstock_"):
            return f"adstock kinds used: {', '.join(sorted(set(self.adstock_by_channel)))}"
        return f"saturation kinds used: {', '.join(sorted(set(self.saturation_by_channel)))}"

    # ------------------------------------------------------------------ access
    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return len(self.channels)

    @property
    def n_controls(self) -> int:
        """Number of controls ``K``."""
        return len(self.controls)

    @property
    def n_fourier(self) -> int:
        """Number of Fourier features, ``2 * yearly_seasonality``."""
        return 2 * self.yearly_seasonality

    @property
    def adstock_by_channel(self) -> tuple[str, ...]:
        """Adstock kind of each channel, ``(C,)`` tuple in ``channels`` order.

        ``dict(zip(spec.channels, spec.adstock_by_channel))`` maps channel to kind.
        """
        return _per_channel(self.adstock, len(self.channels))

    @property
    def saturation_by_channel(self) -> tuple[str, ...]:
        """Saturation kind of each channel, ``(C,)`` tuple in ``channels`` order."""
        return _per_channel(self.saturation, len(self.channels))

    def prior(self, name: str, channel: str | None = None) -> Prior | None:
        """The user's prior override for ``name`` (and ``channel``), or None (use the model default).

        Parameters
        ----------
        name : str
            Prior name without channel suffix (``"beta"``, ``"adstock_alpha"``, ...).
        channel : str, optional
            Channel. Returns the ``"name.channel"`` override if given, else
            the global ``"name"`` prior, reduced to this channel's scalar
            prior if it has per-channel lists.

        Raises
        ------
        ValueError
            ``name`` is not a prior name of any spec, or ``channel`` is not a channel.
        """
        if name not in ALL_PRIOR_NAMES:
            raise ValueError(f"unknown prior name {name!r}; valid names: {', '.join(ALL_PRIOR_NAMES)}")
        if channel is None:
            return self.priors.get(name)
        if channel not in self.channels:
            raise ValueError(f"unknown channel {channel!r}; channels: {', '.join(self.channels)}")
        specific = self.priors.get(f"{name}.{channel}")
        if specific is not None:
            return specific
        general = self.priors.get(name)
        if general is not None and general.size is not None:
            return general.select(self.channels.index(channel))
        return general

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with ``changes`` applied (re-validated).

        A uniform adstock / saturation kind is stored as one string, so
        changing ``channels`` keeps it; per-channel kinds must be re-given.
        """
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        unknown = set(changes) - set(d)
        if unknown:
            raise ValueError(f"unknown ModelSpec field(s) {sorted(unknown)}; fields: {', '.join(d)}")
        d.update(changes)
        return ModelSpec(**d)

    def structure_key(self) -> tuple:
        """A hashable key of everything that changes the compiled model's structure.

        Includes the per-channel adstock / saturation kinds, ``l_max``,
        ``adstock_normalize``, the Fourier order, trend / intercept, the
        likelihood, ``log_target``, the numbers of channels and controls, the
        priors (per-channel overrides keyed by channel *index*) and, when a
        time-varying part is on, its switches and the HSGP settings. Excludes
        column names and the data-scaling options, which only change the data.
        """
        priors = []
        for key, p in self.priors.items():
            base, _, channel = key.partition(".")
            idx = self.channels.index(channel) if channel else -1
            priors.append((base, idx, p.dist, p.params))
        return (
            "fastmmm-structure-v2",
            self.media_prior,
            self.adstock_by_channel,
            self.saturation_by_channel,
            self.l_max,
            self.adstock_normalize,
            self.yearly_seasonality,
            self.trend,
            self.intercept,
            self.likelihood,
            self.log_target,
            len(self.channels),
            len(self.controls),
            tuple(sorted(priors)),
        ) + self._tvp_key()

    def _tvp_key(self) -> tuple:
        # Empty without time-varying parts, so the key of such a spec is what it always was.
        if not (self.time_varying_intercept or self.time_varying_media):
            return ()
        return (("tvp", self.time_varying_intercept, self.time_varying_media, self.hsgp_m, self.hsgp_c),)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict; ``ModelSpec.from_dict(s.to_dict()) == s``.

        Uniform kinds are written as one string, mixed ones as ``{channel: kind}``;
        priors as ``{name: prior dict}``. The time-varying settings
        (``time_varying_*``, ``hsgp_*``) are written only when one differs from
        its default, so specs without them read the same as before.
        """

        def kinds(v: str | tuple[str, ...]) -> str | dict[str, str]:
            return v if isinstance(v, str) else dict(zip(self.channels, v))

        return {
            "spec_version": SPEC_VERSION,
            "date_column": self.date_column,
            "target": self.target,
            "channels": list(self.channels),
            "controls": list(self.controls),
            "adstock": kinds(self.adstock),
            "saturation": kinds(self.saturation),
            "l_max": self.l_max,
            "adstock_normalize": self.adstock_normalize,
            "yearly_seasonality": self.yearly_seasonality,
            "trend": self.trend,
            "intercept": self.intercept,
            "likelihood": self.likelihood,
            "log_target": self.log_target,
            "target_scaling": self.target_scaling,
            "channel_scaling": self.channel_scaling,
            **self._tvp_dict(),
            "media_prior": self.media_prior,
            "priors": {k: p.to_dict() for k, p in self.priors.items()},
        }

    def _tvp_dict(self) -> dict[str, Any]:
        names = ("time_varying_intercept", "time_varying_media", "hsgp_m", "hsgp_c")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in names}
        if all(getattr(self, n) == defaults[n] for n in names):
            return {}
        return {n: getattr(self, n) for n in names}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Build from a plain dict (as from :meth:`to_dict`, TOML, YAML or JSON).

        Unknown keys raise ValueError listing the valid ones. ``spec_version``
        is optional; a newer version than this fastmmm understands is refused.
        A version 1 spec (saved by fastmmm 0.1) had no ``media_prior``: its
        models put the amplitude prior on the contribution share, so it reads
        as ``media_prior="share"``.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a model spec must be a mapping, got {type(d).__name__}")  # noqa: TRY004
        d = dict(d)
        version = d.pop("spec_version", SPEC_VERSION)
        if version not in (1, SPEC_VERSION):
            raise ValueError(
                f"unsupported spec_version {version!r}; this fastmmm reads versions 1 and {SPEC_VERSION}"
            )
        if version == 1:
            d.setdefault("media_prior", "share")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ValueError(
                f"unknown model spec key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}"
            )
        if "channels" not in d:
            raise ValueError("a model spec needs 'channels' (a list of spend columns)")
        return cls(**d)

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict` (keys sorted); ``kwargs`` go to :func:`json.dumps`."""
        kwargs.setdefault("sort_keys", True)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, path: str | os.PathLike, section: str | None = None) -> ModelSpec:
        """Read a spec from a TOML file (top level, or the table ``section``, e.g. ``"model"``)."""
        import tomllib

        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{os.fspath(path)}: invalid TOML: {e}") from None
        return cls.from_dict(_section(data, section, path))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, section: str | None = None) -> ModelSpec:
        """Read a spec from a YAML file (needs PyYAML; ``section`` as in :meth:`from_toml`)."""
        try:
            import yaml
        except ImportError:
            raise ImportError(
                "ModelSpec.from_yaml needs PyYAML (`pip install pyyaml`); or use ModelSpec.from_toml"
            ) from None
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"{os.fspath(path)}: invalid YAML: {e}") from None
        return cls.from_dict(_section(data, section, path))


def _section(data: Any, section: str | None, path: str | os.PathLike) -> Any:
    if section is None:
        return data
    if not isinstance(data, Mapping) or section not in data:
        raise ValueError(f"{os.fspath(path)}: no [{section}] table")
    return data[section]
