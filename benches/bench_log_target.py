"""Recovery on multiplicative data: the log-target model against the additive one.

Run:  python benches/bench_log_target.py [--datasets 8] [--draws 1000] [--tune 1000]

Datasets from ``fastmmm.synthetic.make_multiplicative_dataset`` (log(sales) = baseline +
sum of Hill(geometric adstock) terms + Normal noise), seeds 30000 + i (the tests use others),
varying length (104 / 130 / 156 weeks), channels (4-5), noise (3-7% on the log scale) and the
media share of sales (20-45%). The truth is the counterfactual ROAS over the data's dates
(what fastmmm reports for this model). Each dataset is fitted twice with the same spec
(geometric + Hill, event control, 2 chains): ``log_target=True`` and the additive model.
Per model: coverage of the 95% ROAS intervals, median absolute and mean signed relative ROAS
error, median relative interval width, divergences and R-hat. Writes
benches/results/log_target.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _meta import cpu_name, versions  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=8)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    args = ap.parse_args(argv)

    from fastmmm import MMM, ModelSpec
    from fastmmm.synthetic import make_multiplicative_dataset

    rows = []
    for i in range(args.datasets):
        rng = np.random.default_rng(30000 + i)
        weeks = int(rng.choice([104, 130, 156]))
        n_ch = int(rng.integers(4, 6))
        noise = float(rng.uniform(0.03, 0.07))
        share = float(rng.uniform(0.2, 0.45))
        df, truth = make_multiplicative_dataset(weeks, n_ch, noise=noise, media_share=share, seed=30000 + i)
        for model in ("log_target", "additive"):
            spec = ModelSpec(
                date_column="date",
                target="sales",
                channels=list(truth.channels),
                controls=["event"],
                saturation="hill",
                log_target=model == "log_target",
            )
            t0 = time.perf_counter()
            r = MMM(spec).fit(
                df, draws=args.draws, tune=args.tune, chains=args.chains, seed=i, progress=False
            )
            v = r.validate()
            cs = r.channel_summary()
            for c, ch in enumerate(truth.channels):
                true = float(truth.roas[c])
                rows.append(
                    {
                        "dataset": i,
                        "model": model,
                        "weeks": weeks,
                        "noise": noise,
                        "media_share": share,
                        "channel": ch,
                        "true_roas": true,
                        "mean": float(cs.loc[ch, "roas_mean"]),
                        "low": float(cs.loc[ch, "roas_low"]),
                        "high": float(cs.loc[ch, "roas_high"]),
                        "divergences": int(v.divergences),
                        "rhat_max": float(v.rhat_max),
                        "mape": float(v.mape_in_sample),
                        "fit_s": time.perf_counter() - t0,
                    }
                )
            last = [x for x in rows if x["dataset"] == i and x["model"] == model]
            cov = np.mean([x["low"] <= x["true_roas"] <= x["high"] for x in last])
            print(
                f"dataset {i} ({weeks} x {n_ch}, noise {noise:.3f}, share {share:.2f}) {model:10s}: "
                f"coverage {cov:.0%}, divergences {v.divergences}, R-hat {v.rhat_max:.4f}",
                flush=True,
            )

    summary = {}
    for model in ("log_target", "additive"):
        sel = [x for x in rows if x["model"] == model]
        err = np.array([x["mean"] / x["true_roas"] - 1 for x in sel])
        width = np.array([(x["high"] - x["low"]) / x["true_roas"] for x in sel])
        fits = {x["dataset"]: x for x in sel}.values()
        summary[model] = {
            "channels": len(sel),
            "coverage": float(np.mean([x["low"] <= x["true_roas"] <= x["high"] for x in sel])),
            "median_abs_error": float(np.median(np.abs(err))),
            "mean_signed_error": float(np.mean(err)),
            "median_rel_width": float(np.median(width)),
            "fits": len(fits),
            "fits_without_divergences": int(sum(f["divergences"] == 0 for f in fits)),
            "fits_rhat_below_1_01": int(sum(f["rhat_max"] < 1.01 for f in fits)),
            "max_rhat": float(max(f["rhat_max"] for f in fits)),
            "median_mape": float(np.median([f["mape"] for f in fits])),
        }
    from datetime import UTC, datetime

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "versions": versions(),
    }
    meta |= {
        "datasets": args.datasets,
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "log_target.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2)
    )
    lines = [
        "# Multiplicative data: log-target vs additive model",
        "",
        f"{args.datasets} datasets of `make_multiplicative_dataset` (seeds 30000+), {args.chains} chains x "
        f"{args.draws} + {args.tune}; truth = counterfactual ROAS over the data's dates. {meta.get('cpu', '')}; "
        + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
        "",
        "| model | channels | 95% coverage | median abs ROAS error | mean signed error | median interval width / truth "
        "| fits without divergences | fits with R-hat < 1.01 (max) | median in-sample MAPE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, s in summary.items():
        lines.append(
            f"| {model} | {s['channels']} | {s['coverage']:.0%} | {s['median_abs_error']:.1%} | "
            f"{s['mean_signed_error']:+.1%} | {s['median_rel_width']:.2f} | {s['fits_without_divergences']}/{s['fits']} | "
            f"{s['fits_rhat_below_1_01']}/{s['fits']} ({s['max_rhat']:.4f}) | {s['median_mape']:.1%} |"
        )
    (RESULTS / "log_target.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
