"""Fitting: validate the data, choose a backend, sample, wrap the draws.

Two backends:

* ``"rust"`` (the fast path, :mod:`fastmmm.fastpath`): for one adstock and one
  saturation kind across channels and the built-in prior families, the whole
  log-density and gradient is one fused Rust function and NUTS (nuts-rs, the
  engine inside nutpie) runs inside the Rust core. Nothing is compiled and no
  PyMC, PyTensor, nutpie or ArviZ is imported.
* ``"pytensor"``: the PyMC model (with fastmmm's Rust Ops for the media
  transforms) compiled by nutpie's numba backend and sampled by nutpie, through
  nutpie's public API (``compile_pymc_model``, ``sample``); covers every spec
  (mixed kinds per channel) at the price of a compilation of several seconds.

``backend="auto"`` (the default) takes the fast path whenever it covers the
spec; when it does not, or when setting it up fails for any reason, the fit
runs on the pytensor backend and the reason is logged and kept in
``result.backend_note`` (and ``summary.json``).

The compiled-model cache (pytensor backend) is per process and keyed by the
spec's structure key and the array shapes: a second fit of the same structure
with new data (another brand, next week's refresh) reuses the compiled
log-density through ``with_data`` and pays no compilation.

:func:`sample_model` is the one pipeline both :class:`MMM` and
:class:`fastmmm.hierarchical.HierarchicalMMM` run.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fastmmm import defaults
from fastmmm.data import PreparedData, prepare, split_holdout
from fastmmm.spec import ModelSpec

__all__ = ["BACKENDS", "MMM", "ModelBuild", "SampleOutput", "clear_compile_cache", "sample_model"]

#: Values of ``MMM.fit(backend=...)``.
BACKENDS = ("auto", "rust", "pytensor")

#: NUTS's target acceptance: nutpie's default is 0.8. MMM posteriors have a ridge between the
#: intercept and always-on channels; smaller steps keep the sampler on it without divergences.
TARGET_ACCEPT = 0.95
#: With time-varying parts the GP's (ls, eta, z) funnel needs smaller steps still (see fastmmm.tvp).
TARGET_ACCEPT_TVP = 0.99
#: A fit at the default target acceptance whose posterior draws diverge is sampled again, with
#: a new warmup, at this one (the usual remedy, done for the user). In the recovery study 5% of
#: fits diverge at 0.95 and none at 0.99, which costs every fit 1.5x if it were the default.
TARGET_ACCEPT_RETRY = 0.99

log = logging.getLogger("fastmmm")

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 16


def clear_compile_cache() -> None:
    """Forget every compiled model of this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


@dataclass
class _Compiled:
    model: object
    compiled: object
    build_s: float
    compile_s: float
    uses: int = field(default=0)


@dataclass
class ModelBuild:
    """How each backend builds the model of one fit (each called only when needed).

    ``layout()`` and ``problem_data()`` give the fast path's
    :class:`fastmmm.layout.ModelLayout` and the Rust problem's arrays;
    ``pymc_model()`` the PyMC reference model; ``data_updates(model)`` the
    values of a cached compiled model's data containers for this fit;
    ``cache_key`` identifies the compiled structure and shapes.
    """

    spec: ModelSpec
    layout: Callable
    problem_data: Callable
    pymc_model: Callable
    data_updates: Callable
    cache_key: tuple
    #: Why the fast path cannot take this model even though the spec is supported, if so.
    rust_refusal: str = ""


@dataclass
class SampleOutput:
    posterior: object
    backend: str
    #: Why the fit is not on the backend asked for (empty when it is).
    note: str
    build_s: float
    compile_s: float
    sample_s: float

    def timing(self) -> dict[str, float]:
        """The fit's timing keys: build, compile and sampling wall seconds and, from the
        Rust sampler, ``sample_core_s``: the CPU seconds of its chains' threads while they
        drew, summed over chains (the cores' time sampling took, whether the chains ran side
        by side or waited for a core; a large panel's evaluations that also use helper
        threads, with more cores than chains, are counted on the chain threads only)."""
        t = {"build_s": self.build_s, "compile_s": self.compile_s, "sample_s": self.sample_s}
        core = self.posterior.attrs.get("chain_cpu_seconds")
        if core is not None and np.isfinite(core):
            t["sample_core_s"] = float(core)
        return t


def check_counts(draws, tune, chains) -> None:
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")


def _pytensor_compiled(build: ModelBuild) -> tuple[_Compiled, bool]:
    """The nutpie model for this structure and shapes (compiled, or from the cache) and whether cached."""
    key = ("pytensor", *build.cache_key)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        hit.uses += 1
        return hit, True
    import nutpie

    t0 = time.perf_counter()
    model = build.pymc_model()
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        # An Op without a numba implementation would run in Python object mode: never allowed.
        warnings.filterwarnings("error", message="Numba will use object mode", category=UserWarning)
        compiled = nutpie.compile_pymc_model(model, backend="numba")
    entry = _Compiled(model, compiled, t1 - t0, time.perf_counter() - t1, uses=1)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = entry
    return entry, False


def sample_model(
    build: ModelBuild,
    *,
    backend: str = "auto",
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    cores: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    target_accept: float | None = None,
    **sampler_kwargs,
) -> SampleOutput:
    """Choose the backend, build the model on it and sample (see the module docstring).

    At the default ``target_accept`` (``target_accept=None``), posterior draws that diverge
    are sampled again at TARGET_ACCEPT_RETRY; ``posterior.attrs["resampled"]`` says why."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    check_counts(draws, tune, chains)
    max_draws = sampler_kwargs.get("max_draws")
    if max_draws is not None and (
        isinstance(max_draws, bool) or not isinstance(max_draws, (int, np.integer)) or max_draws < draws
    ):
        raise ValueError(f"max_draws: must be an integer >= draws ({draws}), got {max_draws!r}")
    spec = build.spec
    chosen = target_accept is None
    if chosen:
        target_accept = (
            TARGET_ACCEPT_TVP if (spec.time_varying_intercept or spec.time_varying_media) else TARGET_ACCEPT
        )
    if not (isinstance(target_accept, (int, float)) and 0.0 < float(target_accept) < 1.0):
        raise ValueError(f"target_accept: must be in (0, 1), got {target_accept!r}")
    kw = dict(
        draws=draws, tune=tune, chains=chains, cores=cores, seed=seed, progress=progress, **sampler_kwargs
    )
    out = _sample_once(build, backend, target_accept=target_accept, **kw)
    diverging = out.posterior.stat("diverging")
    n_div = 0 if diverging is None else int(np.sum(diverging))
    if chosen and n_div and target_accept < TARGET_ACCEPT_RETRY:
        why = f"{n_div} divergent draws at target_accept {target_accept}: sampled again at {TARGET_ACCEPT_RETRY}"
        log.info("fastmmm: %s", why)
        # Asked as the first run was (under "auto" a failure still falls back).
        again = _sample_once(build, backend, target_accept=TARGET_ACCEPT_RETRY, **kw)
        again.posterior.attrs["resampled"] = f"{why} (the first run sampled for {out.sample_s:.2f} s)"
        again.note = again.note or out.note
        again.build_s += out.build_s
        again.compile_s += out.compile_s
        again.sample_s += out.sample_s
        for k in ("chain_seconds", "chain_cpu_seconds"):  # both runs' chains took the cores
            if k in again.posterior.attrs and k in out.posterior.attrs:
                again.posterior.attrs[k] += out.posterior.attrs[k]
        return again
    return out


def _sample_once(
    build: ModelBuild,
    backend: str,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    seed: int | None,
    progress: bool,
    target_accept: float,
    **sampler_kwargs,
) -> SampleOutput:
    """One run of the sampler on the backend chosen (or the fallback)."""
    from fastmmm import fastpath

    spec = build.spec

    note = ""
    used = "pytensor" if backend == "pytensor" else "rust"
    if used == "rust":
        ok, why = fastpath.supported(spec)
        if ok and build.rust_refusal:
            ok, why = False, build.rust_refusal
        other = sorted(set(sampler_kwargs) - set(fastpath.RUST_SAMPLER_OPTIONS))
        if ok and other:
            ok, why = False, f"sampler option(s) {', '.join(other)} need nutpie (backend 'pytensor')"
        if not ok:
            if backend == "rust":
                raise ValueError(
                    f"backend='rust': the fused Rust log-density does not cover this model: {why}"
                )
            note = f"fast path not available: {why}"
            used = "pytensor"
    t0 = time.perf_counter()
    if used == "rust":
        try:
            layout = build.layout()
            problem = fastpath.build_problem(layout, build.problem_data())
            layout.initial_point()
        except Exception as e:  # noqa: BLE001  any failure of the fast path's setup falls back
            if backend == "rust":
                raise
            note = f"fast path failed ({type(e).__name__}: {e})"
            used = "pytensor"
    if used == "rust":
        t1 = time.perf_counter()
        try:
            posterior = fastpath.sample(
                problem,
                layout,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                seed=seed,
                target_accept=target_accept,
                progress=progress,
                **sampler_kwargs,
            )
            return SampleOutput(posterior, "rust", note, t1 - t0, 0.0, time.perf_counter() - t1)
        except (KeyboardInterrupt, ValueError):
            raise
        except Exception as e:  # noqa: BLE001  a chain that cannot start or continue: try the other path
            if backend == "rust":
                raise
            note = f"fast path failed while sampling ({type(e).__name__}: {e})"
            used = "pytensor"
    if note:
        log.warning("fastmmm: %s; using the pytensor backend", note)
    import nutpie

    from fastmmm.posterior import Posterior

    entry, cached = _pytensor_compiled(build)
    compiled = entry.compiled
    if cached:
        compiled = compiled.with_data(**build.data_updates(entry.model))
    kwargs = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress_bar=progress,
        save_warmup=False,
        target_accept=target_accept,
    )
    if cores is not None:
        kwargs["cores"] = cores
    # nutpie's chains cannot be continued: the pytensor backend samples exactly ``draws``.
    kwargs.update({k: v for k, v in sampler_kwargs.items() if k != "max_draws"})
    t1 = time.perf_counter()
    idata = nutpie.sample(compiled, **kwargs)
    sample_s = time.perf_counter() - t1
    return SampleOutput(
        Posterior.from_arviz(idata),
        "pytensor",
        note,
        0.0 if cached else entry.build_s,
        0.0 if cached else entry.compile_s,
        sample_s,
    )


def _drop_duplicate_trend(spec: ModelSpec, data: PreparedData) -> ModelSpec:
    """Turn the built-in trend off when a control already is a linear time trend.

    Both in one model are perfectly collinear (with the intercept), which leaves
    a flat ridge in the posterior: slow mixing and meaningless trend estimates.
    """
    if not spec.trend or not spec.controls or len(data.dates) < 3:
        return spec
    t = np.asarray(data.trend, dtype=float)
    for k, name in enumerate(spec.controls):
        c = np.asarray(data.controls_scaled, dtype=float)[:, k]
        if np.std(c) > 0 and abs(np.corrcoef(c, t)[0, 1]) > 0.9999:
            warnings.warn(
                f"fastmmm: control {name!r} is a linear time trend, which duplicates the model's built-in "
                "trend; the built-in trend is turned off (pass trend=False to silence this).",
                stacklevel=3,
            )
            return spec.replace(trend=False)
    return spec


def _national_build(spec: ModelSpec, train: PreparedData, lift) -> ModelBuild:
    from fastmmm import fastpath

    n_lift = 0 if lift is None else len(lift)

    def layout():
        from fastmmm.layout import national_layout

        return national_layout(spec, train, n_lift)

    def pymc_model():
        from fastmmm.model import build_model

        model = build_model(train, spec)
        if n_lift:
            from fastmmm.lift import add_lift_likelihood

            add_lift_likelihood(model, spec, train, lift)
        return model

    def data_updates(model):
        from fastmmm.model import data_updates

        updates = data_updates(train, model)
        if n_lift:
            from fastmmm.lift import lift_data

            names = {v.name for v in model.data_vars}
            updates.update({k: v for k, v in lift_data(lift, train).items() if k in names})
        return updates

    refusal = ""
    if n_lift and spec.time_varying_media:
        refusal = "lift tests with a time-varying media multiplier are not in the fused log-density"
    key = (
        spec.structure_key(),
        train.spend_scaled.shape,
        train.controls_scaled.shape,
        train.fourier.shape,
        n_lift,
    )
    return ModelBuild(
        spec, layout, lambda: fastpath.problem_data(spec, train, lift), pymc_model, data_updates, key, refusal
    )


class MMM:
    """A Bayesian media mix model.

    Parameters
    ----------
    spec : ModelSpec, optional
        The model specification; or give its fields as keyword arguments
        (``MMM(date_column="date", target="sales", channels=["tv", "search"])``).

    Examples
    --------
    >>> mmm = MMM(date_column="date_week", target="y", channels=["x1", "x2"])  # doctest: +SKIP
    >>> result = mmm.fit(df, draws=1000, tune=1000, chains=2, seed=1)         # doctest: +SKIP
    >>> result.summary()["channels"]["x1"]["roas"]                           # doctest: +SKIP
    """

    def __init__(self, spec: ModelSpec | None = None, **kwargs):
        if spec is not None and kwargs:
            raise TypeError("give either a ModelSpec or keyword arguments, not both")
        self.spec = spec if spec is not None else ModelSpec(**kwargs)

    def fit(
        self,
        df,
        *,
        draws: int = defaults.DRAWS,
        tune: int = defaults.TUNE,
        chains: int = defaults.CHAINS,
        seed: int | None = None,
        holdout_weeks: int = 0,
        cores: int | None = None,
        progress: bool = True,
        backend: str = "auto",
        lift_tests=None,
        check: bool = True,
        **sampler_kwargs,
    ):
        """Validate ``df``, build the model and sample its posterior with NUTS.

        Parameters
        ----------
        df : pandas.DataFrame or path to a CSV file
        draws, tune, chains : int
            Posterior draws per chain, tuning steps per chain, chains.
        seed : int, optional
            The same seed gives the same draws.
        holdout_weeks : int
            Hold out the last N periods: the model is fit on the rest and
            ``result.validate()`` reports the hold-out MAPE.
        cores : int, optional
            Chains run in parallel threads (default: as many as there are cores).
        progress : bool
            Show a progress bar (chains, divergences, ETA) on the terminal.
        backend : {"auto", "rust", "pytensor"}
            ``"rust"`` samples the fused Rust log-density inside the Rust core
            (nothing compiled; one adstock and one saturation kind for all
            channels), ``"pytensor"`` nutpie's numba compilation of the PyMC
            model (any spec), ``"auto"`` the former whenever it can (see
            :mod:`fastmmm.fit`).
        lift_tests : DataFrame or path to a CSV file, optional
            Lift-test (experiment) results that calibrate the channels'
            response curves, one row per test with columns ``channel``,
            ``spend_before``, ``spend_after`` (or ``delta_spend``), ``lift``,
            ``lift_se`` and ``periods`` / ``weeks`` / ``days`` (or ``start``
            and ``end``); spend per period, lift summed over the test. Each
            adds ``lift ~ Normal(lift_model, lift_se)`` with ``lift_model =
            periods * beta_c * (f_c(x1) - f_c(x0))`` on the steady-state
            media curve (see :mod:`fastmmm.lift`).
        check : bool
            Warn when the sampling diagnostics (R-hat, ESS, divergences) fail
            their thresholds (:meth:`~fastmmm.results.MMMResult.validate` has
            them either way; ``fit_many`` records them in its index instead).
        **sampler_kwargs
            ``target_accept`` (default 0.95; 0.99 with time-varying parts) and
            ``maxdepth`` on either backend. ``max_draws`` (Rust backend): chains
            whose draws fail the R-hat or bulk-ESS checks go on sampling, in
            rounds of ``draws // 2``, until they pass or hold ``max_draws``
            draws (default ``4 * draws``; ``max_draws=draws`` samples exactly
            ``draws``; the pytensor backend always does). Anything else is
            passed to ``nutpie.sample`` and needs the pytensor backend.

        Returns
        -------
        fastmmm.results.MMMResult
        """
        from fastmmm.results import MMMResult

        t_start = time.perf_counter()
        if backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        check_counts(draws, tune, chains)
        full = prepare(df, self.spec)
        spec = _drop_duplicate_trend(self.spec, full)
        if spec is not self.spec:
            full = prepare(df, spec)
        train, holdout = (full, None)
        if holdout_weeks:
            train, holdout = split_holdout(full, holdout_weeks)
        from fastmmm.lift import read_lift_tests

        lift = read_lift_tests(lift_tests, spec, frequency=train.frequency)
        out = sample_model(
            _national_build(spec, train, lift),
            backend=backend,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            progress=progress,
            **sampler_kwargs,
        )
        timing = out.timing()
        result = MMMResult.from_fit(
            posterior=out.posterior,
            spec=spec,
            data=train,
            holdout=holdout,
            timing=timing,
            backend=out.backend,
            seed=seed,
            lift_tests=lift,
            backend_note=out.note,
        )
        if check:
            result.report_diagnostics()
        result.timing["total_s"] = time.perf_counter() - t_start
        return result
