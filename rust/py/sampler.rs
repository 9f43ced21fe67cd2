//! `sample_nuts`: runs `crate::sampler` on a problem with the GIL released.
//!
//! The chains run on their own threads; the calling thread waits on them in
//! short slices, and between slices takes the GIL to look for signals (Ctrl-C
//! sets the stop flag, joins the chains and raises KeyboardInterrupt) and to
//! hand the progress to an optional Python callback.

use super::errors::value_error;
use super::problem::PyMmmProblem;
use crate::convergence::ColumnStats;
use crate::sampler::{
    sample, ChainOutput, CorePool, Extension, RunSettings, SampleError, Shared, Stat, StatValues,
    MAX_CHAINS, MAX_DRAWS,
};
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cores shared by the sampling runs given it (`sample_nuts(pool=...)`): at most `cores`
/// of their chains draw at once, and a chain starts as soon as any of them frees, so runs
/// side by side (a batch's brands) keep every core busy to the last chain.
#[pyclass(name = "CorePool", module = "fastmmm._core", frozen)]
pub struct PyCorePool(Arc<CorePool>);

#[pymethods]
impl PyCorePool {
    #[new]
    fn new(cores: usize) -> PyResult<Self> {
        if cores == 0 {
            return Err(value_error("cores", "must be at least 1"));
        }
        Ok(PyCorePool(Arc::new(CorePool::new(cores))))
    }

    #[getter]
    fn cores(&self) -> usize {
        self.0.cores()
    }

    /// The most chains that have drawn at once.
    #[getter]
    fn peak(&self) -> usize {
        self.0.peak()
    }
}

impl From<SampleError> for PyErr {
    fn from(e: SampleError) -> PyErr {
        match e {
            SampleError::Settings(msg) => PyValueError::new_err(msg),
            other => PyRuntimeError::new_err(other.to_string()),
        }
    }
}

/// `(chains, per_chain...)` array from the chains' flat pieces.
fn stacked<'py, T: numpy::Element + Copy>(
    py: Python<'py>,
    parts: Vec<&[T]>,
    inner: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let chains = parts.len();
    let flat: Vec<T> = parts.concat();
    let mut shape = vec![chains];
    shape.extend_from_slice(inner);
    Ok(flat.into_pyarray(py).reshape(shape)?.into_any())
}

/// Like [`stacked`] for the big arrays (the draws): takes the chains' vectors and frees
/// each once copied, so the peak is one copy plus one chain, and a shortage of memory
/// is a MemoryError, not an abort.
fn stacked_owned<'py>(
    py: Python<'py>,
    parts: Vec<Vec<f64>>,
    inner: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let chains = parts.len();
    let mut shape = vec![chains];
    shape.extend_from_slice(inner);
    let mut parts = parts.into_iter();
    let flat = if chains == 1 {
        parts.next().unwrap_or_default()
    } else {
        let total: usize = shape.iter().product();
        let mut flat: Vec<f64> = Vec::new();
        flat.try_reserve_exact(total).map_err(|_| {
            PyMemoryError::new_err(format!(
                "cannot allocate {:.1} GB for the draws; use fewer draws or chains",
                total as f64 * 8.0 / 1e9
            ))
        })?;
        for part in parts {
            flat.extend_from_slice(&part);
        }
        flat
    };
    Ok(flat.into_pyarray(py).reshape(shape)?.into_any())
}

fn stat_array<'py>(py: Python<'py>, cols: Vec<&Stat>, draws: usize) -> PyResult<Bound<'py, PyAny>> {
    let width = cols[0].width;
    let inner: Vec<usize> = if width == 1 {
        vec![draws]
    } else {
        vec![draws, width]
    };
    macro_rules! arm {
        ($variant:ident) => {{
            let parts: Vec<_> = cols
                .iter()
                .map(|c| match &c.values {
                    StatValues::$variant(v) => Ok(v.as_slice()),
                    _ => Err(PyRuntimeError::new_err(
                        "a sample statistic changed type between chains",
                    )),
                })
                .collect::<PyResult<_>>()?;
            stacked(py, parts, &inner)
        }};
    }
    match &cols[0].values {
        StatValues::F64(_) => arm!(F64),
        StatValues::U64(_) => arm!(U64),
        StatValues::I64(_) => arm!(I64),
        StatValues::Bool(_) => arm!(Bool),
    }
}

fn to_python<'py>(
    py: Python<'py>,
    mut out: Vec<ChainOutput>,
    n_exp: usize,
    n_dim: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let draws = out[0].n_draws;
    let taken = out
        .iter_mut()
        .map(|c| std::mem::take(&mut c.draws))
        .collect();
    d.set_item("draws", stacked_owned(py, taken, &[draws, n_exp])?)?;
    if !out[0].unconstrained.is_empty() {
        let taken = out
            .iter_mut()
            .map(|c| std::mem::take(&mut c.unconstrained))
            .collect();
        d.set_item("unconstrained", stacked_owned(py, taken, &[draws, n_dim])?)?;
    }
    let stats = PyDict::new(py);
    for (name, _) in &out[0].stats {
        let cols: Option<Vec<&Stat>> = out
            .iter()
            .map(|c| c.stats.iter().find(|(n, _)| n == name).map(|(_, s)| s))
            .collect();
        // Kept only where every chain recorded it with one width.
        if let Some(cols) = cols {
            if cols.iter().all(|c| c.width == cols[0].width) {
                stats.set_item(name, stat_array(py, cols, draws)?)?;
            }
        }
    }
    d.set_item("stats", stats)?;
    let fin = PyDict::new(py);
    for (name, v0) in &out[0].final_stats {
        let parts: Option<Vec<&[f64]>> = out
            .iter()
            .map(|c| {
                c.final_stats
                    .iter()
                    .find(|(n, v)| n == name && v.len() == v0.len())
                    .map(|(_, v)| v.as_slice())
            })
            .collect();
        if let Some(parts) = parts {
            fin.set_item(name, stacked(py, parts, &[v0.len()])?)?;
        }
    }
    d.set_item("final_stats", fin)?;
    let warm = PyDict::new(py);
    let tune = out[0].warmup_n_steps.len();
    warm.set_item(
        "n_steps",
        stacked(
            py,
            out.iter().map(|c| c.warmup_n_steps.as_slice()).collect(),
            &[tune],
        )?,
    )?;
    warm.set_item(
        "diverging",
        stacked(
            py,
            out.iter().map(|c| c.warmup_diverging.as_slice()).collect(),
            &[tune],
        )?,
    )?;
    warm.set_item(
        "step_size",
        stacked(
            py,
            out.iter().map(|c| c.warmup_step_size.as_slice()).collect(),
            &[tune],
        )?,
    )?;
    d.set_item("warmup", warm)?;
    let grads: Vec<u64> = out.iter().map(|c| c.gradients).collect();
    d.set_item("gradients", grads.into_pyarray(py))?;
    let secs: Vec<f64> = out.iter().map(|c| c.seconds).collect();
    d.set_item("seconds", secs.into_pyarray(py))?;
    let cpu: Vec<f64> = out.iter().map(|c| c.cpu_seconds).collect();
    d.set_item("cpu_seconds", cpu.into_pyarray(py))?;
    Ok(d)
}

/// Per chain: (draws done incl. warmup, draws in all, divergences after warmup,
/// tuning, step size, gradient evaluations, started, finished).
fn progress_list<'py>(py: Python<'py>, shared: &Shared) -> PyResult<Bound<'py, PyList>> {
    let total = shared.total.load(Ordering::Relaxed);
    let rows: Vec<_> = shared
        .chains
        .iter()
        .map(|c| {
            (
                c.draws.load(Ordering::Relaxed),
                total,
                c.divergences.load(Ordering::Relaxed),
                c.tuning.load(Ordering::Relaxed),
                c.step_size(),
                c.gradients.load(Ordering::Relaxed),
                c.started.load(Ordering::Relaxed),
                c.finished.load(Ordering::Relaxed),
            )
        })
        .collect();
    PyList::new(py, rows)
}

/// NUTS (nuts-rs, nutpie's defaults unless set here) on the fused log-density.
///
/// Chains run on up to `cores` threads without the GIL; `progress(rows)`, if
/// given, is called about every `progress_interval` seconds with one tuple per
/// chain (draws done incl. warmup, total, divergences, tuning, step size,
/// gradient evaluations, started, finished). Ctrl-C stops every chain and
/// raises KeyboardInterrupt once their threads have ended; so does
/// `cancelled()`, if given, returning true (checked as often as signals).
///
/// `keep`: ranges `[start, end)` of the expanded vector each draw stores (default all).
///
/// `check`: ranges of the stored draw whose columns decide convergence. With `max_draws`
/// above `draws`, the chains continue in rounds of `extend_by` draws until every checked
/// column has R-hat below `max_rhat` and bulk ESS at least `min_ess_bulk`, or until
/// `max_draws`; the result's `convergence` holds {rhat, ess_bulk, ess_tail} of the checked
/// columns over the final draws (also computed, without extending, when only `check` is
/// given). The progress rows' totals grow with each round.
///
/// `pool`: a `CorePool` shared with other runs; the chains draw only while they hold one
/// of its cores (besides this run's `cores`).
///
/// Returns a dict: `draws` (chains, draws, n_kept), optionally
/// `unconstrained` (chains, draws, n_dim), `stats` {name: (chains, draws)},
/// `final_stats` {name: (chains, n)}, `warmup` {n_steps, diverging,
/// step_size: (chains, tune)}, `gradients`, `seconds` and `cpu_seconds` (chains,: the
/// chains' wall and thread CPU time drawing), and `convergence`
/// when `check` was given.
#[pyfunction]
#[pyo3(signature = (problem, *, init, draws=1000, tune=1000, chains=2, cores=2, seed=0,
                    target_accept=0.8, maxdepth=10, jitter=1.0, store_unconstrained=false,
                    progress=None, progress_interval=0.1, low_rank=false, cancelled=None,
                    keep=None, check=None, max_rhat=1.01, min_ess_bulk=0.0, extend_by=500,
                    max_draws=None, pool=None))]
#[allow(clippy::too_many_arguments)]
pub fn sample_nuts<'py>(
    py: Python<'py>,
    problem: &PyMmmProblem,
    init: Vec<f64>,
    draws: u64,
    tune: u64,
    chains: usize,
    cores: usize,
    seed: u64,
    target_accept: f64,
    maxdepth: u64,
    jitter: f64,
    store_unconstrained: bool,
    progress: Option<Bound<'py, PyAny>>,
    progress_interval: f64,
    low_rank: bool,
    cancelled: Option<Bound<'py, PyAny>>,
    keep: Option<Vec<(usize, usize)>>,
    check: Option<Vec<(usize, usize)>>,
    max_rhat: f64,
    min_ess_bulk: f64,
    extend_by: u64,
    max_draws: Option<u64>,
    pool: Option<PyRef<'py, PyCorePool>>,
) -> PyResult<Bound<'py, PyDict>> {
    if !(progress_interval.is_finite() && progress_interval > 0.0) {
        return Err(value_error(
            "progress_interval",
            "must be a positive number of seconds",
        ));
    }
    // Checked here, before anything is sized by them (the rest in `RunSettings::check`).
    if chains == 0 || chains > MAX_CHAINS {
        return Err(value_error(
            "chains",
            format!("must be in 1..={MAX_CHAINS}, got {chains}"),
        ));
    }
    let max_draws = max_draws.unwrap_or(draws);
    if max_draws < draws {
        return Err(value_error(
            "max_draws",
            format!("must be at least draws ({draws}), got {max_draws}"),
        ));
    }
    if tune.checked_add(max_draws).is_none_or(|n| n > MAX_DRAWS) {
        return Err(value_error(
            "draws",
            format!("tune + draws must be at most {MAX_DRAWS}"),
        ));
    }
    if check.is_some() && !(max_rhat.is_finite() && max_rhat > 1.0 && min_ess_bulk >= 0.0) {
        return Err(value_error(
            "max_rhat",
            format!("max_rhat must be above 1 and min_ess_bulk at least 0, got {max_rhat} and {min_ess_bulk}"),
        ));
    }
    if check.is_none() && max_draws > draws {
        return Err(value_error(
            "max_draws",
            "extending the draws needs `check` (the columns whose convergence decides)",
        ));
    }
    if check.is_some() && extend_by == 0 {
        return Err(value_error("extend_by", "must be at least 1"));
    }
    let settings = RunSettings {
        draws,
        tune,
        chains,
        cores,
        seed,
        target_accept,
        maxdepth,
        init,
        jitter,
        store_unconstrained,
        low_rank,
        keep: keep.unwrap_or_default(),
        extend: check.map(|check| Extension {
            check,
            max_rhat,
            min_ess_bulk,
            step: extend_by,
            max_draws,
        }),
        pool: pool.map(|p| Arc::clone(&p.0)),
    };
    let settings_checked = settings.extend.is_some();
    let p = problem.shared();
    let (n_exp, n_dim) = (settings.n_stored(p.n_expanded()), p.n_dim());
    let shared = Arc::new(Shared::new(chains));
    shared
        .total
        .store((tune + draws) as usize, Ordering::Relaxed);
    // Set when the sampler thread ends, however it ends (a guard, so that a panic
    // cannot leave the waiting thread asleep); the waiting thread sleeps on the condvar.
    let finished = Arc::new((Mutex::new(false), Condvar::new()));
    struct NotifyOnDrop(Arc<(Mutex<bool>, Condvar)>);
    impl Drop for NotifyOnDrop {
        fn drop(&mut self) {
            let (lock, cv) = &*self.0;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
    }
    let worker = {
        let shared = Arc::clone(&shared);
        let notify = NotifyOnDrop(Arc::clone(&finished));
        std::thread::Builder::new()
            .name("fastmmm-sampler".into())
            .spawn(move || {
                let _notify = notify;
                sample(p, &settings, &shared)
            })
            .map_err(|e| {
                PyRuntimeError::new_err(format!("could not start the sampler thread: {e}"))
            })?
    };
    // Signals are looked for at least every 0.1 s; the callback runs every `progress_interval`.
    let report_every = Duration::from_secs_f64(progress_interval.max(0.01));
    let slice = report_every.min(Duration::from_millis(100));
    let mut last_report = Instant::now();
    // Wait in slices; between them look for Ctrl-C and report progress. Any Python error
    // there stops the chains (they end at their next log-density evaluation) before it
    // is raised.
    let mut failure: Option<PyErr> = None;
    loop {
        let done = py.detach(|| {
            let (lock, cv) = &*finished;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = cv
                .wait_timeout_while(guard, slice, |done| !*done)
                .unwrap_or_else(|e| e.into_inner());
            *guard
        });
        if done {
            break;
        }
        // Signals reach only the main thread; `cancelled` lets a run on another thread
        // (a batch of brands) be stopped by whoever caught the Ctrl-C.
        let cancel = match &cancelled {
            Some(f) => f.call0().and_then(|v| v.is_truthy()),
            None => Ok(false),
        };
        if let Err(e) = py.check_signals() {
            failure = Some(e);
        } else if !matches!(cancel, Ok(false)) {
            failure = Some(match cancel {
                Err(e) => e,
                _ => PyKeyboardInterrupt::new_err("sampling was cancelled"),
            });
        } else if let Some(cb) = progress
            .as_ref()
            .filter(|_| last_report.elapsed() >= report_every)
        {
            last_report = Instant::now();
            if let Err(e) = progress_list(py, &shared).and_then(|rows| cb.call1((rows,))) {
                failure = Some(e);
            }
        }
        if failure.is_some() {
            shared.request_stop();
            break;
        }
    }
    let joined = py.detach(|| worker.join());
    if let Some(e) = failure {
        return Err(e);
    }
    let out = joined.map_err(|_| PyRuntimeError::new_err("the sampler thread panicked"))??;
    if let Some(cb) = &progress {
        cb.call1((progress_list(py, &shared)?,))?;
    }
    let d = to_python(py, out.chains, n_exp, n_dim)?;
    if settings_checked {
        d.set_item("convergence", convergence_dict(py, &out.checked)?)?;
    }
    Ok(d)
}

/// {rhat, ess_bulk, ess_tail}: (n,) arrays of the checked columns.
fn convergence_dict<'py>(py: Python<'py>, stats: &[ColumnStats]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let pick =
        |f: fn(&ColumnStats) -> f64| stats.iter().map(f).collect::<Vec<f64>>().into_pyarray(py);
    d.set_item("rhat", pick(|c| c.rhat))?;
    d.set_item("ess_bulk", pick(|c| c.ess_bulk))?;
    d.set_item("ess_tail", pick(|c| c.ess_tail))?;
    Ok(d)
}
