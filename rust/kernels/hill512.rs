//! Hill saturation and its partials with AVX-512 intrinsics, eight lanes at a time.
//!
//! The portable kernel (`Hill::grad` through `simd::grad_col`) spends most of its
//! time in `ln` (fdlibm: bit manipulation and one division), `exp` (a degree-13
//! polynomial and a two-step scaling) and two more divisions. Here:
//!
//! * `ln x = e ln 2 + ln(m)`, with `e, m` from `vgetexppd` / `vgetmantpd`
//!   (`m` in [1, 2), exact for subnormal `x`), `ln m = -ln r_i + ln(1 + z)`,
//!   `z = m r_i - 1` (one FMA), `r_i ~ 1/c_i` for the sixteenth of [1, 2) that
//!   holds `m` (a `vpermt2pd` table lookup on the top four mantissa bits), so
//!   `|z| <= 0.0304` and a degree-10 Taylor polynomial is exact to 2e-18.
//! * `exp u = 2^floor(k/16) 2^((k mod 16)/16) e^r`, `k = round(16 u / ln 2)`,
//!   `|r| <= ln 2 / 32`: a table lookup, a degree-7 polynomial (error 1.2e-18)
//!   and `vscalefpd`, which needs no integer conversion and is exact into the
//!   subnormal range.
//! * `1/(1+a)` and `slope d / x` by two divisions, as in the portable kernel
//!   (the divider runs beside the FMA pipes, so `vrcp14pd` with Newton steps
//!   was slower here; dividing by `x` also stays finite for subnormal `x`).
//!
//! Same conventions as `Hill::grad` (value and partials at `x = 0`; for NaN or
//! negative `x`, NaN value and kappa partial, the `x = 0` partials otherwise).
//! `ln x` is accurate in absolute terms (the table reduction cancels near
//! `x = 1`), so results agree with the portable kernel to within the conditioning
//! of `exp(slope ln(x/kappa))`: tens of ulp where `slope |ln x|` is large (tests
//! in `kernels/tests.rs` and `tests/test_simd_paths.py`). Used by
//! `simd::grad_col` at SIMD level 2.

#![allow(clippy::excessive_precision)]

use super::saturation::{Curve, Hill, HillPre};
use std::arch::x86_64::*;

/// `r_i`: the double nearest `1 / (1 + (i + 1/2)/16)`.
const LN_R: [f64; 16] = [
    0.9696969696969697,
    0.9142857142857143,
    0.8648648648648649,
    0.8205128205128205,
    0.7804878048780488,
    0.7441860465116279,
    0.7111111111111111,
    0.6808510638297872,
    0.6530612244897959,
    0.6274509803921569,
    0.6037735849056604,
    0.5818181818181818,
    0.5614035087719298,
    0.5423728813559322,
    0.5245901639344263,
    0.5079365079365079,
];
/// `-ln r_i` of the stored `r_i`, correctly rounded (computed with mpmath at 200 bits).
const LN_NEG_LOG_R: [f64; 16] = [
    0.03077165866675366,
    0.08961215868968717,
    0.14518200984449783,
    0.19782574332991992,
    0.2478361639045812,
    0.2954642128938359,
    0.3409265869705932,
    0.38441169891033206,
    0.42608439531090014,
    0.46608972992459924,
    0.5045560107523953,
    0.5415972824327444,
    0.5773153650348236,
    0.6118015411059929,
    0.6451379613735847,
    0.6773988235918061,
];
/// `2^(j/16)`, correctly rounded.
const EXP2_J16: [f64; 16] = [
    1.0,
    1.0442737824274138,
    1.0905077326652577,
    1.1387886347566916,
    1.189207115002721,
    1.241857812073484,
    1.2968395546510096,
    1.3542555469368927,
    std::f64::consts::SQRT_2,
    1.4768261459394993,
    1.5422108254079407,
    1.6104903319492543,
    1.681792830507429,
    1.7562521603732995,
    1.8340080864093424,
    1.9152065613971474,
];
/// fdlibm's split of ln 2: `LN2_HI` has 32 significant bits, so `e * LN2_HI` is exact.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const INV_LN2_16: f64 = 23.083_120_654_223_414;

/// Constants of the kernel, in registers.
struct K8 {
    lr: (__m512d, __m512d),
    ll: (__m512d, __m512d),
    t: (__m512d, __m512d),
    ln_kappa: __m512d,
    slope: __m512d,
    dk_scale: __m512d,
    dx0: __m512d,
}

/// One vector of eight: `(y, dy/dx, dy/dkappa, dy/dslope)` for `x >= 0` (NaN and
/// negative lanes are fixed by the caller).
#[inline(always)]
unsafe fn vec8(xv: __m512d, k: &K8) -> (__m512d, __m512d, __m512d, __m512d) {
    let c = _mm512_set1_pd;
    let (zero, one) = (c(0.0), c(1.0));
    let (lr_lo, lr_hi) = k.lr;
    let (ll_lo, ll_hi) = k.ll;
    let (t_lo, t_hi) = k.t;
    let (ln_kappa, slope, dk_scale, dx0) = (k.ln_kappa, k.slope, k.dk_scale, k.dx0);
    // ln x = e ln2 + (-ln r_i) + ln(1 + z).
    let e = _mm512_getexp_pd(xv);
    let m = _mm512_getmant_pd::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_SRC>(xv);
    let idx = _mm512_srli_epi64::<48>(_mm512_castpd_si512(m));
    let ri = _mm512_permutex2var_pd(lr_lo, idx, lr_hi);
    let li = _mm512_permutex2var_pd(ll_lo, idx, ll_hi);
    let z = _mm512_fmsub_pd(m, ri, one);
    // ln(1+z) = z - z^2 (1/2 - z/3 + z^2/4 - ... + z^8/10), Estrin's scheme.
    let z2 = _mm512_mul_pd(z, z);
    let z4 = _mm512_mul_pd(z2, z2);
    let p01 = _mm512_fmadd_pd(z, c(-1.0 / 3.0), c(0.5));
    let p23 = _mm512_fmadd_pd(z, c(-1.0 / 5.0), c(0.25));
    let p45 = _mm512_fmadd_pd(z, c(-1.0 / 7.0), c(1.0 / 6.0));
    let p67 = _mm512_fmadd_pd(z, c(-1.0 / 9.0), c(1.0 / 8.0));
    let p03 = _mm512_fmadd_pd(z2, p23, p01);
    let p47 = _mm512_fmadd_pd(z2, p67, p45);
    let p48 = _mm512_fmadd_pd(z4, c(1.0 / 10.0), p47);
    let p = _mm512_fmadd_pd(z4, p48, p03);
    let l1z = _mm512_fnmadd_pd(z2, p, z);
    // Two roundings at the scale of ln x (up to ~1 ulp; regrouping to one rounding
    // measured 6% slower for the whole kernel, and the contract here is 1e-9).
    let lnx = _mm512_add_pd(
        _mm512_fmadd_pd(e, c(LN2_HI), li),
        _mm512_fmadd_pd(e, c(LN2_LO), l1z),
    );
    let r = _mm512_sub_pd(lnx, ln_kappa);
    let nr = _mm512_mul_pd(slope, r);

    // a = exp(-|nr|); arguments whose result is exactly 0 (x = 0 gives -inf) are
    // computed as exp(0) and zeroed at the end, away from the subnormal range.
    // NaN (a parameter out of its domain: ln of a negative kappa) propagates.
    let u = _mm512_or_pd(nr, c(-0.0));
    let under = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(u, c(-745.2));
    let uc = _mm512_mask_mov_pd(u, under, zero);
    let kf = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_pd(uc, c(INV_LN2_16)),
    );
    let rr = _mm512_fnmadd_pd(kf, c(LN2_HI / 16.0), uc);
    let rr = _mm512_fnmadd_pd(kf, c(LN2_LO / 16.0), rr);
    // k mod 16 from the low bits of k (an integer in a double): add 1.5 * 2^52.
    let kbits = _mm512_castpd_si512(_mm512_add_pd(kf, c(6_755_399_441_055_744.0)));
    let tj = _mm512_permutex2var_pd(t_lo, kbits, t_hi);
    let r2 = _mm512_mul_pd(rr, rr);
    let r4 = _mm512_mul_pd(r2, r2);
    let q01 = _mm512_add_pd(one, rr);
    let q23 = _mm512_fmadd_pd(rr, c(1.0 / 6.0), c(0.5));
    let q45 = _mm512_fmadd_pd(rr, c(1.0 / 120.0), c(1.0 / 24.0));
    let q67 = _mm512_fmadd_pd(rr, c(1.0 / 5040.0), c(1.0 / 720.0));
    let q03 = _mm512_fmadd_pd(r2, q23, q01);
    let q47 = _mm512_fmadd_pd(r2, q67, q45);
    let pe = _mm512_fmadd_pd(r4, q47, q03);
    let a = _mm512_scalef_pd(_mm512_mul_pd(tj, pe), _mm512_mul_pd(kf, c(1.0 / 16.0)));
    let a = _mm512_mask_mov_pd(a, under, zero);

    // y = a/(1+a) or 1/(1+a); d = y (1 - y) = a/(1+a)^2.
    let rb = _mm512_div_pd(one, _mm512_add_pd(one, a));
    let pos_nr = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(nr, zero);
    let num = _mm512_mask_blend_pd(pos_nr, a, one);
    let yv = _mm512_mul_pd(num, rb);
    let d = _mm512_mul_pd(_mm512_mul_pd(a, rb), rb);

    // slope d / x; at x = 0 the conventions of Hill::grad.
    let pos = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(xv, zero);
    let sd = _mm512_mul_pd(slope, d);
    let dxv = _mm512_div_pd(sd, xv);
    let dxv = _mm512_mask_blend_pd(pos, dx0, dxv);
    let dsv = _mm512_maskz_mov_pd(pos, _mm512_mul_pd(d, r));
    let dkv = _mm512_mul_pd(dk_scale, d);
    (yv, dxv, dkv, dsv)
}

/// Where `x` is NaN or negative (never in the fused log-density, whose adstocked
/// spend is clamped at 0): NaN value and kappa partial, as the portable kernel's
/// `ln` gives; `dy/dx` and `dy/dslope` keep the `x = 0` convention of `vec8`'s
/// `x > 0` selects, as in `Hill::grad`.
#[inline(always)]
unsafe fn fix_bad(
    xv: __m512d,
    v: (__m512d, __m512d, __m512d, __m512d),
) -> (__m512d, __m512d, __m512d, __m512d) {
    let bad = _mm512_cmp_pd_mask::<_CMP_NGE_UQ>(xv, _mm512_setzero_pd());
    if bad == 0 {
        return v;
    }
    let nan = _mm512_set1_pd(f64::NAN);
    (
        _mm512_mask_mov_pd(v.0, bad, nan),
        v.1,
        _mm512_mask_mov_pd(v.2, bad, nan),
        v.3,
    )
}

/// `(y, dy/dx, dy/dkappa, dy/dslope)` of Hill over a column; see the module docs.
///
/// # Safety
/// The CPU must support AVX-512 F, DQ and VL, AVX2 and FMA (checked by `simd::level`).
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub unsafe fn hill_grad(
    x: &[f64],
    q: &HillPre,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    let n = x.len();
    assert!(y.len() >= n && dx.len() >= n && d0.len() >= n && d1.len() >= n);
    let dk_scale = -q.slope * q.inv_kappa;
    if !dk_scale.is_finite() {
        // -slope / kappa overflows (kappa below ~1e-307) where the portable order
        // (-slope d) / kappa may not: take the portable kernel (never in practice).
        for i in 0..n {
            (y[i], dx[i], d0[i], d1[i]) = Hill::grad::<true>(x[i], q);
        }
        return;
    }
    let load2 = |t: &[f64; 16]| {
        (
            _mm512_loadu_pd(t.as_ptr()),
            _mm512_loadu_pd(t.as_ptr().add(8)),
        )
    };
    let k = K8 {
        lr: load2(&LN_R),
        ll: load2(&LN_NEG_LOG_R),
        t: load2(&EXP2_J16),
        ln_kappa: _mm512_set1_pd(q.ln_kappa),
        slope: _mm512_set1_pd(q.slope),
        dk_scale: _mm512_set1_pd(dk_scale),
        dx0: _mm512_set1_pd(q.dx0),
    };
    let mut store = |i: usize, m8: __mmask8, v: (__m512d, __m512d, __m512d, __m512d)| {
        _mm512_mask_storeu_pd(y.as_mut_ptr().add(i), m8, v.0);
        _mm512_mask_storeu_pd(dx.as_mut_ptr().add(i), m8, v.1);
        _mm512_mask_storeu_pd(d0.as_mut_ptr().add(i), m8, v.2);
        _mm512_mask_storeu_pd(d1.as_mut_ptr().add(i), m8, v.3);
    };
    let mut i = 0;
    while i < n {
        let m8: __mmask8 = if n - i >= 8 {
            0xff
        } else {
            (1u8 << (n - i)) - 1
        };
        let xv = _mm512_maskz_loadu_pd(m8, x.as_ptr().add(i));
        store(i, m8, fix_bad(xv, vec8(xv, &k)));
        i += 8;
    }
}
