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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The nuts-rs release this build samples with (Cargo.toml pins it exactly;
/// a test checks Cargo.lock agrees).
pub const NUTS_RS_VERSION: &str = "0.19.1";

/// Upper bounds on a run's size, checked before anything is allocated.
pub const MAX_CHAINS: usize = 4096;
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
    /// Set to stop every chain: its current trajectory ends at the next
    /// log-density evaluation.
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    pub fn new(chains: usize) -> Self {
        Shared {
            chains: (0..chains).map(|_| ChainProgress::default()).collect(),
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
    pub seconds: f64,
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

fn run_chain(
    problem: &Arc<MmmProblem>,
    s: &RunSettings,
    chain_id: usize,
    shared: &Shared,
) -> Result<ChainOutput, SampleError> {
    if s.low_rank {
        run_chain_with(problem, s, s.low_rank(), chain_id, shared)
    } else {
        run_chain_with(problem, s, s.diag(), chain_id, shared)
    }
}

fn run_chain_with<S: Settings>(
    problem: &Arc<MmmProblem>,
    s: &RunSettings,
    settings: S,
    chain_id: usize,
    shared: &Shared,
) -> Result<ChainOutput, SampleError> {
    let fail = |msg: String| SampleError::Chain {
        chain: chain_id,
        msg,
    };
    // A draw that failed because the run was being stopped is a stop, not the chain's error.
    let draw_error = |e: anyhow::Error| {
        if shared.stopped() {
            SampleError::Stopped
        } else {
            fail(format!("{e:#}"))
        }
    };
    if shared.stopped() {
        return Err(SampleError::Stopped);
    }
    let progress = &shared.chains[chain_id];
    progress.started.store(true, Ordering::Relaxed);
    let start = Instant::now();
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
    let n_keep = s.n_stored(n_exp);
    let mut full = if s.keep.is_empty() {
        Vec::new()
    } else {
        vec![0.0; n_exp]
    };
    let draws = s.draws as usize;
    let tune = s.tune as usize;
    let mut out = ChainOutput {
        draws: zeros(draws.saturating_mul(n_keep)).map_err(&fail)?,
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
        seconds: 0.0,
    };
    let mut dropped: Vec<String> = Vec::new();
    let total = s.tune as usize + draws;
    for i in 0..total {
        if shared.stopped() {
            break;
        }
        let warm = i < s.tune as usize;
        let info = if warm {
            let (_, info) = chain.draw().map_err(draw_error)?;
            out.warmup_n_steps.push(info.num_steps);
            out.warmup_diverging.push(info.diverging);
            out.warmup_step_size.push(info.step_size);
            info
        } else {
            let (pos, _, mut stats, info) = chain.expanded_draw().map_err(draw_error)?;
            let d = i - s.tune as usize;
            let row = &mut out.draws[d * n_keep..(d + 1) * n_keep];
            if s.keep.is_empty() {
                problem.expand(&pos, row).map_err(|e| fail(e.to_string()))?;
            } else {
                problem
                    .expand(&pos, &mut full)
                    .map_err(|e| fail(e.to_string()))?;
                let mut o = 0;
                for &(a, b) in &s.keep {
                    row[o..o + b - a].copy_from_slice(&full[a..b]);
                    o += b - a;
                }
            }
            if s.store_unconstrained {
                out.unconstrained[d * n_dim..(d + 1) * n_dim].copy_from_slice(&pos);
            }
            let math = chain.math();
            let dims = From::from(math.deref());
            record_stats(
                &mut out.stats,
                &mut dropped,
                &mut out.final_stats,
                stats.get_all(&dims),
                d,
            );
            out.n_draws = d + 1;
            info
        };
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
    out.stats.retain(|(name, _)| !dropped.contains(name));
    out.final_stats.retain(|(name, _)| dropped.contains(name));
    out.draws.truncate(out.n_draws * n_exp);
    if s.store_unconstrained {
        out.unconstrained.truncate(out.n_draws * n_dim);
    }
    out.seconds = start.elapsed().as_secs_f64();
    progress.finished.store(true, Ordering::Relaxed);
    Ok(out)
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

/// Runs every chain on up to `cores` threads and returns them in chain
/// order. Stops early (with [`SampleError::Stopped`]) once `shared.stop` is set.
pub fn sample(
    problem: Arc<MmmProblem>,
    s: &RunSettings,
    shared: &Shared,
) -> Result<Vec<ChainOutput>, SampleError> {
    s.check(problem.n_dim(), problem.n_expanded())
        .map_err(SampleError::Settings)?;
    if shared.chains.len() != s.chains {
        return Err(SampleError::Settings(
            "progress has a slot per chain".into(),
        ));
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<ChainOutput, SampleError>>>> =
        Mutex::new((0..s.chains).map(|_| None).collect());
    let workers = s.cores.clamp(1, s.chains);
    // Cores beyond one per chain go to each evaluation (a large panel's media passes).
    let eval_threads = (s.cores / workers).max(1);
    let started = std::thread::scope(|scope| {
        let mut started = 0;
        for w in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("fastmmm-chain-{w}"))
                .spawn_scoped(scope, || loop {
                    crate::logp::set_eval_threads(eval_threads);
                    if shared.stopped() {
                        break;
                    }
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= s.chains {
                        break;
                    }
                    // A panic in a chain is that chain's error, not an abort of the run.
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        run_chain(&problem, s, c, shared)
                    }))
                    .unwrap_or_else(|payload| {
                        Err(SampleError::Chain {
                            chain: c,
                            msg: format!("internal error: {}", panic_message(&*payload)),
                        })
                    });
                    if r.is_err() {
                        // One failed chain ends the run: the others stop at once.
                        shared.request_stop();
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[c] = Some(r);
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        started
    });
    if started == 0 {
        return Err(SampleError::Settings(
            "could not start any sampler thread".into(),
        ));
    }
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(s.chains);
    let mut stopped = false;
    let mut first_error = None;
    for r in results {
        match r {
            Some(Ok(c)) => {
                stopped |= c.n_draws < s.draws as usize;
                out.push(c);
            }
            // A chain's own failure outranks the stops it caused in the others.
            Some(Err(SampleError::Stopped)) | None => stopped = true,
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if stopped || shared.stopped() {
        return Err(SampleError::Stopped);
    }
    Ok(out)
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
        }
    }

    #[test]
    fn same_seed_same_draws_and_stats_by_nutpie_names() {
        let p = tiny_problem();
        let a = sample(Arc::clone(&p), &settings(7), &Shared::new(2)).unwrap();
        let b = sample(Arc::clone(&p), &settings(7), &Shared::new(2)).unwrap();
        let c = sample(p, &settings(8), &Shared::new(2)).unwrap();
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
        let diag = sample(Arc::clone(&p), &s, &Shared::new(2)).unwrap();
        s.low_rank = true;
        let lr = sample(p, &s, &Shared::new(2)).unwrap();
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

    #[test]
    fn kept_ranges_are_the_full_draws_columns() {
        let s = settings(5);
        let all = sample(tiny_problem(), &s, &Shared::new(2)).unwrap();
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
        .unwrap();
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
        let out = sample(tiny_problem(), &s, &Shared::new(2)).unwrap();
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
