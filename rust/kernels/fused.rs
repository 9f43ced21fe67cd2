//! Fused media transform `saturation(adstock(x))`.
//!
//! The forward pass also writes a cache of shape `(4, B, T, C)`:
//! `[xa, dy/dxa, dy/ds0, dy/ds1]` (adstocked spend and the saturation's partial
//! derivatives). The VJP then needs no transcendental function: for Hill, whose
//! `exp`/`ln` dominate the cost, that halves the work of a log-density plus
//! gradient evaluation. The VJP computes the spend gradient only on request,
//! because spend is data in a media mix model.

use super::adstock::{batch_weights, conv_fwd, conv_vjp, conv_vjp_w, recursive_fwd, Adstock};
use super::saturation::{Curve, Hill, Logistic, MichaelisMenten, SaturationKind, Tanh};
use super::Dims;
use crate::error::{check_len, KResult};

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
fn sat_cache<K: Curve>(
    xa: &[f64],
    s0: &[f64],
    s1: &[f64],
    c: usize,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    let pre: Vec<K::Pre> = (0..c)
        .map(|k| K::pre(s0[k], if s1.is_empty() { 0.0 } else { s1[k] }))
        .collect();
    let rows = xa
        .chunks_exact(c)
        .zip(y.chunks_exact_mut(c))
        .zip(dx.chunks_exact_mut(c))
        .zip(d0.chunks_exact_mut(c).zip(d1.chunks_exact_mut(c)));
    for (((xr, yr), dxr), (d0r, d1r)) in rows {
        for k in 0..c {
            let (v, a, b, e) = K::grad(xr[k], &pre[k]);
            yr[k] = v;
            dxr[k] = a;
            d0r[k] = b;
            d1r[k] = e;
        }
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
    let n = dims.len();
    check_len("x", x, n)?;
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
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let taps = m.adstock.n_taps();
    let mut w = vec![0.0; taps * c];
    let (xa_all, rest) = cache.split_at_mut(n);
    let (dx_all, rest) = rest.split_at_mut(n);
    let (d0_all, d1_all) = rest.split_at_mut(n);
    for b in 0..dims.b {
        let r = b * tc..(b + 1) * tc;
        let xa = &mut xa_all[r.clone()];
        if m.adstock.is_recursive() {
            recursive_fwd(&x[r.clone()], &a0[b * c..(b + 1) * c], t, c, xa);
        } else {
            batch_weights(
                &m.adstock,
                &a0[b * c..(b + 1) * c],
                p1_of(a1, b, c),
                &mut w,
                None,
            );
            conv_fwd(&x[r.clone()], &w, t, c, taps, xa);
        }
        // Rounding can leave -1e-17 where the true value is 0; the saturations need x >= 0.
        xa.iter_mut().for_each(|v| *v = v.max(0.0));
        let (q0, q1) = (&s0[b * c..(b + 1) * c], p1_of(s1, b, c));
        let (yb, dx, d0, d1) = (
            &mut y[r.clone()],
            &mut dx_all[r.clone()],
            &mut d0_all[r.clone()],
            &mut d1_all[r],
        );
        match m.saturation {
            SaturationKind::Hill => sat_cache::<Hill>(xa, q0, q1, c, yb, dx, d0, d1),
            SaturationKind::Logistic => sat_cache::<Logistic>(xa, q0, &[], c, yb, dx, d0, d1),
            SaturationKind::MichaelisMenten => {
                sat_cache::<MichaelisMenten>(xa, q0, q1, c, yb, dx, d0, d1)
            }
            SaturationKind::Tanh => sat_cache::<Tanh>(xa, q0, q1, c, yb, dx, d0, d1),
        }
    }
    Ok(())
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
    let n = dims.len();
    let np = dims.n_params();
    check_len("x", x, n)?;
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
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let taps = m.adstock.n_taps();
    let two_a = m.adstock.n_params() == 2;
    let two_s = m.saturation.n_params() == 2;
    let (xa_all, rest) = cache.split_at(n);
    let (dx_all, rest) = rest.split_at(n);
    let (d0_all, d1_all) = rest.split_at(n);
    let mut gxa = vec![0.0; tc];
    let mut buf = vec![0.0; 4 * taps * c];
    let (w, rest) = buf.split_at_mut(taps * c);
    let (dw0, rest) = rest.split_at_mut(taps * c);
    let (dw1, gw) = rest.split_at_mut(taps * c);
    for b in 0..dims.b {
        let r = b * tc..(b + 1) * tc;
        let pr = b * c..(b + 1) * c;
        // Saturation part: gradient w.r.t. its parameters and the adstocked spend.
        let gs0 = &mut out.gs0[pr.clone()];
        gs0.fill(0.0);
        let mut none = [0.0f64; 0];
        let gs1: &mut [f64] = if two_s {
            &mut out.gs1[pr.clone()]
        } else {
            &mut none
        };
        gs1.fill(0.0);
        let rows = g[r.clone()]
            .chunks_exact(c)
            .zip(dx_all[r.clone()].chunks_exact(c))
            .zip(
                d0_all[r.clone()]
                    .chunks_exact(c)
                    .zip(d1_all[r.clone()].chunks_exact(c)),
            )
            .zip(gxa.chunks_exact_mut(c));
        for (((gr, dxr), (d0r, d1r)), gar) in rows {
            for k in 0..c {
                gar[k] = gr[k] * dxr[k];
                gs0[k] += gr[k] * d0r[k];
            }
            if two_s {
                for k in 0..c {
                    gs1[k] += gr[k] * d1r[k];
                }
            }
        }
        // Adstock part.
        let alpha = &a0[pr.clone()];
        if m.adstock.is_recursive() {
            let xa = &xa_all[r.clone()];
            let ga = &mut out.ga0[pr.clone()];
            ga.fill(0.0);
            // Adjoint recursion, in place in gxa: lam[t] = gxa[t] + alpha lam[t+1].
            for ti in (0..t).rev() {
                for k in 0..c {
                    let next = if ti + 1 < t {
                        gxa[(ti + 1) * c + k]
                    } else {
                        0.0
                    };
                    let lam = gxa[ti * c + k] + alpha[k] * next;
                    gxa[ti * c + k] = lam;
                    if ti > 0 {
                        ga[k] += lam * xa[(ti - 1) * c + k];
                    }
                }
            }
            if want_gx {
                out.gx[r].copy_from_slice(&gxa);
            }
            continue;
        }
        batch_weights(
            &m.adstock,
            alpha,
            p1_of(a1, b, c),
            w,
            Some((&mut *dw0, &mut *dw1)),
        );
        if want_gx {
            conv_vjp(&x[r.clone()], w, &gxa, t, c, taps, &mut out.gx[r], gw);
        } else {
            conv_vjp_w(&x[r], &gxa, t, c, taps, gw);
        }
        for k in 0..c {
            let (mut s0, mut s1) = (0.0, 0.0);
            for l in 0..taps {
                s0 += gw[l * c + k] * dw0[l * c + k];
                s1 += gw[l * c + k] * dw1[l * c + k];
            }
            out.ga0[b * c + k] = s0;
            if two_a {
                out.ga1[b * c + k] = s1;
            }
        }
    }
    Ok(())
}
