"""Panels at size against pymc-marketing: ``fastmmm fit-hierarchical`` and a script fitting
pymc-marketing's geo model (``MMM(..., dims=("geo",))``, nutpie) on the same panel, same
chains, draws and tuning, in one run.

Run (in an environment with pymc-marketing 1.3, i.e. Python >= 3.12):

    python benches/bench_panel_pmm.py [--geos 8] [--weeks 156] [--channels 8] [--chains 2]
                                      [--datasets 3] [--pmm-datasets 1] [--skip-pmm]

Data: ``fastmmm.synthetic.make_panel(geos, weeks, channels, seed=200 + i)``: geometric adstock
(l_max 8) + Hill per geo, media parameters varying by geo around global values, an event
control, a trend and yearly seasonality, known per-(geo, channel) ROAS (contribution over the
panel's weeks / spend).

Jobs (each a fresh process; process wall from start to exit, peak RSS by ``os.wait4``):

* fastmmm: ``fastmmm fit-hierarchical data.csv --saturation hill --l-max 8
  --yearly-seasonality 2 --controls event --chains N --draws D --tune D --no-report`` (its
  defaults otherwise: ROAS priors, adstock, saturation and amplitude pooled across geos),
  which writes summary.json, channel_summary.csv, contributions.csv and the saved model; once
  at the run's chains and draws and once at ``--long-chains`` x ``--long-draws`` (default
  4 x 2000: at 2 x 1000 the weakly identified per-geo Hill shapes of these panels leave max
  R-hat at 1.01-1.03).
* pymc-marketing: a script that reads the CSV, fits ``MMM(date_column, channel_columns,
  target_column, control_columns=["event", "t"], adstock=GeometricAdstock(l_max=8),
  saturation=HillSaturation(), yearly_seasonality=2, dims=("geo",))`` (its default priors;
  ``t`` a linear time control per geo, as fastmmm has a trend) with nutpie, and writes
  ``mmm.summary.roas(frequency="all_time", hdi_probs=[0.95])`` per geo and channel. It starts
  with an empty PyTensor / numba compile cache (what a user meets for a new model structure).

Per job: wall, sampling time (fastmmm: ``timing.sample_s``; pymc-marketing: the time inside
``nutpie.sample``), divergences, max R-hat and min bulk ESS (both with fastmmm.convergence
over every free parameter), and ROAS recovery over the geo-channel cells: the share of 95%
intervals covering the truth (fastmmm equal-tailed, pymc-marketing its HDI), the median
absolute and mean signed error of the posterior mean. Results: results/panel_pmm.json, .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import cpu_name, versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PMM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    import numpy as np, pandas as pd
    import nutpie
    from pymc_marketing.mmm import MMM, GeometricAdstock, HillSaturation
    from fastmmm.convergence import summary
    real = nutpie.sample
    sample_s = [0.0]
    def timed(*a, **k):
        t = time.perf_counter()
        out = real(*a, **k)
        sample_s[0] += time.perf_counter() - t
        return out
    nutpie.sample = timed
    csv, out, channels = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    chains, draws, tune = map(int, sys.argv[4:7])
    df = pd.read_csv(csv, parse_dates=["date"])
    per_geo = df.groupby("geo")
    df["t"] = per_geo.cumcount() / (per_geo["date"].transform("size") - 1)
    mmm = MMM(date_column="date", channel_columns=channels, target_column="sales",
              control_columns=["event", "t"], adstock=GeometricAdstock(l_max=8),
              saturation=HillSaturation(), yearly_seasonality=2, dims=("geo",))
    mmm.fit(df.drop(columns=["sales"]), df["sales"], chains=chains, draws=draws, tune=tune,
            random_seed=1, nuts_sampler="nutpie", progressbar=False)
    roas = mmm.summary.roas(frequency="all_time", hdi_probs=[0.95])
    roas.to_csv(f"{out}/roas.csv", index=False)
    idata = mmm.idata
    post = idata.posterior
    free = [v.name for v in mmm.model.free_RVs]
    x = np.concatenate([np.asarray(post[n], dtype=float).reshape(chains, draws, -1) for n in free], axis=2)
    s = summary(x)
    print(json.dumps({
        "sample_s": sample_s[0],
        "divergences": int(np.asarray(idata.sample_stats["diverging"]).sum()),
        "n_steps": float(np.asarray(idata.sample_stats["n_steps"]).mean()),
        "rhat_max": float(np.nanmax(s["rhat"])),
        "ess_bulk_min": float(np.nanmin(s["ess_bulk"])),
        "roas_columns": list(roas.columns),
    }))
    """
)


def _timed(cmd: list[str], env=None) -> dict:
    """Wall seconds and peak RSS (MB, of this child alone) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wait4 reports this child's own resource use; read the pipes in threads so a chatty child
    # cannot block on a full pipe before it exits.
    import threading

    bufs = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda s=s, k=k: bufs[k].append(s.read()), daemon=True)
        for s, k in ((proc.stdout, "out"), (proc.stderr, "err"))
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join()
    out, err = "".join(bufs["out"]), "".join(bufs["err"])
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{err[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out}


def _recovery(low, high, mean, true) -> dict:
    low, high, mean, true = (np.asarray(a, dtype=float) for a in (low, high, mean, true))
    rel = (mean - true) / true
    covered = (low <= true) & (true <= high)
    return {
        "cells": int(true.size),
        "covered": int(covered.sum()),
        "coverage": float(covered.mean()),
        "median_abs_error": float(np.median(np.abs(rel))),
        "mean_signed_error": float(np.mean(rel)),
        "median_interval_width": float(np.median((high - low) / true)),
    }


def fastmmm_job(csv: Path, out: Path, truth: dict, args, chains=None, draws=None) -> dict:
    """``fastmmm fit-hierarchical``, at the run's chains and draws unless given."""
    import pandas as pd

    chains, draws = chains or args.chains, draws or args.draws

    cmd = [
        sys.executable,
        "-m",
        "fastmmm.cli",
        "fit-hierarchical",
        str(csv),
        "--group",
        "geo",
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        ",".join(truth["channels"]),
        "--controls",
        "event",
        "--saturation",
        "hill",
        "--l-max",
        "8",
        "--yearly-seasonality",
        "2",
        "--chains",
        str(chains),
        "--draws",
        str(draws),
        "--tune",
        str(args.tune),
        "--seed",
        "1",
        "--quiet",
        "--no-report",
        "--out",
        str(out),
    ]
    r = _timed(cmd)
    summary = json.loads((out / "summary.json").read_text())
    cs = pd.read_csv(out / "channel_summary.csv")
    cs = cs.set_index(["group", "channel"]) if "group" in cs else cs.set_index([cs.columns[0], "channel"])
    cells = [(g, c) for g in truth["groups"] for c in truth["channels"]]
    cs = cs.loc[cells]
    true = truth["roas"].reshape(-1)
    d = summary["diagnostics"]
    same = (chains, draws) == (args.chains, args.draws)
    return {
        "job": "fastmmm fit-hierarchical" + ("" if same else f" ({chains} chains x {draws} draws)"),
        "chains": chains,
        "draws": draws,
        "wall_s": r["wall_s"],
        "peak_rss_mb": r["peak_rss_mb"],
        "sample_s": float(summary["timing"]["sample_s"]),
        "divergences": int(d["divergences"]),
        "rhat_max": d["rhat_max"],
        "ess_bulk_min": d["ess_bulk_min"],
        **_recovery(cs["roas_low"], cs["roas_high"], cs["roas_mean"], true),
    }


def pmm_job(csv: Path, out: Path, truth: dict, args) -> dict:
    import pandas as pd

    script = out / "pmm_panel.py"
    out.mkdir(parents=True, exist_ok=True)
    script.write_text(PMM_SCRIPT)
    env = dict(os.environ)
    cache = Path(tempfile.mkdtemp(prefix="pmm_cache_"))  # empty compile caches: a new structure
    env["PYTENSOR_FLAGS"] = f"compiledir={cache / 'pytensor'}"
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    cmd = [
        sys.executable,
        str(script),
        str(csv),
        str(out),
        ",".join(truth["channels"]),
        str(args.chains),
        str(args.draws),
        str(args.tune),
    ]
    r = _timed(cmd, env=env)
    stats = json.loads(r["stdout"].strip().splitlines()[-1])
    roas = pd.read_csv(out / "roas.csv")
    low_col = next(c for c in roas.columns if c.endswith("95_lower"))
    high_col = next(c for c in roas.columns if c.endswith("95_upper"))
    roas = roas.set_index(["geo", "channel"]).loc[
        [(g, c) for g in truth["groups"] for c in truth["channels"]]
    ]
    true = truth["roas"].reshape(-1)
    return {
        "job": "pymc-marketing MMM(dims=('geo',))",
        "chains": args.chains,
        "draws": args.draws,
        "wall_s": r["wall_s"],
        "peak_rss_mb": r["peak_rss_mb"],
        "sample_s": stats["sample_s"],
        "divergences": stats["divergences"],
        "rhat_max": stats["rhat_max"],
        "ess_bulk_min": stats["ess_bulk_min"],
        "n_steps": stats["n_steps"],
        **_recovery(roas[low_col], roas[high_col], roas["mean"], true),
    }


def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def write(rows: list[dict], args) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {"versions": versions(), "cpu": cpu_name(), "args": vars(args)}
    (RESULTS / "panel_pmm.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    lines = [
        "# Panels at size: fastmmm against pymc-marketing's geo model",
        "",
        f"make_panel({args.geos} geos, {args.weeks} weeks, {args.channels} channels), "
        f"{args.chains} chains x {args.draws} draws + {args.tune} tune for both unless the job says "
        f"otherwise (fastmmm also at {args.long_chains} chains x {args.long_draws} draws, the length "
        "its R-hat < 1.01 needs on these panels), each job a fresh process (pymc-marketing with "
        f"empty compile caches, on the first {args.pmm_datasets} panel(s)). CPU: {meta['cpu']} "
        f"({os.cpu_count()} cores: ratios within one run).",
        "",
        "| panel | job | wall s | sampling s | peak RSS MB | divergences | max R-hat | min bulk ESS "
        "| ROAS 95% coverage | median abs error | mean signed error | median interval width / truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['job']} | {r['wall_s']:.1f} | {r['sample_s']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['divergences']} | {_fmt(r['rhat_max'], '.4f')} | {_fmt(r['ess_bulk_min'], '.0f')} "
            f"| {r['covered']}/{r['cells']} ({r['coverage']:.0%}) | {r['median_abs_error']:.1%} "
            f"| {r['mean_signed_error']:+.1%} | {r['median_interval_width']:.2f} |"
        )
    ratios = []
    for ds in sorted({r["dataset"] for r in rows}):
        p = next((r for r in rows if r["dataset"] == ds and r["job"].startswith("pymc")), None)
        for f in (r for r in rows if r["dataset"] == ds and r["job"].startswith("fastmmm")):
            if p is None:
                continue
            ratios.append(
                f"- panel {ds}, {f['job']} ({f['chains']} x {f['draws']}) against pymc-marketing "
                f"({p['chains']} x {p['draws']}): process wall {p['wall_s']:.0f} s / {f['wall_s']:.1f} s = "
                f"**{p['wall_s'] / f['wall_s']:.1f}x**; sampling {p['sample_s']:.0f} s / "
                f"{f['sample_s']:.1f} s = {p['sample_s'] / f['sample_s']:.1f}x"
            )
    if ratios:
        lines += ["", "pymc-marketing / fastmmm:", "", *ratios]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())]
    (RESULTS / "panel_pmm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--geos", type=int, default=8)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--datasets", type=int, default=3)
    ap.add_argument("--pmm-datasets", type=int, default=1, help="panels pymc-marketing fits (the first ones)")
    ap.add_argument("--long-chains", type=int, default=4)
    ap.add_argument("--long-draws", type=int, default=2000)
    ap.add_argument("--skip-pmm", action="store_true")
    args = ap.parse_args(argv)
    from fastmmm.synthetic import make_panel

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.datasets):
            seed = 200 + i
            df, truth = make_panel(args.geos, args.weeks, args.channels, seed=seed)
            csv = Path(tmp) / f"panel_{seed}.csv"
            df.to_csv(csv, index=False)
            jobs = [
                ("fastmmm", lambda c, o, t: fastmmm_job(c, o, t, args)),
                (
                    "fastmmm_long",
                    lambda c, o, t: fastmmm_job(c, o, t, args, args.long_chains, args.long_draws),
                ),
            ]
            if not args.skip_pmm and i < args.pmm_datasets:
                jobs.append(("pmm", lambda c, o, t: pmm_job(c, o, t, args)))
            for name, job in jobs:
                r = job(csv, Path(tmp) / f"{name}_{seed}", truth)
                r["dataset"] = seed
                rows.append(r)
                print(
                    f"panel {seed} {r['job']}: wall {r['wall_s']:.1f} s, sampling {r['sample_s']:.1f} s, "
                    f"coverage {r['covered']}/{r['cells']}, R-hat {_fmt(r['rhat_max'], '.4f')}, "
                    f"divergences {r['divergences']}",
                    flush=True,
                )
    write(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
