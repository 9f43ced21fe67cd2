"""Sampler diagnostics: R-hat and ESS (fastmmm.convergence) equal ArviZ's; they are computed
once per posterior and reused, while divergences are read every time."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fastmmm.convergence import ess_bulk, ess_tail, mcse_mean, ndtri, rhat, summary
from fastmmm.diagnostics import sampler_checks
from fastmmm.posterior import Group, Posterior


def _posterior(draws: np.ndarray, diverging: np.ndarray) -> Posterior:
    return Posterior(
        {
            "posterior": Group({"a": draws}, {"a": ("chain", "draw")}),
            "sample_stats": Group({"diverging": diverging}, {"diverging": ("chain", "draw")}),
        }
    )


def test_sampler_checks_cache_follows_the_posterior_and_divergences():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(2, 500))
    res = SimpleNamespace(posterior=_posterior(good, np.zeros((2, 500), dtype=bool)))
    v1 = sampler_checks(res)
    assert v1.rhat_max < 1.01 and v1.divergences == 0 and v1.checks["rhat"]
    # Same posterior object: the cached R-hat/ESS are reused (the same numbers).
    v2 = sampler_checks(res, {"rhat": 1.5})
    assert (v2.rhat_max, v2.ess_bulk_min) == (v1.rhat_max, v1.ess_bulk_min)
    # Divergences are read every time, even when changed in place.
    res.posterior.sample_stats["diverging"][0, :7] = True
    assert sampler_checks(res).divergences == 7
    # A replaced posterior (chains that disagree) is recomputed.
    bad = good.copy()
    bad[1] += 5.0
    res.posterior = _posterior(bad, np.zeros((2, 500), dtype=bool))
    v3 = sampler_checks(res)
    assert v3.rhat_max > 1.5 and not v3.checks["rhat"] and v3.failures


@pytest.mark.parametrize("block", [512, 4, 1])
def test_convergence_summary_in_blocks_equals_the_statistics_of_every_element(monkeypatch, block):
    """Variables of every shape share blocks (or are split across them): the extremes over the
    blocks are those of one pass over all elements; mu and channel_contribution are left out."""
    from fastmmm import diagnostics

    monkeypatch.setattr(diagnostics, "_CONVERGENCE_BLOCK", block)
    rng = np.random.default_rng(3)
    values = {
        "level": rng.normal(size=(2, 400)),
        "beta": _ar1_chains(4, 2, 400, [0.2, 0.5, 0.9]),
        "kappa": rng.gamma(2.0, size=(2, 400, 2, 3)),
        "mu": rng.normal(size=(2, 400, 7)) + np.array([0.0, 3.0])[:, None, None],  # left out
    }
    values["beta"][1, :, 2] += 0.3  # one element whose chains disagree
    dims = {k: ("chain", "draw") + tuple(f"{k}_{i}" for i in range(v.ndim - 2)) for k, v in values.items()}
    post = Posterior({"posterior": Group(values, dims)})
    got = diagnostics.convergence_summary(post)
    flat = np.concatenate([v.reshape(2, 400, -1) for k, v in values.items() if k != "mu"], axis=2)
    want = summary(flat)
    assert got["rhat_max"] == pytest.approx(float(np.max(want["rhat"])), rel=1e-12)
    assert got["ess_bulk_min"] == pytest.approx(float(np.min(want["ess_bulk"])), rel=1e-12)
    assert got["ess_tail_min"] == pytest.approx(float(np.min(want["ess_tail"])), rel=1e-12)
    assert got["rhat_max"] > 1.05  # the disagreeing element, not mu's shifted chains, sets it
    assert got["rhat_max"] < float(np.max(rhat(values["mu"])))


def _ar1_chains(seed, chains, draws, phis):
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, draws, len(phis)))
    e = rng.standard_normal(x.shape)
    for t in range(draws):
        x[:, t] = (np.asarray(phis) * x[:, t - 1] if t else 0.0) + e[:, t]
    return x


@pytest.mark.parametrize("chains, draws", [(2, 1000), (4, 501), (1, 300), (3, 9)])
def test_rhat_and_ess_equal_arviz(chains, draws):
    az = pytest.importorskip("arviz")
    x = _ar1_chains(chains * 1000 + draws, chains, draws, [0.0, 0.5, 0.9, 0.99, -0.4, 0.3, 0.2])
    x[:, :, 5] = np.round(x[:, :, 5], 1)  # ties in the ranks
    if chains > 1:
        x[1, :, 4] += 0.7  # chains that disagree
    x[:, :, 6] = 2.5  # a constant
    ds = az.convert_to_dataset({"a": x})
    with np.errstate(all="ignore"):
        want = {
            "rhat": np.asarray(az.rhat(ds)["a"].values),
            "bulk": np.asarray(az.ess(ds, method="bulk")["a"].values),
            # The 5% and 95% quantiles of Vehtari et al. (2021), ArviZ 0.x's default; ArviZ 1.x
            # defaults to its credible-interval probability (0.89) instead, so it is given.
            "tail": np.asarray(az.ess(ds, method="tail", prob=(0.05, 0.95))["a"].values),
            "mcse": np.asarray(az.mcse(ds, method="mean")["a"].values),
        }
        got = {"rhat": rhat(x), "bulk": ess_bulk(x), "tail": ess_tail(x), "mcse": mcse_mean(x)}
        # The Rust core's statistics (what fits use) against the numpy reference: the
        # autocovariances are summed directly there, by FFT here, so equal to rounding.
        one = summary(x)
        np.testing.assert_allclose(one["ess_bulk"], got["bulk"], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(one["ess_tail"], got["tail"], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(one["rhat"], got["rhat"], rtol=1e-12, equal_nan=True)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("chains, draws", [(2, 1000), (4, 250), (1, 400), (2, 12), (3, 7), (2, 5), (2, 3000)])
def test_rust_statistics_equal_the_numpy_reference_over_many_columns(chains, draws):
    """summary (Rust, columns split across threads when large) against rhat / ess_bulk /
    ess_tail (numpy) over columns of every kind a posterior has: autocorrelated up to a
    random walk (Geyer's sequence past the directly summed lags: the FFT path), heavy
    tailed, discrete (ties), chains that disagree, constant, a non-finite draw. (Discrete
    draws on very short chains can put a Geyer pair sum at exactly 0, where the two
    implementations' rounding may decide differently; the grid keeps those continuous.)"""
    rng = np.random.default_rng(chains * 100 + draws)
    phis = rng.uniform(-0.5, 0.995, size=60)
    phis[30] = 1.0  # a random walk
    x = _ar1_chains(draws, chains, draws, phis)
    x[:, :, 10:15] = rng.standard_t(1.5, size=(chains, draws, 5))
    if draws >= 100:  # ties; on very short chains they could meet the knife-edge above
        x[:, :, 15:20] = np.round(x[:, :, 15:20])
        x[:, :, 20:22] = (x[:, :, 20:22] > 1.5).astype(float)
    x[0, :, 22:25] += 3.0
    x[:, :, 25] = -1.25
    x[0, draws // 2, 26] = np.nan
    x[-1, 0, 27] = np.inf
    x = np.concatenate([x] * 4, axis=2)  # 240 columns: above the threshold for threads at 2 x 1000
    got = summary(x)
    with np.errstate(all="ignore"):
        want = {"rhat": rhat(x), "ess_bulk": ess_bulk(x), "ess_tail": ess_tail(x)}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-11, equal_nan=True, err_msg=k)
        assert np.isnan(got[k][[26, 27]]).all()
    assert (np.isnan(got["rhat"]) == np.isnan(want["rhat"])).all()
    # The column blocks of the serial and the threaded path agree.
    part = summary(np.ascontiguousarray(x[:, :, :7]))
    for k in got:
        np.testing.assert_array_equal(part[k], got[k][:7])


def test_ndtri_is_the_normal_quantile():
    from scipy.special import ndtri as scipy_ndtri

    p = np.concatenate(
        [np.random.default_rng(0).uniform(0, 1, 10000), [1e-300, 1e-20, 0.075, 0.5, 0.925, 1 - 1e-12]]
    )
    np.testing.assert_allclose(ndtri(p), scipy_ndtri(p), rtol=1e-14, atol=1e-15)
