"""The fast path (fastmmm.fastpath): the fused Rust log-density equals PyMC's.

* log-density and gradient of ``fastmmm._core.MmmProblem`` against the PyMC
  model's own (``model.logp()`` and its gradient, compiled by PyTensor in
  FAST_COMPILE mode) at random unconstrained points: every adstock x
  saturation x likelihood, with and without controls / trend / seasonality /
  intercept, direct beta and channel_share, custom priors of every supported
  distribution. The full grid is ``slow``; a representative subset runs by
  default. The pure-numpy reference of the same contract (``_fastref``) is
  checked too, so a disagreement says which side is off.
* the layout (:mod:`fastmmm.layout`) the problem is built from has the PyMC
  model's free variables, value variables, shapes and initial point;
* fits with ``backend="rust"`` (nuts-rs inside the Rust core) and
  ``backend="pytensor"`` (nutpie) agree within Monte Carlo error; the Rust
  backend reaches sampling in well under a second and the same seed gives the
  same draws.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings

import numpy as np
import pytest
from _fastref import RefProblem
from _fastref import pymc_logp_dlogp as _pymc_logp_dlogp

from fastmmm import fastpath as fp
from fastmmm.data import prepare
from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.layout import national_layout, prior_const
from fastmmm.model import build_model
from fastmmm.priors import Prior
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_dataset

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

ADSTOCKS = tuple(ADSTOCK_PARAMS)
SATURATIONS = tuple(SATURATION_PARAMS)
N_POINTS = 4


def _core():
    from fastmmm import _core

    if not hasattr(_core, "MmmProblem"):
        pytest.fail(
            "fastmmm._core has no MmmProblem: rebuild the extension (pip install -e .)", pytrace=False
        )
    return _core.MmmProblem


@pytest.fixture(scope="module")
def synth():
    df, truth = make_dataset(60, 3, adstock="geometric", saturation="hill", seed=3)
    return df, truth


def _spec(truth, **kw) -> ModelSpec:
    base = {
        "date_column": "date",
        "target": "sales",
        "channels": truth.channels,
        "controls": ("event",),
        "adstock": "geometric",
        "saturation": "hill",
        "l_max": 6,
        "yearly_seasonality": 2,
    }
    base.update(kw)
    return ModelSpec(**base)


def check_against_pymc(df, spec, n_points=N_POINTS, seed=0):
    """Rust and the numpy reference against PyMC at random unconstrained points."""
    ok, why = fp.supported(spec)
    assert ok, why
    data = prepare(df, spec)
    model = build_model(data, spec)
    layout = national_layout(spec, data)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    rust = fp.build_problem(layout, fp.problem_data(spec, data), problem_cls=_core())
    ref = RefProblem(layout.structure, fp.problem_data(spec, data), layout.blocks())
    pymc, x0 = _pymc_logp_dlogp(model)
    assert rust.n_dim == x0.size == ref.n_dim
    # The sampler starts where nutpie would (before its jitter): PyMC's initial point.
    np.testing.assert_allclose(layout.initial_point(), x0, rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(seed)
    lps = []
    for i in range(n_points):
        x = x0 + (0.0 if i == 0 else rng.normal(0.0, 0.7, x0.size))
        lp_p, g_p = pymc(x)
        lp_r, g_r = rust.logp_dlogp(x)
        lp_n, g_n = ref.logp_dlogp(x)
        assert np.isfinite(lp_p) and np.all(np.isfinite(g_p))
        scale = max(1.0, float(np.max(np.abs(g_p))))
        np.testing.assert_allclose(
            g_r, g_p, rtol=1e-9, atol=1e-9 * scale, err_msg=f"rust gradient, point {i}"
        )
        np.testing.assert_allclose(
            g_n, g_p, rtol=1e-9, atol=1e-9 * scale, err_msg=f"reference gradient, point {i}"
        )
        np.testing.assert_allclose(
            lp_r, lp_n, rtol=1e-12, atol=1e-12, err_msg=f"rust vs reference, point {i}"
        )
        # PyMC evaluates the constants of priors whose parameters are exact small numbers
        # (stored as float32 / int8 constants) in float32: log(0.5), gammaln(4), ... are off
        # by ~1e-8 each. The fused log-density uses float64 constants. So the absolute value
        # agrees to float32 precision of the constant, every difference to 1e-9.
        np.testing.assert_allclose(lp_r, lp_p, rtol=1e-9, atol=1e-6 * x0.size, err_msg=f"logp, point {i}")
        lps.append((lp_r, lp_p))
    (r0, p0) = lps[0]
    for i, (r, p) in enumerate(lps[1:], 1):
        assert abs((r - r0) - (p - p0)) <= 1e-9 * max(abs(p), abs(p0), 1.0), (i, r - r0, p - p0)
    # expand: the blocks' constrained values are PyMC's
    out = rust.expand(x0)
    assert out.shape == (rust.n_expanded,)
    np.testing.assert_allclose(out, ref.expand(x0), rtol=1e-12, atol=1e-12)
    return rust


# ---------------------------------------------------------------------- layout
def test_layout_follows_free_rvs_and_value_vars(synth):
    df, truth = synth
    spec = _spec(truth, adstock="delayed", saturation="michaelis_menten", likelihood="studentt")
    data = prepare(df, spec)
    model = build_model(data, spec)
    layout = national_layout(spec, data)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    assert [t.value_name for t in layout.terms] == [v.name for v in model.value_vars]
    blocks = layout.blocks()
    assert [b["role"] for b in blocks] == [
        "level",
        "trend",
        "gamma_fourier",
        "gamma_control",
        "adstock_0",
        "adstock_1",
        "saturation_1",
        "roas",
        "sigma",
        "nu",
    ]
    assert [b["transform"] for b in blocks] == [
        "identity",
        "identity",
        "identity",
        "identity",
        "logodds",
        "interval",
        "log",
        "log",
        "log",
        "log",
    ]
    theta = blocks[5]
    assert theta["dist"] == "Uniform" and theta["lower"] == [0.0] * 3 and theta["upper"] == [5.0] * 3
    assert layout.structure["relative_param"] == 1 and layout.structure["fixed_saturation"] == [(0, 1.0)]
    # nutpie's raveled initial point has the same layout
    point = model.initial_point()
    sizes = [int(np.prod(point[v.name].shape, dtype=int)) for v in model.value_vars]
    assert sizes == [b["size"] for b in blocks]
    # and the deterministics the problem expands to are the model's
    names = {v.name for v in model.deterministics}
    assert {d.name for d in layout.deterministics} <= names


def test_layout_blocks_equal_what_the_pymc_graph_says(synth):
    """The blocks built from the spec (no PyMC) equal those read off the PyMC model's graph."""
    from _pymc_layout import blocks_from_model

    df, truth = synth
    for extra in (
        {},
        {"likelihood": "studentt", "adstock": "weibull_cdf", "saturation": "tanh"},
        {"priors": CUSTOM_PRIORS[0], "saturation": "logistic"},
        {"priors": CUSTOM_PRIORS[1], "saturation": "logistic"},
        {
            "priors": CUSTOM_PRIORS[2],
            "saturation": "logistic",
            "likelihood": "studentt",
            "media_prior": "share",
        },
        {"media_prior": "share"},
        {"priors": CUSTOM_PRIORS[3], "saturation": "logistic"},
    ):
        spec = _spec(truth, **extra)
        data = prepare(df, spec)
        want = blocks_from_model(build_model(data, spec))
        got = national_layout(spec, data).blocks()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert (g["role"], g["size"], g["dist"], g["transform"]) == (
                w["role"],
                w["size"],
                w["dist"],
                w["transform"],
            )
            for k in w["params"]:
                np.testing.assert_allclose(g["params"][k], w["params"][k], rtol=1e-14, err_msg=(g["role"], k))
            np.testing.assert_allclose(g["const"], w["const"], rtol=1e-12, err_msg=g["role"])
            for k in ("lower", "upper"):
                assert (g[k] is None) == (w[k] is None), (g["role"], k)
                if g[k] is not None:
                    np.testing.assert_allclose(g[k], w[k], rtol=1e-14)


def test_prior_constants_match_scipy():
    from scipy import stats

    v = np.array([0.6, 1.7])
    cases = [
        ("Normal", {"mu": 0.5, "sigma": 2.0}, stats.norm(0.5, 2.0).logpdf(v)),
        ("HalfNormal", {"sigma": 0.7}, stats.halfnorm(scale=0.7).logpdf(v)),
        ("LogNormal", {"mu": 0.2, "sigma": 0.7}, stats.lognorm(0.7, scale=np.exp(0.2)).logpdf(v)),
        ("Gamma", {"alpha": 3.0, "beta": 2.0}, stats.gamma(3.0, scale=0.5).logpdf(v)),
        ("Beta", {"alpha": 2.0, "beta": 5.0}, stats.beta(2.0, 5.0).logpdf(v / 2)),
        ("Exponential", {"lam": 1.5}, stats.expon(scale=1 / 1.5).logpdf(v)),
        ("StudentT", {"nu": 4.0, "mu": 1.0, "sigma": 0.5}, stats.t(4.0, 1.0, 0.5).logpdf(v)),
        ("HalfStudentT", {"nu": 3.0, "sigma": 2.0}, np.log(2) + stats.t(3.0, 0, 2.0).logpdf(v)),
        (
            "TruncatedNormal",
            {"mu": 1.5, "sigma": 1.0, "lower": 0.5, "upper": 4.0},
            stats.truncnorm(-1.0, 2.5, 1.5, 1.0).logpdf(v),
        ),
        (
            "TruncatedNormal",
            {"mu": 9.0, "sigma": 1.0, "lower": 0.1, "upper": np.inf},
            stats.truncnorm(-8.9, np.inf, 9.0, 1.0).logpdf(v),
        ),
        ("Uniform", {"lower": 0.0, "upper": 7.0}, stats.uniform(0, 7).logpdf(v)),
    ]
    from _fastref import _kernel

    for dist, p, want in cases:
        pa = {k: np.full(2, val) for k, val in p.items()}
        x = v / 2 if dist == "Beta" else v
        got = prior_const(dist, pa) + _kernel(dist, x, pa)[0]
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=dist)


# ---------------------------------------------------------------------- log-density vs PyMC
FAST_CASES = [
    # (adstock, saturation, likelihood, extra spec fields)
    ("geometric", "hill", "normal", {}),
    ("delayed", "logistic", "studentt", {"controls": (), "yearly_seasonality": 0}),
    ("weibull_pdf", "michaelis_menten", "normal", {"trend": False, "adstock_normalize": False}),
    ("weibull_cdf", "tanh", "studentt", {"intercept": False}),
    ("geometric", "logistic", "normal", {"priors": {"beta": "HalfNormal(sigma=2)"}}),
]


@pytest.mark.parametrize("adstock, saturation, likelihood, extra", FAST_CASES, ids=lambda v: str(v))
def test_logp_matches_pymc(synth, adstock, saturation, likelihood, extra):
    df, truth = synth
    spec = _spec(truth, adstock=adstock, saturation=saturation, likelihood=likelihood, **extra)
    check_against_pymc(df, spec)


@pytest.mark.parametrize("adstock, saturation, likelihood, extra", FAST_CASES, ids=lambda v: str(v))
def test_log_target_logp_matches_pymc(synth, adstock, saturation, likelihood, extra):
    """The multiplicative model: the same terms on log(y / mean y), Rust == PyMC."""
    df, truth = synth
    spec = _spec(
        truth, adstock=adstock, saturation=saturation, likelihood=likelihood, log_target=True, **extra
    )
    assert fp.supported(spec) == (True, "")
    check_against_pymc(df, spec)


#: One custom prior per supported distribution (and each transform), several per spec.
CUSTOM_PRIORS = [
    {  # Normal, StudentT, Beta per channel, Gamma(mu, sigma), HalfStudentT on direct beta
        "intercept": Prior("Normal", mu=0.2, sigma=0.3),
        "trend": Prior("StudentT", nu=4, mu=0.0, sigma=0.5),
        "adstock_alpha": Prior("Beta", alpha=[1.0, 2.0, 3.0], beta=3.0),
        "sigma": Prior("Gamma", mu=0.3, sigma=0.2),
        "beta": Prior("HalfStudentT", nu=3, sigma=1.0),
    },
    {  # Uniform (interval), LogNormal, Exponential(scale), HalfNormal per-channel override
        "adstock_alpha": Prior("Uniform", lower=0.0, upper=1.0),
        "saturation_lam": Prior("LogNormal", mu=1.0, sigma=0.5),
        "sigma": Prior("Exponential", scale=0.5),
        "beta": Prior("HalfNormal", sigma=1.5),
        "beta.search": Prior("HalfNormal", sigma=0.5),
    },
    {  # TruncatedNormal lower only (lowerbound) and unbounded (identity); Gamma(alpha, beta)
        "intercept": Prior("TruncatedNormal", mu=0.5, sigma=1.0),
        "saturation_lam": Prior("TruncatedNormal", mu=2.0, sigma=1.0, lower=0.1),
        "channel_share": Prior("Gamma", alpha=2.0, beta=10.0),
        "nu": Prior("Exponential", lam=0.1),
    },
    {  # ROAS priors: global and per channel
        "roas": Prior("LogNormal", mu=0.5, sigma=0.4),
        "roas.search": Prior("LogNormal", mu=-0.2, sigma=0.3),
    },
]


@pytest.mark.parametrize("which", range(len(CUSTOM_PRIORS)))
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # PyMC folding inf bounds
def test_logp_matches_pymc_custom_priors(synth, which):
    df, truth = synth
    likelihood = "studentt" if which == 2 else "normal"
    # The third set puts a prior on channel_share: the share parameterisation.
    media_prior = "share" if "channel_share" in CUSTOM_PRIORS[which] else "roas"
    spec = _spec(
        truth,
        saturation="logistic",
        likelihood=likelihood,
        priors=CUSTOM_PRIORS[which],
        media_prior=media_prior,
    )
    check_against_pymc(df, spec, seed=which)


def _grid():
    variants = [
        {},
        {"controls": (), "yearly_seasonality": 0, "trend": False},
        {"intercept": False},
        {"priors": {"beta": "HalfNormal(sigma=2)"}},
        {"log_target": True},
        {"log_target": True, "controls": (), "yearly_seasonality": 0, "trend": False},
    ]
    for a, s, lik in itertools.product(ADSTOCKS, SATURATIONS, ("normal", "studentt")):
        for i, v in enumerate(variants):
            yield pytest.param(a, s, lik, v, id=f"{a}-{s}-{lik}-v{i}")


@pytest.mark.slow
@pytest.mark.parametrize("adstock, saturation, likelihood, extra", list(_grid()))
def test_logp_matches_pymc_full_grid(synth, adstock, saturation, likelihood, extra):
    df, truth = synth
    spec = _spec(truth, adstock=adstock, saturation=saturation, likelihood=likelihood, **extra)
    check_against_pymc(df, spec, n_points=6)


def test_with_data_equals_a_fresh_problem(synth):
    df, truth = synth
    # A spec whose priors do not depend on the data (the default ROAS prior's mean does: the
    # reference ROAS of the data; with_data keeps a problem's priors).
    spec = _spec(truth, media_prior="share")
    data = prepare(df, spec)
    p1 = fp.build_problem(national_layout(spec, data), fp.problem_data(spec, data))
    other = prepare(df.assign(sales=df["sales"] * 1.3, tv=df["tv"][::-1].to_numpy()), spec)
    p2 = p1.with_data(fp.problem_data(spec, other))
    p3 = fp.build_problem(national_layout(spec, other), fp.problem_data(spec, other))
    x = np.linspace(-0.5, 0.5, p1.n_dim)
    a, ga = p2.logp_dlogp(x)
    b, gb = p3.logp_dlogp(x)
    assert a == b and np.array_equal(ga, gb)
    assert p1.logp_dlogp(x)[0] != a


def test_default_roas_prior_follows_the_data(synth):
    """The default ROAS prior's mean is the data's reference ROAS (20% of the target over the
    total spend), the same for every channel: it scales with the target's units."""
    from fastmmm.layout import REFERENCE_MEDIA_SHARE, amplitude_prior

    df, truth = synth
    spec = _spec(truth)
    data = prepare(df, spec)
    ref = REFERENCE_MEDIA_SHARE * df["sales"].sum() / df[list(truth.channels)].to_numpy().sum()
    p = amplitude_prior(spec, data)
    assert p.dist == "LogNormal"
    mean = np.exp(np.asarray(p["mu"]) + np.asarray(p["sigma"]) ** 2 / 2)
    np.testing.assert_allclose(mean, ref, rtol=1e-12)
    big = prepare(df.assign(sales=df["sales"] * 1000.0), spec)
    np.testing.assert_allclose(
        np.exp(np.asarray(amplitude_prior(spec, big)["mu"]) - np.asarray(p["mu"])), 1000.0
    )
    # a user's ROAS prior is used as given
    user = _spec(truth, priors={"roas": "LogNormal(mu=0.5, sigma=0.4)"})
    assert amplitude_prior(user, data) == Prior("LogNormal", mu=[0.5] * 3, sigma=[0.4] * 3)


# ---------------------------------------------------------------------- support
def test_supported_says_why_not(synth):
    _, truth = synth
    assert fp.supported(_spec(truth)) == (True, "")
    mixed = _spec(truth, adstock={"tv": "geometric", "search": "weibull_cdf", "social": "geometric"})
    ok, why = fp.supported(mixed)
    assert not ok and "channel groups" in why
    upper = _spec(truth, priors={"intercept": Prior("TruncatedNormal", mu=0.5, sigma=1.0, upper=2.0)})
    ok, why = fp.supported(upper)
    assert not ok and "upper bound" in why


def test_backend_rust_refuses_an_unsupported_spec(synth):
    from fastmmm.fit import MMM

    df, truth = synth
    mixed = _spec(truth, saturation={"tv": "hill", "search": "logistic", "social": "hill"})
    with pytest.raises(ValueError, match="backend='rust'.*channel groups"):
        MMM(mixed).fit(df, draws=10, tune=10, backend="rust", progress=False)
    with pytest.raises(ValueError, match="backend"):
        MMM(mixed).fit(df, draws=10, tune=10, backend="jax", progress=False)


def test_auto_logs_why_it_uses_pytensor(synth, caplog, monkeypatch):
    from fastmmm import fit

    df, truth = synth
    mixed = _spec(truth, saturation={"tv": "hill", "search": "logistic", "social": "hill"})
    monkeypatch.setattr(fit, "_pytensor_compiled", _no_compile)
    with caplog.at_level(logging.INFO, logger="fastmmm"), pytest.raises(_Stop):
        fit.MMM(mixed).fit(df, draws=10, tune=10, progress=False)
    assert any(
        "fast path not available" in r.getMessage() and "channel groups" in r.getMessage()
        for r in caplog.records
    )
    assert _no_compile.backend == "pytensor"


class _Stop(Exception):
    pass


def _no_compile(build):
    _no_compile.backend = "pytensor"
    raise _Stop


# ---------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def example_df():
    import pandas as pd
    from test_fit import EXAMPLE

    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not found")
    return pd.read_csv(EXAMPLE)


@pytest.fixture(scope="module")
def both_fits(example_df):
    from test_fit import example_spec

    from fastmmm.fit import MMM, clear_compile_cache

    clear_compile_cache()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Different seeds: independent runs, compared through their Monte Carlo errors below.
        for backend, seed in (("rust", 11), ("pytensor", 12)):
            out[backend] = MMM(example_spec()).fit(
                example_df, draws=1000, tune=1000, chains=2, seed=seed, progress=False, backend=backend
            )
    return out


def test_rust_backend_is_used_and_reaches_sampling_fast(both_fits):
    r = both_fits["rust"]
    assert r.backend == "rust" and both_fits["pytensor"].backend == "pytensor"
    # Nothing to compile: the layout and the Rust problem are built in milliseconds.
    assert r.timing["compile_s"] == 0.0, r.timing
    assert r.timing["build_s"] < 0.2, r.timing
    v = r.validate()
    assert v.divergences == 0 and v.rhat_max < 1.01, v.block()


def _assert_same_posterior(ra, rb):
    """Posterior means of every parameter agree within their Monte Carlo errors."""
    from fastmmm.convergence import mcse_mean

    a, b = ra.posterior, rb.posterior
    params = [n for n in b.posterior if n not in ("mu", "channel_contribution")]
    za = {}
    for n in params:
        xa = a[n].reshape(a.n_chains, a.n_draws, -1)
        xb = b[n].reshape(b.n_chains, b.n_draws, -1)
        se = np.sqrt(mcse_mean(xa) ** 2 + mcse_mean(xb) ** 2)
        za[n] = (xa.mean(axis=(0, 1)) - xb.mean(axis=(0, 1))) / se
    z = np.abs(np.concatenate([np.ravel(v) for v in za.values()]))
    # Each |z| is ~ |N(0, 1)| if the two samplers target the same posterior: nearly all
    # within 2 MCSE, none far out, mean square ~1.
    assert np.mean(z > 2) <= 0.15, za
    assert z.max() < 4.0, za
    assert np.mean(z**2) < 2.0, za


@pytest.mark.slow
def test_rust_and_pytensor_posteriors_agree_on_synthetic_hill():
    from fastmmm.fit import MMM
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(156, 6, adstock="geometric", saturation="hill", seed=2)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend, seed in (("rust", 25), ("pytensor", 26)):
            # 4000 draws: with 1000, a single run's MCSE of this Hill posterior is itself noisy.
            fits[backend] = MMM(spec).fit(
                df, draws=4000, tune=1000, chains=2, seed=seed, progress=False, backend=backend
            )
    assert fits["rust"].backend == "rust" and fits["pytensor"].backend == "pytensor"
    _assert_same_posterior(fits["rust"], fits["pytensor"])


def test_rust_and_pytensor_posteriors_agree(both_fits):

    a, b = both_fits["rust"].posterior.posterior, both_fits["pytensor"].posterior.posterior
    names = [n for n in b if not n.endswith("__")]
    assert sorted(a) == sorted(names)
    for n in names:
        assert a.dims[n] == b.dims[n], n
        for d in a.dims[n][2:]:
            assert list(a.coord(d, a[n].shape[a.dims[n].index(d)])) == list(
                b.coord(d, b[n].shape[b.dims[n].index(d)])
            ), (n, d)
    # and the ArviZ object of either backend is built on request
    assert set(both_fits["rust"].idata.posterior.data_vars) >= set(names)
    _assert_same_posterior(both_fits["rust"], both_fits["pytensor"])
    # The summary downstream works the same for both.
    sa, sb = both_fits["rust"].summary(), both_fits["pytensor"].summary()
    assert sa.keys() == sb.keys() and sa["channels"].keys() == sb["channels"].keys()
    assert (sa["backend"], sb["backend"]) == ("rust", "pytensor")


def test_same_seed_gives_the_same_draws_and_nutpie_stats(example_df):
    """nuts-rs in the Rust core: one seed, the same draws run to run; another seed, others.
    The sample stats carry nutpie's names."""
    from test_fit import example_spec

    from fastmmm.fit import MMM

    def run(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return (
                MMM(example_spec())
                .fit(example_df, draws=100, tune=100, chains=2, seed=seed, progress=False, backend="rust")
                .posterior
            )

    a, b, c = run(5), run(5), run(6)
    for n in a.posterior:
        assert np.array_equal(a[n], b[n]), n
    assert not np.array_equal(a["sigma"], c["sigma"])
    for name in (
        "diverging",
        "depth",
        "step_size",
        "energy",
        "n_steps",
        "logp",
        "mean_tree_accept",
        "maxdepth_reached",
    ):
        v = a.stat(name)
        assert v is not None and v.shape == (2, a.n_draws), name
    assert a.stat("diverging").dtype == bool
    assert a.groups["adaptation"]["mass_matrix_inv"].shape == (2, a.attrs["n_dim"])
    assert np.all(a.groups["adaptation"]["mass_matrix_inv"] > 0)
    assert a.groups["warmup_sample_stats"]["n_steps"].shape == (2, 100)
    assert a.attrs["gradient_evaluations"] > 400


def test_draws_that_fail_the_checks_are_extended_until_they_pass(synth):
    """The core checks R-hat and bulk ESS after the planned draws and continues the same
    chains in rounds of draws // 2 until they pass or reach max_draws; the statistics it
    checked are the ones validate() reports (kept on the posterior, equal to a recomputation)."""
    from fastmmm.diagnostics import DEFAULT_THRESHOLDS, convergence_summary
    from fastmmm.fit import MMM

    df, truth = synth
    spec = _spec(truth)
    fit = MMM(spec).fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # target_accept given: no resampling after a divergence, so the runs share their chains.
        kw = dict(draws=60, tune=200, chains=2, seed=4, progress=False, check=False, target_accept=0.95)
        exact = fit(df, max_draws=60, **kw)
        ext = fit(df, **kw)
        capped = fit(df, max_draws=90, **kw)
    ess_needed = DEFAULT_THRESHOLDS["ess"] * 2
    # 60 draws cannot hold a bulk ESS of 200 without anticorrelated draws: exact fails the check.
    assert exact.posterior.n_draws == 60 and exact.validate().ess_bulk_min < ess_needed
    assert ext.posterior.n_draws in range(90, 241, 30)
    assert ext.posterior.attrs["draws_planned"] == 60 and ext.posterior.attrs["max_draws"] == 240
    v = ext.validate()
    if ext.posterior.n_draws < 240:  # stopped early: because it passed
        assert v.rhat_max < DEFAULT_THRESHOLDS["rhat"] and v.ess_bulk_min >= ess_needed
    # The same chains, continued: the first 60 draws are the exact run's.
    for name in exact.posterior.posterior:
        np.testing.assert_array_equal(ext.posterior[name][:, :60], exact.posterior[name], err_msg=name)
    assert capped.posterior.n_draws == 90
    for r in (exact, ext, capped):
        kept = dict(r.posterior.convergence)
        r.posterior.convergence = None
        assert convergence_summary(r.posterior) == pytest.approx(kept, rel=1e-12), kept
    for bad in (59, True, 1.5e2):
        with pytest.raises(ValueError, match="max_draws"):
            fit(df, draws=60, tune=10, chains=2, seed=4, progress=False, max_draws=bad)


def test_divergent_draws_at_the_default_target_accept_are_sampled_again(synth, monkeypatch):
    """The policy: divergences at the default target_accept -> one new run at
    TARGET_ACCEPT_RETRY, its reason in attrs and both runs' time counted; a target_accept the
    user chose is kept, divergences or not."""
    from fastmmm import fit as fit_mod
    from fastmmm.fit import MMM, TARGET_ACCEPT, TARGET_ACCEPT_RETRY

    real = fit_mod._sample_once
    calls = []

    def diverging_at_first(build, backend, *, target_accept, **kw):
        out = real(build, backend, target_accept=target_accept, **kw)
        calls.append(target_accept)
        div = out.posterior.stat("diverging")
        div[...] = False
        if target_accept < TARGET_ACCEPT_RETRY:
            div[0, :3] = True  # three divergent draws
        return out

    monkeypatch.setattr(fit_mod, "_sample_once", diverging_at_first)
    df, truth = synth
    kw = dict(draws=100, tune=100, chains=2, seed=1, progress=False, check=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(_spec(truth)).fit(df, **kw)
    assert calls == [TARGET_ACCEPT, TARGET_ACCEPT_RETRY]
    assert r.posterior.attrs["target_accept"] == TARGET_ACCEPT_RETRY
    assert "3 divergent draws at target_accept 0.95" in r.posterior.attrs["resampled"]
    assert r.validate().divergences == 0
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(_spec(truth)).fit(df, target_accept=0.9, **kw)
    assert calls == [0.9] and "resampled" not in r.posterior.attrs
    assert r.validate().divergences == 3


def test_second_rust_fit_swaps_data_without_rebuilding(example_df, both_fits):
    from test_fit import example_spec

    from fastmmm.fit import MMM

    other = example_df.assign(y=example_df["y"] * 1.05)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = MMM(example_spec()).fit(
            other, draws=200, tune=200, chains=2, seed=3, progress=False, backend="rust"
        )
    assert r2.backend == "rust"
    assert r2.timing["compile_s"] == 0.0 and r2.timing["build_s"] < 0.2
    assert time.perf_counter() - t0 < 30
    # The new data were used: the fitted mean follows the new target scale.
    mu = r2.idata.posterior["mu"].mean(("chain", "draw")).values * r2.data.scales.target_scale
    np.testing.assert_allclose(mu.mean(), other["y"].mean(), rtol=0.02)
    parts = r2.contributions_over_time()
    np.testing.assert_allclose(parts.drop(columns="fitted").sum(axis=1), parts["fitted"], rtol=1e-10)
