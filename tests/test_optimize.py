"""Budget optimiser: Rust response vs numpy reference, analytic optimum, constraints."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastmmm import kernels as K
from fastmmm.optimize import PosteriorResponse, optimize_budget

BETA = np.array([3.0, 2.0])
LAM = np.array([1.0, 0.5])


def mm_model(beta=BETA, lam=LAM, avg=(1.0, 1.0)):
    """No carry-over (l_max 1), Michaelis-Menten curves beta x / (lam + x): closed-form optimum."""
    return PosteriorResponse.from_params(
        ["a", "b"],
        adstock="geometric",
        saturation="michaelis_menten",
        l_max=1,
        normalize=False,
        adstock_params=(np.full(2, 0.5),),
        saturation_params=(np.ones(2), lam),
        beta=beta[None, :],
        avg_spend=np.asarray(avg, dtype=float),
    )


def test_response_matches_numpy_reference_and_finite_differences():
    rng = np.random.default_rng(0)
    s, c, h, lh = 5, 3, 6, 8
    alpha = rng.uniform(0.2, 0.8, (s, c))
    kappa = rng.uniform(0.5, 2.0, (s, c))
    slope = rng.uniform(0.8, 2.5, (s, c))
    beta = rng.uniform(0.5, 2.0, (s, c))
    hist = rng.gamma(2.0, 0.5, (lh, c))
    model = PosteriorResponse.from_params(
        ["a", "b", "c"],
        adstock="geometric",
        saturation="hill",
        l_max=lh,
        normalize=True,
        adstock_params=(alpha,),
        saturation_params=(kappa, slope),
        beta=beta,
        history=hist,
    )
    plan = rng.gamma(2.0, 0.5, (h, c))
    resp, grad = model.response(plan)
    # numpy reference: transform the full series per draw, with and without the plan.
    full = np.vstack([hist, plan, np.zeros((lh, c))])
    base = np.vstack([hist, np.zeros((h, c)), np.zeros((lh, c))])
    ref = np.empty(s)
    for i in range(s):
        y = K.hill(K.geometric_adstock(full, alpha[i], lh, True), kappa[i], slope[i])
        y0 = K.hill(K.geometric_adstock(base, alpha[i], lh, True), kappa[i], slope[i])
        ref[i] = ((y - y0)[lh:] * beta[i]).sum()
    np.testing.assert_allclose(resp, ref, rtol=1e-10)
    eps = 1e-6
    for j, k in [(0, 0), (3, 1), (5, 2)]:
        pp, pm = plan.copy(), plan.copy()
        pp[j, k] += eps
        pm[j, k] -= eps
        fd = (model.response(pp)[0] - model.response(pm)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[:, j, k], fd, rtol=1e-7, atol=1e-9)


def test_analytic_optimum_and_equal_marginal_roas():
    budget, weeks = 20.0, 10
    x = budget / weeks
    k = np.sqrt(BETA[1] * LAM[1] / (BETA[0] * LAM[0]))
    x1 = (LAM[1] + x - k * LAM[0]) / (1 + k)
    want = np.array([x1, x - x1]) * weeks
    r = optimize_budget(mm_model(), budget, weeks)
    got = np.array([r.allocation["a"], r.allocation["b"]])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.sum() == pytest.approx(budget, rel=1e-12)
    m = np.array([r.mroas["a"], r.mroas["b"]])
    np.testing.assert_allclose(m[0], m[1], rtol=1e-5)
    assert r.expected_response["mean"] >= r.current_response["mean"]
    assert r.uplift["mean"] > 0


def test_bound_constrained_channel_has_higher_marginal_roas():
    r = optimize_budget(mm_model(), 20.0, 10, bounds={"a": (0.0, 5.0)})
    assert r.allocation["a"] == pytest.approx(5.0, abs=1e-9)
    assert r.allocation["a"] + r.allocation["b"] == pytest.approx(20.0, rel=1e-12)
    # Capped below its optimum, channel a's next dollar is worth more than b's.
    assert r.mroas["a"] > r.mroas["b"] * 1.01


def test_infeasible_bounds_raise():
    with pytest.raises(ValueError, match="infeasible"):
        optimize_budget(mm_model(), 20.0, 10, bounds={"a": (15.0, None), "b": (10.0, None)})
    with pytest.raises(ValueError, match="infeasible"):
        optimize_budget(mm_model(), 20.0, 10, bounds={"a": (0.0, 5.0), "b": (0.0, 5.0)})
    with pytest.raises(ValueError, match="unknown channel"):
        optimize_budget(mm_model(), 20.0, 10, bounds={"tv": (0.0, 5.0)})


def test_zero_spend_channel_and_large_budget():
    # Channel b never spent historically; budget 10x the historical one.
    model = mm_model(avg=(2.0, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = optimize_budget(model, 10 * 2.0 * 10, 10)
    vals = np.array(list(r.allocation.values()))
    assert np.isfinite(vals).all() and vals.sum() == pytest.approx(200.0, rel=1e-12)
    assert r.current_allocation["b"] == 0.0
    assert r.expected_response["mean"] >= r.current_response["mean"]
    assert r.allocation["b"] > 0  # the optimiser moves budget to the untried channel


@pytest.mark.parametrize("objective", ["quantile:0.1", "mean_sd:1.0"])
def test_risk_aware_objectives_never_worse_than_current(objective):
    rng = np.random.default_rng(1)
    s = 200
    model = PosteriorResponse.from_params(
        ["a", "b"],
        adstock="geometric",
        saturation="michaelis_menten",
        l_max=1,
        normalize=False,
        adstock_params=(np.full(2, 0.5),),
        saturation_params=(np.ones((s, 2)), rng.uniform(0.3, 1.5, (s, 2))),
        beta=rng.uniform(1.0, 3.0, (s, 2)),
    )
    r = optimize_budget(model, 20.0, 10, objective=objective)
    assert sum(r.allocation.values()) == pytest.approx(20.0, rel=1e-12)
    from fastmmm.optimize.budget import _objective, parse_objective

    kind, arg = parse_objective(objective)

    def val(a):
        resp, grad = model.response(np.full((10, 2), 1 / 10) * np.asarray(a)[None, :])
        return _objective(kind, arg, resp, grad.sum(axis=1), sum(a))[0]

    assert val(list(r.allocation.values())) >= val(list(r.current_allocation.values())) - 1e-12


def test_profit_objective_can_leave_budget_unspent():
    # At a target ROAS above what any channel can return, the best plan spends little.
    r = optimize_budget(mm_model(), 20.0, 10, objective="profit:5.0")
    assert sum(r.allocation.values()) < 20.0
    # Below what the channels return at the cap, the whole budget is spent; in between the
    # funded channels' marginal ROAS equals the target (beta lam / (lam + x)^2 = target).
    assert sum(
        optimize_budget(mm_model(), 20.0, 10, objective="profit:0.05").allocation.values()
    ) == pytest.approx(20.0)
    r = optimize_budget(mm_model(), 200.0, 10, objective="profit:0.5")
    x = np.sqrt(BETA * LAM / 0.5) - LAM  # weekly spend where mROAS = 0.5
    np.testing.assert_allclose(list(r.allocation.values()), 10 * x, rtol=1e-4)
    with pytest.raises(ValueError, match="objective"):
        optimize_budget(mm_model(), 20.0, 10, objective="median")
