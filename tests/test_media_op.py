"""Fused media transform Op (fastmmm.ops.media): values, gradients, numba, nutpie."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytensor = pytest.importorskip("pytensor")
import pytensor.tensor as pt
from pytensor.gradient import NullTypeGradError, verify_grad
from pytensor.graph.traversal import applys_between

from fastmmm import kernels
from fastmmm.ops import (
    DelayedAdstockOp,
    GeometricAdstockOp,
    HillOp,
    LogisticSaturationOp,
    MediaTransformOp,
    MediaTransformVJPOp,
    MichaelisMentenOp,
    TanhSaturationOp,
    WeibullAdstockOp,
    media_transform,
)
from fastmmm.ops.testing import forbid_numba_object_mode

# Any numba object-mode fallback in this module is a failure.
pytestmark = pytest.mark.filterwarnings("error:Numba will use object mode:UserWarning")

B, T, C = 2, 9, 3

# adstock kind -> (options, separate-Op factory, param ranges)
ADSTOCKS = {
    "geometric": ({"l_max": None}, lambda o: GeometricAdstockOp(**o), [(0.1, 0.9)]),
    "delayed": (
        {"l_max": 4, "normalize": True},
        lambda o: DelayedAdstockOp(**o),
        [(0.1, 0.9), (0.2, 3.0)],
    ),
    "weibull_pdf": (
        {"l_max": 4},
        lambda o: WeibullAdstockOp(kind="pdf", **o),
        [(0.7, 3.0), (0.6, 3.0)],
    ),
    "weibull_cdf": (
        {"l_max": 3, "normalize": True},
        lambda o: WeibullAdstockOp(kind="cdf", **o),
        [(0.7, 3.0), (0.6, 3.0)],
    ),
}
# saturation kind -> (separate Op, param ranges)
SATURATIONS = {
    "hill": (HillOp, [(0.5, 2.0), (0.5, 2.5)]),
    "logistic": (LogisticSaturationOp, [(0.5, 3.0)]),
    "michaelis_menten": (MichaelisMentenOp, [(0.5, 2.0), (0.5, 2.0)]),
    "tanh": (TanhSaturationOp, [(0.5, 2.0), (0.5, 2.0)]),
}
COMBOS = [(a, s) for a in ADSTOCKS for s in SATURATIONS]
COMBO_IDS = [f"{a}-{s}" for a, s in COMBOS]


def _inputs(adstock, saturation, layout="2d", seed=0):
    """x, adstock params, saturation params, g.  layout "3d": (B, T, C) x with
    the first parameter of each transform batched (B, C), the rest shared (C,)."""
    rng = np.random.default_rng(seed)
    x_shape = (T, C) if layout == "2d" else (B, T, C)
    x = rng.uniform(0.1, 2.0, x_shape)

    def params(ranges):
        return [
            rng.uniform(lo, hi, (B, C) if layout == "3d" and i == 0 else (C,))
            for i, (lo, hi) in enumerate(ranges)
        ]

    ap, sp = params(ADSTOCKS[adstock][2]), params(SATURATIONS[saturation][1])
    return rng, x, ap, sp, rng.normal(size=x_shape)


def _sym(value, name):
    return pt.tensor(name, shape=(None,) * value.ndim, dtype="float64")


def _op(adstock, saturation, **over):
    return MediaTransformOp(adstock, saturation, **(ADSTOCKS[adstock][0] | over))


def _separate(adstock, saturation, x, ap, sp):
    opts = ADSTOCKS[adstock][0]
    return SATURATIONS[saturation][0]()(ADSTOCKS[adstock][1](opts)(x, *ap), *sp)


def _close(got, exp, tol=1e-12):
    assert np.shape(got) == np.shape(exp)
    np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------
# construction, graph-level behaviour


def test_props_pickle_and_bad_options():
    assert MediaTransformOp("geometric", "hill", l_max=4) == MediaTransformOp(
        "Geometric", "HILL", l_max=np.int64(4)
    )
    assert MediaTransformOp("geometric", "hill") != MediaTransformOp("geometric", "tanh")
    op = MediaTransformOp("weibull_pdf", "logistic", l_max=6, normalize=True)
    assert hash(op) == hash(pickle.loads(pickle.dumps(op)))
    assert op.vjp_op() == pickle.loads(pickle.dumps(op.vjp_op()))
    assert op.vjp_op(want_gx=False) != op.vjp_op()
    for args, kw in [
        (("adstock_x", "hill"), {}),
        (("geometric", "exp"), {}),
        (("delayed", "hill"), {}),  # needs l_max
        (("weibull_pdf", "hill"), {"l_max": 1}),
        (("geometric", "hill"), {"l_max": 2.5}),
        (("geometric", "hill"), {"normalize": True}),  # needs a finite l_max
    ]:
        with pytest.raises(ValueError):
            MediaTransformOp(*args, **kw)
    x, v = pt.matrix("x"), pt.vector("v")
    with pytest.raises(TypeError):
        MediaTransformOp("geometric", "hill")(x, v, v)  # 3 params expected
    with pytest.raises(TypeError, match="saturation_params"):
        media_transform(x, "geometric", "hill", [v], [v])
    with pytest.raises(ValueError, match="kappa"):
        media_transform(x, "geometric", "hill", [v], [pt.matrix(), v])  # (B, C) needs 3-D x


def test_helper_returns_y_and_infer_shape():
    x, a, k, s = pt.tensor3("x"), pt.matrix("a"), pt.vector("k"), pt.vector("s")
    y = media_transform(x, "geometric", "hill", [a], [k, s], l_max=3)
    assert isinstance(y.owner.op, MediaTransformOp) and y is y.owner.outputs[0]
    cache = y.owner.outputs[1]
    assert cache.type.ndim == 1 and cache.dtype == "float64"
    static = MediaTransformOp("geometric", "hill")(pt.tensor("xs", shape=(2, 5, 3)), k, k, k)
    assert static[1].type.shape == (4 * 2 * 5 * 3,)
    f = pytensor.function([x, a, k, s], [y.shape, cache.shape], mode="FAST_RUN")
    shape_y, shape_c = f(np.ones((2, 5, 3)), np.ones((2, 3)), np.ones(3), np.ones(3))
    assert tuple(shape_y) == (2, 5, 3) and tuple(shape_c) == (120,)
    assert not any(isinstance(n.op, MediaTransformOp) for n in f.maker.fgraph.apply_nodes)


def _vjp_nodes(outputs):
    return [n for n in applys_between([], outputs) if isinstance(n.op, MediaTransformVJPOp)]


@pytest.mark.parametrize("kind", ["shared", "constant"])
def test_data_x_skips_spend_gradient(kind):
    """x as pm.Data would give it (SharedVariable) or a TensorConstant: the grad
    graph uses want_gx=False, parameter gradients are right, and asking for the
    spend gradient raises instead of returning a wrong value."""
    _, x, ap, sp, g = _inputs("delayed", "hill", seed=4)
    sx = pytensor.shared(x, name="spend") if kind == "shared" else pt.constant(x)
    params = [_sym(p, f"p{i}") for i, p in enumerate(ap + sp)]
    y = media_transform(sx, "delayed", "hill", params[:2], params[2:], l_max=4, normalize=True)
    cost = (y * g).sum()
    grads = pytensor.grad(cost, params)
    (node,) = _vjp_nodes(grads)
    assert node.op.want_gx is False
    f = pytensor.function(params, grads, mode="FAST_COMPILE")
    _, cache = kernels.media_transform(x, "delayed", "hill", ap, sp, l_max=4, normalize=True)
    gx_ref, ga_ref, gs_ref = kernels.media_transform_vjp(
        x, g, cache, "delayed", "hill", ap, sp, l_max=4, normalize=True
    )
    assert gx_ref is None
    for got, exp in zip(f(*ap, *sp), ga_ref + gs_ref):
        _close(got, exp)
    if kind == "shared":
        with pytest.raises(NullTypeGradError, match="spend gradient is not computed"):
            pytensor.grad(cost, sx)


def test_free_x_gradient_only_when_used():
    """For a genuine variable x the grad graph has want_gx=True; the rewrite
    drops the spend gradient when only parameter gradients are compiled."""
    x, a, k = pt.matrix("x"), pt.vector("a"), pt.vector("k")
    y = media_transform(2.0 * x, "geometric", "logistic", [a], [k])  # x derived, not shared
    gx, ga, gk = pytensor.grad(y.sum(), [x, a, k])
    (node,) = _vjp_nodes([gx, ga, gk])
    assert node.op.want_gx is True
    for mode in ("FAST_COMPILE", "FAST_RUN"):
        f_params = pytensor.function([x, a, k], [ga, gk], mode=mode)
        f_all = pytensor.function([x, a, k], [gx, ga, gk], mode=mode)
        ops_p = [n.op for n in f_params.maker.fgraph.apply_nodes]
        ops_a = [n.op for n in f_all.maker.fgraph.apply_nodes]
        assert [o.want_gx for o in ops_p if isinstance(o, MediaTransformVJPOp)] == [False]
        assert [o.want_gx for o in ops_a if isinstance(o, MediaTransformVJPOp)] == [True]
        vals = (np.full((T, C), 0.5), np.full(C, 0.5), np.full(C, 1.0))
        for u, v in zip(f_params(*vals), f_all(*vals)[1:]):
            _close(u, v, 0)


def test_cache_is_not_differentiated():
    x, a, k, s = pt.matrix("x"), pt.vector("a"), pt.vector("k"), pt.vector("s")
    y, cache = MediaTransformOp("geometric", "hill", l_max=3)(x, a, k, s)
    with pytest.raises(NullTypeGradError):
        pytensor.grad(y.sum() + cache.sum(), a)
    with pytest.raises(NullTypeGradError):
        pytensor.grad(cache.sum(), a)
    with pytest.raises(NullTypeGradError):  # no second-order derivatives
        pytensor.grad(pytensor.grad(y.sum(), a).sum(), a)


# ---------------------------------------------------------------------------
# perform (ctypes path) against the numpy API and the separate Ops


def _check_against_references(adstock, saturation, layout, seed=0):
    _, x, ap, sp, g = _inputs(adstock, saturation, layout, seed)
    opts = ADSTOCKS[adstock][0]
    op = _op(adstock, saturation)
    sx, sg = _sym(x, "x"), _sym(g, "g")
    sps = [_sym(p, f"p{i}") for i, p in enumerate(ap + sp)]
    y, cache = op(sx, *sps)
    vjp_x = op.vjp_op(want_gx=True)(sx, *sps, cache, sg)
    vjp_nox = op.vjp_op(want_gx=False)(sx, *sps, cache, sg)
    y_sep = _separate(adstock, saturation, sx, sps[: len(ap)], sps[len(ap) :])
    grads_sep = pytensor.grad((y_sep * sg).sum(), [sx, *sps])
    grads_fused = pytensor.grad((y * sg).sum(), [sx, *sps])
    f = pytensor.function(
        [sx, *sps, sg],
        [y, cache, *vjp_x, *vjp_nox, y_sep, *grads_sep, *grads_fused],
        mode="FAST_COMPILE",
    )
    out = f(x, *ap, *sp, g)
    n = 1 + len(ap) + len(sp)
    yv, cv = out[:2]
    got_x, got_nox = out[2 : 2 + n], out[2 + n : 1 + 2 * n]
    ysep, gsep, gfused = out[1 + 2 * n], out[2 + 2 * n : 2 + 3 * n], out[2 + 3 * n :]

    y_ref, c_ref = kernels.media_transform(x, adstock, saturation, ap, sp, **opts)
    gx_ref, ga_ref, gs_ref = kernels.media_transform_vjp(
        x, g, c_ref, adstock, saturation, ap, sp, want_gx=True, **opts
    )
    _close(yv, y_ref)
    _close(cv, c_ref)
    refs = [gx_ref, *ga_ref, *gs_ref]
    for got, exp in zip(got_x, refs, strict=True):
        _close(got, exp)
    for got, exp in zip(got_nox, refs[1:], strict=True):
        _close(got, exp)
    for got, exp in zip(gfused, refs, strict=True):  # the L_op path (free x)
        _close(got, exp)
    # composition of the separate Ops: same maths, different code paths
    _close(yv, ysep)
    for got, exp in zip(gsep, refs, strict=True):
        _close(got, exp)


@pytest.mark.parametrize(("adstock", "saturation"), COMBOS, ids=COMBO_IDS)
def test_perform_matches_kernels_and_separate_ops(adstock, saturation):
    _check_against_references(adstock, saturation, "2d")


@pytest.mark.parametrize(("adstock", "saturation"), [("weibull_pdf", "hill"), ("geometric", "tanh")])
def test_perform_matches_kernels_3d(adstock, saturation):
    _check_against_references(adstock, saturation, "3d", seed=1)


@pytest.mark.parametrize(
    ("adstock", "saturation", "layout"),
    [
        ("geometric", "hill", "2d"),
        ("delayed", "logistic", "2d"),
        ("weibull_cdf", "michaelis_menten", "3d"),
        ("weibull_pdf", "tanh", "3d"),
    ],
)
def test_verify_grad_params(adstock, saturation, layout):
    rng, x, ap, sp, _ = _inputs(adstock, saturation, layout, seed=2)
    opts, na = ADSTOCKS[adstock][0], len(ap)

    def fn(*params):  # x is a constant: the want_gx=False path
        return media_transform(x, adstock, saturation, params[:na], params[na:], **opts)

    verify_grad(fn, [*ap, *sp], rng=rng, mode="FAST_COMPILE")


def test_verify_grad_free_x():
    rng, x, ap, sp, _ = _inputs("delayed", "michaelis_menten", "3d", seed=3)
    opts = ADSTOCKS["delayed"][0]

    def fn(xv, *params):
        return media_transform(xv, "delayed", "michaelis_menten", params[:2], params[2:], **opts)

    verify_grad(fn, [x, *ap, *sp], rng=rng, mode="FAST_COMPILE")


def test_perform_shape_errors():
    _, x, ap, sp, g = _inputs("geometric", "hill", "3d")  # alpha, kappa (B, C); slope (C,)
    sx, sa, sk, ss = pt.tensor3("x"), pt.matrix("a"), pt.matrix("k"), pt.vector("s")
    f = pytensor.function(
        [sx, sa, sk, ss],
        media_transform(sx, "geometric", "hill", [sa], [sk, ss]),
        mode="FAST_COMPILE",
    )
    with pytest.raises(ValueError, match="alpha"):
        f(x, np.full((3, C), 0.5), *sp)
    with pytest.raises(ValueError, match="slope"):
        f(x, *ap, sp[0], np.ones(C + 1))
    op = MediaTransformOp("geometric", "hill").vjp_op()
    sc, sg = pt.vector("c"), pt.tensor3("g")
    fv = pytensor.function([sx, sa, sk, ss, sc, sg], op(sx, sa, sk, ss, sc, sg), mode="FAST_COMPILE")
    with pytest.raises(ValueError, match="cache"):
        fv(x, *ap, *sp, np.zeros(4 * x.size - 1), g)


# ---------------------------------------------------------------------------
# numba backend


def _check_numba_against_perform(cases):
    """cases: (adstock, saturation, layout, want_gx); every node is one numba
    compilation (~0.5 s cold, cached on disk afterwards)."""
    inputs, values, outputs = [], [], []
    for i, (adstock, saturation, layout, want_gx) in enumerate(cases):
        _, x, ap, sp, g = _inputs(adstock, saturation, layout, seed=5 + i)
        op = _op(adstock, saturation)
        if layout == "3d":  # a non-contiguous x inside the graph
            sxt = _sym(x, f"xt{i}")
            sx, xval = sxt.transpose(2, 1, 0), np.ascontiguousarray(x.transpose(2, 1, 0))
            inputs.append(sxt)
        else:
            sx, xval = _sym(x, f"x{i}"), x
            inputs.append(sx)
        sps = [_sym(p, f"p{i}_{j}") for j, p in enumerate(ap + sp)]
        sg = _sym(g, f"g{i}")
        inputs += [*sps, sg]
        values += [xval, *ap, *sp, g]
        y, cache = op(sx, *sps)
        outputs += [y, cache, *op.vjp_op(want_gx)(sx, *sps, cache, sg)]
    with forbid_numba_object_mode():
        f_numba = pytensor.function(inputs, outputs, mode="NUMBA")
    f_py = pytensor.function(inputs, outputs, mode="FAST_COMPILE")
    for got, exp in zip(f_numba(*values), f_py(*values), strict=True):
        _close(got, exp, 1e-13)


def test_numba_matches_perform():
    """Each adstock and each saturation once, 2-D and 3-D, with and without gx."""
    _check_numba_against_perform(
        [
            ("geometric", "hill", "2d", False),
            ("delayed", "logistic", "3d", True),
            ("weibull_pdf", "michaelis_menten", "2d", True),
            ("weibull_cdf", "tanh", "3d", False),
        ]
    )


@pytest.mark.slow
def test_numba_matches_perform_all_combos():
    _check_numba_against_perform(
        [(a, s, ("2d", "3d")[i % 2], bool(i % 3)) for i, (a, s) in enumerate(COMBOS)]
    )


def test_numba_grad_graph_and_errors():
    """pytensor.grad through the fused Op compiled with NUMBA (rewrite applied),
    strided inputs, a shape error and NaN for an out-of-domain parameter."""
    rng = np.random.default_rng(6)
    x, a, k, s = pt.tensor3("x"), pt.vector("a"), pt.matrix("k"), pt.vector("s")
    y = media_transform(x, "geometric", "hill", [a], [k, s], l_max=5)
    g = rng.normal(size=(B, T, C))
    grads = pytensor.grad((y * g).sum(), [a, k, s])
    with forbid_numba_object_mode():
        f = pytensor.function([x, a, k, s], [y, *grads], mode="NUMBA")
    f_py = pytensor.function([x, a, k, s], [y, *grads], mode="FAST_COMPILE")
    vjps = [n.op for n in f.maker.fgraph.apply_nodes if isinstance(n.op, MediaTransformVJPOp)]
    assert [o.want_gx for o in vjps] == [False]

    def strided(v):
        out = np.empty(v.shape[:-1] + (2 * v.shape[-1],))
        out[..., ::2] = v
        return out[..., ::2]

    xv = strided(rng.uniform(0.1, 2.0, (B, T, C)))
    av, kv, sv = (
        strided(rng.uniform(0.1, 0.9, C)),
        strided(rng.uniform(0.5, 2, (B, C))),
        strided(rng.uniform(0.5, 2, C)),
    )
    for got, exp in zip(f(xv, av, kv, sv), f_py(xv, av, kv, sv), strict=True):
        _close(got, exp, 1e-13)
    with pytest.raises(ValueError):
        f(xv, av, kv, strided(np.ones(C + 1)))
    assert np.isnan(f(xv, av, strided(-kv), sv)[0]).all()


# ---------------------------------------------------------------------------
# PyMC model with pm.Data spend, nutpie numba backend


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
    sat, _ = kernels.media_transform(x, "geometric", "logistic", (truth["alpha"],), (truth["lam"],), l_max=8)
    y = sat @ truth["beta"] + rng.normal(0.0, truth["sigma"], Tn)
    return x, y, truth


def _model(x, y):
    import pymc as pm

    with pm.Model() as model:
        alpha = pm.Beta("alpha", 2, 2, shape=2)
        lam = pm.Gamma("lam", 3, 2, shape=2)
        beta = pm.HalfNormal("beta", 3, shape=2)
        sigma = pm.HalfNormal("sigma", 0.5)
        spend = pm.Data("spend", x)
        sat = media_transform(spend, "geometric", "logistic", [alpha], [lam], l_max=8)
        pm.Normal("y", sat @ beta, sigma, observed=y)
    return model


def test_pymc_logp_grad_skips_spend_gradient():
    pytest.importorskip("pymc")
    model = _model(*_simulate()[:2])
    grads = pytensor.grad(model.logp(), model.value_vars)
    assert [n.op.want_gx for n in _vjp_nodes(grads)] == [False]


def test_nutpie_numba_fused_recovers_parameters():
    nutpie = pytest.importorskip("nutpie")
    x, y, truth = _simulate()
    with forbid_numba_object_mode():
        compiled = nutpie.compile_pymc_model(_model(x, y), backend="numba")
    trace = nutpie.sample(compiled, draws=300, tune=300, chains=2, cores=1, seed=7, progress_bar=False)
    post = trace.posterior
    assert int(trace.sample_stats.diverging.sum()) == 0
    for name in ("alpha", "lam", "beta", "sigma"):
        mean = post[name].mean(("chain", "draw")).values
        sd = post[name].std(("chain", "draw")).values
        assert np.all(np.abs(mean - truth[name]) < 4 * sd + 1e-3), (name, mean, sd, truth[name])
    assert np.all(post["alpha"].std(("chain", "draw")).values < 0.05)
