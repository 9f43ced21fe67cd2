//! NUTS over the fused log-density, driven by `nuts-rs` (the sampler inside
//! nutpie, pinned in Cargo.lock) through its public chain API.
//!
//! The chain loop is ours: chains run on a small pool of scoped threads (one
//! chain per thread at a time, seeds streamed as nuts-rs's own `Sampler` does:
//! ChaCha8 seeded with `seed`, stream `chain + 1`), warmup draws are only
//! counted, posterior draws are expanded ([`MmmProblem::expand`]) straight
//! into one preallocated array per chain, and every chain checks a shared
//! stop flag between draws, so a cancelled run ends within one draw.
//!
//! Nothing here knows about Python: `py/sampler.rs` turns the output into
//! numpy arrays, reports progress and turns Ctrl-C into the stop flag.

use crate::convergence::{column_stats, ColumnStats};
use crate::error::KernelError;
use crate::logp::MmmProblem;
use nuts_rs::{
    Chain, CpuLogpFunc, CpuMath, CpuMathError, DiagNutsSettings, HasDims, LogpError,
    LowRankNutsSettings, Settings, Storable, Value,
};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};
use std::collections::HashMap;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The nuts-rs release this build samples with (Cargo.toml pins it exactly;
/// a test checks Cargo.lock agrees).
pub const NUTS_RS_VERSION: &str = "0.19.1";

/// Upper bounds on a run's size, checked before anything is allocated.
/// (A thread each: chains beyond `cores` wait for a core.)
pub const MAX_CHAINS: usize = 1024;
pub const MAX_DRAWS: u64 = 1 << 40;

/// Vector statistics that nuts-rs records only when the mass matrix changes
/// (a `transformation_update` event): kept at their last (adapted) value.
/// Note nuts-rs's `mass_matrix_inv` holds the adapted per-parameter standard
/// deviations (the inverse mass matrix is their square), as nutpie reports it.
const FINAL_ONLY: [&str; 4] = [
    "mass_matrix_inv",
    "transformation_mu",
    "mass_matrix_stds",
    "mass_matrix_eigvals",
];

/// What a run asks of the sampler. Everything not here is nuts-rs's default
/// diagonal-mass-matrix NUTS, the same settings `nutpie.sample` starts from.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub draws: u64,
    pub tune: u64,
    pub chains: usize,
    /// Worker threads (chains beyond this wait their turn).
    pub cores: usize,
    pub seed: u64,
    pub target_accept: f64,
    pub maxdepth: u64,
    /// The unconstrained point every chain starts near.
    pub init: Vec<f64>,
    /// Half-width of the uniform jitter added to `init` per chain and attempt
    /// (PyMC's `jitter_rvs`, which nutpie's initial point uses, is 1).
    pub jitter: f64,
    /// Also keep the unconstrained position of every posterior draw.
    pub store_unconstrained: bool,
    /// Adapt a low-rank mass matrix (nutpie's `low_rank_modified_mass_matrix`): the diagonal
    /// plus the leading eigenvectors of the draws' and gradients' covariance, for posteriors
    /// with strong correlations (collinear channels). Default: diagonal.
    pub low_rank: bool,
    /// Ranges `[start, end)` of the expanded vector that each draw stores, in order (a large
    /// panel leaves out its per-cell contributions, recomputed from the parameters when
    /// asked for); empty: all of it.
    pub keep: Vec<(usize, usize)>,
    /// Continue the chains until their draws pass the convergence checks (None: exactly
    /// `draws`).
    pub extend: Option<Extension>,
    /// Cores this run shares with others running beside it (a batch's brands): its chains
    /// draw only while they hold one of the pool's cores, besides the run's own `cores`.
    pub pool: Option<Arc<CorePool>>,
}

/// Cores shared by concurrent runs: at most `cores` chains of all the runs holding the pool
/// draw at once. Runs side by side each limited to a fixed share leave cores idle once some
/// of them end (the last brand of a batch would draw its chains one after another while
/// the other cores wait); drawing from one pool, a chain starts as soon as any core frees.
#[derive(Debug)]
pub struct CorePool {
    cores: usize,
    /// Cores held now, and the most held at once.
    held: Mutex<(usize, usize)>,
    freed: Condvar,
}

impl CorePool {
    pub fn new(cores: usize) -> CorePool {
        CorePool {
            cores: cores.max(1),
            held: Mutex::new((0, 0)),
            freed: Condvar::new(),
        }
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The most chains (of all its runs) that have drawn at once.
    pub fn peak(&self) -> usize {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free core (None once `stopped()` says so); the core is held until the
    /// returned guard drops.
    fn acquire(&self, stopped: impl Fn() -> bool) -> Option<PoolCore<'_>> {
        let mut h = self.lock();
        while h.0 >= self.cores {
            if stopped() {
                // A core freed for this waiter goes to the next one instead.
                self.freed.notify_one();
                return None;
            }
            h = self
                .freed
                .wait_timeout(h, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        h.0 += 1;
        h.1 = h.1.max(h.0);
        Some(PoolCore(self))
    }
}

/// One core of a [`CorePool`], given back when dropped (however the round ends).
struct PoolCore<'a>(&'a CorePool);

impl Drop for PoolCore<'_> {
    fn drop(&mut self) {
        let mut h = self.0.lock();
        h.0 = h.0.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Extending a run until it has converged: after the planned draws, and after every `step`
/// more per chain, R-hat and bulk ESS of the `check` columns are computed over all chains;
/// the run ends when every column passes or at `max_draws` per chain. The chains continue
/// where they were (adapted, no new warmup): a run that converges at once costs one check.
#[derive(Clone, Debug)]
pub struct Extension {
    /// Ranges `[start, end)` of a stored draw (after `keep`) whose columns are checked.
    pub check: Vec<(usize, usize)>,
    /// Every checked column's R-hat below this.
    pub max_rhat: f64,
    /// Every checked column's bulk ESS (all chains together) at least this.
    pub min_ess_bulk: f64,
    /// Posterior draws per chain each round adds.
    pub step: u64,
    /// At most this many posterior draws per chain.
    pub max_draws: u64,
}

impl RunSettings {
    /// Values stored per draw of a problem expanding to `n_exp`.
    pub fn n_stored(&self, n_exp: usize) -> usize {
        if self.keep.is_empty() {
            n_exp
        } else {
            self.keep.iter().map(|(a, b)| b - a).sum()
        }
    }

    fn diag(&self) -> DiagNutsSettings {
        let mut s = DiagNutsSettings {
            num_tune: self.tune,
            num_draws: self.draws,
            num_chains: self.chains,
            seed: self.seed,
            maxdepth: self.maxdepth,
            ..Default::default()
        };
        s.adapt_options.step_size_settings.target_accept = self.target_accept;
        s.adapt_options.mass_matrix_options.store_mass_matrix = true;
        s
    }

    fn low_rank(&self) -> LowRankNutsSettings {
        let mut s = LowRankNutsSettings {
            num_tune: self.tune,
            num_draws: self.draws,
            num_chains: self.chains,
            seed: self.seed,
            maxdepth: self.maxdepth,
            ..Default::default()
        };
        s.adapt_options.step_size_settings.target_accept = self.target_accept;
        s.adapt_options.mass_matrix_options.store_mass_matrix = true;
        s
    }

    fn check(&self, n_dim: usize, n_exp: usize) -> Result<(), String> {
        let mut end = 0;
        for &(a, b) in &self.keep {
            if a < end || b <= a || b > n_exp {
                return Err(format!(
                    "keep: ordered, non-overlapping ranges within the {n_exp} expanded values"
                ));
            }
            end = b;
        }
        if self.init.len() != n_dim {
            return Err(format!(
                "init: expected {n_dim} values (the problem's dimension), got {}",
                self.init.len()
            ));
        }
        if self.chains == 0 || self.draws == 0 {
            return Err("need at least one chain and one draw".into());
        }
        if self.chains > MAX_CHAINS {
            return Err(format!("chains: at most {MAX_CHAINS}, got {}", self.chains));
        }
        if self
            .tune
            .checked_add(self.draws)
            .is_none_or(|n| n > MAX_DRAWS)
        {
            return Err(format!(
                "tune + draws: at most {MAX_DRAWS}, got {} + {}",
                self.tune, self.draws
            ));
        }
        if self.jitter < 0.0 {
            return Err(format!("jitter: must be >= 0, got {}", self.jitter));
        }
        if !(self.target_accept > 0.0 && self.target_accept < 1.0) {
            return Err(format!(
                "target_accept: must be in (0, 1), got {}",
                self.target_accept
            ));
        }
        if self.maxdepth == 0 || self.maxdepth > 30 {
            return Err(format!(
                "maxdepth: must be in 1..=30, got {}",
                self.maxdepth
            ));
        }
        if !self.init.iter().all(|v| v.is_finite()) || !self.jitter.is_finite() {
            return Err("init and jitter must be finite".into());
        }
        if let Some(e) = &self.extend {
            let n_keep = self.n_stored(n_exp);
            let mut end = 0;
            for &(a, b) in &e.check {
                if a < end || b <= a || b > n_keep {
                    return Err(format!(
                        "check: ordered, non-overlapping ranges within the {n_keep} stored values"
                    ));
                }
                end = b;
            }
            if e.max_draws < self.draws || e.step == 0 {
                return Err(format!(
                    "max_draws must be at least draws ({}) and the step positive, got {} and {}",
                    self.draws, e.max_draws, e.step
                ));
            }
            if self
                .tune
                .checked_add(e.max_draws)
                .is_none_or(|n| n > MAX_DRAWS)
            {
                return Err(format!("tune + max_draws: at most {MAX_DRAWS}"));
            }
            if !(e.max_rhat > 1.0 && e.min_ess_bulk >= 0.0) {
                return Err(format!(
                    "max_rhat must be above 1 and min_ess_bulk at least 0, got {} and {}",
                    e.max_rhat, e.min_ess_bulk
                ));
            }
        }
        Ok(())
    }
}

/// A log-density evaluation that did not give finite numbers: nuts-rs treats
/// it as a divergent (rejected) step, as nutpie does for the same status.
/// `Stopped` (the run was cancelled) ends the current trajectory at once, so
/// a long tree on a large model does not delay a Ctrl-C.
#[derive(Debug, thiserror::Error)]
pub enum DensityError {
    #[error("the log-density or its gradient is not finite")]
    NotFinite,
    #[error("sampling was stopped")]
    Stopped,
    #[error("{0}")]
    Problem(#[from] KernelError),
}

impl LogpError for DensityError {
    fn is_recoverable(&self) -> bool {
        matches!(self, DensityError::NotFinite)
    }
}

/// The fused log-density as nuts-rs's `CpuLogpFunc`.
#[derive(Clone)]
pub struct Density {
    problem: Arc<MmmProblem>,
    stop: Arc<AtomicBool>,
}

impl HasDims for Density {
    fn dim_sizes(&self) -> HashMap<String, u64> {
        HashMap::from([
            (
                "unconstrained_parameter".to_string(),
                self.problem.n_dim() as u64,
            ),
            ("dim".to_string(), self.problem.n_expanded() as u64),
        ])
    }
}

impl CpuLogpFunc for Density {
    type LogpError = DensityError;
    type FlowParameters = ();
    type ExpandedVector = Vec<f64>;

    fn dim(&self) -> usize {
        self.problem.n_dim()
    }

    fn logp(&mut self, position: &[f64], gradient: &mut [f64]) -> Result<f64, DensityError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(DensityError::Stopped);
        }
        let lp = self.problem.logp_grad(position, gradient)?;
        if lp.is_finite() && gradient.iter().all(|g| g.is_finite()) {
            Ok(lp)
        } else {
            Err(DensityError::NotFinite)
        }
    }

    /// Not used: the chain loop expands posterior draws itself, into its own array.
    fn expand_vector<R: Rng + ?Sized>(
        &mut self,
        _rng: &mut R,
        _array: &[f64],
    ) -> Result<Vec<f64>, CpuMathError> {
        Ok(Vec::new())
    }
}

/// Progress of one chain, written by its thread and read by anyone.
#[derive(Default)]
pub struct ChainProgress {
    pub started: AtomicBool,
    pub finished: AtomicBool,
    /// Draws done, warmup included.
    pub draws: AtomicUsize,
    pub divergences: AtomicUsize,
    pub tuning: AtomicBool,
    step_size_bits: AtomicU64,
    pub gradients: AtomicU64,
}

impl ChainProgress {
    pub fn step_size(&self) -> f64 {
        f64::from_bits(self.step_size_bits.load(Ordering::Relaxed))
    }
}

/// Shared between the chains and whoever watches them.
pub struct Shared {
    pub chains: Vec<ChainProgress>,
    /// Draws per chain the run now plans, warmup included (an extension raises it).
    pub total: AtomicUsize,
    /// Set to stop every chain: its current trajectory ends at the next
    /// log-density evaluation.
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    pub fn new(chains: usize) -> Self {
        Shared {
            chains: (0..chains).map(|_| ChainProgress::default()).collect(),
            total: AtomicUsize::new(0),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One sample statistic over a chain's posterior draws: `width` values per draw.
#[derive(Clone, Debug)]
pub enum StatValues {
    F64(Vec<f64>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

#[derive(Clone, Debug)]
pub struct Stat {
    pub values: StatValues,
    pub width: usize,
}

impl Stat {
    /// Appends one draw's value; false when it does not fit the column.
    fn push(&mut self, v: Value) -> bool {
        let n = match (&mut self.values, v) {
            (StatValues::F64(c), Value::ScalarF64(x)) => {
                c.push(x);
                1
            }
            (StatValues::F64(c), Value::F64(x)) => {
                let n = x.len();
                c.extend(x);
                n
            }
            (StatValues::U64(c), Value::ScalarU64(x)) => {
                c.push(x);
                1
            }
            (StatValues::U64(c), Value::U64(x)) => {
                let n = x.len();
                c.extend(x);
                n
            }
            (StatValues::I64(c), Value::ScalarI64(x)) => {
                c.push(x);
                1
            }
            (StatValues::Bool(c), Value::ScalarBool(x)) => {
                c.push(x);
                1
            }
            _ => return false,
        };
        n == self.width
    }

    fn new(v: &Value) -> Option<Stat> {
        let (values, width) = match v {
            Value::ScalarF64(_) => (StatValues::F64(Vec::new()), 1),
            Value::F64(x) => (StatValues::F64(Vec::new()), x.len()),
            Value::ScalarU64(_) => (StatValues::U64(Vec::new()), 1),
            Value::U64(x) => (StatValues::U64(Vec::new()), x.len()),
            Value::ScalarI64(_) => (StatValues::I64(Vec::new()), 1),
            Value::ScalarBool(_) => (StatValues::Bool(Vec::new()), 1),
            _ => return None,
        };
        Some(Stat { values, width })
    }
}

/// What one chain returns.
pub struct ChainOutput {
    /// Posterior draws expanded: (draws, n_expanded), row-major.
    pub draws: Vec<f64>,
    /// Unconstrained positions (draws, n_dim) when asked for, else empty.
    pub unconstrained: Vec<f64>,
    /// Per posterior draw, by nuts-rs's (= nutpie's) names. A statistic that
    /// is not recorded on every draw (divergence details) is left out.
    pub stats: Vec<(String, Stat)>,
    /// Vector statistics recorded on some draws only, at their last value:
    /// `mass_matrix_inv` and `transformation_mu` of the adapted mass matrix.
    pub final_stats: Vec<(String, Vec<f64>)>,
    /// Per warmup draw: leapfrog steps, divergent, step size.
    pub warmup_n_steps: Vec<u64>,
    pub warmup_diverging: Vec<bool>,
    pub warmup_step_size: Vec<f64>,
    /// Draws completed (less than asked when stopped).
    pub n_draws: usize,
    /// Gradient evaluations over the whole chain, warmup included.
    pub gradients: u64,
    /// Wall seconds the chain drew (waits for a core left out).
    pub seconds: f64,
    /// CPU seconds of the chain's thread while it drew (its wall `seconds` less the time
    /// the operating system gave its core to other threads); NaN where not measured.
    pub cpu_seconds: f64,
}

/// CPU time of the calling thread, in seconds (NaN where the platform has no such clock).
fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only `ts`, a valid timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    f64::NAN
}

/// Why a run ended without all its draws.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("{0}")]
    Settings(String),
    #[error("sampling was stopped")]
    Stopped,
    #[error("chain {chain}: {msg}")]
    Chain { chain: usize, msg: String },
}

/// A chain between rounds of a run: its nuts-rs state and what it has drawn so far, so
/// that an extended run continues the same chains (adapted, no new warmup).
/// (nuts-rs's chains are not `Send`: a chain lives on the thread that started it.)
trait ChainRun {
    /// Draws into `out` until it holds `draws` posterior draws (the warmup first).
    fn advance(
        &mut self,
        out: &mut ChainOutput,
        draws: usize,
        shared: &Shared,
    ) -> Result<(), SampleError>;
    /// Leaves out of `out` the statistics not recorded on every draw (kept at their last
    /// value instead) and any space not drawn into.
    fn finish(&self, out: &mut ChainOutput);
}

struct Running<'a, C> {
    chain: C,
    id: usize,
    problem: &'a MmmProblem,
    s: &'a RunSettings,
    /// Iterations done, warmup included.
    done: usize,
    /// The whole expanded row, when `keep` stores only part of it.
    full: Vec<f64>,
    /// Statistics not recorded on every draw (kept at their last value instead).
    dropped: Vec<String>,
}

impl<C> Running<'_, C> {
    fn fail(&self, msg: String) -> SampleError {
        SampleError::Chain {
            chain: self.id,
            msg,
        }
    }
}

/// Starts chain `chain_id`: nuts-rs's chain, seeded as its own `Sampler` seeds it, at a
/// jittered initial point with a finite log-density, and its output buffers.
fn start_chain<'a>(
    problem: &'a Arc<MmmProblem>,
    s: &'a RunSettings,
    chain_id: usize,
    shared: &Shared,
) -> Result<(Box<dyn ChainRun + 'a>, ChainOutput), SampleError> {
    if s.low_rank {
        start_chain_with(problem, s, s.low_rank(), chain_id, shared)
    } else {
        start_chain_with(problem, s, s.diag(), chain_id, shared)
    }
}

fn start_chain_with<'a, S: Settings>(
    problem: &'a Arc<MmmProblem>,
    s: &'a RunSettings,
    settings: S,
    chain_id: usize,
    shared: &Shared,
) -> Result<(Box<dyn ChainRun + 'a>, ChainOutput), SampleError>
where
    S::Chain<CpuMath<Density>>: 'a,
{
    let fail = |msg: String| SampleError::Chain {
        chain: chain_id,
        msg,
    };
    if shared.stopped() {
        return Err(SampleError::Stopped);
    }
    shared.chains[chain_id]
        .started
        .store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    rng.set_stream(chain_id as u64 + 1);
    let math = CpuMath::new(Density {
        problem: Arc::clone(problem),
        stop: Arc::clone(&shared.stop),
    });
    let mut chain = settings
        .new_chain(chain_id as u64, math, &mut rng)
        .map_err(|e| fail(format!("{e:#}")))?;

    // Initial point: init + U(-jitter, jitter), retried (as nuts-rs's Sampler does) where the
    // log-density is not finite.
    let n_dim = problem.n_dim();
    let mut position = vec![0.0; n_dim];
    let mut last_err = None;
    for _ in 0..500 {
        if shared.stopped() {
            return Err(SampleError::Stopped);
        }
        for (p, &x0) in position.iter_mut().zip(&s.init) {
            *p = if s.jitter > 0.0 {
                x0 + rng.random_range(-s.jitter..s.jitter)
            } else {
                x0
            };
        }
        match chain.set_position(&position) {
            Ok(()) => {
                last_err = None;
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(e) = last_err {
        return Err(fail(format!(
            "no finite log-density at 500 jittered initial points ({e:#})"
        )));
    }

    let n_exp = problem.n_expanded();
    let draws = s.draws as usize;
    let tune = s.tune as usize;
    let out = ChainOutput {
        draws: zeros(draws.saturating_mul(s.n_stored(n_exp))).map_err(&fail)?,
        unconstrained: if s.store_unconstrained {
            zeros(draws.saturating_mul(n_dim)).map_err(&fail)?
        } else {
            Vec::new()
        },
        stats: Vec::new(),
        final_stats: Vec::new(),
        warmup_n_steps: reserved(tune).map_err(&fail)?,
        warmup_diverging: reserved(tune).map_err(&fail)?,
        warmup_step_size: reserved(tune).map_err(&fail)?,
        n_draws: 0,
        gradients: 0,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_seconds() - cpu_start,
    };
    let run = Running {
        chain,
        id: chain_id,
        problem: problem.as_ref(),
        s,
        done: 0,
        full: if s.keep.is_empty() {
            Vec::new()
        } else {
            vec![0.0; n_exp]
        },
        dropped: Vec::new(),
    };
    Ok((Box::new(run), out))
}

/// `v` grown (zero-filled) to `n` values, or an error (never an abort) when the memory is
/// not there.
fn grow(v: &mut Vec<f64>, n: usize) -> Result<(), String> {
    if n > v.len() {
        v.try_reserve_exact(n - v.len()).map_err(|_| {
            format!(
                "cannot allocate {:.1} GB for the draws; use fewer draws or chains",
                n as f64 * 8.0 / 1e9
            )
        })?;
        v.resize(n, 0.0);
    }
    Ok(())
}

impl<C: Chain<CpuMath<Density>>> ChainRun for Running<'_, C> {
    fn advance(
        &mut self,
        out: &mut ChainOutput,
        draws: usize,
        shared: &Shared,
    ) -> Result<(), SampleError> {
        let start = Instant::now();
        let cpu_start = thread_cpu_seconds();
        let (s, problem) = (self.s, self.problem);
        let (n_exp, n_dim) = (problem.n_expanded(), problem.n_dim());
        let n_keep = s.n_stored(n_exp);
        let tune = s.tune as usize;
        grow(&mut out.draws, draws.saturating_mul(n_keep)).map_err(|m| self.fail(m))?;
        if s.store_unconstrained {
            grow(&mut out.unconstrained, draws.saturating_mul(n_dim)).map_err(|m| self.fail(m))?;
        }
        let progress = &shared.chains[self.id];
        progress.finished.store(false, Ordering::Relaxed);
        let total = tune + draws;
        while self.done < total {
            if shared.stopped() {
                break;
            }
            let i = self.done;
            let warm = i < tune;
            // A draw that failed because the run was being stopped is a stop, not the chain's error.
            let draw_error = |e: anyhow::Error| {
                if shared.stopped() {
                    SampleError::Stopped
                } else {
                    SampleError::Chain {
                        chain: self.id,
                        msg: format!("{e:#}"),
                    }
                }
            };
            let info = if warm {
                let (_, info) = self.chain.draw().map_err(draw_error)?;
                out.warmup_n_steps.push(info.num_steps);
                out.warmup_diverging.push(info.diverging);
                out.warmup_step_size.push(info.step_size);
                info
            } else {
                let (pos, _, mut stats, info) = self.chain.expanded_draw().map_err(draw_error)?;
                let d = i - tune;
                let row = &mut out.draws[d * n_keep..(d + 1) * n_keep];
                let expanded = if s.keep.is_empty() {
                    problem.expand(&pos, row)
                } else {
                    problem.expand(&pos, &mut self.full).map(|()| {
                        let mut o = 0;
                        for &(a, b) in &s.keep {
                            row[o..o + b - a].copy_from_slice(&self.full[a..b]);
                            o += b - a;
                        }
                    })
                };
                expanded.map_err(|e| self.fail(e.to_string()))?;
                if s.store_unconstrained {
                    out.unconstrained[d * n_dim..(d + 1) * n_dim].copy_from_slice(&pos);
                }
                let math = self.chain.math();
                let dims = From::from(math.deref());
                record_stats(
                    &mut out.stats,
                    &mut self.dropped,
                    &mut out.final_stats,
                    stats.get_all(&dims),
                    d,
                );
                out.n_draws = d + 1;
                info
            };
            self.done += 1;
            out.gradients += info.num_gradients;
            progress.draws.store(i + 1, Ordering::Relaxed);
            progress.tuning.store(warm, Ordering::Relaxed);
            progress
                .step_size_bits
                .store(info.step_size.to_bits(), Ordering::Relaxed);
            progress.gradients.store(out.gradients, Ordering::Relaxed);
            if info.diverging && !warm {
                progress.divergences.fetch_add(1, Ordering::Relaxed);
            }
        }
        out.seconds += start.elapsed().as_secs_f64();
        out.cpu_seconds += thread_cpu_seconds() - cpu_start;
        progress.finished.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn finish(&self, out: &mut ChainOutput) {
        out.stats.retain(|(name, _)| !self.dropped.contains(name));
        out.final_stats
            .retain(|(name, _)| self.dropped.contains(name));
        out.draws
            .truncate(out.n_draws * self.s.n_stored(self.problem.n_expanded()));
        if self.s.store_unconstrained {
            out.unconstrained
                .truncate(out.n_draws * self.problem.n_dim());
        }
    }
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|m| m.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a sampler thread panicked".into())
}

/// An empty vector with room for `n` values, or an error (never an abort) when
/// the memory is not there.
fn reserved<T>(n: usize) -> Result<Vec<T>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        format!(
            "cannot allocate {:.1} GB for the draws; use fewer draws or chains",
            (n as f64) * std::mem::size_of::<T>() as f64 / 1e9
        )
    })?;
    Ok(v)
}

fn zeros(n: usize) -> Result<Vec<f64>, String> {
    let mut v = reserved(n)?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Adds draw `d`'s statistics to the columns. A statistic missing on some
/// draw (an event such as a mass-matrix update), or whose shape changes, goes
/// to `dropped`; its last vector value is kept in `last` (the adapted mass
/// matrix arrives on the first posterior draw only).
fn record_stats(
    cols: &mut Vec<(String, Stat)>,
    dropped: &mut Vec<String>,
    last: &mut Vec<(String, Vec<f64>)>,
    values: Vec<(&str, Option<Value>)>,
    d: usize,
) {
    for (name, value) in values {
        let Some(value) = value else {
            if !dropped.iter().any(|n| n == name) {
                dropped.push(name.to_string());
            }
            continue;
        };
        if let Value::F64(v) = &value {
            match last.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => old.clone_from(v),
                None => last.push((name.to_string(), v.clone())),
            }
        }
        if FINAL_ONLY.contains(&name) && !dropped.iter().any(|n| n == name) {
            dropped.push(name.to_string());
        }
        if dropped.iter().any(|n| n == name) {
            continue;
        }
        match cols.iter_mut().find(|(n, _)| n == name) {
            Some((_, col)) => {
                if !col.push(value) {
                    dropped.push(name.to_string());
                }
            }
            None if d == 0 => {
                if let Some(mut col) = Stat::new(&value) {
                    col.push(value);
                    cols.push((name.to_string(), col));
                }
            }
            None => dropped.push(name.to_string()),
        }
    }
}

/// What a run returns: its chains in chain order and, when it was extended until
/// converged ([`Extension`]), the statistics of the final draws' checked columns.
pub struct Run {
    pub chains: Vec<ChainOutput>,
    pub checked: Vec<ColumnStats>,
}

/// The rounds of a run, shared between the chain threads and the thread that checks the
/// draws between rounds.
struct Rounds {
    state: Mutex<RoundState>,
    changed: Condvar,
    /// Chains that may draw at once (the cores).
    workers: usize,
}

struct RoundState {
    /// Posterior draws per chain this round ends at.
    target: usize,
    /// Chains done with this round (drawn, failed or stopped).
    done: usize,
    /// No more rounds: the chains end.
    finished: bool,
    /// Chains drawing now (at most `cores`).
    running: usize,
}

/// Ends the rounds when dropped: `finished`, and a stop if the coordinator is unwinding.
struct FinishOnDrop<'a> {
    rounds: &'a Rounds,
    shared: &'a Shared,
}

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.request_stop();
        }
        self.rounds.lock().finished = true;
        self.rounds.changed.notify_all();
    }
}

impl Rounds {
    fn lock(&self) -> std::sync::MutexGuard<'_, RoundState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(
        &self,
        guard: std::sync::MutexGuard<'g, RoundState>,
    ) -> std::sync::MutexGuard<'g, RoundState> {
        self.changed
            .wait_timeout(guard, Duration::from_millis(50))
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}

/// One chain's thread: starts the chain, then per round waits for a core, draws to the
/// round's target and reports; ends when the rounds are finished or the run is stopped.
fn chain_thread(
    problem: &Arc<MmmProblem>,
    s: &RunSettings,
    c: usize,
    shared: &Shared,
    rounds: &Rounds,
    output: &Mutex<Option<ChainOutput>>,
    error: &Mutex<Option<SampleError>>,
) {
    let mut run: Option<Box<dyn ChainRun + '_>> = None;
    let mut target = rounds.lock().target;
    loop {
        let mut st = rounds.lock();
        while st.running >= rounds.workers && !shared.stopped() {
            st = rounds.wait(st);
        }
        st.running += 1;
        drop(st);
        let core = s.pool.as_ref().map(|p| p.acquire(|| shared.stopped()));
        let result = if shared.stopped() || matches!(core, Some(None)) {
            Err(SampleError::Stopped)
        } else {
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            // A panic in a chain is that chain's error, not an abort of the run.
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                if run.is_none() {
                    let (r, o) = start_chain(problem, s, c, shared)?;
                    run = Some(r);
                    *out = Some(o);
                }
                match (run.as_mut(), out.as_mut()) {
                    (Some(r), Some(o)) => r.advance(o, target, shared),
                    _ => Ok(()),
                }
            }))
            .unwrap_or_else(|payload| {
                Err(SampleError::Chain {
                    chain: c,
                    msg: format!("internal error: {}", panic_message(&*payload)),
                })
            })
        };
        drop(core); // the pool's core, for other runs' chains while this one waits
        if let Err(e) = result {
            // One failed chain ends the run: the others stop at once.
            shared.request_stop();
            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        let mut st = rounds.lock();
        st.running -= 1;
        st.done += 1;
        rounds.changed.notify_all();
        while st.target == target && !st.finished {
            st = rounds.wait(st);
        }
        // Only `finished` ends the thread: after a stop it goes round once more, through the
        // gate, and reports the new round done, so the coordinator never waits for it.
        if st.finished {
            break;
        }
        target = st.target;
    }
    if let (Some(r), Some(o)) = (
        run.as_ref(),
        output.lock().unwrap_or_else(|p| p.into_inner()).as_mut(),
    ) {
        r.finish(o);
    }
}

/// R-hat, bulk and tail ESS of the `check` columns of the chains' first `draws` stored draws.
fn checked_stats(
    outputs: &[&ChainOutput],
    check: &[(usize, usize)],
    n_keep: usize,
    draws: usize,
    threads: usize,
) -> Vec<ColumnStats> {
    let chains = outputs.len();
    let columns: Vec<usize> = check.iter().flat_map(|&(a, b)| a..b).collect();
    let column = |j: usize| {
        let mut col = Vec::with_capacity(chains * draws);
        for out in outputs {
            col.extend((0..draws).map(|d| out.draws[d * n_keep + j]));
        }
        column_stats(&col, chains, draws)
    };
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = threads.min(available).min(columns.len());
    if threads <= 1 {
        return columns.iter().map(|&j| column(j)).collect();
    }
    let per = columns.len().div_ceil(threads);
    let serial = |part: &[usize]| part.iter().map(|&j| column(j)).collect::<Vec<_>>();
    std::thread::scope(|scope| {
        // A part whose thread cannot start is computed here instead.
        let parts: Vec<_> = columns
            .chunks(per)
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || serial(part))
                    .map_err(|_| part)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(part) => serial(part),
            })
            .collect()
    })
}

/// Whether the statistics pass the extension's thresholds (NaN columns, such as R-hat of
/// one chain, left out as the Python checks leave them out).
fn converged(stats: &[ColumnStats], ext: &Extension) -> bool {
    stats.iter().all(|c| {
        (c.rhat.is_nan() || c.rhat < ext.max_rhat)
            && (c.ess_bulk.is_nan() || c.ess_bulk >= ext.min_ess_bulk)
    })
}

/// Above this many checked values (columns x chains x draws) the checks use every core.
const PARALLEL_CHECK: usize = 1 << 22;

/// Runs every chain (a thread each, at most `cores` drawing at a time) and returns them in
/// chain order. With `s.extend`, the chains then continue in rounds until their draws pass
/// the convergence checks or reach `max_draws`. Stops early (with [`SampleError::Stopped`])
/// once `shared.stop` is set.
pub fn sample(
    problem: Arc<MmmProblem>,
    s: &RunSettings,
    shared: &Shared,
) -> Result<Run, SampleError> {
    s.check(problem.n_dim(), problem.n_expanded())
        .map_err(SampleError::Settings)?;
    if shared.chains.len() != s.chains {
        return Err(SampleError::Settings(
            "progress has a slot per chain".into(),
        ));
    }
    let n_keep = s.n_stored(problem.n_expanded());
    let workers = s.cores.clamp(1, s.chains);
    // Cores beyond one per chain go to each evaluation (a large panel's media passes).
    let eval_threads = (s.cores / workers).max(1);
    shared
        .total
        .store(s.tune as usize + s.draws as usize, Ordering::Relaxed);
    let rounds = Rounds {
        state: Mutex::new(RoundState {
            target: s.draws as usize,
            done: 0,
            finished: false,
            running: 0,
        }),
        changed: Condvar::new(),
        workers,
    };
    let outputs: Vec<Mutex<Option<ChainOutput>>> =
        (0..s.chains).map(|_| Mutex::new(None)).collect();
    let errors: Vec<Mutex<Option<SampleError>>> = (0..s.chains).map(|_| Mutex::new(None)).collect();
    let mut checked = Vec::new();
    let rounds = &rounds;
    let (started, draws) = std::thread::scope(|scope| {
        let mut started = 0;
        for c in 0..s.chains {
            let (problem, output, error) = (&problem, &outputs[c], &errors[c]);
            let spawned = std::thread::Builder::new()
                .name(format!("fastmmm-chain-{c}"))
                .spawn_scoped(scope, move || {
                    crate::logp::set_eval_threads(eval_threads);
                    chain_thread(problem, s, c, shared, rounds, output, error);
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    shared.request_stop();
                    *errors[c].lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(SampleError::Chain {
                            chain: c,
                            msg: format!("could not start its thread: {e}"),
                        });
                }
            }
        }
        // However this closure ends (a panic in the checks included), the chains are told the
        // rounds are over before the scope waits for them.
        let _finish = FinishOnDrop { rounds, shared };
        // Between rounds (every chain done with one): check the draws, and go on or finish.
        let mut st = rounds.lock();
        loop {
            while st.done < started {
                st = rounds.wait(st);
            }
            let draws = st.target;
            let go_on = match (&s.extend, shared.stopped()) {
                (Some(ext), false) => {
                    let guards: Vec<_> = outputs
                        .iter()
                        .map(|o| o.lock().unwrap_or_else(|p| p.into_inner()))
                        .collect();
                    let outs: Vec<&ChainOutput> =
                        guards.iter().filter_map(|g| g.as_ref()).collect();
                    if outs.len() == s.chains && outs.iter().all(|o| o.n_draws >= draws) {
                        let n_check: usize = ext.check.iter().map(|(a, b)| b - a).sum();
                        let threads = if n_check * s.chains * draws >= PARALLEL_CHECK {
                            s.cores
                        } else {
                            1
                        };
                        checked = checked_stats(&outs, &ext.check, n_keep, draws, threads);
                        !converged(&checked, ext) && draws < ext.max_draws as usize
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !go_on || shared.stopped() {
                st.finished = true;
                rounds.changed.notify_all();
                break (started, draws);
            }
            st.target = draws
                .saturating_add(ext_step(s))
                .min(s.extend.as_ref().map_or(draws, |e| e.max_draws as usize));
            st.done = 0;
            shared
                .total
                .store(s.tune as usize + st.target, Ordering::Relaxed);
            #[cfg(test)]
            std::thread::sleep(tests::ROUND_PAUSE.with(std::cell::Cell::get));
            rounds.changed.notify_all();
        }
    });
    if started == 0 {
        return Err(SampleError::Settings(
            "could not start any sampler thread".into(),
        ));
    }
    // A chain's own failure outranks the stops it caused in the others.
    let errors: Vec<SampleError> = errors
        .into_iter()
        .filter_map(|e| e.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    if let Some(e) = errors
        .into_iter()
        .find(|e| !matches!(e, SampleError::Stopped))
    {
        return Err(e);
    }
    let chains: Vec<ChainOutput> = outputs
        .into_iter()
        .filter_map(|o| o.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    if shared.stopped()
        || started < s.chains
        || chains.len() < s.chains
        || chains.iter().any(|c| c.n_draws < draws)
    {
        return Err(SampleError::Stopped);
    }
    Ok(Run { chains, checked })
}

/// Posterior draws per chain a round of an extension adds.
fn ext_step(s: &RunSettings) -> usize {
    s.extend.as_ref().map_or(0, |e| e.step as usize)
}

/// Seconds a watcher should wait between looks at the progress.
pub const PROGRESS_TICK: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::adstock::{Adstock, AdstockKind};
    use crate::kernels::fused::Media;
    use crate::kernels::saturation::SaturationKind;
    use crate::logp::{Block, Dist, LiftData, MmmData, MmmStructure, Role, Transform};

    /// A small national problem: level, channel_share, sigma, one channel.
    fn tiny_problem() -> Arc<MmmProblem> {
        let t = 40;
        let spend: Vec<f64> = (0..t).map(|i| ((i * 7) % 5) as f64 / 4.0).collect();
        let y: Vec<f64> = (0..t)
            .map(|i| 0.5 + 0.1 * spend[i] + 0.01 * ((i % 3) as f64))
            .collect();
        let s = MmmStructure {
            g: 1,
            grouped: false,
            t,
            c: 1,
            f: 0,
            k: 0,
            media: Media {
                adstock: Adstock::new(AdstockKind::Geometric, 4, true).unwrap(),
                saturation: SaturationKind::Logistic,
            },
            relative: None,
            fixed_saturation: [None, None],
            intercept: true,
            trend: false,
            student_t: false,
            direct_beta: false,
            tvp_per_group: [false, false],
        };
        let data = MmmData {
            y,
            spend,
            trend_t: vec![0.0; t],
            fourier: vec![],
            controls: vec![],
            kappa_scale: vec![1.0],
            roas_scale: vec![],
            lift: LiftData::default(),
            tvp: [None, None],
            window: Vec::new(),
        };
        let half = |role, sigma: f64| Block {
            role,
            size: 1,
            dist: Dist::HalfNormal,
            params: vec![vec![sigma]],
            konst: vec![0.0],
            transform: Transform::Log,
            lower: vec![],
            upper: vec![],
        };
        let blocks = vec![
            Block {
                role: Role::Level,
                size: 1,
                dist: Dist::Normal,
                params: vec![vec![0.5], vec![1.0]],
                konst: vec![0.0],
                transform: Transform::Identity,
                lower: vec![],
                upper: vec![],
            },
            Block {
                role: Role::Adstock(0),
                size: 1,
                dist: Dist::Beta,
                params: vec![vec![2.0], vec![2.0]],
                konst: vec![0.0],
                transform: Transform::LogOdds,
                lower: vec![],
                upper: vec![],
            },
            Block {
                role: Role::Saturation(0),
                size: 1,
                dist: Dist::Gamma,
                params: vec![vec![3.0], vec![1.0]],
                konst: vec![0.0],
                transform: Transform::Log,
                lower: vec![],
                upper: vec![],
            },
            half(Role::ChannelShare, 0.5),
            half(Role::Sigma, 0.5),
        ];
        Arc::new(MmmProblem::new(s, data, blocks).unwrap())
    }

    fn settings(seed: u64) -> RunSettings {
        RunSettings {
            draws: 200,
            tune: 200,
            chains: 2,
            cores: 2,
            seed,
            target_accept: 0.9,
            maxdepth: 10,
            init: vec![0.5, 0.0, 1.0, -1.0, -1.0],
            jitter: 1.0,
            store_unconstrained: true,
            low_rank: false,
            keep: Vec::new(),
            extend: None,
            pool: None,
        }
    }

    #[test]
    fn same_seed_same_draws_and_stats_by_nutpie_names() {
        let p = tiny_problem();
        let a = sample(Arc::clone(&p), &settings(7), &Shared::new(2))
            .unwrap()
            .chains;
        let b = sample(Arc::clone(&p), &settings(7), &Shared::new(2))
            .unwrap()
            .chains;
        let c = sample(p, &settings(8), &Shared::new(2)).unwrap().chains;
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].draws, b[0].draws);
        assert_eq!(a[1].draws, b[1].draws);
        assert_ne!(a[0].draws, a[1].draws, "chains have their own streams");
        assert_ne!(a[0].draws, c[0].draws, "another seed, other draws");
        let names: Vec<&str> = a[0].stats.iter().map(|(n, _)| n.as_str()).collect();
        let fin: Vec<&str> = a[0].final_stats.iter().map(|(n, _)| n.as_str()).collect();
        assert!(fin.contains(&"mass_matrix_inv"), "{fin:?}");
        assert_eq!(a[0].final_stats[0].1.len(), 5);
        for want in [
            "diverging",
            "depth",
            "step_size",
            "energy",
            "n_steps",
            "logp",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(a[0].n_draws, 200);
        assert_eq!(a[0].warmup_n_steps.len(), 200);
        assert!(a[0].gradients > 400);
    }

    #[test]
    fn pinned_version_is_the_locked_one() {
        let lock = include_str!("../Cargo.lock");
        let want = format!("name = \"nuts-rs\"\nversion = \"{NUTS_RS_VERSION}\"");
        assert!(
            lock.contains(&want),
            "Cargo.lock does not lock nuts-rs {NUTS_RS_VERSION}"
        );
    }

    #[test]
    fn low_rank_mass_matrix_samples_the_same_posterior() {
        let p = tiny_problem();
        let mut s = settings(3);
        s.draws = 1000;
        s.tune = 1000;
        let diag = sample(Arc::clone(&p), &s, &Shared::new(2)).unwrap().chains;
        s.low_rank = true;
        let lr = sample(p, &s, &Shared::new(2)).unwrap().chains;
        assert_ne!(diag[0].draws, lr[0].draws);
        let fin: Vec<&str> = lr[0].final_stats.iter().map(|(n, _)| n.as_str()).collect();
        assert!(fin.contains(&"mass_matrix_stds"), "{fin:?}");
        // the level's posterior mean (first expanded value) agrees within Monte Carlo error
        let mean = |out: &[ChainOutput], n: usize| -> f64 {
            let tot: f64 = out
                .iter()
                .map(|c| (0..c.n_draws).map(|d| c.draws[d * n]).sum::<f64>())
                .sum();
            tot / out.iter().map(|c| c.n_draws).sum::<usize>() as f64
        };
        let n = diag[0].draws.len() / diag[0].n_draws;
        let (a, b) = (mean(&diag, n), mean(&lr, n));
        assert!((a - b).abs() < 0.05, "{a} vs {b}");
    }

    #[test]
    fn stop_flag_ends_the_run() {
        let p = tiny_problem();
        let shared = Shared::new(2);
        shared.stop.store(true, Ordering::Relaxed);
        assert!(matches!(
            sample(p, &settings(1), &shared),
            Err(SampleError::Stopped)
        ));
    }

    #[test]
    fn a_stop_mid_run_ends_every_chain_promptly() {
        let p = tiny_problem();
        let mut s = settings(2);
        s.draws = 300_000; // many seconds of sampling if not stopped
        s.store_unconstrained = false;
        let shared = Shared::new(2);
        let (r, latency) = std::thread::scope(|scope| {
            let run = scope.spawn(|| sample(p, &s, &shared));
            // Stop once both chains are drawing.
            let t0 = Instant::now();
            while shared
                .chains
                .iter()
                .any(|c| c.draws.load(Ordering::Relaxed) == 0)
            {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "chains did not start"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let t_stop = Instant::now();
            shared.request_stop();
            let r = run.join().unwrap();
            (r, t_stop.elapsed())
        });
        assert!(matches!(r, Err(SampleError::Stopped)), "{:?}", r.err());
        assert!(latency < Duration::from_secs(1), "{latency:?}");
    }

    thread_local! {
        /// How long the coordinator holds a new round back (with its lock) before waking the
        /// chains: room for a test to stop the run at that moment.
        pub(super) static ROUND_PAUSE: std::cell::Cell<Duration> =
            const { std::cell::Cell::new(Duration::ZERO) };
    }

    #[test]
    fn a_stop_between_rounds_ends_the_run() {
        // The stop lands after the coordinator has raised the target and before the waiting
        // chains see it: they must still report the round (as stopped), not just leave.
        let shared = Arc::new(Shared::new(3));
        let s = RunSettings {
            extend: extension(1.0 + 1e-12, 1e12, 1_000_000),
            draws: 20,
            tune: 20,
            chains: 3,
            cores: 2,
            ..settings(9)
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let run = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                ROUND_PAUSE.with(|c| c.set(Duration::from_millis(50)));
                let _ = tx.send(sample(tiny_problem(), &s, &shared).err());
            })
        };
        let t0 = Instant::now();
        while shared.total.load(Ordering::Relaxed) <= 40 {
            assert!(t0.elapsed() < Duration::from_secs(30), "no second round");
            std::thread::sleep(Duration::from_micros(200));
        }
        shared.request_stop();
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the run did not end after a stop");
        assert!(matches!(r, Some(SampleError::Stopped)), "{r:?}");
        run.join().unwrap();
    }

    fn extension(max_rhat: f64, min_ess_bulk: f64, max_draws: u64) -> Option<Extension> {
        Some(Extension {
            check: vec![(0, tiny_problem().n_expanded())],
            max_rhat,
            min_ess_bulk,
            step: 150,
            max_draws,
        })
    }

    #[test]
    fn an_extended_run_continues_the_same_chains_until_its_checks_pass() {
        let p = tiny_problem();
        let n_exp = p.n_expanded();
        let plain = sample(Arc::clone(&p), &settings(3), &Shared::new(2))
            .unwrap()
            .chains;
        // Checks that pass at once: the planned draws, and their statistics.
        let easy = RunSettings {
            extend: extension(10.0, 0.0, 1000),
            ..settings(3)
        };
        let run = sample(Arc::clone(&p), &easy, &Shared::new(2)).unwrap();
        assert_eq!(run.checked.len(), n_exp);
        for (a, b) in plain.iter().zip(&run.chains) {
            assert_eq!(a.draws, b.draws);
        }
        let col: Vec<f64> = run
            .chains
            .iter()
            .flat_map(|c| (0..c.n_draws).map(|d| c.draws[d * n_exp]))
            .collect();
        assert_eq!(run.checked[0], column_stats(&col, 2, 200));
        // Checks that never pass: rounds of 150 up to max_draws (200 -> 350 -> 500 -> 520),
        // the first 200 draws those of the plain run (the chains continued, not restarted),
        // and every chain's statistics as long as its draws; chains beyond the cores too.
        for cores in [2, 1] {
            let hard = RunSettings {
                extend: extension(1.0 + 1e-12, 1e12, 520),
                cores,
                ..settings(3)
            };
            let shared = Shared::new(2);
            let run = sample(Arc::clone(&p), &hard, &shared).unwrap();
            assert_eq!(shared.total.load(Ordering::Relaxed), 200 + 520);
            for (a, b) in plain.iter().zip(&run.chains) {
                assert_eq!(b.n_draws, 520);
                assert_eq!(b.draws.len(), 520 * n_exp);
                assert_eq!(b.unconstrained.len(), 520 * p.n_dim());
                assert_eq!(&b.draws[..200 * n_exp], &a.draws[..]);
                assert_eq!(b.warmup_n_steps.len(), 200);
                for (name, st) in &b.stats {
                    let n = match &st.values {
                        StatValues::F64(v) => v.len(),
                        StatValues::U64(v) => v.len(),
                        StatValues::I64(v) => v.len(),
                        StatValues::Bool(v) => v.len(),
                    };
                    assert_eq!(n, 520 * st.width, "{name}");
                }
            }
            let col: Vec<f64> = run
                .chains
                .iter()
                .flat_map(|c| (0..520).map(|d| c.draws[d * n_exp + 1]))
                .collect();
            assert_eq!(run.checked[1], column_stats(&col, 2, 520));
        }
        // Bad extensions are errors before anything runs.
        for ext in [extension(1.0, 0.0, 1000), extension(1.1, 0.0, 100)] {
            let bad = RunSettings {
                extend: ext,
                ..settings(3)
            };
            assert!(matches!(
                sample(Arc::clone(&p), &bad, &Shared::new(2)),
                Err(SampleError::Settings(_))
            ));
        }
    }

    #[test]
    fn runs_sharing_a_core_pool_draw_no_more_chains_than_its_cores() {
        let p = tiny_problem();
        let alone = sample(Arc::clone(&p), &settings(6), &Shared::new(2))
            .unwrap()
            .chains;
        // Two runs of 2 chains on 2 cores each, side by side on a pool of one core: one
        // chain draws at a time, and every chain's draws are those of the run alone.
        let pool = Arc::new(CorePool::new(1));
        let pooled = RunSettings {
            pool: Some(Arc::clone(&pool)),
            ..settings(6)
        };
        let runs: Vec<Vec<ChainOutput>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| sample(Arc::clone(&p), &pooled, &Shared::new(2))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap().chains)
                .collect()
        });
        assert_eq!(pool.peak(), 1);
        for run in &runs {
            for (a, b) in alone.iter().zip(run) {
                assert_eq!(a.draws, b.draws);
            }
        }
        // A run alone on a pool of two draws both its chains at once.
        let pool = Arc::new(CorePool::new(2));
        let lone = RunSettings {
            draws: 2000,
            pool: Some(Arc::clone(&pool)),
            ..settings(6)
        };
        sample(Arc::clone(&p), &lone, &Shared::new(2)).unwrap();
        assert_eq!(pool.peak(), 2);
        // A stop reaches chains waiting for a core: the run ends with Stopped.
        let pool = Arc::new(CorePool::new(1));
        let held = pool.acquire(|| false).unwrap();
        let shared = Shared::new(2);
        let waiting = RunSettings {
            pool: Some(Arc::clone(&pool)),
            ..settings(6)
        };
        let got = std::thread::scope(|scope| {
            let h = scope.spawn(|| sample(Arc::clone(&p), &waiting, &shared));
            std::thread::sleep(Duration::from_millis(150));
            shared.request_stop();
            h.join().unwrap()
        });
        assert!(matches!(got, Err(SampleError::Stopped)), "{:?}", got.err());
        drop(held);
    }

    #[test]
    fn kept_ranges_are_the_full_draws_columns() {
        let s = settings(5);
        let all = sample(tiny_problem(), &s, &Shared::new(2)).unwrap().chains;
        let n_exp = tiny_problem().n_expanded();
        let keep = vec![(0, 2), (4, n_exp)];
        let part = sample(
            tiny_problem(),
            &RunSettings {
                keep,
                ..settings(5)
            },
            &Shared::new(2),
        )
        .unwrap()
        .chains;
        let n_keep = n_exp - 2;
        for (a, p) in all.iter().zip(&part) {
            assert_eq!(p.draws.len(), a.n_draws * n_keep);
            for d in 0..a.n_draws {
                let row = &a.draws[d * n_exp..(d + 1) * n_exp];
                let want: Vec<f64> = row[..2].iter().chain(&row[4..]).copied().collect();
                assert_eq!(&p.draws[d * n_keep..(d + 1) * n_keep], &want[..]);
            }
        }
    }

    #[test]
    fn one_draw_keeps_the_mass_matrix_out_of_the_per_draw_stats() {
        let mut s = settings(4);
        s.draws = 1;
        let out = sample(tiny_problem(), &s, &Shared::new(2)).unwrap().chains;
        assert_eq!(out[0].n_draws, 1);
        assert!(out[0].stats.iter().all(|(n, _)| n != "mass_matrix_inv"));
        assert!(out[0]
            .final_stats
            .iter()
            .any(|(n, v)| n == "mass_matrix_inv" && v.len() == 5));
    }

    #[test]
    fn bad_settings_are_errors_not_panics() {
        let p = tiny_problem();
        for bad in [
            RunSettings {
                jitter: -1.0,
                ..settings(1)
            },
            RunSettings {
                chains: MAX_CHAINS + 1,
                ..settings(1)
            },
            RunSettings {
                draws: u64::MAX,
                ..settings(1)
            },
            RunSettings {
                keep: vec![(2, 4), (3, 5)],
                ..settings(1)
            },
            RunSettings {
                keep: vec![(0, 10_000)],
                ..settings(1)
            },
        ] {
            let shared = Shared::new(bad.chains);
            assert!(
                matches!(
                    sample(Arc::clone(&p), &bad, &shared),
                    Err(SampleError::Settings(_))
                ),
                "{bad:?}"
            );
        }
        let p = tiny_problem();
        let mut s = settings(1);
        s.init.pop();
        assert!(matches!(
            sample(Arc::clone(&p), &s, &Shared::new(2)),
            Err(SampleError::Settings(_))
        ));
        let mut s = settings(1);
        s.target_accept = 1.5;
        assert!(matches!(
            sample(p, &s, &Shared::new(2)),
            Err(SampleError::Settings(_))
        ));
    }
}
