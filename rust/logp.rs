//! The whole MMM log-density and its gradient in one pass (the "fast path").
//!
//! Mirrors `fastmmm.model.build_model` for one channel group: on the
//! unconstrained space, with PyMC's transforms and log-Jacobians, priors whose
//! normalising constants are supplied by the caller, the fused media kernel,
//! the centred level/trend/media parameterisation and a Normal or StudentT
//! likelihood. nutpie calls [`MmmProblem::logp_grad`] through the C ABI in
//! `ffi.rs` without the Python interpreter. Scratch memory is thread-local, so
//! chains on several threads share one immutable problem and the hot path does
//! not allocate after its first call.

#![allow(clippy::needless_range_loop)] // index arithmetic over (T, C) reads clearer than zipped iterators here

use crate::error::{KResult, KernelError};
use crate::kernels::fused::{media_fwd_cols, media_vjp_cols, Media, MediaGrads};
use crate::kernels::Dims;
use std::cell::RefCell;

/// Prior distributions (PyMC parameterisations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dist {
    /// (mu, sigma)
    Normal,
    /// (sigma)
    HalfNormal,
    /// (mu, sigma)
    LogNormal,
    /// (alpha, beta)
    Gamma,
    /// (alpha, beta)
    Beta,
    /// (lam)
    Exponential,
    /// (nu, mu, sigma)
    StudentT,
    /// (nu, sigma)
    HalfStudentT,
    /// (mu, sigma); bounds live in the transform and the constant
    TruncatedNormal,
    /// (); bounds live in the transform and the constant
    Uniform,
}

impl Dist {
    pub fn from_name(s: &str) -> Option<Dist> {
        Some(match s {
            "Normal" => Dist::Normal,
            "HalfNormal" => Dist::HalfNormal,
            "LogNormal" => Dist::LogNormal,
            "Gamma" => Dist::Gamma,
            "Beta" => Dist::Beta,
            "Exponential" => Dist::Exponential,
            "StudentT" => Dist::StudentT,
            "HalfStudentT" => Dist::HalfStudentT,
            "TruncatedNormal" => Dist::TruncatedNormal,
            "Uniform" => Dist::Uniform,
            _ => return None,
        })
    }

    /// Names of the parameters the kernel reads, in order.
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Dist::Normal | Dist::LogNormal | Dist::TruncatedNormal => &["mu", "sigma"],
            Dist::HalfNormal => &["sigma"],
            Dist::Gamma | Dist::Beta => &["alpha", "beta"],
            Dist::Exponential => &["lam"],
            Dist::StudentT => &["nu", "mu", "sigma"],
            Dist::HalfStudentT => &["nu", "sigma"],
            Dist::Uniform => &[],
        }
    }

    /// The log-density without its constant, and its derivative, at `v`;
    /// `logs` = (ln v, ln(1 - v)) when the caller has them.
    #[inline]
    fn kernel(&self, p: [f64; 3], v: f64, logs: Option<(f64, f64)>) -> (f64, f64) {
        match self {
            Dist::Normal | Dist::TruncatedNormal => {
                let z = (v - p[0]) / p[1];
                (-0.5 * z * z, -z / p[1])
            }
            Dist::HalfNormal => {
                let z = v / p[0];
                (-0.5 * z * z, -z / p[0])
            }
            Dist::LogNormal => {
                let lv = v.ln();
                let z = (lv - p[0]) / p[1];
                (-lv - 0.5 * z * z, -(1.0 + z / p[1]) / v)
            }
            Dist::Gamma => ((p[0] - 1.0) * v.ln() - p[1] * v, (p[0] - 1.0) / v - p[1]),
            Dist::Beta => {
                // ln v and ln(1 - v) from the log-odds transform when it gave them
                // (one exp and one log1p for both; also exact in the tails).
                let (lv, l1v) = logs.unwrap_or_else(|| (v.ln(), (-v).ln_1p()));
                (
                    (p[0] - 1.0) * lv + (p[1] - 1.0) * l1v,
                    (p[0] - 1.0) / v - (p[1] - 1.0) / (1.0 - v),
                )
            }
            Dist::Exponential => (-p[0] * v, -p[0]),
            Dist::StudentT => {
                let (nu, s) = (p[0], p[2]);
                let z = (v - p[1]) / s;
                (
                    -(nu + 1.0) / 2.0 * (z * z / nu).ln_1p(),
                    -(nu + 1.0) * z / (s * (nu + z * z)),
                )
            }
            Dist::HalfStudentT => {
                let (nu, s) = (p[0], p[1]);
                let z = v / s;
                (
                    -(nu + 1.0) / 2.0 * (z * z / nu).ln_1p(),
                    -(nu + 1.0) * z / (s * (nu + z * z)),
                )
            }
            Dist::Uniform => (0.0, 0.0),
        }
    }
}

/// What the log-odds transform knows exactly, without cancellation: ln v,
/// ln(1 - v), v and 1 - v (for u beyond about +-37, v rounds to 1 or 0 while
/// these stay exact).
#[derive(Clone, Copy, Debug)]
struct LogOdds {
    ln_v: f64,
    ln_1mv: f64,
    v: f64,
    one_minus_v: f64,
}

/// PyMC's default transforms to the unconstrained space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Identity,
    /// v = exp(u)
    Log,
    /// v = sigmoid(u)
    LogOdds,
    /// v = lo + (hi - lo) sigmoid(u)
    Interval,
    /// v = lo + exp(u)
    LowerBound,
}

impl Transform {
    pub fn from_name(s: &str) -> Option<Transform> {
        Some(match s {
            "identity" => Transform::Identity,
            "log" => Transform::Log,
            "logodds" => Transform::LogOdds,
            "interval" => Transform::Interval,
            "lowerbound" => Transform::LowerBound,
            _ => return None,
        })
    }

    /// (v, log|dv/du|, dv/du, d log|dv/du| / du)
    #[inline]
    fn apply(&self, u: f64, lo: f64, hi: f64) -> (f64, f64, f64, f64) {
        let (v, lj, dv, dlj, _) = self.apply_logs(u, lo, hi);
        (v, lj, dv, dlj)
    }

    /// [`Self::apply`] and, for the log-odds transform, [`LogOdds`].
    #[inline]
    fn apply_logs(&self, u: f64, lo: f64, hi: f64) -> (f64, f64, f64, f64, Option<LogOdds>) {
        match self {
            Transform::Identity => (u, 0.0, 1.0, 0.0, None),
            Transform::Log => {
                let v = u.exp();
                (v, u, v, 1.0, None)
            }
            Transform::LogOdds | Transform::Interval => {
                // With e = exp(-|u|) and l = log1p(e): softplus(u) = max(u, 0) + l,
                // softplus(-u) = max(-u, 0) + l, log sigmoid(u) = -softplus(-u),
                // log(1 - sigmoid(u)) = -softplus(u): one exp and one log1p in all.
                let e = (-u.abs()).exp();
                let l = e.ln_1p();
                let sp_pos = u.max(0.0) + l;
                let sp_neg = (-u).max(0.0) + l;
                let r = 1.0 / (1.0 + e);
                let s = if u >= 0.0 { r } else { e * r };
                let sc = if u >= 0.0 { e * r } else { r }; // 1 - s without cancellation
                if *self == Transform::LogOdds {
                    let lj = -sp_neg - sp_pos;
                    let lo = LogOdds {
                        ln_v: -sp_neg,
                        ln_1mv: -sp_pos,
                        v: s,
                        one_minus_v: sc,
                    };
                    (s, lj, s * sc, 1.0 - 2.0 * s, Some(lo))
                } else {
                    let w = hi - lo;
                    let lj = w.ln() - sp_neg - sp_pos;
                    (lo + w * s, lj, w * s * sc, 1.0 - 2.0 * s, None)
                }
            }
            Transform::LowerBound => {
                let e = u.exp();
                (lo + e, u, e, 1.0, None)
            }
        }
    }
}

/// A media parameter that can be partially pooled across groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Adstock(usize),
    Saturation(usize),
    /// channel_share or beta, whichever the model has.
    Amplitude,
}

impl Target {
    fn from_name(s: &str) -> Option<Target> {
        Some(match s {
            "adstock_0" => Target::Adstock(0),
            "adstock_1" => Target::Adstock(1),
            "saturation_0" => Target::Saturation(0),
            "saturation_1" => Target::Saturation(1),
            "amplitude" => Target::Amplitude,
            _ => return None,
        })
    }

    /// Name of the per-group values in the expanded trace.
    pub fn geo_name(&self) -> &'static str {
        match self {
            Target::Adstock(0) => "adstock_0_geo",
            Target::Adstock(_) => "adstock_1_geo",
            Target::Saturation(0) => "saturation_0_geo",
            Target::Saturation(_) => "saturation_1_geo",
            Target::Amplitude => "amplitude_geo",
        }
    }

    fn index(&self) -> usize {
        match self {
            Target::Adstock(j) => *j,
            Target::Saturation(j) => 2 + *j,
            Target::Amplitude => 4,
        }
    }

    const ALL: [Target; 5] = [
        Target::Adstock(0),
        Target::Adstock(1),
        Target::Saturation(0),
        Target::Saturation(1),
        Target::Amplitude,
    ];
}

/// What a block of the parameter vector is in the model.
///
/// With `G` groups (geos or brands), `Level`, `Trend` and `Sigma` have one
/// element per group, `GammaFourier` / `GammaControl` `G * F` / `G * K`
/// (group-major); media parameters are global `(C,)` and, when pooled, each
/// group's value is `transform(u_c + sd * z[g, c])` with `u_c` the global
/// parameter's unconstrained value, `sd` a `PoolSd` block (one element) and
/// `z` a `PoolZ` block `(G, C)` (non-centred partial pooling on the
/// unconstrained scale). Unpooled media parameters are shared by all groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Level,
    Trend,
    GammaFourier,
    GammaControl,
    /// Adstock kernel parameter index.
    Adstock(usize),
    /// Saturation kernel parameter index.
    Saturation(usize),
    ChannelShare,
    /// The channel's ROAS over the fitted period: `beta = roas * roas_scale / mean_t(sat)`.
    Roas,
    Beta,
    Sigma,
    Nu,
    PoolSd(Target),
    PoolZ(Target),
    /// HSGP lengthscale / amplitude / coefficients of time-varying part 0
    /// (intercept drift) or 1 (log media multiplier).
    TvpLs(usize),
    TvpEta(usize),
    TvpZ(usize),
}

/// Number of distinct roles (the size of `MmmProblem`'s role -> block table).
const N_SLOTS: usize = 29;

impl Role {
    /// A dense index of the role, for O(1) block lookup in the hot path.
    fn slot(&self) -> usize {
        match self {
            Role::Level => 0,
            Role::Trend => 1,
            Role::GammaFourier => 2,
            Role::GammaControl => 3,
            Role::Adstock(j) => 4 + (*j).min(1),
            Role::Saturation(j) => 6 + (*j).min(1),
            Role::ChannelShare => 8,
            Role::Beta => 9,
            Role::Sigma => 10,
            Role::Nu => 11,
            Role::PoolSd(t) => 12 + t.index(),
            Role::PoolZ(t) => 17 + t.index(),
            Role::TvpLs(p) => 22 + (*p).min(1),
            Role::TvpEta(p) => 24 + (*p).min(1),
            Role::TvpZ(p) => 26 + (*p).min(1),
            Role::Roas => 28,
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "level" => Role::Level,
            "trend" => Role::Trend,
            "gamma_fourier" => Role::GammaFourier,
            "gamma_control" => Role::GammaControl,
            "adstock_0" => Role::Adstock(0),
            "adstock_1" => Role::Adstock(1),
            "saturation_0" => Role::Saturation(0),
            "saturation_1" => Role::Saturation(1),
            "channel_share" => Role::ChannelShare,
            "roas" => Role::Roas,
            "beta" => Role::Beta,
            "sigma" => Role::Sigma,
            "nu" => Role::Nu,
            "tvp_intercept_ls" => Role::TvpLs(0),
            "tvp_intercept_eta" => Role::TvpEta(0),
            "tvp_intercept_z" => Role::TvpZ(0),
            "tvp_media_ls" => Role::TvpLs(1),
            "tvp_media_eta" => Role::TvpEta(1),
            "tvp_media_z" => Role::TvpZ(1),
            _ => {
                if let Some(t) = s.strip_suffix("_sd").and_then(Target::from_name) {
                    Role::PoolSd(t)
                } else if let Some(t) = s.strip_suffix("_z").and_then(Target::from_name) {
                    Role::PoolZ(t)
                } else {
                    return None;
                }
            }
        })
    }
}

/// One free parameter (scalar or vector) of the model.
#[derive(Clone, Debug)]
pub struct Block {
    pub role: Role,
    pub size: usize,
    pub dist: Dist,
    /// Per-element distribution parameters, `params[k][i]` for parameter k.
    pub params: Vec<Vec<f64>>,
    /// Per-element normalising constant of the prior.
    pub konst: Vec<f64>,
    pub transform: Transform,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

impl Block {
    /// Element `i` of the prior at unconstrained `u`: (log-density term with its
    /// constant and the transform's log-Jacobian, v, dv/du, d term / du).
    #[inline(always)]
    fn prior_term(&self, i: usize, u: f64) -> (f64, f64, f64, f64) {
        let lo = self.lower.get(i).copied().unwrap_or(0.0);
        let hi = self.upper.get(i).copied().unwrap_or(1.0);
        let (v, lj, dv, dlj, logs) = self.transform.apply_logs(u, lo, hi);
        let mut p = [0.0; 3];
        for (slot, col) in p.iter_mut().zip(&self.params) {
            *slot = col[i];
        }
        let (kv, dk) = self.dist.kernel(p, v, logs.map(|l| (l.ln_v, l.ln_1mv)));
        // A Beta prior on the log-odds scale: d/du [(a-1) ln v + (b-1) ln(1-v)]
        // = (a-1)(1-v) - (b-1) v, finite where v has rounded to 0 or 1
        // (dk * dv would be inf * 0 there).
        let dku = match (self.dist, logs) {
            (Dist::Beta, Some(l)) => (p[0] - 1.0) * l.one_minus_v - (p[1] - 1.0) * l.v,
            _ => dk * dv,
        };
        (self.konst[i] + kv + lj, v, dv, dku + dlj)
    }
}

/// The data of one model fit: `G` groups of `T` periods, group-major.
#[derive(Clone, Debug)]
pub struct MmmData {
    /// (G, T)
    pub y: Vec<f64>,
    /// (G, T, C)
    pub spend: Vec<f64>,
    /// (G, T)
    pub trend_t: Vec<f64>,
    /// (G, T, F)
    pub fourier: Vec<f64>,
    /// (G, T, K)
    pub controls: Vec<f64>,
    /// (G, C)
    pub kappa_scale: Vec<f64>,
    /// (G, C) per channel: its mean scaled spend x channel scale / target scale, so that
    /// `roas * roas_scale` is the channel's mean contribution per period (scaled target)
    /// at that ROAS. Given with a `Roas` block only; empty otherwise.
    pub roas_scale: Vec<f64>,
    /// Lift tests (ungrouped models only), one entry each: the channel, the
    /// scaled per-period spends before / after, the length in periods, the
    /// scaled measured lift and its standard error. Empty: none.
    pub lift: LiftData,
    /// HSGP bases of the time-varying parts (intercept drift, log media
    /// multiplier), ungrouped models only; `None`: the part is off.
    pub tvp: [Option<TvpData>; 2],
}

/// One time-varying part: `f = phi @ w`, `w_j = eta * a_j / sqrt(sum_k col_ms_k a_k^2) * z_j`,
/// `a_j = 1 / (3 + ls^2 omega_j^2)` (the Matern-3/2 spectral weights normalised so
/// that `eta` is the prior in-sample RMS of `f`; see `fastmmm.tvp.gp_weights`).
#[derive(Clone, Debug)]
pub struct TvpData {
    /// (T, m)
    pub phi: Vec<f64>,
    /// (m,)
    pub omega: Vec<f64>,
    /// (m,) mean over the training dates of `phi^2`
    pub col_ms: Vec<f64>,
}

impl TvpData {
    pub fn m(&self) -> usize {
        self.omega.len()
    }
}

/// Lift-test observations: `lift[i] ~ Normal(periods[i] * beta[c] * (f_c(x1) - f_c(x0)), se[i])`,
/// with `f_c` the channel's media transform at the steady state of a constant
/// spend (the last of `steady` constant periods).
///
/// With `weights` (the multiplicative, log-target model) the modelled lift is in
/// sales at the test's own dates: `periods[i] * sum_t w[i, t] * L[i, t] * (exp(beta f_c(x1)) -
/// exp(beta f_c(x0)))`, `L[i, t] = exp(mu[t] - beta[c] * sat[c, t] + sigma^2 / 2)` the
/// expected level without the channel's own term (see `fastmmm.lift`).
#[derive(Clone, Debug, Default)]
pub struct LiftData {
    pub channel: Vec<usize>,
    /// The group of each test (grouped models); empty: group 0.
    pub group: Vec<usize>,
    pub x0: Vec<f64>,
    pub x1: Vec<f64>,
    pub periods: Vec<f64>,
    pub delta: Vec<f64>,
    pub se: Vec<f64>,
    /// Constant periods that reach the steady state (`l_max + 1`).
    pub steady: usize,
    /// (N, T) each test's weights over its group's dates (log target); empty: the additive lift.
    pub weights: Vec<f64>,
}

impl LiftData {
    pub fn len(&self) -> usize {
        self.channel.len()
    }
    pub fn is_empty(&self) -> bool {
        self.channel.is_empty()
    }
    /// Index of test `i`'s (group, channel) cell in a `(G, C)` array.
    #[inline]
    fn cell(&self, i: usize, c: usize) -> usize {
        self.group.get(i).copied().unwrap_or(0) * c + self.channel[i]
    }
}

/// Static structure of the model.
#[derive(Clone, Debug)]
pub struct MmmStructure {
    /// Groups (geos / brands) sharing the media parameters; 1 for a single model.
    pub g: usize,
    /// Whether the trace's deterministics carry a leading group axis (the
    /// hierarchical model, even with one group).
    pub grouped: bool,
    pub t: usize,
    pub c: usize,
    pub f: usize,
    pub k: usize,
    pub media: Media,
    /// Saturation kernel parameter multiplied by `kappa_scale`, if any.
    pub relative: Option<usize>,
    /// Fixed saturation kernel parameters.
    pub fixed_saturation: [Option<f64>; 2],
    pub intercept: bool,
    pub trend: bool,
    pub student_t: bool,
    pub direct_beta: bool,
}

/// A complete, immutable log-density problem.
#[derive(Clone, Debug)]
pub struct MmmProblem {
    pub s: MmmStructure,
    pub data: MmmData,
    pub blocks: Vec<Block>,
    /// Spend transposed to channel-major (G, C, pad + T), the fused kernel's native
    /// layout, with `pad` = taps - 1 zeros before each column (no convolution head).
    spend_cols: Vec<f64>,
    pad: usize,
    /// Seasonality and controls transposed to (G, F, T) / (G, K, T): the mean
    /// function and its gradient run over contiguous columns.
    fourier_cols: Vec<f64>,
    controls_cols: Vec<f64>,
    offsets: Vec<usize>,
    /// Role slot -> index into `blocks` (the first block of that role).
    slots: [Option<usize>; N_SLOTS],
    n_dim: usize,
    /// Per (group, channel): what the amplitude is relative to (see `MmmProblem::new`).
    amp_k: Vec<f64>,
    /// Per group: mean trend index.
    tbar: Vec<f64>,
    /// Lift-test spends as (2N, pad + steady) channel-major columns: x0 of every test, then x1.
    lift_cols: Vec<f64>,
}

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// ln Gamma(x) for x > 0 (recurrence + Stirling series; ~1e-15 relative).
pub fn lgamma(x: f64) -> f64 {
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= x.ln();
        x += 1.0;
    }
    let x2 = x * x;
    let series = 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2) + 1.0 / (1260.0 * x * x2 * x2)
        - 1.0 / (1680.0 * x * x2 * x2 * x2)
        + 1.0 / (1188.0 * x * x2 * x2 * x2 * x2);
    acc + (x - 0.5) * x.ln() - x + 0.5 * LN_2PI + series
}

/// Digamma psi(x) for x > 0 (~1e-15 absolute).
pub fn digamma(x: f64) -> f64 {
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let r = 1.0 / (x * x);
    acc + x.ln()
        - 0.5 / x
        - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r * (1.0 / 240.0 - r / 132.0))))
}

struct Scratch {
    buf: Vec<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { buf: Vec::new() }) };
}

/// `eval_body::<true>` compiled with the given target features (the AVX2 and
/// AVX-512 builds of the whole log-density, chosen at run time by `eval`).
macro_rules! eval_with_features {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            &self,
            x: &[f64],
            grad: Option<&mut [f64]>,
            expand: Option<&mut [f64]>,
            buf: &mut [f64],
        ) -> KResult<f64> {
            self.eval_body::<true>(x, grad, expand, buf)
        }
    };
}

fn bad(msg: &str) -> KernelError {
    KernelError::Option {
        arg: "problem",
        msg: msg.to_string(),
    }
}

impl MmmProblem {
    /// Checks sizes and builds the problem.
    pub fn new(s: MmmStructure, data: MmmData, blocks: Vec<Block>) -> KResult<Self> {
        let (g, t, c, f, k) = (s.g, s.t, s.c, s.f, s.k);
        let check = |arg: &'static str, v: &[f64], n: usize| -> KResult<()> {
            crate::error::check_len(arg, v, n)
        };
        if g == 0 || t == 0 || c == 0 {
            return Err(bad("need at least one group, one period and one channel"));
        }
        if g > 1 && !s.grouped {
            return Err(bad("several groups need the grouped (hierarchical) layout"));
        }
        check("y", &data.y, g * t)?;
        check("spend", &data.spend, g * t * c)?;
        check("trend_t", &data.trend_t, g * t)?;
        check("fourier", &data.fourier, g * t * f)?;
        check("controls", &data.controls, g * t * k)?;
        check("kappa_scale", &data.kappa_scale, g * c)?;
        let mut offsets = Vec::with_capacity(blocks.len());
        let mut n = 0;
        for b in &blocks {
            let want = match b.role {
                Role::Level | Role::Trend | Role::Sigma => g,
                Role::Nu | Role::PoolSd(_) | Role::TvpLs(_) | Role::TvpEta(_) => 1,
                Role::TvpZ(p) => data
                    .tvp
                    .get(p)
                    .and_then(|d| d.as_ref())
                    .map_or(0, TvpData::m),
                Role::GammaFourier => g * f,
                Role::GammaControl => g * k,
                Role::PoolZ(_) => g * c,
                _ => c,
            };
            if b.size != want {
                return Err(bad(&format!(
                    "block {:?}: size {} but the model needs {want}",
                    b.role, b.size
                )));
            }
            if b.params.len() != b.dist.param_names().len()
                || b.params.iter().any(|p| p.len() != b.size)
            {
                return Err(bad(&format!(
                    "block {:?}: parameters do not match {:?}",
                    b.role, b.dist
                )));
            }
            if b.konst.len() != b.size {
                return Err(bad(&format!(
                    "block {:?}: const has the wrong length",
                    b.role
                )));
            }
            let needs_bounds = matches!(b.transform, Transform::Interval | Transform::LowerBound);
            if needs_bounds && b.lower.len() != b.size {
                return Err(bad(&format!("block {:?}: lower bounds missing", b.role)));
            }
            if b.transform == Transform::Interval && b.upper.len() != b.size {
                return Err(bad(&format!("block {:?}: upper bounds missing", b.role)));
            }
            offsets.push(n);
            n += b.size;
        }
        let has = |r: Role| blocks.iter().filter(|b| b.role == r).count();
        for r in [
            Role::Level,
            Role::Trend,
            Role::GammaFourier,
            Role::GammaControl,
            Role::Sigma,
            Role::Nu,
        ] {
            if has(r) > 1 {
                return Err(bad(&format!("{r:?} appears twice")));
            }
        }
        if s.intercept != (has(Role::Level) == 1) || s.trend != (has(Role::Trend) == 1) {
            return Err(bad("level/trend blocks do not match the structure"));
        }
        if (f > 0) != (has(Role::GammaFourier) == 1) || (k > 0) != (has(Role::GammaControl) == 1) {
            return Err(bad("seasonality/control blocks do not match the data"));
        }
        if s.student_t != (has(Role::Nu) == 1) || has(Role::Sigma) != 1 {
            return Err(bad(
                "likelihood blocks (sigma, nu) do not match the structure",
            ));
        }
        let amplitudes = has(Role::ChannelShare) + has(Role::Roas);
        if s.direct_beta != (has(Role::Beta) == 1)
            || s.direct_beta == (amplitudes == 1)
            || amplitudes > 1
        {
            return Err(bad(
                "exactly one of beta (direct), channel_share or roas is needed",
            ));
        }
        let roas_block = has(Role::Roas) == 1;
        if roas_block == data.roas_scale.is_empty() {
            return Err(bad("roas_scale is given with a roas block, and only then"));
        }
        check(
            "roas_scale",
            &data.roas_scale,
            if has(Role::Roas) == 1 { g * c } else { 0 },
        )?;
        if !data.roas_scale.iter().all(|v| v.is_finite() && *v > 0.0) {
            return Err(bad(
                "roas_scale must be finite and > 0 (a channel with spend)",
            ));
        }
        for j in 0..s.media.adstock.n_params() {
            if has(Role::Adstock(j)) != 1 {
                return Err(bad(&format!("adstock parameter {j} missing")));
            }
        }
        for j in 0..s.media.saturation.n_params() {
            let want = usize::from(s.fixed_saturation[j].is_none());
            if has(Role::Saturation(j)) != want {
                return Err(bad(&format!(
                    "saturation parameter {j}: expected {want} block(s)"
                )));
            }
        }
        for tg in Target::ALL {
            let (nsd, nz) = (has(Role::PoolSd(tg)), has(Role::PoolZ(tg)));
            if nsd > 1 || nz > 1 || nsd != nz {
                return Err(bad(&format!(
                    "pooled {tg:?}: needs exactly one sd block and one z block"
                )));
            }
            if nsd == 1 {
                if !s.grouped {
                    return Err(bad("pooled parameters need the grouped layout"));
                }
                let target_present = match tg {
                    Target::Adstock(j) => has(Role::Adstock(j)) == 1,
                    Target::Saturation(j) => has(Role::Saturation(j)) == 1,
                    Target::Amplitude => true,
                };
                if !target_present {
                    return Err(bad(&format!(
                        "pooled {tg:?}: the parameter is not in the model"
                    )));
                }
            }
        }
        let mut ybar = vec![0.0; g];
        let mut tbar = vec![0.0; g];
        for gi in 0..g {
            ybar[gi] = data.y[gi * t..(gi + 1) * t].iter().sum::<f64>() / t as f64;
            tbar[gi] = data.trend_t[gi * t..(gi + 1) * t].iter().sum::<f64>() / t as f64;
        }
        // beta = amp * amp_k / mean_t(sat): amp a contribution share (amp_k = mean target) or a
        // ROAS (amp_k = roas_scale).
        let amp_k: Vec<f64> = if data.roas_scale.is_empty() {
            (0..g * c).map(|i| ybar[i / c]).collect()
        } else {
            data.roas_scale.clone()
        };
        for (p, name) in ["intercept", "media"].iter().enumerate() {
            let on = data.tvp[p].is_some();
            for r in [Role::TvpLs(p), Role::TvpEta(p), Role::TvpZ(p)] {
                if has(r) != usize::from(on) {
                    return Err(bad(&format!(
                        "time-varying {name}: blocks do not match the data (basis {})",
                        if on { "given" } else { "missing" }
                    )));
                }
            }
            if let Some(d) = &data.tvp[p] {
                if s.grouped {
                    return Err(bad(
                        "time-varying parts are not supported in the grouped model",
                    ));
                }
                let m = d.m();
                if m == 0 || d.col_ms.len() != m || d.phi.len() != t * m {
                    return Err(bad(&format!(
                        "time-varying {name}: basis shapes do not match (T={t})"
                    )));
                }
                if d.phi
                    .iter()
                    .chain(&d.omega)
                    .chain(&d.col_ms)
                    .any(|v| !v.is_finite())
                {
                    return Err(bad(&format!(
                        "time-varying {name}: basis values must be finite"
                    )));
                }
            }
        }
        if data.tvp[1].is_some() && !data.lift.is_empty() {
            return Err(bad(
                "lift tests with a time-varying media multiplier are not in the fused log-density",
            ));
        }
        let lf = &data.lift;
        let nl = lf.len();
        if nl > 0 {
            if !(lf.group.is_empty() || lf.group.len() == nl) || lf.group.iter().any(|&gi| gi >= g)
            {
                return Err(bad("lift_group: one group index (< groups) per test"));
            }
            for (arg, v) in [
                ("lift_x0", &lf.x0),
                ("lift_x1", &lf.x1),
                ("lift_periods", &lf.periods),
                ("lift_delta", &lf.delta),
                ("lift_se", &lf.se),
            ] {
                check(arg, v, nl)?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(bad(&format!("{arg}: values must be finite")));
                }
            }
            if lf.channel.iter().any(|&ch| ch >= c) {
                return Err(bad("lift_channel: channel index out of range"));
            }
            if lf.se.iter().any(|&v| v <= 0.0) || lf.x0.iter().chain(&lf.x1).any(|&v| v < 0.0) {
                return Err(bad(
                    "lift tests: standard errors must be > 0 and spends >= 0",
                ));
            }
            if !lf.weights.is_empty()
                && (lf.weights.len() != nl * t
                    || lf.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)))
            {
                return Err(bad("lift_weights: (tests x dates) finite weights >= 0"));
            }
            let taps = s.media.adstock.n_taps();
            if lf.steady == 0 || lf.steady > taps + 1 || lf.steady < taps {
                return Err(bad(&format!(
                    "lift tests: steady must be the adstock's {taps} taps (or one more), got {}",
                    lf.steady
                )));
            }
        }
        let fourier_cols = to_cols(&data.fourier, g, t, f);
        let controls_cols = to_cols(&data.controls, g, t, k);
        let mut slots = [None; N_SLOTS];
        for (i, b) in blocks.iter().enumerate() {
            let sl = &mut slots[b.role.slot()];
            if sl.is_none() {
                *sl = Some(i);
            }
        }
        let pad = s.media.adstock.n_taps().saturating_sub(1);
        let st = lf.steady;
        let mut lift_cols = vec![0.0; 2 * nl * (pad + st)];
        for i in 0..nl {
            let (a, b) = (i * (pad + st), (nl + i) * (pad + st));
            lift_cols[a + pad..a + pad + st].fill(lf.x0[i]);
            lift_cols[b + pad..b + pad + st].fill(lf.x1[i]);
        }
        let mut spend_cols = vec![0.0; g * c * (pad + t)];
        for gi in 0..g {
            for ch in 0..c {
                let col =
                    &mut spend_cols[(gi * c + ch) * (pad + t) + pad..(gi * c + ch + 1) * (pad + t)];
                for (ti, v) in col.iter_mut().enumerate() {
                    *v = data.spend[(gi * t + ti) * c + ch];
                }
            }
        }
        Ok(MmmProblem {
            s,
            data,
            blocks,
            spend_cols,
            pad,
            fourier_cols,
            controls_cols,
            offsets,
            slots,
            n_dim: n,
            amp_k,
            tbar,
            lift_cols,
        })
    }

    /// Same structure and blocks, other data.
    pub fn with_data(&self, data: MmmData) -> KResult<Self> {
        MmmProblem::new(self.s.clone(), data, self.blocks.clone())
    }

    pub fn n_dim(&self) -> usize {
        self.n_dim
    }

    fn pooled(&self, tg: Target) -> Option<(usize, usize)> {
        match (
            self.block_of(Role::PoolSd(tg)),
            self.block_of(Role::PoolZ(tg)),
        ) {
            (Some((sd, _)), Some((z, _))) => Some((sd, z)),
            _ => None,
        }
    }

    /// Names and shapes of what [`MmmProblem::expand`] writes, after the blocks.
    ///
    /// Ungrouped: `beta (C)` (channel_share models), `channel_contribution (T, C)`,
    /// `intercept ()`, `mu (T)`. Grouped: the per-group values of every pooled
    /// parameter (`adstock_0_geo`, ..., `amplitude_geo`, each `(G, C)`, kernel
    /// parameters before the relative scaling), `beta (G, C)` (channel_share
    /// models), `channel_contribution (G, T, C)`, `intercept (G)`, `mu (G, T)`.
    pub fn deterministics(&self) -> Vec<(&'static str, Vec<usize>)> {
        let s = &self.s;
        let mut v = Vec::new();
        if !s.grouped {
            if !s.direct_beta {
                v.push(("beta", vec![s.c]));
            }
            v.push(("channel_contribution", vec![s.t, s.c]));
            if self.data.tvp[1].is_some() {
                v.push(("media_multiplier", vec![s.t]));
            }
            if s.intercept {
                v.push(("intercept", vec![]));
            }
            if self.data.tvp[0].is_some() {
                v.push(("intercept_tv", vec![s.t]));
            }
            v.push(("mu", vec![s.t]));
            if !self.data.lift.is_empty() {
                v.push(("lift_model", vec![self.data.lift.len()]));
            }
            return v;
        }
        for tg in Target::ALL {
            if self.pooled(tg).is_some() {
                v.push((tg.geo_name(), vec![s.g, s.c]));
            }
        }
        if !s.direct_beta {
            v.push(("beta", vec![s.g, s.c]));
        }
        v.push(("channel_contribution", vec![s.g, s.t, s.c]));
        if s.intercept {
            v.push(("intercept", vec![s.g]));
        }
        v.push(("mu", vec![s.g, s.t]));
        if !self.data.lift.is_empty() {
            v.push(("lift_model", vec![self.data.lift.len()]));
        }
        v
    }

    /// Length of the expanded vector: block values, then deterministics.
    pub fn n_expanded(&self) -> usize {
        self.n_dim
            + self
                .deterministics()
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum::<usize>()
    }

    fn scratch_len(&self) -> usize {
        let (g, t, c) = (self.s.g, self.s.t, self.s.c);
        let nl2 = 2 * self.data.lift.len();
        let level_lift = if self.data.lift.weights.is_empty() {
            0
        } else {
            g * c * t
        };
        let lift = nl2 * (8 + 6 * self.data.lift.steady) + g * c + 2 * nl2 + level_lift;
        let m: usize = self.data.tvp.iter().flatten().map(TvpData::m).sum();
        let tvp = 5 * t + 4 * m;
        3 * self.n_dim + 8 * g * t * c + 2 * g * t + 19 * g * c + g + lift + tvp
    }

    /// Log-density and gradient at unconstrained `x`. Returns the log-density;
    /// non-finite values are returned as they are (the caller reports them).
    pub fn logp_grad(&self, x: &[f64], grad: &mut [f64]) -> KResult<f64> {
        crate::error::check_len("x", x, self.n_dim)?;
        crate::error::check_len("grad", grad, self.n_dim)?;
        SCRATCH.with(|cell| {
            let mut sc = cell.borrow_mut();
            let need = self.scratch_len();
            if sc.buf.len() < need {
                sc.buf.resize(need, 0.0);
            }
            self.eval(x, Some(grad), None, &mut sc.buf[..need])
        })
    }

    /// Constrained values of every block followed by the deterministics
    /// (see [`MmmProblem::deterministics`]).
    pub fn expand(&self, x: &[f64], out: &mut [f64]) -> KResult<()> {
        crate::error::check_len("x", x, self.n_dim)?;
        crate::error::check_len("out", out, self.n_expanded())?;
        let mut buf = vec![0.0; self.scratch_len()];
        self.eval(x, None, Some(out), &mut buf)?;
        Ok(())
    }

    #[inline]
    fn block_of(&self, role: Role) -> Option<(usize, &Block)> {
        self.slots[role.slot()].map(|i| (self.offsets[i], &self.blocks[i]))
    }

    /// The block holding a pooled target's global values.
    fn target_block(&self, tg: Target) -> Option<(usize, &Block)> {
        match tg {
            Target::Adstock(j) => self.block_of(Role::Adstock(j)),
            Target::Saturation(j) => self.block_of(Role::Saturation(j)),
            Target::Amplitude => self
                .block_of(Role::ChannelShare)
                .or_else(|| self.block_of(Role::Roas))
                .or_else(|| self.block_of(Role::Beta)),
        }
    }

    /// Per-group values `(G, C)` of a media parameter and, when pooled, their
    /// derivative with respect to the transform's argument.
    fn group_values(
        &self,
        tg: Target,
        x: &[f64],
        vals: &[f64],
        dst: &mut [f64],
        ddst: &mut [f64],
    ) -> KResult<()> {
        let (g, c) = (self.s.g, self.s.c);
        let (off, b) = self
            .target_block(tg)
            .ok_or_else(|| bad("media parameter block missing"))?;
        match self.pooled(tg) {
            Some((sdo, zo)) => {
                let sd = vals[sdo];
                for gi in 0..g {
                    for ch in 0..c {
                        let lo = b.lower.get(ch).copied().unwrap_or(0.0);
                        let hi = b.upper.get(ch).copied().unwrap_or(1.0);
                        let i = gi * c + ch;
                        let (v, _, dv, _) =
                            b.transform.apply(x[off + ch] + sd * vals[zo + i], lo, hi);
                        dst[i] = v;
                        ddst[i] = dv;
                    }
                }
            }
            None => {
                for gi in 0..g {
                    dst[gi * c..(gi + 1) * c].copy_from_slice(&vals[off..off + c]);
                }
            }
        }
        Ok(())
    }

    /// Sends the gradient with respect to per-group values `(G, C)` to the
    /// blocks: the global parameter (through its transform when pooled, straight
    /// to the unconstrained gradient `graw`), the pool's sd and z.
    #[allow(clippy::too_many_arguments)]
    fn group_grads(
        &self,
        tg: Target,
        gw: &[f64],
        dw: &[f64],
        vals: &[f64],
        gv: &mut [f64],
        graw: &mut [f64],
    ) -> KResult<()> {
        let (g, c) = (self.s.g, self.s.c);
        let (off, _) = self
            .target_block(tg)
            .ok_or_else(|| bad("media parameter block missing"))?;
        match self.pooled(tg) {
            Some((sdo, zo)) => {
                let sd = vals[sdo];
                let mut gsd = 0.0;
                for gi in 0..g {
                    for ch in 0..c {
                        let i = gi * c + ch;
                        let d = gw[i] * dw[i];
                        graw[off + ch] += d;
                        gsd += d * vals[zo + i];
                        gv[zo + i] += d * sd;
                    }
                }
                gv[sdo] += gsd;
            }
            None => {
                for row in gw.chunks_exact(c) {
                    for (gvc, gwc) in gv[off..off + c].iter_mut().zip(row) {
                        *gvc += gwc;
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Self::eval_body`] compiled for the widest SIMD level the CPU has
    /// (chosen at run time, as the kernels do): the whole log-density, not only
    /// the saturation loops, then runs on AVX2 or AVX-512 vectors.
    fn eval(
        &self,
        x: &[f64],
        grad: Option<&mut [f64]>,
        expand: Option<&mut [f64]>,
        buf: &mut [f64],
    ) -> KResult<f64> {
        #[cfg(target_arch = "x86_64")]
        {
            let level = crate::kernels::simd::level();
            // SAFETY: `level()` checked that the CPU has the enabled features.
            if level >= 2 {
                return unsafe { self.eval_avx512(x, grad, expand, buf) };
            }
            if level == 1 {
                return unsafe { self.eval_avx2(x, grad, expand, buf) };
            }
        }
        self.eval_body::<false>(x, grad, expand, buf)
    }

    eval_with_features!(eval_avx512, "avx512f,avx512dq,avx512vl,avx2,fma");
    eval_with_features!(eval_avx2, "avx2,fma");

    /// `F`: fused multiply-adds (the AVX2 and AVX-512 builds).
    #[allow(clippy::too_many_lines)]
    #[inline(always)]
    fn eval_body<const F: bool>(
        &self,
        x: &[f64],
        grad: Option<&mut [f64]>,
        expand: Option<&mut [f64]>,
        buf: &mut [f64],
    ) -> KResult<f64> {
        let s = &self.s;
        let (g, t, c, f, k) = (s.g, s.t, s.c, s.f, s.k);
        let n = self.n_dim;
        let gc = g * c;
        let gtc = g * t * c;
        let (vals, rest) = buf.split_at_mut(n);
        let (dvdu, rest) = rest.split_at_mut(n);
        let (gv, rest) = rest.split_at_mut(n);
        let (sat, rest) = rest.split_at_mut(gtc);
        let (cache, rest) = rest.split_at_mut(4 * gtc);
        let (gsat, rest) = rest.split_at_mut(gtc);
        let (spare, rest) = rest.split_at_mut(gtc);
        let (mu, rest) = rest.split_at_mut(g * t);
        let (r, rest) = rest.split_at_mut(g * t);
        let (kp, rest) = rest.split_at_mut(4 * gc); // kernel params a0, a1, s0, s1 per (group, channel)
        let (dkp, rest) = rest.split_at_mut(4 * gc); // their derivatives when pooled
        let (amp, rest) = rest.split_at_mut(gc);
        let (damp, rest) = rest.split_at_mut(gc);
        let (beta, rest) = rest.split_at_mut(gc);
        let (msat, rest) = rest.split_at_mut(gc);
        let (gb, rest) = rest.split_at_mut(gc);
        let (gkern, rest) = rest.split_at_mut(4 * gc); // gradients of the kernel params
        let (gamp, rest) = rest.split_at_mut(gc);
        let (offset, rest) = rest.split_at_mut(g);
        // Lift tests: 2N columns of `steady` periods.
        let lf = &self.data.lift;
        let nl = lf.len();
        let (nl2, st) = (2 * nl, lf.steady);
        let (lkp, rest) = rest.split_at_mut(4 * nl2);
        let (lgk, rest) = rest.split_at_mut(4 * nl2);
        let (ly, rest) = rest.split_at_mut(nl2 * st);
        let (lcache, rest) = rest.split_at_mut(4 * nl2 * st);
        let (lg, rest) = rest.split_at_mut(nl2 * st);
        let (lgb, rest) = rest.split_at_mut(gc);
        // The modelled lifts; with level lifts (log target) sum_t w L per test and the direct
        // gradient w.r.t. sat of the channel's own term in L.
        let level_lift = !lf.weights.is_empty();
        let (lm, rest) = rest.split_at_mut(nl);
        let (lwl, rest) = rest.split_at_mut(nl);
        let (lsat, rest) = rest.split_at_mut(if level_lift { gc * t } else { 0 });
        let (_, rest) = rest.split_at_mut(2 * nl);
        // Time-varying parts (g == 1): the drift, the multiplier, raw media, their gradients.
        let (drift, rest) = rest.split_at_mut(if self.data.tvp[0].is_some() { t } else { 0 });
        let (mult, rest) = rest.split_at_mut(if self.data.tvp[1].is_some() { t } else { 0 });
        let (rawm, rest) = rest.split_at_mut(t);
        // Gradients w.r.t. the drift / log multiplier; a part's half is written in full when it is on.
        let (gpart, rest) = rest.split_at_mut(2 * t);
        let (tw, _) = rest.split_at_mut(
            4 * self
                .data
                .tvp
                .iter()
                .flatten()
                .map(TvpData::m)
                .sum::<usize>(),
        );
        // Per part: w (m) then q = a / N (m), stacked part after part.
        let mut tw_off = [0usize; 2];
        {
            let mut o = 0;
            for p in 0..2 {
                tw_off[p] = o;
                if let Some(d) = &self.data.tvp[p] {
                    o += 2 * d.m();
                }
            }
        }

        // 1. Transforms and priors.
        let mut lp = 0.0;
        gv.fill(0.0);
        let want_grad = grad.is_some();
        let mut gbuf = grad;
        for (b, &off) in self.blocks.iter().zip(&self.offsets) {
            for i in 0..b.size {
                let (term, v, dv, gu) = b.prior_term(i, x[off + i]);
                lp += term;
                vals[off + i] = v;
                dvdu[off + i] = dv;
                if let Some(gr) = gbuf.as_deref_mut() {
                    gr[off + i] = gu;
                }
            }
        }
        let get = |role: Role| self.block_of(role);

        // 1b. Time-varying parts: f = phi @ w (drift; the media multiplier is exp(f)).
        for p in 0..2 {
            let Some(d) = &self.data.tvp[p] else { continue };
            let m = d.m();
            let ls = vals[get(Role::TvpLs(p)).ok_or_else(|| bad("tvp ls"))?.0];
            let eta = vals[get(Role::TvpEta(p)).ok_or_else(|| bad("tvp eta"))?.0];
            let zo = get(Role::TvpZ(p)).ok_or_else(|| bad("tvp z"))?.0;
            let (w, q) = tw[tw_off[p]..tw_off[p] + 2 * m].split_at_mut(m);
            let mut nn = 0.0;
            for j in 0..m {
                let a = 1.0 / (3.0 + ls * ls * d.omega[j] * d.omega[j]);
                q[j] = a;
                nn += d.col_ms[j] * a * a;
            }
            let nn = nn.sqrt();
            for j in 0..m {
                q[j] /= nn;
                w[j] = eta * q[j] * vals[zo + j];
            }
            let dst: &mut [f64] = if p == 0 { &mut *drift } else { &mut *mult };
            for (ti, v) in dst.iter_mut().enumerate() {
                *v = dot_f::<F>(&d.phi[ti * m..(ti + 1) * m], w);
            }
            if p == 1 {
                dst.iter_mut().for_each(|v| *v = v.exp());
            }
        }

        // 2. Kernel parameters per (group, channel).
        let n_a = s.media.adstock.n_params();
        let n_s = s.media.saturation.n_params();
        {
            let (kpa, kps) = kp.split_at_mut(2 * gc);
            let (dkpa, dkps) = dkp.split_at_mut(2 * gc);
            for j in 0..n_a {
                let dst = &mut kpa[j * gc..(j + 1) * gc];
                let dd = &mut dkpa[j * gc..(j + 1) * gc];
                self.group_values(Target::Adstock(j), x, vals, dst, dd)?;
            }
            for j in 0..n_s {
                let dst = &mut kps[j * gc..(j + 1) * gc];
                let dd = &mut dkps[j * gc..(j + 1) * gc];
                if let Some(v) = s.fixed_saturation[j] {
                    dst.fill(v);
                    continue;
                }
                self.group_values(Target::Saturation(j), x, vals, dst, dd)?;
                if s.relative == Some(j) {
                    for (d, sc) in dst.iter_mut().zip(&self.data.kappa_scale) {
                        *d *= sc;
                    }
                }
            }
        }
        self.group_values(Target::Amplitude, x, vals, amp, damp)?;
        let (a0, rest) = kp.split_at(gc);
        let (a1, rest) = rest.split_at(gc);
        let (s0, s1) = rest.split_at(gc);
        let a1s: &[f64] = if n_a == 2 { a1 } else { &[] };
        let s1s: &[f64] = if n_s == 2 { s1 } else { &[] };

        // 3. Media, all groups in one call; sat is (G, C, T) throughout.
        let d = Dims::new(g, t, c);
        media_fwd_cols::<F>(
            &s.media,
            d,
            &self.spend_cols,
            self.pad,
            a0,
            a1s,
            s0,
            s1s,
            sat,
            cache,
        )?;
        for (m, col) in msat.iter_mut().zip(sat.chunks_exact(t)) {
            *m = sum8(col) / t as f64;
        }
        if s.direct_beta {
            beta.copy_from_slice(amp);
        } else {
            for i in 0..g * c {
                beta[i] = amp[i] * self.amp_k[i] / msat[i];
            }
        }

        // 3b. Lift tests: the steady-state media transform at x0 and x1 of each test, with the
        // kernel parameters of its (group, channel).
        let ld = Dims::new(1, st, nl2);
        if nl > 0 {
            for j in 0..nl2 {
                let k = lf.cell(j % nl, c);
                for q in 0..4 {
                    lkp[q * nl2 + j] = kp[q * gc + k];
                }
            }
            let (la0, rest) = lkp.split_at(nl2);
            let (la1, rest) = rest.split_at(nl2);
            let (ls0, ls1) = rest.split_at(nl2);
            let la1s: &[f64] = if n_a == 2 { la1 } else { &[] };
            let ls1s: &[f64] = if n_s == 2 { &ls1[..nl2] } else { &[] };
            media_fwd_cols::<F>(
                &s.media,
                ld,
                &self.lift_cols,
                self.pad,
                la0,
                la1s,
                ls0,
                ls1s,
                ly,
                lcache,
            )?;
        }

        // 4. Mean function, per group.
        let centre = s.intercept;
        let lvl = get(Role::Level).map(|(o, _)| o);
        let trd = get(Role::Trend).map(|(o, _)| o);
        let gfo = get(Role::GammaFourier).map(|(o, _)| o);
        let gco = get(Role::GammaControl).map(|(o, _)| o);
        for gi in 0..g {
            let mu_g = &mut mu[gi * t..(gi + 1) * t];
            mu_g.fill(0.0);
            for ch in 0..c {
                let b = beta[gi * c + ch];
                let col = &sat[(gi * c + ch) * t..(gi * c + ch + 1) * t];
                for (m, v) in mu_g.iter_mut().zip(col) {
                    *m += b * v;
                }
            }
            if gi == 0 && !mult.is_empty() {
                rawm.copy_from_slice(mu_g);
                for (m, k) in mu_g.iter_mut().zip(mult.iter()) {
                    *m *= k;
                }
            }
            let media_mean = sum8(mu_g) / t as f64;
            let level = lvl.map(|o| vals[o + gi]).unwrap_or(0.0);
            let trend = trd.map(|o| vals[o + gi]).unwrap_or(0.0);
            offset[gi] = if centre {
                trend * self.tbar[gi] + media_mean
            } else {
                0.0
            };
            let tt = &self.data.trend_t[gi * t..(gi + 1) * t];
            let base = level - offset[gi];
            for (m, tv) in mu_g.iter_mut().zip(tt) {
                *m += base + trend * tv;
            }
            if let Some(o) = gfo {
                let cols = &self.fourier_cols[gi * f * t..(gi + 1) * f * t];
                for (col, gg) in cols
                    .chunks_exact(t)
                    .zip(&vals[o + gi * f..o + (gi + 1) * f])
                {
                    axpy::<F>(mu_g, *gg, col);
                }
            }
            if let Some(o) = gco {
                let cols = &self.controls_cols[gi * k * t..(gi + 1) * k * t];
                for (col, gg) in cols
                    .chunks_exact(t)
                    .zip(&vals[o + gi * k..o + (gi + 1) * k])
                {
                    axpy::<F>(mu_g, *gg, col);
                }
            }
            if !drift.is_empty() {
                axpy::<F>(mu_g, 1.0, drift);
            }
        }

        // 4b. The modelled lift of every test (after mu: a level lift reads the level).
        let (soff, _) = get(Role::Sigma).ok_or_else(|| bad("sigma block"))?;
        for i in 0..nl {
            let k = lf.cell(i, c);
            let (f0, f1) = (ly[i * st + st - 1], ly[(nl + i) * st + st - 1]);
            if level_lift {
                let gi = k / c;
                let half_var = 0.5 * vals[soff + gi] * vals[soff + gi];
                let (mu_g, sat_k) = (&mu[gi * t..(gi + 1) * t], &sat[k * t..(k + 1) * t]);
                let w = &lf.weights[i * t..(i + 1) * t];
                let mut acc = 0.0;
                for ti in 0..t {
                    if w[ti] != 0.0 {
                        acc += w[ti] * (mu_g[ti] - beta[k] * sat_k[ti] + half_var).exp();
                    }
                }
                lwl[i] = acc;
                lm[i] = lf.periods[i] * acc * ((beta[k] * f1).exp() - (beta[k] * f0).exp());
            } else {
                lm[i] = lf.periods[i] * beta[k] * (f1 - f0);
            }
        }

        if let Some(out) = expand {
            out[..n].copy_from_slice(vals);
            let mut o = n;
            if s.grouped {
                for tg in Target::ALL {
                    if self.pooled(tg).is_none() {
                        continue;
                    }
                    let src: &[f64] = match tg {
                        Target::Adstock(j) => &kp[j * gc..(j + 1) * gc],
                        Target::Saturation(j) => &kp[(2 + j) * gc..(3 + j) * gc],
                        Target::Amplitude => amp,
                    };
                    out[o..o + gc].copy_from_slice(src);
                    if let Target::Saturation(j) = tg {
                        if s.relative == Some(j) {
                            for (v, sc) in out[o..o + gc].iter_mut().zip(&self.data.kappa_scale) {
                                *v /= sc;
                            }
                        }
                    }
                    o += gc;
                }
            }
            if !s.direct_beta {
                out[o..o + gc].copy_from_slice(beta);
                o += gc;
            }
            for gi in 0..g {
                for ti in 0..t {
                    let k = if mult.is_empty() { 1.0 } else { mult[ti] };
                    for ch in 0..c {
                        out[o + (gi * t + ti) * c + ch] =
                            sat[(gi * c + ch) * t + ti] * beta[gi * c + ch] * k;
                    }
                }
            }
            o += gtc;
            if !mult.is_empty() {
                out[o..o + t].copy_from_slice(mult);
                o += t;
            }
            if s.intercept {
                let lo = lvl.ok_or_else(|| bad("level block"))?;
                for gi in 0..g {
                    out[o + gi] = vals[lo + gi] - offset[gi];
                }
                o += g;
            }
            if !drift.is_empty() {
                let base = if s.intercept {
                    vals[lvl.ok_or_else(|| bad("level block"))?] - offset[0]
                } else {
                    0.0
                };
                for ti in 0..t {
                    out[o + ti] = base + drift[ti];
                }
                o += t;
            }
            out[o..o + g * t].copy_from_slice(mu);
            o += g * t;
            out[o..o + nl].copy_from_slice(lm);
            return Ok(0.0);
        }

        // 5. Likelihood, per group (sigma per group, nu shared).
        if s.student_t {
            let (noff, _) = get(Role::Nu).ok_or_else(|| bad("nu block"))?;
            let nu = vals[noff];
            let mut gnu = 0.0;
            let dc0 = 0.5 * digamma((nu + 1.0) / 2.0) - 0.5 * digamma(nu / 2.0) - 0.5 / nu;
            let c00 = lgamma((nu + 1.0) / 2.0)
                - lgamma(nu / 2.0)
                - 0.5 * (nu * std::f64::consts::PI).ln();
            for gi in 0..g {
                let sigma = vals[soff + gi];
                let c0 = c00 - sigma.ln();
                let mut gsigma = 0.0;
                for ti in gi * t..(gi + 1) * t {
                    let z = (self.data.y[ti] - mu[ti]) / sigma;
                    let q = z * z / nu;
                    lp += c0 - (nu + 1.0) / 2.0 * q.ln_1p();
                    let w = (nu + 1.0) / (nu + z * z);
                    r[ti] = w * z / sigma;
                    gsigma += -1.0 / sigma + w * z * z / sigma;
                    gnu += dc0 - 0.5 * q.ln_1p() + (nu + 1.0) / 2.0 * q / (nu * (1.0 + q));
                }
                gv[soff + gi] += gsigma;
            }
            gv[noff] += gnu;
        } else {
            for gi in 0..g {
                let sigma = vals[soff + gi];
                let inv = 1.0 / sigma;
                let rows = gi * t..(gi + 1) * t;
                // Sum of squares in eight independent register accumulators: one
                // running sum would be a 156-long chain of dependent additions.
                let mut acc = [0.0f64; 8];
                let (rr, yy, mm) = (&mut r[rows.clone()], &self.data.y[rows.clone()], &mu[rows]);
                let nb = t - t % 8;
                for ((rc, yc), mc) in rr[..nb]
                    .chunks_exact_mut(8)
                    .zip(yy[..nb].chunks_exact(8))
                    .zip(mm[..nb].chunks_exact(8))
                {
                    for l in 0..8 {
                        let z = (yc[l] - mc[l]) * inv;
                        acc[l] += z * z;
                        rc[l] = z * inv;
                    }
                }
                let mut ss = fold8(&acc);
                for ((rv, yv), mv) in rr[nb..].iter_mut().zip(&yy[nb..]).zip(&mm[nb..]) {
                    let z = (yv - mv) * inv;
                    ss += z * z;
                    *rv = z * inv;
                }
                let tn = t as f64;
                lp += tn * (-sigma.ln() - 0.5 * LN_2PI) - 0.5 * ss;
                gv[soff + gi] += (ss - tn) * inv;
            }
        }
        lgb.fill(0.0);
        lsat.fill(0.0);
        for i in 0..nl {
            let m = lm[i];
            let se = lf.se[i];
            let z = (lf.delta[i] - m) / se;
            lp += -0.5 * z * z - se.ln() - 0.5 * LN_2PI;
            // d lp / d m, then to beta[c] and to the two steady-state values.
            let q = z / se;
            let k = lf.cell(i, c);
            let (f0, f1) = (ly[i * st + st - 1], ly[(nl + i) * st + st - 1]);
            lg[i * st..(i + 1) * st].fill(0.0);
            lg[(nl + i) * st..(nl + i + 1) * st].fill(0.0);
            if level_lift {
                // m = P * S * G, S = sum_t w L, L = exp(mu - beta sat + sigma^2 / 2),
                // G = exp(beta f1) - exp(beta f0). dm/dmu_t = P G w L (into r, which flows
                // back through the mean function), dm/dsat_t = -beta P G w L (direct),
                // dm/dsigma = sigma m, dm/dbeta = P G sum_t w L (-sat_t) + P S (f1 e1 - f0 e0).
                let gi = k / c;
                let (p, sum_wl) = (lf.periods[i], lwl[i]);
                let (e0, e1) = ((beta[k] * f0).exp(), (beta[k] * f1).exp());
                let gain = e1 - e0;
                let half_var = 0.5 * vals[soff + gi] * vals[soff + gi];
                let w = &lf.weights[i * t..(i + 1) * t];
                let mut d_beta_level = 0.0;
                for ti in 0..t {
                    if w[ti] == 0.0 {
                        continue;
                    }
                    let s_kt = sat[k * t + ti];
                    let dl =
                        q * p * gain * w[ti] * (mu[gi * t + ti] - beta[k] * s_kt + half_var).exp();
                    r[gi * t + ti] += dl;
                    lsat[k * t + ti] -= dl * beta[k];
                    d_beta_level -= dl * s_kt;
                }
                gv[soff + gi] += q * m * vals[soff + gi];
                lgb[k] += d_beta_level + q * p * sum_wl * (f1 * e1 - f0 * e0);
                lg[i * st + st - 1] = -q * p * sum_wl * beta[k] * e0;
                lg[(nl + i) * st + st - 1] = q * p * sum_wl * beta[k] * e1;
            } else {
                lgb[k] += q * lf.periods[i] * (f1 - f0);
                let gy = q * lf.periods[i] * beta[k];
                lg[i * st + st - 1] = -gy;
                lg[(nl + i) * st + st - 1] = gy;
            }
        }
        let Some(graw) = gbuf else {
            return Ok(lp);
        };
        debug_assert!(want_grad);

        // 6. Backward through the mean function, per group.
        for gi in 0..g {
            let rg = &r[gi * t..(gi + 1) * t];
            let rsum: f64 = sum8(rg);
            if let Some(o) = lvl {
                gv[o + gi] += rsum;
            }
            if let Some(o) = trd {
                let tc_ = if centre { self.tbar[gi] } else { 0.0 };
                gv[o + gi] += dot_centred(rg, &self.data.trend_t[gi * t..(gi + 1) * t], tc_);
            }
            if let Some(o) = gfo {
                let cols = &self.fourier_cols[gi * f * t..(gi + 1) * f * t];
                for (gj, col) in gv[o + gi * f..o + (gi + 1) * f]
                    .iter_mut()
                    .zip(cols.chunks_exact(t))
                {
                    *gj += dot_f::<F>(rg, col);
                }
            }
            if let Some(o) = gco {
                let cols = &self.controls_cols[gi * k * t..(gi + 1) * k * t];
                for (gj, col) in gv[o + gi * k..o + (gi + 1) * k]
                    .iter_mut()
                    .zip(cols.chunks_exact(t))
                {
                    *gj += dot_f::<F>(rg, col);
                }
            }
            // dL/dmedia_t (centring subtracts the mean of media from every mu).
            let shift = if centre { rsum / t as f64 } else { 0.0 };
            let gm = &mut spare[gi * t..(gi + 1) * t];
            for (gg, rt) in gm.iter_mut().zip(rg.iter()) {
                *gg = rt - shift;
            }
            if gi == 0 {
                // Time-varying parts: dL/df = r (the drift is not centred); media = raw * exp(g):
                // dL/dg = dL/dmedia * media, and dL/draw = dL/dmedia * mult.
                let (gdrift, gmed) = gpart.split_at_mut(t);
                if !drift.is_empty() {
                    gdrift.copy_from_slice(rg);
                }
                if !mult.is_empty() {
                    for ti in 0..t {
                        gmed[ti] = gm[ti] * rawm[ti] * mult[ti];
                        gm[ti] *= mult[ti];
                    }
                }
            }
            for ch in 0..c {
                let i = gi * c + ch;
                let col = &sat[i * t..(i + 1) * t];
                gb[i] = dot_f::<F>(gm, col) + if nl > 0 { lgb[i] } else { 0.0 };
                // beta = amp * k / msat: d/damp = k / msat; d/dmsat = -beta / msat, and msat
                // is a mean over time, so every sat[g, c, t] gets the same extra term `per`.
                let per = if s.direct_beta {
                    gamp[i] = gb[i];
                    0.0
                } else {
                    gamp[i] = gb[i] * self.amp_k[i] / msat[i];
                    -gb[i] * beta[i] / msat[i] / t as f64
                };
                let b = beta[i];
                for (gs, gg) in gsat[i * t..(i + 1) * t].iter_mut().zip(gm.iter()) {
                    *gs = gg * b + per;
                }
                if level_lift {
                    for (gs, ls) in gsat[i * t..(i + 1) * t]
                        .iter_mut()
                        .zip(&lsat[i * t..(i + 1) * t])
                    {
                        *gs += ls;
                    }
                }
            }
        }
        self.group_grads(Target::Amplitude, gamp, damp, vals, gv, graw)?;
        for p in 0..2 {
            let Some(dt) = &self.data.tvp[p] else {
                continue;
            };
            let m = dt.m();
            let gf = &gpart[p * t..(p + 1) * t];
            let (lso, eo, zo) = (
                get(Role::TvpLs(p)).ok_or_else(|| bad("tvp ls"))?.0,
                get(Role::TvpEta(p)).ok_or_else(|| bad("tvp eta"))?.0,
                get(Role::TvpZ(p)).ok_or_else(|| bad("tvp z"))?.0,
            );
            let (ls, eta) = (vals[lso], vals[eo]);
            let (_, q) = tw[tw_off[p]..tw_off[p] + 2 * m].split_at(m);
            // q_j = a_j / N, a_j = 1 / (3 + ls^2 w_j^2), N = sqrt(sum_k col_ms_k a_k^2):
            // dq_j/dls = (da_j - q_j * dN) / N with da_j = -2 ls w_j^2 a_j^2, dN = sum_k col_ms_k a_k da_k / N.
            let mut nn = 0.0;
            let mut dn = 0.0;
            for j in 0..m {
                let a = 1.0 / (3.0 + ls * ls * dt.omega[j] * dt.omega[j]);
                let da = -2.0 * ls * dt.omega[j] * dt.omega[j] * a * a;
                nn += dt.col_ms[j] * a * a;
                dn += dt.col_ms[j] * a * da;
            }
            let nn = nn.sqrt();
            let dn = dn / nn;
            let (mut gls, mut geta) = (0.0, 0.0);
            for j in 0..m {
                let mut gw = 0.0;
                for ti in 0..t {
                    gw += dt.phi[ti * m + j] * gf[ti];
                }
                let a = 1.0 / (3.0 + ls * ls * dt.omega[j] * dt.omega[j]);
                let da = -2.0 * ls * dt.omega[j] * dt.omega[j] * a * a;
                let dq = (da - q[j] * dn) / nn;
                let z = vals[zo + j];
                gv[zo + j] += gw * eta * q[j];
                geta += gw * q[j] * z;
                gls += gw * eta * z * dq;
            }
            gv[eo] += geta;
            gv[lso] += gls;
        }

        // 7. Backward through the media kernel, all groups.
        {
            let (ga0, rest) = gkern.split_at_mut(gc);
            let (ga1, rest) = rest.split_at_mut(gc);
            let (gs0, gs1) = rest.split_at_mut(gc);
            let out = MediaGrads {
                ga0: &mut *ga0,
                ga1: if n_a == 2 { &mut *ga1 } else { &mut [] },
                gs0: &mut *gs0,
                gs1: if n_s == 2 { &mut *gs1 } else { &mut [] },
                gx: &mut [],
            };
            media_vjp_cols::<F>(
                &s.media,
                d,
                &self.spend_cols,
                self.pad,
                a0,
                a1s,
                cache,
                gsat,
                out,
            )?;
        }
        if nl > 0 {
            let (lga0, rest) = lgk.split_at_mut(nl2);
            let (lga1, rest) = rest.split_at_mut(nl2);
            let (lgs0, lgs1) = rest.split_at_mut(nl2);
            let lout = MediaGrads {
                ga0: &mut *lga0,
                ga1: if n_a == 2 { &mut *lga1 } else { &mut [] },
                gs0: &mut *lgs0,
                gs1: if n_s == 2 { &mut lgs1[..nl2] } else { &mut [] },
                gx: &mut [],
            };
            let la0 = &lkp[..nl2];
            let la1s: &[f64] = if n_a == 2 { &lkp[nl2..2 * nl2] } else { &[] };
            media_vjp_cols::<F>(
                &s.media,
                ld,
                &self.lift_cols,
                self.pad,
                la0,
                la1s,
                lcache,
                lg,
                lout,
            )?;
            for j in 0..nl2 {
                let k = lf.cell(j % nl, c);
                for q in 0..4 {
                    let used = if q < 2 { q < n_a } else { q - 2 < n_s };
                    if used {
                        gkern[q * gc + k] += lgk[q * nl2 + j];
                    }
                }
            }
        }
        for j in 0..n_a {
            self.group_grads(
                Target::Adstock(j),
                &gkern[j * gc..(j + 1) * gc],
                &dkp[j * gc..(j + 1) * gc],
                vals,
                gv,
                graw,
            )?;
        }
        for j in 0..n_s {
            if s.fixed_saturation[j].is_some() {
                continue;
            }
            let gk = &mut gkern[(2 + j) * gc..(3 + j) * gc];
            if s.relative == Some(j) {
                for (gg, sc) in gk.iter_mut().zip(&self.data.kappa_scale) {
                    *gg *= sc;
                }
            }
            self.group_grads(
                Target::Saturation(j),
                &gkern[(2 + j) * gc..(3 + j) * gc],
                &dkp[(2 + j) * gc..(3 + j) * gc],
                vals,
                gv,
                graw,
            )?;
        }
        for i in 0..n {
            graw[i] += gv[i] * dvdu[i];
        }
        Ok(lp)
    }
}

// Reductions use eight partial sums: independent chains that fill a vector
// register (one running sum is a chain of dependent additions, latency-bound).
use crate::kernels::adstock::{dot_f, fold8, reduce8};

/// `sum_i a[i] (b[i] - c)` with eight accumulators; centring each term keeps
/// the precision when `b` is large relative to its spread (e.g. calendar years).
#[inline(always)]
fn dot_centred(a: &[f64], b: &[f64], c: f64) -> f64 {
    reduce8(a, b, |s, u, v| s + u * (v - c))
}

/// Sum with eight independent accumulators (see `dot`).
#[inline(always)]
fn sum8(a: &[f64]) -> f64 {
    reduce8(a, a, |s, u, _| s + u)
}

/// y += a * x
#[inline(always)]
fn axpy<const F: bool>(y: &mut [f64], a: f64, x: &[f64]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = crate::kernels::fastmath::mla::<F>(a, *xv, *yv);
    }
}

/// (G, T, K) row-major -> (G, K, T) column-major.
fn to_cols(v: &[f64], g: usize, t: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; g * t * k];
    for gi in 0..g {
        for ti in 0..t {
            for j in 0..k {
                out[(gi * k + j) * t + ti] = v[(gi * t + ti) * k + j];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::adstock::{Adstock, AdstockKind};
    use crate::kernels::saturation::SaturationKind;

    fn block(role: Role, size: usize, dist: Dist, p: &[f64], transform: Transform) -> Block {
        Block {
            role,
            size,
            dist,
            params: p.iter().map(|&v| vec![v; size]).collect(),
            konst: vec![0.0; size],
            transform,
            lower: vec![],
            upper: vec![],
        }
    }

    #[test]
    fn beta_prior_on_log_odds_is_exact_in_the_tails() {
        // Beta(a, b) on v = sigmoid(u), log-Jacobian included:
        // f(u) = (a-1) ln s + (b-1) ln(1-s) + ln s + ln(1-s), f'(u) = a (1-s) - b s.
        for (a, bb) in [(1.0, 3.0), (3.0, 1.0), (2.0, 2.0), (0.5, 0.7)] {
            let blk = block(
                Role::Adstock(0),
                1,
                Dist::Beta,
                &[a, bb],
                Transform::LogOdds,
            );
            for u in [
                -800.0, -750.0, -40.0, -5.0, 0.0, 0.3, 5.0, 37.0, 40.0, 800.0,
            ] {
                let (term, _, _, gu) = blk.prior_term(0, u);
                // Reference with exact tails: ln s = -softplus(-u), ln(1-s) = -softplus(u).
                let sp = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
                let (ls, l1s) = (-sp(-u), -sp(u));
                let f = a * ls + bb * l1s;
                let s = 1.0 / (1.0 + (-u).exp());
                let df = a * (1.0 - s) - bb * s;
                assert!(term.is_finite() && gu.is_finite(), "u {u}: {term} {gu}");
                assert!(
                    (term - f).abs() <= 1e-12 * f.abs().max(1.0),
                    "u {u}: {term} vs {f}"
                );
                assert!(
                    (gu - df).abs() <= 1e-12 * df.abs().max(1.0),
                    "u {u}: {gu} vs {df}"
                );
            }
        }
    }

    #[test]
    fn normalised_delayed_weights_with_a_subnormal_sum_stay_finite() {
        // theta far beyond l_max: every weight is tiny and their sum subnormal,
        // so 1/sum overflows; the weights must still normalise to a finite vector.
        let spec = Adstock::new(AdstockKind::Delayed, 4, true).unwrap();
        let (mut w, mut d0, mut d1) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
        crate::kernels::adstock::batch_weights(
            &spec,
            &[0.5],
            &[35.2],
            &mut w,
            Some((&mut d0, &mut d1)),
        );
        assert!(
            w.iter().chain(&d0).chain(&d1).all(|v| v.is_finite()),
            "{w:?} {d0:?} {d1:?}"
        );
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    }

    fn problem(g: usize, grouped: bool, student_t: bool, lift: bool) -> MmmProblem {
        problem_tvp(g, grouped, student_t, lift, [false, false])
    }

    fn problem_tvp(
        g: usize,
        grouped: bool,
        student_t: bool,
        lift: bool,
        tv: [bool; 2],
    ) -> MmmProblem {
        let (t, c, f, k) = (14, 2, 2, 1);
        let s = MmmStructure {
            g,
            grouped,
            t,
            c,
            f,
            k,
            media: Media {
                adstock: Adstock::new(AdstockKind::Geometric, 4, !lift).unwrap(),
                saturation: SaturationKind::Hill,
            },
            relative: Some(0),
            fixed_saturation: [None, None],
            intercept: true,
            trend: true,
            student_t,
            direct_beta: false,
        };
        let mut rng = 12345u64;
        let mut u = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((rng >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let n = g * t;
        let spend: Vec<f64> = (0..n * c)
            .map(|i| if i % 5 == 0 { 0.0 } else { u() })
            .collect();
        let data = MmmData {
            y: (0..n).map(|_| 0.5 + 0.5 * u()).collect(),
            spend,
            trend_t: (0..n).map(|i| (i % t) as f64 / (t - 1) as f64).collect(),
            fourier: (0..n * f).map(|_| u() - 0.5).collect(),
            controls: (0..n * k).map(|_| u() - 0.5).collect(),
            kappa_scale: (0..g * c).map(|_| 0.5 + u()).collect(),
            roas_scale: vec![],
            lift: if lift {
                LiftData {
                    channel: vec![0, 1, 1],
                    group: if g > 1 { vec![0, g - 1, 1] } else { vec![] },
                    x0: vec![0.0, 0.4, 0.7],
                    x1: vec![0.5, 0.9, 0.2],
                    periods: vec![6.0, 4.0, 3.0],
                    delta: vec![0.8, 0.3, -0.2],
                    se: vec![0.2, 0.1, 0.15],
                    steady: 5,
                    weights: vec![],
                }
            } else {
                LiftData::default()
            },
            tvp: [None, None],
        };
        let mut data = data;
        let m = 5;
        for p in 0..2 {
            if tv[p] {
                let phi: Vec<f64> = (0..t * m)
                    .map(|i| ((i / m) as f64 * 0.3 * (1 + i % m) as f64).sin() * 0.4)
                    .collect();
                let col_ms = (0..m)
                    .map(|j| (0..t).map(|ti| phi[ti * m + j].powi(2)).sum::<f64>() / t as f64)
                    .collect();
                data.tvp[p] = Some(TvpData {
                    phi,
                    omega: (1..=m).map(|j| 0.1 * j as f64).collect(),
                    col_ms,
                });
            }
        }
        let id = Transform::Identity;
        let mut blocks = vec![
            block(Role::Level, g, Dist::Normal, &[0.5, 1.0], id),
            block(Role::Trend, g, Dist::Normal, &[0.0, 0.5], id),
            block(Role::GammaFourier, g * f, Dist::Normal, &[0.0, 0.5], id),
            block(Role::GammaControl, g * k, Dist::Normal, &[0.0, 0.5], id),
            block(
                Role::Adstock(0),
                c,
                Dist::Beta,
                &[2.0, 2.0],
                Transform::LogOdds,
            ),
            block(
                Role::Saturation(0),
                c,
                Dist::LogNormal,
                &[0.0, 0.7],
                Transform::Log,
            ),
            block(
                Role::Saturation(1),
                c,
                Dist::Gamma,
                &[3.0, 2.0],
                Transform::Log,
            ),
            block(
                Role::ChannelShare,
                c,
                Dist::HalfNormal,
                &[0.25],
                Transform::Log,
            ),
            block(Role::Sigma, g, Dist::HalfNormal, &[0.5], Transform::Log),
        ];
        if student_t {
            blocks.push(block(Role::Nu, 1, Dist::Gamma, &[2.0, 0.1], Transform::Log));
        }
        for p in 0..2 {
            if tv[p] {
                blocks.push(block(
                    Role::TvpLs(p),
                    1,
                    Dist::LogNormal,
                    &[3.0, 0.6],
                    Transform::Log,
                ));
                blocks.push(block(
                    Role::TvpEta(p),
                    1,
                    Dist::HalfNormal,
                    &[0.2],
                    Transform::Log,
                ));
                blocks.push(block(Role::TvpZ(p), m, Dist::Normal, &[0.0, 1.0], id));
            }
        }
        if grouped {
            for tg in [
                Target::Adstock(0),
                Target::Saturation(0),
                Target::Saturation(1),
                Target::Amplitude,
            ] {
                blocks.push(block(
                    Role::PoolSd(tg),
                    1,
                    Dist::HalfNormal,
                    &[0.5],
                    Transform::Log,
                ));
                blocks.push(block(Role::PoolZ(tg), g * c, Dist::Normal, &[0.0, 1.0], id));
            }
        }
        MmmProblem::new(s, data, blocks).unwrap()
    }

    fn check_fd(p: &MmmProblem) {
        let n = p.n_dim();
        let x: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64 * 0.7).sin())).collect();
        let mut g = vec![0.0; n];
        let lp = p.logp_grad(&x, &mut g).unwrap();
        assert!(lp.is_finite());
        let mut scratch = vec![0.0; n];
        for i in 0..n {
            let h = 1e-6;
            let mut xp = x.clone();
            xp[i] += h;
            let fp = p.logp_grad(&xp, &mut scratch).unwrap();
            xp[i] -= 2.0 * h;
            let fm = p.logp_grad(&xp, &mut scratch).unwrap();
            let fd = (fp - fm) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
                "coordinate {i}: analytic {} vs finite difference {fd}",
                g[i]
            );
        }
        let mut out = vec![0.0; p.n_expanded()];
        p.expand(&x, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
    }

    /// The same problem with each channel's amplitude a ROAS (LogNormal) relative to `roas_scale`.
    fn as_roas(p: &MmmProblem) -> MmmProblem {
        let (g, c) = (p.s.g, p.s.c);
        let mut data = p.data.clone();
        data.roas_scale = (0..g * c).map(|i| 0.05 + 0.01 * i as f64).collect();
        let blocks: Vec<_> = p
            .blocks
            .iter()
            .map(|b| {
                if b.role == Role::ChannelShare {
                    Block {
                        role: Role::Roas,
                        dist: Dist::LogNormal,
                        params: vec![vec![0.0; c], vec![0.8; c]],
                        ..b.clone()
                    }
                } else {
                    b.clone()
                }
            })
            .collect();
        MmmProblem::new(p.s.clone(), data, blocks).unwrap()
    }

    #[test]
    fn roas_amplitude_gradient_matches_finite_differences() {
        let base = problem(1, false, false, true);
        let roas = as_roas(&base);
        check_fd(&roas);
        check_fd(&as_roas(&problem(3, true, true, false)));
        // the channel's mean contribution over the period is roas * roas_scale, whatever the curve
        let n = roas.n_dim();
        let x: Vec<f64> = (0..n).map(|i| 0.2 * ((i as f64 * 1.3).cos())).collect();
        let mut out = vec![0.0; roas.n_expanded()];
        roas.expand(&x, &mut out).unwrap();
        let (t, c) = (roas.s.t, roas.s.c);
        let (off, _) = roas.block_of(Role::Roas).unwrap();
        let contrib_at = roas.n_dim + c; // after the blocks: beta (C), then channel_contribution (T, C)
        for ch in 0..c {
            let mean: f64 = (0..t).map(|ti| out[contrib_at + ti * c + ch]).sum::<f64>() / t as f64;
            let want = out[off + ch] * roas.data.roas_scale[ch];
            assert!(
                (mean - want).abs() <= 1e-12 * want.abs(),
                "{mean} vs {want}"
            );
        }
        // a roas block needs its roas_scale, and roas_scale needs a roas block
        let mut data = roas.data.clone();
        data.roas_scale.clear();
        assert!(MmmProblem::new(roas.s.clone(), data, roas.blocks.clone()).is_err());
        let mut data = base.data.clone();
        data.roas_scale = vec![1.0; c];
        assert!(MmmProblem::new(base.s.clone(), data, base.blocks.clone()).is_err());
    }

    #[test]
    fn grouped_pooled_gradient_matches_finite_differences() {
        check_fd(&problem(3, true, false, false));
        check_fd(&problem(3, true, true, false));
    }

    #[test]
    fn lift_test_gradient_matches_finite_differences() {
        check_fd(&problem(1, false, false, true));
        check_fd(&problem(1, false, true, true));
        // geo experiments in a hierarchical model: each test reads its own group's parameters
        check_fd(&problem(3, true, false, true));
        // level lifts (log target): each test reads the level at its dates through mu, sigma
        // and its channel's own term; one test dated, the others spread over every date
        for (g, grouped, student_t) in [(1, false, false), (1, false, true), (3, true, false)] {
            let mut p = problem(g, grouped, student_t, true);
            let mut data = p.data.clone();
            let (n, t) = (data.lift.len(), p.s.t);
            let mut w = vec![1.0 / t as f64; n * t];
            w[..t].fill(0.0);
            w[3..7].fill(0.25);
            data.lift.weights = w;
            p = MmmProblem::new(p.s.clone(), data, p.blocks.clone()).unwrap();
            check_fd(&p);
        }
        // weights of the wrong length are an error
        let p = problem(1, false, false, true);
        let mut data = p.data.clone();
        data.lift.weights = vec![0.5; 3];
        assert!(MmmProblem::new(p.s.clone(), data, p.blocks.clone()).is_err());
    }

    #[test]
    fn time_varying_gradient_matches_finite_differences() {
        check_fd(&problem_tvp(1, false, false, false, [true, false]));
        check_fd(&problem_tvp(1, false, false, false, [false, true]));
        check_fd(&problem_tvp(1, false, true, false, [true, true]));
        let p = problem_tvp(1, false, false, false, [true, true]);
        let names: Vec<_> = p.deterministics().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "beta",
                "channel_contribution",
                "media_multiplier",
                "intercept",
                "intercept_tv",
                "mu"
            ]
        );
        // a basis without its blocks is an error
        let blocks: Vec<_> = p
            .blocks
            .iter()
            .filter(|b| b.role != Role::TvpZ(1))
            .cloned()
            .collect();
        assert!(MmmProblem::new(p.s.clone(), p.data.clone(), blocks).is_err());
    }

    #[test]
    fn expand_layout_has_group_axis_and_lift_model() {
        let p = problem(3, true, false, false);
        let names: Vec<_> = p.deterministics().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "adstock_0_geo",
                "saturation_0_geo",
                "saturation_1_geo",
                "amplitude_geo",
                "beta",
                "channel_contribution",
                "intercept",
                "mu"
            ]
        );
        let p = problem(1, false, false, true);
        let d = p.deterministics();
        assert_eq!(d.last().unwrap(), &("lift_model", vec![3]));
    }

    #[test]
    fn bad_layouts_are_errors_not_panics() {
        let p = problem(2, true, false, false);
        // several groups without the grouped layout
        let mut s = p.s.clone();
        s.grouped = false;
        assert!(MmmProblem::new(s, p.data.clone(), p.blocks.clone()).is_err());
        // lift tests in a group that does not exist
        let mut d = p.data.clone();
        d.lift = problem(1, false, false, true).data.lift;
        d.lift.group = vec![0, 2, 1];
        assert!(MmmProblem::new(p.s.clone(), d, p.blocks.clone()).is_err());
        // a pool sd without its z
        let blocks: Vec<_> = p
            .blocks
            .iter()
            .filter(|b| b.role != Role::PoolZ(Target::Amplitude))
            .cloned()
            .collect();
        assert!(MmmProblem::new(p.s.clone(), p.data.clone(), blocks).is_err());
    }
}
