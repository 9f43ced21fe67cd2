"""Hierarchical benchmark: one log-density + gradient of a 10-geo hierarchical
model versus 10 single-geo evaluations, and the 10-geo fit.

Run:  python benches/bench_hierarchical.py [--quick] [--geos 10] [--weeks 104] [--channels 3]

Data: fastmmm.synthetic.make_panel(geos, weeks, channels, seed=1) (geometric
adstock l_max 8 + Hill, event control, yearly seasonality 2, trend per geo).

Per-evaluation cost (microseconds per log-density + gradient, each C function
called N times from one numba @njit loop at a fixed point, contenders taking
turns in rounds; ratios are medians of per-round ratios):
  grouped rust     HierarchicalMMM's fused Rust log-density: all geos in one call
                   (geos on the batch axis of the media kernel, pooled media
                   parameters), one evaluation.
  10 x single rust the single-geo fast path (MMM's fused Rust log-density, one
                   geo's data each), one evaluation of each of the 10 geos' models.
  grouped pytensor the same hierarchical PyMC model compiled by nutpie's numba
                   backend (the reference path), one evaluation.
  10 x single pytensor  the single-geo PyMC model compiled by nutpie (numba): the
                   cost of one evaluation times 10 (all geos share the compiled
                   function; the cost does not depend on the data).
(--quick: no pytensor contenders, fewer rounds.)

Fit: HierarchicalMMM(...).fit(backend="rust"), 4 chains x 2000 draws + 1000 tune
(2 x 500 + 500 with --quick): wall time, divergences, max R-hat, min bulk ESS and the share of
geo-channel ROAS 95% intervals covering the truth.

Results: benches/results/hierarchical.json and .md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import cpu_name, quiet, versions  # noqa: E402
from bench_fit import EvalTarget, RustTarget  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build(args):
    from fastmmm import fastpath
    from fastmmm import hierarchical as hm
    from fastmmm.data import prepare
    from fastmmm.layout import national_layout
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_panel

    df, truth = make_panel(args.geos, args.weeks, args.channels, seed=1)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=list(truth["channels"]),
        controls=["event"],
        adstock="geometric",
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )
    groups, datas, model = hm.HierarchicalMMM(spec, group="geo").build(df)
    out = {"df": df, "truth": truth, "spec": spec, "groups": groups, "datas": datas, "hmodel": model}
    out["grouped_rust"] = RustTarget(hm.grouped_problem(datas, spec, groups)[0])
    singles = []
    for g in groups:
        data = prepare(df[df["geo"] == g].drop(columns=["geo"]), spec)
        problem = fastpath.build_problem(national_layout(spec, data), fastpath.problem_data(spec, data))
        singles.append((data, RustTarget(problem)))
    out["singles"] = singles
    return out


def eval_targets(b, with_pytensor: bool):
    """name -> list of EvalTarget (a contender's cost is the sum over its list)."""
    rng = np.random.default_rng(0)
    hmodel = b["hmodel"]
    ip = hmodel.initial_point()
    x_h = np.concatenate([np.ravel(ip[hmodel.rvs_to_values[rv].name]) for rv in hmodel.free_RVs])
    x_h = x_h + rng.normal(0, 0.1, x_h.size)
    targets = {"grouped rust": [EvalTarget(b["grouped_rust"], x_h, ctypes.c_int)]}
    singles = []
    for _, comp in b["singles"]:
        x = rng.normal(0, 0.3, comp.n_dim)
        singles.append(EvalTarget(comp, x, ctypes.c_int))
    targets["10 x single rust"] = singles
    if with_pytensor:
        import nutpie

        hp = nutpie.compile_pymc_model(hmodel, backend="numba")
        targets["grouped pytensor"] = [EvalTarget(hp, x_h, ctypes.c_int64)]
        from fastmmm.model import build_model

        data0 = b["singles"][0][0]
        m0 = build_model(data0, b["spec"])
        sp = nutpie.compile_pymc_model(m0, backend="numba")
        ip0 = m0.initial_point()
        x0 = np.concatenate([np.ravel(ip0[m0.rvs_to_values[rv].name]) for rv in m0.free_RVs])
        # one compiled function, evaluated once per geo
        targets["10 x single pytensor"] = [EvalTarget(sp, x0, ctypes.c_int64)] * len(b["singles"])
    return targets


def per_eval(targets, rounds: int, min_time: float):
    calls = {k: [t.calibrate(min_time / len(ts)) for t in ts] for k, ts in targets.items()}
    us = {k: [] for k in targets}
    for _ in range(rounds):
        for k, ts in targets.items():
            us[k].append(sum(t.time_us(n)[1] for t, n in zip(ts, calls[k])))
    return us


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--geos", type=int, default=10)
    p.add_argument("--weeks", type=int, default=104)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--no-fit", action="store_true", help="per-evaluation costs only")
    args = p.parse_args(argv)
    notes: list = []
    with quiet(notes):
        b = build(args)
        targets = eval_targets(b, with_pytensor=not args.quick)
    rounds = 5 if args.quick else 15
    us = per_eval(targets, rounds, 0.05 if args.quick else 0.2)
    ref = np.asarray(us["grouped rust"])
    evals = {}
    for k, v in us.items():
        v = np.asarray(v)
        evals[k] = {
            "us_median": float(np.median(v)),
            "us_min": float(v.min()),
            "ratio_to_grouped_rust": float(np.median(v / ref)),
        }
    row = {
        "case": f"{args.geos} geos x {args.weeks} weeks x {args.channels} channels, geometric(l_max 8) + Hill",
        "n_dim_grouped": int(b["grouped_rust"].n_dim),
        "n_dim_single": int(b["singles"][0][1].n_dim),
        "per_eval": evals,
        "rounds": rounds,
    }
    if not args.no_fit:
        from fastmmm import hierarchical as hm

        draws, tune, chains = (500, 500, 2) if args.quick else (2000, 1000, 4)
        t0 = time.perf_counter()
        with quiet(notes):
            res = hm.HierarchicalMMM(b["spec"], group="geo").fit(
                b["df"], draws=draws, tune=tune, chains=chains, seed=1, progress=False, backend="rust"
            )
        wall = time.perf_counter() - t0
        v = res.validate()
        cs = res.channel_summary()
        tr = b["truth"]["roas"].reshape(-1)
        cover = (cs["roas_low"].to_numpy() <= tr) & (tr <= cs["roas_high"].to_numpy())
        row["fit"] = {
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "wall_s": wall,
            **res.timing,
            "divergences": v.divergences,
            "rhat_max": v.rhat_max,
            "ess_bulk_min": v.ess_bulk_min,
            "roas_coverage": float(cover.mean()),
            "mape_in_sample": v.mape_in_sample,
        }
    row["versions"] = versions()
    row["cpu"] = cpu_name()
    row["notes"] = notes
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hierarchical.json").write_text(json.dumps(row, indent=1))
    lines = [
        f"# Hierarchical benchmark\n\n{row['case']}; {row['cpu']}; "
        f"dims: grouped {row['n_dim_grouped']}, single {row['n_dim_single']}.\n",
        "| log-density + gradient | us (median of rounds) | ratio to grouped rust |",
        "|---|---|---|",
    ]
    for k, e in evals.items():
        lines.append(f"| {k} | {e['us_median']:.1f} | {e['ratio_to_grouped_rust']:.2f} |")
    if "fit" in row:
        f = row["fit"]
        lines += [
            "",
            f"Fit (rust, {f['chains']} chains x {f['draws']} draws + {f['tune']} tune): {f['wall_s']:.1f} s wall, "
            f"{f['divergences']} divergences, max R-hat {f['rhat_max']:.4f}, min bulk ESS "
            f"{f['ess_bulk_min']:.0f}, ROAS 95% coverage {100 * f['roas_coverage']:.0f}%.",
        ]
    md = "\n".join(lines) + "\n"
    (RESULTS / "hierarchical.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
