"""The fast path: the fused Rust log-density, sampled by NUTS inside the Rust core.

For the standard model family (one adstock kind and one saturation kind for
all channels, priors from :data:`FAST_DISTRIBUTIONS`; with or without lift
tests (:mod:`fastmmm.lift`), HSGP time-varying intercept and media multiplier
(:mod:`fastmmm.tvp`), and the hierarchical multi-geo model
(:mod:`fastmmm.hierarchical`, groups on the kernel's batch axis)) the model's
log-density, its gradient and every draw's deterministics are computed by
``fastmmm._core.MmmProblem``, and ``fastmmm._core.sample_nuts`` runs the
chains on it: nuts-rs, the sampler inside nutpie, pinned in Cargo.lock, with
nutpie's default adaptation, the GIL released, one thread per chain. Nothing
is compiled and neither PyMC, PyTensor, nutpie nor ArviZ is imported.

The problem is built from the :class:`fastmmm.layout.ModelLayout` (the same
variables, in the same order, as the PyMC reference model); the tests hold
its log-density and gradient equal to PyMC's at random points.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import numpy as np

from fastmmm import defaults
from fastmmm.layout import ModelLayout, amplitude_name, media_designs, resolve_prior

__all__ = [
    "FAST_DISTRIBUTIONS",
    "build_problem",
    "cancel_running",
    "lift_arrays",
    "problem_arrays",
    "problem_data",
    "sample",
    "supported",
]

log = logging.getLogger("fastmmm")

#: Distributions the Rust log-density implements.
FAST_DISTRIBUTIONS = (
    "Normal",
    "HalfNormal",
    "LogNormal",
    "Gamma",
    "Beta",
    "Exponential",
    "StudentT",
    "HalfStudentT",
    "TruncatedNormal",
    "Uniform",
)

#: Options of ``fit(**sampler_kwargs)`` the Rust sampler takes; others need backend "pytensor".
RUST_SAMPLER_OPTIONS = (
    "target_accept",
    "maxdepth",
    "low_rank_modified_mass_matrix",
    "store_unconstrained",
    "max_draws",
)


def _core_class():
    from fastmmm import _core

    return getattr(_core, "MmmProblem", None)


def _free_prior_names(spec) -> list[tuple[str, object]]:
    """(prior name, design or None) of every free parameter a spec has."""
    from fastmmm.layout import FIXED_SATURATION_PARAMS
    from fastmmm.tvp import parts

    out: list[tuple[str, object]] = []
    for name, on in (
        ("intercept", spec.intercept),
        ("trend", spec.trend),
        ("gamma_fourier", spec.n_fourier),
        ("gamma_control", spec.controls),
    ):
        if on:
            out.append((name, None))
    for d in media_designs(spec):
        out += [(f"adstock_{p}", d) for p in d.adstock_params]
        fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
        out += [(f"saturation_{p}", d) for p in d.saturation_params if p not in fixed]
    out.append((amplitude_name(spec), None))
    for part in parts(spec):
        out += [(f"tvp_{part}_ls", None), (f"tvp_{part}_eta", None)]
    out.append(("sigma", None))
    if spec.likelihood == "studentt":
        out.append(("nu", None))
    return out


def supported(spec) -> tuple[bool, str]:
    """Whether the fused Rust log-density covers this spec, and why not.

    Returns
    -------
    (True, "") or (False, reason)
    """
    if _core_class() is None:
        return False, "fastmmm._core has no MmmProblem (extension built without the fast path)"
    from fastmmm.layout import amplitude_kind

    if amplitude_kind(spec) == "mroas":
        return False, "media_prior='mroas' (a prior on marginal ROAS) is on the PyMC model only"
    designs = media_designs(spec)
    if len(designs) != 1:
        kinds = ", ".join(f"{d.adstock}+{d.saturation}" for d in designs)
        return False, f"several channel groups with different adstock/saturation kinds ({kinds})"
    channels = list(spec.channels)
    for name, design in _free_prior_names(spec):
        per_channel = name.startswith(("adstock_", "saturation_")) or name in (
            "beta",
            "channel_share",
            "roas",
            "mroas",
        )
        try:
            if name in ("roas", "mroas") and spec.prior(name) is None:
                continue  # the data-based default: a LogNormal
            prior = resolve_prior(spec, name, design, channels if per_channel else None)
        except ValueError as e:
            return False, f"prior {name}: {e}"
        if prior.dist not in FAST_DISTRIBUTIONS:
            return (
                False,
                f"prior {name}: distribution {prior.dist} is not implemented in the fused log-density",
            )
        if prior.dist == "TruncatedNormal":
            kw = prior.kwargs
            if "upper" in kw and "lower" not in kw:
                return (
                    False,
                    f"prior {name}: TruncatedNormal with only an upper bound (upper-bound transform)",
                )
    return True, ""


# ---------------------------------------------------------------------- problem data
def problem_arrays(data, spec) -> dict[str, np.ndarray]:
    """The data arrays of a national ``MmmProblem`` (see :func:`problem_data`)."""
    from fastmmm.layout import kappa_scale

    spend = np.ascontiguousarray(data.spend_scaled, dtype=np.float64)
    T = spend.shape[0]
    trend = np.asarray(data.trend, dtype=np.float64) if data.trend is not None else np.zeros(T)
    out = {
        "y": np.ascontiguousarray(data.y_scaled, dtype=np.float64),
        "spend": spend,
        "trend_t": np.ascontiguousarray(trend),
        "fourier": np.ascontiguousarray(np.asarray(data.fourier, dtype=np.float64).reshape(T, -1)),
        "controls": np.ascontiguousarray(np.asarray(data.controls_scaled, dtype=np.float64).reshape(T, -1)),
        "kappa_scale": np.ascontiguousarray(kappa_scale(spend)),
    }
    return {**out, **tvp_arrays(data, spec)}


def tvp_arrays(data, spec) -> dict[str, np.ndarray]:
    """The HSGP basis of each time-varying part on the training dates of ``data`` (fastmmm.tvp,
    as the PyMC model has it; a panel's: :func:`panel_tvp_arrays`)."""
    from fastmmm.tvp import hsgp_data, parts

    out = {}
    if parts(spec):
        h = hsgp_data(data)
        for part in parts(spec):
            phi = np.ascontiguousarray(h[f"hsgp_phi_{part}"], dtype=np.float64)
            out[f"tvp_{part}_phi"] = phi
            out[f"tvp_{part}_omega"] = np.ascontiguousarray(h[f"hsgp_omega_{part}"], dtype=np.float64)
            out[f"tvp_{part}_col_ms"] = np.ascontiguousarray(np.mean(np.square(phi), axis=0))
    return out


def lift_arrays(lift, datas, spec, groups=None) -> dict:
    """The lift-test keyword arguments of ``MmmProblem`` (empty without lift tests).

    ``datas`` is one PreparedData (national) or one per group with ``groups``
    the group index of every test. Per test: the channel (and group), the
    per-period spends and the lift and its standard error scaled by the
    test's own group's scales, its length in periods; ``lift_steady``
    constant periods reach the steady state (see :mod:`fastmmm.lift`).
    """
    if lift is None or not len(lift):
        return {}
    from fastmmm.lift import steady_length

    datas = datas if isinstance(datas, (list, tuple)) else [datas]
    channels = list(spec.channels)
    ch = np.array([channels.index(c) for c in lift.channel], dtype=np.int64)
    gidx = np.zeros(len(ch), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    cs = np.array(
        [float(np.asarray(datas[g].scales.channel_scale, dtype=float)[c]) for g, c in zip(gidx, ch)]
    )
    ts = np.array([float(datas[g].scales.target_scale) for g in gidx])
    out = {
        "lift_channel": [int(c) for c in ch],
        "lift_x0": np.ascontiguousarray(np.asarray(lift.spend_before, dtype=float) / cs),
        "lift_x1": np.ascontiguousarray(np.asarray(lift.spend_after, dtype=float) / cs),
        "lift_periods": np.ascontiguousarray(np.asarray(lift.periods, dtype=float)),
        "lift_delta": np.ascontiguousarray(np.asarray(lift.lift, dtype=float) / ts),
        "lift_se": np.ascontiguousarray(np.asarray(lift.lift_se, dtype=float) / ts),
        "lift_steady": int(steady_length(media_designs(spec)[0])),
    }
    if groups is not None:
        out["lift_group"] = [int(g) for g in gidx]
    if getattr(spec, "log_target", False):
        # Level lifts: each test's weights over the dates (fastmmm.lift.lift_data; a panel's
        # groups share their dates).
        from fastmmm.lift import lift_data

        w = lift_data(lift, datas[0])["lift_time_weights"]
        out["lift_weights"] = np.ascontiguousarray(w, dtype=np.float64).ravel()
    return out


def panel_tvp_arrays(datas, spec) -> dict[str, np.ndarray]:
    """:func:`tvp_arrays` of a panel: one basis shared by its groups, or (a ragged panel) one
    per group (:func:`fastmmm.tvp.panel_hsgp_data`), flattened group-major: ``phi``
    (G * T, m), ``omega`` and ``col_ms`` (G * m)."""
    from fastmmm.tvp import panel_hsgp_data, parts

    h = panel_hsgp_data(spec, datas)
    if not h or h[f"hsgp_phi_{parts(spec)[0]}"].ndim == 2:  # one basis shared by the groups
        return tvp_arrays(datas[0], spec)
    out = {}
    for part in parts(spec):
        phi = h[f"hsgp_phi_{part}"]
        out[f"tvp_{part}_phi"] = np.ascontiguousarray(phi.reshape(-1, phi.shape[-1]), dtype=np.float64)
        out[f"tvp_{part}_omega"] = np.ascontiguousarray(h[f"hsgp_omega_{part}"].reshape(-1), dtype=np.float64)
        out[f"tvp_{part}_col_ms"] = np.ascontiguousarray(
            h[f"hsgp_col_ms_{part}"].reshape(-1), dtype=np.float64
        )
    return out


def panel_grid_arrays(datas) -> dict:
    """A panel's scaled arrays on its dates (:func:`fastmmm.data.panel_grid`), one row per
    group: ``y`` (G, T), ``spend`` (G, T, C), ``trend_t`` (G, T), ``fourier`` (G, T, F),
    ``controls`` (G, T, K), ``kappa_scale`` and ``roas_scale`` (G, C), each group on its own
    scales, 0 outside its window (its trend continues there); ``window``: each group's
    ``(start, end)``."""
    from fastmmm.data import fourier_features, panel_grid
    from fastmmm.layout import kappa_scale, roas_scale

    dates, windows = panel_grid(datas)
    G, T = len(datas), len(dates)
    C = np.asarray(datas[0].spend_scaled).shape[1]
    K = np.asarray(datas[0].controls_scaled).reshape(len(datas[0].dates), -1).shape[1]
    four = np.asarray(fourier_features(dates, datas[0].spec.yearly_seasonality), dtype=float).reshape(T, -1)
    out = {
        "y": np.zeros((G, T)),
        "spend": np.zeros((G, T, C)),
        "trend_t": np.stack([np.asarray(d.scales.trend_at(dates), dtype=float) for d in datas]),
        "fourier": np.broadcast_to(four, (G, *four.shape)).copy(),
        "controls": np.zeros((G, T, K)),
        "kappa_scale": np.stack([kappa_scale(np.asarray(d.spend_scaled, dtype=float)) for d in datas]),
        "roas_scale": np.stack([roas_scale(d) for d in datas]),
    }
    for g, (d, (a, b)) in enumerate(zip(datas, windows)):
        out["y"][g, a:b] = np.asarray(d.y_scaled, dtype=float)
        out["spend"][g, a:b] = np.asarray(d.spend_scaled, dtype=float)
        out["controls"][g, a:b] = np.asarray(d.controls_scaled, dtype=float).reshape(b - a, K)
    out["window"] = windows
    return out


def panel_arrays(datas) -> dict:
    """The flattened (group-major) data arrays of a grouped ``MmmProblem``, with each group's
    window when the panel is ragged (groups on different dates)."""
    arr = panel_grid_arrays(datas)
    G, T, C = arr["spend"].shape
    out = {
        "y": np.ascontiguousarray(arr["y"].reshape(G * T)),
        "spend": np.ascontiguousarray(arr["spend"].reshape(G * T, C)),
        "trend_t": np.ascontiguousarray(arr["trend_t"].reshape(G * T)),
        "fourier": np.ascontiguousarray(arr["fourier"].reshape(G * T, -1)),
        "controls": np.ascontiguousarray(arr["controls"].reshape(G * T, -1)),
        "kappa_scale": np.ascontiguousarray(arr["kappa_scale"].reshape(G * C)),
    }
    if any(w != (0, T) for w in arr["window"]):
        out["window"] = [(int(a), int(b)) for a, b in arr["window"]]
    return out


def problem_data(spec, datas, lift=None, lift_groups=None) -> dict:
    """The ``data`` dict of ``MmmProblem(structure, data, blocks)``: one PreparedData
    (national) or a list of them (a panel: grouped layout). The arrays of
    :func:`problem_arrays` / :func:`panel_arrays`, with the lift tests under ``"lift"``,
    each time-varying part's basis under ``"tvp_<part>"`` and, for a ROAS amplitude,
    ``roas_scale`` (G * C)."""
    from fastmmm.layout import amplitude_kind, roas_scale

    grouped = isinstance(datas, (list, tuple))
    if grouped:
        flat = {
            **panel_arrays(datas),
            **lift_arrays(lift, list(datas), spec, lift_groups),
            **panel_tvp_arrays(datas, spec),
        }
    else:
        flat = {**problem_arrays(datas, spec), **lift_arrays(lift, datas, spec)}
    out = {}
    for key, value in flat.items():
        for sub in ("lift", "tvp_intercept", "tvp_media"):
            if key.startswith(sub + "_"):
                out.setdefault(sub, {})[key[len(sub) + 1 :]] = value
                break
        else:
            out[key] = value
    if amplitude_kind(spec) == "roas":
        per = [roas_scale(d) for d in (datas if grouped else [datas])]
        out["roas_scale"] = np.ascontiguousarray(np.concatenate(per), dtype=np.float64)
    return out


def build_problem(layout: ModelLayout, data: dict, problem_cls=None):
    """The ``MmmProblem`` of ``layout`` on ``data`` (:func:`problem_data`), checked to expand
    to exactly the layout's variables."""
    cls = problem_cls or _core_class()
    if cls is None:
        raise RuntimeError("fastmmm._core has no MmmProblem (extension built without the fast path)")
    problem = cls(layout.structure, data, layout.blocks())
    layout.check_problem(problem)
    return problem


# ---------------------------------------------------------------------- sampling
# Ctrl-C reaches only the main thread; runs on other threads (a batch's brands) are stopped
# through this counter: every run started before the latest `cancel_running()` stops.
_cancel_generation = 0


def cancel_running() -> None:
    """Stop every fast-path sampling run in progress in this process (each raises
    KeyboardInterrupt once its chains have ended); runs started later are unaffected."""
    global _cancel_generation
    _cancel_generation += 1


# Runs on a thread inside `sharing_cores(pool)` draw their chains from that core pool.
_sharing = threading.local()


@contextlib.contextmanager
def sharing_cores(pool):
    """Within the block, fast-path runs started on this thread draw their chains from
    ``pool`` (a :class:`fastmmm._core.CorePool`, or None for no sharing), shared with the runs
    of other threads: at most ``pool.cores`` chains of all of them draw at once, and a chain
    starts as soon as any core frees (a batch's last brand uses every core)."""
    before = getattr(_sharing, "pool", None)
    _sharing.pool = pool
    try:
        yield
    finally:
        _sharing.pool = before


def _cancel_check():
    started = _cancel_generation
    return lambda: _cancel_generation != started


def _seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def sample(
    problem,
    layout: ModelLayout,
    *,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    cores: int | None = None,
    seed: int | None = None,
    target_accept: float = 0.8,
    maxdepth: int = 10,
    progress: bool = True,
    low_rank_modified_mass_matrix: bool = False,
    store_unconstrained: bool = False,
    max_draws: int | None = None,
):
    """Sample ``problem`` with NUTS in the Rust core; returns a :class:`fastmmm.posterior.Posterior`.

    After ``draws`` posterior draws per chain the core checks R-hat and bulk ESS of the
    parameters (diagnostics' thresholds); where they fail, the same chains go on in rounds
    of ``draws // 2`` until they pass or reach ``max_draws`` (default
    ``defaults.max_draws(draws)``; ``max_draws=draws`` samples exactly ``draws``). Those
    statistics are kept on the posterior (``posterior.convergence``).

    ``posterior`` has every term and deterministic of ``layout`` as
    ``(chain, draw, ...)`` arrays; ``sample_stats`` nuts-rs's per-draw
    statistics by nutpie's names (``diverging``, ``depth``, ``step_size``,
    ``energy``, ``n_steps``, ``logp``, ...); ``warmup_sample_stats`` the tuning
    draws' ``n_steps``, ``diverging`` and ``step_size``; ``adaptation`` the
    adapted mass matrix per chain. ``attrs`` carry the sampler, its settings,
    the gradient evaluations and the sampling time.
    """
    from fastmmm import _core
    from fastmmm.diagnostics import CONVERGENCE_SKIP, DEFAULT_THRESHOLDS, reduce_convergence
    from fastmmm.posterior import Group, Posterior
    from fastmmm.progress import ChainProgressBar

    seed = _seed(seed)
    max_draws = defaults.max_draws(draws) if max_draws is None else max_draws
    if isinstance(max_draws, bool) or not isinstance(max_draws, (int, np.integer)) or max_draws < draws:
        raise ValueError(f"max_draws: must be an integer >= draws ({draws}), got {max_draws!r}")
    drop = left_out(layout, max_draws, chains)
    max_draws = _affordable_draws(layout, draws, max_draws, chains, drop)
    cores = int(cores) if cores is not None else _default_cores(chains)
    bar = ChainProgressBar(chains, draws, tune) if progress else None
    init = layout.initial_point()
    t0 = time.perf_counter()
    try:
        out = _core.sample_nuts(
            problem,
            init=init,
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            cores=cores,
            seed=seed,
            target_accept=float(target_accept),
            maxdepth=int(maxdepth),
            progress=bar.update if bar else None,
            low_rank=bool(low_rank_modified_mass_matrix),
            store_unconstrained=bool(store_unconstrained),
            cancelled=_cancel_check(),
            keep=layout.keep_ranges(drop) if drop else None,
            check=layout.stored_ranges(drop, CONVERGENCE_SKIP),
            max_rhat=float(DEFAULT_THRESHOLDS["rhat"]),
            min_ess_bulk=float(DEFAULT_THRESHOLDS["ess"]) * int(chains),
            extend_by=max(1, int(draws) // 2),
            max_draws=int(max_draws),
            pool=getattr(_sharing, "pool", None),
        )
    finally:
        if bar is not None:
            bar.close()
    sample_s = time.perf_counter() - t0

    post = Group(coords=dict(layout.coords))
    for name, dims, _ in layout.variables():
        if name not in drop:
            post.dims[name] = ("chain", "draw", *dims)
    post.values = layout.split(out["draws"], drop)
    stats = Group()
    for name, v in out["stats"].items():
        if name in ("chain", "draw"):
            continue
        stats.add(name, v, ("chain", "draw") if v.ndim == 2 else ("chain", "draw", f"{name}_dim"))
    warm = Group()
    for name, v in out["warmup"].items():
        warm.add(name, v, ("chain", "draw"))
    adapt = Group()
    for name, v in out["final_stats"].items():
        adapt.add(name, v, ("chain", "unconstrained_parameter"))
    attrs = {
        "sampler": "nuts-rs (fastmmm._core)",
        "sampler_version": str(getattr(_core, "NUTS_RS_VERSION", "")),
        "seed": seed,
        "draws": int(out["draws"].shape[1]),
        "draws_planned": int(draws),
        "max_draws": int(max_draws),
        "tune": int(tune),
        "chains": int(chains),
        "target_accept": float(target_accept),
        "maxdepth": int(maxdepth),
        "mass_matrix": "low rank" if low_rank_modified_mass_matrix else "diagonal",
        "n_dim": int(layout.n_dim),
        "gradient_evaluations": int(np.sum(out["gradients"])),
        "sampling_time": float(sample_s),
        # The chains' drawing time summed over chains (waits for a core left out): wall, and
        # their threads' CPU time (the core-seconds sampling took; NaN where not measured).
        "chain_seconds": float(np.sum(out["seconds"])),
        "chain_cpu_seconds": float(np.sum(out["cpu_seconds"])),
        # Deterministics not stored (recomputed from the parameters when asked for).
        "left_out": ",".join(drop),
    }
    if "unconstrained" in out:  # the sampler's own coordinates, as nutpie's store_unconstrained keeps them
        stats.add("unconstrained_draw", out["unconstrained"], ("chain", "draw", "unconstrained_parameter"))
    groups = {"posterior": post, "sample_stats": stats, "warmup_sample_stats": warm}
    if adapt.values:
        groups["adaptation"] = adapt
    posterior = Posterior(groups, attrs)
    if len(out["convergence"]["rhat"]):
        posterior.convergence = reduce_convergence(out["convergence"], int(chains))
    return posterior


def _available_memory() -> int | None:
    """Bytes of memory available to this process (Linux), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: Above this many bytes of stored contributions a fit keeps the parameters and recomputes the
#: per-cell contributions when asked (a large panel: 50 x 208 x 30 cells are 5 GB per 2000 draws).
CONTRIBUTION_STORE_LIMIT = 256 * 2**20


def left_out(layout: ModelLayout, draws: int, chains: int) -> tuple[str, ...]:
    """The deterministics a fit leaves out of its stored draws: ``channel_contribution`` when it
    would take more than CONTRIBUTION_STORE_LIMIT (results recompute it from the parameters,
    :meth:`fastmmm.results.MMMResult.draws`)."""
    for d in layout.deterministics:
        if (
            d.name == "channel_contribution"
            and 8 * int(draws) * int(chains) * d.size > CONTRIBUTION_STORE_LIMIT
        ):
            return ("channel_contribution",)
    return ()


#: An extension until converged stores at most this many bytes of draws (or what the planned
#: draws take, if more): a large panel's thousands of parameters are 448 MB at 2 x 4000 draws.
EXTENSION_STORE_LIMIT = 256 * 2**20


def _affordable_draws(layout: ModelLayout, draws: int, max_draws: int, chains: int, drop=()) -> int:
    """``max_draws``, or fewer where their storage would take more than EXTENSION_STORE_LIMIT
    or half the memory available (never fewer than ``draws``; ValueError when ``draws`` alone
    do not fit)."""
    _check_memory(layout, draws, chains, drop)
    stored = sum(int(np.prod(s, dtype=int)) for n, _, s in layout.variables() if n not in drop)
    avail = _available_memory()
    limit = EXTENSION_STORE_LIMIT if avail is None else min(EXTENSION_STORE_LIMIT, int(0.5 * avail))
    if stored == 0:
        return int(max_draws)
    return max(int(draws), min(int(max_draws), limit // (8 * int(chains) * stored)))


def _check_memory(layout: ModelLayout, draws: int, chains: int, drop=()) -> None:
    """ValueError when the draws alone would not fit in memory (rather than a failed allocation)."""
    stored = sum(int(np.prod(s, dtype=int)) for n, _, s in layout.variables() if n not in drop)
    need = 8 * int(chains) * int(draws) * stored
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ValueError(
            f"draws: {chains} chains x {draws} draws of {layout.n_expanded} values each need "
            f"{need / 1e9:.1f} GB, more than the {avail / 1e9:.1f} GB of memory available; use fewer draws"
        )


def _default_cores(chains: int) -> int:
    """Every available core: one thread per chain, and the cores beyond the chains split each
    evaluation of a large panel (groups on several threads)."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, n)
