//! Run-time SIMD dispatch for the saturation column loops.
//!
//! Each loop body is written once (`*_generic`, `#[inline(always)]`) and
//! compiled three times: baseline, AVX2+FMA and AVX-512; the widest level the
//! CPU reports is chosen at run time, so one wheel runs everywhere and uses what
//! the machine has. The bodies vectorise because `fastmath`'s `exp`/`ln` are
//! inline and branch-free.

use super::saturation::Curve;

/// Widest SIMD level available: 0 baseline, 1 AVX2+FMA, 2 AVX-512 (F, DQ, VL),
/// capped by the environment variable `FASTMMM_SIMD` (0, 1 or 2) when it is set,
/// so that every code path can be tested on one machine. Read once per process.
#[inline]
pub fn level() -> u8 {
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("FASTMMM_SIMD")
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(2);
        detected().min(cap)
    })
}

fn detected() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("fma")
        {
            return 2;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return 1;
        }
    }
    0
}

/// Value and partial derivatives over one column (same parameters throughout).
#[inline(always)]
fn grad_generic<K: Curve, const F: bool>(
    x: &[f64],
    q: &K::Pre,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    let n = x.len();
    let (y, dx, d0, d1) = (&mut y[..n], &mut dx[..n], &mut d0[..n], &mut d1[..n]);
    for i in 0..n {
        let (v, a, b, e) = K::grad::<F>(x[i], q);
        y[i] = v;
        dx[i] = a;
        d0[i] = b;
        d1[i] = e;
    }
}

/// Values only over one column.
#[inline(always)]
fn value_generic<K: Curve, const F: bool>(x: &[f64], q: &K::Pre, y: &mut [f64]) {
    for (o, v) in y[..x.len()].iter_mut().zip(x) {
        *o = K::value::<F>(*v, q);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_avx2<K: Curve>(
    x: &[f64],
    q: &K::Pre,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    grad_generic::<K, true>(x, q, y, dx, d0, d1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn grad_avx512<K: Curve>(
    x: &[f64],
    q: &K::Pre,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    if let Some(kernel) = K::AVX512_GRAD {
        return kernel(x, q, y, dx, d0, d1);
    }
    grad_generic::<K, true>(x, q, y, dx, d0, d1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn value_avx2<K: Curve>(x: &[f64], q: &K::Pre, y: &mut [f64]) {
    value_generic::<K, true>(x, q, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
unsafe fn value_avx512<K: Curve>(x: &[f64], q: &K::Pre, y: &mut [f64]) {
    value_generic::<K, true>(x, q, y)
}

/// `y = K(x)` and the partials `dy/dx`, `dy/dp0`, `dy/dp1` over a column, at SIMD `level`.
#[inline]
pub fn grad_col<K: Curve>(
    level: u8,
    x: &[f64],
    q: &K::Pre,
    y: &mut [f64],
    dx: &mut [f64],
    d0: &mut [f64],
    d1: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `level` comes from `level()`, so the CPU has the features enabled.
        if level >= 2 {
            return unsafe { grad_avx512::<K>(x, q, y, dx, d0, d1) };
        }
        if level == 1 {
            return unsafe { grad_avx2::<K>(x, q, y, dx, d0, d1) };
        }
    }
    let _ = level;
    grad_generic::<K, false>(x, q, y, dx, d0, d1)
}

/// `y = K(x)` over a column, at SIMD `level`.
#[inline]
pub fn value_col<K: Curve>(level: u8, x: &[f64], q: &K::Pre, y: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `level` comes from `level()`, so the CPU has the features enabled.
        if level >= 2 {
            return unsafe { value_avx512::<K>(x, q, y) };
        }
        if level == 1 {
            return unsafe { value_avx2::<K>(x, q, y) };
        }
    }
    let _ = level;
    value_generic::<K, false>(x, q, y)
}
