"""The ``fastmmm`` command."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    """Evaluate every transform on synthetic weekly spend and print a table."""
    from fastmmm import kernels as K

    rng = np.random.default_rng(args.seed)
    t, c = args.weeks, 3
    spend = rng.gamma(2.0, 1.0, size=(t, c)) * (rng.random((t, c)) > 0.3)
    spend[20:30, 0] = 0.0  # a flight gap
    print(f"fastmmm kernel demo: {t} weeks x {c} channels of synthetic spend (seed {args.seed})\n")

    adstocks = {
        "geometric (recursive)": lambda x: K.geometric_adstock(x, [0.5, 0.3, 0.7]),
        "geometric l_max=8 norm": lambda x: K.geometric_adstock(x, [0.5, 0.3, 0.7], 8, True),
        "delayed l_max=8": lambda x: K.delayed_adstock(x, [0.5, 0.3, 0.7], [1.0, 2.0, 0.5], 8),
        "weibull_pdf l_max=8": lambda x: K.weibull_adstock(x, [2.0, 3.0, 1.5], [1.5, 2.0, 1.2], 8),
        "weibull_cdf l_max=8": lambda x: K.weibull_adstock(x, [2.0, 3.0, 1.5], [1.5, 2.0, 1.2], 8, "cdf"),
    }
    saturations = {
        "hill": lambda x: K.hill(x, [1.0, 2.0, 1.5], [1.5, 2.0, 0.8]),
        "logistic": lambda x: K.logistic_saturation(x, [1.0, 0.5, 2.0]),
        "michaelis_menten": lambda x: K.michaelis_menten(x, [1.0, 1.0, 1.0], [1.0, 2.0, 0.5]),
        "tanh": lambda x: K.tanh_saturation(x, [1.0, 1.5, 0.8], [1.0, 0.5, 2.0]),
    }
    print(f"{'transform':<26}{'mean ch0':>10}{'mean ch1':>10}{'mean ch2':>10}{'us/call':>10}")
    print("-" * 66)
    for name, f in list(adstocks.items()) + list(saturations.items()):
        y = f(spend)
        t0 = time.perf_counter()
        n = 200
        for _ in range(n):
            f(spend)
        us = (time.perf_counter() - t0) / n * 1e6
        m = y.mean(axis=0)
        print(f"{name:<26}{m[0]:>10.4f}{m[1]:>10.4f}{m[2]:>10.4f}{us:>10.1f}")
    a = np.array([0.5, 0.3, 0.7])
    kappa, slope = np.array([1.0, 2.0, 1.5]), np.array([1.5, 2.0, 0.8])
    y, cache = K.media_transform(spend, "geometric", "hill", (a,), (kappa, slope), l_max=8)
    g = np.ones_like(y)
    _, ga, gs = K.media_transform_vjp(spend, g, cache, "geometric", "hill", (a,), (kappa, slope), l_max=8)
    print("\nfused geometric(l_max=8)+hill: d sum(y) / d alpha =", np.round(ga[0], 4))
    print("                               d sum(y) / d kappa =", np.round(gs[0], 4))
    print("                               d sum(y) / d slope =", np.round(gs[1], 4))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastmmm", description="Bayesian media mix modelling, fast.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the demo on synthetic data and print the results")
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
