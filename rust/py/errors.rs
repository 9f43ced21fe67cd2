//! The one place that turns kernel errors into Python exceptions.

use crate::error::KernelError;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

impl From<KernelError> for PyErr {
    fn from(e: KernelError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

/// A ValueError naming `arg`.
pub(crate) fn value_error(arg: &str, msg: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{arg}: {msg}"))
}
