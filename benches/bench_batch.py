"""Many-brand benchmark: ``fastmmm.batch.fit_many`` versus fitting brands one by one.

Run:  python benches/bench_batch.py [--brands 20] [--weeks 104] [--channels 4]
                                    [--draws 1000] [--tune 1000] [--backend auto|rust|pytensor ...]

For each backend, in this one run on the same data (synthetic brands from
``make_dataset``, different seeds; the default spec plus the event control):

* one by one: for every brand ``fastmmm.fit.clear_compile_cache()``, then a
  fresh ``MMM(spec).fit(...)`` (so every brand compiles) and its outputs
  written as ``fit_many`` writes them (summary.json, contributions.csv,
  model/; no HTML report). Imports and one-time JIT warm-up are done before
  the clock starts.
* fit_many: the default executor (local process pool, ``os.cpu_count()``
  workers), worker start-up included;
* fit_many with ``executor=None`` (in this process, one compilation).

Both use the same per-brand seeds, so the posterior means must agree exactly
(checked). Reports brands per minute and the ratio; results go to
benches/results/batch.json and batch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def make_brands(n: int, weeks: int, channels: int) -> pd.DataFrame:
    from fastmmm.synthetic import make_dataset

    parts = []
    for i in range(n):
        d, _ = make_dataset(weeks, channels, saturation="logistic", seed=1000 + i)
        d.insert(0, "brand", f"brand{i:03d}")
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def one_by_one(df, spec, out: Path, fit: dict, backend: str) -> dict:
    from fastmmm.batch import brand_seed
    from fastmmm.cli import write_outputs
    from fastmmm.fit import MMM, clear_compile_cache

    roas, fit_s = {}, 0.0
    t0 = time.perf_counter()
    for b, g in df.groupby("brand", sort=False):
        clear_compile_cache()
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = MMM(spec).fit(
                g.drop(columns=["brand"]),
                seed=brand_seed(fit["seed"], b),
                progress=False,
                backend=backend,
                draws=fit["draws"],
                tune=fit["tune"],
                chains=fit["chains"],
            )
            fit_s += time.perf_counter() - t1
            s = write_outputs(r, out / b, report=False)
        roas[b] = [s["channels"][c]["roas"]["mean"] for c in spec.channels]
    return {"wall_s": time.perf_counter() - t0, "fit_only_s": fit_s, "roas": roas}


def batch(df, spec, out: Path, fit: dict, backend: str, **kw) -> dict:
    from fastmmm.batch import fit_many
    from fastmmm.fit import clear_compile_cache

    clear_compile_cache()  # an in-process run (executor=None) must compile too
    t0 = time.perf_counter()
    index = fit_many(df, by="brand", spec=spec, out=out, progress=False, backend=backend, **fit, **kw)
    wall = time.perf_counter() - t0
    failed = index[index["status"] != "ok"]
    if len(failed):
        raise SystemExit(f"fit_many failed for {len(failed)} brands:\n{failed[['brand', 'error']]}")
    roas = {b: [row[f"roas_{c}"] for c in spec.channels] for b, row in index.set_index("brand").iterrows()}
    return {"wall_s": wall, "roas": roas, "compiles": int((index["compile_s"] > 0).sum())}


def warm_up(spec, backend: str) -> None:
    """Imports and one-time JIT work, so the one-by-one clock measures fits only."""
    from fastmmm.fit import MMM, clear_compile_cache
    from fastmmm.synthetic import make_dataset

    d, _ = make_dataset(52, len(spec.channels), saturation="logistic", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(spec).fit(d, draws=20, tune=20, chains=1, seed=1, progress=False, backend=backend)
        r.summary()
    clear_compile_cache()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brands", type=int, default=20)
    ap.add_argument("--weeks", type=int, default=104)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="fit_many workers (default os.cpu_count())")
    ap.add_argument(
        "--backend", nargs="+", default=["auto", "pytensor"], choices=["auto", "rust", "pytensor"]
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-save", action="store_true", help="do not write benches/results/batch.*")
    args = ap.parse_args(argv)

    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import CHANNEL_NAMES

    spec = ModelSpec(
        date_column="date", target="sales", channels=CHANNEL_NAMES[: args.channels], controls=("event",)
    )
    df = make_brands(args.brands, args.weeks, args.channels)
    fit = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "seed": args.seed}
    print(
        f"bench_batch: {args.brands} brands x {args.weeks} weeks x {args.channels} channels, "
        f"draws {args.draws}, tune {args.tune}, chains {args.chains}, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = []
    root = Path(tempfile.mkdtemp(prefix="fastmmm-bench-batch-"))
    n = args.brands
    try:
        for backend in args.backend:
            warm_up(spec, backend)
            seq = one_by_one(df, spec, root / f"seq-{backend}", fit, backend)
            print(f"  [{backend}] one by one, compiling each: {seq['wall_s']:.1f} s", flush=True)
            many = batch(df, spec, root / f"many-{backend}", fit, backend, workers=args.workers)
            print(f"  [{backend}] fit_many (local pool):     {many['wall_s']:.1f} s", flush=True)
            here = batch(df, spec, root / f"here-{backend}", fit, backend, executor=None)
            print(f"  [{backend}] fit_many (executor=None):  {here['wall_s']:.1f} s", flush=True)
            diff = max(
                float(np.max(np.abs(np.subtract(seq["roas"][b], r["roas"][b]))))
                for b in seq["roas"]
                for r in (many, here)
            )
            rows.append(
                {
                    "backend": backend,
                    "brands": n,
                    "one_by_one_s": round(seq["wall_s"], 2),
                    "one_by_one_fit_only_s": round(seq["fit_only_s"], 2),
                    "fit_many_s": round(many["wall_s"], 2),
                    "fit_many_in_process_s": round(here["wall_s"], 2),
                    "one_by_one_per_min": round(60 * n / seq["wall_s"], 2),
                    "fit_many_per_min": round(60 * n / many["wall_s"], 2),
                    "fit_many_in_process_per_min": round(60 * n / here["wall_s"], 2),
                    "ratio": round(seq["wall_s"] / many["wall_s"], 2),
                    "ratio_in_process": round(seq["wall_s"] / here["wall_s"], 2),
                    "fit_many_compiles": many["compiles"],
                    "max_abs_roas_diff": diff,
                }
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    head = "backend    1-by-1 /min  fit_many /min  ratio  in-process /min  ratio  ROAS diff"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['backend']:<10}{r['one_by_one_per_min']:>12.1f}{r['fit_many_per_min']:>15.1f}{r['ratio']:>6.2f}x"
            f"{r['fit_many_in_process_per_min']:>17.1f}{r['ratio_in_process']:>6.2f}x{r['max_abs_roas_diff']:>11.1e}"
        )
    if not args.no_save:
        sys.path.insert(0, str(Path(__file__).parent))
        from _meta import cpu_name, versions

        RESULTS.mkdir(exist_ok=True)
        meta = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu": cpu_name(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "versions": versions(),
            "args": vars(args),
        }
        for r in rows:
            r["run"] = {k: meta[k] for k in ("date", "cpu", "versions")}
        # Keep the stored rows of the backends not run now (each row carries its own run).
        ran = {r["backend"] for r in rows}
        old = RESULTS / "batch.json"
        if old.exists():
            kept = [r for r in json.loads(old.read_text()).get("rows", []) if r.get("backend") not in ran]
            rows = [r for r in kept if "run" in r] + rows
        (RESULTS / "batch.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        title = (
            f"# fit_many vs one-by-one fits ({args.weeks} weeks x {args.channels} channels, "
            f"draws {args.draws}, tune {args.tune}, chains {args.chains}; {os.cpu_count()} CPUs)"
        )
        header = (
            "| backend | brands | one by one (s) | of which fitting (s) | fit_many local pool (s) | ratio "
            "| fit_many executor=None (s) | ratio | compiles in the pool | run |"
        )
        md = [title, "", header, "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            v = r["run"]["versions"]
            run = f"{r['run']['date']}, {r['run']['cpu']}, python {v['python']}, pytensor {v['pytensor']}, nutpie {v['nutpie']}"
            md.append(
                f"| {r['backend']} | {r['brands']} | {r['one_by_one_s']} | {r['one_by_one_fit_only_s']} | {r['fit_many_s']} | "
                f"{r['ratio']}x | {r['fit_many_in_process_s']} | {r['ratio_in_process']}x | {r['fit_many_compiles']} | {run} |"
            )
        (RESULTS / "batch.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
