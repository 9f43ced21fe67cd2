"""The ``fastmmm`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fastmmm import defaults
from fastmmm.outputs import atomic_write, json_safe, write_outputs


def _kernel_demo(args: argparse.Namespace) -> int:
    """Evaluate every transform on synthetic weekly spend and print a table."""
    from fastmmm import kernels as K

    rng = np.random.default_rng(args.seed)
    t, c = args.weeks, 3
    spend = rng.gamma(2.0, 1.0, size=(t, c)) * (rng.random((t, c)) > 0.3)
    spend[20:30, 0] = 0.0  # a flight gap
    print(f"fastmmm kernels: {t} weeks x {c} channels of synthetic spend (seed {args.seed})\n")
    fns = {
        "geometric (recursive)": lambda x: K.geometric_adstock(x, [0.5, 0.3, 0.7]),
        "geometric l_max=8 norm": lambda x: K.geometric_adstock(x, [0.5, 0.3, 0.7], 8, True),
        "delayed l_max=8": lambda x: K.delayed_adstock(x, [0.5, 0.3, 0.7], [1.0, 2.0, 0.5], 8),
        "weibull_pdf l_max=8": lambda x: K.weibull_adstock(x, [2.0, 3.0, 1.5], [1.5, 2.0, 1.2], 8),
        "weibull_cdf l_max=8": lambda x: K.weibull_adstock(x, [2.0, 3.0, 1.5], [1.5, 2.0, 1.2], 8, "cdf"),
        "hill": lambda x: K.hill(x, [1.0, 2.0, 1.5], [1.5, 2.0, 0.8]),
        "logistic": lambda x: K.logistic_saturation(x, [1.0, 0.5, 2.0]),
        "michaelis_menten": lambda x: K.michaelis_menten(x, [1.0, 1.0, 1.0], [1.0, 2.0, 0.5]),
        "tanh": lambda x: K.tanh_saturation(x, [1.0, 1.5, 0.8], [1.0, 0.5, 2.0]),
    }
    print(f"{'transform':<26}{'mean ch0':>10}{'mean ch1':>10}{'mean ch2':>10}{'us/call':>10}")
    print("-" * 66)
    for name, f in fns.items():
        y = f(spend)
        t0 = time.perf_counter()
        for _ in range(200):
            f(spend)
        us = (time.perf_counter() - t0) / 200 * 1e6
        m = y.mean(axis=0)
        print(f"{name:<26}{m[0]:>10.4f}{m[1]:>10.4f}{m[2]:>10.4f}{us:>10.1f}")
    return 0


def _spec_from_args(args: argparse.Namespace):
    from fastmmm.spec import ModelSpec

    base = {}
    if args.config:
        base = ModelSpec.from_toml(args.config).to_dict()
        base.pop("spec_version", None)
    overrides = {
        "date_column": args.date_column,
        "target": args.target,
        "channels": _split(args.channels),
        "controls": _split(args.controls),
        "adstock": args.adstock,
        "saturation": args.saturation,
        "l_max": args.l_max,
        "yearly_seasonality": args.yearly_seasonality,
        "trend": False if args.no_trend else None,
        "log_target": True if getattr(args, "log_target", False) else None,
        "time_varying_intercept": True if getattr(args, "time_varying_intercept", False) else None,
        "time_varying_media": True if getattr(args, "time_varying_media", False) else None,
        "media_prior": getattr(args, "media_prior", None),
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    roas = getattr(args, "roas_prior", None) or []
    if roas:
        if base.get("media_prior", "roas") == "share":
            raise ValueError(
                "--roas-prior sets ROAS priors, but --media-prior share puts the prior on each "
                "channel's share of the target; use --media-prior roas (the default) or set "
                "channel_share priors in a --config file"
            )
        name = "mroas" if base.get("media_prior") == "mroas" else "roas"
        priors = dict(base.get("priors") or {})
        for item in roas:
            channel, sep, text = item.partition("=")
            if not sep or "(" in channel:  # no channel: the prior of every channel
                channel, text = "", item
            key = f"{name}.{channel.strip()}" if channel.strip() else name
            priors[key] = text.strip()
        base["priors"] = priors
    if "channels" not in base:
        raise ValueError("--channels (or a --config with channels) is required")
    return ModelSpec.from_dict(base)


def _split(s):
    if s is None:
        return None
    return tuple(p.strip() for p in s.split(",") if p.strip())


def _print_summary(summary: dict, truth=None) -> None:
    rows = summary["channels"]
    head = f"{'channel':<12}{'spend':>14}{'ROAS':>9}{'95% interval':>20}{'mROAS':>9}{'share':>8}"
    if truth is not None:
        head += f"{'true ROAS':>11}"
    print(head)
    print("-" * len(head))
    for i, (ch, r) in enumerate(rows.items()):
        line = (
            f"{ch:<12}{r['spend']:>14,.0f}{r['roas']['mean']:>9.2f}"
            f"{'[' + format(r['roas']['low'], '.2f') + ', ' + format(r['roas']['high'], '.2f') + ']':>20}"
            f"{r['mroas']['mean']:>9.2f}{100 * r['contribution_share']['mean']:>7.1f}%"
        )
        if truth is not None:
            line += f"{truth.roas[i]:>11.2f}"
        print(line)
    d = summary["diagnostics"]
    t = summary["timing"]
    print(
        f"\nMAPE {100 * d['mape_in_sample']:.1f}%  R^2 {d['r2']:.3f}  max R-hat {d['rhat_max']:.4f}  "
        f"min ESS {d['ess_bulk_min']:.0f}  divergences {d['divergences']}  -> {'PASS' if d['passed'] else 'FAIL'}"
    )
    if d.get("mape_holdout") is not None:
        print(f"hold-out MAPE {100 * d['mape_holdout']:.1f}%")
    if summary.get("lift_tests"):
        print(
            f"\n{'lift test':<12}{'spend/period':>22}{'periods':>9}{'observed lift':>22}{'modelled lift (95%)':>34}"
        )
        for r in summary["lift_tests"]:
            m = r["lift_model"]
            print(
                f"{r['channel']:<12}{format(r['spend_before'], ',.0f') + ' -> ' + format(r['spend_after'], ',.0f'):>22}"
                f"{r['periods']:>9.1f}{format(r['lift'], ',.0f') + ' +- ' + format(r['lift_se'], ',.0f'):>22}"
                f"{format(m['mean'], ',.0f') + ' [' + format(m['low'], ',.0f') + ', ' + format(m['high'], ',.0f') + ']':>34}"
            )
    for f in d["failures"]:
        print(f"  - {f}")
    print(
        f"time: build {t['build_s']:.2f}s, compile {t['compile_s']:.2f}s, "
        f"sample {t['sample_s']:.2f}s, total {t['total_s']:.2f}s ({summary.get('backend', '')})"
    )


def _add_max_draws(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-draws",
        type=int,
        help="most posterior draws per chain: chains whose R-hat or ESS fail their checks go on "
        f"sampling up to this (default {defaults.EXTEND_UP_TO} x --draws; --max-draws equal to "
        "--draws samples exactly --draws)",
    )


def _extension(args: argparse.Namespace) -> dict:
    """``max_draws`` for the fit, where the user set it (else the library's default)."""
    return {} if args.max_draws is None else {"max_draws": args.max_draws}


def _fit(args: argparse.Namespace) -> int:
    from fastmmm.fit import MMM

    spec = _spec_from_args(args)
    result = MMM(spec).fit(
        args.data,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        holdout_weeks=args.holdout_weeks,
        progress=not args.quiet,
        lift_tests=args.lift_tests,
        backend=args.backend,
        **_extension(args),
    )
    summary = write_outputs(result, Path(args.out), report=not args.no_report)
    _print_summary(summary)
    report = "" if args.no_report else ", report.html"
    print(f"\nwrote {args.out}/summary.json, contributions.csv, model/{report}")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """The model and sampler options shared by ``fit`` and ``fit-many``."""
    p.add_argument("--date-column")
    p.add_argument("--target")
    p.add_argument("--channels", help="comma-separated spend columns")
    p.add_argument("--controls", help="comma-separated control columns")
    p.add_argument("--adstock", choices=["geometric", "delayed", "weibull_cdf", "weibull_pdf"])
    p.add_argument("--saturation", choices=["hill", "logistic", "michaelis_menten", "tanh"])
    p.add_argument("--l-max", type=int)
    p.add_argument("--yearly-seasonality", type=int)
    p.add_argument("--no-trend", action="store_true", help="no built-in linear trend")
    p.add_argument(
        "--log-target",
        action="store_true",
        help="multiplicative model: log(target) is the sum of the terms (target > 0)",
    )
    p.add_argument("--time-varying-intercept", action="store_true", help="smooth baseline drift (HSGP)")
    p.add_argument(
        "--time-varying-media", action="store_true", help="smooth multiplier on media contributions (HSGP)"
    )
    p.add_argument(
        "--media-prior",
        choices=["roas", "mroas", "share"],
        help="what each channel's amplitude prior is on: its ROAS (default), its marginal ROAS, "
        "or its share of the target (the former default)",
    )
    p.add_argument(
        "--roas-prior",
        action="append",
        metavar="[CHANNEL=]PRIOR",
        help="prior of a channel's ROAS (or of every channel's, without CHANNEL=), e.g. "
        "tv=LogNormal(0.5,0.4); repeatable",
    )
    p.add_argument("--holdout-weeks", type=int, default=0)
    p.add_argument("--chains", type=int, default=defaults.CHAINS)
    p.add_argument("--draws", type=int, default=defaults.DRAWS)
    _add_max_draws(p)
    p.add_argument("--tune", type=int, default=defaults.TUNE)
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="TOML spec file (command-line options override it)")
    p.add_argument(
        "--backend",
        choices=["auto", "rust", "pytensor"],
        default="auto",
        help="rust: the fused log-density sampled in the Rust core; pytensor: the PyMC model "
        "compiled and sampled by nutpie; auto (default): rust whenever it covers the model",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _fit_many(args: argparse.Namespace) -> int:
    from fastmmm.batch import fit_many

    spec = _spec_from_args(args)
    index = fit_many(
        args.data,
        by=args.by,
        spec=spec,
        executor=args.executor,
        out=args.out,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        dask_address=args.dask_address,
        report=args.report,
        holdout_weeks=args.holdout_weeks,
        backend=args.backend,
        **_extension(args),
    )
    ok = index["status"] == "ok"
    resumed = int(index["resumed"].sum())
    passed = int(index["passed"].sum())  # nullable boolean: missing for failed brands
    print(
        f"fit-many: {int(ok.sum())}/{len(index)} brands fitted ({resumed} from an earlier run), "
        f"{passed} passed diagnostics, {int((~ok).sum())} failed"
    )
    for _, row in index[~ok].iterrows():
        print(f"  - {row['brand']}: {row['error']}")
    print(f"wrote {args.out}/index.csv and {args.out}/<brand>/")
    return 0 if ok.all() else 1


def _demo(args: argparse.Namespace) -> int:
    """Synthetic data with known truth: fit it and print true vs estimated ROAS."""
    from fastmmm.fit import MMM
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(
        args.weeks, args.channels, adstock="geometric", saturation="hill", seed=args.seed
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "data.csv", index=False)
    print(
        f"fastmmm demo: {args.weeks} weeks x {args.channels} channels of synthetic data "
        f"(geometric adstock + Hill saturation, seed {args.seed}); fitting..."
    )
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        adstock="geometric",
        saturation="hill",
        l_max=truth.l_max,
    )
    result = MMM(spec).fit(
        df,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        progress=not args.quiet,
        **_extension(args),
    )
    summary = write_outputs(result, out, report=not args.no_report)
    print()
    _print_summary(summary, truth)
    rel = [summary["channels"][c]["roas"]["mean"] / truth.roas[i] - 1 for i, c in enumerate(truth.channels)]
    cov = sum(
        summary["channels"][c]["roas"]["low"] <= truth.roas[i] <= summary["channels"][c]["roas"]["high"]
        for i, c in enumerate(truth.channels)
    )
    print(
        f"\ntrue ROAS inside the 95% interval for {cov}/{len(rel)} channels; "
        f"mean |error| of the ROAS estimate {100 * float(np.mean(np.abs(rel))):.0f}%"
    )
    report = "" if args.no_report else ", report.html"
    print(f"wrote {out}/data.csv, summary.json, contributions.csv, model/{report}")
    return 0


def _parse_bounds(text, *, panel: bool = False):
    """'tv=0:5000,search=100:' -> {'tv': (0, 5000), 'search': (100, None)}; on a panel a
    cell is GROUP/CHANNEL (split at the first '/'): 'north/tv=0:500' -> {('north', 'tv'): (0, 500)}."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, rng = part.partition("=")
        lo, sep2, hi = rng.partition(":")
        if not sep or not sep2:
            raise ValueError(f"bad --bounds entry {part!r} (expected NAME=LO:HI or GROUP/CHANNEL=LO:HI)")
        group, slash, channel = name.strip().partition("/")
        key = (group.strip(), channel.strip()) if panel and slash else name.strip()
        out[key] = (float(lo) if lo.strip() else None, float(hi) if hi.strip() else None)
    return out


def _parse_totals(text):
    """'north=1000,south=2500' -> {'north': 1000.0, 'south': 2500.0}"""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"bad --group-totals entry {part!r} (expected GROUP=TOTAL)")
        out[name.strip()] = float(val)
    return out


def _optimize(args: argparse.Namespace) -> int:
    from fastmmm.optimize import PanelResponse, PosteriorResponse, cell_bounds, optimize_budget
    from fastmmm.optimize.budget import plot_allocation
    from fastmmm.results import load

    result = load(
        args.result_dir if not (Path(args.result_dir) / "model").exists() else Path(args.result_dir) / "model"
    )
    bounds, totals = _parse_bounds(args.bounds, panel=result.is_panel), _parse_totals(args.group_totals)
    if result.is_panel:
        model = PanelResponse.from_result(result, max_draws=args.max_draws)
        bounds = cell_bounds(model, bounds)
    else:
        if totals:
            raise ValueError("--group-totals: the saved model is national (no groups)")
        model = PosteriorResponse.from_result(result, max_draws=args.max_draws)
    r = optimize_budget(
        model, args.budget, args.weeks, bounds=bounds, objective=args.objective, group_totals=totals or None
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(json_safe(r.to_dict()), indent=2))
    png = out.with_suffix(".png")
    plot_allocation(model, r, png)
    width = max(12, *(len(_cell_name(ch)) + 2 for ch in r.allocation))
    print(f"{'channel':<{width}}{'current':>14}{'optimal':>14}{'mROAS':>9}")
    for ch in r.allocation:
        print(
            f"{_cell_name(ch):<{width}}{r.current_allocation[ch]:>14,.0f}{r.allocation[ch]:>14,.0f}"
            f"{r.mroas[ch]:>9.3f}"
        )
    e, c, u = r.expected_response, r.current_response, r.uplift
    print(
        f"\nexpected response {e['mean']:,.0f} [{e['low']:,.0f}, {e['high']:,.0f}] vs current "
        f"{c['mean']:,.0f}; uplift {u['mean']:,.0f} [{u['low']:,.0f}, {u['high']:,.0f}]"
    )
    print(f"wrote {out} and {png}")
    return 0


def _cell_name(cell) -> str:
    """A channel's name, or a panel cell's GROUP/CHANNEL."""
    return "/".join(map(str, cell)) if isinstance(cell, tuple) else str(cell)


def _fit_hierarchical(args: argparse.Namespace) -> int:
    from fastmmm.hierarchical import HierarchicalMMM

    spec = _spec_from_args(args)
    pooled = _split(args.pooled) or ("adstock", "saturation", "amplitude")
    model = HierarchicalMMM(spec, group=args.group, pooled=pooled, media_multiplier=args.media_multiplier)
    result = model.fit(
        args.data,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        progress=not args.quiet,
        lift_tests=args.lift_tests,
        backend=args.backend,
        holdout_weeks=args.holdout_weeks,
        **_extension(args),
    )
    out = Path(args.out)
    summary = write_outputs(result, out, report=not args.no_report)
    cs = result.channel_summary()
    print(f"{args.group:<14}{'channel':<12}{'ROAS':>9}{'95% interval':>20}")
    for (g, ch), row in cs.iterrows():
        if not row["spend"] > 0:  # a channel absent from this group: no ROAS
            print(f"{str(g):<14}{ch:<12}{'no spend':>9}")
            continue
        print(
            f"{str(g):<14}{ch:<12}{row['roas_mean']:>9.2f}"
            f"{'[' + format(row['roas_low'], '.2f') + ', ' + format(row['roas_high'], '.2f') + ']':>20}"
        )
    d, t = summary["diagnostics"], summary["timing"]
    rhat = "n/a (1 chain)" if d["rhat_max"] is None else f"{d['rhat_max']:.4f}"
    ess = "n/a" if d["ess_bulk_min"] is None else f"{d['ess_bulk_min']:.0f}"
    print(
        f"\nMAPE {100 * d['mape_in_sample']:.1f}%  max R-hat {rhat}  min ESS {ess}  "
        f"divergences {d['divergences']}  -> {'PASS' if d['passed'] else 'FAIL'}"
    )
    print(
        f"time: build {t['build_s']:.2f}s, compile {t['compile_s']:.2f}s, sample {t['sample_s']:.2f}s "
        f"({summary['backend']})"
    )
    plot = "" if args.no_report else ", roas.png"
    print(f"wrote {out}/summary.json, channel_summary.csv, contributions.csv{plot}, model/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fastmmm`` command's parser (every subcommand)."""
    parser = argparse.ArgumentParser(prog="fastmmm", description="Bayesian media mix modelling, fast.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="fit synthetic data with known truth and compare ROAS")
    p.add_argument("--out", default="fastmmm-demo", help="output directory (default: fastmmm-demo)")
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--channels", type=int, default=6)
    p.add_argument("--draws", type=int, default=defaults.DRAWS)
    _add_max_draws(p)
    p.add_argument("--tune", type=int, default=defaults.TUNE)
    p.add_argument("--chains", type=int, default=defaults.CHAINS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.set_defaults(func=_demo)

    p = sub.add_parser("fit", help="fit a model to a CSV file")
    p.add_argument("data", help="CSV file: one row per period")
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--lift-tests",
        help="CSV of lift-test results that calibrate the media curves: channel, spend_before, "
        "spend_after (or delta_spend), lift, lift_se, and periods/weeks/days (or start and end)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.set_defaults(func=_fit)

    p = sub.add_parser(
        "fit-many",
        help="fit one model per brand (compile once, fit many; local process pool or Dask)",
    )
    p.add_argument("data", help="CSV file: one row per brand and period")
    p.add_argument("--by", default="brand", help="brand column (default: brand)")
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output directory: DIR/<brand>/ and DIR/index.csv")
    p.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="local process pool (default) or a Dask cluster",
    )
    p.add_argument("--dask-address", help="Dask scheduler address (default: start a loopback LocalCluster)")
    p.add_argument("--workers", type=int, help="worker processes (default: number of CPUs)")
    p.add_argument("--report", action="store_true", help="also write report.html per brand")
    p.set_defaults(func=_fit_many)

    p = sub.add_parser(
        "fit-hierarchical",
        help="one hierarchical model over several geos/brands with partially pooled media effects",
    )
    p.add_argument(
        "data",
        help="CSV file: one row per group and period (groups may start late or stop early, on one date grid)",
    )
    p.add_argument("--group", default="geo", help="group column (default: geo)")
    p.add_argument(
        "--pooled", help="comma-separated pooled parameters (default: adstock,saturation,amplitude)"
    )
    p.add_argument(
        "--lift-tests",
        help="CSV of geo experiments: the fit command's lift-test columns plus the group column",
    )
    p.add_argument(
        "--media-multiplier",
        choices=["shared", "group"],
        default="shared",
        help="with --time-varying-media: one multiplier for all groups (default) or one per group",
    )
    _add_model_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-report", action="store_true", help="do not write roas.png")
    p.set_defaults(func=_fit_hierarchical)

    p = sub.add_parser("optimize", help="optimise a budget split on a fitted model")
    p.add_argument("result_dir", help="a saved model directory (or a `fastmmm fit --out` directory)")
    p.add_argument("--budget", type=float, required=True, help="total budget over the horizon")
    p.add_argument("--weeks", type=int, required=True, help="horizon in periods")
    p.add_argument(
        "--bounds",
        help="budget bounds per channel, e.g. tv=0:5000,search=100: (on a panel result every group's "
        "cell of the channel), or per panel cell GROUP/CHANNEL, e.g. north/tv=0:500",
    )
    p.add_argument(
        "--group-totals", help="panel results: fixed budgets of some groups, e.g. north=10000,south=5000"
    )
    p.add_argument(
        "--objective", default="mean", help="mean | quantile:Q | mean_sd:LAMBDA | profit:TARGET_ROAS"
    )
    p.add_argument("--max-draws", type=int, default=1000)
    p.add_argument("--out", required=True, help="alloc.json path (a PNG of the curves is written beside it)")
    p.set_defaults(func=_optimize)

    p = sub.add_parser("kernels", help="evaluate the Rust kernels on synthetic spend and print a table")
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_kernel_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code = _run(args)
    if argv is None:  # the program itself, about to exit (not a caller's main([...]))
        # The interpreter's exit would run one last garbage collection over every object
        # the command made (60-80 ms after a fit-many, a tenth of its fixed cost); the
        # process's memory goes back to the system anyway. Files are closed by now.
        import gc

        gc.freeze()
    return code


#: Errors a user can fix: printed as one line naming the problem, exit status 2.
def _user_errors() -> tuple[type[BaseException], ...]:
    from fastmmm.data import DataError

    # OSError: a path that cannot be read or written (missing, a directory, no permission).
    return (DataError, ValueError, OSError, NotImplementedError, ImportError)


def _run(args: argparse.Namespace) -> int:
    """Run a command: its own wall time printed at the end; errors as one line (the
    traceback only with FASTMMM_DEBUG=1); Ctrl-C stops it with status 130."""
    import logging

    t0 = time.perf_counter()
    if not logging.getLogger("fastmmm").handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("fastmmm").addHandler(h)
        logging.getLogger("fastmmm").setLevel(logging.WARNING)
    debug = os.environ.get("FASTMMM_DEBUG", "") not in ("", "0")
    name = f"fastmmm {args.command}"
    if not debug:
        import warnings

        def show(message, category, filename, lineno, file=None, line=None):
            print(f"{name}: warning: {message}", file=sys.stderr)

        warnings.showwarning = show
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except _user_errors() as e:
        if debug:
            raise
        print(f"{name}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  nothing a user runs ends in a traceback from our internals
        if debug:
            raise
        print(
            f"{name}: internal error ({type(e).__name__}: {e}); rerun with FASTMMM_DEBUG=1 for the "
            "traceback and report it",
            file=sys.stderr,
        )
        return 1
    if args.command in ("fit", "demo", "fit-many", "fit-hierarchical", "optimize"):
        print(f"{name}: done in {time.perf_counter() - t0:.2f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
