//! The whole MMM log-density and its gradient in one pass (the "fast path").
//!
//! Mirrors `fastmmm.model.build_model` for one channel group: on the
//! unconstrained space, with PyMC's transforms and log-Jacobians, priors whose
//! normalising constants are supplied by the caller, the fused media kernel,
//! the centred level/trend/media parameterisation and a Normal or StudentT
//! likelihood. nutpie calls [`MmmProblem::logp_grad`] through the C ABI in
//! `ffi.rs` without the Python interpreter. Scratch memory is thread-local, so
//! chains on several threads share one immutable problem and the hot path does
//! not allocate after its first call.
//!
//! The parts, by concept: `priors` (prior log-densities and the transforms to
//! the unconstrained space), `special` (ln Gamma, digamma), `layout` (the
//! parameter vector's blocks and their roles), `data` (the data and static
//! structure of a fit), `problem` (building and checking an [`MmmProblem`]),
//! `scratch` (the per-thread scratch buffer and its length), `eval` (the
//! log-density, its gradient and the deterministics), `parallel` (a large panel's media
//! passes split by groups across idle cores) and `util` (reductions
//! and small helpers).

#![allow(clippy::needless_range_loop)] // index arithmetic over (T, C) reads clearer than zipped iterators here

mod data;
mod eval;
mod layout;
mod parallel;
mod priors;
mod problem;
mod scratch;
mod special;
mod util;

#[cfg(test)]
mod tests;

pub use data::{LiftData, MmmData, MmmStructure, TvpData};
pub use layout::{Block, Role, Target};
pub use parallel::set_eval_threads;
pub use priors::{Dist, Transform};
pub use problem::MmmProblem;
pub use special::{digamma, lgamma};
