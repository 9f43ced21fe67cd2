"""Sampler diagnostics: R-hat/ESS are computed once per posterior and reused,
but a replaced posterior or changed divergences are always seen."""

from __future__ import annotations

from types import SimpleNamespace

import arviz as az
import numpy as np
from fastmmm.diagnostics import sampler_checks


def _idata(draws: np.ndarray, diverging: np.ndarray):
    return az.from_dict(posterior={"a": draws}, sample_stats={"diverging": diverging})


def test_sampler_checks_cache_follows_the_posterior_and_divergences():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(2, 500))
    res = SimpleNamespace(idata=_idata(good, np.zeros((2, 500), dtype=bool)))
    v1 = sampler_checks(res)
    assert v1.rhat_max < 1.01 and v1.divergences == 0 and v1.checks["rhat"]
    # Same posterior object: the cached R-hat/ESS are reused (the same numbers).
    v2 = sampler_checks(res, {"rhat": 1.5})
    assert (v2.rhat_max, v2.ess_bulk_min) == (v1.rhat_max, v1.ess_bulk_min)
    # Divergences are read every time, even when changed in place.
    res.idata.sample_stats["diverging"].values[0, :7] = True
    assert sampler_checks(res).divergences == 7
    # A replaced posterior (chains that disagree) is recomputed.
    bad = good.copy()
    bad[1] += 5.0
    res.idata = _idata(bad, np.zeros((2, 500), dtype=bool))
    v3 = sampler_checks(res)
    assert v3.rhat_max > 1.5 and not v3.checks["rhat"] and v3.failures
