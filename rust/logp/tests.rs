use super::*;
use crate::kernels::adstock::{Adstock, AdstockKind};
use crate::kernels::fused::Media;
use crate::kernels::saturation::SaturationKind;

fn block(role: Role, size: usize, dist: Dist, p: &[f64], transform: Transform) -> Block {
    Block {
        role,
        size,
        dist,
        params: p.iter().map(|&v| vec![v; size]).collect(),
        konst: vec![0.0; size],
        transform,
        lower: vec![],
        upper: vec![],
    }
}

#[test]
fn beta_prior_on_log_odds_is_exact_in_the_tails() {
    // Beta(a, b) on v = sigmoid(u), log-Jacobian included:
    // f(u) = (a-1) ln s + (b-1) ln(1-s) + ln s + ln(1-s), f'(u) = a (1-s) - b s.
    for (a, bb) in [(1.0, 3.0), (3.0, 1.0), (2.0, 2.0), (0.5, 0.7)] {
        let blk = block(
            Role::Adstock(0),
            1,
            Dist::Beta,
            &[a, bb],
            Transform::LogOdds,
        );
        for u in [
            -800.0, -750.0, -40.0, -5.0, 0.0, 0.3, 5.0, 37.0, 40.0, 800.0,
        ] {
            let (term, _, _, gu) = blk.prior_term(0, u);
            // Reference with exact tails: ln s = -softplus(-u), ln(1-s) = -softplus(u).
            let sp = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
            let (ls, l1s) = (-sp(-u), -sp(u));
            let f = a * ls + bb * l1s;
            let s = 1.0 / (1.0 + (-u).exp());
            let df = a * (1.0 - s) - bb * s;
            assert!(term.is_finite() && gu.is_finite(), "u {u}: {term} {gu}");
            assert!(
                (term - f).abs() <= 1e-12 * f.abs().max(1.0),
                "u {u}: {term} vs {f}"
            );
            assert!(
                (gu - df).abs() <= 1e-12 * df.abs().max(1.0),
                "u {u}: {gu} vs {df}"
            );
        }
    }
}

#[test]
fn normalised_delayed_weights_with_a_subnormal_sum_stay_finite() {
    // theta far beyond l_max: every weight is tiny and their sum subnormal,
    // so 1/sum overflows; the weights must still normalise to a finite vector.
    let spec = Adstock::new(AdstockKind::Delayed, 4, true).unwrap();
    let (mut w, mut d0, mut d1) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
    crate::kernels::adstock::batch_weights(
        &spec,
        &[0.5],
        &[35.2],
        &mut w,
        Some((&mut d0, &mut d1)),
    );
    assert!(
        w.iter().chain(&d0).chain(&d1).all(|v| v.is_finite()),
        "{w:?} {d0:?} {d1:?}"
    );
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
}

fn problem(g: usize, grouped: bool, student_t: bool, lift: bool) -> MmmProblem {
    problem_tvp(g, grouped, student_t, lift, [false, false])
}

fn problem_tvp(g: usize, grouped: bool, student_t: bool, lift: bool, tv: [bool; 2]) -> MmmProblem {
    let (t, c, f, k) = (14, 2, 2, 1);
    let s = MmmStructure {
        g,
        grouped,
        t,
        c,
        f,
        k,
        media: Media {
            adstock: Adstock::new(AdstockKind::Geometric, 4, !lift).unwrap(),
            saturation: SaturationKind::Hill,
        },
        relative: Some(0),
        fixed_saturation: [None, None],
        intercept: true,
        trend: true,
        student_t,
        direct_beta: false,
        tvp_per_group: [false, false],
    };
    let mut rng = 12345u64;
    let mut u = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let n = g * t;
    let spend: Vec<f64> = (0..n * c)
        .map(|i| if i % 5 == 0 { 0.0 } else { u() })
        .collect();
    let data = MmmData {
        y: (0..n).map(|_| 0.5 + 0.5 * u()).collect(),
        spend,
        trend_t: (0..n).map(|i| (i % t) as f64 / (t - 1) as f64).collect(),
        fourier: (0..n * f).map(|_| u() - 0.5).collect(),
        controls: (0..n * k).map(|_| u() - 0.5).collect(),
        kappa_scale: (0..g * c).map(|_| 0.5 + u()).collect(),
        roas_scale: vec![],
        lift: if lift {
            LiftData {
                channel: vec![0, 1, 1],
                group: if g > 1 { vec![0, g - 1, 1] } else { vec![] },
                x0: vec![0.0, 0.4, 0.7],
                x1: vec![0.5, 0.9, 0.2],
                periods: vec![6.0, 4.0, 3.0],
                delta: vec![0.8, 0.3, -0.2],
                se: vec![0.2, 0.1, 0.15],
                steady: 5,
                weights: vec![],
            }
        } else {
            LiftData::default()
        },
        tvp: [None, None],
        window: Vec::new(),
    };
    let mut data = data;
    let m = 5;
    for p in 0..2 {
        if tv[p] {
            let phi: Vec<f64> = (0..t * m)
                .map(|i| ((i / m) as f64 * 0.3 * (1 + i % m) as f64).sin() * 0.4)
                .collect();
            let col_ms = (0..m)
                .map(|j| (0..t).map(|ti| phi[ti * m + j].powi(2)).sum::<f64>() / t as f64)
                .collect();
            data.tvp[p] = Some(TvpData {
                phi,
                omega: (1..=m).map(|j| 0.1 * j as f64).collect(),
                col_ms,
                m,
            });
        }
    }
    let id = Transform::Identity;
    let mut blocks = vec![
        block(Role::Level, g, Dist::Normal, &[0.5, 1.0], id),
        block(Role::Trend, g, Dist::Normal, &[0.0, 0.5], id),
        block(Role::GammaFourier, g * f, Dist::Normal, &[0.0, 0.5], id),
        block(Role::GammaControl, g * k, Dist::Normal, &[0.0, 0.5], id),
        block(
            Role::Adstock(0),
            c,
            Dist::Beta,
            &[2.0, 2.0],
            Transform::LogOdds,
        ),
        block(
            Role::Saturation(0),
            c,
            Dist::LogNormal,
            &[0.0, 0.7],
            Transform::Log,
        ),
        block(
            Role::Saturation(1),
            c,
            Dist::Gamma,
            &[3.0, 2.0],
            Transform::Log,
        ),
        block(
            Role::ChannelShare,
            c,
            Dist::HalfNormal,
            &[0.25],
            Transform::Log,
        ),
        block(Role::Sigma, g, Dist::HalfNormal, &[0.5], Transform::Log),
    ];
    if student_t {
        blocks.push(block(Role::Nu, 1, Dist::Gamma, &[2.0, 0.1], Transform::Log));
    }
    for p in 0..2 {
        if tv[p] {
            blocks.push(block(
                Role::TvpLs(p),
                1,
                Dist::LogNormal,
                &[3.0, 0.6],
                Transform::Log,
            ));
            blocks.push(block(
                Role::TvpEta(p),
                1,
                Dist::HalfNormal,
                &[0.2],
                Transform::Log,
            ));
            blocks.push(block(Role::TvpZ(p), m, Dist::Normal, &[0.0, 1.0], id));
        }
    }
    if grouped {
        for tg in [
            Target::Adstock(0),
            Target::Saturation(0),
            Target::Saturation(1),
            Target::Amplitude,
        ] {
            blocks.push(block(
                Role::PoolSd(tg),
                1,
                Dist::HalfNormal,
                &[0.5],
                Transform::Log,
            ));
            blocks.push(block(Role::PoolZ(tg), g * c, Dist::Normal, &[0.0, 1.0], id));
        }
    }
    MmmProblem::new(s, data, blocks).unwrap()
}

fn check_fd(p: &MmmProblem) {
    let n = p.n_dim();
    let x: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64 * 0.7).sin())).collect();
    let mut g = vec![0.0; n];
    let lp = p.logp_grad(&x, &mut g).unwrap();
    assert!(lp.is_finite());
    let mut scratch = vec![0.0; n];
    for i in 0..n {
        let h = 1e-6;
        let mut xp = x.clone();
        xp[i] += h;
        let fp = p.logp_grad(&xp, &mut scratch).unwrap();
        xp[i] -= 2.0 * h;
        let fm = p.logp_grad(&xp, &mut scratch).unwrap();
        let fd = (fp - fm) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
            "coordinate {i}: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
    let mut out = vec![0.0; p.n_expanded()];
    p.expand(&x, &mut out).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

/// The same problem with each channel's amplitude a ROAS (LogNormal) relative to `roas_scale`.
fn as_roas(p: &MmmProblem) -> MmmProblem {
    let (g, c) = (p.s.g, p.s.c);
    let mut data = p.data.clone();
    data.roas_scale = (0..g * c).map(|i| 0.05 + 0.01 * i as f64).collect();
    let blocks: Vec<_> = p
        .blocks
        .iter()
        .map(|b| {
            if b.role == Role::ChannelShare {
                Block {
                    role: Role::Roas,
                    dist: Dist::LogNormal,
                    params: vec![vec![0.0; c], vec![0.8; c]],
                    ..b.clone()
                }
            } else {
                b.clone()
            }
        })
        .collect();
    MmmProblem::new(p.s.clone(), data, blocks).unwrap()
}

#[test]
fn roas_amplitude_gradient_matches_finite_differences() {
    let base = problem(1, false, false, true);
    let roas = as_roas(&base);
    check_fd(&roas);
    check_fd(&as_roas(&problem(3, true, true, false)));
    // the channel's mean contribution over the period is roas * roas_scale, whatever the curve
    let n = roas.n_dim();
    let x: Vec<f64> = (0..n).map(|i| 0.2 * ((i as f64 * 1.3).cos())).collect();
    let mut out = vec![0.0; roas.n_expanded()];
    roas.expand(&x, &mut out).unwrap();
    let (t, c) = (roas.s.t, roas.s.c);
    let (off, _) = roas.block_of(Role::Roas).unwrap();
    let contrib_at = roas.n_dim + c; // after the blocks: beta (C), then channel_contribution (T, C)
    for ch in 0..c {
        let mean: f64 = (0..t).map(|ti| out[contrib_at + ti * c + ch]).sum::<f64>() / t as f64;
        let want = out[off + ch] * roas.data.roas_scale[ch];
        assert!(
            (mean - want).abs() <= 1e-12 * want.abs(),
            "{mean} vs {want}"
        );
    }
    // a roas block needs its roas_scale, and roas_scale needs a roas block
    let mut data = roas.data.clone();
    data.roas_scale.clear();
    assert!(MmmProblem::new(roas.s.clone(), data, roas.blocks.clone()).is_err());
    let mut data = base.data.clone();
    data.roas_scale = vec![1.0; c];
    assert!(MmmProblem::new(base.s.clone(), data, base.blocks.clone()).is_err());
}

#[test]
fn grouped_pooled_gradient_matches_finite_differences() {
    check_fd(&problem(3, true, false, false));
    check_fd(&problem(3, true, true, false));
}

/// `p` with the pools of `targets` centred: each `PoolZ` block replaced by a `PoolW` block.
fn centred(p: &MmmProblem, targets: &[Target]) -> MmmProblem {
    let blocks = p
        .blocks
        .iter()
        .map(|b| match b.role {
            Role::PoolZ(tg) if targets.contains(&tg) => block(
                Role::PoolW(tg),
                b.size,
                Dist::Flat,
                &[],
                Transform::Identity,
            ),
            _ => b.clone(),
        })
        .collect();
    MmmProblem::new(p.s.clone(), p.data.clone(), blocks).unwrap()
}

#[test]
fn centred_pools_gradient_matches_finite_differences() {
    let base = problem(3, true, false, false);
    check_fd(&centred(&base, &[Target::Amplitude]));
    check_fd(&centred(&base, &[Target::Amplitude, Target::Saturation(0)]));
    check_fd(&centred(&as_roas(&base), &[Target::Amplitude]));
}

#[test]
fn centred_pool_is_the_non_centred_model_in_other_coordinates() {
    // w = u + sd z: the same per-group values, and the density of w is that of z over sd.
    let nc = problem(3, true, false, false);
    let ce = centred(&nc, &[Target::Amplitude]);
    let (g, c) = (nc.s.g, nc.s.c);
    let n = nc.n_dim();
    let x: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64 * 0.7).sin())).collect();
    let (amp, _) = nc.target_block(Target::Amplitude).unwrap();
    let pool = nc.pooled(Target::Amplitude).unwrap();
    let sd = x[pool.sd].exp();
    let mut xc = x.clone();
    for gi in 0..g {
        for ch in 0..c {
            let i = pool.per_group + gi * c + ch;
            xc[i] = x[amp + ch] + sd * x[i];
        }
    }
    let mut gr = vec![0.0; n];
    let lp_nc = nc.logp_grad(&x, &mut gr).unwrap();
    let lp_c = ce.logp_grad(&xc, &mut gr).unwrap();
    let want = lp_nc - (g * c) as f64 * sd.ln();
    assert!(
        (lp_c - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{lp_c} vs {want}"
    );
    let (mut a, mut b) = (vec![0.0; nc.n_expanded()], vec![0.0; ce.n_expanded()]);
    nc.expand(&x, &mut a).unwrap();
    ce.expand(&xc, &mut b).unwrap();
    for (i, (u, v)) in a[n..].iter().zip(&b[n..]).enumerate() {
        assert!(
            (u - v).abs() <= 1e-9 * u.abs().max(1.0),
            "deterministic {i}: {u} vs {v}"
        );
    }
}

#[test]
fn lift_test_gradient_matches_finite_differences() {
    check_fd(&problem(1, false, false, true));
    check_fd(&problem(1, false, true, true));
    // geo experiments in a hierarchical model: each test reads its own group's parameters
    check_fd(&problem(3, true, false, true));
    // level lifts (log target): each test reads the level at its dates through mu, sigma
    // and its channel's own term; one test dated, the others spread over every date
    for (g, grouped, student_t) in [(1, false, false), (1, false, true), (3, true, false)] {
        let mut p = problem(g, grouped, student_t, true);
        let mut data = p.data.clone();
        let (n, t) = (data.lift.len(), p.s.t);
        let mut w = vec![1.0 / t as f64; n * t];
        w[..t].fill(0.0);
        w[3..7].fill(0.25);
        data.lift.weights = w;
        p = MmmProblem::new(p.s.clone(), data, p.blocks.clone()).unwrap();
        check_fd(&p);
    }
    // weights of the wrong length are an error
    let p = problem(1, false, false, true);
    let mut data = p.data.clone();
    data.lift.weights = vec![0.5; 3];
    assert!(MmmProblem::new(p.s.clone(), data, p.blocks.clone()).is_err());
}

#[test]
fn time_varying_gradient_matches_finite_differences() {
    check_fd(&problem_tvp(1, false, false, false, [true, false]));
    check_fd(&problem_tvp(1, false, false, false, [false, true]));
    check_fd(&problem_tvp(1, false, true, false, [true, true]));
    let p = problem_tvp(1, false, false, false, [true, true]);
    let names: Vec<_> = p.deterministics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "beta",
            "channel_contribution",
            "media_multiplier",
            "intercept",
            "intercept_tv",
            "mu"
        ]
    );
    // a basis without its blocks is an error
    let blocks: Vec<_> = p
        .blocks
        .iter()
        .filter(|b| b.role != Role::TvpZ(1))
        .cloned()
        .collect();
    assert!(MmmProblem::new(p.s.clone(), p.data.clone(), blocks).is_err());
}

#[test]
fn expand_layout_has_group_axis_and_lift_model() {
    let p = problem(3, true, false, false);
    let names: Vec<_> = p.deterministics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "adstock_0_geo",
            "saturation_0_geo",
            "saturation_1_geo",
            "amplitude_geo",
            "beta",
            "channel_contribution",
            "intercept",
            "mu"
        ]
    );
    let p = problem(1, false, false, true);
    let d = p.deterministics();
    assert_eq!(d.last().unwrap(), &("lift_model", vec![3]));
}

#[test]
fn bad_layouts_are_errors_not_panics() {
    let p = problem(2, true, false, false);
    // several groups without the grouped layout
    let mut s = p.s.clone();
    s.grouped = false;
    assert!(MmmProblem::new(s, p.data.clone(), p.blocks.clone()).is_err());
    // lift tests in a group that does not exist
    let mut d = p.data.clone();
    d.lift = problem(1, false, false, true).data.lift;
    d.lift.group = vec![0, 2, 1];
    assert!(MmmProblem::new(p.s.clone(), d, p.blocks.clone()).is_err());
    // a pool sd without its z
    let blocks: Vec<_> = p
        .blocks
        .iter()
        .filter(|b| b.role != Role::PoolZ(Target::Amplitude))
        .cloned()
        .collect();
    assert!(MmmProblem::new(p.s.clone(), p.data.clone(), blocks).is_err());
    // a centred pool's w block with a density of its own
    let blocks: Vec<_> = p
        .blocks
        .iter()
        .map(|b| match b.role {
            Role::PoolZ(Target::Amplitude) => block(
                Role::PoolW(Target::Amplitude),
                b.size,
                Dist::Normal,
                &[0.0, 1.0],
                Transform::Identity,
            ),
            _ => b.clone(),
        })
        .collect();
    assert!(MmmProblem::new(p.s.clone(), p.data.clone(), blocks).is_err());
}

/// `p` with the time-varying parts in `per` one GP per group (z blocks `(G, m)`).
fn tvp_per_group(p: &MmmProblem, per: [bool; 2]) -> MmmProblem {
    let mut s = p.s.clone();
    s.tvp_per_group = per;
    let blocks = p
        .blocks
        .iter()
        .map(|b| match b.role {
            Role::TvpZ(q) if per[q] => block(
                Role::TvpZ(q),
                b.size * s.g,
                Dist::Normal,
                &[0.0, 1.0],
                Transform::Identity,
            ),
            _ => b.clone(),
        })
        .collect();
    MmmProblem::new(s, p.data.clone(), blocks).unwrap()
}

#[test]
fn grouped_time_varying_gradient_matches_finite_differences() {
    let shared = problem_tvp(3, true, false, false, [true, true]);
    check_fd(&shared);
    for per in [[true, false], [false, true], [true, true]] {
        let p = tvp_per_group(&shared, per);
        check_fd(&p);
        let dets: Vec<_> = p.deterministics();
        let mm = dets.iter().find(|(n, _)| *n == "media_multiplier").unwrap();
        assert_eq!(mm.1, if per[1] { vec![3, 14] } else { vec![14] });
        let itv = dets.iter().find(|(n, _)| *n == "intercept_tv").unwrap();
        assert_eq!(itv.1, vec![3, 14]);
    }
    check_fd(&tvp_per_group(
        &problem_tvp(3, true, true, false, [true, false]),
        [true, false],
    ));
    // per group without a basis is an error
    let mut s = problem(3, true, false, false).s.clone();
    s.tvp_per_group = [true, false];
    let p = problem(3, true, false, false);
    assert!(MmmProblem::new(s, p.data.clone(), p.blocks.clone()).is_err());
}

/// `p`'s time-varying parts with one basis per GP row (a ragged panel's groups), row r's
/// basis the shared one scaled by `1 + scale * r` (so `scale = 0` repeats it).
fn per_row_bases(p: &MmmProblem, scale: f64) -> MmmData {
    let mut data = p.data.clone();
    for (q, part) in data.tvp.iter_mut().enumerate() {
        let Some(d) = part.as_mut() else { continue };
        let rows = p.s.tvp_rows(q);
        let f = |r: usize| 1.0 + scale * r as f64;
        d.phi = (0..rows)
            .flat_map(|r| d.phi.iter().map(move |v| v * f(r)))
            .collect();
        d.col_ms = (0..rows)
            .flat_map(|r| d.col_ms.iter().map(move |v| v * f(r) * f(r)))
            .collect();
        d.omega = (0..rows)
            .flat_map(|r| d.omega.iter().map(move |v| v * f(r)))
            .collect();
    }
    data
}

#[test]
fn per_row_bases_match_finite_differences_and_a_repeated_basis_the_shared_one() {
    let shared = tvp_per_group(
        &problem_tvp(3, true, false, false, [true, true]),
        [true, true],
    );
    let own = MmmProblem::new(
        shared.s.clone(),
        per_row_bases(&shared, 0.3),
        shared.blocks.clone(),
    )
    .unwrap();
    check_fd(&own);
    let same = MmmProblem::new(
        shared.s.clone(),
        per_row_bases(&shared, 0.0),
        shared.blocks.clone(),
    )
    .unwrap();
    let n = shared.n_dim();
    let x: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64 * 0.7).sin())).collect();
    let (mut g1, mut g2, mut g3) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let lp1 = shared.logp_grad(&x, &mut g1).unwrap();
    let lp2 = same.logp_grad(&x, &mut g2).unwrap();
    let lp3 = own.logp_grad(&x, &mut g3).unwrap();
    assert!((lp1 - lp2).abs() < 1e-12 * lp1.abs().max(1.0));
    for (a, b) in g1.iter().zip(&g2) {
        assert!((a - b).abs() < 1e-10 * a.abs().max(1.0), "{a} vs {b}");
    }
    assert!(
        (lp1 - lp3).abs() > 1e-6,
        "distinct bases must change the density"
    );
    // Bases neither shared nor one per row are refused.
    let mut two = per_row_bases(&shared, 0.3);
    for d in two.tvp.iter_mut().flatten() {
        let m = d.m;
        let t = shared.s.t;
        d.phi.truncate(2 * t * m);
        d.omega.truncate(2 * m);
        d.col_ms.truncate(2 * m);
    }
    assert!(MmmProblem::new(shared.s.clone(), two, shared.blocks.clone()).is_err());
    // On a ragged panel too.
    let r = MmmProblem::new(shared.s.clone(), ragged(&own), shared.blocks.clone()).unwrap();
    check_fd(&r);
}

/// `p` (3 groups) made ragged: group 1 starts 3 periods late, group 2 stops 4 early and has
/// no spend on channel 1.
fn ragged(p: &MmmProblem) -> MmmData {
    let (t, c) = (p.s.t, p.s.c);
    let mut data = p.data.clone();
    data.window = vec![(0, t), (3, t), (0, t - 4)];
    for (gi, &(a, b)) in data.window.clone().iter().enumerate() {
        for ti in 0..t {
            for ch in 0..c {
                if ti < a || ti >= b || (gi == 2 && ch == 1) {
                    data.spend[(gi * t + ti) * c + ch] = 0.0;
                }
            }
        }
    }
    data
}

#[test]
fn ragged_panel_gradient_matches_finite_differences() {
    for (student_t, lift, tv) in [
        (false, false, [false, false]),
        (true, false, [false, false]),
        (false, true, [false, false]),
        (false, false, [true, true]),
    ] {
        let p = problem_tvp(3, true, student_t, lift, tv);
        let r = MmmProblem::new(p.s.clone(), ragged(&p), p.blocks.clone()).unwrap();
        check_fd(&r);
        check_fd(&as_roas(&r));
        // the absent cell contributes nothing and its amplitude is not in the likelihood
        let n = r.n_dim();
        let x: Vec<f64> = (0..n).map(|i| 0.3 * ((i as f64 * 0.7).sin())).collect();
        let mut out = vec![0.0; r.n_expanded()];
        r.expand(&x, &mut out).unwrap();
        let dets = r.deterministics();
        let mut o = n;
        for (name, shape) in &dets {
            if *name == "beta" {
                assert_eq!(out[o + 2 * r.s.c + 1], 0.0);
            }
            o += shape.iter().product::<usize>();
        }
    }
    let p = problem(3, true, false, false);
    // spend outside a group's window, a window out of range, a channel without any spend
    let mut data = ragged(&p);
    data.spend[p.s.t * p.s.c] = 1.0; // group 1, period 0
    assert!(MmmProblem::new(p.s.clone(), data, p.blocks.clone()).is_err());
    let mut data = ragged(&p);
    data.window[0] = (5, 5);
    assert!(MmmProblem::new(p.s.clone(), data, p.blocks.clone()).is_err());
    let mut data = p.data.clone();
    for i in 0..p.s.g * p.s.t {
        data.spend[i * p.s.c + 1] = 0.0;
    }
    assert!(MmmProblem::new(p.s.clone(), data, p.blocks.clone()).is_err());
}

#[test]
fn media_passes_split_by_groups_equal_one_pass() {
    // 5 groups in 1, 2 and 3 chunks: the same sat, cache and gradients to the last bit.
    let p = problem(5, true, false, false);
    let (g, t, c) = (p.s.g, p.s.t, p.s.c);
    let gc = g * c;
    let a0: Vec<f64> = (0..gc).map(|i| 0.2 + 0.05 * i as f64 / gc as f64).collect();
    let s0: Vec<f64> = (0..gc).map(|i| 0.5 + 0.03 * i as f64).collect();
    let s1: Vec<f64> = (0..gc).map(|i| 1.2 + 0.02 * i as f64).collect();
    let gsat: Vec<f64> = (0..g * t * c).map(|i| ((i as f64) * 0.37).sin()).collect();
    let run = |threads: usize| {
        let mut sat = vec![0.0; g * t * c];
        let mut cache = vec![0.0; 4 * g * t * c];
        p.media_fwd_groups(threads, &a0, &[], &s0, &s1, &mut sat, &mut cache)
            .unwrap();
        let (mut ga0, mut gs0, mut gs1) = (vec![0.0; gc], vec![0.0; gc], vec![0.0; gc]);
        let out = crate::kernels::fused::MediaGrads {
            ga0: &mut ga0,
            ga1: &mut [],
            gs0: &mut gs0,
            gs1: &mut gs1,
            gx: &mut [],
        };
        p.media_vjp_groups(threads, &a0, &[], &cache, &gsat, out)
            .unwrap();
        (sat, cache, ga0, gs0, gs1)
    };
    let one = run(1);
    assert!(one.0.iter().any(|v| *v > 0.0));
    for threads in [2, 3, 8] {
        assert_eq!(run(threads), one, "{threads} chunks");
    }
}
