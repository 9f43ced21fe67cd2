"""ROAS recovery study: how well each amplitude parameterisation's 95% intervals and means
recover the true ROAS, over many synthetic brands with known truth.

Run:  python benches/bench_recovery.py [--datasets 60] [--draws 1000] [--priors roas,share]

The generator (below; seeds 10_000 + i, none of the tests') varies what makes ROAS hard:

* length 104, 130 or 156 weeks; 3 to 6 channels;
* spend mixes: every brand has one or two small channels (2-5% of total spend), the
  rest Dirichlet shares; each channel's pattern is always-on, flighted (on/off bursts,
  30-60% of weeks dark), seasonal (spend follows the year) or pulsed;
* with probability 0.5 a collinear pair (one channel's pattern a noisy copy of another's,
  correlation ~0.9);
* true ROAS per channel LogNormal(0, 0.7) x a brand factor; the media's total share of
  sales 15-45%; geometric adstock (alpha 0.1-0.7) and Hill (slope 0.8-2.5, half-saturation
  0.6-1.6 x the channel's mean non-zero spend); trend, yearly seasonality, an event, and
  noise with a standard deviation of 3-10% of mean sales.

The true ROAS is what the model reports: the channel's contribution over the data's
window divided by its spend there. Each brand is fitted with fastmmm's defaults (geometric
l_max 8 + Hill, yearly seasonality 2, the event control; 2 chains x draws + draws tune)
under each ``--priors`` parameterisation (``roas``: the default; ``share``: the former
default, ``channel_share ~ HalfNormal(0.5 / C)``). Per parameterisation, overall and by
the channel's share of spend: coverage of the 95% intervals, mean signed and median
absolute relative error of the posterior mean ROAS, median relative interval width;
and per fit divergences and max R-hat. Results: results/recovery.json and recovery.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _meta import cpu_name, versions

RESULTS = Path(__file__).resolve().parent / "results"
BUCKETS = ((0.0, 0.05, "<5%"), (0.05, 0.15, "5-15%"), (0.15, 0.30, "15-30%"), (0.30, 1.01, ">=30%"))
NAMES = ("tv", "search", "social", "display", "radio", "ooh")
PATTERNS = ("flighted", "pulsed", "always_on", "seasonal", "collinear copy")


def _pattern_name(kind: str) -> str:
    return "collinear copy" if kind.startswith("copy of") else kind


def _pattern(rng, kind: str, t: int, week: np.ndarray) -> np.ndarray:
    if kind == "always_on":
        x = rng.gamma(8.0, 1.0 / 8.0, t)
    elif kind == "flighted":
        on = np.zeros(t, bool)
        i = 0
        while i < t:
            run = int(rng.integers(3, 10))
            on[i : i + run] = rng.random() < 0.55
            i += run
        if on.mean() < 0.3:
            on[rng.choice(t, size=int(0.4 * t), replace=False)] = True
        x = np.where(on, rng.gamma(4.0, 0.25, t) + 0.5, 0.0)
    elif kind == "seasonal":
        phase = rng.uniform(0, 2 * np.pi)
        x = np.clip(1.0 + 0.7 * np.sin(2 * np.pi * week / 52.0 + phase), 0.05, None) * rng.gamma(10.0, 0.1, t)
    else:  # pulsed: a few big bursts
        x = np.zeros(t)
        for s in rng.choice(t - 4, size=max(3, t // 20), replace=False):
            x[s : s + int(rng.integers(2, 5))] += rng.gamma(6.0, 0.5)
    return x


def make_brand(seed: int, weeks: int | None = None) -> dict:
    """One synthetic brand: data, true ROAS, spend shares and what made it hard (``weeks``
    overrides the length; the rest is drawn from the same distributions)."""
    from fastmmm import kernels as K

    rng = np.random.default_rng(seed)
    t = int(rng.choice([104, 130, 156]))
    t = int(weeks) if weeks else t
    c = int(rng.integers(3, 7))
    week = np.arange(t)
    kinds = [
        str(k)
        for k in rng.choice(["always_on", "flighted", "seasonal", "pulsed"], size=c, p=[0.35, 0.3, 0.2, 0.15])
    ]
    raw = np.stack([_pattern(rng, k, t, week) for k in kinds], axis=1)
    collinear = bool(rng.random() < 0.5 and c >= 3)
    if collinear:
        i, j = rng.choice(c, size=2, replace=False)
        raw[:, j] = raw[:, i] * np.clip(rng.normal(1.0, 0.25, t), 0.2, None)
        kinds[j] = f"copy of {NAMES[i]}"
    # spend shares: one or two small channels (2-5% of spend), the rest Dirichlet
    n_small = 1 if c <= 4 else int(rng.integers(1, 3))
    share = np.empty(c)
    small = rng.choice(c, size=n_small, replace=False)
    share[small] = rng.uniform(0.02, 0.05, n_small)
    rest = np.setdiff1d(np.arange(c), small)
    share[rest] = rng.dirichlet(np.full(len(rest), 2.0)) * (1 - share[small].sum())
    total = rng.uniform(2e5, 5e6)
    spend = raw / raw.sum(axis=0) * share * total
    # media transform on spend scaled by its max (as the model scales it)
    scale = spend.max(axis=0)
    xs = spend / scale
    alpha = rng.uniform(0.1, 0.7, c)
    nz = np.where(xs > 0, xs, np.nan)
    kappa = np.nanmean(nz, axis=0) * rng.uniform(0.6, 1.6, c)
    slope = rng.uniform(0.8, 2.5, c)
    sat, _ = K.media_transform(xs, "geometric", "hill", (alpha,), (kappa, slope), l_max=8, normalize=True)
    roas = np.exp(rng.normal(0.0, 0.7, c)) * np.exp(rng.normal(0.0, 0.5))
    contrib_total = roas * spend.sum(axis=0)
    contrib = sat / sat.sum(axis=0) * contrib_total  # (T, C), each column sums to its total
    media_share = rng.uniform(0.15, 0.45)
    base_total = contrib_total.sum() * (1 - media_share) / media_share
    base = base_total / t
    trend = base * rng.uniform(-0.15, 0.15) * (week / (t - 1) - 0.5)
    season = base * rng.uniform(0.02, 0.12) * np.sin(2 * np.pi * week / 52.18 + rng.uniform(0, 2 * np.pi))
    event = np.zeros(t)
    event[rng.choice(t, size=3, replace=False)] = 1.0
    mean = base + trend + season + event * base * 0.1 + contrib.sum(axis=1)
    noise = rng.uniform(0.03, 0.10)
    y = mean + rng.normal(0, noise * mean.mean(), t)
    names = list(NAMES[:c])
    df = pd.DataFrame(spend, columns=names)
    df.insert(0, "date", pd.date_range("2021-01-04", periods=t, freq="W-MON"))
    df["sales"] = y
    df["event"] = event
    return {
        "df": df,
        "channels": names,
        "roas": roas,
        "share": share,
        "kinds": kinds,
        "collinear": collinear,
        "weeks": t,
        "noise": noise,
        "media_share": media_share,
    }


def fit_brand(brand: dict, media_prior: str, draws: int, seed: int) -> dict:
    """Fit one brand; ``media_prior`` is a parameterisation, optionally with the default ROAS
    prior's spread and reference share to try (``roas:sigma=0.7:ref=0.2``) and sampler
    settings (``:chains=4``, ``:draws=2000``, ``:tune=1000``, ``:accept=0.99``, ``:lowrank``)."""
    from fastmmm import MMM, layout

    kind, *opts = media_prior.split(":")
    old = (layout.ROAS_PRIOR_SIGMA, layout.REFERENCE_MEDIA_SHARE)
    extra = {}
    chains, tune = 2, None
    for o in opts:
        k, _, v = o.partition("=")
        if k == "sigma":
            layout.ROAS_PRIOR_SIGMA = float(v)
        elif k == "ref":
            layout.REFERENCE_MEDIA_SHARE = float(v)
        elif k == "lowrank":
            extra["low_rank_modified_mass_matrix"] = True
        elif k == "chains":
            chains = int(v)
        elif k == "draws":
            draws = int(v)
        elif k == "tune":
            tune = int(v)
        elif k == "accept":
            extra["target_accept"] = float(v)
    spec_kw = dict(
        date_column="date",
        target="sales",
        channels=brand["channels"],
        controls=("event",),
        adstock="geometric",
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
        media_prior=kind,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        try:
            r = MMM(**spec_kw).fit(
                brand["df"],
                draws=draws,
                tune=draws if tune is None else tune,
                chains=chains,
                seed=seed,
                progress=False,
                **extra,
            )
        finally:
            layout.ROAS_PRIOR_SIGMA, layout.REFERENCE_MEDIA_SHARE = old
        wall = time.perf_counter() - t0
    cs = r.channel_summary()
    v = r.validate()
    # Were the truth a draw from the posterior (calibrated), the relative error of the mean,
    # mean / truth - 1, would be distributed as mean / draw - 1: its median, per channel.
    rd = r.channel_draws()["roas"]
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = np.nanmedian(np.abs(np.nanmean(rd, axis=0) / rd - 1), axis=0)
    return {
        "implied_abs_error": implied,
        "resampled": bool(r.posterior.attrs.get("resampled")),
        "roas_mean": cs["roas_mean"].to_numpy(),
        "roas_low": cs["roas_low"].to_numpy(),
        "roas_high": cs["roas_high"].to_numpy(),
        "divergences": int(v.divergences),
        "rhat_max": float(v.rhat_max),
        "ess_bulk_min": float(v.ess_bulk_min),
        "backend": r.backend,
        "draws": int(r.posterior.n_draws),
        "fit_s": wall,
    }


def _stats(rows: list[dict]) -> dict:
    if not rows:
        return {}
    rel = np.array([r["rel"] for r in rows])
    return {
        "channels": len(rows),
        "coverage": float(np.mean([r["covered"] for r in rows])),
        "mean_signed_error": float(np.mean(rel)),
        "median_abs_error": float(np.median(np.abs(rel))),
        "median_rel_width": float(np.median([r["width"] for r in rows])),
        # The median absolute error the posteriors themselves imply (each channel's posterior
        # median of |mean / draw - 1|): what calibrated posteriors of these widths can reach.
        "implied_abs_error": float(np.median([r["implied"] for r in rows])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=60)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument(
        "--weeks",
        type=int,
        help="every brand this long (default 104-156 weeks): how the errors fall with more data "
        "(results to recovery_<weeks>w.*)",
    )
    ap.add_argument(
        "--priors",
        default="roas,share",
        help="parameterisations, comma-separated; roas:sigma=S:ref=R tries another default ROAS prior",
    )
    args = ap.parse_args()
    priors = [p.strip() for p in args.priors.split(",") if p.strip()]
    per: dict[str, list] = {p: [] for p in priors}
    fits: dict[str, list] = {p: [] for p in priors}
    t0 = time.perf_counter()
    for i in range(args.datasets):
        brand = make_brand(10_000 + i, args.weeks)
        for p in priors:
            f = fit_brand(brand, p, args.draws, seed=i)
            fits[p].append(
                {
                    k: f[k]
                    for k in (
                        "divergences",
                        "rhat_max",
                        "ess_bulk_min",
                        "backend",
                        "draws",
                        "resampled",
                        "fit_s",
                    )
                }
            )
            for c, ch in enumerate(brand["channels"]):
                true = float(brand["roas"][c])
                per[p].append(
                    {
                        "dataset": i,
                        "channel": ch,
                        "share": float(brand["share"][c]),
                        "kind": brand["kinds"][c],
                        "true": true,
                        "mean": float(f["roas_mean"][c]),
                        "low": float(f["roas_low"][c]),
                        "high": float(f["roas_high"][c]),
                        "covered": bool(f["roas_low"][c] <= true <= f["roas_high"][c]),
                        "rel": float(f["roas_mean"][c] / true - 1),
                        "width": float((f["roas_high"][c] - f["roas_low"][c]) / true),
                        "implied": float(f["implied_abs_error"][c]),
                    }
                )
        print(
            f"dataset {i}: "
            + ", ".join(
                f"{p} div {fits[p][-1]['divergences']} rhat {fits[p][-1]['rhat_max']:.3f}" for p in priors
            )
            + f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    summary = {}
    for p in priors:
        rows = per[p]
        summary[p] = {
            "overall": _stats(rows),
            "by_spend_share": {
                name: _stats([r for r in rows if lo <= r["share"] < hi]) for lo, hi, name in BUCKETS
            },
            # What the data can say depends on how the spend moves: flighted and pulsed spend
            # varies apart from the baseline, always-on and seasonal spend with it.
            "by_pattern": {k: _stats([r for r in rows if _pattern_name(r["kind"]) == k]) for k in PATTERNS},
            "fits": len(fits[p]),
            "fits_without_divergences": float(np.mean([f["divergences"] == 0 for f in fits[p]])),
            "max_rhat": float(max(f["rhat_max"] for f in fits[p])),
            "fits_rhat_below_1.01": float(np.mean([f["rhat_max"] < 1.01 for f in fits[p]])),
            "median_fit_s": float(np.median([f["fit_s"] for f in fits[p]])),
            "mean_fit_s": float(np.mean([f["fit_s"] for f in fits[p]])),
            "fits_extended": float(np.mean([f["draws"] > args.draws for f in fits[p]])),
            "fits_resampled": float(np.mean([f["resampled"] for f in fits[p]])),
            "max_draws_used": int(max(f["draws"] for f in fits[p])),
            "backends": sorted({f["backend"] for f in fits[p]}),
        }
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": versions(),
        "datasets": args.datasets,
        "draws": args.draws,
        "seeds": "10000 + i",
        "weeks": args.weeks or "104-156",
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"recovery_{args.weeks}w" if args.weeks else "recovery"
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "channels": per, "fits": fits}, indent=1)
    )
    lines = [
        f"# ROAS recovery study ({meta['date']})",
        "",
        f"{args.datasets} synthetic brands of {meta['weeks']} weeks (benches/bench_recovery.py's generator, seeds 10000+i), "
        f"{sum(s['overall']['channels'] for s in summary.values()) // max(len(priors), 1)} channels; "
        f"2 chains x {args.draws} draws (extended until R-hat < 1.01 and bulk ESS >= 200, up to 4x) + {args.draws} tune per fit. Errors are relative: posterior mean "
        "ROAS / true ROAS - 1. Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "| prior on | channels (spend share) | 95% coverage | mean signed error | median abs error | "
        "median width / truth | median abs error the posteriors imply |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in priors:
        label = {
            "roas": "ROAS (default)",
            "share": "contribution share (former default)",
            "mroas": "marginal ROAS",
        }.get(p, p)
        for name, st in [("all", summary[p]["overall"]), *summary[p]["by_spend_share"].items()]:
            if not st:
                continue
            lines.append(
                f"| {label} | {name} ({st['channels']}) | {100 * st['coverage']:.0f}% | "
                f"{100 * st['mean_signed_error']:+.1f}% | {100 * st['median_abs_error']:.1f}% | "
                f"{st['median_rel_width']:.2f} | {100 * st['implied_abs_error']:.1f}% |"
            )
    lines += [
        "",
        "By the channel's spend pattern (a collinear copy of another channel's pattern apart):",
        "",
        "| prior on | spend pattern | 95% coverage | mean signed error | median abs error | "
        "median width / truth | median abs error the posteriors imply |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in priors:
        for name, st in summary[p]["by_pattern"].items():
            if st:
                lines.append(
                    f"| {p} | {name} ({st['channels']}) | {100 * st['coverage']:.0f}% | "
                    f"{100 * st['mean_signed_error']:+.1f}% | {100 * st['median_abs_error']:.1f}% | "
                    f"{st['median_rel_width']:.2f} | {100 * st['implied_abs_error']:.1f}% |"
                )
    lines.append("")
    for p in priors:
        s = summary[p]
        lines.append(
            f"- {p}: {100 * s['fits_without_divergences']:.0f}% of fits without divergences, "
            f"{100 * s['fits_rhat_below_1.01']:.0f}% with max R-hat < 1.01 (max {s['max_rhat']:.3f}); "
            f"{100 * s['fits_resampled']:.0f}% sampled again at target_accept 0.99 after divergences, "
            f"{100 * s['fits_extended']:.0f}% extended past {args.draws} draws (at most "
            f"{s['max_draws_used']}); median fit {s['median_fit_s']:.2f} s, mean {s['mean_fit_s']:.2f} s, "
            f"on {', '.join(s['backends'])}."
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
