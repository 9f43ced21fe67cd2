"""Saved models of earlier versions load and give the summary they gave when saved.

``tests/fixtures/saved_v1_*`` were written by fastmmm before the move to the in-core
sampler and today's stack (PyMC 6, PyTensor 3, ArviZ 1); ``expected_summary.json`` is the
``summary()`` of each as it was then. Every value there must come back (keys added since,
such as ``media_prior``, may be new)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastmmm.results import load

FIXTURES = Path(__file__).parent / "fixtures"


def _same(want, got, path="summary"):
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        for k, v in want.items():
            assert k in got, f"{path}.{k} is missing"
            _same(v, got[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (a, b) in enumerate(zip(want, got)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), path
    else:
        assert got == want, path


@pytest.mark.parametrize("name", ["saved_v1_national", "saved_v1_hierarchical"])
def test_saved_model_of_an_earlier_version_gives_the_same_summary(name):
    d = FIXTURES / name
    want = json.loads((d / "expected_summary.json").read_text())
    result = load(d)
    got = json.loads(json.dumps(result.summary(), default=float))
    _same(want, got)
    # the check is not vacuous: ROAS figures are compared
    assert "roas" in json.dumps(want)


def test_strided_draws_are_written_in_slabs_and_read_back_equal(monkeypatch, tmp_path):
    """The sampler's draws are strided views into one array; above _SLAB_BYTES they are written
    a few draws at a time (no whole contiguous copy) and read back bit for bit."""
    import h5py
    import numpy as np

    from fastmmm import posterior as post_mod
    from fastmmm.posterior import Group, Posterior

    rng = np.random.default_rng(3)
    block = rng.normal(size=(2, 51, 9))
    mu = block[:, :, 2:7]  # (chain, draw, 5), strided
    beta = block[:, :, 7]  # (chain, draw), strided
    assert not mu.flags.c_contiguous
    monkeypatch.setattr(post_mod, "_SLAB_BYTES", 100)  # slabs of 2 draws
    slabs = []
    real = h5py.Dataset.__setitem__
    monkeypatch.setattr(h5py.Dataset, "__setitem__", lambda ds, k, v: slabs.append(k) or real(ds, k, v))
    p = Posterior(
        {
            "posterior": Group(
                {"mu": mu, "beta": beta}, {"mu": ("chain", "draw", "t"), "beta": ("chain", "draw")}
            )
        }
    )
    p.save(tmp_path / "d.nc")
    assert len(slabs) == 2 * 26 + 2 * 5  # mu 2 draws (80 bytes) a slab, beta 12 (96 bytes)
    back = Posterior.load(tmp_path / "d.nc")
    np.testing.assert_array_equal(back.posterior["mu"], mu)
    np.testing.assert_array_equal(back.posterior["beta"], beta)


_VARIANTS = {
    "geometric-hill": dict(adstock="geometric", saturation="hill"),
    "weibull-logistic": dict(adstock="weibull_cdf", saturation="logistic"),
    "delayed-mm-share": dict(adstock="delayed", saturation="michaelis_menten", media_prior="share"),
    "weibull_pdf-tanh-unnormalized": dict(adstock="weibull_pdf", saturation="tanh", adstock_normalize=False),
    "log-target": dict(adstock="geometric", saturation="hill", log_target=True),
    "time-varying-media": dict(adstock="geometric", saturation="logistic", time_varying_media=True, hsgp_m=8),
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_recomputed_contributions_equal_the_fitted_ones(variant, tmp_path):
    """A national result recomputes its channel contributions from the parameters (the
    media kernel on the training spend), also where the fit stored them, and its saved file
    leaves them out: recomputed == the sampler's stored deterministic, the file has none,
    and a load gives every summary number again, exactly, and the same ArviZ posterior."""
    import numpy as np

    from fastmmm import MMM
    from fastmmm.posterior import read_netcdf
    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(80, 3, adstock="geometric", saturation="hill", seed=11)
    spec = dict(date_column="date", target="sales", channels=list(truth.channels), controls=["event"])
    r = MMM(**spec, **_VARIANTS[variant]).fit(
        df, draws=40, tune=60, chains=2, seed=3, progress=False, check=False
    )
    stored = r.posterior.flat("channel_contribution")
    np.testing.assert_allclose(r.draws("channel_contribution"), stored, rtol=1e-10, atol=1e-13)

    path = r.save(tmp_path / "m")
    groups, attrs = read_netcdf(path / "idata.nc")
    assert "channel_contribution" not in groups["posterior"]
    assert attrs["left_out"] == "channel_contribution"
    back = load(path)
    assert json.dumps(back.summary(), sort_keys=True, default=float) == json.dumps(
        r.summary(), sort_keys=True, default=float
    )
    np.testing.assert_array_equal(back.contribution_draws(), r.contribution_draws())
    got = back.idata["posterior"]["channel_contribution"]
    assert got.dims == ("chain", "draw", "date", "channel")
    np.testing.assert_allclose(got.values, r.posterior["channel_contribution"], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("variant", sorted(v for v in _VARIANTS if "log" not in v and "time" not in v))
def test_one_pass_channel_sums_equal_the_per_draw_contributions(variant, monkeypatch):
    """An additive model's summary takes contributions, their mean over draws and the +1%
    totals of marginal ROAS from one batched kernel (contribution_sums, no (S, T, C) array):
    the same numbers as summing the per-draw contribution arrays, the path of every other
    model."""
    import numpy as np

    from fastmmm import MMM
    from fastmmm.results import MMMResult
    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(70, 3, adstock="geometric", saturation="hill", seed=12)
    spec = dict(date_column="date", target="sales", channels=list(truth.channels), controls=["event"])
    r = MMM(**spec, **_VARIANTS[variant]).fit(
        df, draws=30, tune=60, chains=2, seed=4, progress=False, check=False
    )
    assert r._has_static_sums()
    fast = {k: v.copy() for k, v in r.channel_draws().items()}
    fast_mean = r.contributions_over_time()
    r._cd_cache = None
    r.__dict__.pop("_contribution_mean_cache", None)
    monkeypatch.setattr(MMMResult, "_has_static_sums", lambda self: False)
    slow = r.channel_draws()
    for k in ("contribution", "contribution_share", "roas", "mroas", "spend"):
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-11, atol=1e-9, err_msg=k)
    direct = r.contribution_draws().sum(axis=1)
    np.testing.assert_allclose(fast["contribution"], direct, rtol=1e-11)
    np.testing.assert_allclose(
        fast_mean.to_numpy(), r.contributions_over_time().to_numpy(), rtol=1e-11, atol=1e-9
    )
