"""The model's layout: its free parameters in sampling order, with their
priors, transforms and shapes, and what every draw expands to. Built once from
the spec and the data, without PyMC.

National and hierarchical models are one layout with an optional group axis
(national = no group axis). The fused Rust problem (:mod:`fastmmm.fastpath`)
takes its blocks from :meth:`ModelLayout.blocks`, the sampler starts at
:meth:`ModelLayout.initial_point`, and results name the expanded draws with
:meth:`ModelLayout.split`. The PyMC reference models (:mod:`fastmmm.model`,
:mod:`fastmmm.hierarchical`) create the same variables in the same order;
tests hold the two equal (names, shapes, log-density).

Parameter names and defaults
----------------------------
A term's ``name`` is the PyMC model's variable name, its ``role`` the name of
the matching block of the fused log-density (``rust/logp.rs``): ``level``,
``trend``, ``gamma_fourier``, ``gamma_control``, ``adstock_<i>``,
``saturation_<j>`` (kernel parameter index), the amplitude ``roas``,
``mroas``, ``channel_share`` or ``beta`` (:func:`amplitude_name`),
``sigma``, ``nu``, ``tvp_{intercept|media}_{ls|eta|z}`` and, for a pooled
media parameter of a hierarchical model, ``<target>_sd`` / ``<target>_z``
(non-centred) or ``<target>_w`` (centred, :data:`CENTRED_POOLS`) (target
``adstock_<i>``, ``saturation_<j>`` or ``amplitude``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.kinds import ADSTOCK_KINDS, SATURATION_KINDS
from fastmmm.priors import Prior

__all__ = [
    "FIXED_SATURATION_PARAMS",
    "DEFAULT_TRANSFORM",
    "MEDIA_MULTIPLIERS",
    "POOLABLE",
    "check_pooled",
    "is_pooled",
    "Deterministic",
    "MediaDesign",
    "ModelLayout",
    "Term",
    "default_prior",
    "kappa_scale",
    "media_designs",
    "national_layout",
    "panel_layout",
    "resolve_prior",
    "uses_direct_beta",
    "amplitude_kind",
    "amplitude_name",
    "amplitude_prior",
    "default_roas_prior",
    "reference_roas",
    "roas_scale",
]

#: Saturation parameters fixed to 1 because beta already is the amplitude.
FIXED_SATURATION_PARAMS = {k.name: dict(k.fixed) for k in SATURATION_KINDS.values() if k.fixed}

#: PyMC's default transform to the unconstrained space, by distribution
#: (TruncatedNormal: by which bounds are finite; Uniform: its interval).
DEFAULT_TRANSFORM = {
    "Normal": "identity",
    "StudentT": "identity",
    "HalfNormal": "log",
    "LogNormal": "log",
    "Gamma": "log",
    "Exponential": "log",
    "HalfStudentT": "log",
    "Beta": "logodds",
    "Uniform": "interval",
}

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------- priors and designs
@functools.lru_cache(maxsize=32)
def _default_table(l_max: int) -> dict[str, Prior]:
    return {
        "intercept": Prior("Normal", mu=0.5, sigma=1.0),
        "trend": Prior("Normal", mu=0.0, sigma=0.5),
        "gamma_control": Prior("Normal", mu=0.0, sigma=0.5),
        "gamma_fourier": Prior("Normal", mu=0.0, sigma=0.5),
        "beta": Prior("HalfNormal", sigma=1.0),
        "sigma": Prior("HalfNormal", sigma=0.5),
        "nu": Prior("Gamma", alpha=2.0, beta=0.1),
    }


def default_prior(name: str, *, l_max: int = 8, n_channels: int = 1) -> Prior:
    """The default prior of a model parameter (on the scaled space)."""
    if name == "channel_share":
        return Prior("HalfNormal", sigma=0.5 / max(n_channels, 1))
    if name in ("roas", "mroas"):
        raise KeyError(f"the default {name} prior depends on the data: see default_roas_prior")
    if name.startswith("tvp_"):
        from fastmmm.tvp import default_tvp_prior

        return default_tvp_prior(name)
    family, _, param = name.partition("_")
    if family in ("adstock", "saturation"):
        # Without a kind: the first kind with this parameter (fastmmm.kinds)
        rows = ADSTOCK_KINDS if family == "adstock" else SATURATION_KINDS
        for row in rows.values():
            if param in row.priors:
                return row.default_prior(param, int(l_max))
    table = _default_table(int(l_max))
    if name not in table:
        raise KeyError(f"no default prior for {name!r}")
    return table[name]


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
        """The free saturation parameters (those not fixed by :data:`FIXED_SATURATION_PARAMS`)."""
        fixed = FIXED_SATURATION_PARAMS.get(self.saturation, {})
        return tuple(p for p in SATURATION_PARAMS[self.saturation] if p not in fixed)

    @property
    def relative_param(self) -> str | None:
        """The saturation parameter expressed relative to each channel's spend scale."""
        return SATURATION_KINDS[self.saturation].relative

    def var(self, name: str) -> str:
        """Model variable name of ``name`` for this group."""
        return f"{name}__{self.label}" if self.label else name

    @property
    def dim(self) -> str:
        return f"channel__{self.label}" if self.label else "channel"

    @staticmethod
    def from_spec(spec) -> MediaDesign:
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


def resolve_prior(spec, name: str, design: MediaDesign | None = None, channels=None, default=None) -> Prior:
    """The user's prior for ``name`` (with per-channel overrides merged), else ``default`` or the
    table's default."""
    base = spec.prior(name) if spec is not None else None
    if base is None and default is not None:
        base = default
    if base is None:
        l_max = spec.l_max if spec else 8
        family, _, param = name.partition("_")
        row = None
        if design is not None and family in ("adstock", "saturation"):
            row = (ADSTOCK_KINDS if family == "adstock" else SATURATION_KINDS)[getattr(design, family)]
        if row is not None and param in row.priors:
            base = row.default_prior(param, int(l_max))
        else:
            base = default_prior(name, l_max=l_max, n_channels=len(spec.channels) if spec else 1)
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


#: The default (marginal) ROAS prior is the same for every channel whatever its spend (a prior on
#: the share of the target, the former default, implies a high ROAS for a small channel): a
#: LogNormal whose mean is the data's reference ROAS, the ROAS every channel would have if media
#: drove REFERENCE_MEDIA_SHARE of the target (units-free: a ROAS of 1 presumes the target is
#: revenue in the spend's currency; on mmm_example.csv, sales in units, ROAS is ~1e3).
#: The share and the spread were chosen by the prior predictive check and the recovery study
#: of benches/bench_recovery.py (README): a spread of 1.2 rather than 1.0 takes the small
#: channels' mean ROAS error from +16% to +12% (a wider prior with the same mean has a lower
#: median, and pulls a weakly identified channel less towards the reference).
REFERENCE_MEDIA_SHARE = 0.2
ROAS_PRIOR_SIGMA = 1.2

#: The amplitude parameterisations: what each channel's amplitude prior is on.
AMPLITUDES = ("roas", "mroas", "share", "beta")


def amplitude_kind(spec) -> str:
    """How the channel amplitude is parameterised: ``beta`` (a user prior on beta: direct),
    else ``spec.media_prior`` (``roas``, ``mroas`` or ``share``)."""
    return "beta" if uses_direct_beta(spec) else spec.media_prior


def amplitude_name(spec) -> str:
    """The model variable (and prior name) of the amplitude: beta, roas, mroas or channel_share."""
    return {"beta": "beta", "roas": "roas", "mroas": "mroas", "share": "channel_share"}[amplitude_kind(spec)]


def reference_roas(datas) -> float:
    """The ROAS every channel would have if media drove REFERENCE_MEDIA_SHARE of the target:
    that share of the total target over the total spend of all channels (original units; all
    groups of a panel together)."""
    datas = datas if isinstance(datas, (list, tuple)) else [datas]
    y = sum(float(np.sum(np.asarray(d.y, dtype=np.float64))) for d in datas)
    x = sum(float(np.sum(np.asarray(d.spend, dtype=np.float64))) for d in datas)
    return REFERENCE_MEDIA_SHARE * abs(y) / max(x, 1e-300)


def default_roas_prior(datas) -> Prior:
    """The default prior of each channel's (marginal) ROAS: LogNormal with mean
    :func:`reference_roas` and log-scale spread ROAS_PRIOR_SIGMA."""
    ref = max(reference_roas(datas), 1e-300)
    return Prior("LogNormal", mu=math.log(ref) - 0.5 * ROAS_PRIOR_SIGMA**2, sigma=ROAS_PRIOR_SIGMA)


def amplitude_prior(spec, datas) -> Prior:
    """The prior of the channel amplitude (:func:`amplitude_name`), per channel, with the
    data-based default for a (marginal) ROAS."""
    name = amplitude_name(spec)
    default = default_roas_prior(datas) if name in ("roas", "mroas") else None
    return resolve_prior(spec, name, None, list(spec.channels), default=default)


def roas_scale(data) -> np.ndarray:
    """(C,) per channel: mean scaled spend x channel scale / target scale, so that ``roas *
    roas_scale`` is the channel's mean contribution per period (scaled target) at ``roas``
    (contribution over the period / its spend, original units)."""
    spend = np.asarray(data.spend_scaled, dtype=np.float64)
    cs = np.asarray(data.scales.channel_scale, dtype=np.float64)
    return spend.mean(axis=0) * cs / float(data.scales.target_scale)


def uses_direct_beta(spec) -> bool:
    """True when the user gave a prior on beta (direct amplitude parameterisation)."""
    return (
        any(spec.prior("beta", channel=c) is not None for c in spec.channels)
        or spec.prior("beta") is not None
    )


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


# ---------------------------------------------------------------------- one term
def canonical_params(prior: Prior, size: int) -> dict[str, np.ndarray]:
    """The fused log-density's parameters of ``prior``, one value per element ``(size,)``.

    Normal / LogNormal (mu, sigma), HalfNormal (sigma), Gamma (alpha, beta:
    rate), Beta (alpha, beta), Exponential (lam), StudentT (nu, mu, sigma),
    HalfStudentT (nu, sigma), TruncatedNormal (mu, sigma, lower, upper),
    Uniform (lower, upper): PyMC's defaults for what the prior leaves out, and
    its conversions of the alternative parameterisations.
    """
    kw = prior.kwargs

    def get(name, default=None):
        v = kw.get(name, default)
        if v is None:
            raise ValueError(f"prior {prior}: missing {name}")
        a = np.asarray(v, dtype=np.float64)
        if a.ndim and a.shape[0] != size:
            raise ValueError(
                f"prior {prior}: per-element lists have length {a.shape[0]}, the variable has {size}"
            )
        return np.broadcast_to(a, (size,)).astype(np.float64)

    d = prior.dist
    if d in ("Normal", "LogNormal"):
        return {"mu": get("mu", 0.0), "sigma": get("sigma")}
    if d == "HalfNormal":
        return {"sigma": get("sigma")}
    if d == "Gamma":
        if "alpha" in kw:
            return {"alpha": get("alpha"), "beta": get("beta")}
        mu, sd = get("mu"), get("sigma")
        return {"alpha": mu**2 / sd**2, "beta": mu / sd**2}
    if d == "Beta":
        return {"alpha": get("alpha"), "beta": get("beta")}
    if d == "Exponential":
        return {"lam": get("lam")} if "lam" in kw else {"lam": 1.0 / get("scale")}
    if d == "StudentT":
        return {"nu": get("nu"), "mu": get("mu", 0.0), "sigma": get("sigma")}
    if d == "HalfStudentT":
        return {"nu": get("nu"), "sigma": get("sigma")}
    if d == "TruncatedNormal":
        return {
            "mu": get("mu", 0.0),
            "sigma": get("sigma"),
            "lower": get("lower", -np.inf),
            "upper": get("upper", np.inf),
        }
    if d == "Uniform":
        return {"lower": get("lower"), "upper": get("upper")}
    raise ValueError(f"prior {prior}: distribution {d} is not in the layout's table")


def _log_ndtr(x: float) -> float:
    """log Phi(x), accurate in the lower tail (erfc scaled; scipy only past erfc's range)."""
    if x > -5.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    q = 0.5 * math.erfc(-x / math.sqrt(2.0))
    if q > 1e-300:
        return math.log(q)
    from scipy.special import log_ndtr

    return float(log_ndtr(x))


def _log_diff_ndtr(a: float, b: float) -> float:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails."""
    if a > 0:  # both in the upper tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
        a, b = -b, -a
    lhi, llo = _log_ndtr(b), _log_ndtr(a)
    if llo == -math.inf:
        return lhi
    return lhi + math.log1p(-math.exp(llo - lhi))


def prior_const(dist: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """The value-independent part of each element's log-density (what the Rust kernel leaves out).

    ``const + kernel(value)`` is PyMC's ``logp`` of the distribution, with the
    Rust kernels ``Normal -z^2/2``, ``HalfNormal -(v/s)^2/2``, ``LogNormal
    -ln v - z^2/2``, ``Gamma (a-1) ln v - b v``, ``Beta (a-1) ln v + (b-1)
    ln(1-v)``, ``Exponential -lam v``, ``StudentT / HalfStudentT -(nu+1)/2
    ln(1 + z^2/nu)``, ``TruncatedNormal -z^2/2``, ``Uniform 0``.
    """
    lg = np.vectorize(math.lgamma, otypes=[float])
    if dist in ("Normal", "LogNormal"):
        return -np.log(p["sigma"]) - 0.5 * _LOG_2PI
    if dist == "HalfNormal":
        return -np.log(p["sigma"]) - 0.5 * _LOG_2PI + math.log(2.0)
    if dist == "Gamma":
        return p["alpha"] * np.log(p["beta"]) - lg(p["alpha"])
    if dist == "Beta":
        a, b = p["alpha"], p["beta"]
        return -(lg(a) + lg(b) - lg(a + b))
    if dist == "Exponential":
        return np.log(p["lam"])
    if dist in ("StudentT", "HalfStudentT"):
        nu = p["nu"]
        c = lg((nu + 1) / 2) - lg(nu / 2) - 0.5 * np.log(nu * np.pi) - np.log(p["sigma"])
        return c + math.log(2.0) if dist == "HalfStudentT" else c
    if dist == "TruncatedNormal":
        s = p["sigma"]
        a = (p["lower"] - p["mu"]) / s
        b = (p["upper"] - p["mu"]) / s
        z = np.array([_log_diff_ndtr(float(x), float(y)) for x, y in zip(a, b)])
        return -np.log(s) - 0.5 * _LOG_2PI - z
    if dist == "Uniform":
        return -np.log(p["upper"] - p["lower"])
    raise ValueError(dist)


def _support_point(dist: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """PyMC's ``support_point`` of each element (the initial point before jitter)."""
    if dist in ("Normal", "StudentT"):
        return p["mu"]
    if dist == "HalfNormal":
        return p["sigma"]
    if dist == "HalfStudentT":
        return p["sigma"]
    if dist == "LogNormal":
        return np.exp(p["mu"] + 0.5 * p["sigma"] ** 2)
    if dist == "Gamma":
        return p["alpha"] / p["beta"]
    if dist == "Beta":
        return p["alpha"] / (p["alpha"] + p["beta"])
    if dist == "Exponential":
        return 1.0 / p["lam"]
    if dist == "TruncatedNormal":
        lo, hi = p["lower"], p["upper"]
        return np.where(
            np.isneginf(lo),
            np.where(np.isposinf(hi), p["mu"], hi - 1.0),
            np.where(np.isposinf(hi), lo + 1.0, (lo + hi) / 2.0),
        )
    if dist == "Uniform":
        return (p["lower"] + p["upper"]) / 2.0
    raise ValueError(dist)


@dataclass(frozen=True)
class Term:
    """One free parameter (scalar or array) of the model.

    Attributes
    ----------
    name : the model variable's name (PyMC's, and the posterior's)
    role : the fused log-density's block role (see the module docstring)
    dims : named dimensions; ``shape`` their lengths
    prior : its prior (per-element parameters as lists)
    """

    name: str
    role: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    prior: Prior

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    @property
    def value_name(self) -> str:
        """The unconstrained variable's name, as PyMC calls it."""
        kind = self.transform[0]
        suffix = {
            "identity": "",
            "log": "_log__",
            "logodds": "_logodds__",
            "interval": "_interval__",
            "lowerbound": "_interval__",
        }[kind]
        return self.name + suffix

    def params(self) -> dict[str, np.ndarray]:
        return canonical_params(self.prior, self.size)

    @property
    def transform(self) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """(kind, lower, upper): PyMC's default transform of the prior and its bounds."""
        d = self.prior.dist
        p = self.params()
        if d == "TruncatedNormal":
            lo_fin, hi_fin = bool(np.all(np.isfinite(p["lower"]))), bool(np.all(np.isfinite(p["upper"])))
            if lo_fin and hi_fin:
                return "interval", p["lower"], p["upper"]
            if lo_fin:
                return "lowerbound", p["lower"], None
            if hi_fin:
                raise ValueError(
                    f"prior {self.name}: TruncatedNormal with only an upper bound is not supported"
                )
            return "identity", None, None
        if d == "Uniform":
            return "interval", p["lower"], p["upper"]
        return DEFAULT_TRANSFORM[d], None, None

    def block(self) -> dict:
        """The fused log-density's description of this term (``MmmProblem(blocks=...)``)."""
        p = self.params()
        const = np.broadcast_to(prior_const(self.prior.dist, p), (self.size,))
        if not np.all(np.isfinite(const)):
            raise ValueError(f"prior {self.name} ({self.prior}): its normalising constant is not finite")
        kind, lower, upper = self.transform
        return {
            "role": self.role,
            "size": self.size,
            "dist": self.prior.dist,
            "params": {k: [float(x) for x in v] for k, v in p.items()},
            "const": [float(x) for x in const],
            "transform": kind,
            "lower": None if lower is None else [float(x) for x in lower],
            "upper": None if upper is None else [float(x) for x in upper],
        }

    def initial_value(self) -> np.ndarray:
        """PyMC's support point on the unconstrained scale, ``(size,)``."""
        return self.to_unconstrained(_support_point(self.prior.dist, self.params()))

    def to_unconstrained(self, value) -> np.ndarray:
        """Constrained values ``(size,)`` mapped by the term's transform (PyMC's ``forward``)."""
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (self.size,))
        kind, lo, hi = self.transform
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "identity":
                u = v
            elif kind == "log":
                u = np.log(v)
            elif kind == "logodds":
                u = np.log(v) - np.log1p(-v)
            elif kind == "interval":
                s = (v - lo) / (hi - lo)
                u = np.log(s) - np.log1p(-s)
            else:  # lowerbound
                u = np.log(v - lo)
        return np.asarray(u, dtype=np.float64)


@dataclass(frozen=True)
class CentredPoolTerm(Term):
    """A centred pool's per-group values on the unconstrained scale of the pooled global
    term ``centre``: ``w[g, c] ~ Normal(u_c, sd)``, ``u_c`` the global's unconstrained value
    and ``sd`` the pool's (:data:`CENTRED_POOLS`). The density is the pool's: the Rust block
    is ``Flat`` (carrying the Normal's constant) and PyMC's variable a Normal whose mean and
    sd are the other two variables. ``prior`` is unused."""

    centre: Term | None = None

    @property
    def transform(self) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        return "identity", None, None

    def block(self) -> dict:
        return {
            "role": self.role,
            "size": self.size,
            "dist": "Flat",
            "params": {},
            "const": [-0.5 * math.log(2 * math.pi)] * self.size,
            "transform": "identity",
            "lower": None,
            "upper": None,
        }

    def initial_value(self) -> np.ndarray:
        """PyMC's support point, the Normal's mean: the global's, in every group."""
        return np.tile(self.centre.initial_value(), self.size // self.centre.size)


@dataclass(frozen=True)
class Deterministic:
    """A derived quantity every draw expands to (after the terms)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    #: The name the Rust problem gives it, when different (``adstock_0_geo``).
    rust_name: str = ""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))


#: The posterior's group dimension on a panel model; a group's own values of a pooled
#: parameter are the deterministic ``{name}_geo`` (group, ...).
GROUP_DIM = "geo"


def _runs(sized) -> list[tuple[int, int]]:
    """The ranges ``[start, end)`` of the kept items of ``sized`` ((length, kept) pairs laid
    end to end), adjacent ones merged."""
    out: list[tuple[int, int]] = []
    start = 0
    for n, kept in sized:
        if kept and n:
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], start + n)
            else:
                out.append((start, start + n))
        start += n
    return out


@dataclass
class ModelLayout:
    """The model's free parameters (``terms``, in sampling order), its
    deterministics, coordinates and the fused problem's structure options."""

    terms: list[Term]
    deterministics: list[Deterministic]
    coords: dict[str, list]
    structure: dict
    #: Group names of a hierarchical model; None for a national one.
    groups: list | None = None
    group_dim: str = GROUP_DIM
    meta: dict = field(default_factory=dict)

    @property
    def n_dim(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def n_expanded(self) -> int:
        return self.n_dim + sum(d.size for d in self.deterministics)

    def term(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def blocks(self) -> list[dict]:
        return [t.block() for t in self.terms]

    def initial_point(self) -> np.ndarray:
        """PyMC's initial point (support points) on the unconstrained scale, ``(n_dim,)``;
        the sampler jitters it per chain as nutpie's default does."""
        if not self.terms:
            return np.zeros(0)
        x = np.concatenate([t.initial_value() for t in self.terms])
        if not np.all(np.isfinite(x)):
            bad = [t.name for t in self.terms if not np.all(np.isfinite(t.initial_value()))]
            raise ValueError(f"no finite initial point for {', '.join(bad)}")
        return x

    def variables(self) -> list[tuple[str, tuple[str, ...], tuple[int, ...]]]:
        """(name, dims, shape) of every expanded quantity, in expanded order."""
        return [(t.name, t.dims, t.shape) for t in self.terms] + [
            (d.name, d.dims, d.shape) for d in self.deterministics
        ]

    def keep_ranges(self, drop=()) -> list[tuple[int, int]]:
        """The ranges ``[start, end)`` of the expanded vector without the variables in ``drop``
        (adjacent ones merged): what a sampler stores per draw."""
        return _runs((n, name not in drop) for name, n in self._sizes())

    def stored_ranges(self, drop=(), skip=()) -> list[tuple[int, int]]:
        """The ranges ``[start, end)`` of a stored draw (the expanded vector without ``drop``)
        that hold the variables not in ``skip`` (adjacent ones merged)."""
        return _runs((n, name not in skip) for name, n in self._sizes() if name not in drop)

    def _sizes(self) -> list[tuple[str, int]]:
        """(name, number of values) of every expanded quantity, in expanded order."""
        return [(name, int(np.prod(shape, dtype=int))) for name, _, shape in self.variables()]

    def split(self, expanded: np.ndarray, drop=()) -> dict[str, np.ndarray]:
        """Named views of expanded draws ``(..., n_expanded)`` (without the variables in
        ``drop``, when the draws leave them out): ``{name: (..., *shape)}``."""
        lead = expanded.shape[:-1]
        kept = [(n, s) for n, _, s in self.variables() if n not in drop]
        want = sum(int(np.prod(s, dtype=int)) for _, s in kept)
        if expanded.shape[-1] != want:
            raise ValueError(f"expanded draws have {expanded.shape[-1]} values, the layout {want}")
        out, start = {}, 0
        for name, shape in kept:
            n = int(np.prod(shape, dtype=int))
            out[name] = expanded[..., start : start + n].reshape(lead + tuple(shape))
            start += n
        return out

    def check_problem(self, problem) -> None:
        """Raise RuntimeError unless ``problem`` expands to exactly this layout."""
        if int(problem.n_dim) != self.n_dim:
            raise RuntimeError(f"fast path: MmmProblem.n_dim = {problem.n_dim}, the layout has {self.n_dim}")
        got = [(str(n), tuple(int(x) for x in s)) for n, s in problem.deterministics]
        want = [(d.rust_name or d.name, tuple(d.shape)) for d in self.deterministics]
        if got != want or int(problem.n_expanded) != self.n_expanded:
            raise RuntimeError(f"fast path: MmmProblem expands to {got}, the layout to {want}")


# ---------------------------------------------------------------------- pooling
#: What ``pooled=`` of a hierarchical model may contain besides parameter names.
POOLABLE = ("adstock", "saturation", "amplitude")


def _poolable_names() -> set[str]:
    names = set(POOLABLE) | {"channel_share", "roas", "mroas", "beta"}
    for params in ADSTOCK_PARAMS.values():
        names |= {f"adstock_{p}" for p in params}
    for params in SATURATION_PARAMS.values():
        names |= {f"saturation_{p}" for p in params}
    return names


def check_pooled(pooled) -> tuple[str, ...]:
    """Validated ``pooled``: kinds of :data:`POOLABLE` and/or parameter names
    (``"adstock_alpha"``, ``"saturation_kappa"``, ``"channel_share"``, ...)."""
    pooled = (pooled,) if isinstance(pooled, str) else tuple(pooled)
    valid = _poolable_names()
    bad = [p for p in pooled if p not in valid]
    if bad:
        raise ValueError(
            f"pooled: unknown {bad}; choose kinds {POOLABLE} or parameter names such as "
            "'adstock_alpha', 'saturation_kappa', 'channel_share'"
        )
    return tuple(dict.fromkeys(pooled))


#: Pooled kinds sampled centred (``{name}_w``, the groups' own values) rather than
#: non-centred (``{name}_z``): every group's data pin its channel amplitudes down, and the
#: non-centred form then ties the global amplitude to all of z[., c] (on an 8-geo x 8-channel
#: panel the global ROAS had a bulk ESS of ~90 of 2000 draws non-centred, ~1200 centred). The
#: shape parameters (adstock, saturation), weakly identified per group, stay non-centred
#: (centred they diverge: funnels).
CENTRED_POOLS = ("amplitude",)


def is_pooled(name: str, kind: str, pooled: tuple[str, ...]) -> bool:
    """Whether parameter ``name`` (of kind adstock / saturation / amplitude) is pooled."""
    return kind in pooled or name in pooled


# ---------------------------------------------------------------------- builders
def _fourier_modes(n_four: int) -> list[str]:
    order = n_four // 2
    return [f"sin_{k}" for k in range(1, order + 1)] + [f"cos_{k}" for k in range(1, order + 1)]


def _structure(spec, design: MediaDesign) -> dict:
    sat_names = SATURATION_PARAMS[design.saturation]
    fixed = FIXED_SATURATION_PARAMS.get(design.saturation, {})
    rel = design.relative_param
    return {
        "adstock": design.adstock,
        "l_max": int(design.l_max) if design.l_max is not None else 0,
        "normalize": bool(design.normalize),
        "saturation": design.saturation,
        "intercept": bool(spec.intercept),
        "trend": bool(spec.trend),
        "likelihood": spec.likelihood,
        "direct_beta": bool(uses_direct_beta(spec)),
        "relative_param": sat_names.index(rel) if rel else -1,
        "fixed_saturation": [(sat_names.index(p), float(v)) for p, v in fixed.items()],
    }


def _one_design(spec) -> MediaDesign:
    designs = media_designs(spec)
    if len(designs) != 1:
        kinds = ", ".join(f"{d.adstock}+{d.saturation}" for d in designs)
        raise ValueError(f"several channel groups with different adstock/saturation kinds ({kinds})")
    return designs[0]


def national_layout(spec, data, n_lift: int = 0) -> ModelLayout:
    """The layout of :func:`fastmmm.model.build_model` for ``data`` (PreparedData) and ``spec``
    (one adstock and one saturation kind for all channels)."""
    from fastmmm.tvp import parts

    d = _one_design(spec)
    channels = list(spec.channels)
    C, T = len(channels), len(data.dates)
    n_four = int(np.asarray(data.fourier).reshape(T, -1).shape[1])
    K = len(spec.controls)
    tvp = parts(spec)
    m = int(spec.hsgp_m)
    coords: dict[str, list] = {"date": list(data.dates), "channel": channels}
    if K:
        coords["control"] = list(spec.controls)
    if n_four:
        coords["fourier_mode"] = _fourier_modes(n_four)
    if tvp:
        coords["hsgp_basis"] = list(range(m))
    if n_lift:
        coords["lift_test"] = list(range(n_lift))

    terms: list[Term] = []
    if spec.intercept:
        terms.append(Term("level", "level", (), (), resolve_prior(spec, "intercept")))
    if spec.trend:
        terms.append(Term("trend", "trend", (), (), resolve_prior(spec, "trend")))
    if n_four:
        terms.append(
            Term(
                "gamma_fourier",
                "gamma_fourier",
                ("fourier_mode",),
                (n_four,),
                resolve_prior(spec, "gamma_fourier"),
            )
        )
    if K:
        terms.append(
            Term("gamma_control", "gamma_control", ("control",), (K,), resolve_prior(spec, "gamma_control"))
        )
    if "intercept" in tvp:
        terms += _tvp_terms(spec, "intercept", m)
    terms += _media_terms(spec, d, channels, data)
    if "media" in tvp:
        terms += _tvp_terms(spec, "media", m)
    terms += _noise_terms(spec, dims=(), shape=())

    dets = []
    if not uses_direct_beta(spec):
        dets.append(Deterministic("beta", ("channel",), (C,)))
    dets.append(Deterministic("channel_contribution", ("date", "channel"), (T, C)))
    if "media" in tvp:
        dets.append(Deterministic("media_multiplier", ("date",), (T,)))
    if spec.intercept:
        dets.append(Deterministic("intercept", (), ()))
    if "intercept" in tvp:
        dets.append(Deterministic("intercept_tv", ("date",), (T,)))
    dets.append(Deterministic("mu", ("date",), (T,)))
    if n_lift:
        dets.append(Deterministic("lift_model", ("lift_test",), (n_lift,)))
    return ModelLayout(terms, dets, coords, _structure(spec, d))


def _tvp_terms(spec, part: str, m: int, groups: tuple[str, int] | None = None) -> list[Term]:
    """The HSGP of a time-varying ``part``: lengthscale and amplitude (shared by all groups) and
    the basis coefficients, ``(m,)`` or, with ``groups`` = (group dimension, count), one row per
    group ``(G, m)``."""
    dims, shape = ((groups[0], "hsgp_basis"), (groups[1], m)) if groups else (("hsgp_basis",), (m,))
    return [
        Term(f"tvp_{part}_ls", f"tvp_{part}_ls", (), (), resolve_prior(spec, f"tvp_{part}_ls")),
        Term(f"tvp_{part}_eta", f"tvp_{part}_eta", (), (), resolve_prior(spec, f"tvp_{part}_eta")),
        Term(f"tvp_{part}_z", f"tvp_{part}_z", dims, shape, Prior("Normal", mu=0.0, sigma=1.0)),
    ]


def _media_terms(spec, d: MediaDesign, channels: list[str], datas) -> list[Term]:
    """adstock, free saturation parameters and the amplitude, shared by all groups: (C,) each."""
    C = len(channels)
    terms = []
    for i, p in enumerate(d.adstock_params):
        terms.append(
            Term(
                f"adstock_{p}",
                f"adstock_{i}",
                ("channel",),
                (C,),
                resolve_prior(spec, f"adstock_{p}", d, channels),
            )
        )
    sat_names = SATURATION_PARAMS[d.saturation]
    for p in d.saturation_params:
        terms.append(
            Term(
                f"saturation_{p}",
                f"saturation_{sat_names.index(p)}",
                ("channel",),
                (C,),
                resolve_prior(spec, f"saturation_{p}", d, channels),
            )
        )
    amp = amplitude_name(spec)
    terms.append(Term(amp, amp, ("channel",), (C,), amplitude_prior(spec, datas)))
    return terms


def _noise_terms(spec, dims, shape) -> list[Term]:
    out = [Term("sigma", "sigma", dims, shape, resolve_prior(spec, "sigma"))]
    if spec.likelihood == "studentt":
        out.append(Term("nu", "nu", (), (), resolve_prior(spec, "nu")))
    return out


#: How a panel's time-varying media multiplier is shared: one for all groups, or one per group.
MEDIA_MULTIPLIERS = ("shared", "group")


def panel_layout(
    spec,
    datas,
    groups,
    *,
    pooled,
    pool_sd: Prior | None = None,
    n_lift: int = 0,
    group_dim: str = GROUP_DIM,
    media_multiplier: str = "shared",
) -> ModelLayout:
    """The layout of :func:`fastmmm.hierarchical.build_hierarchical_model`: per group
    level, trend, seasonality, controls and sigma; media parameters global (C,), and for
    each pooled one ``{name}_sd`` () and ``{name}_z`` (group, channel), or ``{name}_w`` for
    the kinds in :data:`CENTRED_POOLS`. A time-varying
    intercept is one HSGP per group (``tvp_intercept_z`` (group, hsgp_basis)) with the
    lengthscale and amplitude shared; a time-varying media multiplier is one HSGP for all
    groups or, with ``media_multiplier="group"``, one per group."""
    from fastmmm.tvp import parts

    pooled = check_pooled(pooled)
    if media_multiplier not in MEDIA_MULTIPLIERS:
        raise ValueError(f"media_multiplier: must be one of {MEDIA_MULTIPLIERS}, got {media_multiplier!r}")
    tvp = parts(spec)
    m = int(spec.hsgp_m)
    d = _one_design(spec)
    channels = list(spec.channels)
    from fastmmm.data import panel_grid

    dates, _ = panel_grid(datas)  # every group's dates together (groups may start late, stop early)
    G, C, T = len(groups), len(channels), len(dates)
    n_four = int(np.asarray(datas[0].fourier).reshape(len(datas[0].dates), -1).shape[1])
    K = len(spec.controls)
    pool_sd = pool_sd or Prior("HalfNormal", sigma=0.5)
    g = group_dim
    coords: dict[str, list] = {g: list(groups), "date": list(dates), "channel": channels}
    if K:
        coords["control"] = list(spec.controls)
    if n_four:
        coords["fourier_mode"] = _fourier_modes(n_four)
    if tvp:
        coords["hsgp_basis"] = list(range(m))
    if n_lift:
        coords["lift_test"] = list(range(n_lift))
    terms: list[Term] = []
    if spec.intercept:
        terms.append(Term("level", "level", (g,), (G,), resolve_prior(spec, "intercept")))
    if spec.trend:
        terms.append(Term("trend", "trend", (g,), (G,), resolve_prior(spec, "trend")))
    if n_four:
        terms.append(
            Term(
                "gamma_fourier",
                "gamma_fourier",
                (g, "fourier_mode"),
                (G, n_four),
                resolve_prior(spec, "gamma_fourier"),
            )
        )
    if K:
        terms.append(
            Term(
                "gamma_control", "gamma_control", (g, "control"), (G, K), resolve_prior(spec, "gamma_control")
            )
        )
    if "intercept" in tvp:
        terms += _tvp_terms(spec, "intercept", m, groups=(g, G))
    pooled_dets = []
    for t in _media_terms(spec, d, channels, datas):
        terms.append(t)
        kind = (
            "amplitude" if t.name in ("channel_share", "roas", "mroas", "beta") else t.name.split("_", 1)[0]
        )
        if is_pooled(t.name, kind, pooled):
            target = "amplitude" if kind == "amplitude" else t.role
            terms.append(Term(f"{t.name}_sd", f"{target}_sd", (), (), pool_sd))
            standard = Prior("Normal", mu=0.0, sigma=1.0)
            if kind in CENTRED_POOLS:
                terms.append(
                    CentredPoolTerm(f"{t.name}_w", f"{target}_w", (g, "channel"), (G, C), standard, t)
                )
            else:
                terms.append(Term(f"{t.name}_z", f"{target}_z", (g, "channel"), (G, C), standard))
            pooled_dets.append(
                Deterministic(f"{t.name}_geo", (g, "channel"), (G, C), rust_name=f"{target}_geo")
            )
    media_by_group = "media" in tvp and media_multiplier == "group"
    if "media" in tvp:
        terms += _tvp_terms(spec, "media", m, groups=(g, G) if media_by_group else None)
    terms += _noise_terms(spec, dims=(g,), shape=(G,))
    # The Rust problem lists the pooled deterministics in target order: adstock, saturation, amplitude.
    dets = list(pooled_dets)
    if not uses_direct_beta(spec):
        dets.append(Deterministic("beta", (g, "channel"), (G, C)))
    dets.append(Deterministic("channel_contribution", (g, "date", "channel"), (G, T, C)))
    if "media" in tvp:
        dets.append(
            Deterministic("media_multiplier", (g, "date"), (G, T))
            if media_by_group
            else Deterministic("media_multiplier", ("date",), (T,))
        )
    if spec.intercept:
        dets.append(Deterministic("intercept", (g,), (G,)))
    if "intercept" in tvp:
        dets.append(Deterministic("intercept_tv", (g, "date"), (G, T)))
    dets.append(Deterministic("mu", (g, "date"), (G, T)))
    if n_lift:
        dets.append(Deterministic("lift_model", ("lift_test",), (n_lift,)))
    per_group = ["intercept"] if "intercept" in tvp else []
    per_group += ["media"] if media_by_group else []
    structure = {**_structure(spec, d), "groups": G, "grouped": True, "tvp_per_group": per_group}
    return ModelLayout(terms, dets, coords, structure, groups=list(groups), group_dim=g)
