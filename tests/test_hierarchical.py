"""The hierarchical (multi-geo / multi-brand) model and its fused Rust log-density.

* The grouped ``MmmProblem`` (groups on the batch axis of the media kernel,
  partially pooled media parameters) equals the PyMC model's log-density and
  gradient at random unconstrained points, for every adstock x saturation x
  likelihood, with 1 and 5 groups (a subset by default, the full grid slow),
  and with each of the pooling choices.
* A 10-geo fit on synthetic data recovers per-geo ROAS (the recovery test is
  ``slow``; a 3-geo fit runs by default).
* Bad panels raise DataError naming the problem; save/load round-trips.
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from _fastref import check_problem_against_pymc

from fastmmm import hierarchical as hm
from fastmmm.data import DataError
from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_panel

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _spec(**kw) -> ModelSpec:
    base = dict(
        date_column="date",
        target="sales",
        channels=("tv", "search", "social"),
        controls=("event",),
        adstock="geometric",
        saturation="hill",
        l_max=6,
        yearly_seasonality=2,
    )
    base.update(kw)
    return ModelSpec(**base)


def _panel_mmm(truth, **kw) -> hm.HierarchicalMMM:
    """The hierarchical model of a make_panel panel (Hill, the event control)."""
    base = dict(
        group="geo",
        date_column="date",
        target="sales",
        channels=list(truth["channels"]),
        controls=["event"],
        saturation="hill",
    )
    return hm.HierarchicalMMM(**{**base, **kw})


@pytest.fixture(scope="module")
def panel5():
    df, truth = make_panel(5, 60, 3, seed=11)
    return df


def _deterministic_names(model):
    return {v.name for v in model.deterministics}


def check_grouped_against_pymc(df, spec, pooled=hm.POOLABLE, n_points=4, seed=0):
    """Rust grouped problem vs the PyMC hierarchical model at random unconstrained points."""
    groups, datas = hm.prepare_panel(df, spec, "geo")
    model = hm.build_hierarchical_model(datas, spec, groups, pooled=pooled)
    problem, layout = hm.grouped_problem(datas, spec, groups, pooled=pooled)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    assert problem.groups == len(groups)
    check_problem_against_pymc(model, problem, layout, n_points=n_points, seed=seed, skip_nonfinite=True)
    return problem


GRID = [
    (a, s, lik, g)
    for a, s, lik, g in itertools.product(ADSTOCK_PARAMS, SATURATION_PARAMS, ("normal", "studentt"), (1, 5))
]
DEFAULT = [
    ("geometric", "hill", "normal", 5),
    ("geometric", "hill", "normal", 1),
    ("weibull_cdf", "logistic", "studentt", 5),
    ("delayed", "michaelis_menten", "normal", 5),
    ("weibull_pdf", "tanh", "studentt", 1),
]


def _subset(df, n_groups):
    keep = sorted(df["geo"].unique())[:n_groups]
    return df[df["geo"].isin(keep)]


@pytest.mark.parametrize("adstock, saturation, likelihood, groups", DEFAULT, ids=str)
def test_grouped_logp_matches_pymc(panel5, adstock, saturation, likelihood, groups):
    spec = _spec(adstock=adstock, saturation=saturation, likelihood=likelihood)
    check_grouped_against_pymc(_subset(panel5, groups), spec)


@pytest.mark.parametrize("adstock, saturation, likelihood, groups", DEFAULT, ids=str)
def test_grouped_log_target_logp_matches_pymc(panel5, adstock, saturation, likelihood, groups):
    """The multiplicative model of a panel: each group's log(y / its mean y), Rust == PyMC."""
    spec = _spec(adstock=adstock, saturation=saturation, likelihood=likelihood, log_target=True)
    check_grouped_against_pymc(_subset(panel5, groups), spec)


def _multiplicative_panel(n_groups, weeks, n_channels, seed):
    from fastmmm.synthetic import make_multiplicative_dataset

    frames, roas = [], []
    for g in range(n_groups):
        df, truth = make_multiplicative_dataset(weeks, n_channels, seed=seed + g)
        frames.append(df.assign(geo=f"g{g}"))
        roas.append(truth.roas)
    return pd.concat(frames, ignore_index=True), np.array(roas), list(truth.channels)


def test_log_target_hierarchical_fit():
    panel, true_roas, channels = _multiplicative_panel(3, 104, 3, seed=300)
    spec = _spec(channels=tuple(channels), log_target=True)
    res = hm.HierarchicalMMM(spec, group="geo").fit(
        panel, draws=400, tune=400, chains=2, seed=1, holdout_weeks=6, progress=False
    )
    assert res.backend == "rust"
    v = res.validate()
    assert v.divergences == 0 and v.mape_in_sample < 0.08
    # contributions by counterfactual: E[y] - E[y | the channel's term removed], per group
    mu, sigma = res.posterior.flat("mu"), res.posterior.flat("sigma")
    m = res.posterior.flat("channel_contribution")
    g = 1
    scale = res.datas[g].scales.target_scale
    level = np.exp(mu[:, g] + sigma[:, g, None] ** 2 / 2) * scale
    want = (level[:, :, None] * (1 - np.exp(-m[:, g]))).sum(axis=1)
    np.testing.assert_allclose(res.contribution_draws()[:, g].sum(axis=1), want, rtol=1e-10)
    fit = res.fitted()
    np.testing.assert_allclose(fit[fit["geo"] == "g1"]["mean"].to_numpy(), level.mean(axis=0), rtol=1e-10)
    pred = res.predict(seed=0)
    assert (np.abs(pred["mean"] / pred["actual"] - 1)).mean() < 0.1
    cs = res.channel_summary()
    covered = [
        cs.loc[(f"g{k}", ch), "roas_low"] <= true_roas[k, c] <= cs.loc[(f"g{k}", ch), "roas_high"]
        for k in range(3)
        for c, ch in enumerate(channels)
    ]
    assert np.mean(covered) >= 0.6
    with pytest.raises(ValueError, match="log_target"):
        res.media_contributions(np.asarray(res.datas[0].spend), group=0)


def test_log_target_hierarchical_fit_with_geo_experiments():
    """Geo experiments on the multiplicative panel: measured in sales at the tests' dates,
    fitted on the fused path; the calibrated lifts cover the measured ones."""
    from fastmmm.synthetic import make_multiplicative_dataset, true_lift

    frames, rows = [], []
    for g in range(3):
        df, truth = make_multiplicative_dataset(104, 3, seed=300 + g)
        frames.append(df.assign(geo=f"g{g}"))
        if g in (0, 2):
            ch = truth.channels[1]
            x0 = float(df[ch].mean())
            lift = true_lift(truth, ch, x0, 1.5 * x0, 5, start=50)
            end = df["date"].iloc[54] + pd.Timedelta(days=6)
            rows.append(
                {"geo": f"g{g}", "channel": ch, "spend_before": x0, "spend_after": 1.5 * x0}
                | {"lift": lift, "lift_se": 0.1 * lift, "start": df["date"].iloc[50], "end": end}
            )
    panel = pd.concat(frames, ignore_index=True)
    spec = _spec(channels=tuple(truth.channels), log_target=True)
    res = hm.HierarchicalMMM(spec, group="geo").fit(
        panel, lift_tests=pd.DataFrame(rows), draws=400, tune=400, chains=2, seed=1, progress=False
    )
    assert res.backend == "rust", res.backend_note
    for row in res.lift_test_summary():
        assert row["lift_model"]["low"] <= row["lift"] <= row["lift_model"]["high"]


@pytest.mark.slow
@pytest.mark.parametrize("adstock, saturation, likelihood, groups", GRID, ids=str)
def test_grouped_logp_matches_pymc_full_grid(panel5, adstock, saturation, likelihood, groups):
    spec = _spec(adstock=adstock, saturation=saturation, likelihood=likelihood)
    check_grouped_against_pymc(_subset(panel5, groups), spec, seed=hash((adstock, saturation)) % 1000)


@pytest.mark.parametrize(
    "pooled", [(), ("adstock",), ("saturation", "amplitude"), ("saturation_kappa", "channel_share")], ids=str
)
def test_grouped_logp_pooling_choices(panel5, pooled):
    check_grouped_against_pymc(_subset(panel5, 3), _spec(), pooled=pooled)


def test_grouped_logp_direct_beta_and_no_baseline_extras(panel5):
    spec = _spec(priors={"beta": "HalfNormal(sigma=2)"}, controls=(), yearly_seasonality=0, trend=False)
    check_grouped_against_pymc(_subset(panel5, 4), spec)


def test_one_group_grouped_equals_single_model(panel5):
    """With one group and nothing pooled, the grouped problem is the single-brand problem."""
    from fastmmm import fastpath as fp
    from fastmmm.data import prepare
    from fastmmm.layout import national_layout

    spec = _spec()
    sub = _subset(panel5, 1)
    groups, datas = hm.prepare_panel(sub, spec, "geo")
    grouped = hm.grouped_problem(datas, spec, groups, pooled=())[0]
    data = prepare(sub.drop(columns=["geo"]), spec)
    single = fp.build_problem(national_layout(spec, data), fp.problem_data(spec, data))
    assert grouped.n_dim == single.n_dim
    x = np.random.default_rng(3).normal(0, 0.5, single.n_dim)
    lp1, g1 = single.logp_dlogp(x)
    lp2, g2 = grouped.logp_dlogp(x)
    assert lp1 == pytest.approx(lp2, rel=1e-13)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)


_slow = pytest.mark.slow
TVP_CASES = [
    ({"time_varying_intercept": True}, "shared", 5),
    pytest.param({"time_varying_intercept": True}, "shared", 1, marks=_slow),
    pytest.param({"time_varying_media": True}, "shared", 5, marks=_slow),
    ({"time_varying_media": True}, "group", 5),
    # Fewer terms: PyMC's FAST_COMPILE reference takes at most 32 (see _fastref).
    (
        {
            "time_varying_intercept": True,
            "time_varying_media": True,
            "likelihood": "studentt",
            "controls": (),
            "yearly_seasonality": 0,
        },
        "group",
        4,
    ),
    pytest.param(
        {"time_varying_intercept": True, "trend": False, "intercept": False, "hsgp_m": 8},
        "shared",
        5,
        marks=_slow,
    ),
    pytest.param({"time_varying_intercept": True, "log_target": True}, "shared", 5, marks=_slow),
]


@pytest.mark.parametrize("extra, media_multiplier, groups", TVP_CASES, ids=str)
def test_grouped_time_varying_logp_matches_pymc(panel5, extra, media_multiplier, groups):
    """Panels with time-varying parts: one drift per group (lengthscale and amplitude shared), a
    media multiplier shared or per group. Rust == PyMC: gradients to 1e-9 at random points,
    log-density differences, and the deterministics (media_multiplier, intercept_tv, mu, ...)."""
    spec = _spec(**extra)
    gr, datas = hm.prepare_panel(_subset(panel5, groups), spec, "geo")
    model = hm.build_hierarchical_model(datas, spec, gr, media_multiplier=media_multiplier)
    problem, layout = hm.grouped_problem(datas, spec, gr, media_multiplier=media_multiplier)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    m = spec.hsgp_m
    if spec.time_varying_intercept:
        assert layout.term("tvp_intercept_z").shape == (groups, m)
        assert layout.term("tvp_intercept_ls").shape == () and layout.term("tvp_intercept_eta").shape == ()
    if spec.time_varying_media:
        want = (groups, m) if media_multiplier == "group" else (m,)
        assert layout.term("tvp_media_z").shape == want
    check_problem_against_pymc(model, problem, layout, spread=0.5, skip_nonfinite=True)


def test_panel_time_varying_fit_and_results(tmp_path):
    """A drifting-baseline panel fitted with a per-geo drift (Rust backend): every per-group
    output (time_varying, contributions, hold-out predictions) is the group's national one,
    and the result saves and loads; a per-group media multiplier gives each geo its own."""
    from fastmmm.results import load

    df, truth = make_panel(3, 80, 2, seed=7, drift=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _panel_mmm(truth, time_varying_intercept=True).fit(
            df, draws=300, tune=300, chains=2, seed=1, progress=False, holdout_weeks=4
        )
    assert res.backend == "rust"
    assert res.posterior.posterior.dims["intercept_tv"] == ("chain", "draw", "geo", "date")
    assert res.posterior.posterior.dims["tvp_intercept_z"] == ("chain", "draw", "geo", "hsgp_basis")
    tv = res.time_varying()
    assert list(tv.columns[:2]) == ["geo", "date"] and len(tv) == 3 * 76
    x = np.arange(76)
    resid = lambda v: v - np.polyval(np.polyfit(x, v, 1), x)  # noqa: E731
    corr = []
    for i, g in enumerate(res.groups):
        one = res.group_result(g)
        mine = tv[tv["geo"] == g].drop(columns="geo").set_index("date")
        pd.testing.assert_frame_equal(mine, one.time_varying(), check_freq=False, check_names=False)
        # The numpy GP at the training dates is the Rust log-density's intercept_tv.
        f = one.time_varying()["intercept_tv_mean"].to_numpy()
        rust = res.posterior.posterior["intercept_tv"][:, :, i].mean(axis=(0, 1))
        np.testing.assert_allclose(f, rust * float(res.datas[i].scales.target_scale), rtol=1e-9)
        # The fitted drift follows the true one (both without their linear part).
        corr.append(np.corrcoef(resid(f), resid(truth["drift"][i, :76]))[0, 1])
    assert np.median(corr) > 0.8, corr
    v = res.validate()
    assert v.mape_in_sample < 0.1 and v.mape_holdout is not None and v.mape_holdout < 0.15
    back = load(res.save(tmp_path / "tv"))
    pd.testing.assert_frame_equal(back.time_varying(), tv)
    pd.testing.assert_frame_equal(back.predict(seed=0), res.predict(seed=0))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res2 = _panel_mmm(
            truth, time_varying_intercept=True, time_varying_media=True, media_multiplier="group"
        ).fit(df, draws=100, tune=100, chains=1, seed=2, progress=False)
    assert res2.posterior.posterior.dims["media_multiplier"] == ("chain", "draw", "geo", "date")
    per_geo = [res2.group_result(g).time_varying()["media_multiplier_mean"].to_numpy() for g in res2.groups]
    assert not np.allclose(per_geo[0], per_geo[1])


def test_ragged_panel_time_varying_fit_and_results(tmp_path):
    """A drifting-baseline panel whose third geo starts 26 weeks late, fitted with a drift per
    geo (Rust backend): each geo's drift is on its own window, the numpy GP of its result
    equals the Rust intercept_tv there, it follows the true drift, and the result saves,
    loads and predicts the hold-out."""
    from fastmmm.results import load

    df, truth = make_panel(3, 110, 2, seed=7, drift=0.15)
    dates = sorted(df["date"].unique())
    late = df["geo"] == "geo_02"
    df = df[~(late & (df["date"] < dates[26]))].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _panel_mmm(truth, time_varying_intercept=True).fit(
            df, draws=300, tune=300, chains=2, seed=1, progress=False, holdout_weeks=4
        )
    assert res.backend == "rust" and res.windows == [(0, 106), (0, 106), (26, 106)]
    x_all = np.arange(106)
    corr = []
    for i, g in enumerate(res.groups):
        a, b = res.windows[i]
        one = res.group_result(g)
        f = one.time_varying()["intercept_tv_mean"].to_numpy()
        assert len(f) == b - a
        rust = res.posterior.posterior["intercept_tv"][:, :, i, a:b].mean(axis=(0, 1))
        np.testing.assert_allclose(f, rust * float(res.datas[i].scales.target_scale), rtol=1e-9)
        x = x_all[a:b]
        resid = lambda v, x=x: v - np.polyval(np.polyfit(x, v, 1), x)  # noqa: E731
        corr.append(np.corrcoef(resid(f), resid(truth["drift"][i, a:b]))[0, 1])
    # (How well a window's drift can be told from the media depends on the data: on this
    # one the three geos give 0.98, 0.99 and 0.92 here.)
    assert np.median(corr) > 0.8 and corr[2] > 0.6, corr
    v = res.validate()
    assert v.divergences == 0
    assert v.mape_in_sample < 0.1 and v.mape_holdout is not None and v.mape_holdout < 0.15
    back = load(res.save(tmp_path / "tv"))
    pd.testing.assert_frame_equal(back.time_varying(), res.time_varying())
    pd.testing.assert_frame_equal(back.predict(seed=0), res.predict(seed=0))


def _ragged(
    df, late="geo_04", late_weeks=18, early="geo_02", early_weeks=10, lacking="geo_03", channel="search"
):
    """``late`` starts ``late_weeks`` late, ``early`` stops ``early_weeks`` early, ``lacking``
    never spends on ``channel``."""
    dates = sorted(df["date"].unique())
    d = df[~((df["geo"] == late) & (df["date"] < dates[late_weeks]))]
    d = d[~((d["geo"] == early) & (d["date"] > dates[-early_weeks - 1]))].copy()
    d.loc[d["geo"] == lacking, channel] = 0.0
    return d.reset_index(drop=True)


@pytest.mark.parametrize(
    "extra, pooled, late",
    [
        ({}, hm.POOLABLE, "geo_04"),
        pytest.param(
            {"likelihood": "studentt", "media_prior": "share"}, (), "geo_04", marks=pytest.mark.slow
        ),
        pytest.param({"log_target": True}, hm.POOLABLE, "geo_04", marks=pytest.mark.slow),
        ({}, hm.POOLABLE, "geo_00"),  # the first group in the data starts late
    ],
    ids=["additive", "studentt-share-unpooled", "log_target", "first-group-late"],
)
def test_ragged_panel_logp_matches_pymc(panel5, extra, pooled, late):
    """A ragged panel (one geo starting 18 weeks late, one stopping 10 weeks early, one without
    a channel): each group's likelihood, centring and amplitude means over its own window, the
    absent cell without contribution. Rust == PyMC: gradients, log-density, deterministics."""
    spec = _spec(**extra)
    gr, datas = hm.prepare_panel(_ragged(panel5, late=late), spec, "geo")
    assert hm.is_ragged(datas)
    model = hm.build_hierarchical_model(datas, spec, gr, pooled=pooled)
    problem, layout = hm.grouped_problem(datas, spec, gr, pooled=pooled)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    assert len(layout.coords["date"]) == 60  # every group's dates together
    check_problem_against_pymc(model, problem, layout, spread=0.5, skip_nonfinite=True)
    x = layout.initial_point()
    beta = layout.split(problem.expand(x))["beta"]
    assert beta[gr.index("geo_03"), 1] == 0.0  # no search in geo_03: no contribution


@pytest.mark.parametrize(
    "extra, media_multiplier",
    [
        ({"time_varying_intercept": True}, "shared"),
        ({"time_varying_intercept": True, "time_varying_media": True, "controls": ()}, "group"),
    ],
    ids=["intercept", "intercept-media-per-group"],
)
def test_ragged_panel_time_varying_logp_matches_pymc(panel5, extra, media_multiplier):
    """Time-varying parts on a ragged panel: each group's GP on the basis of its own window
    (its national model's, evaluated on the panel's dates). Rust == PyMC (gradients to 1e-9,
    log-density differences, the deterministics intercept_tv and media_multiplier)."""
    from fastmmm.data import panel_grid
    from fastmmm.tvp import HSGPBasis, panel_hsgp_data

    spec = _spec(**extra)
    gr, datas = hm.prepare_panel(_ragged(panel5, late="geo_04"), spec, "geo")
    h = panel_hsgp_data(spec, datas)
    windows = panel_grid(datas)[1]
    for part in ("intercept", "media") if spec.time_varying_media else ("intercept",):
        assert h[f"hsgp_phi_{part}"].shape == (5, 60, spec.hsgp_m)
        for g, (a, b) in enumerate(windows):  # inside its window: the group's national basis
            own = HSGPBasis.for_part(spec, datas[g], part)
            np.testing.assert_allclose(h[f"hsgp_phi_{part}"][g, a:b], own.basis(datas[g].trend), atol=1e-12)
            np.testing.assert_allclose(h[f"hsgp_col_ms_{part}"][g], own.col_ms, rtol=1e-12)
        assert not np.allclose(h[f"hsgp_omega_{part}"][0], h[f"hsgp_omega_{part}"][4])  # other spans
    model = hm.build_hierarchical_model(datas, spec, gr, media_multiplier=media_multiplier)
    problem, layout = hm.grouped_problem(datas, spec, gr, media_multiplier=media_multiplier)
    assert [t.name for t in layout.terms] == [rv.name for rv in model.free_RVs]
    assert layout.term("tvp_intercept_z").shape == (5, spec.hsgp_m)
    check_problem_against_pymc(model, problem, layout, spread=0.5, skip_nonfinite=True)


def test_ragged_panel_fit(tmp_path):
    """Acceptance (#20 item 2): one geo starts 40 weeks late and one channel is absent in one
    geo; the fit is clean, the absent cell has no ROAS (nor a budget), and each geo's outputs
    cover its own dates."""
    from fastmmm.results import load

    df, truth = make_panel(4, 104, 3, seed=21)
    late, lacking = truth["groups"][1], truth["groups"][2]
    df = _ragged(df, late=late, late_weeks=40, early_weeks=0, early="none", lacking=lacking, channel="social")
    h = _panel_mmm(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 4 x 2000: at the default 2 x 1000 this panel's max R-hat (a weakly identified per-geo
        # Hill kappa or slope) is 1.010-1.013 over sampler seeds and SIMD paths, a coin flip at
        # the 1.01 threshold; at 4 x 2000 it is 1.003-1.007 (seeds 1-3, SIMD levels 0 and 1).
        res = h.fit(df, seed=1, progress=False, holdout_weeks=4, chains=4, draws=2000)
    v = res.validate()
    print(
        f"divergences {v.divergences}, R-hat {v.rhat_max:.4f}, MAPE {v.mape_in_sample:.3f} / {v.mape_holdout:.3f}"
    )
    assert v.divergences == 0 and v.rhat_max < 1.01
    assert v.mape_in_sample < 0.1 and v.mape_holdout < 0.15
    assert res.windows[1] == (40, 100) and len(res.dates) == 100
    cs = res.channel_summary()
    cell = cs.loc[(lacking, "social")]
    assert cell["spend"] == 0 and np.isnan(cell["roas_mean"]) and np.isnan(cell["mroas_mean"])
    assert cell["contribution_mean"] == 0
    others = cs.drop(index=(lacking, "social"))
    assert others["roas_mean"].notna().all()
    assert np.isnan(res.roas_draws()[:, 2, 2]).all()
    # The late geo's contributions are NaN before it starts; its own outputs cover its 60 weeks.
    assert np.isnan(res.contribution_draws()[:, 1, :40]).all()
    assert (res.contributions_over_time().groupby("geo").size() == [100, 60, 100, 100]).all()
    assert len(res.group_result(late).fitted()) == 60
    plan = res.optimize_budget(1e6, weeks=8)
    assert (lacking, "social") not in plan.allocation
    assert sum(plan.allocation.values()) == pytest.approx(1e6)
    back = load(res.save(tmp_path / "ragged"))
    assert back.windows == res.windows
    pd.testing.assert_frame_equal(back.channel_summary(), cs)
    # summary.json stays strict JSON: the absent cell's ROAS is null, not NaN
    from fastmmm.outputs import write_outputs

    write_outputs(res, tmp_path / "out", report=False)

    def strict(x):
        raise ValueError(f"not JSON: {x}")

    summary = json.loads((tmp_path / "out" / "summary.json").read_text(), parse_constant=strict)
    assert summary["groups"]
    # new rows that spend on the absent channel: no estimate of its effect, an error
    one = res.group_result(lacking)
    rows = pd.DataFrame(
        {"date": one.holdout.dates, "tv": 1e3, "search": 1e3, "social": 1e3, "event": 0.0, "sales": 1e5}
    )
    with pytest.raises(ValueError, match="'social', which had no spend"):
        one.predict(rows)


def test_panel_plan_carry_over_of_a_group_that_stopped_early(panel5):
    """Plans start after the panel's last date: a group that stopped 10 weeks early (more than
    l_max) brings no carry-over into them, one that stopped 3 weeks early what is left of its
    last spend after those 3 weeks; groups spending to the end keep their last l_max weeks."""
    from fastmmm.optimize.budget import PanelResponse

    df = _ragged(panel5, late="none", early="geo_02", early_weeks=10, lacking="none")
    dates = sorted(df["date"].unique())
    df = df[~((df["geo"] == "geo_03") & (df["date"] > dates[-4]))].reset_index(drop=True)
    h = hm.HierarchicalMMM(_spec(), group="geo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = h.fit(df, draws=20, tune=20, chains=1, seed=1, progress=False)
    model = PanelResponse.from_result(res, max_draws=5)
    lh = res.spec.l_max
    for g, part in zip(res.groups, model.parts):
        spend = np.asarray(res.group_result(g).data.spend, dtype=float)
        if g == "geo_02":
            np.testing.assert_array_equal(part.history, 0.0)
        elif g == "geo_03":
            np.testing.assert_array_equal(part.history[: lh - 3], spend[-(lh - 3) :])
            np.testing.assert_array_equal(part.history[lh - 3 :], 0.0)
        else:
            np.testing.assert_array_equal(part.history, spend[-lh:])
    # With nothing carried over, a zero plan brings a zero response in that group.
    r, _ = model.parts[res.groups.index("geo_02")].response(np.zeros((4, len(res.channels))))
    np.testing.assert_allclose(r, 0.0, atol=1e-12)


def test_ragged_panel_data_errors(panel5):
    spec = _spec()
    h = hm.HierarchicalMMM(spec, group="geo")
    short = _ragged(panel5, late="geo_01", late_weeks=40, early="none", early_weeks=0, lacking="none")
    with pytest.raises(DataError, match=r"group 'geo_01': too few rows: 20"):
        h.build(short)
    nowhere = panel5.copy()
    nowhere["social"] = 0.0
    with pytest.raises(DataError, match="zero spend in every group: 'social'"):
        h.build(nowhere)
    gap = panel5[~((panel5["geo"] == "geo_00") & (panel5["date"] > sorted(panel5["date"].unique())[30]))]
    gap = gap[~((gap["geo"] != "geo_00") & (gap["date"] < sorted(panel5["date"].unique())[33]))]
    with pytest.raises(DataError, match="no group is observed on 2 date"):
        hm.HierarchicalMMM(_spec(controls=()), group="geo").build(gap)
    # One media multiplier shared by groups on different dates has no one basis.
    with pytest.raises(NotImplementedError, match="media_multiplier='group'"):
        hm.HierarchicalMMM(_spec(time_varying_media=True), group="geo").build(_ragged(panel5))
    gr, datas = hm.prepare_panel(_ragged(panel5), _spec(time_varying_media=True), "geo")
    with pytest.raises(NotImplementedError, match="media_multiplier='group'"):
        hm.grouped_problem(datas, _spec(time_varying_media=True), gr)
    # a channel whose only spend in a group falls in the hold-out weeks
    late_spend = panel5.copy()
    g3 = late_spend["geo"] == "geo_03"
    late_spend.loc[g3, "search"] = 0.0
    late_spend.loc[late_spend.index[g3][-2:], "search"] = 500.0
    with pytest.raises(DataError, match="group 'geo_03': 'search' spend only in the hold-out"):
        h.fit(late_spend, holdout_weeks=4, draws=10, tune=10, chains=1, progress=False)


def test_large_panel_evaluation_split_across_threads():
    """A panel large enough for the media passes to split by groups (>= 20,000 cells): the
    same log-density and gradient to the last bit on 1, 2 and 3 threads, and a 1-chain fit
    on 2 cores gives the 1-core fit's draws exactly."""
    from fastmmm import _core, fastpath

    df, truth = make_panel(20, 104, 10, seed=4)
    spec = _spec(channels=tuple(truth["channels"]))
    groups, datas = hm.prepare_panel(df, spec, "geo")
    problem, layout = hm.grouped_problem(datas, spec, groups)
    x = layout.initial_point() + np.random.default_rng(0).normal(0, 0.2, layout.n_dim)
    want = problem.logp_dlogp(x)
    try:
        for n in (2, 3):
            _core.set_eval_threads(n)
            lp, g = problem.logp_dlogp(x)
            assert lp == want[0] and np.array_equal(g, want[1])
    finally:
        _core.set_eval_threads(1)
    kw = dict(draws=5, tune=5, chains=1, seed=3, progress=False)
    one = fastpath.sample(problem, layout, cores=1, **kw)
    two = fastpath.sample(problem, layout, cores=2, **kw)
    np.testing.assert_array_equal(one.posterior["mu"], two.posterior["mu"])


def test_large_panel_leaves_contributions_out_of_its_draws(monkeypatch, tmp_path):
    """Above fastpath.CONTRIBUTION_STORE_LIMIT a fit stores the parameters and recomputes the
    per-cell contributions: the same outputs as a fit that stored them (same seed, same
    draws), after a save and load too."""
    from fastmmm import fastpath
    from fastmmm.results import load

    df, truth = make_panel(3, 60, 2, seed=8)
    h = hm.HierarchicalMMM(
        group="geo", date_column="date", target="sales", channels=list(truth["channels"]), saturation="hill"
    )
    kw = dict(draws=100, tune=100, chains=1, seed=2, progress=False)
    stored = h.fit(df, **kw)
    monkeypatch.setattr(fastpath, "CONTRIBUTION_STORE_LIMIT", 0)
    lean = h.fit(df, **kw)
    assert "channel_contribution" in stored.posterior and "channel_contribution" not in lean.posterior
    assert lean.posterior.attrs["left_out"] == "channel_contribution"
    np.testing.assert_allclose(lean.contribution_draws(), stored.contribution_draws(), rtol=1e-10, atol=1e-8)
    pd.testing.assert_frame_equal(lean.channel_summary(), stored.channel_summary(), rtol=1e-9)
    back = load(lean.save(tmp_path / "lean"))
    pd.testing.assert_frame_equal(back.contributions_over_time(), stored.contributions_over_time(), rtol=1e-9)
    # Writing every output recomputes each group's contributions once, not once per output.
    from fastmmm.outputs import write_outputs
    from fastmmm.results import MMMResult

    # (An additive model's summary sums them in one pass, _static_sums with the window.)
    sums = []
    real_sums = MMMResult._static_sums
    monkeypatch.setattr(
        MMMResult,
        "_static_sums",
        lambda self, *a, **k: sums.append(k.get("window", False)) or real_sums(self, *a, **k),
    )
    calls = []
    real = MMMResult._static_media_contributions
    monkeypatch.setattr(
        MMMResult, "_static_media_contributions", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    fresh = load(tmp_path / "lean")
    write_outputs(fresh, tmp_path / "out", report=False)
    assert sums.count(True) == len(fresh.groups)
    # ... in bounded memory: no posterior predictive drawn (validate needs the fitted mean
    # only), no group keeping channel draws of its own beside the panel's.
    assert getattr(fresh, "_ppc", None) is None
    assert all(getattr(r, "_cd_cache", None) is None for r in fresh.group_results())
    np.testing.assert_allclose(fresh.fitted_mean(), stored.fitted()["mean"].to_numpy(), rtol=1e-10)
    # Contributions reduced in blocks of draws (here 7 at a time; the path of the models the
    # one pass does not cover) give the same outputs.
    from fastmmm import results as results_mod

    monkeypatch.setattr(results_mod, "_CONTRIBUTION_BLOCK", 7 * 60 * 2)
    monkeypatch.setattr(MMMResult, "_has_static_sums", lambda self: False)
    calls.clear()
    blocked = load(tmp_path / "lean")
    pd.testing.assert_frame_equal(blocked.channel_summary(), stored.channel_summary(), rtol=1e-9)
    pd.testing.assert_frame_equal(
        blocked.contributions_over_time(), stored.contributions_over_time(), rtol=1e-9
    )
    assert len(calls) == len(blocked.groups) * int(np.ceil(blocked.n_draws / 7))


# ---------------------------------------------------------------------- bad panels
def test_bad_panels_raise_data_errors(panel5):
    spec = _spec()
    h = hm.HierarchicalMMM(spec, group="geo")
    with pytest.raises(DataError, match="group column 'region'"):
        hm.HierarchicalMMM(spec, group="region").build(panel5)
    shifted = panel5.copy()
    first = shifted["geo"] == shifted["geo"].iloc[0]
    shifted.loc[first, "date"] = pd.to_datetime(shifted.loc[first, "date"]) + pd.Timedelta(days=3)
    with pytest.raises(DataError, match="group 'geo_00': dates .* not on the panel's grid"):
        h.build(shifted)
    bad = panel5.copy()
    bad.loc[bad.index[bad["geo"] == bad["geo"].iloc[-1]][3], "tv"] = np.nan
    with pytest.raises(DataError, match=r"group 'geo_04'.*tv"):
        h.build(bad)
    neg = panel5.copy()
    neg.loc[neg.index[5], "search"] = -1.0
    with pytest.raises(DataError, match="group 'geo_00'"):
        h.build(neg)
    with pytest.raises(ValueError, match="pooled"):
        hm.HierarchicalMMM(spec, group="geo", pooled=("trend",))
    with pytest.raises(ValueError, match="already has a role"):
        hm.HierarchicalMMM(spec, group="tv")
    with pytest.raises(ValueError, match="media_multiplier"):
        hm.HierarchicalMMM(_spec(time_varying_media=True), group="geo", media_multiplier="per_geo")
    with pytest.raises(ValueError, match="one adstock and one saturation"):
        hm.HierarchicalMMM(
            _spec(saturation={"tv": "hill", "search": "logistic", "social": "hill"}), group="geo"
        )


# ---------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def small_fit():
    df, truth = make_panel(3, 80, 2, seed=5)
    h = _panel_mmm(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = h.fit(df, draws=500, tune=500, chains=2, seed=3, progress=False, holdout_weeks=6)
    return res, truth


def test_small_hierarchical_fit_on_rust_backend(small_fit, tmp_path):
    res, truth = small_fit
    assert res.backend == "rust"
    assert res.timing["compile_s"] < 5.0
    v = res.validate()
    assert v.divergences <= 2
    assert v.mape_in_sample < 0.1
    cs = res.channel_summary()
    assert list(cs.index.names) == ["geo", "channel"] and len(cs) == 3 * 2
    # Posterior contributions are per geo in that geo's units (74 training weeks, 6 held out).
    assert res.contribution_draws().shape[1:] == (3, 74, 2)
    # Hold-out: the last 6 weeks of every geo, predicted with carry-over from the training spend.
    assert v.mape_holdout is not None and v.mape_holdout < 0.1
    pr = res.predict(seed=0)
    assert len(pr) == 3 * 6 and (pr["low"] <= pr["high"]).all()
    # The numpy media path reproduces the fitted contributions of every geo.
    for g in range(3):
        np.testing.assert_allclose(
            res.media_contributions(np.asarray(res.datas[g].spend, dtype=float), group=g),
            res.contribution_draws()[:, g],
            rtol=1e-10,
            atol=1e-8,
        )
    # save / load round trip (netCDF + JSON)
    p = res.save(tmp_path / "h")
    back = hm.HierarchicalResult.load(p)
    assert back.groups == res.groups and back.pooled == res.pooled
    pd.testing.assert_frame_equal(back.channel_summary(), cs)
    pd.testing.assert_frame_equal(back.predict(seed=0), pr)
    s = res.summary()
    assert set(s["groups"]) == set(res.groups) and s["backend"] == "rust"


def test_panel_and_national_results_are_one_type(small_fit, tmp_path):
    """A panel's result is the national result type with a group axis; each group, as a
    national result, gives the panel's rows of every per-group output."""
    from fastmmm.results import MMMResult, load

    res, _ = small_fit
    assert type(res) is MMMResult and res.is_panel and hm.HierarchicalResult is MMMResult
    name = res.groups[1]
    one = res.group_result(name)
    assert type(one) is MMMResult and not one.is_panel and one.data is res.datas[1]
    pooled = [n for n in res.posterior.posterior if n.endswith("_geo")]
    assert pooled  # the group's own values of a pooled parameter, under the national name
    for n in pooled:
        np.testing.assert_array_equal(one.draws(n[: -len("_geo")]), res.draws(n)[:, 1])
    cs = res.channel_summary()
    pd.testing.assert_frame_equal(cs.xs(name, level="geo"), one.channel_summary(), check_names=False)
    np.testing.assert_allclose(res.contribution_draws()[:, 1], one.contribution_draws(), rtol=1e-12)
    np.testing.assert_allclose(res.roas_draws()[:, 1], one.roas_draws(), rtol=1e-12)
    # panel tables stack the national ones behind a leading group column
    cot = res.contributions_over_time()
    assert list(cot.columns[:2]) == ["geo", "date"] and len(cot) == 3 * 74
    mine = cot[cot["geo"] == name].drop(columns="geo").set_index("date")
    pd.testing.assert_frame_equal(mine, one.contributions_over_time(), check_names=False, check_freq=False)
    rc = res.response_curves(max_draws=200)
    assert len(rc) == 3 * 2 * 21 and set(rc["geo"]) == set(res.groups)
    # new rows with the group column predict as the hold-out does (means are noise-free)
    df, _ = make_panel(3, 80, 2, seed=5)
    new = df.groupby("geo").tail(6).reset_index(drop=True)
    np.testing.assert_allclose(res.predict(new, seed=0)["mean"], res.predict(seed=0)["mean"], rtol=1e-10)
    # one load for both
    back = load(res.save(tmp_path / "panel"))
    assert type(back) is MMMResult and back.is_panel and back.groups == res.groups
    pd.testing.assert_frame_equal(back.group_result(name).channel_summary(), one.channel_summary())
    # what has no panel meaning yet says how to get it, and national accessors refuse clearly
    with pytest.raises(ValueError, match="group_result"):
        res.contribution_totals([1.0])
    with pytest.raises(ValueError, match="datas"):
        _ = res.data
    assert not hasattr(res, "holdout")  # an AttributeError too, so getattr(..., None) works
    # a group's predictive draws are the panel's, sliced (one stream for every table)
    np.testing.assert_array_equal(one.posterior_predictive(), res.posterior_predictive()[:, :, 1])
    with pytest.raises(ValueError, match="group="):
        res.media_contributions(np.asarray(res.datas[0].spend))
    with pytest.raises(ValueError, match="not one of"):
        res.group_result("nowhere")
    with pytest.raises(ValueError, match="no group axis"):
        one.group_result(0)


def test_panel_budget_over_group_channel_cells(small_fit, tmp_path, capsys):
    """Geo x channel budgets: the total is exact, bounds and fixed group totals hold, marginal
    ROAS is equal across unconstrained cells and the optimum is never worse than today's mix;
    ``fastmmm optimize`` writes alloc.json nested by group."""
    from fastmmm.cli import main

    res, _ = small_fit
    weeks = 8
    total = 1.2 * sum(float(np.asarray(d.spend).mean(axis=0).sum()) for d in res.datas) * weeks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = res.optimize_budget(total, weeks, max_draws=300)
    alloc = np.array(list(r.allocation.values()))
    cells = list(r.allocation)
    assert len(cells) == 3 * 2 and all(isinstance(c, tuple) for c in cells)
    assert alloc.sum() == pytest.approx(total, rel=1e-9) and (alloc >= 0).all()
    assert r.uplift["mean"] >= -1e-9 * total and r.success
    inner = [c for c, a in r.allocation.items() if a > 1e-3 * total]
    m = np.array([r.mroas[c] for c in inner])
    assert len(inner) >= 2 and m.std() / m.mean() < 0.02, r.mroas
    # per-cell responses: each cell's optimal budget on its own (additive model: they sum)
    assert sum(v["mean"] for v in r.response.values()) == pytest.approx(r.expected_response["mean"], rel=1e-6)
    # a bound per cell and a per-channel one, and one group's total fixed
    g0, g1 = res.groups[0], res.groups[1]
    ch0 = res.channels[0]
    cap = 0.05 * total
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rb = res.optimize_budget(
            total,
            weeks,
            bounds={(g0, ch0): (None, cap), res.channels[1]: (0.02 * total, None)},
            group_totals={g1: 0.25 * total},
            max_draws=300,
        )
    assert rb.allocation[(g0, ch0)] <= cap * (1 + 1e-9)
    assert all(rb.allocation[(g, res.channels[1])] >= 0.02 * total * (1 - 1e-9) for g in res.groups)
    assert sum(v for (g, _), v in rb.allocation.items() if g == g1) == pytest.approx(0.25 * total, rel=1e-9)
    assert sum(rb.allocation.values()) == pytest.approx(total, rel=1e-9)
    with pytest.raises(ValueError, match="unknown group"):
        res.optimize_budget(total, weeks, group_totals={"nowhere": 1.0})
    with pytest.raises(ValueError, match="neither a channel"):
        res.optimize_budget(total, weeks, bounds={"radio": (0, 1)})
    with pytest.raises(ValueError, match="more than the budget"):
        res.optimize_budget(total, weeks, group_totals={g0: 2 * total})
    # the command on the saved panel
    saved = res.save(tmp_path / "panel")
    out = tmp_path / "alloc.json"
    args = ["optimize", str(saved), "--budget", str(total), "--weeks", str(weeks), "--max-draws", "200"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "--out", str(out), "--group-totals", f"{g1}={0.25 * total}"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["allocation"]) == set(res.groups)
    assert set(doc["allocation"][g0]) == set(res.channels)
    assert sum(v for g in doc["allocation"].values() for v in g.values()) == pytest.approx(total, rel=1e-9)
    assert sum(doc["allocation"][g1].values()) == pytest.approx(0.25 * total, rel=1e-9)
    assert set(doc["mroas"][g0]) == set(res.channels) and "mean" in doc["response"][g0][ch0]
    assert f"{g0}/{ch0}" in capsys.readouterr().out


def _coverage(res, truth):
    cs = res.channel_summary()
    tr = truth["roas"].reshape(-1)
    return (cs["roas_low"].to_numpy() <= tr) & (tr <= cs["roas_high"].to_numpy())


@pytest.mark.slow
def test_ten_geo_recovery():
    """Acceptance: 10 geos x 104 weeks x 3 channels, 4 chains x 2000 draws, on three synthetic
    panels: every fit has 0 divergences and R-hat < 1.01; per-geo ROAS 95% intervals cover the
    truth for >= 90% of the 90 geo-channels (and >= 80% within every panel)."""
    covers = []
    for seed in (1, 2, 3):
        df, truth = make_panel(10, 104, 3, seed=seed)
        h = _panel_mmm(truth)
        res = h.fit(df, draws=2000, tune=1000, chains=4, seed=seed, progress=False)
        v = res.validate()
        cover = _coverage(res, truth)
        print(
            f"panel {seed}: coverage {cover.mean():.3f}, R-hat {v.rhat_max:.4f}, divergences {v.divergences}, "
            f"min ESS {v.ess_bulk_min:.0f}, sample {res.timing['sample_s']:.1f} s"
        )
        assert v.divergences == 0
        assert v.rhat_max < 1.01
        assert cover.mean() >= 0.8
        covers.append(cover)
    total = np.concatenate(covers).mean()
    print(f"coverage over all panels {total:.3f}")
    assert total >= 0.9


def test_cli_fit_hierarchical(tmp_path, capsys):
    import json

    from fastmmm.cli import main

    df, truth = make_panel(3, 60, 2, seed=8)
    csv = tmp_path / "panel.csv"
    df.to_csv(csv, index=False)
    args = [
        str(csv),
        "--group",
        "geo",
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        "tv,search",
        "--controls",
        "event",
        "--saturation",
        "hill",
        "--draws",
        "200",
        "--tune",
        "200",
        "--chains",
        "2",
        "--seed",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit-hierarchical", *args]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["groups"]) == sorted(truth["groups"]) and summary["backend"] == "rust"
    png = (tmp_path / "out" / "roas.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    cs = pd.read_csv(tmp_path / "out" / "channel_summary.csv")
    assert len(cs) == 6 and (cs["roas_low"] <= cs["roas_high"]).all()
    cot = pd.read_csv(tmp_path / "out" / "contributions.csv")
    assert list(cot.columns[:2]) == ["geo", "date"] and set(cot["geo"]) == set(summary["groups"])
    assert sorted(hm.HierarchicalResult.load(tmp_path / "out" / "model").groups) == sorted(summary["groups"])
    # a bad group column is a clear error, exit status 2
    bad = [a if a != "geo" else "region" for a in args]
    assert main(["fit-hierarchical", *bad]) == 2
    assert "group column 'region'" in capsys.readouterr().err


def test_fast_path_failure_falls_back_under_auto(panel5, monkeypatch, caplog):
    """backend='auto' never fails a fit because the fused log-density refuses a model."""
    import logging

    def refuse(*a, **k):
        raise ValueError("refused for the test")

    from fastmmm import fastpath

    monkeypatch.setattr(fastpath, "build_problem", refuse)
    import nutpie

    calls = []
    monkeypatch.setattr(nutpie, "compile_pymc_model", lambda model, **k: calls.append(model) or "compiled")
    monkeypatch.setattr(nutpie, "sample", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop here")))
    h = hm.HierarchicalMMM(_spec(), group="geo")
    with caplog.at_level(logging.WARNING, logger="fastmmm"), pytest.raises(RuntimeError, match="stop here"):
        h.fit(_subset(panel5, 2), draws=10, tune=10, progress=False)
    assert len(calls) == 1 and any("fast path failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="refused for the test"):
        h.fit(_subset(panel5, 2), draws=10, tune=10, progress=False, backend="rust")


# ---------------------------------------------------------------------- geo experiments (lift tests)
def _geo_lifts(truth, rows, se_frac=0.1, seed=0):
    """Lift tests at the panel's true curves (with seeded measurement noise)."""
    from fastmmm.synthetic import panel_true_lift

    rng = np.random.default_rng(seed)
    out = []
    for geo, ch, x0, x1, weeks in rows:
        g = list(truth["groups"]).index(geo)
        true = panel_true_lift(truth, g, ch, x0, x1, weeks)
        se = abs(true) * se_frac
        out.append(
            {
                "geo": geo,
                "channel": ch,
                "spend_before": x0,
                "spend_after": x1,
                "lift": true + se * rng.standard_normal(),
                "lift_se": se,
                "weeks": weeks,
            }
        )
    return pd.DataFrame(out)


@pytest.mark.parametrize("pooled", [hm.POOLABLE, ()], ids=["pooled", "shared"])
@pytest.mark.parametrize("log_target", [False, True], ids=["additive", "log_target"])
def test_grouped_lift_likelihood_matches_pymc(panel5, pooled, log_target):
    """Geo experiments: each test reads its own group's curve and amplitude (and, on the
    log-target model, its own group's level at the test's dates), in Rust as in PyMC."""
    from _fastref import check_problem_against_pymc

    spec = _spec(l_max=6, log_target=log_target)
    df = _subset(panel5, 4)
    lifts = pd.DataFrame(
        {
            "geo": ["geo_01", "geo_03", "geo_03"],
            "channel": ["tv", "search", "tv"],
            "spend_before": [0.0, 500.0, 200.0],
            "spend_after": [3000.0, 1500.0, 900.0],
            "lift": [5e4, 2e4, 1e4],
            "lift_se": [5e3, 4e3, 3e3],
            "weeks": [6, 4, 3],
        }
    )
    dates = sorted(df["date"].unique())
    lifts["start"] = [dates[10], None, None]  # one dated test; the others over all dates
    lifts["end"] = [dates[15] + pd.Timedelta(days=6), None, None]
    lifts["weeks"] = [np.nan, 4, 3]
    groups, datas = hm.prepare_panel(df, spec, "geo")
    lift = hm.read_group_lift_tests(lifts, spec, "geo", groups)
    assert list(lift[1]) == [1, 3, 3]
    model = hm.build_hierarchical_model(datas, spec, groups, pooled=pooled, lift=lift)
    problem, layout = hm.grouped_problem(datas, spec, groups, pooled=pooled, lift=lift)
    assert layout.deterministics[-1].name == "lift_model"
    check_problem_against_pymc(model, problem, layout, skip_nonfinite=True)


def test_bad_geo_lift_tables_raise_data_errors(panel5):
    spec = _spec()
    groups = sorted(panel5["geo"].unique())
    row = {
        "geo": "geo_01",
        "channel": "tv",
        "spend_before": 0.0,
        "spend_after": 100.0,
        "lift": 10.0,
        "lift_se": 2.0,
        "weeks": 4,
    }
    with pytest.raises(DataError, match="group column 'geo'"):
        hm.read_group_lift_tests(
            pd.DataFrame([{k: v for k, v in row.items() if k != "geo"}]), spec, "geo", groups
        )
    with pytest.raises(DataError, match="not among the model's groups in row 1"):
        hm.read_group_lift_tests(pd.DataFrame([row, {**row, "geo": "mars"}]), spec, "geo", groups)
    with pytest.raises(DataError, match="unknown channel"):
        hm.read_group_lift_tests(pd.DataFrame([{**row, "channel": "radio"}]), spec, "geo", groups)


def test_hierarchical_fit_with_geo_experiments(tmp_path):
    df, truth = make_panel(3, 80, 2, seed=5)
    lifts = _geo_lifts(truth, [("geo_00", "tv", 0.0, 4000.0, 6), ("geo_02", "search", 0.0, 3000.0, 8)])
    h = _panel_mmm(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = h.fit(df, draws=400, tune=400, chains=2, seed=2, progress=False, lift_tests=lifts)
    assert res.backend == "rust"
    rows = res.summary()["lift_tests"]
    assert [r["geo"] for r in rows] == ["geo_00", "geo_02"]
    for r in rows:  # the modelled lift agrees with the measurement
        m = r["lift_model"]
        assert m["low"] <= r["lift"] + 3 * r["lift_se"] and m["high"] >= r["lift"] - 3 * r["lift_se"], r
    back = hm.HierarchicalResult.load(res.save(tmp_path / "h"))
    assert back.lift_groups == res.lift_groups and back.lift_test_summary() == res.lift_test_summary()
