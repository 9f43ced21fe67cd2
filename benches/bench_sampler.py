"""The fast path's sampler: nuts-rs inside the Rust core against the previous fast path
(nutpie sampling the same fused log-density through raw C function pointers).

Run:  python benches/bench_sampler.py [--repeats 3] [--baseline 8031b7e] [--quick]

The baseline is the package as it was at commit ``--baseline`` (its Python files
from ``git archive``, run on this build's ``fastmmm._core``, whose log-density and
C entry points it used): ``MMM.fit(backend="rust")`` there built the PyMC model
and handed nutpie a ``CompiledPyMCModel`` made from raw addresses. That needs
nutpie's private helpers, which exist with nutpie <= 0.16.8 only; where pip
installed a newer nutpie, only the new path is measured.

Per case (synthetic 156 x 6 geometric + Hill; mmm_example.csv geometric +
logistic), contender and repeat, one fresh Python process (contenders
alternate; the order flips between repeats) reports:

* ``fit_s``: the whole ``MMM.fit`` call;
* ``first_draw_s``: process start to the first draw, imports included (the new
  path: the first progress report with a draw done, polled every 5 ms; the
  baseline: the moment nutpie.sample was entered, a lower bound);
* ``sample_wall_s`` / ``sample_cpu_s``: the sampler call, wall and process CPU;
* ``gradients``: gradient evaluations, warmup included;
* ``logp_us``: one log-density + gradient of the same problem, averaged over 40
  posterior draws (thread CPU, ``MmmProblem.logp_repeat``);
* ``overhead_us``: sampling CPU per gradient evaluation minus ``logp_us``: what
  the sampler itself costs per evaluation.

Medians over repeats; results/sampler.json and sampler.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from _meta import cpu_name, versions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
EXAMPLE_CSV = REPO.parent / "shared" / "data" / "mmm_example.csv"
NEW, OLD = "nuts-rs in _core", "nutpie raw pointer (baseline)"

WORKER = textwrap.dedent(
    r"""
    import time
    T0 = time.perf_counter()
    import json, sys, warnings
    warnings.simplefilter("ignore")
    case, draws, tune, chains, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    import numpy as np
    from fastmmm import _core
    from fastmmm.fit import MMM
    from fastmmm.spec import ModelSpec
    out = {}
    if case == "synthetic":
        from fastmmm.synthetic import make_dataset
        df, truth = make_dataset(156, 6, seed=0)
        spec = ModelSpec(date_column="date", target="sales", channels=truth.channels, controls=("event",),
                         adstock="geometric", saturation="hill", l_max=8, yearly_seasonality=2)
    else:
        import pandas as pd
        df = pd.read_csv(case)
        spec = ModelSpec(date_column="date_week", target="y", channels=("x1", "x2"),
                         controls=("event_1", "event_2", "t"), adstock="geometric", saturation="logistic",
                         l_max=8, yearly_seasonality=2)
    problems = []
    if which == "new":
        real = _core.sample_nuts
        def wrapped(problem, **kw):
            problems.append(problem)
            user = kw.pop("progress")
            def progress(rows):
                if "first_draw_s" not in out and sum(r[0] for r in rows) > 0:
                    out["first_draw_s"] = time.perf_counter() - T0
                if user is not None:
                    user(rows)
            c0, w0 = time.process_time(), time.perf_counter()
            res = real(problem, progress=progress, progress_interval=0.005, **kw)
            out["sample_cpu_s"], out["sample_wall_s"] = time.process_time() - c0, time.perf_counter() - w0
            out["gradients"] = int(res["gradients"].sum())
            return res
        _core.sample_nuts = wrapped
    else:
        import nutpie
        real = nutpie.sample
        def wrapped(compiled, **kw):
            out["first_draw_s"] = time.perf_counter() - T0   # entering nutpie.sample: a lower bound
            problems.append(compiled.problem)
            kw["save_warmup"] = True
            c0, w0 = time.process_time(), time.perf_counter()
            idata = real(compiled, **kw)
            out["sample_cpu_s"], out["sample_wall_s"] = time.process_time() - c0, time.perf_counter() - w0
            out["gradients"] = int(idata.warmup_sample_stats["n_steps"].sum() + idata.sample_stats["n_steps"].sum())
            return idata
        nutpie.sample = wrapped
    t = time.perf_counter()
    r = MMM(spec).fit(df, draws=draws, tune=tune, chains=chains, seed=1, progress=False, backend="rust")
    out["fit_s"] = time.perf_counter() - t
    out["backend"] = r.backend
    if which == "new":
        # The log-density's own cost, averaged over 40 posterior draws (mapped to the unconstrained
        # space): its cost depends on the point (Hill's exponentials, underflows), so one point
        # is not the average evaluation the sampler paid for.
        from fastmmm.layout import national_layout
        layout = national_layout(r.spec, r.data)
        n = r.posterior.n_samples
        problem = problems[0]
        xs = [np.concatenate([t.to_unconstrained(r.posterior.flat(t.name)[i].reshape(-1)) for t in layout.terms])
              for i in np.linspace(0, n - 1, 40).astype(int)]
        problem.logp_repeat(xs[0], 2000)
        reps = []
        for _ in range(3):
            c = time.thread_time()
            for x in xs:
                problem.logp_repeat(x, 500)
            reps.append((time.thread_time() - c) / (500 * len(xs)) * 1e6)
        out["logp_us"] = float(np.median(reps))
    print(json.dumps(out))
    """
)


def _baseline_tree(commit: str, into: Path) -> Path | None:
    """The package's Python files at ``commit`` plus this build's extension, or None."""
    import fastmmm

    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "python/fastmmm"], check=True, capture_output=True
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    pkg = into / "python" / "fastmmm"
    for so in Path(fastmmm.__file__).parent.glob("_core*"):
        (pkg / so.name).write_bytes(so.read_bytes())
    return into / "python"


def _baseline_works(path: Path) -> tuple[bool, str]:
    code = "from nutpie.compile_pymc import _prepare_dims_and_coords, _rv_dict_to_flat_array_wrapper"
    try:
        import nutpie
    except ImportError:
        return False, "nutpie is not installed"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        return False, f"nutpie {nutpie.__version__} lacks the private helpers the baseline used"
    import inspect

    from nutpie import compile_pymc

    if "reparameterized_names" in inspect.signature(compile_pymc._prepare_dims_and_coords).parameters:
        return False, f"nutpie {nutpie.__version__} changed the private helpers the baseline used"
    return True, ""


def run_one(case: str, which: str, args, baseline: Path | None) -> dict:
    env = dict(os.environ)
    if which == "old":
        env["PYTHONPATH"] = str(baseline)
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, case, str(args.draws), str(args.tune), str(args.chains), which],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode:
        raise RuntimeError(f"{which} on {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default="8031b7e", help="commit of the previous fast path")
    ap.add_argument("--quick", action="store_true", help="2 x 300 + 300 draws")
    args = ap.parse_args()
    args.draws, args.tune, args.chains = (300, 300, 2) if args.quick else (1000, 1000, 2)
    cases = {"synthetic 156x6 Hill": "synthetic"}
    if EXAMPLE_CSV.exists():
        cases["mmm_example.csv"] = str(EXAMPLE_CSV)
    with tempfile.TemporaryDirectory(prefix="fastmmm-baseline-") as tmp:
        baseline = _baseline_tree(args.baseline, Path(tmp))
        ok, why = (
            (False, f"commit {args.baseline} not found") if baseline is None else _baseline_works(baseline)
        )
        which = ["new", "old"] if ok else ["new"]
        rows: dict = {}
        for name, case in cases.items():
            runs = {w: [] for w in which}
            for rep in range(args.repeats):
                for w in which if rep % 2 == 0 else which[::-1]:
                    runs[w].append(run_one(case, w, args, baseline))
                    print(name, w, runs[w][-1], flush=True)
            med = {
                w: {
                    k: statistics.median(r[k] for r in runs[w])
                    for k in runs[w][0]
                    if isinstance(runs[w][0][k], (int, float))
                }
                for w in which
            }
            # Both contenders evaluate the same fused problem: one log-density cost for both.
            logp = med["new"]["logp_us"]
            for w in which:
                med[w]["logp_us"] = logp
                med[w]["overhead_us"] = statistics.median(
                    r["sample_cpu_s"] / r["gradients"] * 1e6 - logp for r in runs[w]
                )
            rows[name] = {(NEW if w == "new" else OLD): med[w] for w in which}
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": versions(),
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "repeats": args.repeats,
        "baseline": args.baseline,
        "baseline_skipped": "" if ok else why,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sampler.json").write_text(json.dumps({"meta": meta, "cases": rows}, indent=1))
    keys = [
        ("fit_s", "whole MMM.fit (s)", ".2f"),
        ("first_draw_s", "process start to first draw (s)", ".2f"),
        ("sample_wall_s", "sampling wall (s)", ".2f"),
        ("sample_cpu_s", "sampling CPU (s)", ".2f"),
        ("gradients", "gradient evaluations", ",.0f"),
        ("logp_us", "log-density + gradient (us)", ".2f"),
        ("overhead_us", "sampler overhead per gradient (us)", ".2f"),
    ]
    lines = [
        f"# Sampler: nuts-rs in the Rust core vs the previous nutpie raw-pointer path ({meta['date']})",
        "",
        f"{meta['cpu']}, {meta['cores']} cores; {args.chains} chains x {args.draws} draws + {args.tune} "
        f"tune; medians of {args.repeats} fresh processes per contender, contenders alternating.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    if not ok:
        lines += [f"Baseline not run: {why}.", ""]
    for name, r in rows.items():
        cols = list(r)
        lines += [
            f"## {name}",
            "",
            "| | " + " | ".join(cols) + (" | ratio new/baseline |" if len(cols) == 2 else " |"),
            "|---|" + "---|" * (len(cols) + (1 if len(cols) == 2 else 0)),
        ]
        for k, label, fmt in keys:
            vals = [r[c].get(k) for c in cols]
            cells = [format(v, fmt) if v is not None else "" for v in vals]
            ratio = ""
            if len(cols) == 2 and vals[1] and k not in ("overhead_us",):
                ratio = f" {vals[0] / vals[1]:.2f} |"
            elif len(cols) == 2:
                ratio = " |"
            lines.append(f"| {label} | " + " | ".join(cells) + " |" + ratio)
        lines.append("")
    (RESULTS / "sampler.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
