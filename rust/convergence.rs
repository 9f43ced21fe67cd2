//! Convergence statistics of MCMC draws: rank-normalised split R-hat, bulk and tail
//! effective sample size (Vehtari et al. 2021, as ArviZ computes them), one column
//! (parameter element) at a time.
//!
//! The numpy functions in `python/fastmmm/convergence.py` are the float64 reference these
//! are tested against (and those are tested against ArviZ). Why Rust: a fit's summary needs
//! these over every parameter, and in numpy a national model's ~40 parameters cost ~16 ms
//! (dozens of array passes, Python loops over lags), a large panel's thousands seconds;
//! here the autocovariances are summed directly lag by lag, only as far as Geyer's
//! initial sequence reaches, which for a converged chain is a few dozen lags.

/// R-hat, bulk ESS and tail ESS of one column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColumnStats {
    pub rhat: f64,
    pub ess_bulk: f64,
    pub ess_tail: f64,
}

const NAN3: ColumnStats = ColumnStats {
    rhat: f64::NAN,
    ess_bulk: f64::NAN,
    ess_tail: f64::NAN,
};

/// The statistics of one column: `draws` holds `chains` chains of `n_draws` draws each,
/// chain after chain. NaN where undefined: R-hat with fewer than 2 chains, everything
/// with fewer than 4 draws or a non-finite draw (as the numpy reference).
pub fn column_stats(draws: &[f64], chains: usize, n_draws: usize) -> ColumnStats {
    let (c, d) = (chains, n_draws);
    if d < 4 || c == 0 || draws.len() != c * d || !draws.iter().all(|v| v.is_finite()) {
        return NAN3;
    }
    let half = d / 2;
    let m = 2 * c;
    let s = split(draws, c, d);
    let (z, s_sorted) = z_scale(&s);
    let ess_bulk = ess_basic(&z, m, half);
    let rhat = if c >= 2 {
        let med = median_sorted(&s_sorted);
        let folded: Vec<f64> = s.iter().map(|v| (v - med).abs()).collect();
        rhat_basic(&z, m, half).max(rhat_basic(&z_scale(&folded).0, m, half))
    } else {
        f64::NAN
    };
    // The split chains hold every draw when their count is even: the same sorted values.
    let sorted = if d % 2 == 0 {
        s_sorted
    } else {
        let mut v = draws.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let tail = |q: f64| {
        let cut = quantile_sorted(&sorted, q);
        let ind: Vec<f64> = draws
            .iter()
            .map(|&v| f64::from(u8::from(v <= cut)))
            .collect();
        ess_basic(&split(&ind, c, d), m, half)
    };
    ColumnStats {
        rhat,
        ess_bulk,
        ess_tail: tail(0.05).min(tail(0.95)),
    }
}

/// (c chains x d draws) -> (2c chains x d/2 draws): every chain's first half, then every
/// chain's last half (the middle draw of an odd count dropped).
fn split(x: &[f64], c: usize, d: usize) -> Vec<f64> {
    let half = d / 2;
    let mut out = Vec::with_capacity(2 * c * half);
    for j in 0..c {
        out.extend_from_slice(&x[j * d..j * d + half]);
    }
    for j in 0..c {
        out.extend_from_slice(&x[j * d + d - half..(j + 1) * d]);
    }
    out
}

/// Rank-normalise: the normal quantile of each value's average rank (Blom's offset 3/8);
/// also the values sorted.
fn z_scale(x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    // (value, position) pairs sorted by value: ties are ranked together, so their order
    // among themselves does not matter (an unstable sort, on contiguous pairs).
    let mut order: Vec<(f64, usize)> = x.iter().copied().zip(0..).collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut z = vec![0.0; n];
    let denom = n as f64 - 0.75 + 1.0;
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && order[end + 1].0 == order[start].0 {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        let v = ndtri((rank - 0.375) / denom);
        for &(_, i) in &order[start..=end] {
            z[i] = v;
        }
        start = end + 1;
    }
    (z, order.into_iter().map(|(v, _)| v).collect())
}

/// The median of sorted values (even count: the mean of the two middle values).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// numpy's default ("linear") quantile `q` of sorted values, its rounding included.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virtual_index = ((n - 1) as f64 * q).clamp(0.0, (n - 1) as f64);
    let lo = virtual_index.floor();
    let gamma = virtual_index - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// Mean and unbiased variance of `x`.
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, ss / (n - 1.0))
}

/// Split-chain R-hat of `m` chains of `d` draws.
fn rhat_basic(x: &[f64], m: usize, d: usize) -> f64 {
    let (means, vars): (Vec<f64>, Vec<f64>) = x.chunks_exact(d).map(mean_var).unzip();
    let between = d as f64 * mean_var(&means).1;
    let within = vars.iter().sum::<f64>() / m as f64;
    let d = d as f64;
    ((between / within + d - 1.0) / d).sqrt()
}

/// ESS of `m` chains of `d` draws by Geyer's initial monotone sequence.
fn ess_basic(x: &[f64], m: usize, d: usize) -> f64 {
    let total = (m * d) as f64;
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if hi - lo < 1e-15 {
        return total; // a constant column: every draw counts
    }
    if d < 4 {
        return f64::NAN;
    }
    // Chains centred on their own means; autocovariances summed directly, on demand.
    let mut centred = x.to_vec();
    let mut chain_means = Vec::with_capacity(m);
    for chain in centred.chunks_exact_mut(d) {
        let mean = chain.iter().sum::<f64>() / d as f64;
        chain.iter_mut().for_each(|v| *v -= mean);
        chain_means.push(mean);
    }
    let mut acov = Autocovariance::new(&centred, m, d);
    let mut mean_acov = |lag: usize| acov.mean_over_chains(lag);
    let df = d as f64;
    let within = mean_acov(0) * df / (df - 1.0);
    let mut var_plus = within * (df - 1.0) / df;
    if m > 1 {
        var_plus += mean_var(&chain_means).1;
    }
    let mut rho_at = |lag: usize| 1.0 - (within - mean_acov(lag)) / var_plus;

    let mut rho = vec![0.0; d];
    rho[0] = 1.0;
    rho[1] = rho_at(1);
    // Initial positive sequence: pairs (t+1, t+2), t = 1, 3, ..., while the pair sums are > 0.
    let mut t: i64 = 1;
    let mut even = 1.0;
    let mut tt = 1;
    while tt + 3 < d {
        let (e, o) = (rho_at(tt + 1), rho_at(tt + 2));
        if e + o >= 0.0 {
            rho[tt + 1] = e;
            rho[tt + 2] = o;
        }
        even = e;
        t = tt as i64 + 2;
        if e + o <= 0.0 || (e + o).is_nan() {
            break;
        }
        tt += 2;
    }
    let max_t = t - 2;
    if even > 0.0 {
        rho[(max_t + 1) as usize] = even;
    }
    // Initial monotone sequence: each pair sum at most the previous one.
    let mut tt = 1;
    while tt as i64 <= max_t - 2 {
        let prev = rho[tt - 1] + rho[tt];
        if rho[tt + 1] + rho[tt + 2] > prev {
            rho[tt + 1] = prev / 2.0;
            rho[tt + 2] = prev / 2.0;
        }
        tt += 2;
    }
    let used = (max_t + 1).max(0) as usize;
    let mut tau = -1.0 + 2.0 * rho[..used].iter().sum::<f64>();
    if ((max_t + 1) as usize) < d {
        tau += rho[(max_t + 1) as usize];
    }
    if rho.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    total / tau.max(1.0 / total.log10())
}

/// Lags whose autocovariance is summed directly; past them (a chain that mixes slowly,
/// whose Geyer sequence runs on) every lag is computed at once by FFT, so the cost stays
/// O(d log d) rather than O(d^2).
const DIRECT_LAGS: usize = 64;

/// The chains' autocovariances at each lag, averaged over the chains: summed directly for
/// the first lags (all a converged chain needs), by FFT beyond.
struct Autocovariance<'a> {
    centred: &'a [f64],
    m: usize,
    d: usize,
    by_fft: Option<Vec<f64>>,
}

impl<'a> Autocovariance<'a> {
    fn new(centred: &'a [f64], m: usize, d: usize) -> Self {
        Autocovariance {
            centred,
            m,
            d,
            by_fft: None,
        }
    }

    fn mean_over_chains(&mut self, lag: usize) -> f64 {
        let (m, d) = (self.m, self.d);
        if lag <= DIRECT_LAGS {
            let s: f64 = self
                .centred
                .chunks_exact(d)
                .map(|y| {
                    y[..d - lag]
                        .iter()
                        .zip(&y[lag..])
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                })
                .sum();
            return s / d as f64 / m as f64;
        }
        let centred = self.centred;
        self.by_fft
            .get_or_insert_with(|| fft_mean_autocovariance(centred, m, d))[lag]
    }
}

/// Every lag's autocovariance, averaged over `m` centred chains of `d` draws: the inverse
/// transform of each chain's power spectrum, zero-padded to avoid wrapping around.
fn fft_mean_autocovariance(centred: &[f64], m: usize, d: usize) -> Vec<f64> {
    use rustfft::num_complex::Complex;
    let n = (2 * d).next_power_of_two();
    let mut planner = rustfft::FftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut out = vec![0.0; d];
    let mut buf = vec![Complex::new(0.0, 0.0); n];
    for y in centred.chunks_exact(d) {
        buf.iter_mut().for_each(|b| *b = Complex::new(0.0, 0.0));
        buf.iter_mut().zip(y).for_each(|(b, &v)| b.re = v);
        fwd.process(&mut buf);
        buf.iter_mut()
            .for_each(|b| *b = Complex::new(b.norm_sqr(), 0.0));
        inv.process(&mut buf);
        // rustfft's transforms are unnormalised: forward then inverse multiplies by n.
        out.iter_mut()
            .zip(&buf)
            .for_each(|(o, b)| *o += b.re / n as f64);
    }
    out.iter_mut().for_each(|o| *o /= d as f64 * m as f64);
    out
}

/// The standard normal quantile of `p` in (0, 1): Wichura's AS241 (PPND16), the same
/// coefficients and evaluation order as the numpy reference.
#[allow(clippy::excessive_precision)] // AS241's coefficients as published (and as in the reference)
pub fn ndtri(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.387132872796366608,
        133.14166789178437745,
        1971.5909503065514427,
        13731.693765509461125,
        45921.953931549871457,
        67265.770927008700853,
        33430.575583588128105,
        2509.0809287301226727,
    ];
    const B: [f64; 8] = [
        1.0,
        42.313330701600911252,
        687.1870074920579083,
        5394.1960214247511077,
        21213.794301586595867,
        39307.89580009271061,
        28729.085735721942674,
        5226.495278852545925,
    ];
    const C: [f64; 8] = [
        1.42343711074968357734,
        4.6303378461565452959,
        5.7694972214606914055,
        3.64784832476320460504,
        1.27045825245236838258,
        0.24178072517745061177,
        0.0227238449892691845833,
        7.7454501427834140764e-4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.05319162663775882187,
        1.6763848301838038494,
        0.68976733498510000455,
        0.14810397642748007459,
        0.0151986665636164571966,
        5.475938084995344946e-4,
        1.05075007164441684324e-9,
    ];
    const E: [f64; 8] = [
        6.6579046435011037772,
        5.4637849111641143699,
        1.7848265399172913358,
        0.29656057182850489123,
        0.026532189526576123093,
        0.0012426609473880784386,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        0.59983220655588793769,
        0.13692988092273580531,
        0.0148753612908506148525,
        7.868691311456132591e-4,
        1.8463183175100546818e-5,
        1.4215117583164458887e-7,
        2.04426310338993978564e-15,
    ];
    fn poly(coef: &[f64; 8], x: f64) -> f64 {
        coef.iter()
            .rev()
            .skip(1)
            .fold(coef[7], |acc, &c| acc * x + c)
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let r = if q < 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let v = if r <= 5.0 {
        let r = r - 1.6;
        poly(&C, r) / poly(&D, r)
    } else {
        let r = r - 5.0;
        poly(&E, r) / poly(&F, r)
    };
    if q < 0.0 {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AR(1) chains with coefficient `phi`, a small deterministic generator (no rand crate
    /// needed): the ESS falls as phi rises, about (1 - phi) / (1 + phi) of the draws.
    fn ar1(chains: usize, draws: usize, phi: f64, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut out = Vec::with_capacity(chains * draws);
        for _ in 0..chains {
            let mut x = 0.0;
            for _ in 0..draws {
                x = phi * x + ndtri(uniform());
                out.push(x);
            }
        }
        out
    }

    #[test]
    fn ndtri_inverts_known_quantiles() {
        assert_eq!(ndtri(0.5), 0.0);
        assert!((ndtri(0.975) - 1.959963984540054).abs() < 1e-15);
        assert!((ndtri(1e-10) + 6.361340902404056).abs() < 1e-13);
        assert!((ndtri(0.3) + ndtri(0.7)).abs() < 1e-16);
    }

    #[test]
    fn ess_tracks_autocorrelation_and_rhat_detects_disagreeing_chains() {
        let iid = column_stats(&ar1(4, 1000, 0.0, 1), 4, 1000);
        assert!((iid.ess_bulk / 4000.0 - 1.0).abs() < 0.15, "{iid:?}");
        assert!(iid.rhat < 1.01 && iid.ess_tail > 2500.0, "{iid:?}");
        let sticky = column_stats(&ar1(4, 1000, 0.9, 2), 4, 1000);
        // (1 - 0.9) / (1 + 0.9) of 4000 draws is about 210.
        assert!(
            sticky.ess_bulk > 100.0 && sticky.ess_bulk < 400.0,
            "{sticky:?}"
        );
        let mut apart = ar1(2, 500, 0.0, 3);
        apart[500..].iter_mut().for_each(|v| *v += 5.0);
        assert!(column_stats(&apart, 2, 500).rhat > 1.5);
    }

    #[test]
    fn autocovariances_by_fft_equal_the_direct_sums() {
        // A random walk: its Geyer sequence runs far past the directly summed lags.
        let walk: Vec<f64> = ar1(3, 700, 1.0, 6);
        let mut centred = walk.clone();
        for chain in centred.chunks_exact_mut(700) {
            let mean = chain.iter().sum::<f64>() / 700.0;
            chain.iter_mut().for_each(|v| *v -= mean);
        }
        let by_fft = fft_mean_autocovariance(&centred, 3, 700);
        let mut acov = Autocovariance::new(&centred, 3, 700);
        for lag in [0, 1, 17, DIRECT_LAGS] {
            let direct = acov.mean_over_chains(lag);
            assert!(
                (by_fft[lag] - direct).abs() <= 1e-12 * by_fft[0],
                "lag {lag}"
            );
        }
        assert_eq!(acov.mean_over_chains(400), by_fft[400]);
        let stats = column_stats(&walk, 3, 700);
        assert!(stats.ess_bulk > 3.0 && stats.ess_bulk < 100.0, "{stats:?}");
    }

    #[test]
    fn undefined_cases_are_nan_and_a_constant_column_counts_every_draw() {
        let one_chain = column_stats(&ar1(1, 200, 0.0, 4), 1, 200);
        assert!(one_chain.rhat.is_nan() && one_chain.ess_bulk > 0.0);
        assert!(column_stats(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3)
            .ess_bulk
            .is_nan());
        let mut bad = ar1(2, 100, 0.0, 5);
        bad[7] = f64::NAN;
        assert!(column_stats(&bad, 2, 100).ess_tail.is_nan());
        let flat = column_stats(&[3.0; 400], 2, 200);
        assert_eq!((flat.ess_bulk, flat.ess_tail), (400.0, 400.0));
    }
}
