"""The fast path: the whole log-density and gradient as one fused Rust function.

For the standard model family (one adstock kind and one saturation kind for
all channels, priors from :data:`fastmmm.priors.DISTRIBUTIONS`; with or
without lift tests (:mod:`fastmmm.lift`), HSGP time-varying intercept and
media multiplier (:mod:`fastmmm.tvp`), and the hierarchical multi-geo model
(:mod:`fastmmm.hierarchical`, groups on the kernel's batch axis)) the model's
log-density, its gradient and the trace's deterministics are computed by
``fastmmm._core.MmmProblem``, a Rust object with C entry points of nutpie's
signatures. nutpie samples it through a :class:`FastCompiled` model built from
the raw function addresses: nothing is compiled, so the time from ``fit`` to
the first draw is that of building the PyMC model (read only for its layout,
its priors and its initial point) plus well under a second.

The PyMC model stays the definition: :func:`problem_from_model` walks
``model.free_RVs`` (the order of nutpie's unconstrained vector), reads each
variable's distribution, parameters and transform off the graph, and hands
the Rust side one *block* per variable. The tests check that the Rust
log-density and gradient equal PyMC's at random points.

Block layout (``MmmProblem(blocks=...)``, one per free variable, in order)::

    role           model variable                 size
    level          level                          1
    trend          trend                          1
    gamma_fourier  gamma_fourier                  F
    gamma_control  gamma_control                  K
    adstock_<i>    adstock_<ADSTOCK_PARAMS[k][i]>     C
    saturation_<j> saturation_<SATURATION_PARAMS[k][j]> C   (free ones only)
    channel_share  channel_share (or beta)        C
    sigma, nu      sigma, nu                      1
    tvp_{part}_ls / _eta / _z  HSGP lengthscale, amplitude, coefficients   1, 1, m

The hierarchical model (``groups=G, grouped=True``) has level, trend,
sigma per group (G), seasonality and controls per group (G * F, G * K) and,
per pooled media parameter, ``{target}_sd`` (1) and ``{target}_z`` (G * C),
target one of adstock_<i>, saturation_<j>, amplitude.

Each block carries ``dist``, ``params`` (per element), ``const`` (the part of
the log-density that does not depend on the value, per element) and the
unconstrained transform with its bounds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from nutpie.compile_pymc import CompiledPyMCModel

from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS

__all__ = ["FastCompiled", "compile_fast", "problem_arrays", "problem_from_model", "supported"]

log = logging.getLogger("fastmmm")

#: Distributions the Rust log-density implements.
FAST_DISTRIBUTIONS = (
    "Normal",
    "HalfNormal",
    "LogNormal",
    "Gamma",
    "Beta",
    "Exponential",
    "StudentT",
    "HalfStudentT",
    "TruncatedNormal",
    "Uniform",
)

#: PyMC's default transform of each distribution (TruncatedNormal: by its bounds).
_DEFAULT_TRANSFORM = {
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


# ---------------------------------------------------------------------- support
def _core_class():
    from fastmmm import _core

    return getattr(_core, "MmmProblem", None)


def _free_prior_names(spec) -> list[tuple[str, Any]]:
    """(prior name, design or None) of every free parameter, in build_model's order."""
    from fastmmm.model import FIXED_SATURATION_PARAMS, media_designs, uses_direct_beta

    out: list[tuple[str, Any]] = []
    if spec.intercept:
        out.append(("intercept", None))
    if spec.trend:
        out.append(("trend", None))
    if spec.n_fourier:
        out.append(("gamma_fourier", None))
    if spec.controls:
        out.append(("gamma_control", None))
    for d in media_designs(spec):
        out += [(f"adstock_{p}", d) for p in d.adstock_params]
        fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
        out += [(f"saturation_{p}", d) for p in SATURATION_PARAMS[d.saturation] if p not in fixed]
    out.append(("beta" if uses_direct_beta(spec) else "channel_share", None))
    from fastmmm.tvp import parts

    for part in parts(spec):
        out += [(f"tvp_{part}_ls", None), (f"tvp_{part}_eta", None)]
    out.append(("sigma", None))
    if spec.likelihood == "studentt":
        out.append(("nu", None))
    return out


#: nutpie versions the fast path is tested with. It constructs nutpie's
#: ``CompiledPyMCModel`` from raw addresses (an internal interface), so other
#: versions fall back to the PyTensor path with this reason.
TESTED_NUTPIE = ("0.16",)


def nutpie_supported() -> tuple[bool, str]:
    """Whether the installed nutpie is one the fast path is tested with."""
    import nutpie

    version = getattr(nutpie, "__version__", "unknown")
    if not any(version == v or version.startswith(v + ".") for v in TESTED_NUTPIE):
        return False, (
            f"nutpie {version} is not a version the fast path is tested with "
            f"({', '.join(v + '.x' for v in TESTED_NUTPIE)})"
        )
    return True, ""


def supported(spec) -> tuple[bool, str]:
    """Whether the fused Rust log-density covers this spec, and why not.

    Returns
    -------
    (True, "") or (False, reason)
    """
    from fastmmm.model import _prior, media_designs

    if _core_class() is None:
        return False, "fastmmm._core has no MmmProblem (extension built without the fast path)"
    ok, why = nutpie_supported()
    if not ok:
        return False, why
    if getattr(spec, "log_target", False):
        return False, "log_target=True (multiplicative model)"
    designs = media_designs(spec)
    if len(designs) != 1:
        kinds = ", ".join(f"{d.adstock}+{d.saturation}" for d in designs)
        return False, f"several channel groups with different adstock/saturation kinds ({kinds})"
    d = designs[0]
    if d.adstock not in ADSTOCK_PARAMS or d.saturation not in SATURATION_PARAMS:
        return False, f"kernel kinds {d.adstock}/{d.saturation} not in the fused kernel"
    channels = list(spec.channels)
    for name, design in _free_prior_names(spec):
        per_channel = name.startswith(("adstock_", "saturation_")) or name in ("beta", "channel_share")
        try:
            prior = _prior(spec, name, design, channels if per_channel else None)
        except ValueError as e:
            return False, f"prior {name}: {e}"
        if prior.dist not in FAST_DISTRIBUTIONS:
            return False, f"prior {name}: distribution {prior.dist} is not implemented in the fused log-density"
        if prior.dist == "TruncatedNormal":
            kw = prior.kwargs
            if "upper" in kw and "lower" not in kw:
                return False, f"prior {name}: TruncatedNormal with only an upper bound (upper-bound transform)"
    return True, ""


# ---------------------------------------------------------------------- layout
_TVP_NAMES = tuple(f"tvp_{p}_{k}" for p in ("intercept", "media") for k in ("ls", "eta", "z"))


def _role(name: str, adstock: str, saturation: str) -> str:
    if name in ("level", "trend", "gamma_fourier", "gamma_control", "channel_share", "beta", "sigma", "nu"):
        return name
    if name in _TVP_NAMES:
        return name
    if name.startswith("adstock_"):
        p = name[len("adstock_") :]
        if p in ADSTOCK_PARAMS[adstock]:
            return f"adstock_{ADSTOCK_PARAMS[adstock].index(p)}"
    if name.startswith("saturation_"):
        p = name[len("saturation_") :]
        if p in SATURATION_PARAMS[saturation]:
            return f"saturation_{SATURATION_PARAMS[saturation].index(p)}"
    raise ValueError(f"fast path: model variable {name!r} has no role in the fused log-density")


def _dist_of(op) -> str:
    """The distribution name of a random variable's Op."""
    from pymc.distributions.continuous import HalfStudentTRV, TruncatedNormalRV
    from pytensor.tensor.random import basic as rb

    table = [
        (TruncatedNormalRV, "TruncatedNormal"),
        (HalfStudentTRV, "HalfStudentT"),
        (rb.HalfNormalRV, "HalfNormal"),
        (rb.LogNormalRV, "LogNormal"),
        (rb.GammaRV, "Gamma"),
        (rb.BetaRV, "Beta"),
        (rb.ExponentialRV, "Exponential"),
        (rb.StudentTRV, "StudentT"),
        (rb.UniformRV, "Uniform"),
        (rb.NormalRV, "Normal"),
    ]
    for cls, name in table:
        if type(op) is cls:
            return name
    raise ValueError(f"fast path: distribution {type(op).__name__} is not implemented in the fused log-density")


def _params(dist: str, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The contract's parameters from the Op's distribution parameters."""
    if dist == "Normal":
        return {"mu": raw[0], "sigma": raw[1]}
    if dist == "HalfNormal":
        if np.any(raw[0] != 0):
            raise ValueError("fast path: HalfNormal with a non-zero location")
        return {"sigma": raw[1]}
    if dist == "LogNormal":
        return {"mu": raw[0], "sigma": raw[1]}
    if dist == "Gamma":  # pytensor's gamma takes (shape, scale)
        return {"alpha": raw[0], "beta": 1.0 / raw[1]}
    if dist == "Beta":
        return {"alpha": raw[0], "beta": raw[1]}
    if dist == "Exponential":  # (scale,)
        return {"lam": 1.0 / raw[0]}
    if dist == "StudentT":
        return {"nu": raw[0], "mu": raw[1], "sigma": raw[2]}
    if dist == "HalfStudentT":
        return {"nu": raw[0], "sigma": raw[1]}
    if dist == "TruncatedNormal":
        return {"mu": raw[0], "sigma": raw[1], "lower": raw[2], "upper": raw[3]}
    if dist == "Uniform":
        return {"lower": raw[0], "upper": raw[1]}
    raise ValueError(dist)


def _log_diff_ndtr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails."""
    from scipy.special import log_ndtr

    flip = a > 0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    lhi, llo = log_ndtr(hi), log_ndtr(lo)
    with np.errstate(divide="ignore"):
        return lhi + np.log1p(-np.exp(llo - lhi))


def prior_const(dist: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """The value-independent part of each element's log-density (what the Rust kernel leaves out).

    ``const + kernel(value)`` is PyMC's ``logp`` of the distribution, with the
    Rust kernels ``Normal -z^2/2``, ``HalfNormal -(v/s)^2/2``, ``LogNormal
    -ln v - z^2/2``, ``Gamma (a-1) ln v - b v``, ``Beta (a-1) ln v + (b-1)
    ln(1-v)``, ``Exponential -lam v``, ``StudentT / HalfStudentT -(nu+1)/2
    ln(1 + z^2/nu)``, ``TruncatedNormal -z^2/2``, ``Uniform 0``.
    """
    from scipy.special import betaln, gammaln

    if dist in ("Normal", "LogNormal"):
        return -np.log(p["sigma"]) - 0.5 * _LOG_2PI
    if dist == "HalfNormal":
        return -np.log(p["sigma"]) - 0.5 * _LOG_2PI + math.log(2.0)
    if dist == "Gamma":
        return p["alpha"] * np.log(p["beta"]) - gammaln(p["alpha"])
    if dist == "Beta":
        return -betaln(p["alpha"], p["beta"])
    if dist == "Exponential":
        return np.log(p["lam"])
    if dist in ("StudentT", "HalfStudentT"):
        nu = p["nu"]
        c = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi) - np.log(p["sigma"])
        return c + math.log(2.0) if dist == "HalfStudentT" else c
    if dist == "TruncatedNormal":
        s = p["sigma"]
        a = (p["lower"] - p["mu"]) / s
        b = (p["upper"] - p["mu"]) / s
        return -np.log(s) - 0.5 * _LOG_2PI - _log_diff_ndtr(a, b)
    if dist == "Uniform":
        return -np.log(p["upper"] - p["lower"])
    raise ValueError(dist)


def _transform_kind(transform) -> str:
    from pymc.logprob.transforms import IntervalTransform, LogOddsTransform, LogTransform

    if transform is None:
        return "identity"
    if type(transform) is LogTransform:
        return "log"
    if type(transform) is LogOddsTransform:
        return "logodds"
    if isinstance(transform, IntervalTransform):
        return "interval"
    raise ValueError(f"fast path: transform {type(transform).__name__} is not implemented")


def _model_layout(model) -> list[dict]:
    """Per free RV (in model.free_RVs order): name, dist, params, shape, transform and bounds.

    All values come from one FAST_COMPILE pytensor function over the model graph.
    """
    import pytensor

    outputs, plan = [], []
    for rv in model.free_RVs:
        node = rv.owner
        dist = _dist_of(node.op)
        raw = list(node.op.dist_params(node))
        tr = model.rvs_to_transforms.get(rv)
        kind = _transform_kind(tr)
        bounds: tuple = (None, None)
        if kind == "interval":
            bounds = tr.args_fn(*node.inputs)
        n_raw = len(raw)
        outs = [rv.shape, *raw, *[b for b in bounds if b is not None]]
        plan.append((rv, dist, kind, n_raw, [b is not None for b in bounds], len(outputs), len(outs)))
        outputs += outs
    values = pytensor.function([], outputs, mode="FAST_COMPILE", on_unused_input="ignore")() if outputs else []
    layout = []
    for rv, dist, kind, n_raw, has_bound, start, n in plan:
        vals = values[start : start + n]
        shape = tuple(int(s) for s in vals[0])
        size = int(np.prod(shape, dtype=int))
        raw = [np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(size) for v in vals[1 : 1 + n_raw]]
        rest = [np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(size) for v in vals[1 + n_raw :]]
        lower = rest.pop(0) if has_bound[0] else None
        upper = rest.pop(0) if has_bound[1] else None
        if kind == "interval":
            if lower is not None and upper is not None:
                kind = "interval"
            elif lower is not None:
                kind = "lowerbound"
            elif upper is not None:
                raise ValueError(f"fast path: {rv.name}: upper-bound-only transform is not implemented")
            else:
                kind = "identity"
        layout.append(
            {
                "name": rv.name,
                "value_name": model.rvs_to_values[rv].name,
                "dist": dist,
                "params": _params(dist, raw),
                "shape": shape,
                "size": size,
                "transform": kind,
                "lower": lower,
                "upper": upper,
            }
        )
    return layout


def _check_transform(entry: dict) -> None:
    dist, kind = entry["dist"], entry["transform"]
    if dist == "TruncatedNormal":
        p = entry["params"]
        lo_fin, hi_fin = np.all(np.isfinite(p["lower"])), np.all(np.isfinite(p["upper"]))
        want = {(True, True): "interval", (True, False): "lowerbound", (False, False): "identity"}.get(
            (bool(lo_fin), bool(hi_fin))
        )
    else:
        want = _DEFAULT_TRANSFORM[dist]
    if kind != want:
        raise ValueError(
            f"fast path: {entry['name']} ({dist}) has transform {kind!r}; the fused log-density expects {want!r}"
        )
    if kind in ("interval", "lowerbound"):
        p = entry["params"]
        if not np.array_equal(entry["lower"], p["lower"]) or (
            kind == "interval" and not np.array_equal(entry["upper"], p["upper"])
        ):
            raise ValueError(f"fast path: {entry['name']}: transform bounds differ from the prior's bounds")


def problem_arrays(data, spec) -> dict[str, np.ndarray]:
    """The data arrays of an ``MmmProblem`` (the keyword arguments of ``with_data``)."""
    from fastmmm.model import kappa_scale

    spend = np.ascontiguousarray(data.spend_scaled, dtype=np.float64)
    T = spend.shape[0]
    trend = np.asarray(data.trend, dtype=np.float64) if data.trend is not None else np.zeros(T)
    out = {
        "y": np.ascontiguousarray(data.y_scaled, dtype=np.float64),
        "spend": spend,
        "trend_t": np.ascontiguousarray(trend),
        "fourier": np.ascontiguousarray(np.asarray(data.fourier, dtype=np.float64).reshape(T, -1)),
        "controls": np.ascontiguousarray(np.asarray(data.controls_scaled, dtype=np.float64).reshape(T, -1)),
        "kappa_scale": np.ascontiguousarray(kappa_scale(spend)),
    }
    # Time-varying parts: the HSGP basis of the training dates (fastmmm.tvp, as the PyMC model has it).
    from fastmmm.tvp import hsgp_data, parts

    if parts(spec):
        h = hsgp_data(data)
        for part in parts(spec):
            phi = np.ascontiguousarray(h[f"hsgp_phi_{part}"], dtype=np.float64)
            out[f"tvp_{part}_phi"] = phi
            out[f"tvp_{part}_omega"] = np.ascontiguousarray(h[f"hsgp_omega_{part}"], dtype=np.float64)
            out[f"tvp_{part}_col_ms"] = np.ascontiguousarray(np.mean(np.square(phi), axis=0))
    return out


def lift_arrays(lift, data, spec) -> dict:
    """The lift-test keyword arguments of ``MmmProblem`` (empty without lift tests).

    Same contract as :func:`fastmmm.lift.add_lift_likelihood`: per test the
    channel index, the scaled per-period spends, the length in periods and the
    scaled lift and standard error; ``lift_steady`` constant periods reach the
    steady state.
    """
    if lift is None or not len(lift):
        return {}
    from fastmmm.lift import _steady_len, lift_data
    from fastmmm.model import media_designs

    a = lift_data(lift, data)
    channels = list(spec.channels)
    idx = np.array([channels.index(c) for c in lift.channel], dtype=np.int64)
    rows = np.arange(len(idx))
    return {
        "lift_channel": [int(i) for i in idx],
        "lift_x0": np.ascontiguousarray(a["lift_x0"][rows, idx]),
        "lift_x1": np.ascontiguousarray(a["lift_x1"][rows, idx]),
        "lift_periods": np.ascontiguousarray(a["lift_periods"], dtype=np.float64),
        "lift_delta": np.ascontiguousarray(a["lift_delta"], dtype=np.float64),
        "lift_se": np.ascontiguousarray(a["lift_se"], dtype=np.float64),
        "lift_steady": int(_steady_len(media_designs(spec)[0])),
    }


def problem_structure(model, spec, role=None) -> tuple[dict, list[dict]]:
    """The structural keyword arguments of ``MmmProblem`` and the model layout they came from.

    ``role(name, adstock, saturation)`` maps a free variable to its block role
    (default: the single-model roles).
    """
    from fastmmm.model import FIXED_SATURATION_PARAMS, media_designs, uses_direct_beta

    designs = media_designs(spec)
    if len(designs) != 1:
        raise ValueError("fast path: one channel group (one adstock and one saturation kind) only")
    d = designs[0]
    sat_names = SATURATION_PARAMS[d.saturation]
    fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
    layout = _model_layout(model)
    blocks = []
    for e in layout:
        _check_transform(e)
        params = {k: [float(x) for x in v] for k, v in e["params"].items()}
        const = prior_const(e["dist"], e["params"])
        const = np.broadcast_to(const, (e["size"],))
        if not np.all(np.isfinite(const)):
            raise ValueError(f"fast path: {e['name']}: prior constant is not finite")
        blocks.append(
            {
                "role": (role or _role)(e["name"], d.adstock, d.saturation),
                "size": e["size"],
                "dist": e["dist"],
                "params": params,
                "const": [float(x) for x in const],
                "transform": e["transform"],
                "lower": None if e["lower"] is None or e["transform"] not in ("interval", "lowerbound")
                else [float(x) for x in e["lower"]],
                "upper": None if e["upper"] is None or e["transform"] != "interval" else [float(x) for x in e["upper"]],
            }
        )
    rel = d.relative_param
    structure = {
        "adstock": d.adstock,
        "l_max": int(d.l_max) if d.l_max is not None else 0,
        "normalize": bool(d.normalize),
        "saturation": d.saturation,
        "intercept": bool(spec.intercept),
        "trend": bool(spec.trend),
        "likelihood": spec.likelihood,
        "direct_beta": bool(uses_direct_beta(spec)),
        "relative_param": sat_names.index(rel) if rel else -1,
        "fixed_saturation": [(sat_names.index(p), float(v)) for p, v in fixed.items()],
        "blocks": blocks,
    }
    return structure, layout


def problem_from_model(model, data, spec, problem_cls=None, lift=None):
    """The ``MmmProblem`` of a model built by :func:`fastmmm.model.build_model` for ``data`` and ``spec``.

    Parameters
    ----------
    model : pm.Model
    data : fastmmm.data.PreparedData
    spec : fastmmm.spec.ModelSpec
    problem_cls : class, optional
        The implementation (default ``fastmmm._core.MmmProblem``).
    """
    cls = problem_cls or _core_class()
    if cls is None:
        raise RuntimeError("fastmmm._core has no MmmProblem (extension built without the fast path)")
    structure, _ = problem_structure(model, spec)
    return cls(**problem_arrays(data, spec), **structure, **lift_arrays(lift, data, spec))


# ---------------------------------------------------------------------- nutpie model
class _Address:
    """Stands in for nutpie's ``user_data`` array: ``.ctypes.data`` is the problem's user-data pointer."""

    __slots__ = ("_owner", "ctypes")

    class _Ptr:
        __slots__ = ("data",)

        def __init__(self, data: int):
            self.data = data

    def __init__(self, address: int, owner: Any):
        self.ctypes = self._Ptr(int(address))
        self._owner = owner  # keeps the problem alive

    def copy(self):
        return self


class _CFunc:
    """An object with the ``.address`` nutpie reads from numba's cfunc."""

    __slots__ = ("_owner", "address")

    def __init__(self, address: int, owner: Any):
        self.address = int(address)
        self._owner = owner


@dataclass(frozen=True)
class FastCompiled(CompiledPyMCModel):
    """A nutpie model whose log-density is a ``fastmmm._core.MmmProblem`` (nothing compiled).

    The problem object is held here (and by the address wrappers), so it lives as
    long as nutpie holds this model.
    """

    problem: Any = None
    data_arrays: Any = None

    def with_data(self, **updates):
        """The same model on new data: any of ``y``, ``spend``, ``trend_t``, ``fourier``,
        ``controls``, ``kappa_scale`` (see :func:`problem_arrays`) and, for a model with
        lift tests, the same number of new ones (``lift_*``, see :func:`lift_arrays`);
        the others are kept."""
        updates = {k: v for k, v in updates.items() if k != "lift_steady"}
        unknown = set(updates) - set(self.data_arrays)
        if unknown:
            raise KeyError(f"unknown data array(s) {sorted(unknown)}; known: {sorted(self.data_arrays)}")
        arrays = dict(self.data_arrays)
        for k, v in updates.items():
            if k == "lift_channel":
                v = [int(i) for i in v]
                if len(v) != len(arrays[k]):
                    raise ValueError("with_data: the number of lift tests is part of the model; build a new one")
                arrays[k] = v
                continue
            v = np.ascontiguousarray(v, dtype=np.float64)
            if v.ndim != arrays[k].ndim:
                raise ValueError(f"{k}: must have rank {arrays[k].ndim}, got {v.ndim}")
            arrays[k] = v
        problem = self.problem.with_data(**arrays)
        if int(problem.n_expanded) != self.n_expanded:
            raise ValueError(
                "with_data: the new data change the trace's shapes (number of periods or channels); "
                "build a new model instead"
            )
        return dataclasses.replace(self, data_arrays=arrays, **_addresses(problem))


def _addresses(problem) -> dict:
    return {
        "problem": problem,
        "compiled_logp_func": _CFunc(problem.logp_address, problem),
        "compiled_expand_func": _CFunc(problem.expand_address, problem),
        "user_data": _Address(problem.user_data_address, problem),
    }


def _expand_layout(layout: list[dict], data, spec, n_lift: int = 0) -> tuple[list[str], list[slice], list[tuple]]:
    """nutpie's shape_info for the Rust expand output: blocks, then the deterministics."""
    from fastmmm.model import uses_direct_beta

    T, C = np.asarray(data.spend_scaled).shape
    names = [e["name"] for e in layout]
    shapes = [tuple(e["shape"]) for e in layout]
    if not uses_direct_beta(spec):
        names.append("beta")
        shapes.append((C,))
    names.append("channel_contribution")
    shapes.append((T, C))
    if getattr(spec, "time_varying_media", False):
        names.append("media_multiplier")
        shapes.append((T,))
    if spec.intercept:
        names.append("intercept")
        shapes.append(())
    if getattr(spec, "time_varying_intercept", False):
        names.append("intercept_tv")
        shapes.append((T,))
    names.append("mu")
    shapes.append((T,))
    if n_lift:
        names.append("lift_model")
        shapes.append((n_lift,))
    slices, count = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=int))
        slices.append(slice(count, count + n))
        count += n
    return names, slices, shapes


def compile_fast(spec, data, *, model=None, problem_cls=None, lift=None):
    """A nutpie model for ``spec`` on ``data`` whose log-density is the fused Rust one.

    Builds the PyMC model (unless given) only to read the layout, the priors
    and the initial point. Raises ValueError when the spec is outside the
    fast path (see :func:`supported`).
    """
    from fastmmm.model import build_model

    if model is None:
        model = build_model(data, spec)
    cls = problem_cls or _core_class()
    if cls is None:
        raise RuntimeError("fastmmm._core has no MmmProblem (extension built without the fast path)")
    structure, layout = problem_structure(model, spec)
    arrays = problem_arrays(data, spec)
    larr = lift_arrays(lift, data, spec)
    problem = cls(**arrays, **structure, **larr)
    names, slices, shapes = _expand_layout(layout, data, spec, n_lift=0 if lift is None else len(lift))
    larr.pop("lift_steady", None)
    return fast_compiled(model, problem, layout, (names, slices, shapes), {**arrays, **larr})


def fast_compiled(model, problem, layout, shape_info, arrays, rust_names=None):
    """nutpie's model object from a built ``MmmProblem`` and the PyMC model it mirrors.

    ``shape_info`` is ``(names, slices, shapes)`` of the expanded trace: the
    free variables of ``layout``, then the deterministics the problem expands
    to (checked against ``problem.deterministics``, whose Rust names are
    ``rust_names`` when they differ from the model's).
    """
    from nutpie.compile_pymc import (
        _prepare_dims_and_coords,
        _rv_dict_to_flat_array_wrapper,
        _wrap_with_lock,
    )
    from pymc.initial_point import make_initial_point_fn

    names, slices, shapes = shape_info
    n_dim = int(problem.n_dim)
    if n_dim != sum(e["size"] for e in layout):
        raise RuntimeError(f"fast path: MmmProblem.n_dim = {n_dim}, the model has {sum(e['size'] for e in layout)}")
    n_expanded = slices[-1].stop
    det = [(str(nm), tuple(int(x) for x in sh)) for nm, sh in problem.deterministics]
    det_names = rust_names if rust_names is not None else names[len(layout) :]
    want = [(nm, tuple(sh)) for nm, sh in zip(det_names, shapes[len(layout) :])]
    if det != want or int(problem.n_expanded) != n_expanded:
        raise RuntimeError(f"fast path: MmmProblem expands to {det} ({problem.n_expanded}), the model needs {want}")

    # The unconstrained initial point: PyMC's support points, jittered, as nutpie does by default.
    ip = make_initial_point_fn(
        model=model,
        jitter_rvs=set(model.free_RVs),
        default_strategy="support_point",
        return_transformed=True,
    )
    value_names = [e["value_name"] for e in layout]
    value_shapes = [tuple(e["shape"]) for e in layout]
    initial_point_func = _rv_dict_to_flat_array_wrapper(_wrap_with_lock(ip), names=value_names, shapes=value_shapes)
    v_slices, c = [], 0
    for s in value_shapes:
        n = int(np.prod(s, dtype=int))
        v_slices.append(slice(c, c + n))
        c += n
    dims, coords = _prepare_dims_and_coords(model, (value_names, v_slices, value_shapes))

    return FastCompiled(
        dims=dims,
        _n_dim=n_dim,
        _coords=coords,
        _shapes={n: tuple(s) for n, s in zip(names, shapes)},
        initial_point_func=initial_point_func,
        shared_data={},
        n_expanded=n_expanded,
        shape_info=(names, slices, shapes),
        logp_func=None,
        expand_func=None,
        data_arrays=arrays,
        **_addresses(problem),
    )
