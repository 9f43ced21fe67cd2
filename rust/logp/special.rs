//! Special functions and constants.

pub(super) const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// ln Gamma(x) for x > 0 (recurrence + Stirling series; ~1e-15 relative).
pub fn lgamma(x: f64) -> f64 {
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= x.ln();
        x += 1.0;
    }
    let x2 = x * x;
    let series = 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2) + 1.0 / (1260.0 * x * x2 * x2)
        - 1.0 / (1680.0 * x * x2 * x2 * x2)
        + 1.0 / (1188.0 * x * x2 * x2 * x2 * x2);
    acc + (x - 0.5) * x.ln() - x + 0.5 * LN_2PI + series
}

/// Digamma psi(x) for x > 0 (~1e-15 absolute).
pub fn digamma(x: f64) -> f64 {
    let mut x = x;
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let r = 1.0 / (x * x);
    acc + x.ln()
        - 0.5 / x
        - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r * (1.0 / 240.0 - r / 132.0))))
}
