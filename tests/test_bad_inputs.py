"""Input validation of fastmmm.kernels: bad inputs raise ValueError naming the
offending argument; harmless variations (non-contiguous, float32, int) are
converted and give the same answer."""

from __future__ import annotations

import numpy as np
import pytest
from _util import KERNELS, assert_close, kernels

B, T, C = 2, 9, 3


def _x3():
    rng = np.random.default_rng(0)
    return rng.gamma(1.0, 2.0, size=(B, T, C))


# valid parameter values (scalars broadcast to (C,)) and options per kernel
VALID = {
    "geometric_adstock": ((0.5,), dict(l_max=4, normalize=False)),
    "delayed_adstock": ((0.5, 1.0), dict(l_max=4, normalize=False)),
    "weibull_adstock": ((2.0, 1.5), dict(l_max=4, kind="pdf", normalize=False)),
    "hill": ((2.0, 1.5), {}),
    "logistic_saturation": ((0.5,), {}),
    "michaelis_menten": ((3.0, 2.0), {}),
    "tanh_saturation": ((2.0, 1.5), {}),
}
NAMES = list(KERNELS)


def _args(name, ndim=2, **override):
    """x, params as (C,) arrays and options for a valid call; `override` replaces
    a parameter (array or scalar broadcast to (C,)) or an option."""
    x = _x3() if ndim == 3 else _x3()[0].copy()
    pnames, _ = KERNELS[name]
    vals, opts = VALID[name]
    opts = dict(opts)
    params = []
    for pn, v in zip(pnames, vals):
        v = override.pop(pn, v)
        params.append(np.asarray(v, dtype=np.float64) if np.ndim(v) else np.full(C, float(v)))
    if "x" in override:
        x = override.pop("x")
    opts.update(override)
    return x, params, opts


def _call(name, x, params, opts, vjp=False, g=None):
    K = kernels()
    if vjp:
        if g is None:
            g = np.ones(np.shape(x))
        return getattr(K, name + "_vjp")(x, *params, g, **opts)
    return getattr(K, name)(x, *params, **opts)


def _word(arg):
    return rf"(?<![A-Za-z0-9_]){arg}(?![A-Za-z0-9_])"


def _raises(name, arg, x, params, opts, both=True):
    with pytest.raises(ValueError, match=_word(arg)):
        _call(name, x, params, opts)
    if both:
        with pytest.raises(ValueError, match=_word(arg)):
            _call(name, x, params, opts, vjp=True)


# ---------------------------------------------------------------- x itself
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -1.0, -1e-300])
def test_bad_x_values(name, bad):
    x, p, o = _args(name)
    x[3, 1] = bad
    _raises(name, "x", x, p, o)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(), (T,), (1, B, T, C)])
def test_bad_x_ndim(name, shape):
    x, p, o = _args(name)
    _raises(name, "x", np.ones(shape), p, o)


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_params(name, bad):
    for i, pn in enumerate(KERNELS[name][0]):
        x, p, o = _args(name)
        p[i][1] = bad
        _raises(name, pn, x, p, o)


@pytest.mark.parametrize("name", NAMES)
def test_param_length_mismatch(name):
    for i, pn in enumerate(KERNELS[name][0]):
        for shape, ndim in [
            ((C + 1,), 2),
            ((C - 1,), 2),
            ((C + 1,), 3),
            ((B + 1, C), 3),
            ((B, C + 1), 3),
            ((B, C), 2),
            ((1, B, C), 3),
        ]:
            x, p, o = _args(name, ndim=ndim)
            p[i] = np.full(shape, p[i].flat[0])
            _raises(name, pn, x, p, o, both=False)


BAD_DOMAIN = [
    ("geometric_adstock", "alpha", [-0.1, 1.0, 1.5]),
    ("delayed_adstock", "alpha", [0.0, -0.1, 1.0, 1.5]),
    ("delayed_adstock", "theta", [-0.5]),
    ("weibull_adstock", "lam", [0.0, -1.0]),
    ("weibull_adstock", "k", [0.0, -1.0]),
    ("hill", "kappa", [0.0, -1.0]),
    ("hill", "slope", [0.0, -1.0]),
    ("logistic_saturation", "lam", [0.0, -1.0]),
    ("michaelis_menten", "lam", [0.0, -1.0]),
    ("tanh_saturation", "b", [0.0, -1.0]),
    ("tanh_saturation", "c", [0.0, -1.0]),
]


@pytest.mark.parametrize("name,arg,values", BAD_DOMAIN, ids=[f"{n}-{a}" for n, a, _ in BAD_DOMAIN])
def test_param_out_of_domain(name, arg, values):
    for v in values:
        x, p, o = _args(name)
        idx = KERNELS[name][0].index(arg)
        p[idx][2] = v  # a single bad channel is enough
        _raises(name, arg, x, p, o)


def test_param_domain_edges_are_accepted():
    """geometric alpha = 0 is in [0, 1); delayed theta = 0 is allowed; michaelis_menten
    alpha may be any finite number."""
    x, p, o = _args("geometric_adstock", alpha=0.0)
    assert np.all(np.isfinite(_call("geometric_adstock", x, p, o)))
    x, p, o = _args("delayed_adstock", theta=0.0)
    assert np.all(np.isfinite(_call("delayed_adstock", x, p, o)))
    x, p, o = _args("michaelis_menten", alpha=-2.0)
    assert np.all(np.isfinite(_call("michaelis_menten", x, p, o)))


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("name", ["geometric_adstock", "delayed_adstock", "weibull_adstock"])
@pytest.mark.parametrize("l_max", [0, -1, 2.5])
def test_bad_l_max(name, l_max):
    x, p, o = _args(name, l_max=l_max)
    with pytest.raises((ValueError, TypeError), match=_word("l_max")):
        _call(name, x, p, o)
    with pytest.raises((ValueError, TypeError), match=_word("l_max")):
        _call(name, x, p, o, vjp=True)
    if l_max != 2.5:  # an int l_max < 1 must be a ValueError
        _raises(name, "l_max", x, p, o)


def test_weibull_pdf_needs_two_lags():
    """Spec: pdf min-max scaling needs l_max >= 2 (l_max = 1 would be 0/0)."""
    x, p, o = _args("weibull_adstock", l_max=1, kind="pdf")
    _raises("weibull_adstock", "l_max", x, p, o)


def test_bad_weibull_kind():
    x, p, o = _args("weibull_adstock", kind="median")
    _raises("weibull_adstock", "kind", x, p, o)


# ---------------------------------------------------------------- upstream gradient
G_BAD = {
    "nan": lambda x: np.where(np.arange(x.size).reshape(x.shape) == 4, np.nan, 1.0),
    "inf": lambda x: np.full(x.shape, np.inf),
    "-inf": lambda x: np.full(x.shape, -np.inf),
    "longer-T": lambda x: np.ones((x.shape[0] + 1,) + x.shape[1:]),
    "extra-axis": lambda x: np.ones((1,) + x.shape),  # (1, T, C) for a (T, C) x
    "missing-axis": lambda x: np.ones(x.shape[1:]),  # (T, C) for a (1, T, C) x
    "1-D": lambda x: np.ones(x.shape[-2]),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(G_BAD))
def test_bad_upstream_gradient(name, case):
    """g must have exactly the shape of the output (= shape of x) and be finite."""
    x, p, o = _args(name)
    if case == "missing-axis":
        x = x[None]
    g = G_BAD[case](x)
    with pytest.raises(ValueError, match=_word("g")):
        _call(name, x, p, o, vjp=True, g=g)


def test_normalize_needs_finite_l_max():
    """geometric_adstock(l_max=None) is the untruncated recursion: normalize is refused."""
    x, p, o = _args("geometric_adstock", l_max=None, normalize=True)
    _raises("geometric_adstock", "normalize", x, p, o)


# ---------------------------------------------------------------- accepted conversions
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_converted_inputs_give_same_answer(name, ndim):
    """Non-contiguous / Fortran-ordered / float32 / integer x is converted to float64."""
    x, p, o = _args(name, ndim=ndim)
    x = np.floor(x * 4) / 4  # exactly representable in float32
    xi = np.floor(x)  # integer-valued, for the integer dtypes
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    big[..., ::2] = x
    variants = [
        ("strided", x, big[..., ::2]),
        ("reversed-view", x, x[..., ::-1, :][..., ::-1, :]),
        ("fortran", x, np.asfortranarray(x)),
        ("float32", x, x.astype(np.float32)),
        ("int64", xi, xi.astype(np.int64)),
        ("int32", xi, xi.astype(np.int32)),
    ]
    g = np.random.default_rng(3).standard_normal(x.shape)
    for label, base, xv in variants:
        assert np.array_equal(np.asarray(xv, dtype=np.float64), base)
        expected = _call(name, base.copy(), p, o)
        got = _call(name, xv, p, o)
        assert_close(got, expected, rtol=1e-14, what=f"{name} forward, x {label}")
        exp_vjp = _call(name, base.copy(), p, o, vjp=True, g=g.copy())
        got_vjp = _call(name, xv, p, o, vjp=True, g=g.copy())
        for a, b in zip(got_vjp, exp_vjp):
            assert_close(a, b, rtol=1e-14, what=f"{name} vjp, x {label}")


@pytest.mark.parametrize("name", NAMES)
def test_converted_params_and_g(name):
    """Strided / float32 params and a non-contiguous float32 g are accepted too."""
    x, p, o = _args(name, ndim=3)
    g = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32).astype(np.float64)
    expected = _call(name, x, p, o)
    exp_vjp = _call(name, x, p, o, vjp=True, g=g)
    for conv in (lambda a: np.repeat(a, 2)[::2], lambda a: a.astype(np.float32)):
        p2 = [conv(q) for q in p]  # VALID parameter values are exact in float32
        assert_close(_call(name, x, p2, o), expected, rtol=1e-14, what=f"{name} params")
    gf = np.asfortranarray(g.astype(np.float32))
    for a, b in zip(_call(name, x, p, o, vjp=True, g=gf), exp_vjp):
        assert_close(a, b, rtol=1e-14, what=f"{name} vjp with float32 Fortran g")


@pytest.mark.parametrize("name", NAMES)
def test_inputs_not_modified(name):
    x, p, o = _args(name, ndim=3)
    g = np.random.default_rng(5).standard_normal(x.shape)
    copies = [x.copy(), g.copy()] + [q.copy() for q in p]
    _call(name, x, p, o)
    _call(name, x, p, o, vjp=True, g=g)
    for a, b in zip([x, g] + p, copies):
        np.testing.assert_array_equal(a, b)


def test_core_refuses_a_fortran_ordered_array_rather_than_misreading_it():
    """A Fortran-ordered array is contiguous but column by column: the core's batched calls
    name it instead of reading its memory as if it were row-major (the package's wrappers
    convert; this guards direct _core callers)."""
    from fastmmm import _core

    x = np.random.default_rng(0).normal(size=(2, 50, 3))
    with pytest.raises(ValueError, match="x.*C-contiguous"):
        _core.convergence_stats(np.asfortranarray(x))
    r = _core.convergence_stats(np.ascontiguousarray(x))[0]
    assert r.shape == (3,) and np.all(np.isfinite(r))
    p = np.full((4, 2), 0.5)
    spend = np.asfortranarray(np.random.default_rng(1).gamma(2.0, 1.0, (20, 2)))
    with pytest.raises(ValueError, match="x.*C-contiguous"):
        _core.contribution_sums("geometric", "hill", 4, True, spend, [1.0], 0, p, None, p, p + 1.0, p)
