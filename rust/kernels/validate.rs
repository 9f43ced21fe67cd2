//! Domain checks used at the Python boundary. The sampling (FFI) path skips
//! them: out-of-domain parameters there simply produce NaN, which the sampler
//! treats as a rejected step.

use crate::error::{KResult, KernelError};

/// Every value finite.
pub fn finite(arg: &'static str, v: &[f64]) -> KResult<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(KernelError::Domain {
            arg,
            msg: format!("must be finite, found {} at flat index {i}", v[i]),
        });
    }
    Ok(())
}

/// Every value finite and >= 0 (spend, adstocked spend).
pub fn nonnegative(arg: &'static str, v: &[f64]) -> KResult<()> {
    finite(arg, v)?;
    if let Some(i) = v.iter().position(|x| *x < 0.0) {
        return Err(KernelError::Domain {
            arg,
            msg: format!(
                "must be >= 0 (negative spend?), found {} at flat index {i}",
                v[i]
            ),
        });
    }
    Ok(())
}

/// Every value finite and > 0 (scale and shape parameters).
pub fn positive(arg: &'static str, v: &[f64]) -> KResult<()> {
    finite(arg, v)?;
    if let Some(i) = v.iter().position(|x| *x <= 0.0) {
        return Err(KernelError::Domain {
            arg,
            msg: format!("must be > 0, found {} at flat index {i}", v[i]),
        });
    }
    Ok(())
}

/// Every value in `[lo, hi)` (or `(lo, hi)` when `open_lo`).
pub fn in_unit_interval(arg: &'static str, v: &[f64], open_lo: bool) -> KResult<()> {
    finite(arg, v)?;
    let bad = |x: f64| {
        if open_lo {
            x <= 0.0 || x >= 1.0
        } else {
            !(0.0..1.0).contains(&x)
        }
    };
    if let Some(i) = v.iter().position(|x| bad(*x)) {
        let range = if open_lo { "(0, 1)" } else { "[0, 1)" };
        return Err(KernelError::Domain {
            arg,
            msg: format!("must lie in {range}, found {} at flat index {i}", v[i]),
        });
    }
    Ok(())
}
