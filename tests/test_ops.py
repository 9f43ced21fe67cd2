"""PyTensor Ops (fastmmm.ops): perform, gradients, numba backend, nutpie."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytensor = pytest.importorskip("pytensor")
import pytensor.tensor as pt  # noqa: E402
from pytensor.gradient import NullTypeGradError, verify_grad  # noqa: E402
from pytensor.graph.basic import Apply  # noqa: E402
from pytensor.graph.op import Op  # noqa: E402
from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key  # noqa: E402

from fastmmm import kernels  # noqa: E402
from fastmmm.ops import (  # noqa: E402
    DelayedAdstockOp,
    GeometricAdstockOp,
    HillOp,
    LogisticSaturationOp,
    MichaelisMentenOp,
    TanhSaturationOp,
    WeibullAdstockOp,
)
from fastmmm.ops.testing import forbid_numba_object_mode  # noqa: E402

# Any numba object-mode fallback in this module is a failure.
pytestmark = pytest.mark.filterwarnings("error:Numba will use object mode:UserWarning")

B, T, C = 2, 9, 3

# name -> (op factory, numpy reference, numpy reference vjp, param ranges)
_ADSTOCK = {
    "geometric": (GeometricAdstockOp, kernels.geometric_adstock, kernels.geometric_adstock_vjp, [(0.1, 0.9)]),
    "delayed": (
        DelayedAdstockOp,
        kernels.delayed_adstock,
        kernels.delayed_adstock_vjp,
        [(0.1, 0.9), (0.2, 3.0)],
    ),
    "weibull": (
        WeibullAdstockOp,
        kernels.weibull_adstock,
        kernels.weibull_adstock_vjp,
        [(0.7, 3.0), (0.6, 3.0)],
    ),
}
_SATURATION = {
    "hill": (HillOp, kernels.hill, kernels.hill_vjp, [(0.5, 2.0), (0.5, 2.5)]),
    "logistic": (
        LogisticSaturationOp,
        kernels.logistic_saturation,
        kernels.logistic_saturation_vjp,
        [(0.5, 3.0)],
    ),
    "michaelis_menten": (
        MichaelisMentenOp,
        kernels.michaelis_menten,
        kernels.michaelis_menten_vjp,
        [(0.5, 2.0), (0.5, 2.0)],
    ),
    "tanh": (
        TanhSaturationOp,
        kernels.tanh_saturation,
        kernels.tanh_saturation_vjp,
        [(0.5, 2.0), (0.5, 2.0)],
    ),
}
TRANSFORMS = _ADSTOCK | _SATURATION

# (transform, options) combinations
CASES = [
    ("geometric", {}),
    ("geometric", {"l_max": 4}),
    ("geometric", {"l_max": 4, "normalize": True}),
    ("delayed", {"l_max": 4}),
    ("delayed", {"l_max": 5, "normalize": True}),
    ("weibull", {"l_max": 4, "kind": "pdf"}),
    ("weibull", {"l_max": 4, "kind": "pdf", "normalize": True}),
    ("weibull", {"l_max": 3, "kind": "cdf"}),
    ("weibull", {"l_max": 3, "kind": "cdf", "normalize": True}),
    ("hill", {}),
    ("logistic", {}),
    ("michaelis_menten", {}),
    ("tanh", {}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in CASES]

# x shape, param shape
LAYOUTS = {
    "2d": ((T, C), (C,)),
    "3d-shared": ((B, T, C), (C,)),
    "3d-batched": ((B, T, C), (B, C)),
    "3d-row": ((B, T, C), (1, C)),
}


def _inputs(name, layout, seed=0):
    rng = np.random.default_rng(seed)
    x_shape, p_shape = LAYOUTS[layout]
    x = rng.uniform(0.1, 2.0, x_shape)
    params = [rng.uniform(lo, hi, p_shape) for lo, hi in TRANSFORMS[name][3]]
    g = rng.normal(size=x_shape)
    return rng, x, params, g


def _sym(value, name):
    return pt.tensor(name, shape=(None,) * value.ndim, dtype="float64")


# ---------------------------------------------------------------------------
# Op construction and graph-level checks


def test_props_equality_hash_and_pickle():
    assert GeometricAdstockOp(l_max=4) == GeometricAdstockOp(l_max=np.int64(4))
    assert hash(GeometricAdstockOp(l_max=4)) == hash(GeometricAdstockOp(l_max=4))
    assert GeometricAdstockOp(l_max=4) != GeometricAdstockOp(l_max=5)
    assert WeibullAdstockOp(4, "PDF") == WeibullAdstockOp(4, "pdf")
    assert WeibullAdstockOp(4, "pdf") != WeibullAdstockOp(4, "cdf")
    assert HillOp() == HillOp()
    op = DelayedAdstockOp(l_max=6, normalize=True)
    assert pickle.loads(pickle.dumps(op)) == op
    assert op.vjp_op() == pickle.loads(pickle.dumps(op.vjp_op()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GeometricAdstockOp(l_max=0),
        lambda: GeometricAdstockOp(l_max=2.5),
        lambda: GeometricAdstockOp(normalize=True),  # needs a finite l_max
        lambda: DelayedAdstockOp(l_max=None),
        lambda: WeibullAdstockOp(l_max=1, kind="pdf"),
        lambda: WeibullAdstockOp(l_max=4, kind="pmf"),
    ],
)
def test_bad_options(make):
    with pytest.raises(ValueError):
        make()


def test_make_node_rejects_bad_ranks():
    with pytest.raises(ValueError, match="x must be 2-D"):
        HillOp()(pt.vector(), pt.vector(), pt.vector())
    with pytest.raises(ValueError, match="kappa"):
        HillOp()(pt.matrix(), pt.matrix(), pt.vector())  # (B, C) param needs 3-D x
    with pytest.raises(TypeError):
        HillOp()(pt.matrix(), pt.vector())


def test_infer_shape_and_dtype_cast():
    x = pt.tensor3("x", dtype="float32")
    a = pt.vector("a")
    y = GeometricAdstockOp(l_max=3)(x, a)
    assert y.dtype == "float64"
    gx, ga = pytensor.grad(y.sum(), [x, a])
    f = pytensor.function([x, a], [y.shape, ga.shape], mode="FAST_COMPILE")
    shape_y, shape_ga = f(np.ones((2, 5, 3), "float32"), np.full(3, 0.5))
    assert tuple(shape_y) == (2, 5, 3) and tuple(shape_ga) == (3,)
    # shapes are inferred without running the Op
    fg = pytensor.function([x, a], y.shape, mode="FAST_RUN")
    assert not any(isinstance(n.op, GeometricAdstockOp) for n in fg.maker.fgraph.apply_nodes)


def test_second_order_grad_not_implemented():
    x, k, s = pt.matrix("x"), pt.vector("k"), pt.vector("s")
    gk = pytensor.grad(HillOp()(x, k, s).sum(), k)
    with pytest.raises(NullTypeGradError):
        pytensor.grad(gk.sum(), k)


# ---------------------------------------------------------------------------
# perform (Python / ctypes path)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_perform_matches_kernels(name, opts, layout):
    factory, ref, ref_vjp, _ = TRANSFORMS[name]
    _, x, params, g = _inputs(name, layout)
    op = factory(**opts)
    sx, sps, sg = _sym(x, "x"), [_sym(p, f"p{i}") for i, p in enumerate(params)], _sym(g, "g")
    f = pytensor.function([sx, *sps, sg], [op(sx, *sps), *op.vjp_op()(sx, *sps, sg)], mode="FAST_COMPILE")
    y, *grads = f(x, *params, g)
    # the numpy API has no (1, C) form: broadcast, then sum the gradient
    ref_params = [np.broadcast_to(p, (x.shape[0], C)) if p.ndim == 2 else p for p in params]
    np.testing.assert_allclose(y, ref(x, *ref_params, **opts), rtol=1e-12, atol=1e-12)
    expected = ref_vjp(x, *ref_params, g, **opts)
    assert len(grads) == len(expected)
    for got, exp, inp in zip(grads, expected, [x, *params]):
        assert got.shape == inp.shape
        exp = exp.sum(axis=0, keepdims=True) if inp.shape != exp.shape else exp
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("name", "opts"), CASES, ids=CASE_IDS)
def test_verify_grad(name, opts, layout):
    factory, _, _, _ = TRANSFORMS[name]
    rng, x, params, _ = _inputs(name, layout, seed=1)
    op = factory(**opts)
    verify_grad(lambda *a: op(*a), [x, *params], rng=rng, mode="FAST_COMPILE")


def test_perform_shape_errors():
    _, x, (k, s), _ = _inputs("hill", "3d-batched")
    sx, sk, ss = pt.tensor3("x"), pt.matrix("k"), pt.vector("s")
    f = pytensor.function([sx, sk, ss], HillOp()(sx, sk, ss), mode="FAST_COMPILE")
    with pytest.raises(ValueError, match="kappa"):
        f(x, np.ones((3, C)), s[0])
    with pytest.raises(ValueError, match="slope"):
        f(x, k, np.ones(C + 1))


# ---------------------------------------------------------------------------
# numba backend


def test_forbid_numba_object_mode_catches_fallback():
    class PythonOnly(Op):
        __props__ = ()

        def make_node(self, v):
            v = pt.as_tensor_variable(v)
            return Apply(self, [v], [v.type()])

        def perform(self, node, inputs, outputs):
            outputs[0][0] = 2 * inputs[0]

    v = pt.vector("v")
    with forbid_numba_object_mode(), pytest.raises(UserWarning, match="object mode"):
        pytensor.function([v], PythonOnly()(v), mode="NUMBA")


def test_numba_cache_key():
    x, k, s = pt.matrix("x"), pt.vector("k"), pt.vector("s")
    x3, k2 = pt.tensor3("x3"), pt.matrix("k2")

    def key(op, *inputs):
        node = op.make_node(*inputs)
        _, key = numba_funcify_and_cache_key(op, node=node)
        return key

    k_hill = key(HillOp(), x, k, s)
    assert k_hill is not None
    assert k_hill == key(HillOp(), x, k, s)
    assert k_hill != key(HillOp(), x3, k, s)
    assert k_hill != key(HillOp(), x3, k2, s)
    assert k_hill != key(HillOp().vjp_op(), x, k, s, x)
    a = pt.vector("a")
    assert key(GeometricAdstockOp(l_max=3), x, a) != key(GeometricAdstockOp(l_max=4), x, a)


def _check_numba_against_perform(combos):
    """Compile forward and VJP nodes for (transform, options, layout) combos in
    one NUMBA function and compare with the Python perform path.  Every node is
    a separate numba compilation (~0.5 s cold), so callers keep combos short."""
    inputs, values, outputs = [], [], []
    for name, opts, layout in combos:
        op = TRANSFORMS[name][0](**opts)
        _, x, params, g = _inputs(name, layout, seed=2)
        if layout == "3d-shared":
            # non-contiguous x inside the graph: transpose of a (C, T, B) input
            sxt = _sym(x, "xt")
            sx, xval = sxt.transpose(2, 1, 0), np.ascontiguousarray(x.transpose(2, 1, 0))
            inputs.append(sxt)
        else:
            sx, xval = _sym(x, "x"), x
            inputs.append(sx)
        sps = [_sym(p, f"p{i}") for i, p in enumerate(params)]
        sg = _sym(g, "g")
        inputs += [*sps, sg]
        values += [xval, *params, g]
        outputs += [op(sx, *sps), *op.vjp_op()(sx, *sps, sg)]
    with forbid_numba_object_mode():
        f_numba = pytensor.function(inputs, outputs, mode="NUMBA")
    f_py = pytensor.function(inputs, outputs, mode="FAST_COMPILE")
    for got, exp in zip(f_numba(*values), f_py(*values)):
        assert got.shape == exp.shape
        np.testing.assert_allclose(got, exp, rtol=1e-13, atol=1e-13)


def test_numba_matches_perform():
    """Every option set once, layouts rotated over them (all four covered)."""
    layouts = list(LAYOUTS)
    _check_numba_against_perform(
        [(name, opts, layouts[i % len(layouts)]) for i, (name, opts) in enumerate(CASES)]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_numba_matches_perform_all_layouts(name):
    _check_numba_against_perform([(n, opts, layout) for n, opts in CASES if n == name for layout in LAYOUTS])


def test_numba_strided_inputs_errors_and_nan():
    """Non-contiguous arrays passed to the compiled function; shape errors and
    domain trouble inside nopython code.  (pytensor.grad through the Ops in
    numba is exercised by the nutpie test.)"""
    rng = np.random.default_rng(3)
    x, g = pt.tensor3("x"), pt.tensor3("g")
    k, s = pt.matrix("k"), pt.vector("s")
    op = HillOp()
    outs = [op(x, k, s), *op.vjp_op()(x, k, s, g)]
    with forbid_numba_object_mode():
        f = pytensor.function([x, k, s, g], outs, mode="NUMBA")
    f_py = pytensor.function([x, k, s, g], outs, mode="FAST_COMPILE")

    def strided(a):
        """a non-contiguous view with a's values (every call keeps one numba signature)"""
        out = np.empty(a.shape[:-1] + (2 * a.shape[-1],))
        out[..., ::2] = a
        return out[..., ::2]

    xv = strided(rng.uniform(0.1, 2.0, (B, T, C)))
    gv = strided(rng.normal(size=(B, T, C)))
    kv = strided(rng.uniform(0.5, 2, (B, C)))
    sv = strided(rng.uniform(0.5, 2, C))
    assert not any(v.flags.c_contiguous for v in (xv, gv, kv, sv))
    for got, exp in zip(f(xv, kv, sv, gv), f_py(xv, kv, sv, gv)):
        np.testing.assert_allclose(got, exp, rtol=1e-13, atol=1e-13)

    with pytest.raises(ValueError):
        f(xv, kv, strided(np.ones(C + 1)), gv)  # slope of wrong length
    with pytest.raises(ValueError):
        f(xv, strided(np.ones((B + 1, C))), sv, gv)  # kappa of wrong batch size
    with pytest.raises(ValueError):
        f(xv, kv, sv, gv[:, :-1])  # g of the wrong shape

    # out-of-domain parameter: NaN, not an exception (the sampler rejects it)
    y_bad = f(xv, strided(-kv), sv, gv)[0]
    assert np.isnan(y_bad).all()


# ---------------------------------------------------------------------------
# nutpie, numba backend


def _simulate(seed=11):
    rng = np.random.default_rng(seed)
    Tn, Cn = 120, 2
    x = rng.gamma(2.0, 0.5, (Tn, Cn))
    truth = {
        "alpha": np.array([0.3, 0.6]),
        "lam": np.array([1.5, 0.8]),
        "beta": np.array([2.0, 1.0]),
        "sigma": 0.05,
    }
    ad = kernels.geometric_adstock(x, truth["alpha"], l_max=8)
    mu = kernels.logistic_saturation(ad, truth["lam"]) @ truth["beta"]
    y = mu + rng.normal(0.0, truth["sigma"], Tn)
    return x, y, truth


def _model(x, y):
    import pymc as pm

    with pm.Model() as model:
        alpha = pm.Beta("alpha", 2, 2, shape=2)
        lam = pm.Gamma("lam", 3, 2, shape=2)
        beta = pm.HalfNormal("beta", 3, shape=2)
        sigma = pm.HalfNormal("sigma", 0.5)
        spend = pm.Data("spend", x)  # shared variable: nutpie passes it as user data
        sat = LogisticSaturationOp()(GeometricAdstockOp(l_max=8)(spend, alpha), lam)
        pm.Normal("y", sat @ beta, sigma, observed=y)
    return model


def test_nutpie_numba_compiles_without_object_mode_and_recovers_parameters():
    nutpie = pytest.importorskip("nutpie")
    x, y, truth = _simulate()
    with forbid_numba_object_mode():
        compiled = nutpie.compile_pymc_model(_model(x, y), backend="numba")
    trace = nutpie.sample(compiled, draws=300, tune=300, chains=2, cores=1, seed=5, progress_bar=False)
    post = trace.posterior
    assert int(trace.sample_stats.diverging.sum()) == 0
    for name in ("alpha", "lam", "beta", "sigma"):
        mean = post[name].mean(("chain", "draw")).values
        sd = post[name].std(("chain", "draw")).values
        assert np.all(np.abs(mean - truth[name]) < 4 * sd + 1e-3), (name, mean, sd, truth[name])
    # and the adstock parameters are pinned down tightly
    assert np.all(post["alpha"].std(("chain", "draw")).values < 0.05)
