"""An enterprise panel: 50 geos x 208 weeks x 30 channels x 10 controls. The cost of one
log-density + gradient per (geo, week, channel) cell against bench_fit's national 156 x 6
model in the same run, the media passes split across 2 threads against 1, and a short fit
(1 chain, on 1 and on 2 cores) for the tree depth, the sampling rate and the peak memory.

Run:  python benches/bench_enterprise.py [--quick] [--geos 50] [--weeks 208] [--channels 30]

Data: fastmmm.synthetic.make_panel panels (geometric l_max 8 + Hill) with channels from
three seeds side by side (make_panel has 10 channel shapes at most per draw) and 9 random
normal controls beside the event control; yearly seasonality 2.

Per-evaluation cost: each problem's C log-density called N times from one numba loop at a
fixed point (bench_fit's EvalTarget), rounds taking turns; thread CPU time for the
per-cell comparison, wall time for the thread scaling.

Fit: HierarchicalMMM's Rust problem sampled by fastpath.sample, 1 chain x (tune + draws)
(100 + 100; 30 + 30 with --quick), cores=1 then cores=2; peak RSS of the process
(ru_maxrss) after each. The full 2 x 1000 + 1000 fit time is extrapolated from the
gradient evaluations per draw and the per-evaluation time.

Results: benches/results/enterprise.json and .md.

``--full-fit`` instead runs the whole fit a user runs, ``HierarchicalMMM.fit`` at the defaults
(2 chains x 1000 draws + 1000 tune, on 2 cores) and its outputs without the report
(``write_outputs``): wall of each, sampling time, tree depth, gradients per draw, divergences,
R-hat, ESS and the process's peak RSS, to benches/results/enterprise_fit.json and .md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import cpu_name, quiet, versions  # noqa: E402
from bench_fit import EvalTarget, RustTarget, case_synthetic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def enterprise(geos: int, weeks: int, channels: int, controls: int, seed: int = 0):
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_panel

    names = [f"ch{j:02d}" for j in range(channels)]
    df, truth = make_panel(geos, weeks, min(channels, 10), seed=seed)
    df = df.rename(columns=dict(zip(truth["channels"], names)))
    k, s = min(channels, 10), 1
    while k < channels:
        extra, tr = make_panel(geos, weeks, min(channels - k, 10), seed=seed + s)
        for j, ch in enumerate(tr["channels"]):
            df[names[k + j]] = extra[ch].to_numpy()
        k, s = k + min(channels - k, 10), s + 1
    rng = np.random.default_rng(seed)
    ctrls = ["event"] + [f"ctrl{j}" for j in range(controls - 1)]
    for c in ctrls[1:]:
        df[c] = rng.standard_normal(len(df))
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=names,
        controls=ctrls,
        saturation="hill",
        yearly_seasonality=2,
    )
    return df, spec


def write_results(stem: str, out: dict, lines: list[str]) -> None:
    """results/<stem>.json (``out``) and .md (``lines`` and the versions), and print the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2))
    lines = [*lines, "", "Versions: " + ", ".join(f"{k} {v}" for k, v in out["meta"]["versions"].items())]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def timed(target, n, rounds, wall=False):
    return float(np.median([target.time_us(n)[0 if wall else 1] for _ in range(rounds)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full-fit", action="store_true", help="the whole 2 x 1000 + 1000 fit and its outputs")
    ap.add_argument("--geos", type=int, default=50)
    ap.add_argument("--weeks", type=int, default=208)
    ap.add_argument("--channels", type=int, default=30)
    ap.add_argument("--controls", type=int, default=10)
    args = ap.parse_args(argv)
    if args.full_fit:
        return full_fit(args)
    from fastmmm import _core, fastpath
    from fastmmm import hierarchical as hm
    from fastmmm.data import prepare
    from fastmmm.layout import national_layout

    notes: list = []
    with quiet(notes):
        df, spec = enterprise(args.geos, args.weeks, args.channels, args.controls)
        groups, datas = hm.prepare_panel(df, spec, "geo")
        problem, layout = hm.grouped_problem(datas, spec, groups)
        x = layout.initial_point() + np.random.default_rng(0).normal(0, 0.1, layout.n_dim)
        big = EvalTarget(RustTarget(problem), x, ctypes.c_int)
        case = case_synthetic()
        nat_data = prepare(case["df"], case["spec"])
        nat_layout = national_layout(case["spec"], nat_data)
        nat = fastpath.build_problem(nat_layout, fastpath.problem_data(case["spec"], nat_data))
        xn = nat_layout.initial_point() + np.random.default_rng(0).normal(0, 0.1, nat_layout.n_dim)
        small = EvalTarget(RustTarget(nat), xn, ctypes.c_int)
    rounds = 3 if args.quick else 7
    nb, ns = big.calibrate(0.2), small.calibrate(0.2)
    cpu_big = [timed(big, nb, 1) for _ in range(rounds)]
    cpu_small = [timed(small, ns, 1) for _ in range(rounds)]
    G, T, C = args.geos, args.weeks, args.channels
    t_nat, c_nat = len(nat_data.dates), len(case["spec"].channels)
    per_cell = float(np.median(cpu_big)) * 1e3 / (G * T * C)
    per_cell_nat = float(np.median(cpu_small)) * 1e3 / (t_nat * c_nat)
    wall1 = timed(big, nb, rounds, wall=True)
    _core.set_eval_threads(2)
    wall2 = timed(big, nb, rounds, wall=True)
    _core.set_eval_threads(1)
    print(
        f"per cell {per_cell:.2f} ns (national {per_cell_nat:.2f} ns); wall 1 thread {wall1:.0f} us, 2 threads {wall2:.0f} us"
    )

    n = 30 if args.quick else 100
    fits = {}
    for cores in (1, 2):
        t0 = time.perf_counter()
        post = fastpath.sample(
            problem, layout, draws=n, tune=n, chains=1, cores=cores, seed=1, progress=False
        )
        dt = time.perf_counter() - t0
        depth = float(np.mean(post.sample_stats["depth"]))
        steps = float(np.mean(post.sample_stats["n_steps"]))
        fits[cores] = {
            "sample_s": dt,
            "draws_per_s": 2 * n / dt,
            "mean_depth": depth,
            "grad_evals_per_draw": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(
            f"cores={cores}: {dt:.1f} s for {2 * n} draws, depth {depth:.1f}, steps/draw {steps:.0f}, "
            f"peak RSS {fits[cores]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    steps = fits[1]["grad_evals_per_draw"]
    full_1core_per_chain = 2000 * steps * wall1 * 1e-6
    left = fastpath.left_out(layout, 1000, 2)  # what a 2 x 1000 fit leaves out of its draws
    stored = sum(int(np.prod(sh, dtype=int)) for nm, _, sh in layout.variables() if nm not in left)
    draw_mb = 8 * stored / 1e6
    out = {
        "meta": {"versions": versions(), "cpu": cpu_name(), "args": vars(args)},
        "n_dim": int(layout.n_dim),
        "n_expanded": int(layout.n_expanded),
        "us_per_eval_cpu": float(np.median(cpu_big)),
        "ns_per_cell": per_cell,
        "national_ns_per_cell": per_cell_nat,
        "wall_us_1_thread": wall1,
        "wall_us_2_threads": wall2,
        "fits": fits,
        "extrapolated_fit_s": {
            "2 chains on 2 cores": full_1core_per_chain,
            "1 chain on 2 cores": 2000 * steps * wall2 * 1e-6,
        },
        "stored_mb_per_draw": draw_mb,
        "left_out": list(left),
    }
    lines = [
        f"# Enterprise panel: {G} geos x {T} weeks x {C} channels x {args.controls} controls",
        "",
        f"n_dim {layout.n_dim}; a 2 x 1000 fit stores {stored} of the {layout.n_expanded} expanded values per draw "
        f"({draw_mb:.2f} MB; left out: {', '.join(left) or 'none'}, recomputed from the parameters when asked). "
        f"CPU: {out['meta']['cpu']}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| log-density + gradient (thread CPU) | {np.median(cpu_big):.0f} us |",
        f"| per (geo, week, channel) cell | {per_cell:.2f} ns |",
        f"| national 156 x 6 per (week, channel) cell, same run | {per_cell_nat:.2f} ns |",
        f"| panel / national per cell | {per_cell / per_cell_nat:.2f}x |",
        f"| wall per evaluation, 1 thread | {wall1:.0f} us |",
        f"| wall per evaluation, media passes on 2 threads | {wall2:.0f} us ({wall1 / wall2:.2f}x) |",
    ]
    for cores, f in fits.items():
        lines.append(
            f"| 1 chain on {cores} core(s), {n} + {n} draws | {f['sample_s']:.1f} s, depth {f['mean_depth']:.1f}, "
            f"{f['grad_evals_per_draw']:.0f} gradients/draw, peak RSS {f['peak_rss_mb']:.0f} MB |"
        )
    lines += [
        f"| 2 x 1000 + 1000 fit, 2 chains on 2 cores (extrapolated) | {full_1core_per_chain / 60:.0f} min |",
        f"| 1 chain x 1000 + 1000 on 2 cores (extrapolated) | {2000 * steps * wall2 * 1e-6 / 60:.0f} min |",
        f"| draws stored by a 2 x 1000 fit | {2 * 1000 * draw_mb / 1e3:.1f} GB |",
    ]
    write_results("enterprise", out, lines)


def full_fit(args) -> None:
    """The whole default fit of the enterprise panel and its outputs, as a user runs them."""
    import tempfile

    from fastmmm import defaults
    from fastmmm import hierarchical as hm
    from fastmmm.outputs import write_outputs

    df, spec = enterprise(args.geos, args.weeks, args.channels, args.controls)
    h = hm.HierarchicalMMM(spec, group="geo")
    t0 = time.perf_counter()
    res = h.fit(df, seed=1, progress=False)
    fit_s = time.perf_counter() - t0
    rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    v = res.validate()
    stats = res.posterior.sample_stats
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_outputs(res, Path(tmp) / "out", report=False)
        out_s = time.perf_counter() - t0
    out = {
        "meta": {"versions": versions(), "cpu": cpu_name(), "args": vars(args)},
        "chains": defaults.CHAINS,
        "draws": defaults.DRAWS,
        "tune": defaults.TUNE,
        "fit_s": fit_s,
        "sample_s": float(res.timing["sample_s"]),
        "outputs_s": out_s,
        "mean_depth": float(np.mean(stats["depth"])),
        "grad_evals_per_draw": float(np.mean(stats["n_steps"])),
        "divergences": v.divergences,
        "rhat_max": v.rhat_max,
        "ess_bulk_min": v.ess_bulk_min,
        "mape_in_sample": v.mape_in_sample,
        "peak_rss_fit_mb": rss_fit,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    G, T, C = args.geos, args.weeks, args.channels
    lines = [
        f"# Enterprise panel, the whole fit: {G} geos x {T} weeks x {C} channels x {args.controls} controls",
        "",
        f"`HierarchicalMMM(spec, group='geo').fit(df)` at the defaults ({out['chains']} chains x "
        f"{out['draws']} draws + {out['tune']} tune, 2 cores), then `write_outputs(res, dir, report=False)`. "
        f"CPU: {out['meta']['cpu']}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| fit() wall | {fit_s / 60:.1f} min ({fit_s:.0f} s) |",
        f"| of which sampling | {out['sample_s']:.0f} s |",
        f"| outputs (summary, contributions, saved model) | {out_s:.1f} s |",
        f"| tree depth, gradients per draw | {out['mean_depth']:.1f}, {out['grad_evals_per_draw']:.0f} |",
        f"| divergences, max R-hat, min bulk ESS | {out['divergences']}, {out['rhat_max']:.4f}, "
        f"{out['ess_bulk_min']:.0f} |",
        f"| in-sample MAPE | {out['mape_in_sample']:.1%} |",
        f"| peak RSS after the fit, after the outputs | {rss_fit:.0f} MB, {out['peak_rss_mb']:.0f} MB |",
    ]
    write_results("enterprise_fit", out, lines)


if __name__ == "__main__":
    main()
