//! The per-thread scratch memory of the log-density and the length of its
//! buffer.

use super::data::TvpData;
use super::problem::MmmProblem;
use std::cell::RefCell;

pub(super) struct Scratch {
    pub(super) buf: Vec<f64>,
}

thread_local! {
    pub(super) static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { buf: Vec::new() }) };
}

impl MmmProblem {
    /// Length of the scratch buffer: it covers the parts that the top of
    /// `eval_body` (in `eval.rs`) carves out of it, in that order.
    pub(super) fn scratch_len(&self) -> usize {
        let (g, t, c) = (self.s.g, self.s.t, self.s.c);
        let nl2 = 2 * self.data.lift.len();
        let level_lift = if self.data.lift.weights.is_empty() {
            0
        } else {
            g * c * t
        };
        let lift = nl2 * (8 + 6 * self.data.lift.steady) + g * c + 2 * nl2 + level_lift;
        // Per part with R GPs on B bases: f and df (R, T) each, q (B, m) and w (R, m); the
        // multiplier also keeps the raw media (G, T).
        let tvp: usize = (0..2)
            .map(|p| {
                self.data.tvp[p].as_ref().map_or(0, |d: &TvpData| {
                    let rows = self.s.tvp_rows(p);
                    2 * rows * t + (rows + d.bases()) * d.m + if p == 1 { g * t } else { 0 }
                })
            })
            .sum();
        3 * self.n_dim + 8 * g * t * c + 2 * g * t + 19 * g * c + g + lift + tvp
    }
}
