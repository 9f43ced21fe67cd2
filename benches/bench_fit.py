"""Fit benchmark: fastmmm versus pymc-marketing (both sampled by nutpie) on the
same data and as close a model as the two libraries allow.

Run:  python benches/bench_fit.py [--quick] [--cases synthetic,synthetic_260x12,example,batch]
                                  [--batch-brands 50] [--batch-budget-s 900]

Cases (--cases picks a subset; fit.json / fit.md keep the stored results of the others)
  synthetic  fastmmm.synthetic.make_dataset(156, 6, seed=0): geometric adstock
             (l_max 8) + Hill, an event control, yearly seasonality 2, a linear
             trend (fastmmm's built-in one; for pymc-marketing a control column
             t = 0..1, since its MMM has no trend term).
  synthetic_260x12
             the same model on make_dataset(260, 12, seed=0); fastmmm rust and
             pymc-marketing only (no fastmmm pytensor column).
  example    /work/shared/data/mmm_example.csv (pymc-marketing's example data):
             geometric (l_max 8) + logistic, controls event_1, event_2, t,
             yearly seasonality 2 (fastmmm drops its built-in trend because the
             control t is one).
  batch      many brands: make_dataset(104, 4, seed=i), i < --batch-brands (50),
             the synthetic case's model, 2 chains x 500 draws + 500 tune (fixed,
             --quick or not). fastmmm.batch.fit_many (default executor, out= a
             temporary directory) over all brands versus pymc-marketing refitting
             brand after brand (new MMM + build_model + nutpie compile + sample)
             for as many brands as fit in --batch-budget-s (default 900 s): fits
             per minute of each and their ratio, min / median R-hat and total
             divergences over brands. Each side runs in its own fresh process.

Contenders
  fastmmm rust       MMM(spec).fit(df, backend="rust"): the fused Rust
                     log-density sampled by nuts-rs inside fastmmm's Rust core,
                     nothing compiled.
  fastmmm pytensor   MMM(spec).fit(df, backend="pytensor") (synthetic case only):
                     the PyMC model on fastmmm's Rust Ops, compiled by nutpie (numba).
  pymc-marketing     pymc_marketing.mmm.multidimensional.MMM (the classic
                     pymc_marketing.mmm.MMM is deprecated in 0.19, removal in
                     0.20), default priors. Its fit(..., nuts_sampler="nutpie")
                     is pm.sample -> nutpie.compile_pymc_model(model,
                     var_names=free RVs) -> nutpie.sample(target_accept=0.8) ->
                     pm.compute_deterministics; this script makes those same calls
                     itself so that build / compile / sample / post-processing are
                     timed separately.

Each library samples with its own default target_accept (fastmmm 0.95,
pymc-marketing/PyMC 0.8) unless --target-accept is given. All fits use the same
chains / draws / tune and seeds, save the warm-up statistics (to count its
gradient evaluations) and store the unconstrained draws (store_unconstrained),
on which the min bulk ESS and max R-hat are computed: both are rank-normalised,
so they equal those of the constrained free parameters, and they cover exactly
the parameters each sampler moves (no deterministics).

Per-evaluation cost: every compiled model's C log-density (nutpie's signature
``logp(dim, x, grad, logp, user_data)``) is called N times from one numba
@njit loop through a ctypes function type, at the coordinate-wise median of the
fit's unconstrained draws; contenders alternate in rounds and the ratio is the
median of per-round ratios. The floor section counts the floating-point
operations of one fastmmm log-density + gradient and compares the measured time
with that count at a measured FMA peak.

Isolation: every fit runs in its own fresh Python process with its own empty
PyTensor compile cache (base_compiledir: C modules and numba's on-disk cache), so
no contender reuses what another compiled, and compile times are those of the
first fit of a model structure on a machine (--warm-cache uses the normal cache;
a warm cache shortened pymc-marketing's compile by about a third and its
compute_deterministics from ~11 s to ~0.2 s here). Each worker first runs the
warm-up, not timed: imports; for the contenders that compile, a tiny PyMC model
through nutpie; its library's first Python-level calls (for fastmmm a tiny fit
with the rust backend). Workers stay alive after their fit and
take turns running the per-evaluation loop, so only one runs at a time. With
--repeats N each contender is fitted N times, the order reversed between
repeats, and the table shows medians. Results go to benches/results/fit.json
and fit.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _meta import cpu_name, quiet, versions  # noqa: E402  (benches/ is sys.path[0])

RESULTS = Path(__file__).parent / "results"
EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmm_example.csv"

RUST, PYT, PMM = "fastmmm rust", "fastmmm pytensor", "pymc-marketing"


# ---------------------------------------------------------------------- cases
def case_synthetic(weeks=156, n_channels=6, key="synthetic", contenders=(RUST, PYT, PMM)):
    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_dataset

    df, truth = make_dataset(weeks, n_channels, seed=0)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=truth.channels,
        controls=("event",),
        adstock="geometric",
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )
    pdf = df.copy()
    pdf["t"] = np.arange(len(pdf)) / (len(pdf) - 1)  # pymc-marketing has no trend term: a linear control

    def pmm_model():
        from pymc_marketing.mmm import GeometricAdstock, HillSaturation
        from pymc_marketing.mmm.multidimensional import MMM

        return MMM(
            date_column="date",
            channel_columns=list(truth.channels),
            target_column="sales",
            control_columns=["event", "t"],
            adstock=GeometricAdstock(l_max=8),
            saturation=HillSaturation(),
            yearly_seasonality=2,
        )

    return {
        "name": f"synthetic {weeks}x{n_channels} geometric+Hill",
        "key": key,
        "df": df,
        "spec": spec,
        "pmm_model": pmm_model,
        "pmm_X": pdf.drop(columns=["sales"]),
        "pmm_y": pdf["sales"],
        "contenders": list(contenders),
        "shape": [weeks, n_channels],
        "saturation": "hill",
        "l_max": 8,
    }


def case_synthetic_260x12():
    # No fastmmm pytensor column: that compile is slow at this size and says nothing new.
    return case_synthetic(260, 12, key="synthetic_260x12", contenders=(RUST, PMM))


def case_example():
    import pandas as pd

    from fastmmm.spec import ModelSpec

    df = pd.read_csv(EXAMPLE_CSV, parse_dates=["date_week"])
    spec = ModelSpec(
        date_column="date_week",
        target="y",
        channels=("x1", "x2"),
        controls=("event_1", "event_2", "t"),
        adstock="geometric",
        saturation="logistic",
        l_max=8,
        yearly_seasonality=2,
    )

    def pmm_model():
        from pymc_marketing.mmm import GeometricAdstock, LogisticSaturation
        from pymc_marketing.mmm.multidimensional import MMM

        return MMM(
            date_column="date_week",
            channel_columns=["x1", "x2"],
            target_column="y",
            control_columns=["event_1", "event_2", "t"],
            adstock=GeometricAdstock(l_max=8),
            saturation=LogisticSaturation(),
            yearly_seasonality=2,
        )

    return {
        "name": f"mmm_example.csv {len(df)}x2 geometric+logistic",
        "key": "example",
        "df": df,
        "spec": spec,
        "pmm_model": pmm_model,
        "pmm_X": df.drop(columns=["y"]),
        "pmm_y": df["y"],
        "contenders": [RUST, PMM],
        "shape": [len(df), 2],
        "saturation": "logistic",
        "l_max": 8,
    }


# ---------------------------------------------------------------------- diagnostics
def sampler_stats(post, chains):
    """Gradient evaluations, divergences, min bulk ESS and max R-hat (unconstrained draws) of a
    :class:`fastmmm.posterior.Posterior` (either backend's: ``unconstrained_draw`` in sample_stats)."""
    from fastmmm.convergence import ess_bulk, rhat

    ss = post.sample_stats
    out = {
        "grad_evals_draws": int(np.asarray(ss["n_steps"]).sum()),
        "divergences": int(np.asarray(ss["diverging"]).sum()),
    }
    warm = post.groups.get("warmup_sample_stats")
    out["grad_evals_tune"] = (
        int(np.asarray(warm["n_steps"]).sum()) if warm is not None and "n_steps" in warm else None
    )
    out["grad_evals_total"] = out["grad_evals_draws"] + (out["grad_evals_tune"] or 0)
    out["step_size"] = float(np.median(ss["step_size"])) if "step_size" in ss else None
    u = np.asarray(ss["unconstrained_draw"], dtype=float)  # (chain, draw, n_dim)
    out["ess_bulk_min"] = float(np.nanmin(ess_bulk(u)))
    out["rhat_max"] = float(np.nanmax(rhat(u))) if chains > 1 else None
    out["n_dim"] = int(u.shape[2])
    # A typical posterior point for the per-evaluation benchmark.
    out["_point"] = np.median(u.reshape(-1, u.shape[2]), axis=0)
    return out


class RustTarget:
    """The fused problem's C entry point and user data, as EvalTarget reads a nutpie model."""

    class _Addr:
        def __init__(self, v):
            self.address = v
            self.ctypes = self
            self.data = v

    def __init__(self, problem):
        self.problem = problem
        self.n_dim = int(problem.n_dim)
        self.compiled_logp_func = self._Addr(int(problem.logp_address))
        self.user_data = self._Addr(int(problem.user_data_address))


# ---------------------------------------------------------------------- fits
def fit_fastmmm(case, backend, kw, target_accept):
    """One fastmmm fit; returns its row and the compiled log-density (for the per-evaluation
    loop): the fused problem on backend "rust" (sampled in the Rust core), nutpie's compiled
    model on "pytensor"."""
    import nutpie

    from fastmmm import MMM, _core
    from fastmmm.fit import clear_compile_cache

    clear_compile_cache()  # a cold model cache: build and compile are paid
    notes: list = []
    extra = {} if target_accept is None else {"target_accept": target_accept}
    cpu, seen = {}, {}
    real_rust, real_nutpie = _core.sample_nuts, nutpie.sample

    def timed(real, key):
        def call(model, *a, **k):  # record the sampler's CPU time (all threads) and the model
            seen[key] = model
            c0 = time.process_time()
            try:
                return real(model, *a, **k)
            finally:
                cpu["sample"] = time.process_time() - c0

        return call

    _core.sample_nuts, nutpie.sample = timed(real_rust, "rust"), timed(real_nutpie, "nutpie")
    # Warm-up draws' statistics (for the gradient count) are always kept on the rust path;
    # nutpie keeps them with save_warmup.
    opts = (
        {"store_unconstrained": True}
        if backend == "rust"
        else {"save_warmup": True, "store_unconstrained": True}
    )
    try:
        with quiet(notes):
            c0, t0 = time.process_time(), time.perf_counter()
            result = MMM(case["spec"]).fit(case["df"], **kw, progress=False, backend=backend, **opts, **extra)
            wall, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    finally:
        _core.sample_nuts, nutpie.sample = real_rust, real_nutpie
    tm = result.timing
    row = {
        "backend_used": result.backend,
        "build_s": tm["build_s"],
        "compile_s": tm["compile_s"],
        "sample_s": tm["sample_s"],
        "sample_cpu_s": cpu["sample"],
        "other_s": wall - tm["build_s"] - tm["compile_s"] - tm["sample_s"],
        "total_s": wall,
        "total_cpu_s": cpu_total,
        "fastmmm_total_s": tm["total_s"],
        "target_accept": 0.95 if target_accept is None else target_accept,
        "warnings": notes,
    }
    row.update(sampler_stats(result.posterior, kw["chains"]))
    compiled = RustTarget(seen["rust"]) if result.backend == "rust" else seen["nutpie"]
    return row, compiled


def fit_pmm(case, kw, target_accept):
    import nutpie
    import pymc as pm

    notes: list = []
    ta = (
        0.8 if target_accept is None else target_accept
    )  # pm.sample's default, what pymc-marketing's fit uses
    with quiet(notes):
        c0, t0 = time.process_time(), time.perf_counter()
        mmm = case["pmm_model"]()
        mmm.build_model(case["pmm_X"], case["pmm_y"])
        t1 = time.perf_counter()
        var_names = [v.name for v in mmm.model.free_RVs]
        compiled = nutpie.compile_pymc_model(mmm.model, var_names=var_names, backend="numba")
        t2 = time.perf_counter()
        c2 = time.process_time()
        idata = nutpie.sample(
            compiled,
            draws=kw["draws"],
            tune=kw["tune"],
            chains=kw["chains"],
            seed=kw["seed"],
            target_accept=ta,
            progress_bar=False,
            save_warmup=True,
            store_unconstrained=True,
        )
        t3 = time.perf_counter()
        c3 = time.process_time()
        with mmm.model:
            idata.posterior = pm.compute_deterministics(
                idata.posterior, merge_dataset=True, progressbar=False
            )
        t4, c4 = time.perf_counter(), time.process_time()
    row = {
        "backend_used": "pymc (nutpie numba)",
        "build_s": t1 - t0,
        "compile_s": t2 - t1,
        "sample_s": t3 - t2,
        "sample_cpu_s": c3 - c2,
        "other_s": t4 - t3,
        "total_s": t4 - t0,
        "total_cpu_s": c4 - c0,
        "target_accept": ta,
        "warnings": notes,
    }
    from fastmmm.posterior import Posterior

    row.update(sampler_stats(Posterior.from_arviz(idata), kw["chains"]))
    return row, compiled


# ---------------------------------------------------------------------- per-evaluation cost
def make_caller(address: int, ret):
    """An @njit loop calling the C log-density at ``address`` n times (pointers passed as integers)."""
    import numba

    u64 = ctypes.c_uint64
    fn = ctypes.CFUNCTYPE(ret, u64, u64, u64, u64, u64)(address)

    @numba.njit(nogil=True)
    def loop(n, dim, xp, gp, lpp, ud):
        bad = 0
        for _ in range(n):
            if fn(dim, xp, gp, lpp, ud) != 0:
                bad += 1
        return bad

    return loop, fn


class EvalTarget:
    """A compiled model's C log-density, callable n times from numba at a fixed point."""

    def __init__(self, compiled, point, ret):
        self.compiled = compiled  # keeps the user data alive
        self.dim = int(compiled.n_dim)
        self.x = np.ascontiguousarray(point, dtype=np.float64)
        assert self.x.shape == (self.dim,)
        self.g = np.zeros(self.dim)
        self.lp = np.zeros(1)
        self.ud = int(compiled.user_data.ctypes.data)
        self.loop, _ = make_caller(int(compiled.compiled_logp_func.address), ret)
        self.args = (self.dim, self.x.ctypes.data, self.g.ctypes.data, self.lp.ctypes.data, self.ud)
        bad = self.loop(1, *self.args)
        if bad or not np.isfinite(self.lp[0]) or not np.isfinite(self.g).all():
            raise RuntimeError(f"log-density call failed at the benchmark point (logp {self.lp[0]})")

    def run(self, n):
        return self.loop(n, *self.args)

    def calibrate(self, min_time):
        """Calls per batch so that a batch lasts at least ``min_time`` seconds."""
        self.run(10)
        n = 16
        while True:
            t0 = time.perf_counter()
            self.run(n)
            if time.perf_counter() - t0 > min_time:
                return n
            n *= 2

    def time_us(self, n):
        """(wall, thread CPU) microseconds per call over a batch of n calls."""
        c0, t0 = time.thread_time(), time.perf_counter()
        bad = self.run(n)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if bad:
            raise RuntimeError(f"{bad} of {n} log-density calls failed")
        return dt / n * 1e6, dc / n * 1e6


def per_eval(workers: dict, min_time: float, rounds: int):
    """Microseconds per call of each worker's log-density, workers taking turns (only one
    runs at a time): per-round thread CPU times and wall times."""
    calls = {k: w.request({"cmd": "calibrate", "min_time": min_time})["n"] for k, w in workers.items()}
    cpu = {k: [] for k in workers}
    wall = {k: [] for k in workers}
    for _ in range(rounds):
        for k, w in workers.items():
            wall_us, cpu_us = w.request({"cmd": "time", "n": calls[k]})["us"]
            wall[k].append(wall_us)
            cpu[k].append(cpu_us)
    return cpu, wall


# ---------------------------------------------------------------------- floor
def measure_peak(seconds: float = 0.3):
    """Single-core double-precision FMA throughput (GFLOP/s): 64 independent chains
    that LLVM vectorises (AVX-512/AVX2 FMA), and 8 scalar chains without fastmath."""
    import numba

    @numba.njit(fastmath=True)
    def vec(acc, reps, a, b):
        for _ in range(reps):
            for j in range(64):
                acc[j] = acc[j] * a + b
        return acc.sum()

    @numba.njit
    def scalar(reps, a, b):
        x0, x1, x2, x3, x4, x5, x6, x7 = 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7
        for _ in range(reps):
            x0 = x0 * a + b
            x1 = x1 * a + b
            x2 = x2 * a + b
            x3 = x3 * a + b
            x4 = x4 * a + b
            x5 = x5 * a + b
            x6 = x6 * a + b
            x7 = x7 * a + b
        return x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7

    acc = np.ones(64)
    vec(acc, 10, 0.999999, 1e-7)
    scalar(10, 0.999999, 1e-7)
    best_v = best_s = 0.0
    for _ in range(5):
        reps = max(1, int(seconds / 5 * 120e9 / 128))
        t0 = time.perf_counter()
        vec(acc, reps, 0.999999, 1e-7)
        best_v = max(best_v, 2 * 64 * reps / (time.perf_counter() - t0) / 1e9)
        reps_s = max(1, int(seconds / 5 * 10e9 / 16))
        t0 = time.perf_counter()
        scalar(reps_s, 0.999999, 1e-7)
        best_s = max(best_s, 2 * 8 * reps_s / (time.perf_counter() - t0) / 1e9)
    return best_v, best_s


def nominal_ghz():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1e3
    except OSError:
        pass
    return None


FLOP_CONVENTION = (
    "add/sub/mul/div = 1 flop, FMA = 2, exp and ln = 20 each (the order of their polynomial "
    "evaluations in rust/kernels/fastmath.rs; Hill's on AVX-512, rust/kernels/hill512.rs, are of "
    "degree 7 and 10 after a table lookup), compares/selects/max/table lookups = 0; per-element counts follow "
    "rust/logp.rs and rust/kernels/fused.rs (forward caches the saturation partials, backward has no exp/ln)"
)


def flop_count(t, c, l_max, f, k, n_dim, saturation="hill"):
    """Floating-point operations of one fastmmm log-density + gradient (see FLOP_CONVENTION)."""
    EXP = LN = 20
    sat_fwd = {
        # r = ln x - ln k; nr = s r; a = exp(-|nr|); 1/(1+a); y = num r; d = a r r; dx = s d / x; ds = d r; dk = -s d / k
        "hill": LN + 1 + 1 + EXP + 1 + 1 + 1 + 2 + 2 + 1 + 2,
        # e = exp(-lam x); r = 1/(1+e); y = (1-e) r; d = 2 e r r; dx = lam d; dlam = x d
        "logistic": 1 + EXP + 1 + 1 + 2 + 3 + 1 + 1,
    }[saturation]
    sat_bwd = {"hill": 1 + 2 + 2, "logistic": 1 + 2}[saturation]  # g*dx, dot(g, d0) (, dot(g, d1))
    per_elem = {
        "adstock forward (2 l_max)": 2 * l_max,
        f"{saturation} forward + cached partials": sat_fwd,
        "channel means, contributions, media sum": 3,
        "backward: beta grad, dmedia, centring": 4,
        f"{saturation} VJP from cache": sat_bwd,
        "adstock VJP (l_max dots, 2 l_max)": 2 * l_max,
    }
    per_t = {
        "mean function (level, trend, Fourier, controls)": 3 + 2 * f + 2 * k,
        "Normal likelihood + d/dmu, d/dsigma": 11,
        "backward through mean function": 4 + 2 * f + 2 * k,
    }
    per_param = 30  # transform (exp/logistic) + prior kernel + Jacobian + chain rule, amortised
    parts = {name: v * t * c for name, v in per_elem.items()}
    parts.update({name: v * t for name, v in per_t.items()})
    parts["adstock weights and their derivatives"] = 4 * l_max * c
    parts["parameter transforms and priors"] = per_param * n_dim
    return int(sum(parts.values())), parts


# ---------------------------------------------------------------------- report
def fmt(v, spec):
    if v is None:
        return "n/a"
    if isinstance(v, float) and not np.isfinite(v):
        return "n/a"
    return format(v, spec)


METRICS = [
    ("build (s)", "build_s", ".2f"),
    ("compile (s)", "compile_s", ".2f"),
    ("sample (s)", "sample_s", ".2f"),
    ("other: data prep + post-processing (s)", "other_s", ".2f"),
    ("total wall (s)", "total_s", ".2f"),
    ("total CPU, all threads (s)", "total_cpu_s", ".2f"),
    ("log-density+gradient, thread CPU (us/eval)", "us_per_eval", ".2f"),
    ("log-density+gradient, wall (us/eval)", "us_per_eval_wall", ".2f"),
    ("log-density+gradient, wall, best round (us/eval)", "us_per_eval_wall_best", ".2f"),
    ("sampling CPU per gradient eval (us)", "us_cpu_per_grad_in_sampler", ".1f"),
    ("share of sampling CPU in log-density evals", "logp_share_of_sampling", ".2f"),
    ("gradient evals, draws (sum n_steps)", "grad_evals_draws", ",d"),
    ("gradient evals, incl. tuning", "grad_evals_total", ",d"),
    ("min bulk ESS", "ess_bulk_min", ".0f"),
    ("ESS / s (total wall)", "ess_per_s", ".1f"),
    ("ESS / s (sampling only)", "ess_per_sample_s", ".1f"),
    ("max R-hat", "rhat_max", ".3f"),
    ("divergences", "divergences", "d"),
    ("unconstrained parameters", "n_dim", "d"),
    ("target_accept", "target_accept", ".2f"),
]


def summarise(reps: list[dict]) -> dict:
    """Median over repeats of every numeric field."""
    out = {}
    for key in reps[0]:
        vals = [r[key] for r in reps]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            m = statistics.median(vals)
            out[key] = round(m) if all(isinstance(v, int) for v in vals) else float(m)
        else:
            out[key] = vals[-1]
    return out


def case_table(case_row: dict) -> str:
    cols = case_row["contenders"]
    s = case_row["summary"]
    fm = [c for c in cols if c != PMM]
    head = (
        "| metric | "
        + " | ".join(cols)
        + " | "
        + " | ".join(f"{c.split()[-1]} / pymc-marketing" for c in fm)
        + " |"
    )
    lines = [head, "|" + "---|" * (1 + len(cols) + len(fm))]
    for label, key, spec in METRICS:
        vals = [s[c].get(key) for c in cols]
        cells = [fmt(v, spec) for v in vals]
        ratios = []
        for c in fm:
            a, b = s[c].get(key), s[PMM].get(key)
            if key == "us_per_eval" and case_row.get("eval_ratio", {}).get(c) is not None:
                ratios.append(f"{case_row['eval_ratio'][c]:.3f}")  # median of per-round ratios
            elif (
                isinstance(a, (int, float))
                and isinstance(b, (int, float))
                and b
                and key not in ("n_dim", "target_accept")
            ):
                ratios.append(f"{a / b:.3g}")
            else:
                ratios.append("")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- batch case
BATCH_WEEKS, BATCH_CHANNELS, BATCH_DRAWS, BATCH_TUNE, BATCH_CHAINS, BATCH_SEED = (
    104,
    4,
    500,
    500,
    2,
    1,
)


def batch_data(n_brands: int):
    """Long frame of n_brands synthetic brands (make_dataset(104, 4, seed=i)), the fastmmm spec
    (geometric l_max 8 + Hill, event control, yearly seasonality 2, built-in trend) and a
    pymc-marketing MMM factory (same, with a control column t for the trend)."""
    import pandas as pd

    from fastmmm.spec import ModelSpec
    from fastmmm.synthetic import make_dataset

    parts, channels = [], None
    for i in range(n_brands):
        d, truth = make_dataset(BATCH_WEEKS, BATCH_CHANNELS, seed=i)
        channels = truth.channels
        d.insert(0, "brand", f"brand{i:02d}")
        parts.append(d)
    df = pd.concat(parts, ignore_index=True)
    spec = ModelSpec(
        date_column="date",
        target="sales",
        channels=channels,
        controls=("event",),
        adstock="geometric",
        saturation="hill",
        l_max=8,
        yearly_seasonality=2,
    )

    def pmm_model():
        from pymc_marketing.mmm import GeometricAdstock, HillSaturation
        from pymc_marketing.mmm.multidimensional import MMM

        return MMM(
            date_column="date",
            channel_columns=list(channels),
            target_column="sales",
            control_columns=["event", "t"],
            adstock=GeometricAdstock(l_max=8),
            saturation=HillSaturation(),
            yearly_seasonality=2,
        )

    return df, spec, pmm_model


def _pmm_brand_xy(g):
    g = g.drop(columns=["brand"]).reset_index(drop=True)
    g["t"] = np.arange(len(g)) / (len(g) - 1)
    return g.drop(columns=["sales"]), g["sales"]


def batch_worker(cfg: dict) -> dict:
    """One side of the batch case in this (fresh) process: fastmmm fit_many over all brands, or
    pymc-marketing refitting brand after brand until the budget is spent."""
    import nutpie
    import pymc as pm

    from fastmmm.batch import brand_seed

    df, spec, pmm_model = batch_data(cfg["brands"])
    kw = {"draws": BATCH_DRAWS, "tune": BATCH_TUNE, "chains": BATCH_CHAINS}
    notes: list = []
    t_w = time.perf_counter()
    if cfg["contender"] == PMM:
        # Warm-up (untimed), as for the fit cases: a tiny PyMC model through nutpie, the
        # pymc-marketing import and one model build.
        with quiet(notes):
            with pm.Model() as tiny:
                a = pm.Normal("a", shape=3)
                s = pm.HalfNormal("s")
                pm.Normal("obs", a.sum(), s, observed=np.arange(5.0))
            nutpie.sample(
                nutpie.compile_pymc_model(tiny, backend="numba"),
                draws=20,
                tune=20,
                chains=1,
                progress_bar=False,
            )
            g0 = next(iter(df.groupby("brand", sort=False)))[1]
            pmm_model().build_model(*_pmm_brand_xy(g0))
        warmup_s = time.perf_counter() - t_w
        budget = float(cfg["budget_s"])
        per = []
        t0, c0 = time.perf_counter(), time.process_time()
        for b, g in df.groupby("brand", sort=False):
            elapsed = time.perf_counter() - t0
            if per and elapsed + statistics.mean(p["total_s"] for p in per) > budget:
                break  # the next fit would (at the mean pace) end past the budget
            X, y = _pmm_brand_xy(g)
            with quiet(notes):
                t1 = time.perf_counter()
                mmm = pmm_model()
                mmm.build_model(X, y)
                t2 = time.perf_counter()
                compiled = nutpie.compile_pymc_model(
                    mmm.model, var_names=[v.name for v in mmm.model.free_RVs], backend="numba"
                )
                t3 = time.perf_counter()
                idata = nutpie.sample(
                    compiled,
                    **kw,
                    seed=brand_seed(BATCH_SEED, b),
                    target_accept=0.8,
                    progress_bar=False,
                    store_unconstrained=True,
                )
                t4 = time.perf_counter()
            from fastmmm.posterior import Posterior

            st = sampler_stats(Posterior.from_arviz(idata), BATCH_CHAINS)
            per.append(
                {
                    "brand": b,
                    "build_s": t2 - t1,
                    "compile_s": t3 - t2,
                    "sample_s": t4 - t3,
                    "total_s": t4 - t1,
                    "rhat_max": st["rhat_max"],
                    "ess_bulk_min": st["ess_bulk_min"],
                    "divergences": st["divergences"],
                }
            )
            print(
                f"pymc-marketing {b}: {t4 - t1:.1f} s, R-hat {st['rhat_max']:.3f}, "
                f"divergences {st['divergences']}",
                flush=True,
            )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "warmup_s": warmup_s,
            "budget_s": budget,
            "per_brand": per,
            "warnings": notes[:20],
        }

    from fastmmm import MMM
    from fastmmm.batch import fit_many
    from fastmmm.fit import clear_compile_cache
    from fastmmm.synthetic import make_dataset

    # Warm-up (untimed): imports and fastmmm's first Python-level calls (a tiny fit of another
    # shape); its compiled model is dropped, so fit_many compiles for the batch's shape.
    with quiet(notes):
        d, _ = make_dataset(52, BATCH_CHANNELS, seed=12345)
        MMM(spec).fit(d, draws=20, tune=20, chains=1, seed=0, progress=False, backend="rust")
        clear_compile_cache()
    warmup_s = time.perf_counter() - t_w
    out = tempfile.mkdtemp(prefix="bench_fit_batch_")
    try:
        with quiet(notes):
            t0, c0 = time.perf_counter(), time.process_time()
            index = fit_many(df, by="brand", spec=spec, out=out, progress=False, seed=BATCH_SEED, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    per = []
    for _, r in index.iterrows():
        per.append(
            {
                "brand": r["brand"],
                "status": r["status"],
                "error": r["error"] or "",
                "build_s": r["build_s"],
                "compile_s": r["compile_s"],
                "sample_s": r["sample_s"],
                "total_s": r["total_s"],
                "write_s": r["write_s"],
                "rhat_max": r["rhat_max"],
                "ess_bulk_min": r["ess_bulk_min"],
                "divergences": r["divergences"],
                "backend": r["backend"],
            }
        )

    def plain(v):  # JSON-safe: numpy scalars to Python, NaN to None
        v = v.item() if isinstance(v, np.generic) else v
        return None if isinstance(v, float) and not np.isfinite(v) else v

    per = [{k: plain(v) for k, v in p.items()} for p in per]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "warmup_s": warmup_s,
        "per_brand": per,
        "executor": "local (default)",
        "cpus": os.cpu_count(),
        "warnings": notes[:20],
    }


def _batch_summary(side: dict) -> dict:
    per = [p for p in side["per_brand"] if p.get("status", "ok") == "ok"]
    n = len(per)
    rh = [p["rhat_max"] for p in per if p.get("rhat_max") is not None]

    def med(k):
        vals = [p.get(k) for p in per]
        return statistics.median(vals) if vals and None not in vals else None

    return {
        "brands": n,
        "brands_failed": len(side["per_brand"]) - n,
        "wall_s": side["wall_s"],
        "cpu_s": side["cpu_s"],
        "fits_per_min": 60 * n / side["wall_s"] if side["wall_s"] > 0 else None,
        "wall_per_brand_s": side["wall_s"] / n if n else None,
        "median_build_s": med("build_s"),
        "median_compile_s": med("compile_s"),
        "first_compile_s": per[0]["compile_s"] if per else None,
        "brands_compiled": sum(1 for p in per if (p.get("compile_s") or 0) > 0),
        "median_sample_s": med("sample_s"),
        "rhat_min": min(rh) if rh else None,
        "rhat_median": statistics.median(rh) if rh else None,
        "rhat_max": max(rh) if rh else None,
        "brands_rhat_over_1_01": sum(1 for r in rh if r > 1.01),
        "divergences_total": int(sum(p["divergences"] or 0 for p in per)),
        "brands_with_divergences": sum(1 for p in per if (p["divergences"] or 0) > 0),
        "ess_bulk_min_median": med("ess_bulk_min"),
    }


def run_batch_case(args):
    """The batch case: both sides in fresh worker processes (own empty PyTensor caches), in turn."""
    sides, versions = {}, {}
    for c, label in ((RUST, "fastmmm fit_many"), (PMM, "pymc-marketing, one refit per brand")):
        print(f"\n== batch: {label} ...", flush=True)
        cfg = {
            "case": "batch",
            "contender": c,
            "brands": args.batch_brands,
            "budget_s": args.batch_budget_s,
        }
        w = Worker(cfg, args.warm_cache)
        try:
            msg = w.read()
        finally:
            w.close()
        sides[c] = msg["row"]
        versions = versions or msg["versions"]
        s = _batch_summary(sides[c])
        print(
            f"   {s['brands']} brands in {s['wall_s']:.1f} s: {s['fits_per_min']:.2f} fits/min; R-hat "
            f"min/median/max {s['rhat_min']:.3f}/{s['rhat_median']:.3f}/{s['rhat_max']:.3f}; "
            f"divergences {s['divergences_total']}",
            flush=True,
        )
    summary = {
        "fastmmm fit_many": _batch_summary(sides[RUST]),
        "pymc-marketing": _batch_summary(sides[PMM]),
    }
    a, b = summary["fastmmm fit_many"]["fits_per_min"], summary["pymc-marketing"]["fits_per_min"]
    row = {
        "case": (
            f"batch: {args.batch_brands} brands x {BATCH_WEEKS} weeks x {BATCH_CHANNELS} channels, "
            "geometric+Hill, fit_many vs pymc-marketing refits"
        ),
        "key": "batch",
        "run": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "brands": args.batch_brands,
            "weeks": BATCH_WEEKS,
            "channels": BATCH_CHANNELS,
            "chains": BATCH_CHAINS,
            "draws": BATCH_DRAWS,
            "tune": BATCH_TUNE,
            "seed": BATCH_SEED,
            "pmm_budget_s": args.batch_budget_s,
            "cores": os.cpu_count(),
            "pytensor_cache": "normal (warm)" if args.warm_cache else "empty, one per side",
            "target_accept": "library defaults (fastmmm 0.95, pymc-marketing 0.8)",
        },
        "summary": summary,
        "fits_per_min_ratio": a / b if a and b else None,
        "per_brand": {
            "fastmmm fit_many": sides[RUST]["per_brand"],
            "pymc-marketing": sides[PMM]["per_brand"],
        },
        "warmup_s": {
            "fastmmm fit_many": sides[RUST]["warmup_s"],
            "pymc-marketing": sides[PMM]["warmup_s"],
        },
        "warnings": {
            "fastmmm fit_many": sides[RUST]["warnings"],
            "pymc-marketing": sides[PMM]["warnings"],
        },
    }
    return row, versions


BATCH_METRICS = [
    ("brands fitted", "brands", "d"),
    ("brands failed", "brands_failed", "d"),
    ("wall (s)", "wall_s", ".1f"),
    ("CPU, all threads (s)", "cpu_s", ".1f"),
    ("fits per minute", "fits_per_min", ".2f"),
    ("wall per brand (s)", "wall_per_brand_s", ".2f"),
    ("median build per brand (s)", "median_build_s", ".2f"),
    ("median compile per brand (s)", "median_compile_s", ".2f"),
    ("first brand's compile (s)", "first_compile_s", ".2f"),
    ("brands that compiled", "brands_compiled", "d"),
    ("median sample per brand (s)", "median_sample_s", ".2f"),
    ("R-hat (per-brand max): min over brands", "rhat_min", ".3f"),
    ("R-hat (per-brand max): median over brands", "rhat_median", ".3f"),
    ("R-hat (per-brand max): max over brands", "rhat_max", ".3f"),
    ("brands with R-hat > 1.01", "brands_rhat_over_1_01", "d"),
    ("divergences, total over brands", "divergences_total", "d"),
    ("brands with divergences", "brands_with_divergences", "d"),
    ("min bulk ESS: median over brands", "ess_bulk_min_median", ".0f"),
]


def batch_table(row: dict) -> str:
    f, p = row["summary"]["fastmmm fit_many"], row["summary"]["pymc-marketing"]
    lines = [
        "| metric | fastmmm fit_many | pymc-marketing (refit per brand) | fastmmm / pymc-marketing |",
        "|---|---|---|---|",
    ]
    for label, key, spec in BATCH_METRICS:
        a, b = f.get(key), p.get(key)
        ratio = ""
        if key in ("fits_per_min", "wall_per_brand_s", "median_sample_s") and a and b:
            ratio = f"{a / b:.3g}"
        lines.append(f"| {label} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio} |")
    return "\n".join(lines)


def batch_md(row: dict) -> str:
    r = row["run"]
    ratio = row.get("fits_per_min_ratio")
    return (
        f"Run {r['date']}: {r['brands']} brands (make_dataset({r['weeks']}, {r['channels']}, seed=i), "
        f"i = 0..{r['brands'] - 1}), {r['chains']} chains x {r['draws']} draws + {r['tune']} tune "
        f"(fixed for this case, --quick or not), per-brand seeds brand_seed({r['seed']}, brand) on both "
        f"sides; {r['cores']} cores; target_accept: {r['target_accept']}; PyTensor compile cache: "
        f"{r['pytensor_cache']}.\n\n"
        "fastmmm: `fit_many(df, by='brand', spec, out=<temp dir>)`, default executor (a local process "
        "pool of cpu_count // chains workers, or in-process when that is one), all brands, outputs "
        "written (summary.json, contributions.csv, saved model, run.json, index.csv). "
        "pymc-marketing: per brand a new `MMM(...)`, `build_model`, `nutpie.compile_pymc_model` "
        "(numba) and `nutpie.sample`, no `compute_deterministics` and nothing written; brands in "
        f"order until the next fit would end past the budget of {r['pmm_budget_s']:.0f} s (at the "
        "mean pace so far). Both sides run in a fresh process after an untimed warm-up (imports; "
        "pymc-marketing: a tiny PyMC model through nutpie and one model build; fastmmm: a tiny fit of "
        "another shape, its compiled model dropped). R-hat: fastmmm's per-brand `rhat_max` from its "
        "index (its diagnostics over the model parameters); pymc-marketing's is the max rank-normalised "
        "R-hat over the unconstrained draws.\n\n"
        + batch_table(row)
        + (
            f"\n\nThroughput ratio (fits per minute, fastmmm / pymc-marketing): **{ratio:.1f}x**\n"
            if ratio
            else "\n"
        )
    )


# ---------------------------------------------------------------------- worker process
CASES = {
    "synthetic": case_synthetic,
    "synthetic_260x12": case_synthetic_260x12,
    "example": case_example,
}
# key -> (title, contenders, saturation): the fit cases; "batch" is separate (see run_batch_case)
CASE_INFO = {
    "synthetic": ("synthetic 156x6 geometric+Hill", [RUST, PYT, PMM], "hill"),
    "synthetic_260x12": ("synthetic 260x12 geometric+Hill", [RUST, PMM], "hill"),
    "example": ("mmm_example.csv geometric+logistic", [RUST, PMM], "logistic"),
}
CASE_ORDER = ["synthetic", "synthetic_260x12", "example", "batch"]


def _versions():
    return versions("numba")


def worker_main(cfg: dict) -> None:
    """Fit one contender on one case, report, then serve per-evaluation timing requests.

    Protocol: one JSON object per line on stdin (requests) and on the original
    stdout (replies); everything else the libraries print goes to stderr.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        if cfg["case"] == "batch":
            row = batch_worker(cfg)
            reply({"row": row, "dims": None, "versions": _versions()})
            return
        t0 = time.perf_counter()
        import nutpie
        import pymc as pm

        case = CASES[cfg["case"]]()
        contender = cfg["contender"]
        notes: list = []
        # Warm-up: imports and first-call costs: for the contenders that compile, a tiny PyMC
        # model through nutpie's numba backend (identical for each); then the contender's own
        # Python-level first calls (for fastmmm a tiny fit with the rust backend).
        with quiet(notes):
            if contender != RUST:
                with pm.Model() as tiny:
                    a = pm.Normal("a", shape=3)
                    s = pm.HalfNormal("s")
                    pm.Normal("obs", a.sum(), s, observed=np.arange(5.0))
                nutpie.sample(
                    nutpie.compile_pymc_model(tiny, backend="numba"),
                    draws=20,
                    tune=20,
                    chains=1,
                    progress_bar=False,
                )
            if contender == PMM:
                import pymc_marketing.mmm.multidimensional  # noqa: F401

                case["pmm_model"]().build_model(case["pmm_X"], case["pmm_y"])
            else:
                from fastmmm import MMM

                MMM(case["spec"]).fit(
                    case["df"], draws=20, tune=20, chains=1, seed=0, progress=False, backend="rust"
                )
        warmup_s = time.perf_counter() - t0

        kw = {k: cfg[k] for k in ("draws", "tune", "chains", "seed")}
        if contender == PMM:
            row, compiled = fit_pmm(case, kw, cfg["target_accept"])
        else:
            row, compiled = fit_fastmmm(
                case, "rust" if contender == RUST else "pytensor", kw, cfg["target_accept"]
            )
        point = row.pop("_point")
        row["warmup_s"] = warmup_s
        dims = None
        if contender == RUST:
            from fastmmm.data import prepare

            d = prepare(case["df"], case["spec"])
            t_, c_ = np.asarray(d.spend_scaled).shape
            dims = {
                "T": int(t_),
                "C": int(c_),
                "F": int(np.asarray(d.fourier).shape[1]),
                "K": int(np.asarray(d.controls_scaled).shape[1]),
                "n_dim": int(compiled.n_dim),
            }
        if not cfg["serve"]:
            reply({"row": row, "dims": dims, "versions": _versions()})
            return
        target = EvalTarget(compiled, point, ctypes.c_int if contender == RUST else ctypes.c_int64)
        if contender == RUST:  # the C entry point and the Python method agree
            lp_py, g_py = compiled.problem.logp_dlogp(target.x)  # RustTarget.problem: the MmmProblem
            np.testing.assert_allclose(target.lp[0], lp_py, rtol=1e-12)
            np.testing.assert_allclose(target.g, g_py, rtol=1e-12, atol=1e-12)
        reply({"row": row, "dims": dims, "versions": _versions()})
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "calibrate":
                reply({"n": target.calibrate(msg["min_time"])})
            elif msg["cmd"] == "time":
                reply({"us": target.time_us(msg["n"])})
            else:
                break
    except BaseException as e:  # noqa: BLE001 - reported to the driver, which raises
        import traceback

        traceback.print_exc()
        reply({"error": f"{type(e).__name__}: {e}"})


class Worker:
    """A worker process (fresh interpreter; in cold-cache mode its own empty PyTensor cache)."""

    def __init__(self, cfg: dict, warm_cache: bool):
        env = dict(os.environ)
        self.cache_dir = None
        if not warm_cache:
            self.cache_dir = tempfile.mkdtemp(prefix="bench_fit_pytensor_")
            flags = env.get("PYTENSOR_FLAGS", "")
            env["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"base_compiledir={self.cache_dir}"]))
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            "w+", prefix="bench_fit_worker_", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"worker died (exit {self.proc.returncode}):\n{self._log_tail()}")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"worker failed: {msg['error']}\n{self._log_tail()}")
        return msg

    def request(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def _log_tail(self, n=4000):
        self.log.flush()
        return Path(self.log.name).read_text()[-n:]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)
        if self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


# ---------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fit cases: 2 x 300 draws + 300 tune (the batch case keeps 2 x 500 + 500)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="fits per contender (default 1)")
    ap.add_argument(
        "--cases",
        default="synthetic,synthetic_260x12,example,batch",
        help="comma list of: synthetic, synthetic_260x12, example, batch (default all); results of "
        "cases not run are kept in fit.json / fit.md",
    )
    ap.add_argument("--batch-brands", type=int, default=50, help="batch case: brands (default 50)")
    ap.add_argument(
        "--batch-budget-s",
        type=float,
        default=900.0,
        help="batch case: time budget of pymc-marketing's per-brand refits (default 900 s)",
    )
    ap.add_argument(
        "--target-accept", type=float, default=None, help="same target_accept for every contender"
    )
    ap.add_argument(
        "--warm-cache",
        action="store_true",
        help="use PyTensor's normal compile cache instead of fresh empty ones",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))

    t_run = time.perf_counter()
    chains, draws, tune = (2, 300, 300) if args.quick else (2, 1000, 1000)
    repeats = max(1, args.repeats)
    min_time, rounds = (0.03, 9) if args.quick else (0.1, 21)
    case_keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in case_keys if k not in CASE_ORDER]
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)} (known: {', '.join(CASE_ORDER)})")
    if "example" in case_keys and not EXAMPLE_CSV.exists():
        print(
            f"skipping case 'example': {EXAMPLE_CSV} not found (../shared/data beside the repo)", flush=True
        )
        case_keys.remove("example")
    contenders = {k: v[1] for k, v in CASE_INFO.items()}
    peaks = [measure_peak()]
    print(
        f"FMA peak, one core: {peaks[0][0]:.1f} GFLOP/s vectorised, {peaks[0][1]:.1f} GFLOP/s scalar",
        flush=True,
    )

    results, versions = [], {}
    run_info = {
        "chains": chains,
        "draws": draws,
        "tune": tune,
        "repeats": repeats,
        "quick": args.quick,
        "target_accept": args.target_accept or "library defaults (fastmmm 0.95, pymc-marketing 0.8)",
        "pytensor_cache": "normal (warm)" if args.warm_cache else "empty, one per fit",
    }
    for key in case_keys:
        if key == "batch":
            row, v = run_batch_case(args)
            versions = versions or v
            results.append(row)
            continue
        info = CASE_INFO[key][0]
        print(f"\n== {info}", flush=True)
        reps = {c: [] for c in contenders[key]}
        dims = None
        workers: dict = {}
        try:
            for r in range(repeats):
                last = r == repeats - 1
                order = contenders[key] if r % 2 == 0 else contenders[key][::-1]
                for c in order:
                    cfg = {
                        "case": key,
                        "contender": c,
                        "draws": draws,
                        "tune": tune,
                        "chains": chains,
                        "seed": 1 + r,
                        "target_accept": args.target_accept,
                        "serve": last,
                    }
                    print(f"  fit {r + 1}/{repeats}: {c} ...", end="", flush=True)
                    w = Worker(cfg, args.warm_cache)
                    try:
                        msg = w.read()
                    except BaseException:
                        w.close()
                        raise
                    if last:
                        workers[c] = w
                    else:
                        w.close()
                    row = msg["row"]
                    versions = versions or msg["versions"]
                    dims = dims or msg["dims"]
                    reps[c].append(row)
                    print(
                        f" build {row['build_s']:.2f} s, compile {row['compile_s']:.2f} s, sample {row['sample_s']:.2f} s, "
                        f"other {row['other_s']:.2f} s, total {row['total_s']:.2f} s; min ESS {row['ess_bulk_min']:.0f}, "
                        f"divergences {row['divergences']}",
                        flush=True,
                    )
            # Per-evaluation cost: the last repeat's models, one worker running at a time, in turns.
            workers = {c: workers[c] for c in contenders[key]}
            per, per_wall = per_eval(workers, min_time, rounds)
            med = {k: statistics.median(v) for k, v in per.items()}
        finally:
            for w in workers.values():
                w.close()
        eval_ratio = {c: statistics.median(a / b for a, b in zip(per[c], per[PMM])) for c in per if c != PMM}
        summary = {}
        for c in contenders[key]:
            s = summarise(reps[c])
            s["us_per_eval"] = med[c]
            s["us_per_eval_wall"] = statistics.median(per_wall[c])
            s["us_per_eval_wall_best"] = min(per_wall[c])
            s["us_cpu_per_grad_in_sampler"] = s["sample_cpu_s"] * 1e6 / s["grad_evals_total"]
            s["logp_share_of_sampling"] = s["us_per_eval"] / s["us_cpu_per_grad_in_sampler"]
            s["ess_per_s"] = s["ess_bulk_min"] / s["total_s"]
            s["ess_per_sample_s"] = s["ess_bulk_min"] / s["sample_s"]
            summary[c] = s
        name = (
            info
            if dims is None
            else info.replace("mmm_example.csv", f"mmm_example.csv {dims['T']}x{dims['C']}")
        )
        row = {
            "case": name,
            "key": key,
            "contenders": contenders[key],
            "summary": summary,
            "repeats": reps,
            "eval_us_rounds_thread_cpu": per,
            "eval_us_rounds_wall": per_wall,
            "eval_ratio": eval_ratio,
        }
        row["run"] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), **run_info}
        if dims is not None:
            row["floor"] = {
                "dims": dims,
                "saturation": CASE_INFO[key][2],
                "l_max": 8,
            }
        results.append(row)

    # Floor: flops of one fastmmm log-density + gradient at the measured peaks (best of two measurements).
    peaks.append(measure_peak())
    peak_v, peak_s = max(p[0] for p in peaks), max(p[1] for p in peaks)
    ghz = nominal_ghz()
    for row in results:
        if "floor" not in row:
            continue
        fl, d = row["floor"], row["floor"]["dims"]
        flops, parts = flop_count(d["T"], d["C"], fl["l_max"], d["F"], d["K"], d["n_dim"], fl["saturation"])
        us, best = (
            row["summary"][RUST]["us_per_eval"],
            row["summary"][RUST]["us_per_eval_wall_best"],
        )
        floor_v, floor_s = flops / (peak_v * 1e3), flops / (peak_s * 1e3)
        fl.update(
            flops=flops,
            parts=parts,
            convention=FLOP_CONVENTION,
            peak_gflops_vector=peak_v,
            peak_gflops_scalar=peak_s,
            floor_us_vector_peak=floor_v,
            floor_us_scalar_peak=floor_s,
            nominal_ghz=ghz,
            floor_us_1flop_per_cycle=flops / (ghz * 1e3) if ghz else None,
            measured_us=us,
            measured_us_best_round=best,
            measured_over_floor_vector=us / floor_v,
            best_over_floor_vector=best / floor_v,
            measured_over_floor_scalar=us / floor_s,
            measured_over_floor_1flop_per_cycle=us / (flops / (ghz * 1e3)) if ghz else None,
            achieved_gflops=flops / (us * 1e3),
            pymc_marketing_over_floor_vector=row["summary"][PMM]["us_per_eval"] / floor_v,
        )
    for row in results:
        print(f"\n## {row['case']}\n")
        print(batch_table(row) if row["key"] == "batch" else case_table(row))
        if "floor" in row:
            fl = row["floor"]
            print(
                f"\nfloor: {fl['flops']:,} flops = {fl['floor_us_vector_peak']:.2f} us at {peak_v:.0f} GFLOP/s "
                f"(vector FMA peak), {fl['floor_us_scalar_peak']:.2f} us at {peak_s:.1f} GFLOP/s (scalar); "
                f"measured {fl['measured_us']:.2f} us = {fl['measured_over_floor_vector']:.1f}x / "
                f"{fl['measured_over_floor_scalar']:.2f}x the floor"
            )

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.system()} {platform.release()}".strip(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        **versions,
        **run_info,
        "cases_run": case_keys,
        "fma_peaks_gflops": peaks,
        "run_s": time.perf_counter() - t_run,
    }
    _write(meta, results)
    print(f"\nwrote {RESULTS / 'fit.json'} and fit.md ({meta['run_s']:.0f} s)")
    return results


def _cpu_name():
    return cpu_name()


def _floor_md(fl: dict) -> str:
    d = fl["dims"]
    parts = "\n".join(f"| {k} | {v:,} |" for k, v in fl["parts"].items())
    one = (
        f"{fl['floor_us_1flop_per_cycle']:.1f} us at 1 flop/cycle at the nominal {fl['nominal_ghz']:.2f} GHz "
        f"(measured / floor {fl['measured_over_floor_1flop_per_cycle']:.2f})"
        if fl.get("nominal_ghz")
        else "nominal clock unknown"
    )
    return (
        f"One fastmmm log-density + gradient, T={d['T']}, C={d['C']}, l_max={fl['l_max']}, "
        f"F={d['F']} Fourier columns, K={d['K']} controls, {d['n_dim']} parameters: **{fl['flops']:,} flops**\n\n"
        f"| part | flops |\n|---|---|\n{parts}\n\n"
        f"Convention: {fl['convention']}.\n\n"
        f"Measured peak on one core (numba FMA loop): {fl['peak_gflops_vector']:.1f} GFLOP/s vectorised "
        f"(64 independent chains, AVX-512/AVX2 FMA), {fl['peak_gflops_scalar']:.1f} GFLOP/s scalar (8 chains).\n\n"
        f"| floor at | floor (us) | measured (median thread CPU {fl['measured_us']:.2f} us) / floor |\n|---|---|---|\n"
        f"| vector FMA peak | {fl['floor_us_vector_peak']:.2f} | {fl['measured_over_floor_vector']:.1f}x "
        f"(best wall round {fl['measured_us_best_round']:.2f} us: {fl['best_over_floor_vector']:.1f}x) |\n"
        f"| scalar FMA peak | {fl['floor_us_scalar_peak']:.2f} | {fl['measured_over_floor_scalar']:.1f}x |\n\n"
        f"Also: {one}. fastmmm achieves {fl['achieved_gflops']:.1f} GFLOP/s on this count; "
        f"pymc-marketing's evaluation is {fl['pymc_marketing_over_floor_vector']:.0f}x the vector-peak floor "
        f"of fastmmm's model (its model is not identical, so this is indicative only).\n"
    )


METHOD = """\
* Every fit runs in a fresh process with an empty PyTensor compile cache (unless --warm-cache)
  after an untimed warm-up (imports; for the compiling contenders a tiny PyMC model through
  nutpie; the library's first calls, for fastmmm a tiny rust-backend fit).
* build: fastmmm `timing['build_s']` (the PyMC model: layout and priors); pymc-marketing
  `MMM(...)` + `build_model(X, y)`.
* compile: fastmmm `timing['compile_s']` (rust: `MmmProblem` + initial-point function;
  pytensor: `nutpie.compile_pymc_model`); pymc-marketing `nutpie.compile_pymc_model(model,
  var_names=free RVs, backend='numba')`, as `pm.sample(nuts_sampler='nutpie')` calls it.
* sample: `nutpie.sample` wall time (chains in parallel threads). total CPU: CPU seconds of the
  fitting process (all threads) over the whole fit.
* other: fastmmm: the rest of `MMM.fit` (data validation and scaling, result assembly,
  posterior predictive, diagnostics); pymc-marketing: `pm.compute_deterministics`, as its
  `fit` does.
* us/eval: the compiled C log-density called from a numba loop through ctypes at the
  coordinate-wise median of the unconstrained draws, one worker process at a time, in turns;
  median over rounds of the calling thread's CPU time per call (insensitive to other work
  taking the core; the ratio is the median of per-round ratios), and the wall time per call
  (median and best round).
* sampling CPU per gradient: CPU seconds of the process (all threads) during `nutpie.sample`
  / gradient evaluations incl. tuning: the cost of a step inside nutpie including its own work
  (tree building, adaptation, storing draws, expand, start-up, the conversion of the trace to
  InferenceData). CPU rather than wall time because the chains' threads share the machine
  with other work. The share in log-density evals is us/eval divided by it.
* ESS / R-hat: arviz rank-normalised bulk ESS (min) and R-hat (max) over the unconstrained
  draws (`store_unconstrained=True`), i.e. over exactly the sampled parameters of each model.
* The models are as close as the libraries allow, not identical: fastmmm parameterises
  channel amplitudes by contribution share, kappa relative to typical spend, and centres
  intercept/trend/media; pymc-marketing uses its default priors (and for the synthetic case a
  control column t for the trend).
"""


def _write(meta, cases):
    RESULTS.mkdir(exist_ok=True)

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.generic):
            return o.item()
        return o

    # Merge: keep the stored results of the cases not run now (each case carries its own run
    # settings in "run"; those stored before that field existed get the old file's).
    ran = {c["key"] for c in cases}
    kept = []
    old_path = RESULTS / "fit.json"
    if old_path.exists():
        try:
            old = json.loads(old_path.read_text())
        except (OSError, ValueError):
            old = {}
        old_meta = old.get("meta", {})
        for c in old.get("cases", []):
            if c.get("key") in ran:
                continue
            if "run" not in c:
                c["run"] = {
                    k: old_meta.get(k)
                    for k in (
                        "date",
                        "chains",
                        "draws",
                        "tune",
                        "repeats",
                        "quick",
                        "target_accept",
                        "pytensor_cache",
                    )
                }
            kept.append(c)
    order = {k: i for i, k in enumerate(CASE_ORDER)}
    cases = sorted(kept + list(cases), key=lambda c: order.get(c.get("key"), len(order)))
    (RESULTS / "fit.json").write_text(json.dumps(clean({"meta": meta, "cases": cases}), indent=2))
    md = [
        f"# Fit benchmark ({meta['date']})",
        "",
        (
            f"{meta['cpu']}, {meta['cores']} cores ({meta['machine']}); python {meta['python']}, "
            f"numpy {meta['numpy']}, fastmmm {meta['fastmmm']}, pymc-marketing {meta['pymc_marketing']}, "
            f"pymc {meta['pymc']}, pytensor {meta['pytensor']}, nutpie {meta['nutpie']}, "
            f"numba {meta['numba']}, arviz {meta['arviz']}"
        ),
        "",
        (
            "Each case states its run settings (cases not run by the latest command keep the "
            "results of the run that produced them). Ratios are fastmmm / pymc-marketing (below 1 is "
            "faster for times; above 1 is better for ESS); the per-evaluation ratio is the median of "
            "per-round ratios."
        ),
        "",
    ]
    for c in cases:
        if c["key"] == "batch":
            md += [f"## {c['case']}", "", batch_md(c), ""]
            continue
        r = c.get("run", {})
        md += [
            f"## {c['case']}",
            "",
            (
                f"Run {r.get('date')}: {r.get('chains')} chains x {r.get('draws')} draws + "
                f"{r.get('tune')} tune{' (--quick)' if r.get('quick') else ''}, {r.get('repeats')} "
                f"repeat(s) per contender (median shown; order reversed between repeats); "
                f"target_accept: {r.get('target_accept')}; PyTensor compile cache: {r.get('pytensor_cache')}."
            ),
            "",
            case_table(c),
            "",
        ]
        if "floor" in c:
            md += ["### Floor", "", _floor_md(c["floor"]), ""]
    md += ["## Method", "", METHOD]
    (RESULTS / "fit.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
