"""Kernel benchmark: Rust adstock+saturation forward+VJP versus the same
transform written as a pure PyTensor graph compiled by PyTensor's numba backend.

Run:  python benches/bench_kernels.py [--quick]

Both sides compute, for upstream gradient g, the outputs y = hill(adstock(x))
and the gradients of sum(g * y) with respect to the adstock and saturation
parameters (not w.r.t. spend, which is data). Timings are medians over repeats
of many calls, all measured in this one run; the table reports ratios.
Results go to benches/results/kernels.json and kernels.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _calls_for(fn, min_time):
    fn()  # warm up
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 > min_time:
            return n
        n *= 2


def timeit(fn, min_time=0.2, repeats=7):
    """Median seconds per call over `repeats` batches of calls."""
    n = _calls_for(fn, min_time / 5)
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t0) / n)
    return statistics.median(per)


def interleaved(fns: dict, min_time=0.05, rounds=15):
    """Time several functions in alternating rounds (robust to load drifting on a
    shared machine). Returns per-function median seconds per call and the
    per-round times, so ratios can be taken round by round."""
    calls = {k: _calls_for(f, min_time) for k, f in fns.items()}
    per = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            n = calls[k]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            per[k].append((time.perf_counter() - t0) / n)
    return {k: statistics.median(v) for k, v in per.items()}, per


def median_ratio(per, num, den):
    """Median over rounds of time[num] / time[den]."""
    return statistics.median(a / b for a, b in zip(per[num], per[den]))


def pytensor_graph(l_max, conv="slices"):
    """Pure PyTensor geometric(l_max)+Hill forward and parameter gradients."""
    import pytensor
    import pytensor.tensor as pt

    x = pt.tensor3("x")
    alpha, kappa, slope = pt.matrix("alpha"), pt.matrix("kappa"), pt.matrix("slope")
    g = pt.tensor3("g")
    t = x.shape[1]
    lags = pt.arange(l_max, dtype="float64")
    w = alpha[:, None, :] ** lags[None, :, None]  # (B, L, C)
    if conv == "slices":
        padded = pt.concatenate([pt.zeros((x.shape[0], l_max - 1, x.shape[2])), x], axis=1)
        xa = sum(w[:, k, None, :] * padded[:, l_max - 1 - k : l_max - 1 - k + t, :] for k in range(l_max))
    else:  # pytensor's Convolve1d, as pymc-marketing 0.19's batched_convolution uses
        from pytensor.tensor.signal import convolve1d

        xt = x.transpose(0, 2, 1)
        padded = pt.concatenate([pt.zeros((x.shape[0], x.shape[2], l_max - 1)), xt], axis=2)
        xa = convolve1d(padded, w.transpose(0, 2, 1), mode="valid").transpose(0, 2, 1)
    ks = kappa[:, None, :] ** slope[:, None, :]
    y = 1 - ks / (ks + xa ** slope[:, None, :])  # pymc-marketing's hill_function
    grads = pt.grad((y * g).sum(), [alpha, kappa, slope])
    f = pytensor.function([x, alpha, kappa, slope, g], [y, *grads], mode="NUMBA", trust_input=True)
    return f


def case(b, t, c, l_max, rng):
    x = np.abs(rng.normal(size=(b, t, c))) * (rng.random((b, t, c)) > 0.2)
    g = rng.normal(size=(b, t, c))
    alpha = rng.uniform(0.1, 0.9, (b, c))
    kappa = rng.uniform(0.5, 2.0, (b, c))
    slope = rng.uniform(0.5, 3.0, (b, c))
    return x, g, alpha, kappa, slope


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    args = ap.parse_args(argv)
    import pytensor

    from fastmmm import _core

    rng = np.random.default_rng(0)
    min_time = 0.05 if args.quick else 0.3
    cases = [
        ("156x6, l_max 8", 1, 156, 6, 8),
        ("260x12, l_max 8", 1, 260, 12, 8),
        ("100 brands x 156x6", 100, 156, 6, 8),
    ]
    rows = []
    graphs = {}
    for name, b, t, c, l_max in cases:
        x, g, alpha, kappa, slope = case(b, t, c, l_max, rng)

        def rust_fused():
            y, cache = _core.media_fwd("geometric", "hill", x, alpha, None, kappa, slope, l_max, False)
            return _core.media_vjp("geometric", "hill", x, alpha, None, cache, g, l_max, False, False)

        def rust_separate():
            xa = _core.adstock_fwd("geometric", x, alpha, None, l_max, False)
            y = _core.saturation_fwd("hill", xa, kappa, slope)
            gxa, gk, gs = _core.saturation_vjp("hill", xa, kappa, slope, g)
            return _core.adstock_vjp("geometric", x, alpha, None, gxa, l_max, False), gk, gs, y

        # Correctness of what is timed: both sides give the same numbers.
        ref = {}
        nan_grads = {}
        for conv in ("slices", "convolve1d"):
            key = (conv, l_max)
            if key not in graphs:
                graphs[key] = pytensor_graph(l_max, conv)
            ref[conv] = graphs[key]
        y_r, cache = _core.media_fwd("geometric", "hill", x, alpha, None, kappa, slope, l_max, False)
        _, ga, _, gk, gs = _core.media_vjp("geometric", "hill", x, alpha, None, cache, g, l_max, False, False)
        for conv, f in ref.items():
            yp, gap, gkp, gsp = f(x, alpha, kappa, slope, g)
            np.testing.assert_allclose(y_r, yp, rtol=1e-9, atol=1e-12)
            for u, v in ((ga, gap), (gk, gkp), (gs, gsp)):
                # The plain graph's slope gradient is NaN where adstocked spend is 0
                # (0 * log 0); ours is finite there by convention. Compare the rest.
                assert np.isfinite(u).all()
                ok = np.isfinite(v)
                np.testing.assert_allclose(u[ok], v[ok], rtol=1e-7, atol=1e-9)
                nan_grads[conv] = nan_grads.get(conv, 0) + int((~ok).sum())

        fns = {"fused": rust_fused, "separate": rust_separate}
        for conv, f in ref.items():
            fns[conv] = lambda f=f: f(x, alpha, kappa, slope, g)
        med, per = interleaved(fns, min_time=min_time / 6, rounds=7 if args.quick else 21)
        t_fused, t_sep = med["fused"], med["separate"]
        t_pt = {conv: med[conv] for conv in ref}
        best_conv = min(t_pt, key=t_pt.get)
        rows.append(
            {
                "case": name,
                "shape": [b, t, c],
                "l_max": l_max,
                "rust_fused_us": t_fused * 1e6,
                "rust_separate_us": t_sep * 1e6,
                "pytensor_numba_us": {k: v * 1e6 for k, v in t_pt.items()},
                "pytensor_best": best_conv,
                "speedup_fused_vs_pytensor": median_ratio(per, best_conv, "fused"),
                "speedup_separate_vs_pytensor": median_ratio(per, best_conv, "separate"),
                "pytensor_nan_gradients": nan_grads,
            }
        )
    import numba

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()} {platform.release()}".strip(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pytensor": pytensor.__version__,
        "numba": numba.__version__,
        "fastmmm": _core.__version__,
        "note": "geometric adstock + Hill, forward + VJP w.r.t. parameters; contenders timed in alternating rounds, "
        "times are medians over rounds and speedups medians of per-round ratios; "
        "pytensor = best of two pure-PyTensor convolutions compiled with mode='NUMBA', trust_input=True",
    }
    lines = [
        "| case | Rust fused (us) | Rust separate kernels (us) | PyTensor numba (us) | fused speedup | separate speedup |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['rust_fused_us']:.1f} | {r['rust_separate_us']:.1f} | "
            f"{r['pytensor_numba_us'][r['pytensor_best']]:.1f} ({r['pytensor_best']}) | "
            f"{r['speedup_fused_vs_pytensor']:.1f}x | {r['speedup_separate_vs_pytensor']:.1f}x |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kernels.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / "kernels.md").write_text(
        f"# Kernel benchmark ({meta['date']})\n\n{meta['machine']}; python {meta['python']}, "
        f"numpy {meta['numpy']}, pytensor {meta['pytensor']}, numba {meta['numba']}\n\n{table}\n\n{meta['note']}\n"
    )
    return rows


if __name__ == "__main__":
    main()
