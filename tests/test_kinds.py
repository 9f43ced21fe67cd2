"""The registry of kernel kinds (fastmmm.kinds) against Rust's (rust/kernels/kinds.rs), and
each row's domains against what the kernels accept."""

import re

import numpy as np
import pytest

from fastmmm import _core
from fastmmm import kernels as K
from fastmmm.kinds import ADSTOCK_KINDS, DOMAINS, SATURATION_KINDS, kind
from fastmmm.layout import MediaDesign, default_prior, resolve_prior

GOOD = {"unit": 0.5, "unit_closed": 0.5, "positive": 1.0, "nonnegative": 1.0, "real": 1.0}
BAD = {"unit": 1.0, "unit_closed": 1.5, "positive": 0.0, "nonnegative": -1.0, "real": np.nan}


@pytest.mark.parametrize("family,table", [("adstock", ADSTOCK_KINDS), ("saturation", SATURATION_KINDS)])
def test_python_registry_equals_rust(family, table):
    rust = _core.kernel_kinds()[family]
    assert [(k.name, k.code, list(k.params)) for k in table.values()] == [tuple(r) for r in rust]
    for k in table.values():
        assert len(k.domains) == len(k.params) and set(k.domains) <= set(DOMAINS)
        assert set(k.fixed) <= set(k.params)
        assert k.relative is None or k.relative in k.params
        # every free parameter has a default prior
        assert set(k.priors) == set(k.params) - set(k.fixed), k.name


def _media(adstock, saturation, a, s):
    x = np.linspace(0.0, 2.0, 24)[:, None]
    return K.media_transform(
        x, adstock, saturation, [np.array([v]) for v in a], [np.array([v]) for v in s], 6
    )[0]


@pytest.mark.parametrize("name", list(ADSTOCK_KINDS))
def test_adstock_domains_are_what_the_kernel_accepts(name):
    row = ADSTOCK_KINDS[name]
    good = [GOOD[d] for d in row.domains]
    assert np.isfinite(_media(name, "logistic", good, [1.0])).all()
    for i, d in enumerate(row.domains):
        bad = list(good)
        bad[i] = BAD[d]
        with pytest.raises(ValueError, match=rf"^{re.escape(row.params[i])}:"):
            _media(name, "logistic", bad, [1.0])


@pytest.mark.parametrize("name", list(SATURATION_KINDS))
def test_saturation_domains_are_what_the_kernel_accepts(name):
    row = SATURATION_KINDS[name]
    good = [GOOD[d] for d in row.domains]
    assert np.isfinite(_media("geometric", name, [0.5], good)).all()
    for i, d in enumerate(row.domains):
        bad = list(good)
        bad[i] = BAD[d]
        with pytest.raises(ValueError, match=rf"^{re.escape(row.params[i])}:"):
            _media("geometric", name, [0.5], bad)


def test_default_priors_by_kind():
    """Literal defaults (the values the recovery studies were run with), resolved per kind."""
    from fastmmm.priors import Prior

    def at(name, adstock="geometric", saturation="hill"):
        return resolve_prior(None, name, MediaDesign(adstock, saturation, 8, True))

    assert at("adstock_alpha") == Prior("Beta", alpha=2.0, beta=2.0)
    assert at("adstock_lam", "weibull_pdf") == Prior("Gamma", alpha=4.0, beta=2.0)
    assert at("adstock_k", "weibull_pdf") == Prior("Gamma", alpha=9.0, beta=3.0)
    assert at("adstock_lam", "weibull_cdf") == Prior("Gamma", alpha=2.0, beta=1.0)
    assert at("adstock_k", "weibull_cdf") == Prior("Gamma", alpha=2.0, beta=1.0)
    assert at("saturation_kappa") == Prior("LogNormal", mu=0.0, sigma=0.7)
    assert at("saturation_slope") == Prior("TruncatedNormal", mu=1.5, sigma=1.0, lower=0.5, upper=4.0)
    assert at("saturation_lam", saturation="logistic") == Prior("Gamma", alpha=3.0, beta=1.0)
    assert at("saturation_lam", saturation="michaelis_menten") == Prior("LogNormal", mu=0.0, sigma=0.7)
    assert at("saturation_c", saturation="tanh") == Prior("Gamma", alpha=3.0, beta=3.0)
    # without a design: the first kind with the parameter (the former single table)
    assert default_prior("adstock_lam") == Prior("Gamma", alpha=4.0, beta=2.0)
    assert default_prior("saturation_lam") == Prior("Gamma", alpha=3.0, beta=1.0)
    # theta's default spans the adstock window
    assert dict(default_prior("adstock_theta", l_max=12).params)["upper"] == 11.0
    with pytest.raises(ValueError, match="expected one of geometric, delayed"):
        kind("adstock", "exponential")
