//! Saturation (diminishing returns) transforms, elementwise over `(B, T, C)`
//! with per-channel parameters, and their vector-Jacobian products.
//!
//! * Hill: `y = x^s / (kappa^s + x^s)` (pymc-marketing `hill_function(x, slope, kappa)`).
//!   Parameters (kappa, slope). At `x = 0` the value is 0 and, by convention, the
//!   gradient is finite: `dy/dx = 1/kappa` when `slope == 1`, else 0 (for slope < 1
//!   the one-sided derivative is +inf; x = 0 after adstock only happens where the
//!   adstock's own derivatives are 0 too, so 0 keeps the chain rule finite and
//!   exact there); `dy/dkappa = dy/dslope = 0`.
//! * logistic: `y = (1 - e^{-lam x}) / (1 + e^{-lam x})`. Parameter (lam).
//! * Michaelis-Menten: `y = alpha x / (lam + x)`. Parameters (alpha, lam).
//! * tanh: `y = b tanh(x / (b c))`. Parameters (b, c).
//!
//! Every formula uses one transcendental call per element, from `fastmath`
//! (inline and vectorisable, unlike libm's).

use super::adstock::{dot, gather, scatter};
use super::fastmath::{exp_f, ln_f};
use super::{simd, Dims};
use crate::error::{check_len, KResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaturationKind {
    Hill,
    Logistic,
    MichaelisMenten,
    Tanh,
}

impl SaturationKind {
    /// Number of per-channel parameters.
    pub fn n_params(&self) -> usize {
        match self {
            SaturationKind::Logistic => 1,
            _ => 2,
        }
    }
}

/// One saturation curve: a per-channel precomputation and the elementwise
/// value and partial derivatives.
pub trait Curve {
    type Pre: Copy + Default;
    fn pre(p0: f64, p1: f64) -> Self::Pre;
    /// `F`: fused multiply-adds in exp/ln (builds for CPUs with FMA).
    fn value<const F: bool>(x: f64, q: &Self::Pre) -> f64;
    /// (y, dy/dx, dy/dp0, dy/dp1)
    fn grad<const F: bool>(x: f64, q: &Self::Pre) -> (f64, f64, f64, f64);
    /// A hand-written AVX-512 column kernel that `simd::grad_col` uses instead of
    /// vectorising `grad` at SIMD level 2 (columns `x, y, dy/dx, dy/dp0, dy/dp1`).
    #[cfg(target_arch = "x86_64")]
    const AVX512_GRAD: Option<ColKernel<Self::Pre>> = None;
}

/// A column kernel: `(x, pre, y, dy/dx, dy/dp0, dy/dp1)`.
pub type ColKernel<P> = unsafe fn(&[f64], &P, &mut [f64], &mut [f64], &mut [f64], &mut [f64]);

pub struct Hill;
pub struct Logistic;
pub struct MichaelisMenten;
pub struct Tanh;

#[derive(Clone, Copy, Default)]
pub struct HillPre {
    pub(crate) inv_kappa: f64,
    pub(crate) ln_kappa: f64,
    pub(crate) slope: f64,
    /// dy/dx at x = 0 (the convention in the module docs).
    pub(crate) dx0: f64,
}

impl Hill {
    /// (y, y (1 - y)) from `nr = slope * ln(x / kappa)`, without overflow and
    /// without branches (data-dependent branches mispredict on real spend):
    /// with `a = exp(-|nr|)`, `y = a/(1+a)` or `1/(1+a)`, and `y(1-y) = a/(1+a)^2`
    /// either way. `nr = -inf` (x = 0) gives exactly (0, 0).
    #[inline(always)]
    fn core<const F: bool>(nr: f64) -> (f64, f64) {
        let a = exp_f::<F>(-nr.abs());
        let r = 1.0 / (1.0 + a);
        let num = if nr >= 0.0 { 1.0 } else { a };
        (num * r, a * r * r)
    }
}

impl Curve for Hill {
    type Pre = HillPre;
    #[cfg(target_arch = "x86_64")]
    const AVX512_GRAD: Option<ColKernel<HillPre>> = Some(super::hill512::hill_grad);
    #[inline(always)]
    fn pre(kappa: f64, slope: f64) -> HillPre {
        HillPre {
            inv_kappa: 1.0 / kappa,
            ln_kappa: kappa.ln(),
            slope,
            dx0: if slope == 1.0 { 1.0 / kappa } else { 0.0 },
        }
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &HillPre) -> f64 {
        Hill::core::<F>(q.slope * (ln_f::<F>(x) - q.ln_kappa)).0
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &HillPre) -> (f64, f64, f64, f64) {
        let r = ln_f::<F>(x) - q.ln_kappa;
        let (y, d) = Hill::core::<F>(q.slope * r);
        let pos = x > 0.0;
        // At x = 0: d = 0 and r = -inf, so guard the 0/0 and 0*inf by selects.
        // (Merging this division with the one in Hill::core, 1/((1+a) x), overflows
        // for subnormal x, which Weibull adstocks produce: keep them separate.)
        let dx = if pos { q.slope * d / x } else { q.dx0 };
        let ds = if pos { d * r } else { 0.0 };
        (y, dx, -q.slope * d * q.inv_kappa, ds)
    }
}

impl Curve for Logistic {
    type Pre = f64;
    #[inline(always)]
    fn pre(lam: f64, _: f64) -> f64 {
        lam
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, lam: &f64) -> f64 {
        let e = exp_f::<F>(-lam * x);
        (1.0 - e) / (1.0 + e)
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, lam: &f64) -> (f64, f64, f64, f64) {
        let e = exp_f::<F>(-lam * x);
        let r = 1.0 / (1.0 + e);
        let y = (1.0 - e) * r;
        let d = 2.0 * e * r * r; // = 1 - y^2 over 2, computed without cancellation
        (y, lam * d, x * d, 0.0)
    }
}

#[derive(Clone, Copy, Default)]
pub struct MmPre {
    alpha: f64,
    lam: f64,
}

impl Curve for MichaelisMenten {
    type Pre = MmPre;
    #[inline(always)]
    fn pre(alpha: f64, lam: f64) -> MmPre {
        MmPre { alpha, lam }
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &MmPre) -> f64 {
        q.alpha * x / (q.lam + x)
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &MmPre) -> (f64, f64, f64, f64) {
        let r = 1.0 / (q.lam + x);
        let s = x * r; // x / (lam + x)
        let y = q.alpha * s;
        (y, q.alpha * q.lam * r * r, s, -y * r)
    }
}

#[derive(Clone, Copy, Default)]
pub struct TanhPre {
    b: f64,
    c: f64,
    inv_bc: f64,
}

impl Curve for Tanh {
    type Pre = TanhPre;
    #[inline(always)]
    fn pre(b: f64, c: f64) -> TanhPre {
        TanhPre {
            b,
            c,
            inv_bc: 1.0 / (b * c),
        }
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &TanhPre) -> f64 {
        Tanh::grad::<F>(x, q).0
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &TanhPre) -> (f64, f64, f64, f64) {
        // tanh and sech^2 from one exp, without the cancellation of 1 - tanh^2.
        let s = x * q.inv_bc;
        let e = exp_f::<F>(-2.0 * s.abs());
        let r = 1.0 / (1.0 + e);
        let th = ((1.0 - e) * r).copysign(s);
        let sech2 = 4.0 * e * r * r;
        let y = q.b * th;
        (y, sech2 / q.c, th - sech2 * s, -q.b * sech2 * s / q.c)
    }
}

fn fwd_impl<K: Curve>(dims: Dims, x: &[f64], p0: &[f64], p1: &[f64], y: &mut [f64]) {
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let level = simd::level();
    let mut buf = vec![0.0; 2 * t];
    let (xc, yc) = buf.split_at_mut(t);
    for b in 0..dims.b {
        let r = b * tc..(b + 1) * tc;
        for ch in 0..c {
            let q = K::pre(
                p0[b * c + ch],
                if p1.is_empty() { 0.0 } else { p1[b * c + ch] },
            );
            gather(&x[r.clone()], c, ch, xc);
            simd::value_col::<K>(level, xc, &q, yc);
            scatter(yc, c, ch, &mut y[r.clone()]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vjp_impl<K: Curve>(
    dims: Dims,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    g: &[f64],
    gx: &mut [f64],
    gp0: &mut [f64],
    gp1: &mut [f64],
) {
    let (t, c, tc) = (dims.t, dims.c, dims.tc());
    let two = !p1.is_empty();
    let level = simd::level();
    let mut buf = vec![0.0; 6 * t];
    let (xc, rest) = buf.split_at_mut(t);
    let (gc, rest) = rest.split_at_mut(t);
    let (yc, rest) = rest.split_at_mut(t);
    let (dx, rest) = rest.split_at_mut(t);
    let (d0, d1) = rest.split_at_mut(t);
    for b in 0..dims.b {
        let r = b * tc..(b + 1) * tc;
        for ch in 0..c {
            let k = b * c + ch;
            let q = K::pre(p0[k], if two { p1[k] } else { 0.0 });
            gather(&x[r.clone()], c, ch, xc);
            gather(&g[r.clone()], c, ch, gc);
            simd::grad_col::<K>(level, xc, &q, yc, dx, d0, d1);
            gp0[k] = dot(gc, d0);
            if two {
                gp1[k] = dot(gc, d1);
            }
            for (d, gv) in dx.iter_mut().zip(gc.iter()) {
                *d *= gv;
            }
            scatter(dx, c, ch, &mut gx[r.clone()]);
        }
    }
}

fn check(kind: SaturationKind, dims: Dims, x: &[f64], p0: &[f64], p1: &[f64]) -> KResult<()> {
    check_len("x", x, dims.len())?;
    check_len("p0", p0, dims.n_params())?;
    if kind.n_params() == 2 {
        check_len("p1", p1, dims.n_params())?;
    }
    Ok(())
}

/// Saturation forward pass. `p1` is ignored (may be empty) for one-parameter kinds.
pub fn saturation_fwd(
    kind: SaturationKind,
    dims: Dims,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    y: &mut [f64],
) -> KResult<()> {
    check(kind, dims, x, p0, p1)?;
    check_len("out", y, dims.len())?;
    if dims.c == 0 {
        return Ok(());
    }
    match kind {
        SaturationKind::Hill => fwd_impl::<Hill>(dims, x, p0, p1, y),
        SaturationKind::Logistic => fwd_impl::<Logistic>(dims, x, p0, &[], y),
        SaturationKind::MichaelisMenten => fwd_impl::<MichaelisMenten>(dims, x, p0, p1, y),
        SaturationKind::Tanh => fwd_impl::<Tanh>(dims, x, p0, p1, y),
    }
    Ok(())
}

/// Saturation VJP: writes `gx` and parameter gradients `gp0`, `gp1` (`gp1` may be
/// empty for one-parameter kinds).
#[allow(clippy::too_many_arguments)]
pub fn saturation_vjp(
    kind: SaturationKind,
    dims: Dims,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    g: &[f64],
    gx: &mut [f64],
    gp0: &mut [f64],
    gp1: &mut [f64],
) -> KResult<()> {
    check(kind, dims, x, p0, p1)?;
    check_len("g", g, dims.len())?;
    check_len("gx", gx, dims.len())?;
    check_len("gp0", gp0, dims.n_params())?;
    if kind.n_params() == 2 {
        check_len("gp1", gp1, dims.n_params())?;
    }
    if dims.c == 0 {
        return Ok(());
    }
    match kind {
        SaturationKind::Hill => vjp_impl::<Hill>(dims, x, p0, p1, g, gx, gp0, gp1),
        SaturationKind::Logistic => vjp_impl::<Logistic>(dims, x, p0, &[], g, gx, gp0, &mut []),
        SaturationKind::MichaelisMenten => {
            vjp_impl::<MichaelisMenten>(dims, x, p0, p1, g, gx, gp0, gp1)
        }
        SaturationKind::Tanh => vjp_impl::<Tanh>(dims, x, p0, p1, g, gx, gp0, gp1),
    }
    Ok(())
}
