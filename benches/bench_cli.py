"""The user's commands, end to end: process wall time of ``fastmmm fit``, ``fastmmm demo``
and ``fastmmm fit-many`` against scripts that do the same job with pymc-marketing, in one run.

Run (in an environment with pymc-marketing 1.3, i.e. Python >= 3.12):

    python benches/bench_cli.py [--repeats 3] [--brands 20] [--pmm-brands 20] [--skip-pmm]

Jobs (2 chains x 1000 draws + 1000 tune everywhere; each command a fresh process):

* ``fit``: synthetic 156 weeks x 5 channels (geometric + Hill, ``make_dataset(156, 5,
  seed=0)``): ``fastmmm fit data.csv ... --out DIR`` (summary.json, contributions.csv,
  model/, report.html) against a script that reads the CSV, fits pymc-marketing's
  ``MMM`` (GeometricAdstock(l_max=8), HillSaturation(), the same controls plus a linear
  time control, yearly seasonality 2; nutpie) and writes its contributions and ROAS
  (``mmm.summary.contributions()``, ``mmm.summary.roas(frequency="all_time")``).
* ``demo``: ``fastmmm demo`` (156 x 6 synthetic with known truth, fit, report)
  against the same script on the demo's data.

pymc-marketing runs with an empty PyTensor / numba compile cache ("cold": the first fit
of a model structure on a machine, what a new user meets) and, for fit and demo, once
more with the cache the cold run filled ("warm": a refit of a structure seen before).
* ``fit-many``: ``--brands`` brands of 104 x 4 (``make_dataset(104, 4, seed=100 + i)``):
  ``fastmmm fit-many --by brand`` against the script fitting one brand after another in
  one process (``--pmm-brands`` of them; its time per brand is what the ratio uses when
  that is fewer).

Per command: process wall (from start to exit), its own sampling time (fastmmm: the
``timing.sample_s`` it writes; pymc-marketing: the time inside ``nutpie.sample``),
wall / sampling, and peak RSS (``os.wait4`` of the child). For ``fit-many`` the sampling
share is the cores' time spent sampling over wall x cores: the CPU time of the chains'
threads (``timing.sample_core_s``, summed over chains and brands; brands sample side by
side and their wall times overlap). fastmmm
commands: medians of ``--repeats``; pymc-marketing: one run each. Results in
results/cli.json and cli.md.
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
import time
from datetime import UTC, datetime
from pathlib import Path

from _meta import cpu_name, versions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FASTMMM = [sys.executable, "-m", "fastmmm.cli"]
MODEL_ARGS = [
    "--date-column",
    "date",
    "--target",
    "sales",
    "--controls",
    "event",
    "--adstock",
    "geometric",
    "--saturation",
    "hill",
    "--l-max",
    "8",
    "--yearly-seasonality",
    "2",
    "--seed",
    "1",
    "--quiet",
]

PMM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    import numpy as np, pandas as pd
    import nutpie
    from pymc_marketing.mmm import MMM, GeometricAdstock, HillSaturation
    real = nutpie.sample
    sample_s = [0.0]
    def timed(*a, **k):
        t = time.perf_counter()
        out = real(*a, **k)
        sample_s[0] += time.perf_counter() - t
        return out
    nutpie.sample = timed
    csv, by, out, channels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    limit = int(sys.argv[5])
    df = pd.read_csv(csv, parse_dates=["date"])
    groups = [(None, df)] if by == "-" else list(df.groupby(by, sort=False))[:limit]
    per_brand = []
    for name, d in groups:
        t0 = time.perf_counter()
        d = d.drop(columns=[by]) if by != "-" else d
        d = d.reset_index(drop=True).assign(t=np.arange(len(d)) / (len(d) - 1))
        mmm = MMM(date_column="date", channel_columns=channels, target_column="sales",
                  control_columns=["event", "t"], adstock=GeometricAdstock(l_max=8), saturation=HillSaturation(),
                  yearly_seasonality=2)
        mmm.fit(d.drop(columns=["sales"]), d["sales"], chains=2, draws=1000, tune=1000, random_seed=1,
                nuts_sampler="nutpie", progressbar=False)
        c = mmm.summary.contributions()
        r = mmm.summary.roas(frequency="all_time")
        c.to_csv(f"{out}/contributions_{name}.csv")
        r.to_csv(f"{out}/roas_{name}.csv")
        per_brand.append(time.perf_counter() - t0)
    print(json.dumps({"sample_s": sample_s[0], "brands": len(groups), "per_brand_s": per_brand}))
    """
)


def _run(cmd: list[str], env=None) -> dict:
    """Wall seconds, peak RSS (MB) and output of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wait4 reports this child's own resource use (not the maximum over all children).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "stdout": out}


def _data(tmp: Path, brands: int) -> dict:
    import pandas as pd

    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(156, 5, adstock="geometric", saturation="hill", seed=0)
    df.to_csv(tmp / "fit.csv", index=False)
    demo, dtruth = make_dataset(156, 6, adstock="geometric", saturation="hill", seed=1)  # fastmmm demo's data
    demo.to_csv(tmp / "demo.csv", index=False)
    frames = []
    for i in range(brands):
        d, t = make_dataset(104, 4, adstock="geometric", saturation="hill", seed=100 + i)
        d.insert(0, "brand", f"brand_{i:02d}")
        frames.append(d)
    pd.concat(frames).to_csv(tmp / "brands.csv", index=False)
    return {"fit": list(truth.channels), "demo": list(dtruth.channels), "brands": list(t.channels)}


def fastmmm_fit(tmp: Path, channels) -> dict:
    out = tmp / "fit_out"
    r = _run(
        [
            *FASTMMM,
            "fit",
            str(tmp / "fit.csv"),
            "--channels",
            ",".join(channels),
            *MODEL_ARGS,
            "--out",
            str(out),
        ]
    )
    s = json.loads((out / "summary.json").read_text())
    return {**r, "sample_s": s["timing"]["sample_s"], "backend": s["backend"]}


def fastmmm_demo(tmp: Path) -> dict:
    out = tmp / "demo_out"
    r = _run([*FASTMMM, "demo", "--quiet", "--out", str(out)])
    s = json.loads((out / "summary.json").read_text())
    return {**r, "sample_s": s["timing"]["sample_s"], "backend": s["backend"]}


def fastmmm_fit_many(tmp: Path, channels) -> dict:
    import shutil

    import pandas as pd

    out = tmp / "many_out"
    shutil.rmtree(out, ignore_errors=True)
    r = _run(
        [
            *FASTMMM,
            "fit-many",
            str(tmp / "brands.csv"),
            "--by",
            "brand",
            "--channels",
            ",".join(channels),
            *MODEL_ARGS,
            "--out",
            str(out),
        ]
    )
    ix = pd.read_csv(out / "index.csv")
    assert (ix["status"] == "ok").all(), ix[["brand", "status", "error"]]
    cpus = os.cpu_count() or 1
    # Brands sample side by side, their chains drawing from one pool of the cores: the
    # cores' sampling time is the CPU time of the chains' threads.
    # (A brand sampled by nutpie has no such figure: its sampling wall instead.)
    sample_core_s = float(ix["sample_core_s"].fillna(ix["sample_s"]).sum())
    return {
        **r,
        "sample_s": sample_core_s / cpus,
        "sample_core_s": sample_core_s,
        "brands": len(ix),
        "sampling_share": sample_core_s / (r["wall_s"] * cpus),
    }


def pmm(tmp: Path, csv: str, by: str, channels, limit: int, cold: bool) -> dict:
    """The pymc-marketing script; ``cold``: with an empty PyTensor / numba compile cache (a
    model structure's first fit on a machine), else with the cache its earlier runs filled."""
    out = tmp / f"pmm_{Path(csv).stem}"
    out.mkdir(exist_ok=True)
    script = tmp / "pmm_job.py"
    script.write_text(PMM_SCRIPT)
    env = dict(os.environ)
    cache = tmp / ("cache_cold_" + os.urandom(4).hex() if cold else "cache_warm")
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache / 'pytensor'}"
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    r = _run(
        [sys.executable, str(script), str(tmp / csv), by, str(out), ",".join(channels), str(limit)], env=env
    )
    info = json.loads(r["stdout"].strip().splitlines()[-1])
    cpus = os.cpu_count() or 1
    res = {**r, "sample_s": info["sample_s"], "brands": info["brands"], "per_brand_s": info["per_brand_s"]}
    if by != "-":
        res["sample_core_s"] = info["sample_s"] * min(2, cpus)
        res["sampling_share"] = res["sample_core_s"] / (r["wall_s"] * cpus)
    return res


def _median(runs: list[dict]) -> dict:
    out = {}
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in runs)
        elif k != "stdout":
            out[k] = v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--brands", type=int, default=20)
    ap.add_argument("--pmm-brands", type=int, default=20, help="brands pymc-marketing fits in fit-many")
    ap.add_argument("--skip-pmm", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastmmm-bench-cli-") as d:
        tmp = Path(d)
        ch = _data(tmp, args.brands)
        res: dict = {"fit": {}, "demo": {}, "fit-many": {}}
        runs = {"fit": [], "demo": [], "fit-many": []}
        for rep in range(args.repeats):
            runs["fit"].append(fastmmm_fit(tmp, ch["fit"]))
            runs["demo"].append(fastmmm_demo(tmp))
            runs["fit-many"].append(fastmmm_fit_many(tmp, ch["brands"]))
            print(
                f"repeat {rep}: " + ", ".join(f"{k} {v[-1]['wall_s']:.2f} s" for k, v in runs.items()),
                flush=True,
            )
        for k in runs:
            res[k]["fastmmm"] = _median(runs[k])
        if not args.skip_pmm:
            for job, csv in (("fit", "fit.csv"), ("demo", "demo.csv")):
                for cold in (True, False):  # the warm run reuses the cache the cold one filled
                    key = "pymc-marketing" + (" (cold cache)" if cold else " (warm cache)")
                    res[job][key] = pmm(tmp, csv, "-", ch[job], 1, cold=cold)
                    print(job, key, res[job][key]["wall_s"], flush=True)
            key = "pymc-marketing (cold cache)"
            res["fit-many"][key] = pmm(tmp, "brands.csv", "brand", ch["brands"], args.pmm_brands, cold=True)
            print("fit-many", key, res["fit-many"][key]["wall_s"], flush=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": versions(),
        "repeats": args.repeats,
        "brands": args.brands,
        "pmm_brands": args.pmm_brands,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    lines = [
        f"# Commands end to end ({meta['date']})",
        "",
        f"{meta['cpu']}, {meta['cores']} cores; 2 chains x 1000 draws + 1000 tune; fastmmm: medians of "
        f"{args.repeats} runs, pymc-marketing one run; every command a fresh process.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "| job | tool | process wall (s) | own sampling (s) | wall / sampling | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for job, r in res.items():
        for tool, v in r.items():
            lines.append(
                f"| {job} | {tool} | {v['wall_s']:.2f} | {v['sample_s']:.2f} | "
                f"{v['wall_s'] / v['sample_s']:.2f} | {v['rss_mb']:.0f} |"
            )
    lines.append("")
    for job, r in res.items():
        for key in [k for k in r if k.startswith("pymc-marketing")]:
            f, p = r["fastmmm"], r[key]
            if job == "fit-many":
                per_f = f["wall_s"] / f["brands"]
                per_p = p["wall_s"] / p["brands"]
                lines.append(
                    f"- fit-many: {f['brands']} brands in {f['wall_s']:.1f} s ({per_f:.2f} s per brand) vs "
                    f"pymc-marketing {p['brands']} brands in {p['wall_s']:.0f} s ({per_p:.1f} s per brand): "
                    f"{per_p / per_f:.0f}x; sampling share of the cores' time {100 * f['sampling_share']:.0f}% "
                    f"vs {100 * p['sampling_share']:.0f}%."
                )
            else:
                lines.append(
                    f"- {job}: fastmmm {f['wall_s']:.2f} s vs pymc-marketing {p['wall_s']:.1f} s: "
                    f"{p['wall_s'] / f['wall_s']:.0f}x faster (process wall)."
                )
    (RESULTS / "cli.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
