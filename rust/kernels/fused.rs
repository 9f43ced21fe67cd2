//! Fused media transform `saturation(adstock(x))`.
//!
//! The forward pass also writes a cache of shape `(B, 4, C, T)` (channel-major,
//! internal): adstocked spend and the saturation's partial derivatives
//! `[xa, dy/dxa, dy/ds0, dy/ds1]`. The VJP then needs no transcendental
//! function: for Hill, whose `exp`/`ln` dominate the cost, that halves the work
//! of a log-density plus gradient evaluation. The VJP computes the spend
//! gradient only on request, because spend is data in a media mix model.
//!
//! Work is done one channel column at a time: a column is contiguous in time and
//! shares its parameters, so the saturation loop vectorises (with AVX2+FMA when
//! the CPU has it, chosen at run time).

use super::adstock::{batch_weights, conv_col_c, dot_f, fold32, gather, scatter, Adstock};
use super::fastmath::mla;
use super::saturation::{Curve, Hill, Logistic, MichaelisMenten, SaturationKind, Tanh};
use super::simd::{grad_col as sat_col, level as simd_level};
use super::Dims;
use crate::error::{check_len, KResult};
use std::cell::RefCell;

thread_local! {
    static WORK: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// A work buffer from a per-thread pool, returned to it on drop: the kernels run
/// inside the log-density millions of times, so they should not call the
/// allocator (or clear 7 KB) on every call. Its contents are unspecified (values
/// of an earlier call): every user writes each element before reading it.
struct Work(Vec<f64>, usize);

impl Work {
    fn new(n: usize) -> Work {
        let mut v = WORK.with(|c| c.take());
        if v.len() < n {
            v.resize(n, 0.0);
        }
        Work(v, n)
    }
    fn buf(&mut self) -> &mut [f64] {
        &mut self.0[..self.1]
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        WORK.with(|c| {
            if c.borrow().capacity() < v.capacity() {
                c.replace(v);
            }
        });
    }
}

/// An adstock followed by a saturation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Media {
    pub adstock: Adstock,
    pub saturation: SaturationKind,
}

fn p1_of(p: &[f64], b: usize, c: usize) -> &[f64] {
    if p.is_empty() {
        p
    } else {
        &p[b * c..(b + 1) * c]
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sat_dispatch(
    kind: SaturationKind,
    simd: u8,
    s0: f64,
    s1: f64,
    xa: &[f64],
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    match kind {
        SaturationKind::Hill => sat_col::<Hill>(simd, xa, &Hill::pre(s0, s1), y, dx, d0, d1),
        SaturationKind::Logistic => {
            sat_col::<Logistic>(simd, xa, &Logistic::pre(s0, s1), y, dx, d0, d1)
        }
        SaturationKind::MichaelisMenten => {
            sat_col::<MichaelisMenten>(simd, xa, &MichaelisMenten::pre(s0, s1), y, dx, d0, d1)
        }
        SaturationKind::Tanh => sat_col::<Tanh>(simd, xa, &Tanh::pre(s0, s1), y, dx, d0, d1),
    }
}

/// Untruncated geometric recursion over one column.
#[inline(always)]
fn recursive_col(xc: &[f64], alpha: f64, out: &mut [f64]) {
    let mut prev = 0.0;
    for (o, x) in out.iter_mut().zip(xc) {
        prev = x + alpha * prev;
        *o = prev;
    }
}

/// Forward pass: `y = saturation(adstock(x))` and the cache (see module docs).
#[allow(clippy::too_many_arguments)]
pub fn media_fwd(
    m: &Media,
    dims: Dims,
    x: &[f64],
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    y: &mut [f64],
    cache: &mut [f64],
) -> KResult<()> {
    media_fwd_impl::<false>(m, dims, x, a0, a1, s0, s1, y, cache, None)
}

/// [`media_fwd`] with `y` channel-major, `(B, C, T)`, and `x` channel-major
/// with `pad` zeros before each column, `(B, C, pad + T)`: no transposes, for
/// callers that keep their data that way (the fused log-density); with
/// `pad >= n_taps - 1` the convolutions need no special case at the start.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn media_fwd_cols<const F: bool>(
    m: &Media,
    dims: Dims,
    x: &[f64],
    pad: usize,
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    y: &mut [f64],
    cache: &mut [f64],
) -> KResult<()> {
    media_fwd_impl::<F>(m, dims, x, a0, a1, s0, s1, y, cache, Some(pad))
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn media_fwd_impl<const F: bool>(
    m: &Media,
    dims: Dims,
    x: &[f64],
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    y: &mut [f64],
    cache: &mut [f64],
    cols: Option<usize>,
) -> KResult<()> {
    let n = dims.len();
    let pad = cols.unwrap_or(0);
    check_len("x", x, n + pad * dims.n_params())?;
    check_len("out", y, n)?;
    check_len("cache", cache, 4 * n)?;
    check_len("a0", a0, dims.n_params())?;
    check_len("s0", s0, dims.n_params())?;
    if m.adstock.n_params() == 2 {
        check_len("a1", a1, dims.n_params())?;
    }
    if m.saturation.n_params() == 2 {
        check_len("s1", s1, dims.n_params())?;
    }
    if dims.is_empty() {
        return Ok(());
    }
    let simd = simd_level();
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let taps = m.adstock.n_taps();
    let mut work = Work::new(taps * c + 2 * t);
    let (w, buf) = work.buf().split_at_mut(taps * c);
    let (xc, yc) = buf.split_at_mut(t);
    for (b, cb) in cache.chunks_exact_mut(4 * tc).enumerate() {
        let r = b * tc..(b + 1) * tc;
        let (xa_b, rest) = cb.split_at_mut(tc);
        let (dx_b, rest) = rest.split_at_mut(tc);
        let (d0_b, d1_b) = rest.split_at_mut(tc);
        if !m.adstock.is_recursive() {
            batch_weights(
                &m.adstock,
                &a0[b * c..(b + 1) * c],
                p1_of(a1, b, c),
                &mut *w,
                None,
            );
        }
        for ch in 0..c {
            let col = ch * t..(ch + 1) * t;
            let xa = &mut xa_b[col.clone()];
            let xsrc: &[f64] = if cols.is_some() {
                let tp = t + pad;
                &x[(b * c + ch) * tp..(b * c + ch + 1) * tp]
            } else {
                gather(&x[r.clone()], c, ch, xc);
                &*xc
            };
            // Rounding can leave -1e-17 where the true value is 0; saturations need x >= 0.
            if m.adstock.is_recursive() {
                recursive_col(&xsrc[pad..], a0[b * c + ch], xa);
                xa.iter_mut().for_each(|v| *v = v.max(0.0));
            } else {
                conv_col_c::<F, true>(xsrc, pad, &w[ch..], c, taps, xa);
            }
            let q1 = if s1.is_empty() { 0.0 } else { s1[b * c + ch] };
            let ydst: &mut [f64] = if cols.is_some() {
                &mut y[r.start + ch * t..r.start + (ch + 1) * t]
            } else {
                &mut *yc
            };
            sat_dispatch(
                m.saturation,
                simd,
                s0[b * c + ch],
                q1,
                xa,
                ydst,
                &mut dx_b[col.clone()],
                &mut d0_b[col.clone()],
                &mut d1_b[col],
            );
            if cols.is_none() {
                scatter(yc, c, ch, &mut y[r.clone()]);
            }
        }
    }
    Ok(())
}

/// One pass over a column of the saturation VJP: `gxa = g dx` and
/// `(sum g d0, sum g d1)`, each sum with the partial sums and order of
/// `dot_f` (so the same values), instead of three passes.
#[inline(always)]
fn sat_vjp_col<const F: bool>(
    g: &[f64],
    dx: &[f64],
    d0: &[f64],
    d1: &[f64],
    gxa: &mut [f64],
) -> (f64, f64) {
    // `w = acc.len()` elements from `i` into the partial sums `a0`, `a1`. A fn, not a
    // closure: closures do not inherit the caller's target features, and `mla`
    // would become a call to the software fma.
    #[inline(always)]
    fn block<const F: bool>(
        i: usize,
        (g, dx, d0, d1): (&[f64], &[f64], &[f64], &[f64]),
        gxa: &mut [f64],
        a0: &mut [f64],
        a1: &mut [f64],
    ) {
        let w = a0.len();
        let (g, dx, d0, d1) = (&g[i..i + w], &dx[i..i + w], &d0[i..i + w], &d1[i..i + w]);
        let (gx, a1) = (&mut gxa[i..i + w], &mut a1[..w]);
        for k in 0..w {
            gx[k] = g[k] * dx[k];
            a0[k] = mla::<F>(g[k], d0[k], a0[k]);
            a1[k] = mla::<F>(g[k], d1[k], a1[k]);
        }
    }
    let n = g.len();
    let cols = (g, &dx[..n], &d0[..n], &d1[..n]);
    let gxa = &mut gxa[..n];
    let (mut a0, mut a1) = ([0.0f64; 32], [0.0f64; 32]);
    // Lanes of 32, then of 8 into the first lanes, then the rest in order (reduce8's shape).
    let mut i = 0;
    while i + 32 <= n {
        block::<F>(i, cols, gxa, &mut a0, &mut a1);
        i += 32;
    }
    let mut j = 0;
    while i + 8 <= n {
        block::<F>(
            i,
            cols,
            gxa,
            &mut a0[8 * j..8 * j + 8],
            &mut a1[8 * j..8 * j + 8],
        );
        i += 8;
        j += 1;
    }
    let (mut s0, mut s1) = (fold32(&a0), fold32(&a1));
    for i in i..n {
        gxa[i] = g[i] * cols.1[i];
        s0 = mla::<F>(g[i], cols.2[i], s0);
        s1 = mla::<F>(g[i], cols.3[i], s1);
    }
    (s0, s1)
}

/// Gradients of the fused transform, from the forward cache.
pub struct MediaGrads<'a> {
    pub ga0: &'a mut [f64],
    /// Empty for one-parameter adstocks.
    pub ga1: &'a mut [f64],
    pub gs0: &'a mut [f64],
    /// Empty for one-parameter saturations.
    pub gs1: &'a mut [f64],
    /// Spend gradient; skipped when empty.
    pub gx: &'a mut [f64],
}

/// VJP of [`media_fwd`]: parameter gradients (and optionally the spend gradient).
#[allow(clippy::too_many_arguments)]
pub fn media_vjp(
    m: &Media,
    dims: Dims,
    x: &[f64],
    a0: &[f64],
    a1: &[f64],
    cache: &[f64],
    g: &[f64],
    out: MediaGrads<'_>,
) -> KResult<()> {
    media_vjp_impl::<false>(m, dims, x, a0, a1, cache, g, out, None)
}

/// [`media_vjp`] with `g` and `gx` channel-major, `(B, C, T)`, and `x` as in
/// [`media_fwd_cols`], `(B, C, pad + T)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn media_vjp_cols<const F: bool>(
    m: &Media,
    dims: Dims,
    x: &[f64],
    pad: usize,
    a0: &[f64],
    a1: &[f64],
    cache: &[f64],
    g: &[f64],
    out: MediaGrads<'_>,
) -> KResult<()> {
    media_vjp_impl::<F>(m, dims, x, a0, a1, cache, g, out, Some(pad))
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn media_vjp_impl<const F: bool>(
    m: &Media,
    dims: Dims,
    x: &[f64],
    a0: &[f64],
    a1: &[f64],
    cache: &[f64],
    g: &[f64],
    out: MediaGrads<'_>,
    cols: Option<usize>,
) -> KResult<()> {
    let n = dims.len();
    let np = dims.n_params();
    let pad = cols.unwrap_or(0);
    check_len("x", x, n + pad * np)?;
    check_len("g", g, n)?;
    check_len("cache", cache, 4 * n)?;
    check_len("a0", a0, np)?;
    check_len("ga0", out.ga0, np)?;
    check_len("gs0", out.gs0, np)?;
    if m.adstock.n_params() == 2 {
        check_len("a1", a1, np)?;
        check_len("ga1", out.ga1, np)?;
    }
    if m.saturation.n_params() == 2 {
        check_len("gs1", out.gs1, np)?;
    }
    let want_gx = !out.gx.is_empty();
    if want_gx {
        check_len("gx", out.gx, n)?;
    }
    if dims.is_empty() {
        out.ga0.fill(0.0);
        out.ga1.fill(0.0);
        out.gs0.fill(0.0);
        out.gs1.fill(0.0);
        return Ok(());
    }
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let taps = m.adstock.n_taps();
    let two_a = m.adstock.n_params() == 2;
    let two_s = m.saturation.n_params() == 2;
    let mut work = Work::new(5 * t + 3 * taps * c);
    let (colbuf, wbuf) = work.buf().split_at_mut(5 * t);
    let (gc, rest) = colbuf.split_at_mut(t);
    let (gxa, rest) = rest.split_at_mut(t);
    let (cw, rest) = rest.split_at_mut(t);
    let (xc, gxc) = rest.split_at_mut(t);
    let (w, rest) = wbuf.split_at_mut(taps * c);
    let (dw0, dw1) = rest.split_at_mut(taps * c);
    for (b, cb) in cache.chunks_exact(4 * tc).enumerate() {
        let r = b * tc..(b + 1) * tc;
        let (xa_b, rest) = cb.split_at(tc);
        let (dx_b, rest) = rest.split_at(tc);
        let (d0_b, d1_b) = rest.split_at(tc);
        if !m.adstock.is_recursive() {
            batch_weights(
                &m.adstock,
                &a0[b * c..(b + 1) * c],
                p1_of(a1, b, c),
                w,
                Some((&mut *dw0, &mut *dw1)),
            );
        }
        for ch in 0..c {
            let col = ch * t..(ch + 1) * t;
            let k = b * c + ch;
            let gsrc: &[f64] = if cols.is_some() {
                &g[r.start + ch * t..r.start + (ch + 1) * t]
            } else {
                gather(&g[r.clone()], c, ch, gc);
                &*gc
            };
            // Saturation: parameter gradients and the gradient w.r.t. adstocked spend.
            let (s0, s1) = sat_vjp_col::<F>(
                gsrc,
                &dx_b[col.clone()],
                &d0_b[col.clone()],
                &d1_b[col.clone()],
                gxa,
            );
            out.gs0[k] = s0;
            if two_s {
                out.gs1[k] = s1;
            }
            // Adstock.
            if m.adstock.is_recursive() {
                // Adjoint recursion lam[t] = gxa[t] + alpha lam[t+1], in place.
                let (alpha, xa) = (a0[k], &xa_b[col]);
                let (mut lam, mut ga) = (0.0, 0.0);
                for ti in (0..t).rev() {
                    lam = gxa[ti] + alpha * lam;
                    gxa[ti] = lam;
                    if ti > 0 {
                        ga += lam * xa[ti - 1];
                    }
                }
                out.ga0[k] = ga;
                if want_gx {
                    if cols.is_some() {
                        out.gx[r.start + ch * t..r.start + (ch + 1) * t].copy_from_slice(gxa);
                    } else {
                        scatter(gxa, c, ch, &mut out.gx[r.clone()]);
                    }
                }
                continue;
            }
            let xsrc: &[f64] = if cols.is_some() {
                let tp = t + pad;
                &x[k * tp..(k + 1) * tp]
            } else {
                gather(&x[r.clone()], c, ch, xc);
                &*xc
            };
            // d/dp sum_t gxa[t] sum_l w[l] x[t-l] = sum_t gxa[t] (x * dw)[t]: one
            // convolution with the weight derivatives and one dot per parameter.
            conv_col_c::<F, false>(xsrc, pad, &dw0[ch..], c, taps, cw);
            let s0 = dot_f::<F>(gxa, cw);
            let s1 = if two_a {
                conv_col_c::<F, false>(xsrc, pad, &dw1[ch..], c, taps, cw);
                dot_f::<F>(gxa, cw)
            } else {
                0.0
            };
            out.ga0[k] = s0;
            if two_a {
                out.ga1[k] = s1;
            }
            if want_gx {
                gxc.fill(0.0);
                for l in 0..taps.min(t) {
                    let wl = w[l * c + ch];
                    for (o, v) in gxc[..t - l].iter_mut().zip(&gxa[l..]) {
                        *o += wl * v;
                    }
                }
                if cols.is_some() {
                    out.gx[r.start + ch * t..r.start + (ch + 1) * t].copy_from_slice(gxc);
                } else {
                    scatter(gxc, c, ch, &mut out.gx[r.clone()]);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass saturation VJP equals the three passes it replaces (g dx and
    /// two `dot_f`), bit for bit, for every length across the 32- and 8-lane blocks.
    #[test]
    fn one_pass_saturation_vjp_equals_three_passes() {
        let f = |i: usize, s: f64| ((i as f64 * s).sin() * 3.0).exp() - 1.0;
        for n in 0..140 {
            let g: Vec<f64> = (0..n).map(|i| f(i, 0.7)).collect();
            let dx: Vec<f64> = (0..n).map(|i| f(i, 1.3)).collect();
            let d0: Vec<f64> = (0..n).map(|i| f(i, 2.9)).collect();
            let d1: Vec<f64> = (0..n).map(|i| f(i, 0.31)).collect();
            let mut gxa = vec![f64::NAN; n];
            let (s0, s1) = sat_vjp_col::<false>(&g, &dx, &d0, &d1, &mut gxa);
            assert_eq!(s0.to_bits(), dot_f::<false>(&g, &d0).to_bits(), "n={n}");
            assert_eq!(s1.to_bits(), dot_f::<false>(&g, &d1).to_bits(), "n={n}");
            let (t0, t1) = sat_vjp_col::<true>(&g, &dx, &d0, &d1, &mut gxa);
            assert_eq!(t0.to_bits(), dot_f::<true>(&g, &d0).to_bits(), "n={n}");
            assert_eq!(t1.to_bits(), dot_f::<true>(&g, &d1).to_bits(), "n={n}");
            for i in 0..n {
                assert_eq!(gxa[i].to_bits(), (g[i] * dx[i]).to_bits());
            }
        }
    }
}
