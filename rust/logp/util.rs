//! Small helpers: the error of a malformed problem, reductions with eight
//! accumulators, and layout changes.

use crate::error::KernelError;

pub(super) fn bad(msg: &str) -> KernelError {
    KernelError::Option {
        arg: "problem",
        msg: msg.to_string(),
    }
}

// Reductions use eight partial sums: independent chains that fill a vector
// register (one running sum is a chain of dependent additions, latency-bound).
use crate::kernels::adstock::reduce8;
pub(super) use crate::kernels::adstock::{dot_f, fold8};

/// `sum_i a[i] (b[i] - c)` with eight accumulators; centring each term keeps
/// the precision when `b` is large relative to its spread (e.g. calendar years).
#[inline(always)]
pub(super) fn dot_centred(a: &[f64], b: &[f64], c: f64) -> f64 {
    reduce8(a, b, |s, u, v| s + u * (v - c))
}

/// Sum with eight independent accumulators (see `dot`).
#[inline(always)]
pub(super) fn sum8(a: &[f64]) -> f64 {
    reduce8(a, a, |s, u, _| s + u)
}

/// y += a * x
#[inline(always)]
pub(super) fn axpy<const F: bool>(y: &mut [f64], a: f64, x: &[f64]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = crate::kernels::fastmath::mla::<F>(a, *xv, *yv);
    }
}

/// (G, T, K) row-major -> (G, K, T) column-major.
pub(super) fn to_cols(v: &[f64], g: usize, t: usize, k: usize) -> Vec<f64> {
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
