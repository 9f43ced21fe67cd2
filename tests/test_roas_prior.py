"""ROAS priors: each channel's amplitude parameterised by its ROAS over the fitted period.

* the reported ROAS is the parameter: contribution over the period / spend;
* a user's ROAS prior moves the posterior as it should: a tight prior at the truth narrows
  the interval around it; one far from the truth is overruled by strong data;
* bad priors are clear errors before anything samples (API, TOML, CLI);
* summary.json says which parameterisation was used.
(The fused log-density and gradient equal PyMC's for this parameterisation in
test_fastpath / test_hierarchical, whose default specs use it; the recovery study is
benches/bench_recovery.py.)
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fastmmm.cli import main
from fastmmm.fit import MMM
from fastmmm.priors import Prior
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_dataset


@pytest.fixture(scope="module")
def data():
    df, truth = make_dataset(104, 3, adstock="geometric", saturation="hill", seed=8)
    return df, truth


def _spec(truth, **kw) -> ModelSpec:
    base = dict(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        saturation="hill",
        l_max=8,
    )
    base.update(kw)
    return ModelSpec(**base)


def _fit(df, spec, seed=1, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MMM(spec).fit(df, draws=500, tune=500, chains=2, seed=seed, progress=False, **kw)


def test_the_roas_parameter_is_the_reported_roas(data):
    df, truth = data
    r = _fit(df, _spec(truth))
    assert r.backend == "rust" and r.summary()["media_prior"] == "roas"
    spend = df[list(truth.channels)].to_numpy().sum(axis=0)
    contrib = r.posterior.flat("channel_contribution").sum(axis=1) * float(r.data.scales.target_scale)
    np.testing.assert_allclose(contrib / spend, r.posterior.flat("roas"), rtol=1e-10)


@pytest.fixture(scope="module")
def default_fit(data):
    df, truth = data
    return _fit(df, _spec(truth))


def test_a_tight_prior_at_the_truth_narrows_the_interval_around_it(data, default_fit):
    df, truth = data
    cs0 = default_fit.channel_summary()
    # the channel the data say least about (widest interval relative to its ROAS)
    rel = (cs0["roas_high"] - cs0["roas_low"]) / cs0["roas_mean"]
    ch = rel.idxmax()
    c = list(truth.channels).index(ch)
    true = float(truth.roas[c])
    tight = _spec(truth, priors={f"roas.{ch}": Prior("LogNormal", mu=float(np.log(true)), sigma=0.05)})
    cs = _fit(df, tight).channel_summary()
    assert cs.loc[ch, "roas_low"] <= true <= cs.loc[ch, "roas_high"]
    width0 = cs0.loc[ch, "roas_high"] - cs0.loc[ch, "roas_low"]
    width = cs.loc[ch, "roas_high"] - cs.loc[ch, "roas_low"]
    assert width < 0.5 * width0, (width, width0)
    assert abs(cs.loc[ch, "roas_mean"] / true - 1) < 0.1


def test_strong_data_overrule_a_prior_far_from_the_truth(data, default_fit):
    df, truth = data
    cs0 = default_fit.channel_summary()
    rel = (cs0["roas_high"] - cs0["roas_low"]) / cs0["roas_mean"]
    ch = rel.idxmin()  # the best identified channel
    c = list(truth.channels).index(ch)
    true = float(truth.roas[c])
    assert cs0.loc[ch, "roas_low"] <= true <= cs0.loc[ch, "roas_high"]
    # a prior whose mean is 4x the truth, with a spread of a factor ~1.7
    far = _spec(truth, priors={f"roas.{ch}": Prior("LogNormal", mu=float(np.log(4 * true)), sigma=0.5)})
    cs = _fit(df, far).channel_summary()
    prior_mean = 4 * true * np.exp(0.5**2 / 2)
    got = cs.loc[ch, "roas_mean"]
    # the posterior stays near the data's answer, far from the prior's
    assert abs(got / true - 1) < 0.35, (got, true)
    assert abs(got - true) < 0.25 * abs(prior_mean - true)


@pytest.mark.parametrize(
    "priors, match",
    [
        ({"roas": "LogNormal(mu=0, sigma=-1)"}, "sigma.*> 0|must be > 0|positive"),
        ({"roas.nope": "LogNormal(mu=0, sigma=1)"}, "unknown channel 'nope'"),
        ({"roas": "Lognormal(mu=0, sigma=1)"}, "unknown prior distribution 'Lognormal'"),
        ({"roas": "Normal(mu=1, sigma=1)"}, "must be positive"),
        ({"channel_share": "HalfNormal(sigma=0.1)"}, "media_prior='roas'"),
    ],
)
def test_bad_roas_priors_are_clear_errors_before_sampling(data, priors, match):
    _, truth = data
    with pytest.raises(ValueError, match=match):
        _spec(truth, priors=priors)


def test_roas_priors_from_toml_and_the_cli(data, tmp_path, capsys):
    df, truth = data
    toml = tmp_path / "spec.toml"
    toml.write_text(
        'date_column = "date"\ntarget = "sales"\nchannels = ["tv", "search", "social"]\nsaturation = "hill"\n'
        '[priors]\n"roas.tv" = "LogNormal(mu=0.5, sigma=0.4)"\n'
    )
    spec = ModelSpec.from_toml(toml)
    assert spec.media_prior == "roas" and spec.prior("roas", "tv") == Prior("LogNormal", mu=0.5, sigma=0.4)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(path),
            "--date-column",
            "date",
            "--target",
            "sales",
            "--channels",
            ",".join(truth.channels),
            "--roas-prior",
            "tv=LogNormal(0.5,0.4)",
            "--roas-prior",
            "LogNormal(0, 1.5)",
            "--draws",
            "100",
            "--tune",
            "100",
            "--quiet",
            "--no-report",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = json.loads((out / "model" / "meta.json").read_text())["spec"]
    assert saved["priors"]["roas.tv"] == {"dist": "LogNormal", "mu": 0.5, "sigma": 0.4}
    assert saved["priors"]["roas"] == {"dist": "LogNormal", "mu": 0.0, "sigma": 1.5}
    assert json.loads((out / "summary.json").read_text())["media_prior"] == "roas"
    code = main(
        [
            "fit",
            str(path),
            "--date-column",
            "date",
            "--target",
            "sales",
            "--channels",
            ",".join(truth.channels),
            "--roas-prior",
            "tv=Normal(0.5,0.4)",
            "--quiet",
            "--out",
            str(tmp_path / "bad"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "must be positive" in err and "Traceback" not in err


def test_former_share_parameterisation_by_name(data):
    df, truth = data
    r = _fit(df, _spec(truth, media_prior="share"))
    assert r.summary()["media_prior"] == "share" and "channel_share" in r.posterior
    m = _fit(df, _spec(truth, media_prior="mroas"), seed=2)
    # the marginal-ROAS prior lives on the PyMC model (the fast path says so and falls back)
    assert m.backend == "pytensor" and "mroas" in m.backend_note and "mroas" in m.posterior


def test_saved_models_of_the_share_era_keep_their_parameterisation():
    from pathlib import Path

    from fastmmm.results import load

    r = load(Path(__file__).parent / "fixtures" / "saved_v1_national")
    assert r.spec.media_prior == "share" and r.summary()["media_prior"] == "share"
