//! The parameter layout: the blocks of the parameter vector, their roles and
//! the role slots used for lookup.

use super::priors::{Dist, Transform};

/// A media parameter that can be partially pooled across groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Adstock(usize),
    Saturation(usize),
    /// channel_share or beta, whichever the model has.
    Amplitude,
}

impl Target {
    fn from_name(s: &str) -> Option<Target> {
        Some(match s {
            "adstock_0" => Target::Adstock(0),
            "adstock_1" => Target::Adstock(1),
            "saturation_0" => Target::Saturation(0),
            "saturation_1" => Target::Saturation(1),
            "amplitude" => Target::Amplitude,
            _ => return None,
        })
    }

    /// Name of the per-group values in the expanded trace.
    pub fn geo_name(&self) -> &'static str {
        match self {
            Target::Adstock(0) => "adstock_0_geo",
            Target::Adstock(_) => "adstock_1_geo",
            Target::Saturation(0) => "saturation_0_geo",
            Target::Saturation(_) => "saturation_1_geo",
            Target::Amplitude => "amplitude_geo",
        }
    }

    fn index(&self) -> usize {
        match self {
            Target::Adstock(j) => *j,
            Target::Saturation(j) => 2 + *j,
            Target::Amplitude => 4,
        }
    }

    pub(super) const ALL: [Target; 5] = [
        Target::Adstock(0),
        Target::Adstock(1),
        Target::Saturation(0),
        Target::Saturation(1),
        Target::Amplitude,
    ];
}

/// What a block of the parameter vector is in the model.
///
/// With `G` groups (geos or brands), `Level`, `Trend` and `Sigma` have one
/// element per group, `GammaFourier` / `GammaControl` `G * F` / `G * K`
/// (group-major); media parameters are global `(C,)` and, when pooled, each
/// group's value is `transform(u_c + sd * z[g, c])` with `u_c` the global
/// parameter's unconstrained value, `sd` a `PoolSd` block (one element) and
/// `z` a `PoolZ` block `(G, C)` (non-centred partial pooling on the
/// unconstrained scale), or, centred, `transform(w[g, c])` with `w` a `PoolW`
/// block `(G, C)` and `w[g, c] ~ Normal(u_c, sd)` (the pool's density; the block
/// itself is `Flat`). Centred suits a parameter every group's data pin down (the
/// channel amplitude): non-centred there couples `u_c` with all of `z[., c]`.
/// Unpooled media parameters are shared by all groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Level,
    Trend,
    GammaFourier,
    GammaControl,
    /// Adstock kernel parameter index.
    Adstock(usize),
    /// Saturation kernel parameter index.
    Saturation(usize),
    ChannelShare,
    /// The channel's ROAS over the fitted period: `beta = roas * roas_scale / mean_t(sat)`.
    Roas,
    Beta,
    Sigma,
    Nu,
    PoolSd(Target),
    PoolZ(Target),
    PoolW(Target),
    /// HSGP lengthscale / amplitude / coefficients of time-varying part 0
    /// (intercept drift) or 1 (log media multiplier).
    TvpLs(usize),
    TvpEta(usize),
    TvpZ(usize),
}

/// Number of distinct roles (the size of `MmmProblem`'s role -> block table).
pub(super) const N_SLOTS: usize = 34;

impl Role {
    /// A dense index of the role, for O(1) block lookup in the hot path.
    pub(super) fn slot(&self) -> usize {
        match self {
            Role::Level => 0,
            Role::Trend => 1,
            Role::GammaFourier => 2,
            Role::GammaControl => 3,
            Role::Adstock(j) => 4 + (*j).min(1),
            Role::Saturation(j) => 6 + (*j).min(1),
            Role::ChannelShare => 8,
            Role::Beta => 9,
            Role::Sigma => 10,
            Role::Nu => 11,
            Role::PoolSd(t) => 12 + t.index(),
            Role::PoolZ(t) => 17 + t.index(),
            Role::TvpLs(p) => 22 + (*p).min(1),
            Role::TvpEta(p) => 24 + (*p).min(1),
            Role::TvpZ(p) => 26 + (*p).min(1),
            Role::Roas => 28,
            Role::PoolW(t) => 29 + t.index(),
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "level" => Role::Level,
            "trend" => Role::Trend,
            "gamma_fourier" => Role::GammaFourier,
            "gamma_control" => Role::GammaControl,
            "adstock_0" => Role::Adstock(0),
            "adstock_1" => Role::Adstock(1),
            "saturation_0" => Role::Saturation(0),
            "saturation_1" => Role::Saturation(1),
            "channel_share" => Role::ChannelShare,
            "roas" => Role::Roas,
            "beta" => Role::Beta,
            "sigma" => Role::Sigma,
            "nu" => Role::Nu,
            "tvp_intercept_ls" => Role::TvpLs(0),
            "tvp_intercept_eta" => Role::TvpEta(0),
            "tvp_intercept_z" => Role::TvpZ(0),
            "tvp_media_ls" => Role::TvpLs(1),
            "tvp_media_eta" => Role::TvpEta(1),
            "tvp_media_z" => Role::TvpZ(1),
            _ => {
                if let Some(t) = s.strip_suffix("_sd").and_then(Target::from_name) {
                    Role::PoolSd(t)
                } else if let Some(t) = s.strip_suffix("_z").and_then(Target::from_name) {
                    Role::PoolZ(t)
                } else if let Some(t) = s.strip_suffix("_w").and_then(Target::from_name) {
                    Role::PoolW(t)
                } else {
                    return None;
                }
            }
        })
    }
}

/// One free parameter (scalar or vector) of the model.
#[derive(Clone, Debug)]
pub struct Block {
    pub role: Role,
    pub size: usize,
    pub dist: Dist,
    /// Per-element distribution parameters, `params[k][i]` for parameter k.
    pub params: Vec<Vec<f64>>,
    /// Per-element normalising constant of the prior.
    pub konst: Vec<f64>,
    pub transform: Transform,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

impl Block {
    /// Element `i` of the prior at unconstrained `u`: (log-density term with its
    /// constant and the transform's log-Jacobian, v, dv/du, d term / du).
    #[inline(always)]
    pub(super) fn prior_term(&self, i: usize, u: f64) -> (f64, f64, f64, f64) {
        let lo = self.lower.get(i).copied().unwrap_or(0.0);
        let hi = self.upper.get(i).copied().unwrap_or(1.0);
        let (v, lj, dv, dlj, logs) = self.transform.apply_logs(u, lo, hi);
        let mut p = [0.0; 3];
        for (slot, col) in p.iter_mut().zip(&self.params) {
            *slot = col[i];
        }
        let (kv, dk) = self.dist.kernel(p, v, logs.map(|l| (l.ln_v, l.ln_1mv)));
        // A Beta prior on the log-odds scale: d/du [(a-1) ln v + (b-1) ln(1-v)]
        // = (a-1)(1-v) - (b-1) v, finite where v has rounded to 0 or 1
        // (dk * dv would be inf * 0 there).
        let dku = match (self.dist, logs) {
            (Dist::Beta, Some(l)) => (p[0] - 1.0) * l.one_minus_v - (p[1] - 1.0) * l.v,
            _ => dk * dv,
        };
        (self.konst[i] + kv + lj, v, dv, dku + dlj)
    }
}
