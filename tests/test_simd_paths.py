"""Every SIMD code path computes the same numbers.

The kernels and the fused log-density are compiled three times (baseline,
AVX2+FMA, AVX-512) and the widest one the CPU has is chosen at run time, so a
machine normally exercises only one of them. ``FASTMMM_SIMD`` caps the level;
this test runs the same computations in subprocesses at every level this
machine supports and compares them with each other (the default-level results
are checked against independent references by the other test modules). The
AVX2 and AVX-512 builds use fused multiply-adds and the baseline does not, so
they agree to rounding, not bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from fastmmm import _core, kernels as K
    from fastmmm.data import prepare
    from fastmmm.fastpath import build_problem, problem_data
    from fastmmm.layout import national_layout
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_dataset

    out = {"level": int(_core.simd_level())}
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 1.0, size=(2, 37, 3))
    x[:, 5:9, 1] = 0.0
    g = rng.normal(size=x.shape)
    cases = [
        ("geometric", "hill", (np.array([0.3, 0.6, 0.9]),), (np.array([0.5, 1.0, 2.0]), np.array([0.7, 1.0, 2.5]))),
        ("delayed", "logistic", (np.array([0.5, 0.7, 0.2]), np.array([1.0, 2.0, 0.5])), (np.array([0.5, 2.0, 4.0]),)),
        ("weibull_cdf", "michaelis_menten", (np.array([1.5, 3.0, 0.7]), np.array([0.8, 2.0, 1.3])),
         (np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0]))),
        ("weibull_pdf", "tanh", (np.array([2.0, 3.0, 1.2]), np.array([1.5, 2.0, 0.9])),
         (np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0]))),
    ]
    for ad, sat, ap, sp in cases:
        y, cache = K.media_transform(x, ad, sat, ap, sp, l_max=9, normalize=True)
        gx, ga, gs = K.media_transform_vjp(x, g, cache, ad, sat, ap, sp, l_max=9, normalize=True, want_gx=True)
        out[f"media {ad} {sat}"] = [y.ravel().tolist(), gx.ravel().tolist()] + [np.ravel(v).tolist() for v in ga + gs]
    for ad, sat, seed in [("geometric", "hill", 1), ("weibull_pdf", "logistic", 2)]:
        df, truth = make_dataset(70, 3, adstock="geometric", saturation="hill", seed=seed)
        spec = ModelSpec(date_column="date", target="sales", channels=truth.channels, controls=("event",),
                         adstock=ad, saturation=sat, l_max=8, yearly_seasonality=2)
        data = prepare(df, spec)
        problem = build_problem(national_layout(spec, data), problem_data(spec, data))
        pts = np.random.default_rng(seed).normal(0.0, 0.5, size=(3, problem.n_dim))
        res = []
        for p in pts:
            lp, gr = problem.logp_dlogp(np.ascontiguousarray(p))
            res.append([float(lp)] + np.asarray(gr).tolist())
        out[f"logp {ad} {sat}"] = res
    json.dump(out, sys.stdout)
    """
)


def _run(level: int | None) -> dict:
    env = dict(os.environ)
    env.pop("FASTMMM_SIMD", None)
    if level is not None:
        env["FASTMMM_SIMD"] = str(level)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_simd_level_agrees():
    top = _run(None)["level"]  # what this CPU has, whatever FASTMMM_SIMD says here
    base = _run(0)
    assert base["level"] == 0, "FASTMMM_SIMD=0 did not select the baseline path"
    others = {lvl: _run(lvl) for lvl in range(1, top + 1)}
    for lvl, res in others.items():
        assert res["level"] == lvl
        for key, ref in base.items():
            if key == "level":
                continue
            for a, b in zip(res[key], ref, strict=True):
                a, b = np.asarray(a), np.asarray(b)
                scale = max(1.0, float(np.max(np.abs(b))))
                np.testing.assert_allclose(
                    a, b, rtol=1e-11, atol=1e-11 * scale, err_msg=f"{key} at SIMD level {lvl}"
                )
    if top == 0:
        pytest.skip("this CPU has no AVX2/AVX-512: only the baseline path could run")
