"""Feature benchmark: lift-test calibration and time-varying (HSGP) models on the
fused Rust log-density versus the PyMC model compiled by nutpie (numba).

Run:  python benches/bench_features.py [--quick]

Cases (the data of tests/test_lift.py and tests/test_tvp.py):
  lift   make_confounded_dataset(seed=0) (104 weeks, tv + search, geometric + Hill,
         latent demand driving search) with two lift tests on search.
  tvp    make_dataset(156, 3, seed=0) with both time-varying parts switched on
         (time_varying_intercept and time_varying_media, hsgp_m 20).

For each case, in this one run, MMM(spec).fit(backend=...) with "rust" and
"pytensor", 2 chains x 1000 draws + 1000 tune (500 + 500 with --quick), the same
seed, a cleared model cache: build / compile / sample seconds, divergences, max
R-hat, and the largest |difference of posterior mean ROAS| in units of the
combined Monte Carlo standard error (the two backends sample the same posterior,
so this should be a few units at most). Results: benches/results/features.json/.md.
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


def cases():
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_confounded_dataset, make_dataset, make_lift_tests

    df, truth = make_confounded_dataset(seed=0)
    m = float(df["search"].mean())
    lifts = make_lift_tests(truth, [("search", 0.0, m, 8), ("search", m, 0.5 * m, 6)], se_frac=0.1, seed=0)
    lift_spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=list(truth.channels),
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )
    yield "lift", lift_spec, df, {"lift_tests": lifts}
    df2, truth2 = make_dataset(156, 3, seed=0)
    tvp_spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=list(truth2.channels),
        controls=["event"],
        saturation="hill",
        time_varying_intercept=True,
        time_varying_media=True,
    )
    yield "tvp", tvp_spec, df2, {}


def roas_stats(res):
    import arviz as az

    contrib = res.idata.posterior["channel_contribution"].sum("date") * float(res.data.scales.target_scale)
    spend = np.asarray(res.data.spend, dtype=float).sum(axis=0)
    roas = contrib / spend
    mean = roas.mean(("chain", "draw")).values
    mcse = az.mcse(roas.to_dataset(name="r"))["r"].values
    return mean, mcse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    # Import what a fit loads (nutpie -> arviz -> matplotlib, pymc) before any timing:
    # otherwise the first contender of the first case pays ~3 s of imports alone.
    import arviz  # noqa: F401
    import nutpie  # noqa: F401

    import fastmmm.model  # noqa: F401
    from fastmmm.fit import MMM, clear_compile_cache

    draws = 500 if args.quick else 1000
    rows, notes = [], []
    for name, spec, df, extra in cases():
        out = {"case": name}
        stats = {}
        for backend in ("rust", "pytensor"):
            clear_compile_cache()
            t0 = time.perf_counter()
            with quiet(notes):
                res = MMM(spec).fit(
                    df, draws=draws, tune=draws, chains=2, seed=1, progress=False, backend=backend, **extra
                )
            wall = time.perf_counter() - t0
            v = res.validate()
            out[backend] = {
                "wall_s": wall,
                **{k: float(res.timing[k]) for k in ("build_s", "compile_s", "sample_s")},
                "divergences": v.divergences,
                "rhat_max": v.rhat_max,
                "ess_bulk_min": v.ess_bulk_min,
            }
            stats[backend] = roas_stats(res)
        (m1, s1), (m2, s2) = stats["rust"], stats["pytensor"]
        out["roas_max_abs_z"] = float(np.max(np.abs(m1 - m2) / np.sqrt(s1**2 + s2**2)))
        out["wall_ratio"] = out["pytensor"]["wall_s"] / out["rust"]["wall_s"]
        rows.append(out)
        print(name, json.dumps(out, default=float))
    doc = {
        "draws": draws,
        "tune": draws,
        "chains": 2,
        "rows": rows,
        "versions": versions(),
        "cpu": cpu_name(),
        "notes": notes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(doc, indent=1, default=float))
    lines = [
        f"# Feature benchmark (2 chains x {draws} draws + {draws} tune; {doc['cpu']})\n",
        "| case | backend | build (s) | compile (s) | sample (s) | whole fit (s) | divergences | max R-hat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for b in ("rust", "pytensor"):
            e = r[b]
            lines.append(
                f"| {r['case']} | {b} | {e['build_s']:.2f} | {e['compile_s']:.2f} | {e['sample_s']:.2f} | "
                f"{e['wall_s']:.2f} | {e['divergences']} | {e['rhat_max']:.4f} |"
            )
    lines.append("")
    for r in rows:
        lines.append(
            f"- {r['case']}: whole fit {r['wall_ratio']:.1f}x faster on the rust backend; posterior mean "
            f"ROAS of the two backends differ by at most {r['roas_max_abs_z']:.2f} combined MCSE."
        )
    md = "\n".join(lines) + "\n"
    (RESULTS / "features.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
