//! Building and checking an [`MmmProblem`], and looking up its blocks.

use super::data::{MmmData, MmmStructure};
use super::layout::{Block, Role, Target, N_SLOTS};
use super::priors::{Dist, Transform};
use super::util::{bad, to_cols};
use crate::error::KResult;

/// A complete, immutable log-density problem.
/// Where a pooled media parameter's blocks are (offsets into the parameter vector).
#[derive(Clone, Copy, Debug)]
pub(super) struct Pool {
    /// The pool's sd (one element).
    pub(super) sd: usize,
    /// `(G, C)`: the standardised offsets z (non-centred) or the per-group values w on the
    /// unconstrained scale (centred).
    pub(super) per_group: usize,
    pub(super) centred: bool,
}

#[derive(Clone, Debug)]
pub struct MmmProblem {
    pub s: MmmStructure,
    pub data: MmmData,
    pub blocks: Vec<Block>,
    /// Spend transposed to channel-major (G, C, pad + T), the fused kernel's native
    /// layout, with `pad` = taps - 1 zeros before each column (no convolution head).
    pub(super) spend_cols: Vec<f64>,
    pub(super) pad: usize,
    /// Seasonality and controls transposed to (G, F, T) / (G, K, T): the mean
    /// function and its gradient run over contiguous columns.
    pub(super) fourier_cols: Vec<f64>,
    pub(super) controls_cols: Vec<f64>,
    pub(super) offsets: Vec<usize>,
    /// Role slot -> index into `blocks` (the first block of that role).
    pub(super) slots: [Option<usize>; N_SLOTS],
    pub(super) n_dim: usize,
    /// Per (group, channel): what the amplitude is relative to (see `MmmProblem::new`).
    pub(super) amp_k: Vec<f64>,
    /// Per group: mean trend index over its window.
    pub(super) tbar: Vec<f64>,
    /// Per group: the periods `[start, end)` it is observed (all `T` unless ragged).
    pub(super) win: Vec<(usize, usize)>,
    /// Per (group, channel): no spend at all (a channel absent from a group): no
    /// contribution, and its amplitude is not in the likelihood.
    pub(super) absent: Vec<bool>,
    /// Lift-test spends as (2N, pad + steady) channel-major columns: x0 of every test, then x1.
    pub(super) lift_cols: Vec<f64>,
}

impl MmmProblem {
    /// Checks sizes and builds the problem.
    pub fn new(s: MmmStructure, data: MmmData, blocks: Vec<Block>) -> KResult<Self> {
        let (g, t, c, f, k) = (s.g, s.t, s.c, s.f, s.k);
        let check = |arg: &'static str, v: &[f64], n: usize| -> KResult<()> {
            crate::error::check_len(arg, v, n)
        };
        if g == 0 || t == 0 || c == 0 {
            return Err(bad("need at least one group, one period and one channel"));
        }
        if g > 1 && !s.grouped {
            return Err(bad("several groups need the grouped (hierarchical) layout"));
        }
        check("y", &data.y, g * t)?;
        check("spend", &data.spend, g * t * c)?;
        check("trend_t", &data.trend_t, g * t)?;
        check("fourier", &data.fourier, g * t * f)?;
        check("controls", &data.controls, g * t * k)?;
        check("kappa_scale", &data.kappa_scale, g * c)?;
        let win: Vec<(usize, usize)> = if data.window.is_empty() {
            vec![(0, t); g]
        } else {
            data.window.clone()
        };
        if win.len() != g || win.iter().any(|&(a, b)| a >= b || b > t) {
            return Err(bad(&format!(
                "window: one (start, end) per group with start < end <= {t}"
            )));
        }
        let mut absent = vec![false; g * c];
        for gi in 0..g {
            let (a, b) = win[gi];
            for ti in (0..a).chain(b..t) {
                if data.spend[(gi * t + ti) * c..(gi * t + ti + 1) * c]
                    .iter()
                    .any(|&v| v != 0.0)
                {
                    return Err(bad(&format!(
                        "group {gi}: spend outside its window (periods {a}..{b}) must be 0"
                    )));
                }
            }
            for ch in 0..c {
                absent[gi * c + ch] = (a..b).all(|ti| data.spend[(gi * t + ti) * c + ch] == 0.0);
            }
        }
        if (0..c).any(|ch| (0..g).all(|gi| absent[gi * c + ch])) {
            return Err(bad("a channel has no spend in any group"));
        }
        let mut offsets = Vec::with_capacity(blocks.len());
        let mut n = 0;
        for b in &blocks {
            let want = match b.role {
                Role::Level | Role::Trend | Role::Sigma => g,
                Role::Nu | Role::PoolSd(_) | Role::TvpLs(_) | Role::TvpEta(_) => 1,
                Role::TvpZ(p) => data
                    .tvp
                    .get(p)
                    .and_then(|d| d.as_ref())
                    .map_or(0, |d| d.m * s.tvp_rows(p)),
                Role::GammaFourier => g * f,
                Role::GammaControl => g * k,
                Role::PoolZ(_) | Role::PoolW(_) => g * c,
                _ => c,
            };
            if b.size != want {
                return Err(bad(&format!(
                    "block {:?}: size {} but the model needs {want}",
                    b.role, b.size
                )));
            }
            if b.params.len() != b.dist.param_names().len()
                || b.params.iter().any(|p| p.len() != b.size)
            {
                return Err(bad(&format!(
                    "block {:?}: parameters do not match {:?}",
                    b.role, b.dist
                )));
            }
            if b.konst.len() != b.size {
                return Err(bad(&format!(
                    "block {:?}: const has the wrong length",
                    b.role
                )));
            }
            let needs_bounds = matches!(b.transform, Transform::Interval | Transform::LowerBound);
            if needs_bounds && b.lower.len() != b.size {
                return Err(bad(&format!("block {:?}: lower bounds missing", b.role)));
            }
            if b.transform == Transform::Interval && b.upper.len() != b.size {
                return Err(bad(&format!("block {:?}: upper bounds missing", b.role)));
            }
            offsets.push(n);
            n += b.size;
        }
        let has = |r: Role| blocks.iter().filter(|b| b.role == r).count();
        for r in [
            Role::Level,
            Role::Trend,
            Role::GammaFourier,
            Role::GammaControl,
            Role::Sigma,
            Role::Nu,
        ] {
            if has(r) > 1 {
                return Err(bad(&format!("{r:?} appears twice")));
            }
        }
        if s.intercept != (has(Role::Level) == 1) || s.trend != (has(Role::Trend) == 1) {
            return Err(bad("level/trend blocks do not match the structure"));
        }
        if (f > 0) != (has(Role::GammaFourier) == 1) || (k > 0) != (has(Role::GammaControl) == 1) {
            return Err(bad("seasonality/control blocks do not match the data"));
        }
        if s.student_t != (has(Role::Nu) == 1) || has(Role::Sigma) != 1 {
            return Err(bad(
                "likelihood blocks (sigma, nu) do not match the structure",
            ));
        }
        let amplitudes = has(Role::ChannelShare) + has(Role::Roas);
        if s.direct_beta != (has(Role::Beta) == 1)
            || s.direct_beta == (amplitudes == 1)
            || amplitudes > 1
        {
            return Err(bad(
                "exactly one of beta (direct), channel_share or roas is needed",
            ));
        }
        let roas_block = has(Role::Roas) == 1;
        if roas_block == data.roas_scale.is_empty() {
            return Err(bad("roas_scale is given with a roas block, and only then"));
        }
        check(
            "roas_scale",
            &data.roas_scale,
            if has(Role::Roas) == 1 { g * c } else { 0 },
        )?;
        if !data
            .roas_scale
            .iter()
            .zip(&absent)
            .all(|(v, &no_spend)| v.is_finite() && (*v > 0.0 || no_spend))
        {
            return Err(bad(
                "roas_scale must be finite and > 0 (a channel with spend)",
            ));
        }
        for j in 0..s.media.adstock.n_params() {
            if has(Role::Adstock(j)) != 1 {
                return Err(bad(&format!("adstock parameter {j} missing")));
            }
        }
        for j in 0..s.media.saturation.n_params() {
            let want = usize::from(s.fixed_saturation[j].is_none());
            if has(Role::Saturation(j)) != want {
                return Err(bad(&format!(
                    "saturation parameter {j}: expected {want} block(s)"
                )));
            }
        }
        for tg in Target::ALL {
            let (nsd, nz) = (
                has(Role::PoolSd(tg)),
                has(Role::PoolZ(tg)) + has(Role::PoolW(tg)),
            );
            if nsd > 1 || nz > 1 || nsd != nz {
                return Err(bad(&format!(
                    "pooled {tg:?}: needs exactly one sd block and one z (or w) block"
                )));
            }
            if let Some(b) = blocks.iter().find(|b| b.role == Role::PoolW(tg)) {
                if b.dist != Dist::Flat || b.transform != Transform::Identity {
                    return Err(bad(&format!(
                        "centred pool {tg:?}: its w block must be Flat on the identity transform"
                    )));
                }
            }
            if nsd == 1 {
                if !s.grouped {
                    return Err(bad("pooled parameters need the grouped layout"));
                }
                let target_present = match tg {
                    Target::Adstock(j) => has(Role::Adstock(j)) == 1,
                    Target::Saturation(j) => has(Role::Saturation(j)) == 1,
                    Target::Amplitude => true,
                };
                if !target_present {
                    return Err(bad(&format!(
                        "pooled {tg:?}: the parameter is not in the model"
                    )));
                }
            }
        }
        let mut ybar = vec![0.0; g];
        let mut tbar = vec![0.0; g];
        for gi in 0..g {
            let (a, b) = win[gi];
            let rows = gi * t + a..gi * t + b;
            ybar[gi] = data.y[rows.clone()].iter().sum::<f64>() / (b - a) as f64;
            tbar[gi] = data.trend_t[rows].iter().sum::<f64>() / (b - a) as f64;
        }
        // beta = amp * amp_k / mean_t(sat): amp a contribution share (amp_k = mean target) or a
        // ROAS (amp_k = roas_scale).
        let amp_k: Vec<f64> = if data.roas_scale.is_empty() {
            (0..g * c).map(|i| ybar[i / c]).collect()
        } else {
            data.roas_scale.clone()
        };
        for (p, name) in ["intercept", "media"].iter().enumerate() {
            let on = data.tvp[p].is_some();
            for r in [Role::TvpLs(p), Role::TvpEta(p), Role::TvpZ(p)] {
                if has(r) != usize::from(on) {
                    return Err(bad(&format!(
                        "time-varying {name}: blocks do not match the data (basis {})",
                        if on { "given" } else { "missing" }
                    )));
                }
            }
            if s.tvp_per_group[p] && !on {
                return Err(bad(&format!(
                    "time-varying {name}: per group, but no basis is given"
                )));
            }
            if let Some(d) = &data.tvp[p] {
                let (m, nb) = (d.m, d.bases());
                if m == 0
                    || d.omega.len() != nb * m
                    || d.col_ms.len() != nb * m
                    || d.phi.len() != nb * t * m
                {
                    return Err(bad(&format!(
                        "time-varying {name}: basis shapes do not match (T={t})"
                    )));
                }
                if nb != 1 && nb != s.tvp_rows(p) {
                    return Err(bad(&format!(
                        "time-varying {name}: {nb} bases for {} GP rows (one shared, or one per row)",
                        s.tvp_rows(p)
                    )));
                }
                if d.phi
                    .iter()
                    .chain(&d.omega)
                    .chain(&d.col_ms)
                    .any(|v| !v.is_finite())
                {
                    return Err(bad(&format!(
                        "time-varying {name}: basis values must be finite"
                    )));
                }
            }
        }
        if data.tvp[1].is_some() && !data.lift.is_empty() {
            return Err(bad(
                "lift tests with a time-varying media multiplier are not in the fused log-density",
            ));
        }
        let lf = &data.lift;
        let nl = lf.len();
        if nl > 0 {
            if !(lf.group.is_empty() || lf.group.len() == nl) || lf.group.iter().any(|&gi| gi >= g)
            {
                return Err(bad("lift.group: one group index (< groups) per test"));
            }
            for (arg, v) in [
                ("lift.x0", &lf.x0),
                ("lift.x1", &lf.x1),
                ("lift.periods", &lf.periods),
                ("lift.delta", &lf.delta),
                ("lift.se", &lf.se),
            ] {
                check(arg, v, nl)?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(bad(&format!("{arg}: values must be finite")));
                }
            }
            if lf.channel.iter().any(|&ch| ch >= c) {
                return Err(bad("lift.channel: channel index out of range"));
            }
            if lf.se.iter().any(|&v| v <= 0.0) || lf.x0.iter().chain(&lf.x1).any(|&v| v < 0.0) {
                return Err(bad(
                    "lift tests: standard errors must be > 0 and spends >= 0",
                ));
            }
            if !lf.weights.is_empty()
                && (lf.weights.len() != nl * t
                    || lf.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)))
            {
                return Err(bad("lift.weights: (tests x dates) finite weights >= 0"));
            }
            let taps = s.media.adstock.n_taps();
            if lf.steady == 0 || lf.steady > taps + 1 || lf.steady < taps {
                return Err(bad(&format!(
                    "lift tests: steady must be the adstock's {taps} taps (or one more), got {}",
                    lf.steady
                )));
            }
        }
        let fourier_cols = to_cols(&data.fourier, g, t, f);
        let controls_cols = to_cols(&data.controls, g, t, k);
        let mut slots = [None; N_SLOTS];
        for (i, b) in blocks.iter().enumerate() {
            let sl = &mut slots[b.role.slot()];
            if sl.is_none() {
                *sl = Some(i);
            }
        }
        let pad = s.media.adstock.n_taps().saturating_sub(1);
        let st = lf.steady;
        let mut lift_cols = vec![0.0; 2 * nl * (pad + st)];
        for i in 0..nl {
            let (a, b) = (i * (pad + st), (nl + i) * (pad + st));
            lift_cols[a + pad..a + pad + st].fill(lf.x0[i]);
            lift_cols[b + pad..b + pad + st].fill(lf.x1[i]);
        }
        let mut spend_cols = vec![0.0; g * c * (pad + t)];
        for gi in 0..g {
            for ch in 0..c {
                let col =
                    &mut spend_cols[(gi * c + ch) * (pad + t) + pad..(gi * c + ch + 1) * (pad + t)];
                for (ti, v) in col.iter_mut().enumerate() {
                    *v = data.spend[(gi * t + ti) * c + ch];
                }
            }
        }
        Ok(MmmProblem {
            s,
            data,
            blocks,
            spend_cols,
            pad,
            fourier_cols,
            controls_cols,
            offsets,
            slots,
            n_dim: n,
            amp_k,
            tbar,
            win,
            absent,
            lift_cols,
        })
    }

    /// Same structure and blocks, other data.
    pub fn with_data(&self, data: MmmData) -> KResult<Self> {
        MmmProblem::new(self.s.clone(), data, self.blocks.clone())
    }

    pub fn n_dim(&self) -> usize {
        self.n_dim
    }

    /// A pooled target's sd and per-group block offsets, and whether it is centred
    /// (`PoolW`) or not (`PoolZ`).
    pub(super) fn pooled(&self, tg: Target) -> Option<Pool> {
        let (sd, _) = self.block_of(Role::PoolSd(tg))?;
        if let Some((z, _)) = self.block_of(Role::PoolZ(tg)) {
            return Some(Pool {
                sd,
                per_group: z,
                centred: false,
            });
        }
        let (w, _) = self.block_of(Role::PoolW(tg))?;
        Some(Pool {
            sd,
            per_group: w,
            centred: true,
        })
    }

    /// Names and shapes of what [`MmmProblem::expand`] writes, after the blocks.
    ///
    /// Ungrouped: `beta (C)` (channel_share models), `channel_contribution (T, C)`,
    /// `intercept ()`, `mu (T)`. Grouped: the per-group values of every pooled
    /// parameter (`adstock_0_geo`, ..., `amplitude_geo`, each `(G, C)`, kernel
    /// parameters before the relative scaling), `beta (G, C)` (channel_share
    /// models), `channel_contribution (G, T, C)`, `media_multiplier` (`(G, T)` per group,
    /// else `(T)`), `intercept (G)`, `intercept_tv (G, T)`, `mu (G, T)`. Time-varying parts
    /// and lift tests as their deterministics say.
    pub fn deterministics(&self) -> Vec<(&'static str, Vec<usize>)> {
        let s = &self.s;
        let mut v = Vec::new();
        if !s.grouped {
            if !s.direct_beta {
                v.push(("beta", vec![s.c]));
            }
            v.push(("channel_contribution", vec![s.t, s.c]));
            if self.data.tvp[1].is_some() {
                v.push(("media_multiplier", vec![s.t]));
            }
            if s.intercept {
                v.push(("intercept", vec![]));
            }
            if self.data.tvp[0].is_some() {
                v.push(("intercept_tv", vec![s.t]));
            }
            v.push(("mu", vec![s.t]));
            if !self.data.lift.is_empty() {
                v.push(("lift_model", vec![self.data.lift.len()]));
            }
            return v;
        }
        for tg in Target::ALL {
            if self.pooled(tg).is_some() {
                v.push((tg.geo_name(), vec![s.g, s.c]));
            }
        }
        if !s.direct_beta {
            v.push(("beta", vec![s.g, s.c]));
        }
        v.push(("channel_contribution", vec![s.g, s.t, s.c]));
        if self.data.tvp[1].is_some() {
            v.push((
                "media_multiplier",
                if s.tvp_per_group[1] {
                    vec![s.g, s.t]
                } else {
                    vec![s.t]
                },
            ));
        }
        if s.intercept {
            v.push(("intercept", vec![s.g]));
        }
        if self.data.tvp[0].is_some() {
            v.push(("intercept_tv", vec![s.g, s.t]));
        }
        v.push(("mu", vec![s.g, s.t]));
        if !self.data.lift.is_empty() {
            v.push(("lift_model", vec![self.data.lift.len()]));
        }
        v
    }

    /// Length of the expanded vector: block values, then deterministics.
    pub fn n_expanded(&self) -> usize {
        self.n_dim
            + self
                .deterministics()
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum::<usize>()
    }

    #[inline]
    pub(super) fn block_of(&self, role: Role) -> Option<(usize, &Block)> {
        self.slots[role.slot()].map(|i| (self.offsets[i], &self.blocks[i]))
    }

    /// The block holding a pooled target's global values.
    pub(super) fn target_block(&self, tg: Target) -> Option<(usize, &Block)> {
        match tg {
            Target::Adstock(j) => self.block_of(Role::Adstock(j)),
            Target::Saturation(j) => self.block_of(Role::Saturation(j)),
            Target::Amplitude => self
                .block_of(Role::ChannelShare)
                .or_else(|| self.block_of(Role::Roas))
                .or_else(|| self.block_of(Role::Beta)),
        }
    }
}
