//! Rust-side kernel timings (no Python in the loop): `cargo bench --bench kernels`.
//!
//! Prints, for geometric(l_max 8) + each saturation at 156 x 6, the fused
//! forward and VJP against the separate adstock and saturation kernels measured
//! in the same run, as microseconds per call (median of 9 repeats) and ratios.

use _core::kernels::adstock::{adstock_fwd, adstock_vjp, Adstock, AdstockKind};
use _core::kernels::fused::{media_fwd, media_vjp, Media, MediaGrads};
use _core::kernels::saturation::{saturation_fwd, saturation_vjp, SaturationKind};
use _core::kernels::Dims;
use std::time::Instant;

fn median_us<F: FnMut()>(mut f: F) -> f64 {
    let reps = 2000;
    let mut v: Vec<f64> = (0..9)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..reps {
                f();
            }
            t0.elapsed().as_secs_f64() / reps as f64 * 1e6
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[4]
}

fn main() {
    let d = Dims::new(1, 156, 6);
    let x: Vec<f64> = (0..d.len())
        .map(|i| {
            if i % 11 == 0 {
                0.0
            } else {
                ((i * 7919) % 100) as f64 / 50.0
            }
        })
        .collect();
    let g: Vec<f64> = (0..d.len())
        .map(|i| ((i * 31) % 17) as f64 / 17.0 - 0.5)
        .collect();
    let (a0, s0, s1) = (vec![0.5; 6], vec![1.0; 6], vec![1.5; 6]);
    let ad = Adstock::new(AdstockKind::Geometric, 8, false).unwrap();
    println!("| saturation | fused fwd+vjp (us) | separate fwd+vjp (us) | ratio |");
    println!("|---|---|---|---|");
    for sat in [
        SaturationKind::Hill,
        SaturationKind::Logistic,
        SaturationKind::MichaelisMenten,
        SaturationKind::Tanh,
    ] {
        let m = Media {
            adstock: ad,
            saturation: sat,
        };
        let s1v: &[f64] = if sat.n_params() == 2 { &s1 } else { &[] };
        let (mut y, mut cache) = (vec![0.0; d.len()], vec![0.0; 4 * d.len()]);
        let (mut ga0, mut gs0, mut gs1) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; s1v.len()]);
        let fused = median_us(|| {
            media_fwd(&m, d, &x, &a0, &[], &s0, s1v, &mut y, &mut cache).unwrap();
            let out = MediaGrads {
                ga0: &mut ga0,
                ga1: &mut [],
                gs0: &mut gs0,
                gs1: &mut gs1,
                gx: &mut [],
            };
            media_vjp(&m, d, &x, &a0, &[], &cache, &g, out).unwrap();
        });
        let (mut xa, mut gxa, mut gx) =
            (vec![0.0; d.len()], vec![0.0; d.len()], vec![0.0; d.len()]);
        let separate = median_us(|| {
            adstock_fwd(&ad, d, &x, &a0, &[], &mut xa).unwrap();
            saturation_fwd(sat, d, &xa, &s0, s1v, &mut y).unwrap();
            saturation_vjp(sat, d, &xa, &s0, s1v, &g, &mut gxa, &mut gs0, &mut gs1).unwrap();
            adstock_vjp(&ad, d, &x, &a0, &[], &gxa, &mut gx, &mut ga0, &mut []).unwrap();
        });
        println!(
            "| {sat:?} | {fused:.2} | {separate:.2} | {:.1}x |",
            separate / fused
        );
    }
}
