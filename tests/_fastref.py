"""A pure-numpy implementation of the ``fastmmm._core.MmmProblem`` contract.

It is the written-out specification of what the fused Rust log-density
computes (same constructor, same methods, same C-callable addresses through
ctypes), used by the tests as a second oracle next to PyMC: the block layout
and constants produced by :func:`fastmmm.fastpath.problem_from_model` must make
this reference equal PyMC's log-density, and the Rust class must equal both.

Slow (Python callbacks under the GIL); never used outside tests.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
from scipy.special import digamma, expit, gammaln

from fastmmm import kernels as K

_LOGP_SIG = ctypes.CFUNCTYPE(
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_void_p,
)
_EXPAND_SIG = ctypes.CFUNCTYPE(
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.c_uint64,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_void_p,
)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _transform(kind, u, lo, hi):
    """Constrained value, log-Jacobian, d value / du, d logjac / du."""
    if kind == "identity":
        return u, np.zeros_like(u), np.ones_like(u), np.zeros_like(u)
    if kind == "log":
        v = np.exp(u)
        return v, u.copy(), v, np.ones_like(u)
    if kind == "lowerbound":
        e = np.exp(u)
        return e + lo, u.copy(), e, np.ones_like(u)
    if kind == "logodds":
        s = expit(u)
        return s, -_softplus(-u) - _softplus(u), s * (1 - s), 1 - 2 * s
    if kind == "interval":
        s = expit(u)
        v = s * hi + (1 - s) * lo
        return v, np.log(hi - lo) - 2 * _softplus(-u) - u, (hi - lo) * s * (1 - s), 1 - 2 * s
    raise ValueError(kind)


def _kernel(dist, v, p):
    """Non-constant part of the prior log-density and its derivative in the value."""
    if dist in ("Normal", "TruncatedNormal"):
        z = (v - p["mu"]) / p["sigma"]
        return -0.5 * z * z, -z / p["sigma"]
    if dist == "HalfNormal":
        z = v / p["sigma"]
        return -0.5 * z * z, -z / p["sigma"]
    if dist == "LogNormal":
        lv = np.log(v)
        z = (lv - p["mu"]) / p["sigma"]
        return -lv - 0.5 * z * z, -1 / v - z / (p["sigma"] * v)
    if dist == "Gamma":
        a, b = p["alpha"], p["beta"]
        return (a - 1) * np.log(v) - b * v, (a - 1) / v - b
    if dist == "Beta":
        a, b = p["alpha"], p["beta"]
        return (a - 1) * np.log(v) + (b - 1) * np.log1p(-v), (a - 1) / v - (b - 1) / (1 - v)
    if dist == "Exponential":
        return -p["lam"] * v, -p["lam"] * np.ones_like(v)
    if dist in ("StudentT", "HalfStudentT"):
        nu, s = p["nu"], p["sigma"]
        z = (v - p.get("mu", 0.0)) / s
        return -(nu + 1) / 2 * np.log1p(z * z / nu), -(nu + 1) * z / (s * (nu + z * z))
    if dist == "Uniform":
        return np.zeros_like(v), np.zeros_like(v)
    raise ValueError(dist)


class RefProblem:
    """Same constructor and methods as ``fastmmm._core.MmmProblem`` (national, no lift tests)."""

    def __init__(self, structure, data, blocks):
        self._setup(**data, **structure, blocks=blocks)

    def _setup(
        self,
        y,
        spend,
        trend_t,
        fourier,
        controls,
        kappa_scale,
        *,
        adstock,
        l_max,
        normalize,
        saturation,
        intercept,
        trend,
        likelihood,
        direct_beta,
        relative_param,
        fixed_saturation,
        blocks,
        roas_scale=None,
    ):
        # The amplitude block: channel_share (relative to the mean target), roas (relative to
        # roas_scale) or beta (direct).
        roles = {b["role"] for b in blocks}
        self._amp = "beta" if direct_beta else ("roas" if "roas" in roles else "channel_share")
        self.roas_scale = None if roas_scale is None else np.asarray(roas_scale, float)
        self._structure = {
            "adstock": adstock,
            "l_max": l_max,
            "normalize": normalize,
            "saturation": saturation,
            "intercept": intercept,
            "trend": trend,
            "likelihood": likelihood,
            "direct_beta": direct_beta,
            "relative_param": relative_param,
            "fixed_saturation": list(fixed_saturation),
            "blocks": blocks,
        }
        self.y = np.asarray(y, float)
        self.spend = np.asarray(spend, float)
        self.trend_t = np.asarray(trend_t, float)
        self.fourier = np.asarray(fourier, float)
        self.controls = np.asarray(controls, float)
        self.kappa_scale = np.asarray(kappa_scale, float)
        for k, v in self._structure.items():
            setattr(self, "_" + k, v)
        self.blocks = [
            dict(
                b,
                params={k: np.asarray(v, float) for k, v in b["params"].items()},
                const=np.asarray(b["const"], float),
                lower=None if b.get("lower") is None else np.asarray(b["lower"], float),
                upper=None if b.get("upper") is None else np.asarray(b["upper"], float),
            )
            for b in blocks
        ]
        self.n_dim = int(sum(b["size"] for b in blocks))
        T, C = self.spend.shape
        names = [b["role"] for b in blocks]
        shapes = [(b["size"],) for b in blocks]
        if not direct_beta:
            names.append("beta")
            shapes.append((C,))
        names.append("channel_contribution")
        shapes.append((T, C))
        if intercept:
            names.append("intercept")
            shapes.append(())
        names.append("mu")
        shapes.append((T,))
        self.deterministics = [(nm, list(sh)) for nm, sh in zip(names[len(blocks) :], shapes[len(blocks) :])]
        self.n_expanded = int(sum(int(np.prod(s)) for s in shapes))
        self._make_c()

    # ------------------------------------------------------------------ contract
    def with_data(self, data):
        return self._with_data(**data)

    def _with_data(
        self,
        *,
        y=None,
        spend=None,
        trend_t=None,
        fourier=None,
        controls=None,
        kappa_scale=None,
        roas_scale=None,
    ):
        cur = {
            "y": self.y,
            "spend": self.spend,
            "trend_t": self.trend_t,
            "fourier": self.fourier,
            "controls": self.controls,
            "kappa_scale": self.kappa_scale,
        }
        new = {
            "y": y,
            "spend": spend,
            "trend_t": trend_t,
            "fourier": fourier,
            "controls": controls,
            "kappa_scale": kappa_scale,
        }
        args = {k: (cur[k] if v is None else v) for k, v in new.items()}
        rs = self.roas_scale if roas_scale is None else roas_scale
        structure = {k: v for k, v in self._structure.items() if k != "blocks"}
        return RefProblem(structure, {**args, "roas_scale": rs}, self._structure["blocks"])

    def _unpack(self, x):
        x = np.asarray(x, float)
        assert x.shape == (self.n_dim,)
        out, i = {}, 0
        for b in self.blocks:
            u = x[i : i + b["size"]]
            v, lj, dv, dlj = _transform(b["transform"], u, b["lower"], b["upper"])
            out[b["role"]] = {
                "block": b,
                "sl": slice(i, i + b["size"]),
                "v": v,
                "lj": lj,
                "dv": dv,
                "dlj": dlj,
            }
            i += b["size"]
        return out

    def _media(self, vals):
        _T, C = self.spend.shape
        a_params = tuple(vals[f"adstock_{i}"]["v"] for i in range(len(K.ADSTOCK_PARAMS[self._adstock])))
        fixed = dict(self._fixed_saturation)
        s_params = []
        for j in range(len(K.SATURATION_PARAMS[self._saturation])):
            if j in fixed:
                s_params.append(np.full(C, float(fixed[j])))
            else:
                v = vals[f"saturation_{j}"]["v"]
                s_params.append(v * self.kappa_scale if j == self._relative_param else v)
        lm = None if self._l_max == 0 else self._l_max
        sat, cache = K.media_transform(
            self.spend,
            self._adstock,
            self._saturation,
            a_params,
            tuple(s_params),
            l_max=lm,
            normalize=self._normalize,
        )
        return a_params, tuple(s_params), sat, cache

    def _forward(self, x):
        vals = self._unpack(x)
        T, _C = self.spend.shape
        a_params, s_params, sat, cache = self._media(vals)
        ybar = self.y.mean() if self._amp == "channel_share" else self.roas_scale
        msat = sat.mean(axis=0)
        if self._direct_beta:
            beta = vals["beta"]["v"]
        else:
            beta = vals[self._amp]["v"] * ybar / msat
        contrib = sat * beta
        media = contrib.sum(axis=1)
        centre = self._intercept
        mu = np.zeros(T)
        offset = 0.0
        if self._intercept:
            mu = mu + vals["level"]["v"][0]
        if self._trend:
            mu = mu + vals["trend"]["v"][0] * self.trend_t
            if centre:
                offset += vals["trend"]["v"][0] * self.trend_t.mean()
        if "gamma_fourier" in vals:
            mu = mu + self.fourier @ vals["gamma_fourier"]["v"]
        if "gamma_control" in vals:
            mu = mu + self.controls @ vals["gamma_control"]["v"]
        if centre:
            offset += media.mean()
        mu = mu + media - offset
        return {
            "vals": vals,
            "a": a_params,
            "s": s_params,
            "sat": sat,
            "cache": cache,
            "msat": msat,
            "beta": beta,
            "contrib": contrib,
            "mu": mu,
            "offset": offset,
            "ybar": ybar,
        }

    def logp_dlogp(self, x):
        f = self._forward(x)
        vals = f["vals"]
        T, _C = self.spend.shape
        grad = np.zeros(self.n_dim)
        g_v = {k: np.zeros_like(v["v"]) for k, v in vals.items()}  # d logp / d constrained value
        # likelihood
        sigma = vals["sigma"]["v"][0]
        r = (self.y - f["mu"]) / sigma
        if self._likelihood == "normal":
            logp = np.sum(-0.5 * r * r - np.log(sigma) - 0.5 * np.log(2 * np.pi))
            g_mu = r / sigma
            g_v["sigma"][0] += np.sum(r * r - 1) / sigma
        else:
            nu = vals["nu"]["v"][0]
            logp = np.sum(
                gammaln((nu + 1) / 2)
                - gammaln(nu / 2)
                - 0.5 * np.log(nu * np.pi)
                - np.log(sigma)
                - (nu + 1) / 2 * np.log1p(r * r / nu)
            )
            w = (nu + 1) / (nu + r * r)
            g_mu = w * r / sigma
            g_v["sigma"][0] += np.sum(w * r * r - 1) / sigma
            g_v["nu"][0] += np.sum(
                0.5 * digamma((nu + 1) / 2)
                - 0.5 * digamma(nu / 2)
                - 0.5 / nu
                - 0.5 * np.log1p(r * r / nu)
                + (nu + 1) * r * r / (2 * nu * (nu + r * r))
            )
        centre = self._intercept
        if self._intercept:
            g_v["level"][0] += g_mu.sum()
        if self._trend:
            t = self.trend_t - (self.trend_t.mean() if centre else 0.0)
            g_v["trend"][0] += g_mu @ t
        if "gamma_fourier" in vals:
            g_v["gamma_fourier"] += self.fourier.T @ g_mu
        if "gamma_control" in vals:
            g_v["gamma_control"] += self.controls.T @ g_mu
        g_media = g_mu - (g_mu.mean() if centre else 0.0)
        g_beta = g_media @ f["sat"]
        g_sat = np.outer(g_media, f["beta"])
        if self._direct_beta:
            g_v["beta"] += g_beta
        else:
            g_v[self._amp] += g_beta * f["ybar"] / f["msat"]
            g_msat = -g_beta * f["beta"] / f["msat"]
            g_sat = g_sat + g_msat[None, :] / T
        lm = None if self._l_max == 0 else self._l_max
        _, ga, gs = K.media_transform_vjp(
            self.spend,
            g_sat,
            f["cache"],
            self._adstock,
            self._saturation,
            f["a"],
            f["s"],
            l_max=lm,
            normalize=self._normalize,
        )
        for i, g in enumerate(ga):
            g_v[f"adstock_{i}"] += g
        for j, g in enumerate(gs):
            key = f"saturation_{j}"
            if key in g_v:
                g_v[key] += g * self.kappa_scale if j == self._relative_param else g
        # priors and Jacobians
        for role, e in vals.items():
            b = e["block"]
            k, dk = _kernel(b["dist"], e["v"], b["params"])
            logp += np.sum(b["const"] + k + e["lj"])
            grad[e["sl"]] = (g_v[role] + dk) * e["dv"] + e["dlj"]
        return float(logp), grad

    def expand(self, x):
        f = self._forward(x)
        parts = [f["vals"][b["role"]]["v"] for b in self.blocks]
        if not self._direct_beta:
            parts.append(f["beta"])
        parts.append(f["contrib"].ravel())
        if self._intercept:
            parts.append(np.atleast_1d(f["vals"]["level"]["v"][0] - f["offset"]))
        parts.append(f["mu"])
        return np.concatenate(parts)

    # ------------------------------------------------------------------ C entry points (ctypes)
    def _make_c(self):
        n, ne = self.n_dim, self.n_expanded

        def logp(dim, x, g, lp, _ud):
            try:
                if dim != n:
                    return -1
                xv = np.ctypeslib.as_array(x, (n,)).copy()
                val, grad = self.logp_dlogp(xv)
                if not np.isfinite(val):
                    return 4
                if not np.all(np.isfinite(grad)):
                    return 3
                np.ctypeslib.as_array(g, (n,))[:] = grad
                lp[0] = val
                return 0
            except Exception:  # noqa: BLE001
                return 1

        def expand(dim, n_exp, x, out, _ud):
            try:
                if dim != n or n_exp != ne:
                    return -1
                np.ctypeslib.as_array(out, (ne,))[:] = self.expand(np.ctypeslib.as_array(x, (n,)).copy())
                return 0
            except Exception:  # noqa: BLE001
                return -2

        self._c_logp = _LOGP_SIG(logp)
        self._c_expand = _EXPAND_SIG(expand)
        self._anchor = ctypes.c_double(0.0)
        self.logp_address = ctypes.cast(self._c_logp, ctypes.c_void_p).value
        self.expand_address = ctypes.cast(self._c_expand, ctypes.c_void_p).value
        self.user_data_address = ctypes.addressof(self._anchor)


def pymc_logp_dlogp(model):
    """PyMC's log-density and gradient as functions of the flat unconstrained vector
    (free_RVs order, each value variable raveled: nutpie's layout)."""
    import pytensor
    import pytensor.tensor as pt

    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    # The terms are outputs of their own, summed in numpy: FAST_COMPILE evaluates an n-ary Add
    # with a numpy ufunc, which takes at most 32 operands (a panel with time-varying parts has
    # more terms than that).
    terms = [pt.sum(t) for t in model.logp(sum=False)]
    grads = pytensor.grad(pt.add(*terms), value_vars)
    f0 = pytensor.function(value_vars, [*terms, *grads], mode="FAST_COMPILE")
    n_terms = len(terms)

    def f(*args):
        out = f0(*args)
        return [math.fsum(float(v) for v in out[:n_terms]), *out[n_terms:]]

    point = model.initial_point()
    shapes = [point[v.name].shape for v in value_vars]
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])

    def call(x):
        args, i = [], 0
        for s in shapes:
            n = int(np.prod(s, dtype=int))
            args.append(x[i : i + n].reshape(s))
            i += n
        out = f(*args)
        return float(out[0]), np.concatenate([np.ravel(g) for g in out[1:]])

    return call, x0


def check_problem_against_pymc(
    model, problem, expand_layout=None, n_points=4, spread=0.7, seed=0, skip_nonfinite=False
):
    """A fused Rust ``MmmProblem`` against the PyMC model it mirrors, at random unconstrained points.

    Gradients agree to 1e-9 (relative, scaled by the largest component), log-densities to
    1e-9 in their differences between points (PyMC keeps some prior constants in float32,
    so absolute values agree to ~1e-8 per dimension). With ``expand_layout`` = (names,
    slices, shapes) of the expanded trace, every deterministic after the free variables
    equals PyMC's at a random point. ``skip_nonfinite``: resample points where PyMC's own
    log-density is not finite (far-out pooled offsets can make Weibull PDF weights 0/0).
    """
    import pytensor

    pymc, x0 = pymc_logp_dlogp(model)
    assert problem.n_dim == x0.size
    rng = np.random.default_rng(seed)
    lps, tries = [], 0
    while len(lps) < n_points:
        x = x0 + (0.0 if not lps else rng.normal(0.0, spread, x0.size))
        lp_p, g_p = pymc(x)
        tries += 1
        assert tries <= 5 * n_points, "PyMC's log-density is not finite at most random points"
        finite = np.isfinite(lp_p) and np.all(np.isfinite(g_p))
        if lps and skip_nonfinite and not finite:
            continue
        assert finite
        i = len(lps)
        lp_r, g_r = problem.logp_dlogp(x)
        scale = max(1.0, float(np.max(np.abs(g_p))))
        np.testing.assert_allclose(g_r, g_p, rtol=1e-9, atol=1e-9 * scale, err_msg=f"gradient, point {i}")
        np.testing.assert_allclose(lp_r, lp_p, rtol=1e-9, atol=1e-6 * x0.size, err_msg=f"logp, point {i}")
        lps.append((lp_r, lp_p))
    r0, p0 = lps[0]
    for i, (r, p) in enumerate(lps[1:], 1):
        assert abs((r - r0) - (p - p0)) <= 1e-9 * max(abs(p), abs(p0), 1.0), (i, r - r0, p - p0)
    if expand_layout is None:
        return
    if hasattr(expand_layout, "variables"):  # a fastmmm.layout.ModelLayout
        names, slices, shapes, count = [], [], [], 0
        for name, _, shape in expand_layout.variables():
            n = int(np.prod(shape, dtype=int))
            names.append(name)
            slices.append(slice(count, count + n))
            shapes.append(tuple(shape))
            count += n
    else:
        names, slices, shapes = expand_layout
    n_free = len(model.free_RVs)
    x = x0 + rng.normal(0.0, 0.5, x0.size)
    out = problem.expand(x)
    ip = model.initial_point()
    point, i = {}, 0
    for rv in model.free_RVs:
        v = model.rvs_to_values[rv]
        shape = ip[v.name].shape
        n = int(np.prod(shape, dtype=int))
        point[v] = x[i : i + n].reshape(shape)
        i += n
    dets = model.replace_rvs_by_values([model[n] for n in names[n_free:]])
    fn = pytensor.function(list(point), dets, mode="FAST_COMPILE", on_unused_input="ignore")
    for name, sl, shape, want in zip(names[n_free:], slices[n_free:], shapes[n_free:], fn(*point.values())):
        np.testing.assert_allclose(out[sl].reshape(shape), want, rtol=1e-9, atol=1e-12, err_msg=name)
