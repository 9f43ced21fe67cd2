"""End-to-end fits: reference data, parameter recovery, compile reuse, errors
before sampling, persistence, forecasts.

The fast set runs in CI; the full recovery study is marked ``slow``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmmm.data import DataError
from fastmmm.fit import MMM
from fastmmm.results import MMMResult
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_dataset

EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmm_example.csv"

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def example_spec(**kw) -> ModelSpec:
    base = dict(
        date_column="date_week",
        target="y",
        channels=("x1", "x2"),
        controls=("event_1", "event_2", "t"),
        adstock="geometric",
        saturation="logistic",
        l_max=8,
        yearly_seasonality=2,
    )
    base.update(kw)
    return ModelSpec(**base)


@pytest.fixture(scope="module")
def example_df() -> pd.DataFrame:
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not found")
    return pd.read_csv(EXAMPLE)


@pytest.fixture(scope="module")
def example_fit(example_df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MMM(example_spec()).fit(example_df, draws=1000, tune=1000, chains=2, seed=1, progress=False)


def test_mmm_example_fits_cleanly_and_recovers_alpha(example_fit):
    v = example_fit.validate()
    assert v.divergences == 0
    assert v.rhat_max < 1.01, v.block()
    assert v.mape_in_sample < 0.10
    post = example_fit.idata.posterior
    lo, hi = post["adstock_alpha"].quantile([0.025, 0.975], ("chain", "draw")).values
    truth = np.array([0.4, 0.2])  # values used to make mmm_example.csv
    assert np.all((lo <= truth) & (truth <= hi)), (lo, hi)
    # `t` is a linear time index, which duplicates the built-in trend: switched off.
    assert example_fit.spec.trend is False


def test_contributions_add_up_to_the_fitted_mean(example_fit):
    df = example_fit.contributions_over_time()
    parts = df.drop(columns="fitted").sum(axis=1)
    np.testing.assert_allclose(parts, df["fitted"], rtol=1e-10)
    mu = (
        example_fit.idata.posterior["mu"].mean(("chain", "draw")).values
        * example_fit.data.scales.target_scale
    )
    np.testing.assert_allclose(df["fitted"].to_numpy(), mu, rtol=1e-8)


def test_channel_summary_is_consistent(example_fit):
    cs = example_fit.channel_summary()
    assert list(cs.index) == ["x1", "x2"]
    np.testing.assert_allclose(cs["contribution_share_mean"].sum(), 1.0, rtol=1e-9)
    for q in ("roas", "mroas", "contribution"):
        assert np.all(cs[f"{q}_low"] <= cs[f"{q}_mean"]) and np.all(cs[f"{q}_mean"] <= cs[f"{q}_high"])
    np.testing.assert_allclose(cs["roas_mean"] * cs["spend"], cs["contribution_mean"], rtol=1e-9)
    # Logistic saturation is concave: the marginal return is below the average return.
    assert np.all(cs["mroas_mean"] < cs["roas_mean"])
    rc = example_fit.response_curve("x1", multipliers=[0.0, 0.5, 1.0, 1.5])
    assert rc["mean"].iloc[0] == 0.0 and rc["mean"].is_monotonic_increasing


def test_second_fit_of_same_structure_skips_compilation(example_df, example_fit):
    other = example_df.assign(y=example_df["y"] * 1.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = MMM(example_spec()).fit(other, draws=200, tune=200, chains=2, seed=3, progress=False)
    # backend="auto" takes the fused Rust log-density here: nothing is compiled, and building
    # the layout and the Rust problem takes milliseconds (the pytensor backend's cache is
    # checked in test_fastpath).
    assert example_fit.backend == r2.backend == "rust"
    assert r2.timing["compile_s"] == 0.0 and r2.timing["build_s"] < 0.2
    # The new data were really used: the target scale follows the new data.
    assert r2.data.scales.target_scale == pytest.approx(example_fit.data.scales.target_scale * 1.05)


def test_save_load_reproduces_every_summary_number(example_fit, tmp_path):
    path = example_fit.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["idata.nc", "meta.json"]
    loaded = MMMResult.load(path)
    assert json.dumps(loaded.summary(), sort_keys=True) == json.dumps(example_fit.summary(), sort_keys=True)
    pd.testing.assert_frame_equal(loaded.contributions_over_time(), example_fit.contributions_over_time())


def test_holdout_forecast_carries_over_and_is_accurate(example_df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(example_spec()).fit(
            example_df, draws=300, tune=300, chains=2, seed=2, holdout_weeks=8, progress=False
        )
    v = r.validate()
    assert v.mape_holdout is not None and v.mape_holdout < 0.10
    pred = r.predict(r.holdout)
    assert len(pred) == 8 and (pred["low"] < pred["mean"]).all() and (pred["mean"] < pred["high"]).all()
    # Carry-over: with zero new spend, media still contributes in the first forecast week.
    zero = r.holdout.transform_new(example_df.tail(8).assign(x1=0.0, x2=0.0))
    spend_hist = np.asarray(r.data.spend)
    media = r.media_contributions(np.vstack([spend_hist, np.asarray(zero.spend)]))[:, len(spend_hist) :, :]
    assert media[:, 0, :].mean() > 0


def _recovery(adstock, weeks, channels, seed, draws):
    df, truth = make_dataset(weeks, channels, adstock=adstock, saturation="hill", seed=seed)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        adstock=adstock,
        saturation="hill",
        l_max=8,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(spec).fit(df, draws=draws, tune=draws, chains=2, seed=1, progress=False)
    cs = r.channel_summary()
    covered = (cs["roas_low"].to_numpy() <= truth.roas) & (truth.roas <= cs["roas_high"].to_numpy())
    rel = cs["roas_mean"].to_numpy() / truth.roas - 1
    return r.validate(), covered, rel


@pytest.mark.parametrize("adstock", ["geometric", "weibull_cdf"])
def test_parameter_recovery_fast(adstock):
    v, covered, rel = _recovery(adstock, 104, 3, seed=1, draws=500)
    assert v.divergences == 0
    assert covered.all(), rel
    assert np.abs(rel).mean() < 0.20, rel


@pytest.mark.slow
@pytest.mark.parametrize("adstock", ["geometric", "weibull_cdf"])
def test_parameter_recovery_full(adstock):
    """156 weeks x 6 channels with Hill truth, five datasets: the default model samples
    cleanly and its ROAS intervals are calibrated."""
    covered_all, rels = [], []
    for seed in range(5):
        v, covered, rel = _recovery(adstock, 156, 6, seed=seed, draws=1000)
        assert v.divergences <= 5, (seed, v.block())
        assert v.rhat_max < 1.02, (seed, v.block())
        covered_all.append(covered)
        rels.append(rel)
    coverage = np.concatenate(covered_all).mean()
    assert coverage >= 0.85, coverage
    # No systematic over- or under-statement of ROAS (pymc-marketing's default: 2.4x too high).
    assert abs(np.mean(np.concatenate(rels))) < 0.20


class _NoSampling:
    """Fails the test if either sampler (nuts-rs in the Rust core, or nutpie) starts."""

    def __enter__(self):
        from fastmmm import _core

        self._orig = _core.sample_nuts
        _core.sample_nuts = self._fail
        return self

    @staticmethod
    def _fail(*a, **k):
        raise AssertionError("sampling started before the input was validated")

    def __exit__(self, *exc):
        from fastmmm import _core

        _core.sample_nuts = self._orig


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.assign(x1=d["x1"].where(d.index != 5)), "NaN|missing|finite"),
        (lambda d: d.assign(x2=-d["x2"] - 1.0), "negative"),
        (lambda d: d.drop(index=[10, 11]).reset_index(drop=True), "missing date|gap"),
        (lambda d: pd.concat([d, d.iloc[[3]]]).reset_index(drop=True), "duplicate"),
        (lambda d: d.drop(columns=["x2"]), "x2"),
        (lambda d: d.head(12), "rows"),
        (lambda d: d.assign(x1=0.0), "zero"),
    ],
    ids=["nan", "negative", "missing-dates", "duplicate-dates", "missing-column", "too-few-rows", "all-zero"],
)
def test_bad_input_fails_before_sampling(example_df, mutate, match):
    with _NoSampling(), pytest.raises(DataError, match=match):
        MMM(example_spec()).fit(mutate(example_df.copy()), draws=10, tune=10, progress=False)


def test_log_target_with_nonpositive_values_fails_before_sampling(example_df):
    bad = example_df.assign(y=example_df["y"].where(example_df.index != 7, 0.0))
    with _NoSampling(), pytest.raises(DataError, match="log"):
        MMM(example_spec(log_target=True)).fit(bad, draws=10, tune=10, progress=False)


def test_bad_sampler_arguments_are_rejected(example_df):
    with pytest.raises(ValueError, match="draws"):
        MMM(example_spec()).fit(example_df, draws=0)


def test_per_channel_kinds():
    df, truth = make_dataset(104, 3, adstock="geometric", saturation="hill", seed=1)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        adstock={"tv": "geometric", "search": "weibull_cdf", "social": "geometric"},
        saturation={"tv": "hill", "search": "logistic", "social": "hill"},
        l_max=8,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(spec).fit(df, draws=200, tune=200, chains=2, seed=1, progress=False)
    post = r.idata.posterior
    assert list(post["adstock_alpha__geometric_hill"].coords["channel__geometric_hill"].values) == [
        "tv",
        "social",
    ]
    assert list(post["adstock_lam__weibull_cdf_logistic"].coords["channel__weibull_cdf_logistic"].values) == [
        "search"
    ]
    # Counterfactual contributions (numpy + Rust kernels) equal the model's own deterministic.
    np.testing.assert_allclose(
        r.media_contributions(np.asarray(r.data.spend)), r.contribution_draws(), rtol=1e-9
    )
    assert r.validate().divergences == 0


def test_optimize_budget_on_fitted_result(example_fit, tmp_path):
    spend = np.asarray(example_fit.data.spend)
    budget = float(spend[-8:].sum())
    r = example_fit.optimize_budget(budget, 8, max_draws=300)
    alloc = np.array(list(r.allocation.values()))
    assert alloc.sum() == pytest.approx(budget, rel=1e-12) and (alloc >= 0).all()
    assert r.expected_response["mean"] >= r.current_response["mean"] - 1e-9
    interior = [c for c, v in r.allocation.items() if 1e-6 * budget < v < budget * (1 - 1e-6)]
    if len(interior) == 2:
        m = [r.mroas[c] for c in interior]
        assert m[0] == pytest.approx(m[1], rel=1e-3)
    # The CLI writes alloc.json with the documented keys, and a plot.
    from fastmmm.cli import main

    example_fit.save(tmp_path / "model")
    out = tmp_path / "alloc.json"
    assert (
        main(
            [
                "optimize",
                str(tmp_path / "model"),
                "--budget",
                str(budget),
                "--weeks",
                "8",
                "--bounds",
                "x1=0:",
                "--max-draws",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    for key in (
        "budget",
        "weeks",
        "objective",
        "allocation",
        "expected_response",
        "current_allocation",
        "current_response",
        "mroas",
    ):
        assert key in doc
    assert set(doc["expected_response"]) == {"mean", "low", "high"}
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_cli_fit_with_config_writes_the_documented_outputs(tmp_path):
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not found")
    from fastmmm.cli import main

    cfg = tmp_path / "spec.toml"
    cfg.write_text(
        'date_column = "date_week"\ntarget = "y"\nchannels = ["x1", "x2"]\n'
        'controls = ["event_1", "event_2", "t"]\nsaturation = "logistic"\ntrend = false\n'
        '[priors]\n"adstock_alpha.x2" = "Beta(alpha=1, beta=3)"\n'
    )
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(
            [
                "fit",
                str(EXAMPLE),
                "--config",
                str(cfg),
                "--holdout-weeks",
                "6",
                "--draws",
                "300",
                "--tune",
                "300",
                "--seed",
                "3",
                "--quiet",
                "--out",
                str(out),
            ]
        )
    assert rc == 0
    doc = json.loads((out / "summary.json").read_text())
    assert doc["interval"] == 0.95 and set(doc["channels"]) == {"x1", "x2"}
    for ch in doc["channels"].values():
        for q in ("roas", "mroas", "contribution", "contribution_share"):
            assert set(ch[q]) == {"mean", "low", "high"}
        assert isinstance(ch["spend"], float)
    for key in (
        "mape_in_sample",
        "mape_holdout",
        "r2",
        "rhat_max",
        "ess_bulk_min",
        "divergences",
        "passed",
        "failures",
    ):
        assert key in doc["diagnostics"]
    assert doc["diagnostics"]["mape_holdout"] is not None
    assert doc["backend"] in ("rust", "pytensor")
    # sample_core_s: the Rust sampler's chains' CPU time (nutpie does not report one).
    rust_only = {"sample_core_s"} if doc["backend"] == "rust" else set()
    assert set(doc["timing"]) == {"build_s", "compile_s", "sample_s", "total_s"} | rust_only
    assert all(doc["timing"][k] > 0 for k in rust_only)
    assert (out / "contributions.csv").exists() and (out / "report.html").exists()
    assert (out / "model" / "idata.nc").exists() and (out / "model" / "meta.json").exists()
    # A bad input file is a clear error and exit code 2, not a traceback.
    assert main(["fit", str(tmp_path / "missing.csv"), "--channels", "a", "--out", str(tmp_path / "x")]) == 2
