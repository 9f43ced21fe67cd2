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

    /// The log-density without its constant, and its derivative, at `v`.
    #[inline]
    fn kernel(&self, p: [f64; 3], v: f64) -> (f64, f64) {
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
            Dist::Beta => (
                (p[0] - 1.0) * v.ln() + (p[1] - 1.0) * (-v).ln_1p(),
                (p[0] - 1.0) / v - (p[1] - 1.0) / (1.0 - v),
            ),
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
        match self {
            Transform::Identity => (u, 0.0, 1.0, 0.0),
            Transform::Log => {
                let v = u.exp();
                (v, u, v, 1.0)
            }
            Transform::LogOdds | Transform::Interval => {
                let (lo, w) = if *self == Transform::LogOdds {
                    (0.0, 1.0)
                } else {
                    (lo, hi - lo)
                };
                // log sigmoid(u) = -softplus(-u), log(1 - sigmoid(u)) = -softplus(u)
                let s = 1.0 / (1.0 + (-u).exp());
                let lj = w.ln() - softplus(-u) - softplus(u);
                (lo + w * s, lj, w * s * (1.0 - s), 1.0 - 2.0 * s)
            }
            Transform::LowerBound => {
                let e = u.exp();
                (lo + e, u, e, 1.0)
            }
        }
    }
}

#[inline]
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// What a block of the parameter vector is in the model.
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
    Beta,
    Sigma,
    Nu,
}

impl Role {
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
            "beta" => Role::Beta,
            "sigma" => Role::Sigma,
            "nu" => Role::Nu,
            _ => return None,
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

/// The data of one model fit.
#[derive(Clone, Debug)]
pub struct MmmData {
    pub y: Vec<f64>,
    /// (T, C)
    pub spend: Vec<f64>,
    pub trend_t: Vec<f64>,
    /// (T, F)
    pub fourier: Vec<f64>,
    /// (T, K)
    pub controls: Vec<f64>,
    /// (C,)
    pub kappa_scale: Vec<f64>,
}

/// Static structure of the model.
#[derive(Clone, Debug)]
pub struct MmmStructure {
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
    /// Spend transposed to channel-major (C, T), the fused kernel's native layout.
    spend_cols: Vec<f64>,
    offsets: Vec<usize>,
    n_dim: usize,
    ybar: f64,
    tbar: f64,
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

fn bad(msg: &str) -> KernelError {
    KernelError::Option {
        arg: "problem",
        msg: msg.to_string(),
    }
}

impl MmmProblem {
    /// Checks sizes and builds the problem.
    pub fn new(s: MmmStructure, data: MmmData, blocks: Vec<Block>) -> KResult<Self> {
        let (t, c, f, k) = (s.t, s.c, s.f, s.k);
        let check = |arg: &'static str, v: &[f64], n: usize| -> KResult<()> {
            crate::error::check_len(arg, v, n)
        };
        check("y", &data.y, t)?;
        check("spend", &data.spend, t * c)?;
        check("trend_t", &data.trend_t, t)?;
        check("fourier", &data.fourier, t * f)?;
        check("controls", &data.controls, t * k)?;
        check("kappa_scale", &data.kappa_scale, c)?;
        if t == 0 || c == 0 {
            return Err(bad("need at least one period and one channel"));
        }
        let mut offsets = Vec::with_capacity(blocks.len());
        let mut n = 0;
        for b in &blocks {
            let want = match b.role {
                Role::Level | Role::Trend | Role::Sigma | Role::Nu => 1,
                Role::GammaFourier => f,
                Role::GammaControl => k,
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
        if s.direct_beta != (has(Role::Beta) == 1)
            || s.direct_beta == (has(Role::ChannelShare) == 1)
        {
            return Err(bad(
                "exactly one of beta (direct) or channel_share is needed",
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
        let ybar = data.y.iter().sum::<f64>() / t as f64;
        let tbar = data.trend_t.iter().sum::<f64>() / t as f64;
        let mut spend_cols = vec![0.0; t * c];
        for ti in 0..t {
            for ch in 0..c {
                spend_cols[ch * t + ti] = data.spend[ti * c + ch];
            }
        }
        Ok(MmmProblem {
            s,
            data,
            blocks,
            spend_cols,
            offsets,
            n_dim: n,
            ybar,
            tbar,
        })
    }

    /// Same structure and blocks, other data.
    pub fn with_data(&self, data: MmmData) -> KResult<Self> {
        MmmProblem::new(self.s.clone(), data, self.blocks.clone())
    }

    pub fn n_dim(&self) -> usize {
        self.n_dim
    }

    /// Names and shapes of what [`MmmProblem::expand`] writes, after the blocks.
    pub fn deterministics(&self) -> Vec<(&'static str, Vec<usize>)> {
        let mut v = Vec::new();
        if !self.s.direct_beta {
            v.push(("beta", vec![self.s.c]));
        }
        v.push(("channel_contribution", vec![self.s.t, self.s.c]));
        if self.s.intercept {
            v.push(("intercept", vec![]));
        }
        v.push(("mu", vec![self.s.t]));
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
        let (t, c) = (self.s.t, self.s.c);
        3 * self.n_dim + 7 * t * c + 2 * t + 11 * c
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
    /// (beta, channel_contribution, intercept, mu; see [`MmmProblem::deterministics`]).
    pub fn expand(&self, x: &[f64], out: &mut [f64]) -> KResult<()> {
        crate::error::check_len("x", x, self.n_dim)?;
        crate::error::check_len("out", out, self.n_expanded())?;
        let mut buf = vec![0.0; self.scratch_len()];
        self.eval(x, None, Some(out), &mut buf)?;
        Ok(())
    }

    fn block_of(&self, role: Role) -> Option<(usize, &Block)> {
        self.blocks
            .iter()
            .zip(&self.offsets)
            .find(|(b, _)| b.role == role)
            .map(|(b, o)| (*o, b))
    }

    #[allow(clippy::too_many_lines)]
    fn eval(
        &self,
        x: &[f64],
        grad: Option<&mut [f64]>,
        expand: Option<&mut [f64]>,
        buf: &mut [f64],
    ) -> KResult<f64> {
        let s = &self.s;
        let (t, c, f, k) = (s.t, s.c, s.f, s.k);
        let n = self.n_dim;
        let tc = t * c;
        let (vals, rest) = buf.split_at_mut(n);
        let (dvdu, rest) = rest.split_at_mut(n);
        let (gv, rest) = rest.split_at_mut(n);
        let (sat, rest) = rest.split_at_mut(tc);
        let (cache, rest) = rest.split_at_mut(4 * tc);
        let (gsat, rest) = rest.split_at_mut(tc);
        let (contrib_or_spare, rest) = rest.split_at_mut(tc);
        let (mu, rest) = rest.split_at_mut(t);
        let (r, rest) = rest.split_at_mut(t);
        let (kp, rest) = rest.split_at_mut(4 * c); // kernel params a0, a1, s0, s1
        let (beta, rest) = rest.split_at_mut(c);
        let (msat, rest) = rest.split_at_mut(c);
        let (gb, rest) = rest.split_at_mut(c);
        let (gkern, _) = rest.split_at_mut(4 * c); // gradients of the kernel params

        // 1. Transforms and priors.
        let mut lp = 0.0;
        gv.fill(0.0);
        let want_grad = grad.is_some();
        let mut gbuf = grad;
        for (b, &off) in self.blocks.iter().zip(&self.offsets) {
            for i in 0..b.size {
                let lo = b.lower.get(i).copied().unwrap_or(0.0);
                let hi = b.upper.get(i).copied().unwrap_or(1.0);
                let (v, lj, dv, dlj) = b.transform.apply(x[off + i], lo, hi);
                let mut p = [0.0; 3];
                for (slot, col) in p.iter_mut().zip(&b.params) {
                    *slot = col[i];
                }
                let (kv, dk) = b.dist.kernel(p, v);
                lp += b.konst[i] + kv + lj;
                vals[off + i] = v;
                dvdu[off + i] = dv;
                if let Some(g) = gbuf.as_deref_mut() {
                    g[off + i] = dk * dv + dlj;
                }
            }
        }
        let get = |role: Role| self.block_of(role);

        // 2. Kernel parameters.
        let (a0, rest) = kp.split_at_mut(c);
        let (a1, rest) = rest.split_at_mut(c);
        let (s0, s1) = rest.split_at_mut(c);
        let n_a = s.media.adstock.n_params();
        let n_s = s.media.saturation.n_params();
        for (j, dst) in [&mut *a0, &mut *a1].into_iter().enumerate().take(n_a) {
            let (off, _) = get(Role::Adstock(j)).ok_or_else(|| bad("adstock block"))?;
            dst.copy_from_slice(&vals[off..off + c]);
        }
        for (j, dst) in [&mut *s0, &mut *s1].into_iter().enumerate().take(n_s) {
            if let Some(v) = s.fixed_saturation[j] {
                dst.fill(v);
                continue;
            }
            let (off, _) = get(Role::Saturation(j)).ok_or_else(|| bad("saturation block"))?;
            dst.copy_from_slice(&vals[off..off + c]);
            if s.relative == Some(j) {
                for (d, sc) in dst.iter_mut().zip(&self.data.kappa_scale) {
                    *d *= sc;
                }
            }
        }
        let a1s: &[f64] = if n_a == 2 { a1 } else { &[] };
        let s1s: &[f64] = if n_s == 2 { s1 } else { &[] };

        // 3. Media.
        let d = Dims::new(1, t, c);
        // sat is channel-major (C, T) throughout: no transposes, and the loops below vectorise.
        media_fwd_cols(&s.media, d, &self.spend_cols, a0, a1s, s0, s1s, sat, cache)?;
        // Channel means of the saturated media and the amplitudes.
        for (m, col) in msat.iter_mut().zip(sat.chunks_exact(t)) {
            *m = col.iter().sum::<f64>() / t as f64;
        }
        let beta_block = if s.direct_beta {
            get(Role::Beta)
        } else {
            get(Role::ChannelShare)
        };
        let (boff, _) = beta_block.ok_or_else(|| bad("beta/channel_share block"))?;
        for ch in 0..c {
            beta[ch] = if s.direct_beta {
                vals[boff + ch]
            } else {
                vals[boff + ch] * self.ybar / msat[ch]
            };
        }
        // 4. Mean function.
        let level = get(Role::Level).map(|(o, _)| vals[o]).unwrap_or(0.0);
        let trend = get(Role::Trend).map(|(o, _)| vals[o]).unwrap_or(0.0);
        let centre = s.intercept;
        let spare = contrib_or_spare;
        mu.fill(0.0);
        for (col, b) in sat.chunks_exact(t).zip(beta.iter()) {
            for (m, v) in mu.iter_mut().zip(col) {
                *m += b * v;
            }
        }
        let mut media_mean: f64 = mu.iter().sum();
        media_mean /= t as f64;
        let offset = if centre {
            trend * self.tbar + media_mean
        } else {
            0.0
        };
        let gf = get(Role::GammaFourier).map(|(o, _)| &vals[o..o + f]);
        let gc = get(Role::GammaControl).map(|(o, _)| &vals[o..o + k]);
        for ti in 0..t {
            let mut v = mu[ti] + level + trend * self.data.trend_t[ti] - offset;
            if let Some(g) = gf {
                v += dot(&self.data.fourier[ti * f..(ti + 1) * f], g);
            }
            if let Some(g) = gc {
                v += dot(&self.data.controls[ti * k..(ti + 1) * k], g);
            }
            mu[ti] = v;
        }

        if let Some(out) = expand {
            out[..n].copy_from_slice(vals);
            let mut o = n;
            if !s.direct_beta {
                out[o..o + c].copy_from_slice(beta);
                o += c;
            }
            for ti in 0..t {
                for ch in 0..c {
                    out[o + ti * c + ch] = sat[ch * t + ti] * beta[ch];
                }
            }
            o += tc;
            if s.intercept {
                out[o] = level - offset;
                o += 1;
            }
            out[o..o + t].copy_from_slice(mu);
            return Ok(0.0);
        }

        // 5. Likelihood.
        let (soff, _) = get(Role::Sigma).ok_or_else(|| bad("sigma block"))?;
        let sigma = vals[soff];
        let (mut gsigma, mut gnu) = (0.0, 0.0);
        if s.student_t {
            let (noff, _) = get(Role::Nu).ok_or_else(|| bad("nu block"))?;
            let nu = vals[noff];
            let c0 = lgamma((nu + 1.0) / 2.0)
                - lgamma(nu / 2.0)
                - 0.5 * (nu * std::f64::consts::PI).ln()
                - sigma.ln();
            let dc0 = 0.5 * digamma((nu + 1.0) / 2.0) - 0.5 * digamma(nu / 2.0) - 0.5 / nu;
            for ti in 0..t {
                let z = (self.data.y[ti] - mu[ti]) / sigma;
                let q = z * z / nu;
                lp += c0 - (nu + 1.0) / 2.0 * q.ln_1p();
                // d/dmu, d/dsigma, d/dnu
                let w = (nu + 1.0) / (nu + z * z);
                r[ti] = w * z / sigma;
                gsigma += -1.0 / sigma + w * z * z / sigma;
                gnu += dc0 - 0.5 * q.ln_1p() + (nu + 1.0) / 2.0 * q / (nu * (1.0 + q));
            }
            gv[noff] += gnu;
        } else {
            let c0 = -sigma.ln() - 0.5 * LN_2PI;
            for ti in 0..t {
                let z = (self.data.y[ti] - mu[ti]) / sigma;
                lp += c0 - 0.5 * z * z;
                r[ti] = z / sigma;
                gsigma += -1.0 / sigma + z * z / sigma;
            }
        }
        gv[soff] += gsigma;
        if !want_grad {
            return Ok(lp);
        }

        // 6. Backward through the mean function.
        let rsum: f64 = r.iter().sum();
        if let Some((o, _)) = get(Role::Level) {
            gv[o] += rsum;
        }
        if let Some((o, _)) = get(Role::Trend) {
            let tc_ = if centre { self.tbar } else { 0.0 };
            gv[o] += r
                .iter()
                .zip(&self.data.trend_t)
                .map(|(a, b)| a * (b - tc_))
                .sum::<f64>();
        }
        if let Some((o, _)) = get(Role::GammaFourier) {
            let gvf = &mut gv[o..o + f];
            for (rt, frow) in r.iter().zip(self.data.fourier.chunks_exact(f)) {
                for (gj, fv) in gvf.iter_mut().zip(frow) {
                    *gj += rt * fv;
                }
            }
        }
        if let Some((o, _)) = get(Role::GammaControl) {
            let gvk = &mut gv[o..o + k];
            for (rt, krow) in r.iter().zip(self.data.controls.chunks_exact(k)) {
                for (gj, kv) in gvk.iter_mut().zip(krow) {
                    *gj += rt * kv;
                }
            }
        }
        // dL/dmedia_t (centring subtracts the mean of media from every mu).
        let shift = if centre { rsum / t as f64 } else { 0.0 };
        // dL/dbeta_c = sum_t g_t sat[t, c]; dL/dsat[t, c] = g_t beta_c (+ the mean term below).
        let gm = &mut spare[..t];
        for (g, rt) in gm.iter_mut().zip(r.iter()) {
            *g = rt - shift;
        }
        for (gbv, col) in gb.iter_mut().zip(sat.chunks_exact(t)) {
            *gbv = dot(gm, col);
        }
        for ch in 0..c {
            // beta = share * ybar / msat: d/dshare = ybar / msat; d/dmsat = -beta / msat, and msat
            // is a mean over time, so every sat[c, t] gets the same extra term `per`.
            let per = if s.direct_beta {
                gv[boff + ch] += gb[ch];
                0.0
            } else {
                gv[boff + ch] += gb[ch] * self.ybar / msat[ch];
                -gb[ch] * beta[ch] / msat[ch] / t as f64
            };
            let b = beta[ch];
            for (gs, g) in gsat[ch * t..(ch + 1) * t].iter_mut().zip(gm.iter()) {
                *gs = g * b + per;
            }
        }

        // 7. Backward through the media kernel.
        let (ga0, rest) = gkern.split_at_mut(c);
        let (ga1, rest) = rest.split_at_mut(c);
        let (gs0, gs1) = rest.split_at_mut(c);
        let (a0, rest) = kp.split_at(c);
        let a1 = &rest[..c];
        let a1s: &[f64] = if n_a == 2 { a1 } else { &[] };
        let out = MediaGrads {
            ga0: &mut *ga0,
            ga1: if n_a == 2 { &mut *ga1 } else { &mut [] },
            gs0: &mut *gs0,
            gs1: if n_s == 2 { &mut *gs1 } else { &mut [] },
            gx: &mut [],
        };
        media_vjp_cols(&s.media, d, &self.spend_cols, a0, a1s, cache, gsat, out)?;
        for (j, g) in [&*ga0, &*ga1].into_iter().enumerate().take(n_a) {
            let (off, _) = get(Role::Adstock(j)).ok_or_else(|| bad("adstock block"))?;
            for ch in 0..c {
                gv[off + ch] += g[ch];
            }
        }
        for (j, g) in [&*gs0, &*gs1].into_iter().enumerate().take(n_s) {
            if s.fixed_saturation[j].is_some() {
                continue;
            }
            let (off, _) = get(Role::Saturation(j)).ok_or_else(|| bad("saturation block"))?;
            for ch in 0..c {
                let scale = if s.relative == Some(j) {
                    self.data.kappa_scale[ch]
                } else {
                    1.0
                };
                gv[off + ch] += g[ch] * scale;
            }
        }
        if let Some(g) = gbuf {
            for i in 0..n {
                g[i] += gv[i] * dvdu[i];
            }
        }
        Ok(lp)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
