"""The multiplicative (log-target) model: fit, counterfactual contributions and ROAS,
the per-date decomposition, forecasts, save / load and what it refuses clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fastmmm import MMM, ModelSpec
from fastmmm.results import MMMResult
from fastmmm.synthetic import make_multiplicative_dataset, true_lift


def _spec(truth, **kw) -> ModelSpec:
    base = dict(
        date_column="date",
        target="sales",
        channels=list(truth.channels),
        controls=["event"],
        saturation="hill",
        log_target=True,
    )
    return ModelSpec(**(base | kw))


@pytest.fixture(scope="module")
def data():
    return make_multiplicative_dataset(130, 4, seed=5)


@pytest.fixture(scope="module")
def fit(data):
    df, truth = data
    return MMM(_spec(truth)).fit(df, draws=500, tune=500, chains=2, seed=3, holdout_weeks=8, progress=False)


def test_fits_on_the_fast_path_cleanly(fit):
    assert fit.backend == "rust"
    v = fit.validate()
    assert v.divergences == 0 and v.rhat_max < 1.02
    assert v.mape_in_sample < 0.06 and v.mape_holdout < 0.10


def test_contributions_are_counterfactual_in_original_units(fit):
    """channel_summary's contribution = sum_t E[y_t] - E[y_t | the channel's term removed],
    E = exp(mu + sigma^2 / 2) * target_scale, computed here from the draws directly."""
    ts = fit.data.scales.target_scale
    mu = fit.posterior.flat("mu")
    sigma = fit.posterior.flat("sigma")[:, None]
    m = fit.posterior.flat("channel_contribution")
    level = np.exp(mu + sigma**2 / 2) * ts
    want = np.stack(
        [(level - np.exp(mu - m[:, :, c] + sigma**2 / 2) * ts).sum(axis=1) for c in range(m.shape[2])], axis=1
    )
    cs = fit.channel_summary()
    np.testing.assert_allclose(cs["contribution_mean"].to_numpy(), want.mean(axis=0), rtol=1e-10)
    spend = np.asarray(fit.data.spend).sum(axis=0)
    np.testing.assert_allclose(cs["roas_mean"].to_numpy(), (want / spend).mean(axis=0), rtol=1e-10)
    # the same quantity from the response machinery: multiplier 1 is the fitted spend, 0 none;
    # 1 + 1e-9 takes the general path (media terms recomputed from the kernels)
    tot = fit.contribution_totals([0.0, 1.0, 1.0 + 1e-9, 1.5])
    np.testing.assert_allclose(tot[:, 1], want, rtol=1e-10)
    np.testing.assert_allclose(tot[:, 2], want, rtol=1e-7)
    assert np.all(tot[:, 0] == 0.0)
    # at 1.5x spend: sum_t level * exp(-m) * (exp(m(1.5)) - 1), m(1.5) from the numpy kernels
    from fastmmm import kernels as K

    xs = np.asarray(fit.data.spend) * 1.5 / np.asarray(fit.data.scales.channel_scale)
    (d,) = fit.media_designs()
    a, sp = fit.kernel_params(d)
    sat, _ = K.media_transform(
        np.broadcast_to(xs, (len(mu),) + xs.shape),
        d.adstock,
        d.saturation,
        a,
        sp,
        l_max=d.l_max,
        normalize=d.normalize,
    )
    m15 = sat * fit.posterior.flat("beta")[:, None, :]
    want15 = np.einsum("st,stc->sc", level, np.exp(-m) * np.expm1(m15))
    np.testing.assert_allclose(tot[:, 3], want15, rtol=1e-9)
    assert np.all(tot[:, 3] > tot[:, 1])  # more spend, more sales
    # marginal ROAS: 1% more spend, per unit of that spend
    t101 = fit.contribution_totals([1.0, 1.01])
    np.testing.assert_allclose(
        cs["mroas_mean"].to_numpy(), ((t101[:, 1] - t101[:, 0]) / (0.01 * spend)).mean(axis=0), rtol=1e-10
    )
    # thinned draws keep each draw's own sigma
    thin = fit.contribution_totals([1.0], max_draws=100)[:, 0]
    step = len(mu) // 100
    np.testing.assert_allclose(thin, want[::step][: len(thin)], rtol=1e-10)


def test_contributions_over_time_sum_to_the_fitted_sales_on_every_date(fit):
    cot = fit.contributions_over_time()
    assert list(cot.columns) == ["baseline", *fit.channels, "fitted"]
    parts = cot.drop(columns="fitted").sum(axis=1).to_numpy()
    np.testing.assert_allclose(parts, cot["fitted"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(cot["fitted"].to_numpy(), fit.fitted()["mean"].to_numpy(), rtol=1e-12)
    assert (cot[fit.channels].to_numpy() >= 0).all() and (cot["baseline"] > 0).all()


def test_forecast_carries_over_and_is_in_original_units(fit, data):
    df, _ = data
    hold = df.tail(8)
    pred = fit.predict(hold, seed=1)
    assert list(pred.index) == list(pd.DatetimeIndex(hold["date"]))
    rel = np.abs(pred["mean"] / hold["sales"].to_numpy() - 1)
    assert rel.mean() < 0.10
    assert ((pred["low"] < pred["mean"]) & (pred["mean"] < pred["high"])).all()
    # the forecast weeks' own spend raises the forecast (no channel has a negative effect)
    dark = fit.predict(hold.assign(**dict.fromkeys(fit.channels, 0.0)), seed=1)
    assert (pred["mean"] > dark["mean"]).all()


def test_recovers_the_counterfactual_truth(fit, data):
    _, truth = data
    cs = fit.channel_summary()
    covered = (cs["roas_low"] <= truth.roas) & (truth.roas <= cs["roas_high"])
    assert covered.sum() >= 3
    assert np.median(np.abs(cs["roas_mean"] / truth.roas - 1)) < 0.25


def test_decomposition_sums_also_with_negative_media_terms(data):
    """A sign-free beta prior lets a channel's log-scale term be negative: the split of the
    joint media effect still sums to the fitted level and keeps each term's sign."""
    df, truth = data
    # a channel that does nothing, with a prior that allows a negative effect
    noise = np.random.default_rng(0).gamma(2.0, 5e3, len(df))
    spec = _spec(
        truth,
        channels=[*truth.channels, "noise"],
        priors={"beta": "Normal(mu=0, sigma=1)"},
    )
    r = MMM(spec).fit(df.assign(noise=noise), draws=300, tune=300, chains=1, seed=2, progress=False)
    m = r.posterior.flat("channel_contribution")
    assert (m[:, :, -1] < 0).mean() > 0.05  # the check is not vacuous
    cot = r.contributions_over_time()
    np.testing.assert_allclose(cot.drop(columns="fitted").sum(axis=1), r.fitted()["mean"], rtol=1e-10)
    level = r._expected_level(r.posterior.flat("mu"))
    total = m.sum(axis=2)
    want = (level[:, :, None] * m * (-np.expm1(-total) / total)[:, :, None]).mean(axis=0)
    np.testing.assert_allclose(cot[r.channels].to_numpy(), want, rtol=1e-8)


def test_save_load_keeps_the_summary(fit, tmp_path):
    fit.save(tmp_path / "m")
    back = MMMResult.load(tmp_path / "m")
    assert back.spec.log_target
    a, b = fit.summary(), back.summary()
    for ch in fit.channels:
        for q in ("roas", "mroas", "contribution"):
            assert b["channels"][ch][q]["mean"] == pytest.approx(a["channels"][ch][q]["mean"], rel=1e-9)
    json.dumps(b)


def test_response_model_gradient_matches_finite_differences(fit):
    from fastmmm.optimize import LogTargetResponse, PosteriorResponse

    model = PosteriorResponse.from_result(fit, max_draws=100)
    assert isinstance(model, LogTargetResponse)
    plan = np.tile(np.asarray(fit.data.spend)[-8:].mean(axis=0), (8, 1))
    resp, grad = model.response(plan)
    assert resp.shape == (model.n_draws,) and np.all(resp > 0)
    for h, c in [(0, 0), (3, 2), (7, 3)]:
        d = 1e-3 * plan[h, c] + 1.0
        up, down = plan.copy(), plan.copy()
        up[h, c] += d
        down[h, c] -= d
        fd = (model.response(up)[0] - model.response(down)[0]) / (2 * d)
        np.testing.assert_allclose(grad[:, h, c], fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())
    # no plan adds nothing; the response is the sales the plan adds, in sales units
    assert np.all(model.response(np.zeros_like(plan))[0] == 0.0)


def test_budget_optimisation(fit):
    spend = np.asarray(fit.data.spend)
    total = float(spend[-8:].sum())
    tv_hi = 0.2 * total
    res = fit.optimize_budget(total, weeks=8, bounds={"tv": (0.05 * total, tv_hi)})
    alloc = np.array([res.allocation[ch] for ch in fit.channels])
    assert alloc.sum() == pytest.approx(total, rel=1e-9)
    assert 0.05 * total * (1 - 1e-9) <= res.allocation["tv"] <= tv_hi * (1 + 1e-9)
    assert res.expected_response["mean"] >= res.current_response["mean"] - 1e-9 * abs(
        res.current_response["mean"]
    )
    # marginal ROAS equal across the channels no bound holds
    free = [
        ch for ch in fit.channels if ch != "tv" or tv_hi * 0.999 > res.allocation["tv"] > 0.05 * total * 1.001
    ]
    free = [ch for ch in free if res.allocation[ch] > 1e-6 * total]
    assert len(free) >= 2
    m = np.array([res.mroas[ch] for ch in free])
    assert np.ptp(m) <= 1e-3 * np.abs(m).mean()


def test_cli_optimize_writes_the_allocation(fit, tmp_path):
    from fastmmm.cli import main

    fit.save(tmp_path / "m")
    total = float(np.asarray(fit.data.spend)[-8:].sum())
    out = tmp_path / "alloc.json"
    args = ["optimize", str(tmp_path / "m"), "--budget", str(total), "--weeks", "8", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert sum(doc["allocation"].values()) == pytest.approx(total, rel=1e-9)
    assert doc["expected_response"]["mean"] >= doc["current_response"]["mean"]


def _lift_table(df, truth, tests):
    """Lift tests measured on the truth: (channel, first row, periods) at 1.5x mean spend."""
    rows = []
    for ch, start, n in tests:
        x0 = float(df[ch].mean())
        lift = true_lift(truth, ch, x0, 1.5 * x0, n, start=start)
        end = df["date"].iloc[start + n - 1] + pd.Timedelta(days=6)
        rows.append(
            {"channel": ch, "spend_before": x0, "spend_after": 1.5 * x0, "lift": lift}
            | {"lift_se": 0.1 * abs(lift), "start": df["date"].iloc[start], "end": end}
        )
    return pd.DataFrame(rows)


def test_modelled_lift_is_the_sales_difference_at_the_tests_dates(fit, data):
    """lift = periods * mean over the test's dates of E[y_t | without c] * (exp(b1) - exp(b0))."""
    from fastmmm import kernels as K
    from fastmmm.lift import modelled_lift, read_lift_tests

    df, truth = data
    table = _lift_table(df, truth, [("search", 40, 6), ("display", 90, 4)])
    lift = read_lift_tests(table, fit.spec, frequency="W")
    got = modelled_lift(fit, lift)
    mu, sigma = fit.posterior.flat("mu"), fit.posterior.flat("sigma")
    m, beta = fit.posterior.flat("channel_contribution"), fit.posterior.flat("beta")
    (d,) = fit.media_designs()
    a, sp = fit.kernel_params(d)
    scale = np.asarray(fit.data.scales.channel_scale)
    dates = pd.DatetimeIndex(fit.data.dates)
    for i, (ch, start, n) in enumerate([("search", 40, 6), ("display", 90, 4)]):
        assert dates[start] == table["start"][i]
        c = fit.channels.index(ch)
        f = []
        for x in (table["spend_before"][i], table["spend_after"][i]):
            xs = np.zeros((len(mu), d.l_max + 1, len(fit.channels)))
            xs[:, :, c] = x / scale[c]
            y, _ = K.media_transform(xs, d.adstock, d.saturation, a, sp, l_max=d.l_max, normalize=d.normalize)
            f.append(y[:, -1, c])
        rows = (dates >= table["start"][i]) & (dates <= table["end"][i])
        assert rows.sum() == n
        level = np.exp(mu[:, rows] - m[:, rows, c] + sigma[:, None] ** 2 / 2)
        gain = np.exp(beta[:, c] * f[1]) - np.exp(beta[:, c] * f[0])
        want = n * (level * gain[:, None]).mean(axis=1) * fit.data.scales.target_scale
        np.testing.assert_allclose(got[:, i], want, rtol=1e-10)


def test_lift_calibration_on_the_fast_path(data):
    """Lift tests on the fused Rust log-density: the posterior's lift_model equals the numpy
    modelled lift, the calibrated lifts cover the measured ones, and the calibrated ROAS of the
    tested channels covers the truth."""
    from fastmmm.lift import modelled_lift

    df, truth = data
    table = _lift_table(df, truth, [("search", 40, 6), ("display", 90, 4)])
    r = MMM(_spec(truth)).fit(df, lift_tests=table, draws=500, tune=500, chains=2, seed=1, progress=False)
    assert r.backend == "rust", r.backend_note
    assert r.validate().divergences == 0
    draws = r.posterior.flat("lift_model") * r.data.scales.target_scale
    np.testing.assert_allclose(modelled_lift(r), draws, rtol=1e-9)
    for row in r.lift_test_summary():
        assert row["lift_model"]["low"] <= row["lift"] <= row["lift_model"]["high"]
    cs = r.channel_summary()
    for ch in ("search", "display"):
        c = truth.channels.index(ch)
        assert cs.loc[ch, "roas_low"] <= truth.roas[c] <= cs.loc[ch, "roas_high"]


@pytest.mark.slow
def test_lift_calibration_on_the_pymc_model(data):
    """The PyMC model's lift term (nutpie) equals the numpy one too."""
    from fastmmm.lift import modelled_lift

    df, truth = data
    table = _lift_table(df, truth, [("search", 40, 6), ("display", 90, 4)])
    r = MMM(_spec(truth)).fit(
        df, lift_tests=table, draws=500, tune=500, chains=2, seed=1, backend="pytensor", progress=False
    )
    pm_draws = r.posterior.flat("lift_model") * r.data.scales.target_scale
    np.testing.assert_allclose(modelled_lift(r), pm_draws, rtol=1e-10)
    for row in r.lift_test_summary():
        assert row["lift_model"]["low"] <= row["lift"] <= row["lift_model"]["high"]


def test_direct_contributions_are_refused_clearly(fit):
    with pytest.raises(ValueError, match="log_target"):
        fit.media_contributions(np.asarray(fit.data.spend))


def test_share_prior_has_no_meaning_on_the_log_scale(data):
    _, truth = data
    with pytest.raises(ValueError, match="media_prior='share'"):
        _spec(truth, media_prior="share")


def test_cli_fit_log_target(data, tmp_path):
    from fastmmm.cli import main

    df, truth = data
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    args = ["fit", str(csv), "--date-column", "date", "--target", "sales", "--controls", "event"]
    args += ["--channels", ",".join(truth.channels), "--saturation", "hill", "--log-target"]
    args += [
        "--draws",
        "200",
        "--tune",
        "200",
        "--seed",
        "1",
        "--no-report",
        "--quiet",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary["channels"]) == set(truth.channels)
    cot = pd.read_csv(tmp_path / "o" / "contributions.csv")
    assert "baseline" in cot.columns
    meta = json.loads((tmp_path / "o" / "model" / "meta.json").read_text())
    assert meta["spec"]["log_target"] is True


@pytest.mark.slow
def test_recovery_over_datasets():
    """Five multiplicative datasets: 95% ROAS intervals cover >= 90% of channels, median
    absolute ROAS error <= 15%, no divergences, R-hat < 1.01 (as bench_log_target)."""
    covered, errors = [], []
    for seed in range(5):
        df, truth = make_multiplicative_dataset(156, 5, seed=100 + seed)
        r = MMM(_spec(truth)).fit(df, draws=1000, tune=1000, chains=2, seed=seed, progress=False)
        v = r.validate()
        assert v.divergences == 0 and v.rhat_max < 1.01
        cs = r.channel_summary()
        covered += list((cs["roas_low"] <= truth.roas) & (truth.roas <= cs["roas_high"]))
        errors += list(np.abs(cs["roas_mean"] / truth.roas - 1))
    assert np.mean(covered) >= 0.9
    assert np.median(errors) <= 0.15


def test_time_varying_parts_and_the_report(data, tmp_path):
    """Time-varying intercept and media on the log scale, Student-t noise: the decomposition
    still sums to the fitted level, the time-varying intercept is a level factor in sales
    units, and the report renders."""
    from fastmmm.report import write_report

    df, truth = data
    spec = _spec(truth, time_varying_intercept=True, time_varying_media=True, likelihood="studentt")
    r = MMM(spec).fit(df, draws=300, tune=300, chains=2, seed=4, progress=False)
    assert r.backend == "rust"
    cot = r.contributions_over_time()
    np.testing.assert_allclose(cot.drop(columns="fitted").sum(axis=1), r.fitted()["mean"], rtol=1e-10)
    tv = r.time_varying()
    assert (tv["intercept_tv_mean"] > 0).all() and (tv["media_multiplier_mean"] > 0).all()
    assert np.all(r.contribution_totals([1.0, 1.2])[:, 1] > r.contribution_totals([1.0, 1.2])[:, 0])
    path = write_report(r, tmp_path / "report.html")
    html = path.read_text() if hasattr(path, "read_text") else (tmp_path / "report.html").read_text()
    assert "multiplicative model" in html.lower() and "<svg" in html
