"""Drifting-baseline panels: ROAS recovery of the hierarchical model with a time-varying
intercept (one HSGP per geo, lengthscale and amplitude shared) against the static baseline,
on the same data; and the cost of one log-density + gradient of a 10-geo model with the
time-varying intercept against without it.

Run:  python benches/bench_panel_tvp.py [--quick] [--datasets 3] [--geos 6] [--weeks 130]

Data: fastmmm.synthetic.make_panel(geos, weeks, 3, seed=100 + i, drift=0.15): each geo's
baseline drifts smoothly (random slow sines, RMS 15% of the baseline) and its spend follows
the drift (budgets that track sales), seeds unlike the tests'.

Fits: HierarchicalMMM(..., saturation="hill", controls=["event"]).fit(backend="rust"),
2 chains x 1000 draws + 1000 tune (the library's defaults; 2 x 300 + 300 with --quick), the
static model and the same spec with time_varying_intercept=True. Per fit: the share of
geo-channel ROAS 95% intervals that cover the truth, the median absolute and mean signed
ROAS error of the posterior mean, divergences, max R-hat, min bulk ESS, sampling time.

Per-evaluation cost: bench_fit's timing harness (each problem's C log-density called N
times from one numba loop, the two problems taking turns in rounds), on make_panel(10, 104,
3, seed=1) with and without the time-varying intercept.

Results: benches/results/panel_tvp.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import cpu_name, quiet, versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CHANNELS = 3


def _model(truth, tvp: bool):
    from fastmmm import hierarchical as hm

    return hm.HierarchicalMMM(
        group="geo",
        date_column="date",
        target="sales",
        channels=list(truth["channels"]),
        controls=["event"],
        saturation="hill",
        time_varying_intercept=tvp,
    )


def fit_one(df, truth, tvp: bool, args, seed: int) -> dict:
    res = _model(truth, tvp).fit(
        df, draws=args.draws, tune=args.tune, chains=args.chains, seed=seed, progress=False, backend="rust"
    )
    v = res.validate()
    cs = res.channel_summary()
    true = truth["roas"].reshape(-1)
    low, high, mean = (cs[k].to_numpy() for k in ("roas_low", "roas_high", "roas_mean"))
    rel = (mean - true) / true
    return {
        "model": "time-varying intercept" if tvp else "static",
        "coverage": float(np.mean((low <= true) & (true <= high))),
        "covered": int(np.sum((low <= true) & (true <= high))),
        "cells": int(true.size),
        "median_abs_error": float(np.median(np.abs(rel))),
        "mean_signed_error": float(np.mean(rel)),
        "divergences": int(v.divergences),
        "rhat_max": float(v.rhat_max),
        "ess_bulk_min": float(v.ess_bulk_min),
        "sample_s": float(res.timing["sample_s"]),
    }


def recovery(args) -> list[dict]:
    from fastmmm.synthetic import make_panel

    rows = []
    for i in range(args.datasets):
        seed = 100 + i
        df, truth = make_panel(args.geos, args.weeks, CHANNELS, seed=seed, drift=args.drift)
        for tvp in (False, True):
            r = fit_one(df, truth, tvp, args, seed)
            r["dataset"] = seed
            rows.append(r)
            print(
                f"panel {seed} {r['model']:>24}: coverage {r['covered']}/{r['cells']}, median |err| "
                f"{r['median_abs_error']:.1%}, mean err {r['mean_signed_error']:+.1%}, divergences "
                f"{r['divergences']}, R-hat {r['rhat_max']:.4f}, ESS {r['ess_bulk_min']:.0f}, "
                f"{r['sample_s']:.1f} s",
                flush=True,
            )
    return rows


def eval_cost(args) -> dict:
    """Microseconds (thread CPU) per log-density + gradient of the 10-geo model, with and
    without the time-varying intercept, taking turns, at the same random point of the shared
    parameters (the drift's coefficients also random)."""
    import ctypes

    from bench_fit import EvalTarget, RustTarget
    from bench_hierarchical import per_eval

    from fastmmm import hierarchical as hm
    from fastmmm.synthetic import make_panel

    df, truth = make_panel(10, 104, CHANNELS, seed=1)
    rng = np.random.default_rng(0)
    targets = {}
    for name, tvp in (("static", False), ("time-varying intercept", True)):
        spec = _model(truth, tvp).spec
        groups, datas = hm.prepare_panel(df, spec, "geo")
        problem, layout = hm.grouped_problem(datas, spec, groups)
        x = layout.initial_point() + rng.normal(0, 0.1, layout.n_dim)
        targets[name] = [EvalTarget(RustTarget(problem), x, ctypes.c_int)]
    us = per_eval(targets, 5 if args.quick else 15, 0.05 if args.quick else 0.2)
    ratio = np.asarray(us["time-varying intercept"]) / np.asarray(us["static"])
    return {
        "us_per_eval": {k: float(np.median(v)) for k, v in us.items()},
        "ratio_tvp_over_static": float(np.median(ratio)),
    }


def write(rows, cost, args):
    RESULTS.mkdir(exist_ok=True)
    meta = {"versions": versions(), "cpu": cpu_name(), "args": vars(args)}
    (RESULTS / "panel_tvp.json").write_text(json.dumps({"meta": meta, "fits": rows, "eval": cost}, indent=2))
    lines = [
        "# Drifting-baseline panels: time-varying intercept vs static baseline",
        "",
        f"{args.datasets} panels of {args.geos} geos x {args.weeks} weeks x {CHANNELS} channels "
        f"(make_panel drift={args.drift}, seeds 100..{99 + args.datasets}), {args.chains} chains x "
        f"{args.draws} draws + {args.tune} tune, Rust backend. CPU: {meta['cpu']} (2 cores; sampling "
        "times are wall times on a machine shared with other work).",
        "",
        "| panel | model | ROAS 95% coverage | median abs error | mean signed error | divergences "
        "| max R-hat | min bulk ESS | sampling s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['covered']}/{r['cells']} ({r['coverage']:.0%}) | "
            f"{r['median_abs_error']:.1%} | {r['mean_signed_error']:+.1%} | {r['divergences']} | "
            f"{r['rhat_max']:.4f} | {r['ess_bulk_min']:.0f} | {r['sample_s']:.1f} |"
        )
    lines += [
        "",
        "| model | coverage over all panels | median abs error | fits with 0 divergences | fits with R-hat < 1.01 |",
        "|---|---|---|---|---|",
    ]
    for model in ("static", "time-varying intercept"):
        rs = [r for r in rows if r["model"] == model]
        cov = sum(r["covered"] for r in rs) / max(sum(r["cells"] for r in rs), 1)
        med = float(np.median([r["median_abs_error"] for r in rs]))
        ok = sum(r["divergences"] == 0 for r in rs)
        mixed = sum(r["rhat_max"] < 1.01 for r in rs)
        lines.append(f"| {model} | {cov:.0%} | {med:.1%} | {ok}/{len(rs)} | {mixed}/{len(rs)} |")
    if cost:
        u = cost["us_per_eval"]
        lines += [
            "",
            "One log-density + gradient, 10 geos x 104 weeks x 3 channels (make_panel seed 1), "
            "median of rounds, same run:",
            "",
            "| model | us per evaluation |",
            "|---|---|",
            *(f"| {k} | {v:.1f} |" for k, v in u.items()),
            "",
            f"Time-varying intercept / static: {cost['ratio_tvp_over_static']:.2f}x.",
        ]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())]
    (RESULTS / "panel_tvp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", type=int, default=3)
    ap.add_argument("--geos", type=int, default=6)
    ap.add_argument("--weeks", type=int, default=130)
    ap.add_argument("--drift", type=float, default=0.15)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=None)
    ap.add_argument("--tune", type=int, default=None)
    ap.add_argument("--no-fits", action="store_true", help="only the per-evaluation cost")
    args = ap.parse_args(argv)
    args.draws = args.draws or (300 if args.quick else 1000)
    args.tune = args.tune or (300 if args.quick else 1000)
    t0 = time.perf_counter()
    notes: list = []
    with quiet(notes):
        cost = eval_cost(args)
    rows = [] if args.no_fits else recovery(args)
    write(rows, cost, args)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
