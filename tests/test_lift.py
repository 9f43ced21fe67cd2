"""Lift-test calibration (fastmmm.lift): validation, the modelled lift against
numpy, the confounded-ROAS acceptance test, persistence, refits and the CLI.

All fits with lift tests share one compiled model (same spec, shapes and number
of tests), built once by the module-scoped ``fit_after`` fixture.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from fastmmm import kernels as K
from fastmmm.data import DataError
from fastmmm.fit import MMM, _national_build
from fastmmm.lift import LiftTests, add_lift_likelihood, modelled_lift, read_lift_tests
from fastmmm.results import MMMResult
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_confounded_dataset, make_lift_tests

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

DRAWS = {"draws": 500, "tune": 500, "chains": 2, "seed": 1, "progress": False}


def _spec(**kw) -> ModelSpec:
    base = {
        "date_column": "date",
        "target": "sales",
        "channels": ("tv", "search"),
        "saturation": "hill",
        "l_max": 8,
        "yearly_seasonality": 2,
    }
    base.update(kw)
    return ModelSpec(**base)


def _lift_df(**over) -> pd.DataFrame:
    row = {
        "channel": "search",
        "spend_before": 1000.0,
        "spend_after": 1500.0,
        "lift": 5000.0,
        "lift_se": 800.0,
        "weeks": 4,
    }
    row.update(over)
    return pd.DataFrame([row])


@pytest.fixture(scope="module")
def confounded():
    """Data where latent demand drives search spend and sales, and two lift tests on search."""
    df, truth = make_confounded_dataset(seed=0)
    m = float(df["search"].mean())
    # A launch-style test (0 -> average spend for 8 weeks) and a 50% cut for 6 weeks,
    # each with a 10% standard error and seeded measurement noise.
    lifts = make_lift_tests(truth, [("search", 0.0, m, 8), ("search", m, 0.5 * m, 6)], se_frac=0.1, seed=0)
    return df, truth, lifts


def _fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sampling-diagnostics warnings of short runs
        return MMM(_spec()).fit(df, **DRAWS, **kw)


@pytest.fixture(scope="module")
def fit_before(confounded):
    df, _, _ = confounded
    return _fit(df)


@pytest.fixture(scope="module")
def fit_after(confounded):
    df, _, lifts = confounded
    return _fit(df, lift_tests=lifts)


# ---------------------------------------------------------------------- acceptance
def test_lift_test_corrects_confounded_roas(fit_before, fit_after, confounded):
    """Without the lift tests the confounded channel's ROAS interval misses the truth
    (biased upward); with them it covers it."""
    _, truth, _ = confounded
    c = truth.extra["confounded_channel"]
    true_roas = float(truth.roas[list(truth.channels).index(c)])
    before = fit_before.channel_summary().loc[c]
    after = fit_after.channel_summary().loc[c]
    print(
        f"\n{c}: true ROAS {true_roas:.3f}; without lift tests {before.roas_mean:.3f} "
        f"[{before.roas_low:.3f}, {before.roas_high:.3f}] ({fit_before.backend}); with lift tests "
        f"{after.roas_mean:.3f} [{after.roas_low:.3f}, {after.roas_high:.3f}] ({fit_after.backend})"
    )
    assert (
        fit_before.backend == "rust" and fit_after.backend == "rust"
    )  # lift tests are in the fused log-density
    assert before.roas_low > true_roas, "without lift tests the interval should miss the truth, above it"
    assert after.roas_low <= true_roas <= after.roas_high, (
        "with lift tests the interval should cover the truth"
    )
    assert fit_after.validate().divergences == 0


# ---------------------------------------------------------------------- the modelled lift
def _fixed_point(model, spec, rng):
    """Replacements for the model's parameters (and beta) by fixed values."""
    from fastmmm.model import media_designs

    c = len(spec.channels)
    vals = {"beta": rng.uniform(0.1, 0.5, c)}
    for d in media_designs(spec):
        n = len(d.channels)
        for p in d.adstock_params:
            vals[d.var(f"adstock_{p}")] = rng.uniform(0.2, 0.7, n)
        for p in d.saturation_params:
            vals[d.var(f"saturation_{p}")] = rng.uniform(0.7, 2.0, n)
    return vals


def pt_const(v):
    import pytensor.tensor as pt

    return pt.as_tensor_variable(np.asarray(v, dtype=np.float64))


@pytest.mark.parametrize(
    "kw",
    [
        {},  # geometric + Hill, normalised adstock: steady state = spend
        {"adstock_normalize": False},  # steady state = spend * sum of adstock weights
        {"saturation": {"tv": "logistic", "search": "hill"}},  # two channel groups
    ],
    ids=["normalised", "unnormalised", "mixed-kinds"],
)
def test_modelled_lift_matches_numpy_at_fixed_parameters(confounded, kw):
    from fastmmm.data import prepare
    from fastmmm.model import build_model, kappa_scale, media_designs

    df, _, _ = confounded
    spec = _spec(**kw)
    data = prepare(df, spec)
    lifts = pd.DataFrame(
        [
            {
                "channel": "search",
                "spend_before": 2000.0,
                "spend_after": 9000.0,
                "lift": 1.0,
                "lift_se": 1.0,
                "weeks": 3,
            },
            {
                "channel": "tv",
                "spend_before": 15000.0,
                "spend_after": 5000.0,
                "lift": -1.0,
                "lift_se": 1.0,
                "days": 35,
            },
        ]
    )
    lift = read_lift_tests(lifts, spec, frequency="W")
    model = build_model(data, spec)
    add_lift_likelihood(model, spec, data, lift)
    vals = _fixed_point(model, spec, np.random.default_rng(3))
    from pytensor.graph import clone_replace

    expr = clone_replace(model["lift_model"], {model[k]: pt_const(v) for k, v in vals.items()})
    got = expr.eval(mode="FAST_COMPILE") * data.scales.target_scale

    # numpy: periods * beta_c * (sat(x1 * m) - sat(x0 * m)) * target_scale, m the adstock weight sum
    expected = []
    for i, ch in enumerate(lift.channel):
        j = spec.channels.index(ch)
        s = data.scales.channel_scale[j]
        kind = spec.saturation_by_channel[j]
        d = next(d for d in media_designs(spec) if j in d.channels)
        k = d.channels.index(j)
        alpha = vals[d.var("adstock_alpha")][k]
        m = (
            1.0
            if spec.adstock_normalize
            else float(np.sum(K.adstock_weights("geometric", alpha, l_max=spec.l_max)))
        )
        xs = np.array([[lift.spend_before[i] / s, lift.spend_after[i] / s]]) * m
        if kind == "hill":
            ks = kappa_scale(np.asarray(data.spend_scaled)[:, list(d.channels)])[k]
            sat = K.hill(
                xs.T,
                [vals[d.var("saturation_kappa")][k] * ks],
                [vals[d.var("saturation_slope")][k]],
            )[:, 0]
        else:
            sat = K.logistic_saturation(xs.T, [vals[d.var("saturation_lam")][k]])[:, 0]
        expected.append(lift.periods[i] * vals["beta"][j] * (sat[1] - sat[0]) * data.scales.target_scale)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert lift.periods.tolist() == [3.0, 5.0]


def test_posterior_lift_model_matches_numpy(fit_after):
    """The deterministic lift_model of the fit equals the numpy recomputation on the same draws."""
    graph = fit_after.draws("lift_model") * fit_after.data.scales.target_scale
    np.testing.assert_allclose(modelled_lift(fit_after), graph, rtol=1e-9, atol=1e-6)


def test_summary_shows_lift_tests(fit_after, confounded):
    _, _, lifts = confounded
    s = fit_after.summary()
    rows = s["lift_tests"]
    assert len(rows) == 2
    for r, (_, obs) in zip(rows, lifts.iterrows()):
        assert r["channel"] == "search" and r["lift"] == pytest.approx(obs["lift"])
        assert r["lift_model"]["low"] <= r["lift_model"]["mean"] <= r["lift_model"]["high"]
        # the calibrated model agrees with each measurement within a few standard errors
        assert abs(r["lift_model"]["mean"] - r["lift"]) < 4 * r["lift_se"]
    json.dumps(s, default=float)


def test_save_load_keeps_lift_tests(fit_after, tmp_path):
    fit_after.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["lift_tests"]["channel"] == ["search", "search"]
    back = MMMResult.load(tmp_path / "m")
    assert isinstance(back.lift_tests, LiftTests)
    assert back.lift_tests.to_dict() == fit_after.lift_tests.to_dict()
    assert back.summary()["lift_tests"] == fit_after.summary()["lift_tests"]


def test_refit_same_count_reuses_compiled_model_with_new_values(fit_after, confounded):
    df, _, lifts = confounded
    halved = lifts.assign(lift=lifts["lift"] / 2)
    r = _fit(df, lift_tests=halved)
    assert r.timing["compile_s"] == 0.0  # same structure and number of tests: with_data swap
    new = [t["lift_model"]["mean"] for t in r.summary()["lift_tests"]]
    old = [t["lift_model"]["mean"] for t in fit_after.summary()["lift_tests"]]
    assert new[0] < 0.9 * old[0]  # the swapped-in measurements are the ones used


def test_cli_fit_with_lift_tests(fit_after, confounded, tmp_path, capsys):
    from fastmmm.cli import main

    df, _, lifts = confounded
    df.to_csv(tmp_path / "data.csv", index=False)
    lifts.to_csv(tmp_path / "lifts.csv", index=False)
    args = [
        "fit",
        str(tmp_path / "data.csv"),
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        "tv,search",
        "--saturation",
        "hill",
        "--l-max",
        "8",
        "--yearly-seasonality",
        "2",
        "--draws",
        "200",
        "--tune",
        "200",
        "--seed",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
        "--lift-tests",
        str(tmp_path / "lifts.csv"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "lift test" in out and "modelled lift" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["backend"] == "rust" and len(summary["lift_tests"]) == 2
    assert MMMResult.load(tmp_path / "out" / "model").lift_tests is not None


def test_cli_reports_bad_lift_file(confounded, tmp_path, capsys):
    from fastmmm.cli import main

    df, _, _ = confounded
    df.to_csv(tmp_path / "data.csv", index=False)
    _lift_df(channel="radio").to_csv(tmp_path / "lifts.csv", index=False)
    args = [
        "fit",
        str(tmp_path / "data.csv"),
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        "tv,search",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
        "--lift-tests",
        str(tmp_path / "lifts.csv"),
    ]
    assert main(args) == 2
    assert "unknown channel" in capsys.readouterr().err


# ---------------------------------------------------------------------- backend and cache
def test_lift_tests_keep_the_fast_path(confounded):
    from fastmmm import fastpath
    from fastmmm.data import prepare
    from fastmmm.lift import read_lift_tests

    df, _, lifts = confounded
    spec = _spec()
    data = prepare(df, spec)
    lift = read_lift_tests(lifts, spec, frequency=data.frequency)
    assert fastpath.supported(spec) == (True, "")
    assert _national_build(spec, data, lift).rust_refusal == ""
    # ... except with a time-varying media multiplier, which the fused log-density lacks with lift tests
    tv = spec.replace(time_varying_media=True)
    assert "time-varying media" in _national_build(tv, prepare(df, tv), lift).rust_refusal


@pytest.mark.parametrize(
    "adstock, saturation, normalize",
    [
        ("geometric", "hill", True),
        ("weibull_cdf", "logistic", False),
        ("delayed", "michaelis_menten", True),
        ("weibull_pdf", "tanh", False),
    ],
)
@pytest.mark.parametrize("log_target", [False, True], ids=["additive", "log_target"])
def test_rust_lift_likelihood_matches_pymc(confounded, adstock, saturation, normalize, log_target):
    """The fused Rust log-density with lift tests equals the PyMC model with
    add_lift_likelihood: gradients to 1e-9, log-density differences to 1e-9, and
    the expanded lift_model deterministic equals PyMC's. On the log-target model the
    lift reads the level at each test's dates (one test dated, the others over all)."""
    from _fastref import check_problem_against_pymc

    from fastmmm import fastpath as fp
    from fastmmm.data import prepare
    from fastmmm.lift import add_lift_likelihood, read_lift_tests
    from fastmmm.model import build_model

    df, truth, _ = confounded
    m = float(df["search"].mean())
    lifts = make_lift_tests(
        truth,
        [("search", 0.0, m, 8), ("search", m, 0.5 * m, 6), ("tv", 100.0, 300.0, 4)],
        se_frac=0.1,
        seed=0,
    )
    lifts["start"] = [df["date"].iloc[30], None, None]
    lifts["end"] = [df["date"].iloc[37] + pd.Timedelta(days=6), None, None]
    lifts.loc[0, "weeks"] = np.nan  # the dated test's length comes from its dates
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=list(truth.channels),
        adstock=adstock,
        saturation=saturation,
        adstock_normalize=normalize,
        l_max=6,
        log_target=log_target,
    )
    data = prepare(df, spec)
    lift = read_lift_tests(lifts, spec, frequency=data.frequency)
    model = build_model(data, spec)
    add_lift_likelihood(model, spec, data, lift)
    from fastmmm.layout import national_layout

    layout = national_layout(spec, data, n_lift=len(lift))
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    prob = fp.build_problem(layout, fp.problem_data(spec, data, lift))
    check_problem_against_pymc(model, prob, layout, spread=0.5, seed=1)


def test_cache_key_counts_lift_tests(confounded):
    from fastmmm.data import prepare
    from fastmmm.lift import read_lift_tests

    df, _, lifts = confounded
    spec = _spec()
    data = prepare(df, spec)
    assert len(lifts) >= 2
    tests = [None] + [read_lift_tests(lifts.iloc[:n], spec, frequency=data.frequency) for n in (1, 2)]
    keys = {_national_build(spec, data, t).cache_key for t in tests}
    assert len(keys) == 3


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "table, match",
    [
        (_lift_df().drop(columns="lift_se"), "missing column.*lift_se"),
        (_lift_df().drop(columns="spend_after"), "missing column.*spend_after"),
        (_lift_df().drop(columns="weeks"), "missing column.*weeks"),
        (_lift_df().drop(columns="channel"), "missing column.*channel"),
        (_lift_df(channel="radio"), r"unknown channel.*'radio'.*row 0"),
        (_lift_df(spend_before=-5.0), "negative spend_before"),
        (_lift_df(spend_after=-5.0), "negative spend_after"),
        (_lift_df(lift_se=0.0), "lift_se must be > 0"),
        (_lift_df(lift_se=-1.0), "lift_se must be > 0"),
        (_lift_df(lift=np.nan), "'lift' has missing"),
        (_lift_df(spend_before=np.inf), "'spend_before' has infinite"),
        (_lift_df(lift="a lot"), "'lift' has non-numeric"),
        (_lift_df(spend_after=1000.0), "spend_after equals spend_before"),
        (_lift_df(weeks=0), "weeks must be > 0"),
        (_lift_df(delta_spend=100.0), r"spend_after != spend_before \+ delta_spend"),
        (_lift_df(days=28), "row 0 gives more than one of the columns"),
        (_lift_df(weeks=np.nan), "row 0 has no test length"),
        (
            _lift_df().drop(columns="weeks").assign(start="2023-01-02"),
            "missing column.*start and end",
        ),
        (_lift_df(weeks=np.nan).assign(start="2023-01-02"), "'start' given without 'end'"),
        (
            _lift_df().drop(columns="weeks").assign(start="2023-02-01", end="2023-01-01"),
            "end is before start",
        ),
        (
            _lift_df().drop(columns="weeks").assign(start="soon", end="2023-01-01"),
            "'start' has missing or unparseable",
        ),
        (_lift_df().iloc[:0], "no rows"),
        (42, "must be a pandas DataFrame"),
    ],
)
def test_bad_lift_tests_raise_data_error(table, match):
    with pytest.raises(DataError, match=match):
        read_lift_tests(table, _spec())


def test_missing_lift_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_lift_tests(tmp_path / "nope.csv", _spec())


def test_lift_table_conversions(tmp_path):
    spec = _spec()
    t = pd.DataFrame(
        {
            "Channel": ["search", "tv", "tv"],
            "spend_before": [100.0, 200.0, 0.0],
            "delta_spend": [50.0, -200.0, 10.0],
            "lift": [1.0, -2.0, 3.0],
            "lift_se": [0.5, 0.5, 0.5],
            "start": ["2023-01-02", "2023-03-06", "2023-05-01"],
            "end": ["2023-01-29", "2023-03-12", "2023-05-14"],
            "note": ["ignored", "", ""],
        }
    )
    t.to_csv(tmp_path / "l.csv", index=False)
    w = read_lift_tests(tmp_path / "l.csv", spec, frequency="W")
    assert w.channel == ("search", "tv", "tv")
    np.testing.assert_allclose(w.spend_after, [150.0, 0.0, 10.0])
    np.testing.assert_allclose(w.periods, [4.0, 1.0, 2.0])  # inclusive calendar days / 7
    d = read_lift_tests(t, spec, frequency="D")
    np.testing.assert_allclose(d.periods, [28.0, 7.0, 14.0])
    weeks_daily = read_lift_tests(_lift_df(weeks=2), spec, frequency="D")
    assert weeks_daily.periods.tolist() == [14.0]
    assert LiftTests.from_dict(json.loads(json.dumps(w.to_dict()))).to_dict() == w.to_dict()
    assert read_lift_tests(None, spec) is None


def test_lift_tests_survive_a_fast_path_failure(confounded, monkeypatch):
    """If the fused log-density refuses the model under backend='auto', the pytensor model
    still carries the lift-test likelihood (it is never silently dropped)."""
    import fastmmm.fastpath as fp
    from fastmmm.fit import clear_compile_cache

    df, _, lifts = confounded

    def refuse(*a, **k):
        raise ValueError("refused for the test")

    monkeypatch.setattr(fp, "build_problem", refuse)
    import nutpie

    seen = []

    def fake_compile(model, **k):
        seen.append(model)
        raise RuntimeError("stop before compiling")

    monkeypatch.setattr(nutpie, "compile_pymc_model", fake_compile)
    clear_compile_cache()
    with pytest.raises(RuntimeError, match="stop before compiling"):
        MMM(_spec()).fit(df, draws=10, tune=10, progress=False, lift_tests=lifts)
    clear_compile_cache()
    assert len(seen) == 1 and "lift_obs" in seen[0].named_vars


def test_mmm_problem_rejects_fortran_order_and_bad_lift_arguments(confounded):
    from fastmmm import fastpath as fp
    from fastmmm._core import MmmProblem
    from fastmmm.data import prepare
    from fastmmm.layout import national_layout

    df, _, _ = confounded
    spec = _spec()
    data = prepare(df, spec)
    layout = national_layout(spec, data)
    st, blocks = layout.structure, layout.blocks()
    arr = fp.problem_data(spec, data)
    with pytest.raises(ValueError, match="C-contiguous"):
        MmmProblem(st, {**arr, "spend": np.asfortranarray(arr["spend"])}, blocks)
    la = dict(
        channel=[0],
        x0=np.array([0.0]),
        x1=np.array([0.5]),
        periods=np.array([4.0]),
        delta=np.array([0.1]),
        se=np.array([0.05]),
    )
    for steady in (0, 3, 2**45, 2**60):
        with pytest.raises(ValueError, match="steady"):
            MmmProblem(st, {**arr, "lift": {**la, "steady": steady}}, blocks)
    with pytest.raises(ValueError, match="built without lift tests"):
        MmmProblem(st, arr, blocks).with_data({**arr, "lift": la})
    with pytest.raises(ValueError, match="standard errors"):
        MmmProblem(st, {**arr, "lift": {**la, "se": np.array([0.0]), "steady": 9}}, blocks)
    # a typed boundary: a misspelt key is an error, not silently ignored
    with pytest.raises(ValueError, match='unknown key "lift_channel"'):
        MmmProblem(st, {**arr, "lift_channel": [0]}, blocks)
    with pytest.raises(ValueError, match='unknown key "weight"'):
        MmmProblem(st, {**arr, "lift": {**la, "weight": np.ones(3)}}, blocks)
    # level lifts (log target): weights of the right length, and a problem keeps its kind of
    # lift on new data
    t = len(data.dates)
    w = np.full(t, 1.0 / t)
    lvl = MmmProblem(st, {**arr, "lift": {**la, "steady": 9, "weights": w}}, blocks)
    add = MmmProblem(st, {**arr, "lift": {**la, "steady": 9}}, blocks)
    with pytest.raises(ValueError, match=r"lift\.weights"):
        MmmProblem(st, {**arr, "lift": {**la, "steady": 9, "weights": w[:-1]}}, blocks)
    with pytest.raises(ValueError, match="read the level"):
        lvl.with_data(arr)
    with pytest.raises(ValueError, match="additive"):
        add.with_data({**arr, "lift": {**la, "steady": 9, "weights": w}})
    assert lvl.with_data({**arr, "lift": {**la, "steady": 9, "weights": w}}).n_dim == lvl.n_dim
    # new tests without "steady" keep the problem's own (9 here; the default of a new problem is 1,
    # which this adstock refuses)
    assert add.with_data({**arr, "lift": la}).n_dim == add.n_dim
    with pytest.raises(ValueError, match="steady"):
        MmmProblem(st, {**arr, "lift": la}, blocks)


def test_log_target_lift_follows_a_refit_with_a_test_on_another_channel(confounded):
    """A reused PyMC model (same structure and number of tests) computes the new test's lift:
    its channel is read from the swapped spend containers, not fixed in the graph."""
    from fastmmm.data import prepare
    from fastmmm.model import build_model

    df, _, _ = confounded
    spec = _spec(log_target=True)
    data = prepare(df, spec)

    def tests(ch):
        return read_lift_tests(
            pd.DataFrame({"channel": [ch], "spend_before": [100.0], "spend_after": [900.0]}).assign(
                lift=1e4, lift_se=1e3, weeks=4
            ),
            spec,
        )

    from fastmmm.lift import lift_data

    reused = build_model(data, spec)
    add_lift_likelihood(reused, spec, data, tests("tv"))
    fresh = build_model(data, spec)
    add_lift_likelihood(fresh, spec, data, tests("search"))
    upd = {
        k: v for k, v in lift_data(tests("search"), data).items() if k in {v.name for v in reused.data_vars}
    }

    def at_point(model, point):
        (out,) = model.replace_rvs_by_values([model["lift_model"]])
        return model.compile_fn(out, inputs=model.value_vars)(point)

    point = reused.initial_point()
    before = at_point(reused, point)
    for k, v in upd.items():
        reused.set_data(k, v)
    after = at_point(reused, point)
    want = at_point(fresh, point)
    np.testing.assert_allclose(after, want, rtol=1e-12)
    assert not np.allclose(before, want)
