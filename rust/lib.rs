//! fastmmm's Rust core: media transforms (adstock, saturation), their
//! vector-Jacobian products, and a C ABI for numba-compiled callers.
//!
//! The kernels (`kernels`) are pure Rust and never panic on bad input: they
//! return `KernelError`. The PyO3 module (`py`, behind the `python` feature)
//! is the only place that touches Python.

pub mod convergence;
pub mod error;
pub mod ffi;
pub mod kernels;
pub mod logp;
pub mod sampler;

#[cfg(feature = "python")]
mod py;

pub use error::KernelError;
