//! The media passes of a large panel split by groups across threads: when a chain's thread
//! has idle cores beside it (more cores than chains), one evaluation's media kernel and its
//! VJP run on chunks of groups at once. The groups' media are independent, and each chunk
//! writes only its own groups' slices, so the results equal the one-thread pass exactly.

use super::problem::MmmProblem;
use crate::error::{KResult, KernelError};
use crate::kernels::fused::{media_fwd_cols, media_vjp_cols, Media, MediaGrads};
use crate::kernels::Dims;
use std::cell::Cell;

/// Below this many (group, period, channel) cells a thread's start-up costs more than it saves.
pub(super) const MIN_PARALLEL_CELLS: usize = 20_000;

thread_local! {
    static EVAL_THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Threads one log-density evaluation on this thread may use (the sampler sets it per chain
/// thread: its share of the cores); 1 by default.
pub fn set_eval_threads(n: usize) {
    EVAL_THREADS.with(|c| c.set(n.max(1)));
}

/// Contiguous chunks of `g` groups, at most `n`, of near-equal size.
fn chunks(g: usize, n: usize) -> Vec<(usize, usize)> {
    let n = n.clamp(1, g.max(1));
    (0..n).map(|i| (i * g / n, (i + 1) * g / n)).collect()
}

/// Splits `v` into the chunks' parts, `stride` elements per group.
fn split_groups<'a>(
    mut v: &'a mut [f64],
    stride: usize,
    parts: &[(usize, usize)],
) -> Vec<&'a mut [f64]> {
    let mut out = Vec::with_capacity(parts.len());
    for &(g0, g1) in parts {
        let (head, tail) = std::mem::take(&mut v).split_at_mut((g1 - g0) * stride);
        out.push(head);
        v = tail;
    }
    out
}

/// A per-(group, channel) gradient split by chunk; an unused (empty) one gives `None`s.
fn split_cells<'a>(
    v: &'a mut [f64],
    c: usize,
    parts: &[(usize, usize)],
) -> Vec<Option<&'a mut [f64]>> {
    if v.is_empty() {
        parts.iter().map(|_| None).collect()
    } else {
        split_groups(v, c, parts).into_iter().map(Some).collect()
    }
}

/// Runs `job` on every item, the first on this thread and the others on scoped threads.
fn run_all<J: Send>(items: Vec<J>, job: impl Fn(J) -> KResult<()> + Sync) -> KResult<()> {
    std::thread::scope(|scope| {
        let mut items = items.into_iter();
        let first = items.next();
        let handles: Vec<_> = items.map(|it| scope.spawn(|| job(it))).collect();
        let mut result = first.map_or(Ok(()), &job);
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(KernelError::Option {
                    arg: "threads",
                    msg: "a media thread panicked".into(),
                })
            });
            result = result.and(r);
        }
        result
    })
}

/// The group slice `[g0, g1)` of a per-(group, channel) parameter (empty stays empty).
fn cells(v: &[f64], c: usize, (g0, g1): (usize, usize)) -> &[f64] {
    if v.is_empty() {
        v
    } else {
        &v[g0 * c..g1 * c]
    }
}

/// The media kernel and its VJP compiled for the widest SIMD level the CPU has: a closure
/// run on another thread does not inherit the evaluation's target features (`eval.rs`).
macro_rules! with_features {
    ($fwd:ident, $vjp:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fwd(
            m: &Media,
            d: Dims,
            x: &[f64],
            pad: usize,
            a0: &[f64],
            a1: &[f64],
            s0: &[f64],
            s1: &[f64],
            y: &mut [f64],
            cache: &mut [f64],
        ) -> KResult<()> {
            media_fwd_cols::<true>(m, d, x, pad, a0, a1, s0, s1, y, cache)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $vjp(
            m: &Media,
            d: Dims,
            x: &[f64],
            pad: usize,
            a0: &[f64],
            a1: &[f64],
            cache: &[f64],
            g: &[f64],
            out: MediaGrads<'_>,
        ) -> KResult<()> {
            media_vjp_cols::<true>(m, d, x, pad, a0, a1, cache, g, out)
        }
    };
}

with_features!(fwd_avx512, vjp_avx512, "avx512f,avx512dq,avx512vl,avx2,fma");
with_features!(fwd_avx2, vjp_avx2, "avx2,fma");

#[allow(clippy::too_many_arguments)]
fn fwd_best(
    m: &Media,
    d: Dims,
    x: &[f64],
    pad: usize,
    a0: &[f64],
    a1: &[f64],
    s0: &[f64],
    s1: &[f64],
    y: &mut [f64],
    cache: &mut [f64],
) -> KResult<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let level = crate::kernels::simd::level();
        // SAFETY: `level()` checked that the CPU has the enabled features.
        if level >= 2 {
            return unsafe { fwd_avx512(m, d, x, pad, a0, a1, s0, s1, y, cache) };
        }
        if level == 1 {
            return unsafe { fwd_avx2(m, d, x, pad, a0, a1, s0, s1, y, cache) };
        }
    }
    media_fwd_cols::<false>(m, d, x, pad, a0, a1, s0, s1, y, cache)
}

#[allow(clippy::too_many_arguments)]
fn vjp_best(
    m: &Media,
    d: Dims,
    x: &[f64],
    pad: usize,
    a0: &[f64],
    a1: &[f64],
    cache: &[f64],
    g: &[f64],
    out: MediaGrads<'_>,
) -> KResult<()> {
    #[cfg(target_arch = "x86_64")]
    {
        let level = crate::kernels::simd::level();
        // SAFETY: as in `fwd_best`.
        if level >= 2 {
            return unsafe { vjp_avx512(m, d, x, pad, a0, a1, cache, g, out) };
        }
        if level == 1 {
            return unsafe { vjp_avx2(m, d, x, pad, a0, a1, cache, g, out) };
        }
    }
    media_vjp_cols::<false>(m, d, x, pad, a0, a1, cache, g, out)
}

impl MmmProblem {
    /// How many threads this evaluation's media passes use.
    pub(super) fn media_threads(&self) -> usize {
        let (g, t, c) = (self.s.g, self.s.t, self.s.c);
        if g < 2 || g * t * c < MIN_PARALLEL_CELLS {
            return 1;
        }
        EVAL_THREADS.with(Cell::get).min(g)
    }

    /// `media_fwd_cols` over all groups, in `threads` chunks of groups.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn media_fwd_groups(
        &self,
        threads: usize,
        a0: &[f64],
        a1: &[f64],
        s0: &[f64],
        s1: &[f64],
        sat: &mut [f64],
        cache: &mut [f64],
    ) -> KResult<()> {
        let (t, c) = (self.s.t, self.s.c);
        let tp = self.pad + t;
        let parts = chunks(self.s.g, threads);
        let jobs: Vec<_> = parts
            .iter()
            .copied()
            .zip(split_groups(sat, c * t, &parts))
            .zip(split_groups(cache, 4 * c * t, &parts))
            .collect();
        run_all(jobs, |((r, y), cc)| {
            fwd_best(
                &self.s.media,
                Dims::new(r.1 - r.0, t, c),
                &self.spend_cols[r.0 * c * tp..r.1 * c * tp],
                self.pad,
                cells(a0, c, r),
                cells(a1, c, r),
                cells(s0, c, r),
                cells(s1, c, r),
                y,
                cc,
            )
        })
    }

    /// `media_vjp_cols` over all groups, in `threads` chunks of groups.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn media_vjp_groups(
        &self,
        threads: usize,
        a0: &[f64],
        a1: &[f64],
        cache: &[f64],
        gsat: &[f64],
        out: MediaGrads<'_>,
    ) -> KResult<()> {
        let (t, c) = (self.s.t, self.s.c);
        let tp = self.pad + t;
        let parts = chunks(self.s.g, threads);
        let (ga0, ga1, gs0, gs1) = (
            split_cells(out.ga0, c, &parts),
            split_cells(out.ga1, c, &parts),
            split_cells(out.gs0, c, &parts),
            split_cells(out.gs1, c, &parts),
        );
        let jobs: Vec<_> = parts
            .iter()
            .copied()
            .zip(ga0.into_iter().zip(ga1).zip(gs0.into_iter().zip(gs1)))
            .collect();
        run_all(jobs, |(r, ((a0g, a1g), (s0g, s1g)))| {
            let (gc0, gc1) = (r.0 * c * t, r.1 * c * t);
            vjp_best(
                &self.s.media,
                Dims::new(r.1 - r.0, t, c),
                &self.spend_cols[r.0 * c * tp..r.1 * c * tp],
                self.pad,
                cells(a0, c, r),
                cells(a1, c, r),
                &cache[4 * gc0..4 * gc1],
                &gsat[gc0..gc1],
                MediaGrads {
                    ga0: a0g.unwrap_or_default(),
                    ga1: a1g.unwrap_or_default(),
                    gs0: s0g.unwrap_or_default(),
                    gs1: s1g.unwrap_or_default(),
                    gx: &mut [],
                },
            )
        })
    }
}
