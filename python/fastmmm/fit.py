"""Fitting: build the PyMC model, turn it into a nutpie model once per model
structure, swap data for later fits of the same structure, sample.

Two backends give nutpie the log-density:

* ``"rust"`` (the fast path, :mod:`fastmmm.fastpath`): for one adstock and one
  saturation kind across channels and the built-in prior families, the whole
  log-density and gradient is one fused Rust function handed to nutpie by
  address. Nothing is compiled; the time to the first draw is well under a
  second.
* ``"pytensor"``: the PyMC model (with fastmmm's Rust Ops for the media
  transforms) compiled by nutpie's numba backend; covers every spec (mixed
  kinds per channel) at the price of a compilation of several seconds.

``backend="auto"`` (the default) takes the fast path whenever it covers the
spec and says why not otherwise (logger ``"fastmmm"``).

The model cache is per process and keyed by backend, the spec's structure key
and the array shapes: a second fit of the same structure with new data (another
brand, next week's refresh) reuses the compiled log-density through
``with_data`` and pays no compilation.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from fastmmm.data import PreparedData, prepare, split_holdout
from fastmmm.spec import ModelSpec

__all__ = ["MMM", "clear_compile_cache", "BACKENDS"]

#: Values of ``MMM.fit(backend=...)``.
BACKENDS = ("auto", "rust", "pytensor")

log = logging.getLogger("fastmmm")

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 16


def clear_compile_cache() -> None:
    """Forget every compiled model of this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _data_updates(data: PreparedData, model) -> dict[str, np.ndarray]:
    """Values of the model's data containers for ``data``."""
    from fastmmm.model import kappa_scale, media_designs

    values = {
        "spend": data.spend_scaled,
        "y": data.y_scaled,
        "trend_t": data.trend,
        "fourier": data.fourier,
        "controls": data.controls_scaled,
    }
    for d in media_designs(data.spec):
        values[d.var("kappa_scale")] = kappa_scale(np.asarray(data.spend_scaled)[:, list(d.channels)])
    from fastmmm.tvp import hsgp_data  # the time-varying parts' basis (depends on T and frequency)

    values.update(hsgp_data(data))
    names = {v.name for v in model.data_vars}
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items() if k in names}


@dataclass
class _Compiled:
    model: object
    compiled: object
    build_s: float
    compile_s: float
    uses: int = field(default=0)


def _cache_key(spec: ModelSpec, data: PreparedData, backend: str = "pytensor", n_lift: int = 0):
    # The number of lift tests is structure: with_data can swap their values, not their count.
    return (
        backend,
        spec.structure_key(),
        data.spend_scaled.shape,
        data.controls_scaled.shape,
        data.fourier.shape,
        int(n_lift),
    )


def compile_model(
    spec: ModelSpec, data: PreparedData, backend: str = "pytensor", lift=None
) -> tuple[_Compiled, bool]:
    """The nutpie model for this structure and shapes, and whether it was cached.

    ``backend`` is ``"pytensor"`` (nutpie's numba compilation of the PyMC model)
    or ``"rust"`` (the fused Rust log-density, :func:`fastmmm.fastpath.compile_fast`;
    raises ValueError for a spec it does not cover). ``lift``
    (:class:`fastmmm.lift.LiftTests`) adds the lift-test likelihood (both backends).
    """
    from fastmmm.model import build_model

    if backend not in ("pytensor", "rust"):
        raise ValueError(f"backend: must be 'pytensor' or 'rust', got {backend!r}")
    n_lift = 0 if lift is None else len(lift)
    key = _cache_key(spec, data, backend, n_lift)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        hit.uses += 1
        return hit, True
    t0 = time.perf_counter()
    model = build_model(data, spec)
    if n_lift:
        from fastmmm.lift import add_lift_likelihood

        add_lift_likelihood(model, spec, data, lift)
    t1 = time.perf_counter()
    if backend == "rust":
        from fastmmm.fastpath import compile_fast

        compiled = compile_fast(spec, data, model=model, lift=lift if n_lift else None)
    else:
        import nutpie

        with warnings.catch_warnings():
            # An Op without a numba implementation would run in Python object mode: never allowed.
            warnings.filterwarnings("error", message="Numba will use object mode", category=UserWarning)
            compiled = nutpie.compile_pymc_model(model, backend="numba")
    t2 = time.perf_counter()
    entry = _Compiled(model, compiled, t1 - t0, t2 - t1, uses=1)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = entry
    return entry, False


def _choose_backend(backend: str, spec: ModelSpec, n_lift: int = 0) -> str:
    """The backend a fit uses: ``"rust"`` or ``"pytensor"``. Lift tests are in both."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "pytensor":
        return backend
    from fastmmm.fastpath import supported

    ok, why = supported(spec)
    if ok and n_lift and spec.time_varying_media:
        ok, why = False, "lift tests with a time-varying media multiplier are not in the fused log-density"
    if ok:
        return "rust"
    if backend == "rust":
        raise ValueError(f"backend='rust': the fused Rust log-density does not cover this model: {why}")
    log.info("fastmmm: using the pytensor backend (fast path not available: %s)", why)
    return "pytensor"


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
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 2,
        seed: int | None = None,
        holdout_weeks: int = 0,
        cores: int | None = None,
        progress: bool = True,
        backend: str = "auto",
        lift_tests=None,
        **sampler_kwargs,
    ):
        """Validate ``df``, build and compile (or reuse) the model, sample with nutpie.

        Parameters
        ----------
        df : pandas.DataFrame or path to a CSV file
        draws, tune, chains : int
            Posterior draws per chain, tuning steps per chain, chains.
        seed : int, optional
        holdout_weeks : int
            Hold out the last N periods: the model is fit on the rest and
            ``result.validate()`` reports the hold-out MAPE.
        cores : int, optional
            Chains run in parallel threads (default: all cores).
        progress : bool
            Show nutpie's progress bar.
        backend : {"auto", "rust", "pytensor"}
            Log-density backend (see :mod:`fastmmm.fit`): ``"rust"`` is the
            fused Rust log-density (no compilation; one adstock and one
            saturation kind for all channels), ``"pytensor"`` nutpie's numba
            compilation of the PyMC model (any spec), ``"auto"`` the former
            when it covers the spec.
        lift_tests : DataFrame or path to a CSV file, optional
            Lift-test (experiment) results that calibrate the channels'
            response curves, one row per test with columns ``channel``,
            ``spend_before``, ``spend_after`` (or ``delta_spend``), ``lift``,
            ``lift_se`` and ``periods`` / ``weeks`` / ``days`` (or ``start``
            and ``end``); spend per period, lift summed over the test. Each
            adds ``lift ~ Normal(lift_model, lift_se)`` with ``lift_model =
            periods * beta_c * (f_c(x1) - f_c(x0))`` on the steady-state
            media curve (see :mod:`fastmmm.lift`). Both backends implement it
            (the fused Rust log-density for specs it covers).
        **sampler_kwargs
            Passed to ``nutpie.sample`` (e.g. ``target_accept``,
            ``low_rank_modified_mass_matrix``).

        Returns
        -------
        fastmmm.results.MMMResult
        """
        import nutpie

        from fastmmm.results import MMMResult

        if backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
            if not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
        t_start = time.perf_counter()
        full = prepare(df, self.spec)
        if self.spec.log_target:
            # Validation above already ran (a log target needs y > 0). The multiplicative
            # model's contributions, ROAS and forecasts are not implemented yet: refuse
            # clearly rather than report log-scale numbers as sales.
            raise NotImplementedError(
                "log_target=True: the multiplicative (log-target) model is not implemented yet; "
                "fit the target in its original units (log_target=False)"
            )
        spec = _drop_duplicate_trend(self.spec, full)
        if spec is not self.spec:
            full = prepare(df, spec)
        train, holdout = (full, None)
        if holdout_weeks:
            train, holdout = split_holdout(full, holdout_weeks)
        from fastmmm.lift import lift_data, read_lift_tests

        lift = read_lift_tests(lift_tests, spec, frequency=train.frequency)
        n_lift = 0 if lift is None else len(lift)
        used = _choose_backend(backend, spec, n_lift)
        try:
            entry, cached = compile_model(spec, train, used, lift) if n_lift else compile_model(spec, train, used)
        except (ValueError, RuntimeError) as e:
            if used != "rust" or backend != "auto":
                raise
            # The fast path refused this model after all (a layout it does not know): never fail a fit for it.
            log.warning("fastmmm: fast path failed (%s); using the pytensor backend", e)
            used = "pytensor"
            entry, cached = compile_model(spec, train, used, lift) if n_lift else compile_model(spec, train, used)
        compiled = entry.compiled
        if cached:
            if used == "rust":
                from fastmmm.fastpath import problem_arrays

                from fastmmm.fastpath import lift_arrays

                compiled = compiled.with_data(**problem_arrays(train, spec), **lift_arrays(lift, train, spec))
            else:
                updates = _data_updates(train, entry.model)
                if n_lift:
                    names = {v.name for v in entry.model.data_vars}
                    updates.update({k: v for k, v in lift_data(lift, train).items() if k in names})
                compiled = compiled.with_data(**updates)
        build_s = 0.0 if cached else entry.build_s
        compile_s = 0.0 if cached else entry.compile_s
        log.info(
            "fastmmm: %s model, %s backend (%s)",
            "reusing compiled" if cached else "compiled",
            used,
            spec.structure_key(),
        )

        t0 = time.perf_counter()
        # target_accept 0.95 (nutpie's default is 0.8): MMM posteriors have a ridge between the
        # intercept and always-on channels; smaller steps keep the sampler on it without divergences.
        kwargs = dict(
            draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=progress, save_warmup=False, target_accept=0.95
        )
        if spec.time_varying_intercept or spec.time_varying_media:
            # The GP's (ls, eta, z) funnel needs smaller steps still (measured: see fastmmm.tvp).
            kwargs["target_accept"] = 0.99
        if cores is not None:
            kwargs["cores"] = cores
        kwargs.update(sampler_kwargs)
        idata = nutpie.sample(compiled, **kwargs)
        sample_s = time.perf_counter() - t0
        timing = {
            "build_s": build_s,
            "compile_s": compile_s,
            "sample_s": sample_s,
            "total_s": time.perf_counter() - t_start,
        }
        result = MMMResult.from_fit(
            idata=idata,
            spec=spec,
            data=train,
            holdout=holdout,
            timing=timing,
            backend=used,
            seed=seed,
            lift_tests=lift,
        )
        result.report_diagnostics()
        return result
