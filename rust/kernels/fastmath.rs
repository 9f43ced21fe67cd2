//! Branch-free `exp` and `ln` that LLVM can vectorise.
//!
//! libm's `exp`/`log` are opaque scalar calls, so a loop of Hill saturations
//! runs one element at a time; these inline, select-only versions let the
//! compiler process 2 (SSE2) or 4 (AVX2) elements per instruction. Accuracy is
//! that of fdlibm (within ~1 ulp; tests compare with std over wide ranges).
//! Special values follow IEEE: exp(-inf) = 0, exp(inf) = inf, ln(0) = -inf,
//! ln(x < 0) = NaN, NaN propagates.

// fdlibm's constants are kept digit for digit, as published.
#![allow(clippy::excessive_precision)]

const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// 2^n for an integer-valued `n` in [-1022, 1023], built from the exponent bits.
#[inline(always)]
fn pow2i(n: f64) -> f64 {
    let bits = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    f64::from_bits(bits.wrapping_add(1023).wrapping_shl(52))
}

/// `a * b + c`, fused (one rounding) when `F`: the SIMD builds run with FMA
/// hardware; the baseline build must not call libm's software `fma`.
#[inline(always)]
pub fn mla<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^x.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    exp_f::<false>(x)
}

/// e^x, with fused multiply-adds when `F` (same accuracy; for FMA builds).
#[inline(always)]
pub fn exp_f<const F: bool>(x: f64) -> f64 {
    // Arguments whose result is exactly 0 (below ln(2^-1075) = -745.13...) or
    // inf (above ln(f64::MAX) = 709.78...) are evaluated as exp(0) and replaced
    // at the end: scaling a lane down to 0 through the subnormal range costs a
    // microcode assist, which doubled the cost of Hill on spend with zeros
    // (every zero gives exp(-inf)). NaN fails both tests and propagates.
    let under = x < -745.2;
    let over = x > 709.79;
    let xc = if under || over { 0.0 } else { x };
    let n = mla::<F>(xc, LOG2E, MAGIC) - MAGIC; // round(x / ln 2)
    let r = mla::<F>(-n, LN2_LO, mla::<F>(-n, LN2_HI, xc)); // |r| <= 0.347
                                                            // Taylor series to r^13 (truncation below 1e-17 relative on |r| <= 0.347),
                                                            // evaluated by Estrin's scheme: a short dependency chain for pipelining.
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let q01 = 1.0 + r;
    let q23 = mla::<F>(r, 1.0 / 6.0, 0.5);
    let q45 = mla::<F>(r, 1.0 / 120.0, 1.0 / 24.0);
    let q67 = mla::<F>(r, 1.0 / 5_040.0, 1.0 / 720.0);
    let q89 = mla::<F>(r, 1.0 / 362_880.0, 1.0 / 40_320.0);
    let q1011 = mla::<F>(r, 1.0 / 39_916_800.0, 1.0 / 3_628_800.0);
    let q1213 = mla::<F>(r, 1.0 / 6_227_020_800.0, 1.0 / 479_001_600.0);
    let q0_3 = mla::<F>(r2, q23, q01);
    let q4_7 = mla::<F>(r2, q67, q45);
    let q8_11 = mla::<F>(r2, q1011, q89);
    let q0_7 = mla::<F>(r4, q4_7, q0_3);
    let q8_13 = mla::<F>(r4, q1213, q8_11);
    let p = mla::<F>(r8, q8_13, q0_7);
    // Scale by 2^n in two halves so that n = 1024 and subnormal results work.
    let n1 = mla::<F>(n, 0.5, MAGIC) - MAGIC;
    let n2 = n - n1;
    let v = p * pow2i(n1) * pow2i(n2);
    if under {
        0.0
    } else if over {
        f64::INFINITY
    } else {
        v
    }
}

const LG1: f64 = 6.666_666_666_666_735_130e-01;
const LG2: f64 = 3.999_999_999_940_941_908e-01;
const LG3: f64 = 2.857_142_874_366_239_149e-01;
const LG4: f64 = 2.222_219_843_214_978_396e-01;
const LG5: f64 = 1.818_357_216_161_805_012e-01;
const LG6: f64 = 1.531_383_769_920_937_332e-01;
const LG7: f64 = 1.479_819_860_511_658_591e-01;
const TWO54: f64 = 18_014_398_509_481_984.0;

/// Natural logarithm (fdlibm's algorithm, written without branches).
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    ln_f::<false>(x)
}

/// Natural logarithm, with fused multiply-adds when `F`.
#[inline(always)]
pub fn ln_f<const F: bool>(x: f64) -> f64 {
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * TWO54 } else { x };
    let bits = xs.to_bits();
    // Exponent as a float without an int->float conversion (none in AVX2).
    let e = f64::from_bits(0x4330_0000_0000_0000 | (bits >> 52)) - 4_503_599_627_370_496.0;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1, 2)
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let dk = e - 1023.0 + if big { 1.0 } else { 0.0 } - if sub { 54.0 } else { 0.0 };
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * mla::<F>(w, mla::<F>(w, LG6, LG4), LG2);
    let t2 = z * mla::<F>(w, mla::<F>(w, mla::<F>(w, LG7, LG5), LG3), LG1);
    let r = t2 + t1;
    let v = mla::<F>(
        dk,
        LN2_HI,
        -((hfsq - mla::<F>(s, hfsq + r, dk * LN2_LO)) - f),
    );
    if x > 0.0 && x < f64::INFINITY {
        v
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let spacing = f64::from_bits(b.abs().to_bits() + 1) - b.abs();
        (a - b).abs() / spacing
    }

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        exp_within_two_ulp(exp);
        exp_within_two_ulp(exp_f::<true>);
    }

    fn exp_within_two_ulp(exp: fn(f64) -> f64) {
        let mut u = rng(7);
        let mut worst = 0.0f64;
        for i in 0..400_000 {
            let x = match i % 4 {
                0 => (u() - 0.5) * 2.0,
                1 => (u() - 0.5) * 60.0,
                2 => (u() - 0.5) * 1400.0,
                _ => -700.0 - 45.0 * u(),
            };
            let (a, b) = (exp(x), x.exp());
            if b.is_normal() {
                worst = worst.max(ulps(a, b));
            } else {
                assert!(
                    (a - b).abs() <= 2.0 * f64::from_bits(1),
                    "exp({x}) = {a} vs {b}"
                );
            }
        }
        assert!(worst <= 2.0, "worst exp error {worst} ulp");
    }

    #[test]
    fn ln_is_within_two_ulp_of_std() {
        ln_within_two_ulp(ln);
        ln_within_two_ulp(ln_f::<true>);
    }

    fn ln_within_two_ulp(ln: fn(f64) -> f64) {
        let mut u = rng(11);
        let mut worst = 0.0f64;
        for i in 0..400_000 {
            let x = match i % 4 {
                0 => u() * 2.0,
                1 => 0.5 + u(),
                2 => (u() * 1400.0 - 700.0).exp(),
                _ => f64::from_bits((u() * 4.0e15) as u64 + 1), // subnormals
            };
            worst = worst.max(ulps(ln(x), x.ln()));
        }
        assert!(worst <= 2.0, "worst ln error {worst} ulp");
    }

    #[test]
    fn special_values() {
        special(exp, ln);
        special(exp_f::<true>, ln_f::<true>);
    }

    fn special(exp: fn(f64) -> f64, ln: fn(f64) -> f64) {
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f64::NAN).is_nan());
        assert_eq!(exp(709.7), 709.7f64.exp());
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f64::NAN).is_nan());
    }
}
