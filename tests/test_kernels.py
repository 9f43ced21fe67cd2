"""Property tests: fastmmm.kernels (forward and VJP) against the numpy reference.

Tolerance: 1e-12 relative, with an absolute floor of 1e-12 * max(1, max|ref|)
for forward values.  For VJPs, whose sums over time/lags/batch may cancel, the
absolute floor is 1e-12 * max(1, max S) where S is the same sum taken over the
absolute values of its terms (``reference.*_vjp(..., abs_scale=True)``), i.e. the
natural size of floating-point error of that sum.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import reference as R
from _util import KERNELS, assert_close, kernels
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# examples per property test; raise them through the environment for a long bug hunt
N_EX = int(os.environ.get("FASTMMM_EXAMPLES", "100"))
FD_EX = int(os.environ.get("FASTMMM_FD_EXAMPLES", "15"))


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------
@st.composite
def x_arrays(draw, T=None, max_T=40):
    """Non-negative spend, (T, C) or (B, T, C), with zeros / long zero runs / spikes."""
    ndim = draw(st.sampled_from([2, 3]))
    if T is None:
        T = draw(st.integers(1, max_T))
    C = draw(st.integers(1, 3))
    B = draw(st.integers(1, 3)) if ndim == 3 else None
    shape = (T, C) if ndim == 2 else (B, T, C)
    pattern = draw(st.sampled_from(["dense", "zeros", "zero_runs", "spikes", "hyp"]))
    if pattern == "hyp" and np.prod(shape) > 60:
        pattern = "dense"
    if pattern == "hyp":
        elems = st.one_of(st.just(0.0), st.floats(0.0, 1e3, allow_subnormal=False))
        return draw(hnp.arrays(np.float64, shape, elements=elems))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** rng.uniform(-2, 2)
    if pattern == "zeros":
        return np.zeros(shape)
    if pattern == "dense":
        return rng.gamma(0.8, scale, size=shape)
    if pattern == "spikes":
        x = np.zeros(shape)
        mask = rng.random(shape) < min(0.2, 3.0 / T)
        x[mask] = 10.0 ** rng.uniform(-3, 3, size=mask.sum())
        return x
    # long zero runs: dense spend with a run of >= T/2 zeros in every series
    x = rng.gamma(0.8, scale, size=shape)
    x3 = x.reshape((-1, T, C))
    for b in range(x3.shape[0]):
        for c in range(C):
            n = int(rng.integers((T + 1) // 2, T + 1))
            s = int(rng.integers(0, T - n + 1))
            x3[b, s : s + n, c] = 0.0
    return x


def params(draw, x, elem):
    """A (C,) parameter, or (B, C) when x is 3-D (half the time)."""
    C = x.shape[-1]
    shape = (C,)
    if x.ndim == 3 and draw(st.booleans()):
        shape = (x.shape[0], C)
    vals = draw(st.lists(elem, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(vals, dtype=np.float64).reshape(shape)


def mixed(edges, lo, hi, **kw):
    return st.one_of(st.sampled_from(edges), st.floats(lo, hi, allow_nan=False, **kw))


ALPHA_GEOM = mixed([0.0, 1e-6, 1e-3, 0.5, 0.9, 0.999, 1 - 1e-6], 0.0, 1.0, exclude_max=True)
ALPHA_DELAY = mixed([1e-6, 1e-3, 0.5, 0.99, 1 - 1e-6], 1e-6, 1 - 1e-6)
LAM_W = mixed([0.5, 1.0, 3.0, 10.0], 0.5, 20.0)
K_W = mixed([0.5, 1.0, 1.5, 3.0], 0.3, 5.0)
KAPPA = mixed([0.05, 1.0, 10.0], 0.05, 20.0)
SLOPE = mixed([0.3, 1.0, 2.0, 5.0], 0.1, 6.0)
LAM_LOG = mixed([1e-3, 0.1, 1.0, 10.0], 1e-3, 10.0)
ALPHA_MM = mixed([-2.0, 0.0, 1.0, 50.0], -10.0, 10.0)
LAM_MM = mixed([1e-3, 1.0, 100.0], 1e-3, 100.0)
B_TANH = mixed([0.05, 1.0, 50.0], 0.05, 50.0)
C_TANH = mixed([0.05, 1.0, 50.0], 0.05, 50.0)


def l_max_for(draw, T, lo=1, allow_none=False):
    choices = [st.integers(lo, max(lo, 12)), st.sampled_from([lo, max(lo, T), T + 3])]
    if allow_none:
        choices.append(st.none())
    return draw(st.one_of(*choices))


@st.composite
def cases(draw, name, T=None, max_T=40):
    """(x, params tuple, options dict) for kernel `name`."""
    x = draw(x_arrays(T=T, max_T=max_T))
    T = x.shape[-2]
    opts = {}
    if name == "geometric_adstock":
        p = (params(draw, x, ALPHA_GEOM),)
        opts["l_max"] = l_max_for(draw, T, allow_none=True)
        opts["normalize"] = False if opts["l_max"] is None else draw(st.booleans())
    elif name == "delayed_adstock":
        L = l_max_for(draw, T)
        th = mixed([0.0, 0.5, float(L - 1)], 0.0, float(L - 1) + 0.5)
        p = (params(draw, x, ALPHA_DELAY), params(draw, x, th))
        opts.update(l_max=L, normalize=draw(st.booleans()))
    elif name == "weibull_adstock":
        kind = draw(st.sampled_from(["pdf", "cdf"]))
        p = (params(draw, x, LAM_W), params(draw, x, K_W))
        opts.update(
            l_max=l_max_for(draw, T, lo=2 if kind == "pdf" else 1), kind=kind, normalize=draw(st.booleans())
        )
    elif name == "hill":
        p = (params(draw, x, KAPPA), params(draw, x, SLOPE))
    elif name == "logistic_saturation":
        p = (params(draw, x, LAM_LOG),)
    elif name == "michaelis_menten":
        p = (params(draw, x, ALPHA_MM), params(draw, x, LAM_MM))
    elif name == "tanh_saturation":
        p = (params(draw, x, B_TANH), params(draw, x, C_TANH))
    else:  # pragma: no cover
        raise KeyError(name)
    return x, p, opts


def upstream(draw, x):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal(x.shape)


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------
def check_forward(name, x, p, opts):
    K = kernels()
    ref = getattr(R, name)(x, *p, **opts)
    got = getattr(K, name)(x.copy(), *(q.copy() for q in p), **opts)
    assert_close(got, ref, what=f"{name} forward")


def check_vjp(name, x, p, g, opts):
    K = kernels()
    ref = getattr(R, name + "_vjp")(x, *p, g, **opts)
    scale = getattr(R, name + "_vjp")(x, *p, g, abs_scale=True, **opts)
    got = getattr(K, name + "_vjp")(x.copy(), *(q.copy() for q in p), g.copy(), **opts)
    n_out = 1 + len(p)
    assert isinstance(got, tuple) and len(got) == n_out, f"{name}_vjp must return a {n_out}-tuple"
    labels = ("x",) + KERNELS[name][0]
    for lab, gg, rr, ss in zip(labels, got, ref, scale):
        assert_close(gg, rr, scale=ss, what=f"{name}_vjp d/d{lab}")


NAMES = list(KERNELS)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=N_EX, **SETTINGS)
@given(data=st.data())
def test_forward_matches_reference(name, data):
    x, p, opts = data.draw(cases(name))
    check_forward(name, x, p, opts)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=N_EX, **SETTINGS)
@given(data=st.data())
def test_vjp_matches_reference(name, data):
    x, p, opts = data.draw(cases(name))
    g = upstream(data.draw, x)
    check_vjp(name, x, p, g, opts)


@pytest.mark.parametrize("name", ["geometric_adstock", "delayed_adstock", "weibull_adstock"])
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_adstock_large_T(name, data):
    """A few long series (T up to 2000) through forward and VJP."""
    T = data.draw(st.sampled_from([700, 2000]))
    x, p, opts = data.draw(cases(name, T=T))
    # keep the reference's dense T x T matrices affordable
    x = np.ascontiguousarray(x[:1, :, :2] if x.ndim == 3 else x[:, :2])
    p = tuple(np.ascontiguousarray(q[:1, :2] if q.ndim == 2 else q[:2]) for q in p)
    check_forward(name, x, p, opts)
    check_vjp(name, x, p, upstream(data.draw, x), opts)


def test_geometric_recursion_long_alpha_edges():
    """Untruncated recursion, T = 2000, alpha at 0, 1e-6 and 1 - 1e-6, with zero runs."""
    rng = np.random.default_rng(1)
    x = rng.gamma(0.8, 2.0, size=(2000, 3))
    x[300:1700, 1] = 0.0
    x[:1999, 2] = 0.0
    alpha = np.array([1e-6, 1 - 1e-6, 0.0])
    g = rng.standard_normal(x.shape)
    check_forward("geometric_adstock", x, (alpha,), {"l_max": None})
    check_vjp("geometric_adstock", x, (alpha,), g, {"l_max": None})


def test_hill_zero_convention():
    """x = 0: value 0, d/dx = 1/kappa iff slope == 1 else 0, d/dkappa = d/dslope = 0."""
    K = kernels()
    x = np.zeros((3, 4))
    kappa = np.array([0.5, 2.0, 2.0, 3.0])
    slope = np.array([1.0, 1.0, 0.5, 2.5])
    g = np.ones_like(x)
    y = K.hill(x, kappa, slope)
    assert np.all(y == 0.0)
    gx, gk, gs = K.hill_vjp(x, kappa, slope, g)
    np.testing.assert_array_equal(gx, np.tile([2.0, 0.5, 0.0, 0.0], (3, 1)))
    np.testing.assert_array_equal(gk, np.zeros(4))
    np.testing.assert_array_equal(gs, np.zeros(4))
    assert all(np.isfinite(a).all() for a in (gx, gk, gs))


def test_hill_tiny_and_subnormal_spend():
    """Weibull adstocks produce subnormal adstocked spend: Hill's value and partials
    must stay finite and equal the float64 formulas there (a merged division
    1/((1+a) x) once overflowed to inf at such x and made the sampler diverge)."""
    K = kernels()
    xs = np.array([5e-324, 1e-320, 1e-310, 2.2e-308, 1e-300, 1e-200, 1e-20, 0.3, 1.0, 7.0])
    x = np.tile(xs[:, None], (1, 3))
    kappa = np.array([0.5, 1.0, 2.0])
    slope = np.array([1.0, 0.7, 2.5])
    g = np.ones_like(x)
    y = K.hill(x, kappa, slope)
    gx, gk, gs = K.hill_vjp(x, kappa, slope, g)
    # Reference in float64: y = 1 / (1 + (kappa/x)^n) via logs; y(1-y) in the stable form.
    nr = slope * (np.log(x) - np.log(kappa))
    a = np.exp(-np.abs(nr))
    y_ref = np.where(nr >= 0, 1.0, a) / (1.0 + a)
    d = a / (1.0 + a) ** 2
    dx_ref = slope * d / x
    assert np.isfinite(y).all() and np.isfinite(gx).all() and np.isfinite(gk).all() and np.isfinite(gs).all()
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=0)
    # The spend gradient of one element is its dy/dx (g = 1); compare per element.
    for i in range(len(xs)):
        gxi, _, _ = K.hill_vjp(x[i : i + 1], kappa, slope, g[i : i + 1])
        np.testing.assert_allclose(gxi[0], dx_ref[i], rtol=1e-12, err_msg=f"dy/dx at x = {xs[i]}")
    # The fused media transform carries the same partials in its cache.
    ym, cache = K.media_transform(x, "geometric", "hill", (np.full(3, 1e-3),), (kappa, slope), l_max=2)
    gxm, _, _ = K.media_transform_vjp(
        x, g, cache, "geometric", "hill", (np.full(3, 1e-3),), (kappa, slope), l_max=2, want_gx=True
    )
    assert np.isfinite(ym).all() and np.isfinite(gxm).all() and np.isfinite(cache).all()


def test_geometric_untruncated_equals_full_length_kernel():
    K = kernels()
    rng = np.random.default_rng(2)
    x = rng.gamma(1.0, 1.0, size=(2, 50, 3))
    a = rng.uniform(0, 1, size=(2, 3))
    assert_close(K.geometric_adstock(x, a), K.geometric_adstock(x, a, l_max=50))


def test_weibull_cdf_has_l_max_plus_one_weights():
    """cdf kind uses l_max + 1 weights: an impulse's response reaches lag l_max."""
    K = kernels()
    T, L = 10, 4
    x = np.zeros((T, 1))
    x[0, 0] = 1.0
    y_cdf = K.weibull_adstock(x, np.array([3.0]), np.array([1.5]), l_max=L, kind="cdf")
    y_pdf = K.weibull_adstock(x, np.array([3.0]), np.array([1.5]), l_max=L, kind="pdf")
    w_cdf = R.weibull_weights(3.0, 1.5, L, "cdf")[0]
    assert w_cdf.shape == (L + 1,)
    assert_close(y_cdf[: L + 1, 0], w_cdf)
    assert np.all(y_cdf[L + 1 :] == 0.0) and np.all(y_pdf[L:] == 0.0)


SCALAR_CASES = {
    "geometric_adstock": ((0.6,), dict(l_max=5, normalize=True)),
    "delayed_adstock": ((0.6, 1.5), dict(l_max=5, normalize=True)),
    "weibull_adstock": ((2.5, 1.3), dict(l_max=5, kind="cdf", normalize=True)),
    "hill": ((1.5, 1.2), {}),
    "logistic_saturation": ((0.7,), {}),
    "michaelis_menten": ((2.0, 3.0), {}),
    "tanh_saturation": ((2.0, 1.5), {}),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_scalar_params_broadcast(name, ndim):
    """A scalar parameter acts as a (C,) one; its gradient is the scalar sum."""
    K = kernels()
    rng = np.random.default_rng(7)
    x = rng.gamma(1.0, 2.0, size=(2, 12, 3) if ndim == 3 else (12, 3))
    g = rng.standard_normal(x.shape)
    vals, opts = SCALAR_CASES[name]
    vec = [np.full(3, v) for v in vals]
    assert_close(getattr(K, name)(x, *vals, **opts), getattr(R, name)(x, *vec, **opts))
    got = getattr(K, name + "_vjp")(x, *vals, g, **opts)
    ref = getattr(R, name + "_vjp")(x, *vec, g, **opts)
    assert_close(got[0], ref[0])
    for gp, rp in zip(got[1:], ref[1:]):
        assert np.ndim(gp) == 0
        assert_close(float(gp), rp.sum(), rtol=1e-11)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(
    "kind,p0,p1,l_max",
    [
        ("geometric", 0.7, 0.0, 1),
        ("geometric", 0.7, 0.0, 12),
        ("geometric", 0.0, 0.0, 5),
        ("delayed", 0.4, 2.5, 9),
        ("delayed", 1e-6, 0.0, 3),
        ("weibull_pdf", 3.0, 1.5, 10),
        ("weibull_pdf", 2.0, 0.5, 2),
        ("weibull_cdf", 3.0, 1.5, 10),
        ("weibull_cdf", 0.7, 4.0, 1),
    ],
)
def test_adstock_weights_helper(kind, p0, p1, l_max, normalize):
    """fastmmm.kernels.adstock_weights (inspection helper) matches the reference taps."""
    K = kernels()
    if kind == "geometric":
        ref = R.geometric_weights(p0, l_max, normalize)[0]
    elif kind == "delayed":
        ref = R.delayed_weights(p0, p1, l_max, normalize)[0]
    else:
        ref = R.weibull_weights(p0, p1, l_max, kind.split("_")[1], normalize)[0]
    got = K.adstock_weights(kind, p0, p1, l_max=l_max, normalize=normalize)
    assert_close(np.asarray(got).ravel(), ref.ravel(), what=f"adstock_weights {kind}")
    assert np.asarray(got).size == ref.size


# --------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------
def _richardson(fun, h):
    """d fun(t)/dt at t = 0: central differences, one Richardson step (O(h^4))."""
    d1 = (fun(h) - fun(-h)) / (2 * h)
    d2 = (fun(h / 2) - fun(-h / 2)) / h
    return (4 * d2 - d1) / 3


def _fd_check(fwd, vjp, x, p, g, opts, xmask, rtol=1e-7):
    """Finite differences of <g, fwd> vs the VJP, in each parameter entry and a
    random relative x direction (restricted to xmask)."""

    def f(xx, pp):
        return float(np.sum(g * fwd(xx, *pp, **opts)))

    eps = np.finfo(float).eps
    fabs = float(np.sum(np.abs(g * fwd(x, *p, **opts))))  # roundoff scale of f

    grads = vjp(x, *p, g, **opts)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(x.shape) * x * xmask  # relative steps keep x +- h v >= 0
    h = 1e-4
    fd = _richardson(lambda t: f(x + t * v, p), h)
    an = float(np.sum(grads[0] * v))
    tol = rtol * max(1.0, float(np.sum(np.abs(grads[0] * v)))) + 50 * eps * fabs / h
    assert abs(fd - an) <= tol, f"d/dx: fd={fd!r} vjp={an!r}"
    for i, q in enumerate(p):
        for idx in np.ndindex(q.shape):
            hq = 1e-4 * max(1e-2, abs(q[idx]))

            def fq(t, i=i, idx=idx, q=q):
                qq = q.copy()
                qq[idx] += t
                pp = list(p)
                pp[i] = qq
                return f(x, pp)

            fd = _richardson(fq, hq)
            an = float(np.asarray(grads[1 + i])[idx])
            tol = rtol * max(1.0, abs(fd), abs(an)) + 50 * eps * fabs / hq
            assert abs(fd - an) <= tol, f"d/dparam{i}{idx}: fd={fd!r} vjp={an!r}"


# parameters kept away from domain edges / kinks so that central differences are valid
FD_PARAMS = {
    "geometric_adstock": [(0.05, 0.95)],
    "delayed_adstock": [(0.05, 0.95), (0.1, 3.0)],
    "weibull_adstock": [(1.0, 8.0), (0.6, 3.0)],
    "hill": [(0.3, 5.0), (0.5, 3.0)],
    "logistic_saturation": [(0.05, 2.0)],
    "michaelis_menten": [(-3.0, 3.0), (0.2, 5.0)],
    "tanh_saturation": [(0.5, 5.0), (0.5, 5.0)],
}


@st.composite
def fd_cases(draw, name):
    x = draw(x_arrays(max_T=16))
    p = tuple(params(draw, x, st.floats(lo, hi)) for lo, hi in FD_PARAMS[name])
    opts = {}
    if name == "geometric_adstock":
        opts["l_max"] = draw(st.one_of(st.none(), st.integers(1, 10)))
        opts["normalize"] = opts["l_max"] is not None and draw(st.booleans())
    elif name == "delayed_adstock":
        opts.update(l_max=draw(st.integers(1, 10)), normalize=draw(st.booleans()))
    elif name == "weibull_adstock":
        kind = draw(st.sampled_from(["pdf", "cdf"]))
        opts.update(l_max=draw(st.integers(2, 10)), kind=kind, normalize=draw(st.booleans()))
    g = upstream(draw, x)
    return x, p, g, opts


def _weibull_pdf_kink(p, opts):
    """True when the pdf min/max over t=1..l_max is (nearly) tied: w is not smooth there."""
    if opts.get("kind") != "pdf":
        return False
    t = np.arange(1, opts["l_max"] + 1)
    for lam, k in zip(np.ravel(p[0]), np.ravel(p[1])):
        pdf = np.sort(k / lam * (t / lam) ** (k - 1) * np.exp(-((t / lam) ** k)))
        if (pdf[-1] - pdf[-2]) < 1e-3 * pdf[-1] or (pdf[1] - pdf[0]) < 1e-3 * pdf[-1]:
            return True
    return False


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=FD_EX, **SETTINGS)
@given(data=st.data())
def test_reference_vjp_matches_finite_differences(name, data):
    """The reference's analytic VJPs against central differences of its own forward."""
    x, p, g, opts = data.draw(fd_cases(name))
    assume(not _weibull_pdf_kink(p, opts))
    _fd_check(getattr(R, name), getattr(R, name + "_vjp"), x, p, g, opts, x > 0)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=FD_EX, **SETTINGS)
@given(data=st.data())
def test_kernel_vjp_matches_finite_differences(name, data):
    """fastmmm's VJPs against central differences of fastmmm's forward."""
    K = kernels()
    x, p, g, opts = data.draw(fd_cases(name))
    assume(not _weibull_pdf_kink(p, opts))
    _fd_check(getattr(K, name), getattr(K, name + "_vjp"), x, p, g, opts, x > 0)


def test_batched_calls_on_the_calling_thread_equal_the_pool_split():
    """set_kernel_threads(1) (a batch's brand threads) runs the response and contribution
    kernels on the calling thread: the same numbers as the work split across the pool."""
    from fastmmm import _core

    rng = np.random.default_rng(11)
    s, c = 301, 3  # draws split into uneven pieces on the pool
    a0 = rng.uniform(0.1, 0.8, (s, c))
    kappa, slope = rng.uniform(0.3, 1.5, (s, c)), rng.uniform(0.7, 2.5, (s, c))
    beta = rng.uniform(0.1, 2.0, (s, c))
    x = rng.gamma(2.0, 0.5, (40, c))
    hist, plan = rng.gamma(2.0, 0.5, (12, c)), rng.gamma(2.0, 0.5, (6, c))

    def both():
        tot, win, over = _core.contribution_sums(
            "geometric", "hill", 8, True, x, [1.0, 1.3], 30, a0, None, kappa, slope, beta
        )
        resp, grad = _core.response_draws(
            "geometric", "hill", 8, True, hist, plan, 8, a0, None, kappa, slope, beta
        )
        return (tot, win, resp, grad), over

    pooled, pooled_over = both()
    try:
        _core.set_kernel_threads(1)
        here, here_over = both()
    finally:
        _core.set_kernel_threads(0)
    for a, b in zip(pooled, here, strict=True):
        assert a.shape == b.shape and np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)
    # The sums over draws add the pieces' partial sums: equal up to their order.
    np.testing.assert_allclose(pooled_over, here_over, rtol=1e-13)


@pytest.mark.parametrize("threads", [0, 1])
def test_contribution_sums_match_the_numpy_reference(threads):
    """contribution_sums (a summary's ROAS, marginal ROAS and mean contributions in one pass)
    against the float64 numpy reference: per draw and multiplier, the totals over the whole
    series and over its first `window` periods, and each window period summed over draws;
    on the pool (draws split into uneven pieces) and on the calling thread."""
    from fastmmm import _core

    rng = np.random.default_rng(5)
    s, c, t, tail = 37, 3, 30, 6
    alpha = rng.uniform(0.1, 0.8, (s, c))
    kappa, slope = rng.uniform(0.3, 1.5, (s, c)), rng.uniform(0.7, 2.5, (s, c))
    beta = rng.uniform(0.1, 2.0, (s, c))
    x = np.vstack([rng.gamma(2.0, 0.5, (t, c)), np.zeros((tail, c))])
    mult = [1.0, 1.01, 0.5]
    try:
        _core.set_kernel_threads(threads)
        tot, win, over = _core.contribution_sums(
            "geometric", "hill", tail, True, x, mult, t, alpha, None, kappa, slope, beta
        )
        only, no_win, no_over = _core.contribution_sums(
            "geometric", "hill", tail, True, x, mult, 0, alpha, None, kappa, slope, beta
        )
    finally:
        _core.set_kernel_threads(0)
    ref = np.empty((s, len(mult), t + tail, c))
    for i in range(s):
        for k, m in enumerate(mult):
            ref[i, k] = R.hill(R.geometric_adstock(m * x, alpha[i], tail, True), kappa[i], slope[i]) * beta[i]
    np.testing.assert_allclose(tot, ref.sum(axis=2), rtol=1e-12)
    np.testing.assert_allclose(win, ref[:, :, :t].sum(axis=2), rtol=1e-12)
    np.testing.assert_allclose(over, ref[:, :, :t].sum(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(tot, only)  # the totals do not depend on the window
    assert no_win.shape == (0, len(mult), c) and no_over.shape == (len(mult), 0, c)
    assert not np.allclose(tot[:, 0], win[:, 0])  # the tail's carry-over is in the totals only
    for bad in (t + tail + 1,):
        with pytest.raises(ValueError, match="window"):
            _core.contribution_sums(
                "geometric", "hill", tail, True, x, mult, bad, alpha, None, kappa, slope, beta
            )
