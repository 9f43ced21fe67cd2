//! Adstock (carry-over) transforms and their vector-Jacobian products.
//!
//! Conventions follow pymc-marketing 0.19 (`pymc_marketing.mmm.transformers`),
//! convolution mode "After": `y[t] = sum_l w[l] * x[t - l]`, zeros before t = 0.
//!
//! * geometric, recursive (`l_max == 0`): `y[t] = x[t] + alpha * y[t-1]`.
//! * geometric, truncated: `w[l] = alpha^l`, `l = 0..l_max`.
//! * delayed: `w[l] = alpha^((l - theta)^2)`, `l = 0..l_max`.
//! * Weibull PDF: `p[i] = pdf(i; k, lam)` for `i = 1..=l_max`, min-max scaled
//!   `w = (p - min p) / (max p - min p)` (so `l_max >= 2`).
//! * Weibull CDF: `s[i] = 1 - cdf(i; k, lam) = exp(-(i/lam)^k)`,
//!   `w = cumprod([1, s[1], .., s[l_max]])`: `l_max + 1` taps.
//!
//! With `normalize`, weights are divided by their sum. Parameters: p0/p1 are
//! (alpha, -) for geometric, (alpha, theta) for delayed, (lam, k) for Weibull.

use super::fastmath::mla;
use super::Dims;
use crate::error::{check_len, KResult, KernelError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdstockKind {
    Geometric,
    Delayed,
    WeibullPdf,
    WeibullCdf,
}

/// A fully specified adstock: kind plus static options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adstock {
    pub kind: AdstockKind,
    /// Number of lags; 0 means the untruncated recursion (geometric only).
    pub l_max: usize,
    pub normalize: bool,
}

impl Adstock {
    /// Builds and checks an adstock spec.
    pub fn new(kind: AdstockKind, l_max: usize, normalize: bool) -> KResult<Self> {
        let a = Adstock {
            kind,
            l_max,
            normalize,
        };
        a.check()?;
        Ok(a)
    }

    /// Number of per-channel parameters (1 or 2).
    pub fn n_params(&self) -> usize {
        match self.kind {
            AdstockKind::Geometric => 1,
            _ => 2,
        }
    }

    /// True for the untruncated geometric recursion.
    pub fn is_recursive(&self) -> bool {
        self.kind == AdstockKind::Geometric && self.l_max == 0
    }

    /// Number of convolution taps.
    pub fn n_taps(&self) -> usize {
        match self.kind {
            AdstockKind::WeibullCdf => self.l_max + 1,
            _ => self.l_max,
        }
    }

    fn check(&self) -> KResult<()> {
        let opt = |msg: &str| {
            Err(KernelError::Option {
                arg: "l_max",
                msg: msg.to_string(),
            })
        };
        match self.kind {
            AdstockKind::Geometric if self.l_max == 0 && self.normalize => Err(KernelError::Option {
                arg: "normalize",
                msg: "normalize=True needs a finite l_max (the untruncated recursion has no finite weight vector)"
                    .into(),
            }),
            AdstockKind::Geometric => Ok(()),
            AdstockKind::WeibullPdf if self.l_max < 2 => {
                opt("must be >= 2 for the Weibull PDF adstock (its weights are min-max scaled)")
            }
            _ if self.l_max < 1 => opt("must be >= 1"),
            _ => Ok(()),
        }
    }
}

/// Tap weights of one channel, and optionally their derivatives with respect to
/// the two parameters. Slices are indexed `[l * stride]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn channel_weights(
    spec: &Adstock,
    p0: f64,
    p1: f64,
    stride: usize,
    w: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let taps = spec.n_taps();
    let mut d0buf = [0.0f64; 0];
    let mut d1buf = [0.0f64; 0];
    let want = grad.is_some();
    let (d0, d1): (&mut [f64], &mut [f64]) = match grad {
        Some((a, b)) => (a, b),
        None => (&mut d0buf, &mut d1buf),
    };
    let idx = |l: usize| l * stride;
    match spec.kind {
        AdstockKind::Geometric => {
            let alpha = p0;
            // p_l = alpha^l and its derivative d_l = l alpha^(l-1), by exact recurrences
            // (no powf: exact at alpha = 0 and cheap).
            let (mut p, mut d) = (1.0f64, 0.0f64);
            for l in 0..taps {
                w[idx(l)] = p;
                if want {
                    d0[idx(l)] = d;
                    d1[idx(l)] = 0.0;
                }
                d = alpha * d + p;
                p *= alpha;
            }
        }
        AdstockKind::Delayed => {
            let (alpha, theta) = (p0, p1);
            let la = alpha.ln();
            for l in 0..taps {
                let dl = l as f64 - theta;
                let e = dl * dl;
                let v = (e * la).exp();
                w[idx(l)] = v;
                if want {
                    // d/dalpha alpha^e = e alpha^(e-1); d/dtheta = alpha^e ln(alpha) * (-2 (l - theta))
                    d0[idx(l)] = if e == 0.0 {
                        0.0
                    } else {
                        e * ((e - 1.0) * la).exp()
                    };
                    d1[idx(l)] = -2.0 * dl * la * v;
                }
            }
        }
        AdstockKind::WeibullPdf => {
            let (lam, k) = (p0, p1);
            let llam = lam.ln();
            let (mut imin, mut imax) = (0usize, 0usize);
            for l in 0..taps {
                let lz = ((l + 1) as f64).ln() - llam;
                let zk = (k * lz).exp();
                let p = k / lam * ((k - 1.0) * lz - zk).exp();
                w[idx(l)] = p;
                if want {
                    d0[idx(l)] = p * k * (zk - 1.0) / lam;
                    d1[idx(l)] = p * (1.0 / k + lz - zk * lz);
                }
                if p < w[idx(imin)] {
                    imin = l;
                }
                if p > w[idx(imax)] {
                    imax = l;
                }
            }
            let (pmin, pmax) = (w[idx(imin)], w[idx(imax)]);
            let range = pmax - pmin;
            let (d0min, d0max, d1min, d1max) = if want {
                (d0[idx(imin)], d0[idx(imax)], d1[idx(imin)], d1[idx(imax)])
            } else {
                (0.0, 0.0, 0.0, 0.0)
            };
            for l in 0..taps {
                let s = (w[idx(l)] - pmin) / range;
                w[idx(l)] = s;
                if want {
                    d0[idx(l)] = (d0[idx(l)] - d0min - s * (d0max - d0min)) / range;
                    d1[idx(l)] = (d1[idx(l)] - d1min - s * (d1max - d1min)) / range;
                }
            }
        }
        AdstockKind::WeibullCdf => {
            let (lam, k) = (p0, p1);
            let llam = lam.ln();
            // w_j = exp(-S_j), S_j = sum_{i<=j} (i/lam)^k;
            // dw_j/dlam = w_j k S_j / lam, dw_j/dk = -w_j sum_{i<=j} (i/lam)^k ln(i/lam).
            let (mut s, mut sl) = (0.0f64, 0.0f64);
            for l in 0..taps {
                if l > 0 {
                    let lz = (l as f64).ln() - llam;
                    let zk = (k * lz).exp();
                    s += zk;
                    sl += zk * lz;
                }
                let v = (-s).exp();
                w[idx(l)] = v;
                if want {
                    d0[idx(l)] = v * k * s / lam;
                    d1[idx(l)] = -v * sl;
                }
            }
        }
    }
    if spec.normalize {
        let (mut s, mut s0, mut s1) = (0.0, 0.0, 0.0);
        for l in 0..taps {
            s += w[idx(l)];
            if want {
                s0 += d0[idx(l)];
                s1 += d1[idx(l)];
            }
        }
        // One division per channel (these run inside every log-density call),
        // unless 1/s overflows (a delayed adstock far from its peak can sum to a
        // subnormal): then divide, as w / s stays finite.
        let inv = 1.0 / s;
        let by_inv = inv.is_finite();
        let scale = |v: f64| if by_inv { v * inv } else { v / s };
        for l in 0..taps {
            let wn = scale(w[idx(l)]);
            w[idx(l)] = wn;
            if want {
                d0[idx(l)] = scale(d0[idx(l)] - wn * s0);
                d1[idx(l)] = scale(d1[idx(l)] - wn * s1);
            }
        }
    }
}

/// Weights for every channel of one batch member: `w[l * C + c]`.
#[inline(always)]
pub(crate) fn batch_weights(
    spec: &Adstock,
    p0: &[f64],
    p1: &[f64],
    w: &mut [f64],
    mut grad: Option<(&mut [f64], &mut [f64])>,
) {
    let c = p0.len();
    for ch in 0..c {
        let q1 = if p1.is_empty() { 0.0 } else { p1[ch] };
        let g = grad.as_mut().map(|(a, b)| (&mut a[ch..], &mut b[ch..]));
        channel_weights(spec, p0[ch], q1, c, &mut w[ch..], g);
    }
}

/// Sum of eight partial sums in the order of a halving vector reduction
/// (lane i + lane i+4, then + lane i+2, then the last pair).
#[inline(always)]
pub(crate) fn fold8(acc: &[f64; 8]) -> f64 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Dot product with eight independent accumulators in a fixed-size block, so
/// that it vectorises (one SIMD register of partial sums) without fast-math.
#[inline(always)]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_f::<false>(a, b)
}

/// [`dot`] with fused multiply-adds when `F` (FMA builds).
#[inline(always)]
pub(crate) fn dot_f<const F: bool>(a: &[f64], b: &[f64]) -> f64 {
    reduce8(a, b, |s, u, v| mla::<F>(u, v, s))
}

/// `s = step(s, a[i], b[i])` over `min(len a, len b)` elements, with 32
/// independent partial sums (four AVX-512 registers: one register of eight would
/// be a chain of n/8 dependent additions, bound by their latency), folded to
/// eight and then by [`fold8`]; the remainder of fewer than eight in order.
/// The shared shape of the reductions in the log-density.
#[inline(always)]
pub(crate) fn reduce8(a: &[f64], b: &[f64], step: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let n = a.len().min(b.len());
    let (a32, ar) = a[..n].as_chunks::<32>();
    let (b32, br) = b[..n].as_chunks::<32>();
    let mut acc = [0.0f64; 32];
    for (u, v) in a32.iter().zip(b32) {
        for k in 0..32 {
            acc[k] = step(acc[k], u[k], v[k]);
        }
    }
    let (a8, ar) = ar.as_chunks::<8>();
    let (b8, br) = br[..ar.len() + 8 * a8.len()].as_chunks::<8>();
    for (j, (u, v)) in a8.iter().zip(b8).enumerate() {
        for k in 0..8 {
            acc[8 * j + k] = step(acc[8 * j + k], u[k], v[k]);
        }
    }
    let mut s = fold32(&acc);
    for (u, v) in ar.iter().zip(br) {
        s = step(s, *u, *v);
    }
    s
}

/// The 32 partial sums of [`reduce8`] folded to one, in its order.
#[inline(always)]
pub(crate) fn fold32(acc: &[f64; 32]) -> f64 {
    let mut acc8 = [0.0f64; 8];
    for k in 0..8 {
        acc8[k] = (acc[k] + acc[k + 16]) + (acc[k + 8] + acc[k + 24]);
    }
    fold8(&acc8)
}

/// Copies channel `ch` of a `(T, C)` array into a contiguous column.
#[inline(always)]
pub(crate) fn gather(src: &[f64], c: usize, ch: usize, col: &mut [f64]) {
    for (v, row) in col.iter_mut().zip(src.chunks_exact(c)) {
        *v = row[ch];
    }
}

#[inline(always)]
pub(crate) fn scatter(col: &[f64], c: usize, ch: usize, dst: &mut [f64]) {
    for (v, row) in col.iter().zip(dst.chunks_exact_mut(c)) {
        row[ch] = *v;
    }
}

/// 1-D causal convolution of one contiguous column: `y[t] = sum_l w[l] x[t-l]`,
/// with `w[l]` at `w[l * stride]`. Outputs are computed eight at a time with the
/// sum over taps held in registers (one load of `x` per tap and block, one
/// store per block); the sum runs over `l` in increasing order everywhere.
#[inline(always)]
pub(crate) fn conv_col(xc: &[f64], w: &[f64], stride: usize, taps: usize, yc: &mut [f64]) {
    conv_col_c::<false, false>(xc, 0, w, stride, taps, yc)
}

/// [`conv_col`] with fused multiply-adds when `F` (FMA builds), of the column
/// `xp[pad..]` whose first `pad` entries are zeros, and with its outputs clamped
/// at 0 when `C` (`max(y, 0)`, NaN to 0: the adstocked spend of the fused kernel,
/// where rounding can leave -1e-17 for a true 0 and the saturations need x >= 0,
/// without a second pass over the column). With `pad >= taps - 1` (the fused
/// log-density keeps its spend so) and at least 8 outputs, every output, the
/// first `taps - 1` included, is computed in register blocks; the last partial
/// block is computed as a whole block that overlaps the one before (same values
/// written twice). With finite weights the padding adds exact zeros to the sums,
/// so results do not depend on `pad`.
#[inline(always)]
pub(crate) fn conv_col_c<const F: bool, const C: bool>(
    xp: &[f64],
    pad: usize,
    w: &[f64],
    stride: usize,
    taps: usize,
    yc: &mut [f64],
) {
    let t = xp.len() - pad;
    let yc = &mut yc[..t];
    let taps = taps.min(t);
    if taps == 0 {
        yc.fill(0.0);
        return;
    }
    let xc = &xp[pad..];
    let k = Taps { w, stride, taps };
    // Head: outputs that see fewer than `taps` inputs and no padding to read.
    let head = (taps - 1).saturating_sub(pad);
    for (i, y) in yc[..head].iter_mut().enumerate() {
        *y = clamp::<C>(k.output::<F>(xc, i));
    }
    // Blocks of 64 outputs (eight independent chains of additions per tap: enough
    // to keep both FMA pipes busy through their latency), then what is left as
    // one block of 32 or of 8 that may overlap the outputs before it.
    let i = conv_blocks::<64, F, C>(xp, pad, &k, yc, head);
    let i = conv_blocks::<32, F, C>(xp, pad, &k, yc, i);
    if i < t && t - i > 8 && t >= head + 32 {
        conv_blocks::<32, F, C>(xp, pad, &k, yc, t - 32);
        return;
    }
    let i = conv_blocks::<8, F, C>(xp, pad, &k, yc, i);
    if i < t && t >= head + 8 {
        conv_blocks::<8, F, C>(xp, pad, &k, yc, t - 8);
        return;
    }
    for (j, y) in yc[i..].iter_mut().enumerate() {
        *y = clamp::<C>(k.output::<F>(xc, i + j));
    }
}

/// `max(v, 0)` when `C` (NaN to 0, as `f64::max`), else `v`.
#[inline(always)]
fn clamp<const C: bool>(v: f64) -> f64 {
    if C {
        v.max(0.0)
    } else {
        v
    }
}

/// Convolution weights `w[l * stride]`, `l < taps`.
struct Taps<'a> {
    w: &'a [f64],
    stride: usize,
    taps: usize,
}

impl Taps<'_> {
    /// One output `sum_{l <= i} w[l] x[i - l]`, taps in increasing order.
    #[inline(always)]
    fn output<const F: bool>(&self, xc: &[f64], i: usize) -> f64 {
        let mut s = 0.0;
        for l in 0..self.taps.min(i + 1) {
            s = mla::<F>(self.w[l * self.stride], xc[i - l], s);
        }
        s
    }
}

/// Outputs `i0..` of [`conv_col_c`] in blocks of `B` with the sums over taps in
/// registers, reading `xp` (`pad` zeros, then the column); returns where the
/// blocks stopped.
#[inline(always)]
fn conv_blocks<const B: usize, const F: bool, const C: bool>(
    xp: &[f64],
    pad: usize,
    k: &Taps,
    yc: &mut [f64],
    i0: usize,
) -> usize {
    let (w, stride, taps) = (k.w, k.stride, k.taps);
    let t = yc.len();
    // What the unchecked reads below rely on (once per call, not per element).
    assert!(
        taps >= 1
            && pad + i0 + 1 >= taps
            && xp.len() == pad + t
            && (taps - 1).checked_mul(stride).is_some_and(|e| e < w.len())
    );
    let mut i = i0;
    while i + B <= t {
        let mut acc = [0.0f64; B];
        for l in 0..taps {
            // SAFETY: l < taps, so l * stride < w.len(); taps - 1 <= pad + i and
            // i + B <= t, so 0 <= pad + i - l and pad + i - l + B - 1 < xp.len().
            let wl = unsafe { *w.get_unchecked(l * stride) };
            let base = pad + i - l;
            for (j, a) in acc.iter_mut().enumerate() {
                *a = mla::<F>(wl, unsafe { *xp.get_unchecked(base + j) }, *a);
            }
        }
        for (y, a) in yc[i..i + B].iter_mut().zip(acc) {
            *y = clamp::<C>(a);
        }
        i += B;
    }
    i
}

/// Causal convolution of one batch member: `y[t, c] = sum_l w[l, c] x[t-l, c]`.
pub(crate) fn conv_fwd(x: &[f64], w: &[f64], t: usize, c: usize, taps: usize, y: &mut [f64]) {
    let mut buf = vec![0.0; 2 * t];
    let (xc, yc) = buf.split_at_mut(t);
    for ch in 0..c {
        gather(x, c, ch, xc);
        conv_col(xc, &w[ch..], c, taps, yc);
        scatter(yc, c, ch, y);
    }
}

/// VJP of `conv_fwd`: `gx[s] = sum_l w[l] g[s+l]`, `gw[l] = sum_t g[t] x[t-l]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_vjp(
    x: &[f64],
    w: &[f64],
    g: &[f64],
    t: usize,
    c: usize,
    taps: usize,
    gx: &mut [f64],
    gw: &mut [f64],
) {
    let mut buf = vec![0.0; 3 * t];
    let (xc, rest) = buf.split_at_mut(t);
    let (gc, gxc) = rest.split_at_mut(t);
    gw.fill(0.0);
    for ch in 0..c {
        gather(x, c, ch, xc);
        gather(g, c, ch, gc);
        gxc.fill(0.0);
        for l in 0..taps.min(t) {
            let wl = w[l * c + ch];
            for (gv, src) in gxc[..t - l].iter_mut().zip(&gc[l..]) {
                *gv += wl * src;
            }
            gw[l * c + ch] = dot(&gc[l..], &xc[..t - l]);
        }
        scatter(gxc, c, ch, gx);
    }
}

/// Untruncated geometric recursion of one batch member.
pub(crate) fn recursive_fwd(x: &[f64], alpha: &[f64], t: usize, c: usize, y: &mut [f64]) {
    if t == 0 {
        return;
    }
    y[..c].copy_from_slice(&x[..c]);
    for ti in 1..t {
        let (prev, cur) = y.split_at_mut(ti * c);
        let prev = &prev[(ti - 1) * c..];
        let xr = &x[ti * c..(ti + 1) * c];
        for (((yv, xv), pv), av) in cur[..c].iter_mut().zip(xr).zip(prev).zip(alpha) {
            *yv = xv + av * pv;
        }
    }
}

/// VJP of the recursion. The adjoint `lam[t] = g[t] + alpha lam[t+1]` is written into
/// `gx`, which first holds the forward pass (y[t-1] is read before gx[t-1] is overwritten).
pub(crate) fn recursive_vjp(
    x: &[f64],
    alpha: &[f64],
    g: &[f64],
    t: usize,
    c: usize,
    gx: &mut [f64],
    galpha: &mut [f64],
) {
    galpha.fill(0.0);
    if t == 0 {
        return;
    }
    recursive_fwd(x, alpha, t, c, gx);
    for ti in (0..t).rev() {
        for k in 0..c {
            let next = if ti + 1 < t {
                gx[(ti + 1) * c + k]
            } else {
                0.0
            };
            let lam = g[ti * c + k] + alpha[k] * next;
            if ti > 0 {
                galpha[k] += lam * gx[(ti - 1) * c + k];
            }
            gx[ti * c + k] = lam;
        }
    }
}

fn check_params(spec: &Adstock, dims: Dims, p0: &[f64], p1: &[f64]) -> KResult<()> {
    check_len("p0", p0, dims.n_params())?;
    if spec.n_params() == 2 {
        check_len("p1", p1, dims.n_params())?;
    }
    Ok(())
}

/// Adstock forward pass over a `(B, T, C)` array. `p1` is ignored (may be empty)
/// for the geometric kind.
pub fn adstock_fwd(
    spec: &Adstock,
    dims: Dims,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    y: &mut [f64],
) -> KResult<()> {
    spec.check()?;
    check_len("x", x, dims.len())?;
    check_len("out", y, dims.len())?;
    check_params(spec, dims, p0, p1)?;
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    if dims.is_empty() {
        return Ok(());
    }
    if spec.is_recursive() {
        for b in 0..dims.b {
            recursive_fwd(
                &x[b * tc..(b + 1) * tc],
                &p0[b * c..(b + 1) * c],
                t,
                c,
                &mut y[b * tc..(b + 1) * tc],
            );
        }
        return Ok(());
    }
    let taps = spec.n_taps();
    let mut w = vec![0.0; taps * c];
    for b in 0..dims.b {
        let q1 = if spec.n_params() == 2 {
            &p1[b * c..(b + 1) * c]
        } else {
            &[][..]
        };
        batch_weights(spec, &p0[b * c..(b + 1) * c], q1, &mut w, None);
        conv_fwd(
            &x[b * tc..(b + 1) * tc],
            &w,
            t,
            c,
            taps,
            &mut y[b * tc..(b + 1) * tc],
        );
    }
    Ok(())
}

/// Adstock VJP: given upstream `g` (shape of x), writes `gx` and the parameter
/// gradients `gp0`, `gp1` (`gp1` ignored for geometric; may be empty).
#[allow(clippy::too_many_arguments)]
pub fn adstock_vjp(
    spec: &Adstock,
    dims: Dims,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    g: &[f64],
    gx: &mut [f64],
    gp0: &mut [f64],
    gp1: &mut [f64],
) -> KResult<()> {
    spec.check()?;
    check_len("x", x, dims.len())?;
    check_len("g", g, dims.len())?;
    check_len("gx", gx, dims.len())?;
    check_params(spec, dims, p0, p1)?;
    check_len("gp0", gp0, dims.n_params())?;
    if spec.n_params() == 2 {
        check_len("gp1", gp1, dims.n_params())?;
    }
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    if spec.is_recursive() {
        for b in 0..dims.b {
            let r = b * tc..(b + 1) * tc;
            let pr = b * c..(b + 1) * c;
            recursive_vjp(
                &x[r.clone()],
                &p0[pr.clone()],
                &g[r.clone()],
                t,
                c,
                &mut gx[r],
                &mut gp0[pr],
            );
        }
        return Ok(());
    }
    let taps = spec.n_taps();
    let mut buf = vec![0.0; 4 * taps * c];
    let (w, rest) = buf.split_at_mut(taps * c);
    let (d0, rest) = rest.split_at_mut(taps * c);
    let (d1, gw) = rest.split_at_mut(taps * c);
    for b in 0..dims.b {
        let r = b * tc..(b + 1) * tc;
        let pr = b * c..(b + 1) * c;
        let q1 = if spec.n_params() == 2 {
            &p1[pr.clone()]
        } else {
            &[][..]
        };
        batch_weights(spec, &p0[pr.clone()], q1, w, Some((&mut *d0, &mut *d1)));
        if t == 0 {
            gw.fill(0.0);
        } else {
            conv_vjp(&x[r.clone()], w, &g[r.clone()], t, c, taps, &mut gx[r], gw);
        }
        for ch in 0..c {
            let (mut a0, mut a1) = (0.0, 0.0);
            for l in 0..taps {
                a0 += gw[l * c + ch] * d0[l * c + ch];
                a1 += gw[l * c + ch] * d1[l * c + ch];
            }
            gp0[b * c + ch] = a0;
            if spec.n_params() == 2 {
                gp1[b * c + ch] = a1;
            }
        }
    }
    Ok(())
}

/// The tap weights of one channel (for inspection, plots and tests).
pub fn adstock_weights(spec: &Adstock, p0: f64, p1: f64) -> KResult<Vec<f64>> {
    spec.check()?;
    if spec.is_recursive() {
        return Err(KernelError::Option {
            arg: "l_max",
            msg: "the untruncated recursion has no finite weight vector".into(),
        });
    }
    let mut w = vec![0.0; spec.n_taps()];
    channel_weights(spec, p0, p1, 1, &mut w, None);
    Ok(w)
}
