//! Kernel tests against plain references (direct formulas with `powf`, naive
//! convolution) and central finite differences of the forward passes.

use super::adstock::*;
use super::saturation::*;
use super::Dims;
use proptest::prelude::*;

/// Plain tap weights straight from the definitions.
fn ref_weights(kind: AdstockKind, l_max: usize, normalize: bool, p0: f64, p1: f64) -> Vec<f64> {
    let mut w: Vec<f64> = match kind {
        AdstockKind::Geometric => (0..l_max).map(|l| p0.powf(l as f64)).collect(),
        AdstockKind::Delayed => (0..l_max)
            .map(|l| p0.powf((l as f64 - p1).powi(2)))
            .collect(),
        AdstockKind::WeibullPdf => {
            let pdf: Vec<f64> = (1..=l_max)
                .map(|i| {
                    let z = i as f64 / p0;
                    p1 / p0 * z.powf(p1 - 1.0) * (-z.powf(p1)).exp()
                })
                .collect();
            let mn = pdf.iter().cloned().fold(f64::INFINITY, f64::min);
            let mx = pdf.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            pdf.iter().map(|p| (p - mn) / (mx - mn)).collect()
        }
        AdstockKind::WeibullCdf => {
            let mut w = vec![1.0];
            for i in 1..=l_max {
                let s = 1.0 - (1.0 - (-(i as f64 / p0).powf(p1)).exp());
                w.push(w[i - 1] * s);
            }
            w
        }
    };
    if normalize {
        let s: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= s);
    }
    w
}

fn ref_adstock(spec: &Adstock, d: Dims, x: &[f64], p0: &[f64], p1: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; d.len()];
    for b in 0..d.b {
        for c in 0..d.c {
            let q1 = if p1.is_empty() { 0.0 } else { p1[b * d.c + c] };
            let at = |t: usize| x[b * d.tc() + t * d.c + c];
            for t in 0..d.t {
                let v = if spec.is_recursive() {
                    (0..=t)
                        .map(|s| p0[b * d.c + c].powi((t - s) as i32) * at(s))
                        .sum()
                } else {
                    let w = ref_weights(spec.kind, spec.l_max, spec.normalize, p0[b * d.c + c], q1);
                    (0..w.len())
                        .filter(|l| *l <= t)
                        .map(|l| w[l] * at(t - l))
                        .sum()
                };
                y[b * d.tc() + t * d.c + c] = v;
            }
        }
    }
    y
}

fn ref_saturation(kind: SaturationKind, x: f64, p0: f64, p1: f64) -> f64 {
    match kind {
        SaturationKind::Hill => {
            if x == 0.0 {
                0.0
            } else {
                x.powf(p1) / (p0.powf(p1) + x.powf(p1))
            }
        }
        SaturationKind::Logistic => (1.0 - (-p0 * x).exp()) / (1.0 + (-p0 * x).exp()),
        SaturationKind::MichaelisMenten => p0 * x / (p1 + x),
        SaturationKind::Tanh => p0 * (x / (p0 * p1)).tanh(),
    }
}

fn close(a: &[f64], b: &[f64], rtol: f64) -> Result<(), String> {
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (u, v)) in a.iter().zip(b).enumerate() {
        if (u - v).abs() > rtol * scale.max(v.abs()) {
            return Err(format!("index {i}: {u} vs {v} (scale {scale})"));
        }
    }
    Ok(())
}

/// sum(g * f(theta)) differentiated numerically w.r.t. each element of theta.
fn fd_grad<F: Fn(&[f64]) -> Vec<f64>>(f: F, theta: &[f64], g: &[f64]) -> Vec<f64> {
    (0..theta.len())
        .map(|i| {
            let h = 1e-6 * theta[i].abs().max(0.1);
            let mut tp = theta.to_vec();
            let mut tm = theta.to_vec();
            tp[i] += h;
            tm[i] -= h;
            let (fp, fm) = (f(&tp), f(&tm));
            fp.iter()
                .zip(&fm)
                .zip(g)
                .map(|((a, b), gg)| (a - b) * gg)
                .sum::<f64>()
                / (2.0 * h)
        })
        .collect()
}

fn data(d: Dims, seed: u64) -> (Vec<f64>, Vec<f64>) {
    // Deterministic pseudo-random spend with zero runs, and an upstream gradient.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let x: Vec<f64> = (0..d.len())
        .map(|i| if (i / 7) % 3 == 0 { 0.0 } else { 2.0 * next() })
        .collect();
    let g: Vec<f64> = (0..d.len()).map(|_| next() - 0.5).collect();
    (x, g)
}

fn all_adstocks() -> Vec<(Adstock, f64, f64)> {
    use AdstockKind::*;
    vec![
        (Adstock::new(Geometric, 0, false).unwrap(), 0.6, 0.0),
        (Adstock::new(Geometric, 8, false).unwrap(), 0.6, 0.0),
        (Adstock::new(Geometric, 8, true).unwrap(), 0.3, 0.0),
        (Adstock::new(Delayed, 6, false).unwrap(), 0.5, 1.7),
        (Adstock::new(Delayed, 6, true).unwrap(), 0.7, 0.4),
        (Adstock::new(WeibullPdf, 7, false).unwrap(), 2.5, 1.6),
        (Adstock::new(WeibullPdf, 7, true).unwrap(), 1.5, 0.8),
        (Adstock::new(WeibullCdf, 7, false).unwrap(), 3.0, 1.3),
        (Adstock::new(WeibullCdf, 7, true).unwrap(), 1.2, 0.6),
    ]
}

#[test]
fn adstock_forward_matches_reference() {
    let d = Dims::new(2, 40, 3);
    let (x, _) = data(d, 1);
    for (spec, a, b) in all_adstocks() {
        let p0: Vec<f64> = (0..d.n_params())
            .map(|i| a * (0.8 + 0.05 * i as f64))
            .collect();
        let p1: Vec<f64> = if spec.n_params() == 2 {
            (0..d.n_params())
                .map(|i| b * (0.9 + 0.04 * i as f64))
                .collect()
        } else {
            vec![]
        };
        let mut y = vec![0.0; d.len()];
        adstock_fwd(&spec, d, &x, &p0, &p1, &mut y).unwrap();
        close(&y, &ref_adstock(&spec, d, &x, &p0, &p1), 1e-12)
            .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    }
}

#[test]
fn adstock_vjp_matches_finite_differences() {
    let d = Dims::new(2, 25, 2);
    let (x, g) = data(d, 2);
    for (spec, a, b) in all_adstocks() {
        let p0 = vec![a, a * 0.9, a * 0.8, a * 0.95];
        let p1 = if spec.n_params() == 2 {
            vec![b, b * 1.1, b * 0.9, b * 1.05]
        } else {
            vec![]
        };
        let mut gx = vec![0.0; d.len()];
        let mut g0 = vec![0.0; d.n_params()];
        let mut g1 = vec![0.0; p1.len()];
        adstock_vjp(&spec, d, &x, &p0, &p1, &g, &mut gx, &mut g0, &mut g1).unwrap();
        let fwd = |xx: &[f64], q0: &[f64], q1: &[f64]| {
            let mut y = vec![0.0; d.len()];
            adstock_fwd(&spec, d, xx, q0, q1, &mut y).unwrap();
            y
        };
        close(&gx, &fd_grad(|t| fwd(t, &p0, &p1), &x, &g), 1e-7)
            .unwrap_or_else(|e| panic!("{spec:?} gx: {e}"));
        close(&g0, &fd_grad(|t| fwd(&x, t, &p1), &p0, &g), 1e-6)
            .unwrap_or_else(|e| panic!("{spec:?} g0: {e}"));
        if spec.n_params() == 2 {
            close(&g1, &fd_grad(|t| fwd(&x, &p0, t), &p1, &g), 1e-6)
                .unwrap_or_else(|e| panic!("{spec:?} g1: {e}"));
        }
    }
}

const SATS: [(SaturationKind, f64, f64); 4] = [
    (SaturationKind::Hill, 0.8, 1.7),
    (SaturationKind::Logistic, 1.3, 0.0),
    (SaturationKind::MichaelisMenten, 2.0, 0.6),
    (SaturationKind::Tanh, 1.5, 0.7),
];

#[test]
fn saturation_forward_and_vjp() {
    let d = Dims::new(2, 20, 3);
    let (x, g) = data(d, 3);
    for (kind, a, b) in SATS {
        let p0: Vec<f64> = (0..d.n_params())
            .map(|i| a * (0.7 + 0.1 * i as f64))
            .collect();
        let p1: Vec<f64> = if kind.n_params() == 2 {
            (0..d.n_params())
                .map(|i| b * (0.8 + 0.1 * i as f64))
                .collect()
        } else {
            vec![]
        };
        let mut y = vec![0.0; d.len()];
        saturation_fwd(kind, d, &x, &p0, &p1, &mut y).unwrap();
        let want: Vec<f64> = (0..d.len())
            .map(|i| {
                let pc = (i / d.tc()) * d.c + i % d.c;
                ref_saturation(kind, x[i], p0[pc], if p1.is_empty() { 0.0 } else { p1[pc] })
            })
            .collect();
        close(&y, &want, 1e-13).unwrap_or_else(|e| panic!("{kind:?}: {e}"));

        let mut gx = vec![0.0; d.len()];
        let mut g0 = vec![0.0; d.n_params()];
        let mut g1 = vec![0.0; p1.len()];
        saturation_vjp(kind, d, &x, &p0, &p1, &g, &mut gx, &mut g0, &mut g1).unwrap();
        let fwd = |xx: &[f64], q0: &[f64], q1: &[f64]| {
            let mut y = vec![0.0; d.len()];
            saturation_fwd(kind, d, xx, q0, q1, &mut y).unwrap();
            y
        };
        // x = 0 is a kink for Hill (slope != 1): compare gx only where x > 0.
        let fdx = fd_grad(
            |t| fwd(t, &p0, &p1),
            &x.iter().map(|v| v.max(1e-3)).collect::<Vec<_>>(),
            &g,
        );
        for i in 0..d.len() {
            if x[i] > 0.0 {
                assert!(
                    (gx[i] - fdx[i]).abs() < 1e-6 * fdx[i].abs().max(1.0),
                    "{kind:?} gx[{i}]"
                );
            }
        }
        close(&g0, &fd_grad(|t| fwd(&x, t, &p1), &p0, &g), 1e-6)
            .unwrap_or_else(|e| panic!("{kind:?} g0: {e}"));
        if kind.n_params() == 2 {
            close(&g1, &fd_grad(|t| fwd(&x, &p0, t), &p1, &g), 1e-6)
                .unwrap_or_else(|e| panic!("{kind:?} g1: {e}"));
        }
    }
}

#[test]
fn hill_at_zero_is_finite_by_convention() {
    let d = Dims::new(1, 1, 3);
    let x = [0.0; 3];
    let kappa = [0.5, 0.5, 0.5];
    let slope = [0.5, 1.0, 2.0];
    let mut y = [f64::NAN; 3];
    saturation_fwd(SaturationKind::Hill, d, &x, &kappa, &slope, &mut y).unwrap();
    assert_eq!(y, [0.0; 3]);
    let (mut gx, mut gk, mut gs) = ([0.0; 3], [0.0; 3], [0.0; 3]);
    saturation_vjp(
        SaturationKind::Hill,
        d,
        &x,
        &kappa,
        &slope,
        &[1.0; 3],
        &mut gx,
        &mut gk,
        &mut gs,
    )
    .unwrap();
    assert_eq!(gx, [0.0, 2.0, 0.0]);
    assert_eq!(gk, [0.0; 3]);
    assert_eq!(gs, [0.0; 3]);
}

#[test]
fn hill_is_stable_far_from_kappa() {
    let d = Dims::new(1, 3, 1);
    let x = [1e-300, 1.0, 1e300];
    let mut y = [0.0; 3];
    saturation_fwd(SaturationKind::Hill, d, &x, &[1.0], &[3.0], &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(y[0], 0.0);
    assert_eq!(y[2], 1.0);
    let (mut gx, mut gk, mut gs) = ([0.0; 3], [0.0], [0.0]);
    saturation_vjp(
        SaturationKind::Hill,
        d,
        &x,
        &[1.0],
        &[3.0],
        &[1.0; 3],
        &mut gx,
        &mut gk,
        &mut gs,
    )
    .unwrap();
    assert!(gx.iter().chain(&gk).chain(&gs).all(|v| v.is_finite()));
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    let spec = Adstock::new(AdstockKind::Geometric, 4, false).unwrap();
    let d = Dims::new(1, 5, 2);
    let mut y = vec![0.0; 10];
    assert!(adstock_fwd(&spec, d, &[0.0; 9], &[0.5, 0.5], &[], &mut y).is_err());
    assert!(adstock_fwd(&spec, d, &[0.0; 10], &[0.5], &[], &mut y).is_err());
    assert!(saturation_fwd(
        SaturationKind::Hill,
        d,
        &[0.0; 10],
        &[1.0, 1.0],
        &[1.0],
        &mut y
    )
    .is_err());
    assert!(Adstock::new(AdstockKind::Delayed, 0, false).is_err());
    assert!(Adstock::new(AdstockKind::WeibullPdf, 1, false).is_err());
    assert!(Adstock::new(AdstockKind::Geometric, 0, true).is_err());
}

#[test]
fn ffi_rejects_null_and_negative_sizes() {
    use crate::ffi::*;
    let x = [1.0, 2.0];
    let a = [0.5];
    let mut y = [0.0; 2];
    unsafe {
        assert_eq!(
            fastmmm_v1_geometric_fwd(x.as_ptr(), a.as_ptr(), 1, 2, 1, 0, 0, y.as_mut_ptr()),
            0
        );
        assert_eq!(y, [1.0, 2.5]);
        assert_eq!(
            fastmmm_v1_geometric_fwd(std::ptr::null(), a.as_ptr(), 1, 2, 1, 0, 0, y.as_mut_ptr()),
            1
        );
        assert_eq!(
            fastmmm_v1_geometric_fwd(x.as_ptr(), a.as_ptr(), -1, 2, 1, 0, 0, y.as_mut_ptr()),
            1
        );
        assert_eq!(
            fastmmm_v1_weibull_fwd(
                x.as_ptr(),
                a.as_ptr(),
                a.as_ptr(),
                1,
                2,
                1,
                3,
                7,
                0,
                y.as_mut_ptr()
            ),
            1
        );
    }
    assert_eq!(ffi_table().len(), 18);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Batched calls equal per-member calls, and the truncated geometric kernel
    /// approaches the recursion as l_max reaches T.
    #[test]
    fn geometric_batch_and_truncation(alpha in 0.0f64..0.999, t in 1usize..60, seed in 0u64..1000) {
        let d = Dims::new(3, t, 2);
        let (x, _) = data(d, seed);
        let p0 = vec![alpha; d.n_params()];
        let full = Adstock::new(AdstockKind::Geometric, t, false).unwrap();
        let rec = Adstock::new(AdstockKind::Geometric, 0, false).unwrap();
        let (mut y1, mut y2) = (vec![0.0; d.len()], vec![0.0; d.len()]);
        adstock_fwd(&full, d, &x, &p0, &[], &mut y1).unwrap();
        adstock_fwd(&rec, d, &x, &p0, &[], &mut y2).unwrap();
        prop_assert!(close(&y1, &y2, 1e-12).is_ok());
        for b in 0..d.b {
            let one = Dims::new(1, t, 2);
            let mut yb = vec![0.0; one.len()];
            adstock_fwd(&rec, one, &x[b * d.tc()..(b + 1) * d.tc()], &p0[..2], &[], &mut yb).unwrap();
            prop_assert_eq!(&yb[..], &y2[b * d.tc()..(b + 1) * d.tc()]);
        }
    }

    #[test]
    fn saturations_are_bounded_and_monotone(a in 0.05f64..5.0, b in 0.2f64..4.0, x0 in 0.0f64..10.0) {
        let d = Dims::new(1, 2, 1);
        let x = [x0, x0 + 0.5];
        for kind in [SaturationKind::Hill, SaturationKind::Logistic, SaturationKind::MichaelisMenten, SaturationKind::Tanh] {
            let mut y = [0.0; 2];
            saturation_fwd(kind, d, &x, &[a], &[b], &mut y).unwrap();
            prop_assert!(y[1] >= y[0], "{:?} not monotone", kind);
            prop_assert!(y.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }
}

#[test]
fn fused_media_equals_composition() {
    use super::fused::*;
    let d = Dims::new(2, 30, 3);
    let (x, g) = data(d, 5);
    for (spec, a, b) in all_adstocks() {
        for (kind, sa, sb) in SATS {
            let m = Media {
                adstock: spec,
                saturation: kind,
            };
            let a0: Vec<f64> = (0..d.n_params())
                .map(|i| a * (0.8 + 0.03 * i as f64))
                .collect();
            let a1: Vec<f64> = if spec.n_params() == 2 {
                vec![b; d.n_params()]
            } else {
                vec![]
            };
            let s0: Vec<f64> = (0..d.n_params())
                .map(|i| sa * (0.9 + 0.05 * i as f64))
                .collect();
            let s1: Vec<f64> = if kind.n_params() == 2 {
                vec![sb; d.n_params()]
            } else {
                vec![]
            };
            let mut y = vec![0.0; d.len()];
            let mut cache = vec![0.0; 4 * d.len()];
            media_fwd(&m, d, &x, &a0, &a1, &s0, &s1, &mut y, &mut cache).unwrap();
            let mut xa = vec![0.0; d.len()];
            adstock_fwd(&spec, d, &x, &a0, &a1, &mut xa).unwrap();
            let mut y2 = vec![0.0; d.len()];
            saturation_fwd(kind, d, &xa, &s0, &s1, &mut y2).unwrap();
            close(&y, &y2, 1e-14).unwrap_or_else(|e| panic!("{m:?} fwd: {e}"));

            // Composed VJP: saturation VJP, then adstock VJP.
            let (mut gxa, mut gs0, mut gs1) = (
                vec![0.0; d.len()],
                vec![0.0; d.n_params()],
                vec![0.0; s1.len()],
            );
            saturation_vjp(kind, d, &xa, &s0, &s1, &g, &mut gxa, &mut gs0, &mut gs1).unwrap();
            let (mut gx, mut ga0, mut ga1) = (
                vec![0.0; d.len()],
                vec![0.0; d.n_params()],
                vec![0.0; a1.len()],
            );
            adstock_vjp(&spec, d, &x, &a0, &a1, &gxa, &mut gx, &mut ga0, &mut ga1).unwrap();

            for want_gx in [false, true] {
                let (mut fa0, mut fa1) = (vec![0.0; d.n_params()], vec![0.0; a1.len()]);
                let (mut fs0, mut fs1) = (vec![0.0; d.n_params()], vec![0.0; s1.len()]);
                let mut fgx = vec![0.0; if want_gx { d.len() } else { 0 }];
                let out = MediaGrads {
                    ga0: &mut fa0,
                    ga1: &mut fa1,
                    gs0: &mut fs0,
                    gs1: &mut fs1,
                    gx: &mut fgx,
                };
                media_vjp(&m, d, &x, &a0, &a1, &cache, &g, out).unwrap();
                close(&fa0, &ga0, 1e-12).unwrap_or_else(|e| panic!("{m:?} ga0: {e}"));
                close(&fa1, &ga1, 1e-12).unwrap_or_else(|e| panic!("{m:?} ga1: {e}"));
                close(&fs0, &gs0, 1e-12).unwrap_or_else(|e| panic!("{m:?} gs0: {e}"));
                close(&fs1, &gs1, 1e-12).unwrap_or_else(|e| panic!("{m:?} gs1: {e}"));
                if want_gx {
                    close(&fgx, &gx, 1e-12).unwrap_or_else(|e| panic!("{m:?} gx: {e}"));
                }
            }
        }
    }
}

#[test]
fn response_gradient_matches_finite_differences() {
    use super::fused::Media;
    use super::response::{response_draws, Horizon};
    let hz = Horizon {
        lh: 4,
        h: 5,
        lt: 4,
        c: 2,
    };
    let hist = [0.5, 0.0, 0.8, 0.2, 0.0, 0.4, 1.0, 0.3];
    let plan: Vec<f64> = (0..hz.h * hz.c).map(|i| 0.2 + 0.1 * i as f64).collect();
    let s = 2;
    for (spec, a, b) in all_adstocks()
        .into_iter()
        .filter(|(sp, _, _)| !sp.is_recursive())
        .take(5)
    {
        for (kind, sa, sb) in SATS {
            let m = Media {
                adstock: spec,
                saturation: kind,
            };
            let a0 = vec![a; s * 2];
            let a1 = if spec.n_params() == 2 {
                vec![b; s * 2]
            } else {
                vec![]
            };
            let s0 = vec![sa, sa * 1.2, sa * 0.8, sa];
            let s1 = if kind.n_params() == 2 {
                vec![sb; s * 2]
            } else {
                vec![]
            };
            let beta = [1.0, 2.0, 0.5, 1.5];
            let run = |p: &[f64]| {
                let mut r = vec![0.0; s];
                let mut g = vec![0.0; s * hz.h * hz.c];
                response_draws(&m, hz, &hist, p, &a0, &a1, &s0, &s1, &beta, &mut r, &mut g)
                    .unwrap();
                (r, g)
            };
            let (r, g) = run(&plan);
            assert!(
                r.iter().all(|v| *v > 0.0),
                "{m:?}: a positive plan adds response"
            );
            for j in 0..plan.len() {
                let h = 1e-6;
                let (mut pp, mut pm) = (plan.clone(), plan.clone());
                pp[j] += h;
                pm[j] -= h;
                let (rp, rm) = (run(&pp).0, run(&pm).0);
                for i in 0..s {
                    let fd = (rp[i] - rm[i]) / (2.0 * h);
                    let an = g[i * plan.len() + j];
                    assert!(
                        (fd - an).abs() < 1e-6 * fd.abs().max(1.0),
                        "{m:?} draw {i} plan[{j}]: {an} vs {fd}"
                    );
                }
            }
        }
    }
}

/// Response curves in one batch equal one media transform per draw and multiplier,
/// summed over time (and over the leading `w` periods, and over draws per period) and
/// scaled by beta; the response of the full series (the `response_draws` of a plan over
/// the whole window with no history) is their sum.
#[test]
fn contribution_sums_equal_per_multiplier_transforms() {
    use super::fused::{media_fwd, Media};
    use super::response::{contribution_sums, response_draws, ContributionSums, Horizon};
    let (t, c, s) = (9, 2, 3);
    let x: Vec<f64> = (0..t * c).map(|i| ((i * 7) % 5) as f64 * 0.3).collect();
    let mult = [0.0, 0.5, 1.0, 1.7];
    for (spec, a, b) in all_adstocks().into_iter().take(6) {
        for (kind, sa, sb) in SATS {
            let m = Media {
                adstock: spec,
                saturation: kind,
            };
            let a0: Vec<f64> = (0..s * c).map(|i| a * (1.0 - 0.05 * i as f64)).collect();
            let a1 = if spec.n_params() == 2 {
                vec![b; s * c]
            } else {
                vec![]
            };
            let s0: Vec<f64> = (0..s * c).map(|i| sa * (1.0 + 0.1 * i as f64)).collect();
            let s1 = if kind.n_params() == 2 {
                vec![sb; s * c]
            } else {
                vec![]
            };
            let beta: Vec<f64> = (0..s * c).map(|i| 0.5 + 0.25 * i as f64).collect();
            let mut out = vec![0.0; s * mult.len() * c];
            let w = t - 3; // the window, before a tail of 3 periods
            let k = mult.len();
            let mut win = vec![0.0; s * k * c];
            let mut over = vec![0.0; k * w * c];
            let sums = ContributionSums {
                totals: &mut out,
                window: w,
                window_totals: &mut win,
                window_over_draws: &mut over,
            };
            contribution_sums(&m, t, c, &x, &mult, &a0, &a1, &s0, &s1, &beta, sums).unwrap();
            let mut want_over = vec![0.0; k * w * c];
            for i in 0..s {
                let r = |v: &Vec<f64>| -> Vec<f64> {
                    if v.is_empty() {
                        vec![]
                    } else {
                        v[i * c..(i + 1) * c].to_vec()
                    }
                };
                for (j, &f) in mult.iter().enumerate() {
                    let xs: Vec<f64> = x.iter().map(|v| f * v).collect();
                    let mut y = vec![0.0; t * c];
                    let mut cache = vec![0.0; 4 * t * c];
                    let d = Dims::new(1, t, c);
                    media_fwd(
                        &m,
                        d,
                        &xs,
                        &r(&a0),
                        &r(&a1),
                        &r(&s0),
                        &r(&s1),
                        &mut y,
                        &mut cache,
                    )
                    .unwrap();
                    for ch in 0..c {
                        let b = beta[i * c + ch];
                        let want: f64 = (0..t).map(|ti| y[ti * c + ch]).sum::<f64>() * b;
                        let got = out[(i * k + j) * c + ch];
                        assert!(
                            (got - want).abs() <= 1e-13 * want.abs().max(1.0),
                            "{m:?}: {got} vs {want}"
                        );
                        let want: f64 = (0..w).map(|ti| y[ti * c + ch]).sum::<f64>() * b;
                        let got = win[(i * k + j) * c + ch];
                        assert!(
                            (got - want).abs() <= 1e-13 * want.abs().max(1.0),
                            "{m:?} window: {got} vs {want}"
                        );
                        for ti in 0..w {
                            want_over[(j * w + ti) * c + ch] += y[ti * c + ch] * b;
                        }
                    }
                }
            }
            for (got, want) in over.iter().zip(&want_over) {
                assert!(
                    (got - want).abs() <= 1e-13 * want.abs().max(1.0),
                    "{m:?} over draws: {got} vs {want}"
                );
            }
            // multiplier 1 over the whole window = the response of that window as a plan
            let hz = Horizon {
                lh: 0,
                h: t,
                lt: 0,
                c,
            };
            let mut resp = vec![0.0; s];
            let mut grad = vec![0.0; s * t * c];
            response_draws(
                &m,
                hz,
                &[],
                &x,
                &a0,
                &a1,
                &s0,
                &s1,
                &beta,
                &mut resp,
                &mut grad,
            )
            .unwrap();
            for i in 0..s {
                let tot: f64 = (0..c).map(|ch| out[(i * mult.len() + 2) * c + ch]).sum();
                assert!((tot - resp[i]).abs() <= 1e-12 * resp[i].abs().max(1.0));
            }
        }
    }
}

/// The AVX-512 Hill kernel against the portable one (and so against the numpy
/// references those are tested with): value and partials to within the
/// conditioning of exp(slope (ln x - ln kappa)) (8 + 2 slope (|ln x| + |ln kappa|)) x 1e-15 relative) over spend
/// from 0 and subnormals to 1e300, for slopes and kappas across their priors'
/// ranges; NaN and negative spend give NaN, x = 0 the documented conventions.
#[cfg(target_arch = "x86_64")]
#[test]
fn hill_avx512_kernel_equals_the_portable_kernel() {
    if super::simd::level() < 2 {
        eprintln!("no AVX-512 on this CPU (or FASTMMM_SIMD caps it): skipped");
        return;
    }
    let mut s = 12345u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut x: Vec<f64> = vec![
        0.0,
        5e-324,
        1e-310,
        2.2250738585072014e-308,
        1e-300,
        1e-30,
        1e300,
        1.0,
        2.0,
    ];
    for i in 0..4000 {
        x.push(match i % 4 {
            0 => u() * 3.0,
            1 => (u() * 80.0 - 40.0).exp(),
            2 => (u() * 1400.0 - 700.0).exp(),
            _ => 1.0 + (u() - 0.5) * 1e-6,
        });
    }
    let n = x.len();
    for (kappa, slope) in [
        (1.0, 1.0),
        (0.3, 2.5),
        (7.0, 0.6),
        (1e-3, 4.0),
        (50.0, 1.7),
        (1.3, 0.05),
        (1e6, 8.0),
        (1e-308, 8.0),
    ] {
        let q = Hill::pre(kappa, slope);
        let (mut y, mut dx, mut d0, mut d1) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        unsafe { super::hill512::hill_grad(&x, &q, &mut y, &mut dx, &mut d0, &mut d1) };
        for i in 0..n {
            let (ry, rdx, rd0, rd1) = Hill::grad::<true>(x[i], &q);
            for (name, a, b) in [
                ("y", y[i], ry),
                ("dx", dx[i], rdx),
                ("dkappa", d0[i], rd0),
                ("dslope", d1[i], rd1),
            ] {
                // exp(slope (ln x - ln kappa)): one ulp of ln x or ln kappa is a relative
                // error of slope (|ln x| + |ln kappa|) 2^-52 in the result.
                let arg = slope * (x[i].ln().abs() + kappa.ln().abs());
                let scale = b.abs().max(f64::MIN_POSITIVE);
                // ln x is accurate in absolute terms (table reduction), so d y/d slope = d r
                // may differ by d times a few ulp of (1 + |ln x|) where r is near 0.
                let absd = 4e-16 * (1.0 + x[i].ln().abs()) * (ry * (1.0 - ry)).abs();
                // Where exp(-|arg|) is subnormal it has fewer bits: relative 2^-1074 / d.
                let sub = 1e-323 / (ry * (1.0 - ry)).abs().max(1e-323);
                let tol = (1e-15 * (8.0 + 2.0 * arg) + sub) * scale + absd + 1e-300;
                let ok = a == b || (a - b).abs() <= tol;
                assert!(
                    ok,
                    "{name} at x={:e} kappa={kappa} slope={slope}: {a:e} vs {b:e}",
                    x[i]
                );
            }
        }
    }
    // Tails shorter than a vector, NaN and negative spend.
    let xs = [0.5, f64::NAN, -1.0, 0.0, 3.0];
    let q = Hill::pre(1.2, 1.5);
    let (mut y, mut dx, mut d0, mut d1) = ([7.0; 6], [7.0; 6], [7.0; 6], [7.0; 6]);
    unsafe { super::hill512::hill_grad(&xs, &q, &mut y, &mut dx, &mut d0, &mut d1) };
    // NaN / negative spend: the portable kernel's outputs, NaN where it has NaN.
    for i in [1, 2] {
        let r = Hill::grad::<true>(xs[i], &q);
        for (a, b) in [(y[i], r.0), (dx[i], r.1), (d0[i], r.2), (d1[i], r.3)] {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "x={}: {a} vs {b}",
                xs[i]
            );
        }
    }
    assert!(y[1].is_nan() && y[2].is_nan() && d0[1].is_nan());
    assert_eq!((y[3], dx[3], d0[3], d1[3]), (0.0, 0.0, 0.0, 0.0));
    assert_eq!(
        (y[5], dx[5], d0[5], d1[5]),
        (7.0, 7.0, 7.0, 7.0),
        "wrote past the column"
    );
    // A parameter out of its domain (negative kappa: ln is NaN) gives NaN, as portably.
    let bad_q = Hill::pre(-1.0, 1.5);
    let (mut by, mut bdx, mut bd0, mut bd1) = ([0.0; 5], [0.0; 5], [0.0; 5], [0.0; 5]);
    unsafe { super::hill512::hill_grad(&xs, &bad_q, &mut by, &mut bdx, &mut bd0, &mut bd1) };
    assert!(by.iter().chain(&bd0).all(|v| v.is_nan()), "{by:?} {bd0:?}");
    for i in [0, 4] {
        let (ry, rdx, _, _) = Hill::grad::<true>(xs[i], &q);
        assert!((y[i] - ry).abs() <= 1e-15 && (dx[i] - rdx).abs() <= 1e-15);
    }
}

/// The convolution reads zero padding before a column exactly as it reads no
/// padding (same sums in the same order, bit for bit), for every length and tap
/// count, including columns shorter than a block and than the taps; and it
/// equals the direct double sum.
#[test]
fn convolution_with_padding_equals_without() {
    let mut s = 99u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64) / ((1u64 << 53) as f64)
    };
    for t in 1..75 {
        for taps in 1..12 {
            let x: Vec<f64> = (0..t)
                .map(|_| if u() < 0.2 { 0.0 } else { u() * 3.0 })
                .collect();
            let stride = 3;
            let w: Vec<f64> = (0..taps * stride).map(|_| u() - 0.3).collect();
            let mut y0 = vec![0.0; t];
            conv_col_c::<true, false>(&x, 0, &w, stride, taps, &mut y0);
            let direct: Vec<f64> = (0..t)
                .map(|i| (0..taps.min(i + 1)).map(|l| w[l * stride] * x[i - l]).sum())
                .collect();
            close(&y0, &direct, 1e-13).unwrap();
            for pad in [taps - 1, taps + 2, 1] {
                let mut xp = vec![0.0; pad];
                xp.extend_from_slice(&x);
                let mut y1 = vec![f64::NAN; t];
                conv_col_c::<true, false>(&xp, pad, &w, stride, taps, &mut y1);
                assert_eq!(y0, y1, "t={t} taps={taps} pad={pad}");
                // Clamped at 0 in the same pass: max(y, 0) of the same values.
                let mut yc = vec![f64::NAN; t];
                conv_col_c::<true, true>(&xp, pad, &w, stride, taps, &mut yc);
                let want: Vec<f64> = y0.iter().map(|v| v.max(0.0)).collect();
                assert_eq!(yc, want, "clamped t={t} taps={taps} pad={pad}");
            }
        }
    }
}
