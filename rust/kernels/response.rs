//! Budget response over posterior draws: the incremental contribution of a
//! planned spend, and its gradient with respect to that plan, for every draw.
//!
//! For draw `s`, the spend series is `[history (Lh); plan (H); zeros (Lt)]`
//! (scaled spend, channels innermost). The response is
//! `sum_{t >= Lh} sum_c beta[s, c] * (y[t, c] - y0[t, c])`, where `y` is the
//! media transform of that series and `y0` of the series with a zero plan: the
//! carry-over from history into the horizon and from the plan past its end
//! (the `Lt` tail periods) are both counted, and only what the plan adds is
//! returned. The gradient w.r.t. the plan comes from the fused kernel's VJP.
//! Draws are independent; callers parallelise over them.

use super::fused::{media_fwd, media_vjp, Media, MediaGrads};
use super::Dims;
use crate::error::{check_len, KResult};

/// Shapes of a response evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Horizon {
    /// History periods before the plan (carry-over into it).
    pub lh: usize,
    /// Planned periods.
    pub h: usize,
    /// Periods after the plan over which carry-over is counted.
    pub lt: usize,
    /// Channels.
    pub c: usize,
}

impl Horizon {
    pub fn periods(&self) -> usize {
        self.lh + self.h + self.lt
    }
}

/// Response and plan-gradient for `S` draws.
///
/// `hist` is (Lh, C), `plan` (H, C); `a0`, `a1`, `s0`, `s1`, `beta` are (S, C)
/// kernel parameters (`a1`/`s1` empty for one-parameter kinds). Writes
/// `resp` (S,) and `grad` (S, H, C).
#[allow(clippy::too_many_arguments)]
pub fn response_draws(
    m: &Media,
    hz: Horizon,
    hist: &[f64],
    plan: &[f64],
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    beta: &[f64],
    resp: &mut [f64],
    grad: &mut [f64],
) -> KResult<()> {
    let c = hz.c;
    let s = resp.len();
    check_len("hist", hist, hz.lh * c)?;
    check_len("plan", plan, hz.h * c)?;
    check_len("a0", a0, s * c)?;
    check_len("s0", s0, s * c)?;
    check_len("beta", beta, s * c)?;
    check_len("grad", grad, s * hz.h * c)?;
    if m.adstock.n_params() == 2 {
        check_len("a1", a1, s * c)?;
    }
    if m.saturation.n_params() == 2 {
        check_len("s1", s1, s * c)?;
    }
    let t = hz.periods();
    let n = t * c;
    let d = Dims::new(1, t, c);
    let mut x = vec![0.0; n];
    let mut x0 = vec![0.0; n];
    x[..hz.lh * c].copy_from_slice(hist);
    x0[..hz.lh * c].copy_from_slice(hist);
    x[hz.lh * c..(hz.lh + hz.h) * c].copy_from_slice(plan);
    let mut y = vec![0.0; n];
    let mut y0 = vec![0.0; n];
    let mut cache = vec![0.0; 4 * n];
    let mut cache0 = vec![0.0; 4 * n];
    let mut g = vec![0.0; n];
    let mut gx = vec![0.0; n];
    let mut scratch = vec![0.0; 4 * c];
    for i in 0..s {
        let (p0, p1, q0, q1) = (row(a0, i, c), row(a1, i, c), row(s0, i, c), row(s1, i, c));
        let b = &beta[i * c..(i + 1) * c];
        media_fwd(m, d, &x, p0, p1, q0, q1, &mut y, &mut cache)?;
        media_fwd(m, d, &x0, p0, p1, q0, q1, &mut y0, &mut cache0)?;
        let mut r = 0.0;
        g.fill(0.0);
        for ti in hz.lh..t {
            for ch in 0..c {
                r += b[ch] * (y[ti * c + ch] - y0[ti * c + ch]);
                g[ti * c + ch] = b[ch];
            }
        }
        resp[i] = r;
        let (ga0, rest) = scratch.split_at_mut(c);
        let (ga1, rest) = rest.split_at_mut(c);
        let (gs0, gs1) = rest.split_at_mut(c);
        let out = MediaGrads {
            ga0,
            ga1: if p1.is_empty() { &mut [] } else { ga1 },
            gs0,
            gs1: if q1.is_empty() { &mut [] } else { gs1 },
            gx: &mut gx,
        };
        media_vjp(m, d, &x, p0, p1, &cache, &g, out)?;
        grad[i * hz.h * c..(i + 1) * hz.h * c].copy_from_slice(&gx[hz.lh * c..(hz.lh + hz.h) * c]);
    }
    Ok(())
}

/// Row `i` of an (S, C) array, or the empty slice for an absent parameter.
fn row(v: &[f64], i: usize, c: usize) -> &[f64] {
    if v.is_empty() {
        v
    } else {
        &v[i * c..(i + 1) * c]
    }
}

/// What [`contribution_sums`] writes: per draw and multiplier the contribution summed over
/// every period, and over the first `window` (the training dates, before the zero tail),
/// plus the window's contribution per period summed over the draws (their posterior mean
/// times S), so that a summary needs no (S, T, C) array.
pub struct ContributionSums<'a> {
    /// (S, K, C): over all `t` periods.
    pub totals: &'a mut [f64],
    /// Leading periods of the window sums (0: no window outputs; they may then be empty).
    pub window: usize,
    /// (S, K, C): over the first `window` periods.
    pub window_totals: &'a mut [f64],
    /// (K, window, C): each period's contribution summed over the draws, added to.
    pub window_over_draws: &'a mut [f64],
}

/// Total contribution of every channel when the whole spend series is scaled, per draw
/// and multiplier: `totals[s, k, c] = beta[s, c] * sum_t media(mult[k] * x)[t, c]`, and in
/// the same media transforms the sums over the first `window` periods
/// ([`ContributionSums`]).
///
/// `x` is (T, C) scaled spend (append zero periods to count carry-over past its
/// end); `mult` (K,) multipliers; `a0`, `a1`, `s0`, `s1`, `beta` are (S, C)
/// per-draw kernel parameters. Channels do not interact in the media transform, so one
/// multiplier scales every channel at once: a whole set of response curves costs `K`
/// media transforms per draw.
#[allow(clippy::too_many_arguments)]
pub fn contribution_sums(
    m: &Media,
    t: usize,
    c: usize,
    x: &[f64],
    mult: &[f64],
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    beta: &[f64],
    out: ContributionSums<'_>,
) -> KResult<()> {
    let k = mult.len();
    let s = beta.len() / c.max(1);
    let w = out.window;
    check_len("x", x, t * c)?;
    check_len("a0", a0, s * c)?;
    check_len("s0", s0, s * c)?;
    check_len("beta", beta, s * c)?;
    check_len("out", out.totals, s * k * c)?;
    if w > t {
        return Err(crate::error::KernelError::Option {
            arg: "window",
            msg: format!("{w} periods of a {t}-period series"),
        });
    }
    if w > 0 {
        check_len("window_totals", out.window_totals, s * k * c)?;
        check_len("window_over_draws", out.window_over_draws, k * w * c)?;
    }
    if m.adstock.n_params() == 2 {
        check_len("a1", a1, s * c)?;
    }
    if m.saturation.n_params() == 2 {
        check_len("s1", s1, s * c)?;
    }
    if k == 0 || s == 0 {
        return Ok(());
    }
    // The K scaled series are K batches of one media transform with the draw's
    // parameters repeated per batch.
    let d = Dims::new(k, t, c);
    let mut xs = vec![0.0; k * t * c];
    for (j, &f) in mult.iter().enumerate() {
        for (dst, &v) in xs[j * t * c..(j + 1) * t * c].iter_mut().zip(x) {
            *dst = f * v;
        }
    }
    let rep = |v: &[f64], i: usize| -> Vec<f64> {
        if v.is_empty() {
            Vec::new()
        } else {
            row(v, i, c).repeat(k)
        }
    };
    let mut y = vec![0.0; k * t * c];
    let mut cache = vec![0.0; 4 * k * t * c];
    for i in 0..s {
        let (p0, p1, q0, q1) = (rep(a0, i), rep(a1, i), rep(s0, i), rep(s1, i));
        media_fwd(m, d, &xs, &p0, &p1, &q0, &q1, &mut y, &mut cache)?;
        let b = &beta[i * c..(i + 1) * c];
        for j in 0..k {
            let yj = &y[j * t * c..(j + 1) * t * c];
            let oj = &mut out.totals[(i * k + j) * c..(i * k + j + 1) * c];
            oj.fill(0.0);
            for ti in 0..w {
                for ch in 0..c {
                    oj[ch] += yj[ti * c + ch];
                }
            }
            if w > 0 {
                let wj = &mut out.window_totals[(i * k + j) * c..(i * k + j + 1) * c];
                let dj = &mut out.window_over_draws[j * w * c..(j + 1) * w * c];
                for ch in 0..c {
                    wj[ch] = oj[ch] * b[ch];
                }
                for ti in 0..w {
                    for ch in 0..c {
                        dj[ti * c + ch] += yj[ti * c + ch] * b[ch];
                    }
                }
            }
            for ti in w..t {
                for ch in 0..c {
                    oj[ch] += yj[ti * c + ch];
                }
            }
            for ch in 0..c {
                oj[ch] *= b[ch];
            }
        }
    }
    Ok(())
}
