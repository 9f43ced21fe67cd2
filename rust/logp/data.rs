//! The data of one fit and the model's static structure.

use crate::kernels::fused::Media;

/// The data of one model fit: `G` groups of `T` periods, group-major.
#[derive(Clone, Debug)]
pub struct MmmData {
    /// (G, T)
    pub y: Vec<f64>,
    /// (G, T, C)
    pub spend: Vec<f64>,
    /// (G, T)
    pub trend_t: Vec<f64>,
    /// (G, T, F)
    pub fourier: Vec<f64>,
    /// (G, T, K)
    pub controls: Vec<f64>,
    /// (G, C)
    pub kappa_scale: Vec<f64>,
    /// (G, C) per channel: its mean scaled spend x channel scale / target scale, so that
    /// `roas * roas_scale` is the channel's mean contribution per period (scaled target)
    /// at that ROAS. Given with a `Roas` block only; empty otherwise.
    pub roas_scale: Vec<f64>,
    /// Lift tests, one entry each: the channel (and group), the
    /// scaled per-period spends before / after, the length in periods, the
    /// scaled measured lift and its standard error. Empty: none.
    pub lift: LiftData,
    /// HSGP bases of the time-varying parts (intercept drift, log media
    /// multiplier), on the dates every group shares; `None`: the part is off.
    pub tvp: [Option<TvpData>; 2],
    /// Per group, the periods it is observed: `[start, end)` (a panel whose groups start
    /// late or stop early). Its likelihood, its centring means and the means that define its
    /// amplitudes run over that window; its spend outside it is 0. Empty: every group
    /// observes all `T` periods.
    pub window: Vec<(usize, usize)>,
}

/// One time-varying part: `f = phi @ w` (one `f` per group when the part is per group,
/// see `MmmStructure::tvp_per_group`; they share `ls` and `eta`), `w_j = eta * a_j / sqrt(sum_k col_ms_k a_k^2) * z_j`,
/// `a_j = 1 / (3 + ls^2 omega_j^2)` (the Matern-3/2 spectral weights normalised so
/// that `eta` is the prior in-sample RMS of `f`; see `fastmmm.tvp.gp_weights`).
///
/// `B` bases: one shared by every GP row (`B = 1`), or one per row (`B` = the part's
/// rows) when the groups of a ragged panel each have their own window, on which their
/// basis is defined and projected (`fastmmm.tvp.panel_hsgp_data`).
#[derive(Clone, Debug)]
pub struct TvpData {
    /// (B, T, m)
    pub phi: Vec<f64>,
    /// (B, m)
    pub omega: Vec<f64>,
    /// (B, m) mean over each basis's training dates of `phi^2`
    pub col_ms: Vec<f64>,
    /// Basis functions per basis.
    pub m: usize,
}

impl TvpData {
    /// How many bases, `B`.
    pub fn bases(&self) -> usize {
        self.omega.len().checked_div(self.m).unwrap_or(0)
    }

    /// The basis of GP row `r`.
    #[inline]
    pub fn basis_of(&self, r: usize) -> usize {
        if self.bases() == 1 {
            0
        } else {
            r
        }
    }
}

/// Lift-test observations: `lift[i] ~ Normal(periods[i] * beta[c] * (f_c(x1) - f_c(x0)), se[i])`,
/// with `f_c` the channel's media transform at the steady state of a constant
/// spend (the last of `steady` constant periods).
///
/// With `weights` (the multiplicative, log-target model) the modelled lift is in
/// sales at the test's own dates: `periods[i] * sum_t w[i, t] * L[i, t] * (exp(beta f_c(x1)) -
/// exp(beta f_c(x0)))`, `L[i, t] = exp(mu[t] - beta[c] * sat[c, t] + sigma^2 / 2)` the
/// expected level without the channel's own term (see `fastmmm.lift`).
#[derive(Clone, Debug, Default)]
pub struct LiftData {
    pub channel: Vec<usize>,
    /// The group of each test (grouped models); empty: group 0.
    pub group: Vec<usize>,
    pub x0: Vec<f64>,
    pub x1: Vec<f64>,
    pub periods: Vec<f64>,
    pub delta: Vec<f64>,
    pub se: Vec<f64>,
    /// Constant periods that reach the steady state (`l_max + 1`).
    pub steady: usize,
    /// (N, T) each test's weights over its group's dates (log target); empty: the additive lift.
    pub weights: Vec<f64>,
}

impl LiftData {
    pub fn len(&self) -> usize {
        self.channel.len()
    }
    pub fn is_empty(&self) -> bool {
        self.channel.is_empty()
    }
    /// Index of test `i`'s (group, channel) cell in a `(G, C)` array.
    #[inline]
    pub(super) fn cell(&self, i: usize, c: usize) -> usize {
        self.group.get(i).copied().unwrap_or(0) * c + self.channel[i]
    }
}

/// Static structure of the model.
#[derive(Clone, Debug)]
pub struct MmmStructure {
    /// Groups (geos / brands) sharing the media parameters; 1 for a single model.
    pub g: usize,
    /// Whether the trace's deterministics carry a leading group axis (the
    /// hierarchical model, even with one group).
    pub grouped: bool,
    pub t: usize,
    pub c: usize,
    pub f: usize,
    pub k: usize,
    pub media: Media,
    /// Saturation kernel parameter multiplied by `kappa_scale`, if any.
    pub relative: Option<usize>,
    /// Fixed saturation kernel parameters.
    pub fixed_saturation: [Option<f64>; 2],
    pub intercept: bool,
    pub trend: bool,
    pub student_t: bool,
    pub direct_beta: bool,
    /// Per time-varying part: one GP per group (its z block is `(G, m)`) rather than one
    /// shared by all groups (`(m,)`).
    pub tvp_per_group: [bool; 2],
}

impl MmmStructure {
    /// How many GPs time-varying part `p` has: `G` when per group, else 1.
    #[inline]
    pub fn tvp_rows(&self, p: usize) -> usize {
        if self.tvp_per_group[p] {
            self.g
        } else {
            1
        }
    }
}
