//! Prior distributions (their log-densities) and the transforms to the
//! unconstrained space.

/// Prior distributions (PyMC parameterisations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dist {
    /// (mu, sigma)
    Normal,
    /// (sigma)
    HalfNormal,
    /// (mu, sigma)
    LogNormal,
    /// (alpha, beta)
    Gamma,
    /// (alpha, beta)
    Beta,
    /// (lam)
    Exponential,
    /// (nu, mu, sigma)
    StudentT,
    /// (nu, sigma)
    HalfStudentT,
    /// (mu, sigma); bounds live in the transform and the constant
    TruncatedNormal,
    /// (); bounds live in the transform and the constant
    Uniform,
    /// (); no density of its own: a centred pool's per-group values, whose
    /// Normal(global, sd) is the pool's (see `Role::PoolW`)
    Flat,
}

impl Dist {
    pub fn from_name(s: &str) -> Option<Dist> {
        Some(match s {
            "Normal" => Dist::Normal,
            "HalfNormal" => Dist::HalfNormal,
            "LogNormal" => Dist::LogNormal,
            "Gamma" => Dist::Gamma,
            "Beta" => Dist::Beta,
            "Exponential" => Dist::Exponential,
            "StudentT" => Dist::StudentT,
            "HalfStudentT" => Dist::HalfStudentT,
            "TruncatedNormal" => Dist::TruncatedNormal,
            "Uniform" => Dist::Uniform,
            "Flat" => Dist::Flat,
            _ => return None,
        })
    }

    /// Names of the parameters the kernel reads, in order.
    pub fn param_names(&self) -> &'static [&'static str] {
        match self {
            Dist::Normal | Dist::LogNormal | Dist::TruncatedNormal => &["mu", "sigma"],
            Dist::HalfNormal => &["sigma"],
            Dist::Gamma | Dist::Beta => &["alpha", "beta"],
            Dist::Exponential => &["lam"],
            Dist::StudentT => &["nu", "mu", "sigma"],
            Dist::HalfStudentT => &["nu", "sigma"],
            Dist::Uniform | Dist::Flat => &[],
        }
    }

    /// The log-density without its constant, and its derivative, at `v`;
    /// `logs` = (ln v, ln(1 - v)) when the caller has them.
    #[inline]
    pub(super) fn kernel(&self, p: [f64; 3], v: f64, logs: Option<(f64, f64)>) -> (f64, f64) {
        match self {
            Dist::Normal | Dist::TruncatedNormal => {
                let z = (v - p[0]) / p[1];
                (-0.5 * z * z, -z / p[1])
            }
            Dist::HalfNormal => {
                let z = v / p[0];
                (-0.5 * z * z, -z / p[0])
            }
            Dist::LogNormal => {
                let lv = v.ln();
                let z = (lv - p[0]) / p[1];
                (-lv - 0.5 * z * z, -(1.0 + z / p[1]) / v)
            }
            Dist::Gamma => ((p[0] - 1.0) * v.ln() - p[1] * v, (p[0] - 1.0) / v - p[1]),
            Dist::Beta => {
                // ln v and ln(1 - v) from the log-odds transform when it gave them
                // (one exp and one log1p for both; also exact in the tails).
                let (lv, l1v) = logs.unwrap_or_else(|| (v.ln(), (-v).ln_1p()));
                (
                    (p[0] - 1.0) * lv + (p[1] - 1.0) * l1v,
                    (p[0] - 1.0) / v - (p[1] - 1.0) / (1.0 - v),
                )
            }
            Dist::Exponential => (-p[0] * v, -p[0]),
            Dist::StudentT => {
                let (nu, s) = (p[0], p[2]);
                let z = (v - p[1]) / s;
                (
                    -(nu + 1.0) / 2.0 * (z * z / nu).ln_1p(),
                    -(nu + 1.0) * z / (s * (nu + z * z)),
                )
            }
            Dist::HalfStudentT => {
                let (nu, s) = (p[0], p[1]);
                let z = v / s;
                (
                    -(nu + 1.0) / 2.0 * (z * z / nu).ln_1p(),
                    -(nu + 1.0) * z / (s * (nu + z * z)),
                )
            }
            Dist::Uniform | Dist::Flat => (0.0, 0.0),
        }
    }
}

/// What the log-odds transform knows exactly, without cancellation: ln v,
/// ln(1 - v), v and 1 - v (for u beyond about +-37, v rounds to 1 or 0 while
/// these stay exact).
#[derive(Clone, Copy, Debug)]
pub(super) struct LogOdds {
    pub(super) ln_v: f64,
    pub(super) ln_1mv: f64,
    pub(super) v: f64,
    pub(super) one_minus_v: f64,
}

/// PyMC's default transforms to the unconstrained space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Identity,
    /// v = exp(u)
    Log,
    /// v = sigmoid(u)
    LogOdds,
    /// v = lo + (hi - lo) sigmoid(u)
    Interval,
    /// v = lo + exp(u)
    LowerBound,
}

impl Transform {
    pub fn from_name(s: &str) -> Option<Transform> {
        Some(match s {
            "identity" => Transform::Identity,
            "log" => Transform::Log,
            "logodds" => Transform::LogOdds,
            "interval" => Transform::Interval,
            "lowerbound" => Transform::LowerBound,
            _ => return None,
        })
    }

    /// (v, log|dv/du|, dv/du, d log|dv/du| / du)
    #[inline]
    pub(super) fn apply(&self, u: f64, lo: f64, hi: f64) -> (f64, f64, f64, f64) {
        let (v, lj, dv, dlj, _) = self.apply_logs(u, lo, hi);
        (v, lj, dv, dlj)
    }

    /// [`Self::apply`] and, for the log-odds transform, [`LogOdds`].
    #[inline]
    pub(super) fn apply_logs(
        &self,
        u: f64,
        lo: f64,
        hi: f64,
    ) -> (f64, f64, f64, f64, Option<LogOdds>) {
        match self {
            Transform::Identity => (u, 0.0, 1.0, 0.0, None),
            Transform::Log => {
                let v = u.exp();
                (v, u, v, 1.0, None)
            }
            Transform::LogOdds | Transform::Interval => {
                // With e = exp(-|u|) and l = log1p(e): softplus(u) = max(u, 0) + l,
                // softplus(-u) = max(-u, 0) + l, log sigmoid(u) = -softplus(-u),
                // log(1 - sigmoid(u)) = -softplus(u): one exp and one log1p in all.
                let e = (-u.abs()).exp();
                let l = e.ln_1p();
                let sp_pos = u.max(0.0) + l;
                let sp_neg = (-u).max(0.0) + l;
                let r = 1.0 / (1.0 + e);
                let s = if u >= 0.0 { r } else { e * r };
                let sc = if u >= 0.0 { e * r } else { r }; // 1 - s without cancellation
                if *self == Transform::LogOdds {
                    let lj = -sp_neg - sp_pos;
                    let lo = LogOdds {
                        ln_v: -sp_neg,
                        ln_1mv: -sp_pos,
                        v: s,
                        one_minus_v: sc,
                    };
                    (s, lj, s * sc, 1.0 - 2.0 * s, Some(lo))
                } else {
                    let w = hi - lo;
                    let lj = w.ln() - sp_neg - sp_pos;
                    (lo + w * s, lj, w * s * sc, 1.0 - 2.0 * s, None)
                }
            }
            Transform::LowerBound => {
                let e = u.exp();
                (lo + e, u, e, 1.0, None)
            }
        }
    }
}
