"""Per-evaluation cost of the fused log-density + gradient, this tree against another
checkout, in the same run: the check that a refactor kept the hot path's speed.

Run:  python benches/bench_change_ab.py --other /path/to/other/python [--rounds 9]

``--other`` is the ``python/`` directory of another checkout with its extension built
(e.g. ``git worktree add /tmp/old <commit>`` and its ``_core`` copied or built there).
Cases: bench_fit's synthetic national model (make_dataset(156, 6, seed=0), geometric
l_max 8 + Hill, event control, yearly seasonality 2) and bench_hierarchical's 10-geo
panel (make_panel(10, 104, 3, seed=1)), one evaluation of all geos. Each side runs in
its own process, built from that side's code; the sides take turns in rounds (one
``logp_repeat`` of >= 0.2 s each), ratios are medians of per-round ratios.

Results: benches/results/change_ab.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
THIS = HERE.parent / "python"


def _problems():
    from bench_fit import case_synthetic

    from fastmmm import fastpath
    from fastmmm import hierarchical as hm
    from fastmmm.data import prepare
    from fastmmm.layout import national_layout
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_panel

    case = case_synthetic(156, 6)  # bench_fit's national case: its data and spec
    df, spec = case["df"], case["spec"]
    data = prepare(df, spec)
    layout = national_layout(spec, data)
    out = {"national 156x6": (fastpath.build_problem(layout, fastpath.problem_data(spec, data)), layout)}
    pdf, ptruth = make_panel(10, 104, 3, seed=1)
    pspec = ModelSpec(
        date_column="date",
        target="sales",
        channels=list(ptruth["channels"]),
        controls=["event"],
        adstock="geometric",
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )
    groups, datas, _ = hm.HierarchicalMMM(pspec, group="geo").build(pdf)
    out["panel 10 geos x 104 x 3"] = hm.grouped_problem(datas, pspec, groups)
    return out


def worker():
    """Serve timing requests on stdin: a case name -> seconds per evaluation."""
    problems = _problems()
    points = {}
    for name, (problem, layout) in problems.items():
        x = np.asarray(layout.initial_point(), dtype=float)
        x = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape)
        points[name] = x
        problem.logp_repeat(x, 200)  # warm up
    print(json.dumps(sorted(problems)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        problem, x = problems[name][0], points[name]
        n = 200
        while True:
            t0 = time.perf_counter()
            problem.logp_repeat(x, n)
            dt = time.perf_counter() - t0
            if dt >= 0.2:
                break
            n *= 2
        print(json.dumps(dt / n), flush=True)


def _start(path: Path):
    env = dict(os.environ, PYTHONPATH=str(path), FASTMMM_QUIET="1")
    p = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    cases = json.loads(p.stdout.readline())
    return p, cases


def _ask(p, name: str) -> float:
    p.stdin.write(name + "\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def _git(path: Path) -> str:
    r = subprocess.run(
        ["git", "-C", str(path), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return r.stdout.strip()[:72]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", help="python/ directory of the other checkout (built)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--other-label", help="what the other side is, where it is not a git checkout")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker()
    if not args.other:
        ap.error("--other is required")
    sides = {"this": THIS, "other": Path(args.other).resolve()}
    procs = {k: _start(v) for k, v in sides.items()}
    cases = procs["this"][1]
    times = {k: {c: [] for c in cases} for k in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for c in cases:
            for k in order:
                times[k][c].append(_ask(procs[k][0], c))
    for p, _ in procs.values():
        p.stdin.close()
        p.wait()
    rows = []
    for c in cases:
        this, other = np.array(times["this"][c]), np.array(times["other"][c])
        rows.append(
            {
                "case": c,
                "this_us": float(np.median(this) * 1e6),
                "other_us": float(np.median(other) * 1e6),
                "ratio_this_over_other": float(np.median(this / other)),
            }
        )
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "this": _git(THIS),
        "other": args.other_label or _git(sides["other"]),
        "rounds": args.rounds,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "change_ab.json").write_text(json.dumps(out, indent=2))
    md = [
        f"Run {out['date']}, {args.rounds} rounds; this = `{out['this']}`, other = `{out['other']}`",
        "",
        "| case | this (us/eval) | other (us/eval) | this / other |",
        "|---|---:|---:|---:|",
    ]
    md += [
        f"| {r['case']} | {r['this_us']:.2f} | {r['other_us']:.2f} | {r['ratio_this_over_other']:.3f} |"
        for r in rows
    ]
    (RESULTS / "change_ab.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
