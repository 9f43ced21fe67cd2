//! The one error type of the kernels. The Python layer turns every variant
//! into a `ValueError` whose message names the offending argument.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    /// An array has the wrong number of elements for the declared dimensions.
    #[error("{arg}: expected {expected} elements, got {got}")]
    Length {
        arg: &'static str,
        expected: usize,
        got: usize,
    },
    /// A value is outside the domain of the argument (NaN, negative spend, alpha >= 1, ...).
    #[error("{arg}: {msg}")]
    Domain { arg: &'static str, msg: String },
    /// An option (l_max, kind, ...) is invalid.
    #[error("{arg}: {msg}")]
    Option { arg: &'static str, msg: String },
}

pub type KResult<T> = Result<T, KernelError>;

/// Checks that `slice` has exactly `expected` elements.
pub(crate) fn check_len(arg: &'static str, slice: &[f64], expected: usize) -> KResult<()> {
    if slice.len() != expected {
        return Err(KernelError::Length {
            arg,
            expected,
            got: slice.len(),
        });
    }
    Ok(())
}
