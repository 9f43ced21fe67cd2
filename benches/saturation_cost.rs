//! Cost of the saturation partials and of their building blocks (Rust only):
//! `cargo bench --bench saturation_cost`. Prints microseconds per 936 elements
//! (156 weeks x 6 channels) for Hill on spend without zeros, with zeros replaced
//! by 1e-200 and with zeros (exp(-inf) must not be slower), and per SIMD level
//! for Hill, Michaelis-Menten and exp, ln and a division alone. Best of 5.
use _core::kernels::fastmath::{exp_f, ln_f};
use _core::kernels::saturation::{Curve, Hill, MichaelisMenten};
use _core::kernels::simd::{grad_col, level};
use std::time::Instant;
struct OnlyExp;
struct OnlyLn;
struct OnlyDiv;
impl Curve for OnlyExp {
    type Pre = f64;
    fn pre(a: f64, _: f64) -> f64 {
        a
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &f64) -> f64 {
        exp_f::<F>(-q * x)
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &f64) -> (f64, f64, f64, f64) {
        let e = exp_f::<F>(-q * x);
        (e, e * q, e * x, 0.0)
    }
}
impl Curve for OnlyLn {
    type Pre = f64;
    fn pre(a: f64, _: f64) -> f64 {
        a
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &f64) -> f64 {
        ln_f::<F>(x) * q
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &f64) -> (f64, f64, f64, f64) {
        let e = ln_f::<F>(x);
        (e, e * q, e * x, 0.0)
    }
}
impl Curve for OnlyDiv {
    type Pre = f64;
    fn pre(a: f64, _: f64) -> f64 {
        a
    }
    #[inline(always)]
    fn value<const F: bool>(x: f64, q: &f64) -> f64 {
        q / (1.0 + x)
    }
    #[inline(always)]
    fn grad<const F: bool>(x: f64, q: &f64) -> (f64, f64, f64, f64) {
        let e = q / (1.0 + x);
        (e, e * q, e * x, 0.0)
    }
}
fn time<K: Curve>(lv: u8, x: &[f64], q: &K::Pre) -> f64 {
    let n = x.len();
    let (mut y, mut dx, mut d0, mut d1) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let reps = 20000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..reps {
            grad_col::<K>(lv, x, q, &mut y, &mut dx, &mut d0, &mut d1);
            std::hint::black_box(&y);
        }
        best = best.min(t0.elapsed().as_secs_f64() / reps as f64 * 1e6);
    }
    best
}
fn main() {
    let n = 936;
    let x: Vec<f64> = (0..n)
        .map(|i| {
            if i % 11 == 0 {
                0.0
            } else {
                ((i * 7919) % 100) as f64 / 50.0
            }
        })
        .collect();
    let xnz: Vec<f64> = x
        .iter()
        .map(|v| if *v == 0.0 { 0.37 } else { *v })
        .collect();
    let xsmall: Vec<f64> = x
        .iter()
        .map(|v| if *v == 0.0 { 1e-200 } else { *v })
        .collect();
    let lv = level();
    println!(
        "hill no zeros {:.3}, zeros->1e-200 {:.3}, with zeros {:.3}",
        time::<Hill>(lv, &xnz, &Hill::pre(1.0, 1.5)),
        time::<Hill>(lv, &xsmall, &Hill::pre(1.0, 1.5)),
        time::<Hill>(lv, &x, &Hill::pre(1.0, 1.5))
    );
    println!(
        "exp with zeros-> -inf arg {:.3}",
        time::<OnlyExp>(
            lv,
            &x.iter()
                .map(|v| if *v == 0.0 { 1e9 } else { *v })
                .collect::<Vec<_>>(),
            &1.3
        )
    );
    for lv in 0..=level() {
        println!(
            "level {lv}: hill {:.3} mm {:.3} exp {:.3} ln {:.3} div {:.3} (us per 936)",
            time::<Hill>(lv, &x, &Hill::pre(1.0, 1.5)),
            time::<MichaelisMenten>(lv, &x, &MichaelisMenten::pre(1.0, 1.5)),
            time::<OnlyExp>(lv, &x, &1.3),
            time::<OnlyLn>(lv, &x, &1.3),
            time::<OnlyDiv>(lv, &x, &1.3)
        );
    }
}
