//! The per-thread scratch memory of the log-density and its layout: one list of named
//! parts gives both the buffer's length and the slices that `eval_body` (in `eval.rs`)
//! works in, so the two cannot disagree.

use super::problem::MmmProblem;
use std::cell::RefCell;

pub(super) struct Scratch {
    pub(super) buf: Vec<f64>,
}

thread_local! {
    pub(super) static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { buf: Vec::new() }) };
}

/// Declares the parts of the scratch buffer, in buffer order: [`ScratchSizes`] (each
/// part's length) and [`ScratchParts`] (the buffer cut into them).
macro_rules! scratch_parts {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// The length of every part of the scratch buffer.
        #[derive(Clone, Copy, Debug)]
        pub(super) struct ScratchSizes {
            $(#[doc = $doc] pub(super) $name: usize,)*
        }

        /// The scratch buffer cut into its parts (see [`ScratchSizes`]).
        pub(super) struct ScratchParts<'a> {
            $(#[doc = $doc] pub(super) $name: &'a mut [f64],)*
        }

        impl ScratchSizes {
            /// The buffer's length: the parts' lengths summed.
            pub(super) fn total(&self) -> usize {
                0 $(+ self.$name)*
            }

            /// `buf` (at least [`ScratchSizes::total`] long) cut into the parts, in order.
            #[inline(always)]
            pub(super) fn carve<'a>(&self, buf: &'a mut [f64]) -> ScratchParts<'a> {
                let rest = buf;
                $(let ($name, rest) = rest.split_at_mut(self.$name);)*
                let _ = rest;
                ScratchParts { $($name,)* }
            }
        }
    };
}

scratch_parts! {
    vals: "Constrained value of every unconstrained coordinate (n_dim).",
    dvdu: "Their derivatives with respect to the coordinate (n_dim).",
    gv: "The log-density's gradient with respect to the values (n_dim).",
    sat: "Saturated media per (group, channel, period) (G C T).",
    cache: "The media kernel's forward cache for its VJP (4 G C T).",
    gsat: "Gradient with respect to `sat` (G C T).",
    spare: "Work space of the media terms' size (G C T).",
    mu: "Expected target per (group, period) (G T).",
    r: "Residuals, then their gradient (G T).",
    kp: "Kernel parameters a0, a1, s0, s1 per (group, channel) (4 G C).",
    dkp: "Their derivatives when pooled (4 G C).",
    amp: "Channel amplitude per (group, channel) (G C).",
    damp: "Its derivative with respect to the amplitude's coordinate (G C).",
    beta: "Channel coefficient per (group, channel) (G C).",
    msat: "Mean saturated media per (group, channel) (G C).",
    gb: "Gradient with respect to beta (G C).",
    gkern: "Gradients of the kernel parameters (4 G C).",
    gamp: "Gradient with respect to the amplitude (G C).",
    offset: "Per-group offset of the expected target (G).",
    lkp: "Lift tests: kernel parameters of their 2N columns (4 2N).",
    lgk: "Lift tests: gradients of those parameters (4 2N).",
    ly: "Lift tests: saturated media of the columns (2N steady).",
    lcache: "Lift tests: the columns' forward cache (4 2N steady).",
    lg: "Lift tests: gradient with respect to `ly` (2N steady).",
    lgb: "Lift tests: gradient with respect to beta (G C).",
    lm: "Lift tests: the modelled lift of each test (N).",
    lwl: "Level lifts (log target): sum_t w L per test (N).",
    lsat: "Level lifts: the direct gradient with respect to `sat` (G C T, with level lifts).",
    drift: "Time-varying baseline: the drift per GP row and period (rows T).",
    mult: "Time-varying media: the multiplier per GP row and period (rows T).",
    rawm: "Time-varying media: the raw media term per (group, period) (G T).",
    gdrift: "Gradient with respect to the drift (rows T).",
    gmult: "Gradient with respect to the log multiplier (rows T).",
    tw: "Per time-varying part: w (rows, m), then q = a / N (B, m) per basis.",
}

impl MmmProblem {
    /// The length of every part of the scratch buffer for this problem.
    pub(super) fn scratch_sizes(&self) -> ScratchSizes {
        let (g, t, c) = (self.s.g, self.s.t, self.s.c);
        let (n, gc, gtc) = (self.n_dim, g * c, g * t * c);
        let lf = &self.data.lift;
        let (nl, st) = (lf.len(), lf.steady);
        let nl2 = 2 * nl;
        let rows = |p: usize| self.data.tvp[p].as_ref().map_or(0, |_| self.s.tvp_rows(p));
        ScratchSizes {
            vals: n,
            dvdu: n,
            gv: n,
            sat: gtc,
            cache: 4 * gtc,
            gsat: gtc,
            spare: gtc,
            mu: g * t,
            r: g * t,
            kp: 4 * gc,
            dkp: 4 * gc,
            amp: gc,
            damp: gc,
            beta: gc,
            msat: gc,
            gb: gc,
            gkern: 4 * gc,
            gamp: gc,
            offset: g,
            lkp: 4 * nl2,
            lgk: 4 * nl2,
            ly: nl2 * st,
            lcache: 4 * nl2 * st,
            lg: nl2 * st,
            lgb: gc,
            lm: nl,
            lwl: nl,
            lsat: if lf.weights.is_empty() { 0 } else { gtc },
            drift: rows(0) * t,
            mult: rows(1) * t,
            rawm: if self.data.tvp[1].is_some() { g * t } else { 0 },
            gdrift: rows(0) * t,
            gmult: rows(1) * t,
            tw: self.tvp_weight_offsets()[2],
        }
    }

    /// Length of the scratch buffer.
    pub(super) fn scratch_len(&self) -> usize {
        self.scratch_sizes().total()
    }

    /// Where each time-varying part's `w` and `q` start in the `tw` part (and its end).
    pub(super) fn tvp_weight_offsets(&self) -> [usize; 3] {
        let mut off = [0usize; 3];
        for p in 0..2 {
            let len = self.data.tvp[p]
                .as_ref()
                .map_or(0, |d| (self.s.tvp_rows(p) + d.bases()) * d.m);
            off[p + 1] = off[p] + len;
        }
        off
    }
}
