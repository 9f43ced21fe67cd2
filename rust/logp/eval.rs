//! The log-density and its gradient in one pass, and the deterministics.

use super::layout::{Role, Target};
use super::problem::MmmProblem;
use super::scratch::{ScratchParts, SCRATCH};
use super::special::{digamma, lgamma, LN_2PI};
use super::util::{axpy, bad, dot_centred, dot_f, fold8, sum8};
use crate::error::KResult;
use crate::kernels::fused::{media_fwd_cols, media_vjp_cols, MediaGrads};
use crate::kernels::Dims;

/// `eval_body::<true>` compiled with the given target features (the AVX2 and
/// AVX-512 builds of the whole log-density, chosen at run time by `eval`).
macro_rules! eval_with_features {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            &self,
            x: &[f64],
            grad: Option<&mut [f64]>,
            expand: Option<&mut [f64]>,
            buf: &mut [f64],
        ) -> KResult<f64> {
            self.eval_body::<true>(x, grad, expand, buf)
        }
    };
}

impl MmmProblem {
    /// Log-density and gradient at unconstrained `x`. Returns the log-density;
    /// non-finite values are returned as they are (the caller reports them).
    pub fn logp_grad(&self, x: &[f64], grad: &mut [f64]) -> KResult<f64> {
        crate::error::check_len("x", x, self.n_dim)?;
        crate::error::check_len("grad", grad, self.n_dim)?;
        SCRATCH.with(|cell| {
            let mut sc = cell.borrow_mut();
            let need = self.scratch_len();
            if sc.buf.len() < need {
                sc.buf.resize(need, 0.0);
            }
            self.eval(x, Some(grad), None, &mut sc.buf[..need])
        })
    }

    /// Constrained values of every block followed by the deterministics
    /// (see [`MmmProblem::deterministics`]).
    pub fn expand(&self, x: &[f64], out: &mut [f64]) -> KResult<()> {
        crate::error::check_len("x", x, self.n_dim)?;
        crate::error::check_len("out", out, self.n_expanded())?;
        let mut buf = vec![0.0; self.scratch_len()];
        self.eval(x, None, Some(out), &mut buf)?;
        Ok(())
    }

    /// Per-group values `(G, C)` of a media parameter and, when pooled, their
    /// derivative with respect to the transform's argument.
    fn group_values(
        &self,
        tg: Target,
        x: &[f64],
        vals: &[f64],
        dst: &mut [f64],
        ddst: &mut [f64],
    ) -> KResult<()> {
        let (g, c) = (self.s.g, self.s.c);
        let (off, b) = self
            .target_block(tg)
            .ok_or_else(|| bad("media parameter block missing"))?;
        match self.pooled(tg) {
            Some(pool) => {
                let (sd, zo) = (vals[pool.sd], pool.per_group);
                for gi in 0..g {
                    for ch in 0..c {
                        let lo = b.lower.get(ch).copied().unwrap_or(0.0);
                        let hi = b.upper.get(ch).copied().unwrap_or(1.0);
                        let i = gi * c + ch;
                        let u = if pool.centred {
                            vals[zo + i]
                        } else {
                            x[off + ch] + sd * vals[zo + i]
                        };
                        let (v, _, dv, _) = b.transform.apply(u, lo, hi);
                        dst[i] = v;
                        ddst[i] = dv;
                    }
                }
            }
            None => {
                for gi in 0..g {
                    dst[gi * c..(gi + 1) * c].copy_from_slice(&vals[off..off + c]);
                }
            }
        }
        Ok(())
    }

    /// Sends the gradient with respect to per-group values `(G, C)` to the
    /// blocks: the global parameter (through its transform when pooled, straight
    /// to the unconstrained gradient `graw`), the pool's sd and z.
    #[allow(clippy::too_many_arguments)]
    fn group_grads(
        &self,
        tg: Target,
        gw: &[f64],
        dw: &[f64],
        vals: &[f64],
        gv: &mut [f64],
        graw: &mut [f64],
    ) -> KResult<()> {
        let (g, c) = (self.s.g, self.s.c);
        let (off, _) = self
            .target_block(tg)
            .ok_or_else(|| bad("media parameter block missing"))?;
        match self.pooled(tg) {
            Some(pool) if pool.centred => {
                let wo = pool.per_group;
                for (i, (gwi, dwi)) in gw.iter().zip(dw).enumerate() {
                    gv[wo + i] += gwi * dwi;
                }
            }
            Some(pool) => {
                let (sdo, zo) = (pool.sd, pool.per_group);
                let sd = vals[sdo];
                let mut gsd = 0.0;
                for gi in 0..g {
                    for ch in 0..c {
                        let i = gi * c + ch;
                        let d = gw[i] * dw[i];
                        graw[off + ch] += d;
                        gsd += d * vals[zo + i];
                        gv[zo + i] += d * sd;
                    }
                }
                gv[sdo] += gsd;
            }
            None => {
                for row in gw.chunks_exact(c) {
                    for (gvc, gwc) in gv[off..off + c].iter_mut().zip(row) {
                        *gvc += gwc;
                    }
                }
            }
        }
        Ok(())
    }

    /// The centred pools' density, `w[g, c] ~ Normal(u_c, sd)` without its constant (the w
    /// block's), and its gradient: w's and sd's into `gv` (value space), `u_c`'s into `graw`.
    fn centred_pools(
        &self,
        x: &[f64],
        vals: &[f64],
        gv: &mut [f64],
        graw: Option<&mut [f64]>,
    ) -> f64 {
        let (g, c) = (self.s.g, self.s.c);
        let mut lp = 0.0;
        let mut graw = graw;
        for tg in Target::ALL {
            let Some(pool) = self.pooled(tg).filter(|p| p.centred) else {
                continue;
            };
            let Some((off, _)) = self.target_block(tg) else {
                continue;
            };
            let (sd, wo) = (vals[pool.sd], pool.per_group);
            let (inv, ln_sd) = (1.0 / sd, sd.ln());
            let mut gsd = 0.0;
            for gi in 0..g {
                for ch in 0..c {
                    let i = wo + gi * c + ch;
                    let r = (vals[i] - x[off + ch]) * inv;
                    lp -= 0.5 * r * r + ln_sd;
                    gv[i] -= r * inv;
                    if let Some(gr) = graw.as_deref_mut() {
                        gr[off + ch] += r * inv;
                    }
                    gsd += (r * r - 1.0) * inv;
                }
            }
            gv[pool.sd] += gsd;
        }
        lp
    }

    /// [`Self::eval_body`] compiled for the widest SIMD level the CPU has
    /// (chosen at run time, as the kernels do): the whole log-density, not only
    /// the saturation loops, then runs on AVX2 or AVX-512 vectors.
    fn eval(
        &self,
        x: &[f64],
        grad: Option<&mut [f64]>,
        expand: Option<&mut [f64]>,
        buf: &mut [f64],
    ) -> KResult<f64> {
        #[cfg(target_arch = "x86_64")]
        {
            let level = crate::kernels::simd::level();
            // SAFETY: `level()` checked that the CPU has the enabled features.
            if level >= 2 {
                return unsafe { self.eval_avx512(x, grad, expand, buf) };
            }
            if level == 1 {
                return unsafe { self.eval_avx2(x, grad, expand, buf) };
            }
        }
        self.eval_body::<false>(x, grad, expand, buf)
    }

    eval_with_features!(eval_avx512, "avx512f,avx512dq,avx512vl,avx2,fma");
    eval_with_features!(eval_avx2, "avx2,fma");

    /// `F`: fused multiply-adds (the AVX2 and AVX-512 builds).
    #[allow(clippy::too_many_lines)]
    #[inline(always)]
    fn eval_body<const F: bool>(
        &self,
        x: &[f64],
        grad: Option<&mut [f64]>,
        expand: Option<&mut [f64]>,
        buf: &mut [f64],
    ) -> KResult<f64> {
        let s = &self.s;
        let (g, t, c, f, k) = (s.g, s.t, s.c, s.f, s.k);
        let n = self.n_dim;
        let gc = g * c;
        let gtc = g * t * c;
        // The scratch buffer's parts (laid out in scratch.rs).
        let ScratchParts {
            vals,
            dvdu,
            gv,
            sat,
            cache,
            gsat,
            spare,
            mu,
            r,
            kp,
            dkp,
            amp,
            damp,
            beta,
            msat,
            gb,
            gkern,
            gamp,
            offset,
            lkp,
            lgk,
            ly,
            lcache,
            lg,
            lgb,
            lm,
            lwl,
            lsat,
            drift,
            mult,
            rawm,
            gdrift,
            gmult,
            tw,
        } = self.scratch_sizes().carve(buf);
        // Lift tests: 2N columns of `steady` periods; with level lifts (log target) sum_t w L
        // per test and the direct gradient w.r.t. sat of the channel's own term in L.
        let lf = &self.data.lift;
        let nl = lf.len();
        let (nl2, st) = (2 * nl, lf.steady);
        let level_lift = !lf.weights.is_empty();
        // Time-varying parts, each with `rows[p]` GPs (1 shared, or one per group); in `tw`
        // per part w (rows, m) then q = a / N (B, m), one per basis, from `tw_off[p]`.
        let rows = [s.tvp_rows(0), s.tvp_rows(1)];
        // The GP row of group `gi` in part `p`.
        let row = |p: usize, gi: usize| if rows[p] == 1 { 0 } else { gi };
        let tw_off = self.tvp_weight_offsets();

        // 1. Transforms and priors.
        let mut lp = 0.0;
        gv.fill(0.0);
        let want_grad = grad.is_some();
        let mut gbuf = grad;
        for (b, &off) in self.blocks.iter().zip(&self.offsets) {
            for i in 0..b.size {
                let (term, v, dv, gu) = b.prior_term(i, x[off + i]);
                lp += term;
                vals[off + i] = v;
                dvdu[off + i] = dv;
                if let Some(gr) = gbuf.as_deref_mut() {
                    gr[off + i] = gu;
                }
            }
        }
        lp += self.centred_pools(x, vals, gv, gbuf.as_deref_mut());
        let get = |role: Role| self.block_of(role);

        // 1b. Time-varying parts: f = phi @ w per GP row (drift; the media multiplier is exp(f)).
        for p in 0..2 {
            let Some(d) = &self.data.tvp[p] else { continue };
            let m = d.m;
            let ls = vals[get(Role::TvpLs(p)).ok_or_else(|| bad("tvp ls"))?.0];
            let eta = vals[get(Role::TvpEta(p)).ok_or_else(|| bad("tvp eta"))?.0];
            let zo = get(Role::TvpZ(p)).ok_or_else(|| bad("tvp z"))?.0;
            let (w, q) = tw[tw_off[p]..tw_off[p + 1]].split_at_mut(rows[p] * m);
            for (qb, (om, cm)) in q
                .chunks_exact_mut(m)
                .zip(d.omega.chunks_exact(m).zip(d.col_ms.chunks_exact(m)))
            {
                let mut nn = 0.0;
                for j in 0..m {
                    let a = 1.0 / (3.0 + ls * ls * om[j] * om[j]);
                    qb[j] = a;
                    nn += cm[j] * a * a;
                }
                let nn = nn.sqrt();
                qb.iter_mut().for_each(|v| *v /= nn);
            }
            for (r, wr) in w.chunks_exact_mut(m).enumerate() {
                let qb = &q[d.basis_of(r) * m..][..m];
                for j in 0..m {
                    wr[j] = eta * qb[j] * vals[zo + r * m + j];
                }
            }
            let dst: &mut [f64] = if p == 0 { &mut *drift } else { &mut *mult };
            for (r, (fr, wr)) in dst.chunks_exact_mut(t).zip(w.chunks_exact(m)).enumerate() {
                let phi = &d.phi[d.basis_of(r) * t * m..][..t * m];
                for (ti, v) in fr.iter_mut().enumerate() {
                    *v = dot_f::<F>(&phi[ti * m..(ti + 1) * m], wr);
                }
            }
            if p == 1 {
                dst.iter_mut().for_each(|v| *v = v.exp());
            }
        }

        // 2. Kernel parameters per (group, channel).
        let n_a = s.media.adstock.n_params();
        let n_s = s.media.saturation.n_params();
        {
            let (kpa, kps) = kp.split_at_mut(2 * gc);
            let (dkpa, dkps) = dkp.split_at_mut(2 * gc);
            for j in 0..n_a {
                let dst = &mut kpa[j * gc..(j + 1) * gc];
                let dd = &mut dkpa[j * gc..(j + 1) * gc];
                self.group_values(Target::Adstock(j), x, vals, dst, dd)?;
            }
            for j in 0..n_s {
                let dst = &mut kps[j * gc..(j + 1) * gc];
                let dd = &mut dkps[j * gc..(j + 1) * gc];
                if let Some(v) = s.fixed_saturation[j] {
                    dst.fill(v);
                    continue;
                }
                self.group_values(Target::Saturation(j), x, vals, dst, dd)?;
                if s.relative == Some(j) {
                    for (d, sc) in dst.iter_mut().zip(&self.data.kappa_scale) {
                        *d *= sc;
                    }
                }
            }
        }
        self.group_values(Target::Amplitude, x, vals, amp, damp)?;
        let (a0, rest) = kp.split_at(gc);
        let (a1, rest) = rest.split_at(gc);
        let (s0, s1) = rest.split_at(gc);
        let a1s: &[f64] = if n_a == 2 { a1 } else { &[] };
        let s1s: &[f64] = if n_s == 2 { s1 } else { &[] };

        // 3. Media, all groups in one call (a large panel's in chunks of groups on the idle
        // cores); sat is (G, C, T) throughout.
        let d = Dims::new(g, t, c);
        let threads = self.media_threads();
        if threads > 1 {
            self.media_fwd_groups(threads, a0, a1s, s0, s1s, sat, cache)?;
        } else {
            media_fwd_cols::<F>(
                &s.media,
                d,
                &self.spend_cols,
                self.pad,
                a0,
                a1s,
                s0,
                s1s,
                sat,
                cache,
            )?;
        }
        // Means over each group's window (the fitted period its amplitudes are defined on).
        for (i, (m, col)) in msat.iter_mut().zip(sat.chunks_exact(t)).enumerate() {
            let (a, b) = self.win[i / c];
            *m = sum8(&col[a..b]) / (b - a) as f64;
        }
        if s.direct_beta {
            beta.copy_from_slice(amp);
        } else {
            for i in 0..g * c {
                // A channel absent from a group contributes nothing there (its sat is 0).
                beta[i] = if self.absent[i] {
                    0.0
                } else {
                    amp[i] * self.amp_k[i] / msat[i]
                };
            }
        }

        // 3b. Lift tests: the steady-state media transform at x0 and x1 of each test, with the
        // kernel parameters of its (group, channel).
        let ld = Dims::new(1, st, nl2);
        if nl > 0 {
            for j in 0..nl2 {
                let k = lf.cell(j % nl, c);
                for q in 0..4 {
                    lkp[q * nl2 + j] = kp[q * gc + k];
                }
            }
            let (la0, rest) = lkp.split_at(nl2);
            let (la1, rest) = rest.split_at(nl2);
            let (ls0, ls1) = rest.split_at(nl2);
            let la1s: &[f64] = if n_a == 2 { la1 } else { &[] };
            let ls1s: &[f64] = if n_s == 2 { &ls1[..nl2] } else { &[] };
            media_fwd_cols::<F>(
                &s.media,
                ld,
                &self.lift_cols,
                self.pad,
                la0,
                la1s,
                ls0,
                ls1s,
                ly,
                lcache,
            )?;
        }

        // 4. Mean function, per group.
        let centre = s.intercept;
        let lvl = get(Role::Level).map(|(o, _)| o);
        let trd = get(Role::Trend).map(|(o, _)| o);
        let gfo = get(Role::GammaFourier).map(|(o, _)| o);
        let gco = get(Role::GammaControl).map(|(o, _)| o);
        for gi in 0..g {
            let mu_g = &mut mu[gi * t..(gi + 1) * t];
            mu_g.fill(0.0);
            for ch in 0..c {
                let b = beta[gi * c + ch];
                let col = &sat[(gi * c + ch) * t..(gi * c + ch + 1) * t];
                for (m, v) in mu_g.iter_mut().zip(col) {
                    *m += b * v;
                }
            }
            if !mult.is_empty() {
                let r1 = row(1, gi);
                rawm[gi * t..(gi + 1) * t].copy_from_slice(mu_g);
                for (m, k) in mu_g.iter_mut().zip(&mult[r1 * t..(r1 + 1) * t]) {
                    *m *= k;
                }
            }
            let (wa, wb) = self.win[gi];
            let media_mean = sum8(&mu_g[wa..wb]) / (wb - wa) as f64;
            let level = lvl.map(|o| vals[o + gi]).unwrap_or(0.0);
            let trend = trd.map(|o| vals[o + gi]).unwrap_or(0.0);
            offset[gi] = if centre {
                trend * self.tbar[gi] + media_mean
            } else {
                0.0
            };
            let tt = &self.data.trend_t[gi * t..(gi + 1) * t];
            let base = level - offset[gi];
            for (m, tv) in mu_g.iter_mut().zip(tt) {
                *m += base + trend * tv;
            }
            if let Some(o) = gfo {
                let cols = &self.fourier_cols[gi * f * t..(gi + 1) * f * t];
                for (col, gg) in cols
                    .chunks_exact(t)
                    .zip(&vals[o + gi * f..o + (gi + 1) * f])
                {
                    axpy::<F>(mu_g, *gg, col);
                }
            }
            if let Some(o) = gco {
                let cols = &self.controls_cols[gi * k * t..(gi + 1) * k * t];
                for (col, gg) in cols
                    .chunks_exact(t)
                    .zip(&vals[o + gi * k..o + (gi + 1) * k])
                {
                    axpy::<F>(mu_g, *gg, col);
                }
            }
            if !drift.is_empty() {
                let r0 = row(0, gi);
                axpy::<F>(mu_g, 1.0, &drift[r0 * t..(r0 + 1) * t]);
            }
        }

        // 4b. The modelled lift of every test (after mu: a level lift reads the level).
        let (soff, _) = get(Role::Sigma).ok_or_else(|| bad("sigma block"))?;
        for i in 0..nl {
            let k = lf.cell(i, c);
            let (f0, f1) = (ly[i * st + st - 1], ly[(nl + i) * st + st - 1]);
            if level_lift {
                let gi = k / c;
                let half_var = 0.5 * vals[soff + gi] * vals[soff + gi];
                let (mu_g, sat_k) = (&mu[gi * t..(gi + 1) * t], &sat[k * t..(k + 1) * t]);
                let w = &lf.weights[i * t..(i + 1) * t];
                let mut acc = 0.0;
                for ti in 0..t {
                    if w[ti] != 0.0 {
                        acc += w[ti] * (mu_g[ti] - beta[k] * sat_k[ti] + half_var).exp();
                    }
                }
                lwl[i] = acc;
                lm[i] = lf.periods[i] * acc * ((beta[k] * f1).exp() - (beta[k] * f0).exp());
            } else {
                lm[i] = lf.periods[i] * beta[k] * (f1 - f0);
            }
        }

        if let Some(out) = expand {
            out[..n].copy_from_slice(vals);
            let mut o = n;
            if s.grouped {
                for tg in Target::ALL {
                    if self.pooled(tg).is_none() {
                        continue;
                    }
                    let src: &[f64] = match tg {
                        Target::Adstock(j) => &kp[j * gc..(j + 1) * gc],
                        Target::Saturation(j) => &kp[(2 + j) * gc..(3 + j) * gc],
                        Target::Amplitude => amp,
                    };
                    out[o..o + gc].copy_from_slice(src);
                    if let Target::Saturation(j) = tg {
                        if s.relative == Some(j) {
                            for (v, sc) in out[o..o + gc].iter_mut().zip(&self.data.kappa_scale) {
                                *v /= sc;
                            }
                        }
                    }
                    o += gc;
                }
            }
            if !s.direct_beta {
                out[o..o + gc].copy_from_slice(beta);
                o += gc;
            }
            for gi in 0..g {
                for ti in 0..t {
                    let k = if mult.is_empty() {
                        1.0
                    } else {
                        mult[row(1, gi) * t + ti]
                    };
                    for ch in 0..c {
                        out[o + (gi * t + ti) * c + ch] =
                            sat[(gi * c + ch) * t + ti] * beta[gi * c + ch] * k;
                    }
                }
            }
            o += gtc;
            out[o..o + mult.len()].copy_from_slice(mult);
            o += mult.len();
            if s.intercept {
                let lo = lvl.ok_or_else(|| bad("level block"))?;
                for gi in 0..g {
                    out[o + gi] = vals[lo + gi] - offset[gi];
                }
                o += g;
            }
            if !drift.is_empty() {
                for gi in 0..g {
                    let base = if s.intercept {
                        vals[lvl.ok_or_else(|| bad("level block"))? + gi] - offset[gi]
                    } else {
                        0.0
                    };
                    let r0 = row(0, gi);
                    for ti in 0..t {
                        out[o + gi * t + ti] = base + drift[r0 * t + ti];
                    }
                }
                o += g * t;
            }
            out[o..o + g * t].copy_from_slice(mu);
            o += g * t;
            out[o..o + nl].copy_from_slice(lm);
            return Ok(0.0);
        }

        // 5. Likelihood, per group (sigma per group, nu shared).
        if s.student_t {
            let (noff, _) = get(Role::Nu).ok_or_else(|| bad("nu block"))?;
            let nu = vals[noff];
            let mut gnu = 0.0;
            let dc0 = 0.5 * digamma((nu + 1.0) / 2.0) - 0.5 * digamma(nu / 2.0) - 0.5 / nu;
            let c00 = lgamma((nu + 1.0) / 2.0)
                - lgamma(nu / 2.0)
                - 0.5 * (nu * std::f64::consts::PI).ln();
            for gi in 0..g {
                let sigma = vals[soff + gi];
                let c0 = c00 - sigma.ln();
                let mut gsigma = 0.0;
                let (a, b) = self.win[gi];
                r[gi * t..gi * t + a].fill(0.0);
                r[gi * t + b..(gi + 1) * t].fill(0.0);
                for ti in gi * t + a..gi * t + b {
                    let z = (self.data.y[ti] - mu[ti]) / sigma;
                    let q = z * z / nu;
                    lp += c0 - (nu + 1.0) / 2.0 * q.ln_1p();
                    let w = (nu + 1.0) / (nu + z * z);
                    r[ti] = w * z / sigma;
                    gsigma += -1.0 / sigma + w * z * z / sigma;
                    gnu += dc0 - 0.5 * q.ln_1p() + (nu + 1.0) / 2.0 * q / (nu * (1.0 + q));
                }
                gv[soff + gi] += gsigma;
            }
            gv[noff] += gnu;
        } else {
            for gi in 0..g {
                let sigma = vals[soff + gi];
                let inv = 1.0 / sigma;
                // Only the group's window is observed; r is 0 outside it.
                let (a, b) = self.win[gi];
                r[gi * t..gi * t + a].fill(0.0);
                r[gi * t + b..(gi + 1) * t].fill(0.0);
                let rows = gi * t + a..gi * t + b;
                let n_obs = b - a;
                // Sum of squares in eight independent register accumulators: one
                // running sum would be a 156-long chain of dependent additions.
                let mut acc = [0.0f64; 8];
                let (rr, yy, mm) = (&mut r[rows.clone()], &self.data.y[rows.clone()], &mu[rows]);
                let nb = n_obs - n_obs % 8;
                for ((rc, yc), mc) in rr[..nb]
                    .chunks_exact_mut(8)
                    .zip(yy[..nb].chunks_exact(8))
                    .zip(mm[..nb].chunks_exact(8))
                {
                    for l in 0..8 {
                        let z = (yc[l] - mc[l]) * inv;
                        acc[l] += z * z;
                        rc[l] = z * inv;
                    }
                }
                let mut ss = fold8(&acc);
                for ((rv, yv), mv) in rr[nb..].iter_mut().zip(&yy[nb..]).zip(&mm[nb..]) {
                    let z = (yv - mv) * inv;
                    ss += z * z;
                    *rv = z * inv;
                }
                let tn = n_obs as f64;
                lp += tn * (-sigma.ln() - 0.5 * LN_2PI) - 0.5 * ss;
                gv[soff + gi] += (ss - tn) * inv;
            }
        }
        lgb.fill(0.0);
        lsat.fill(0.0);
        for i in 0..nl {
            let m = lm[i];
            let se = lf.se[i];
            let z = (lf.delta[i] - m) / se;
            lp += -0.5 * z * z - se.ln() - 0.5 * LN_2PI;
            // d lp / d m, then to beta[c] and to the two steady-state values.
            let q = z / se;
            let k = lf.cell(i, c);
            let (f0, f1) = (ly[i * st + st - 1], ly[(nl + i) * st + st - 1]);
            lg[i * st..(i + 1) * st].fill(0.0);
            lg[(nl + i) * st..(nl + i + 1) * st].fill(0.0);
            if level_lift {
                // m = P * S * G, S = sum_t w L, L = exp(mu - beta sat + sigma^2 / 2),
                // G = exp(beta f1) - exp(beta f0). dm/dmu_t = P G w L (into r, which flows
                // back through the mean function), dm/dsat_t = -beta P G w L (direct),
                // dm/dsigma = sigma m, dm/dbeta = P G sum_t w L (-sat_t) + P S (f1 e1 - f0 e0).
                let gi = k / c;
                let (p, sum_wl) = (lf.periods[i], lwl[i]);
                let (e0, e1) = ((beta[k] * f0).exp(), (beta[k] * f1).exp());
                let gain = e1 - e0;
                let half_var = 0.5 * vals[soff + gi] * vals[soff + gi];
                let w = &lf.weights[i * t..(i + 1) * t];
                let mut d_beta_level = 0.0;
                for ti in 0..t {
                    if w[ti] == 0.0 {
                        continue;
                    }
                    let s_kt = sat[k * t + ti];
                    let dl =
                        q * p * gain * w[ti] * (mu[gi * t + ti] - beta[k] * s_kt + half_var).exp();
                    r[gi * t + ti] += dl;
                    lsat[k * t + ti] -= dl * beta[k];
                    d_beta_level -= dl * s_kt;
                }
                gv[soff + gi] += q * m * vals[soff + gi];
                lgb[k] += d_beta_level + q * p * sum_wl * (f1 * e1 - f0 * e0);
                lg[i * st + st - 1] = -q * p * sum_wl * beta[k] * e0;
                lg[(nl + i) * st + st - 1] = q * p * sum_wl * beta[k] * e1;
            } else {
                lgb[k] += q * lf.periods[i] * (f1 - f0);
                let gy = q * lf.periods[i] * beta[k];
                lg[i * st + st - 1] = -gy;
                lg[(nl + i) * st + st - 1] = gy;
            }
        }
        let Some(graw) = gbuf else {
            return Ok(lp);
        };
        debug_assert!(want_grad);

        // 6. Backward through the mean function, per group.
        gdrift.fill(0.0);
        gmult.fill(0.0);
        for gi in 0..g {
            let rg = &r[gi * t..(gi + 1) * t];
            let rsum: f64 = sum8(rg);
            if let Some(o) = lvl {
                gv[o + gi] += rsum;
            }
            if let Some(o) = trd {
                let tc_ = if centre { self.tbar[gi] } else { 0.0 };
                gv[o + gi] += dot_centred(rg, &self.data.trend_t[gi * t..(gi + 1) * t], tc_);
            }
            if let Some(o) = gfo {
                let cols = &self.fourier_cols[gi * f * t..(gi + 1) * f * t];
                for (gj, col) in gv[o + gi * f..o + (gi + 1) * f]
                    .iter_mut()
                    .zip(cols.chunks_exact(t))
                {
                    *gj += dot_f::<F>(rg, col);
                }
            }
            if let Some(o) = gco {
                let cols = &self.controls_cols[gi * k * t..(gi + 1) * k * t];
                for (gj, col) in gv[o + gi * k..o + (gi + 1) * k]
                    .iter_mut()
                    .zip(cols.chunks_exact(t))
                {
                    *gj += dot_f::<F>(rg, col);
                }
            }
            // dL/dmedia_t (centring subtracts the mean of media from every mu).
            // The mean is over the group's window, and r is 0 outside it.
            let (wa, wb) = self.win[gi];
            let shift = if centre { rsum / (wb - wa) as f64 } else { 0.0 };
            let gm = &mut spare[gi * t..(gi + 1) * t];
            for (gg, rt) in gm[wa..wb].iter_mut().zip(&rg[wa..wb]) {
                *gg = rt - shift;
            }
            gm[..wa].copy_from_slice(&rg[..wa]);
            gm[wb..].copy_from_slice(&rg[wb..]);
            // Time-varying parts: dL/df = r (the drift is not centred); media = raw * exp(g):
            // dL/dg = dL/dmedia * media, and dL/draw = dL/dmedia * mult. A GP shared by the
            // groups gathers all of theirs.
            if !drift.is_empty() {
                let r0 = row(0, gi);
                for (gd, rt) in gdrift[r0 * t..(r0 + 1) * t].iter_mut().zip(rg) {
                    *gd += rt;
                }
            }
            if !mult.is_empty() {
                let r1 = row(1, gi);
                let (mk, raw) = (&mult[r1 * t..(r1 + 1) * t], &rawm[gi * t..(gi + 1) * t]);
                let gmk = &mut gmult[r1 * t..(r1 + 1) * t];
                for ti in 0..t {
                    gmk[ti] += gm[ti] * raw[ti] * mk[ti];
                    gm[ti] *= mk[ti];
                }
            }
            for ch in 0..c {
                let i = gi * c + ch;
                let col = &sat[i * t..(i + 1) * t];
                gb[i] = dot_f::<F>(gm, col) + if nl > 0 { lgb[i] } else { 0.0 };
                // beta = amp * k / msat: d/damp = k / msat; d/dmsat = -beta / msat, and msat
                // is a mean over time, so every sat[g, c, t] gets the same extra term `per`.
                let per = if s.direct_beta {
                    gamp[i] = gb[i];
                    0.0
                } else if self.absent[i] {
                    gamp[i] = 0.0;
                    0.0
                } else {
                    gamp[i] = gb[i] * self.amp_k[i] / msat[i];
                    -gb[i] * beta[i] / msat[i] / (wb - wa) as f64
                };
                let b = beta[i];
                // The mean's term reaches the window's periods only.
                let gsi = &mut gsat[i * t..(i + 1) * t];
                for (gs, gg) in gsi[wa..wb].iter_mut().zip(&gm[wa..wb]) {
                    *gs = gg * b + per;
                }
                for seg in [0..wa, wb..t] {
                    for (gs, gg) in gsi[seg.clone()].iter_mut().zip(&gm[seg]) {
                        *gs = gg * b;
                    }
                }
                if level_lift {
                    for (gs, ls) in gsat[i * t..(i + 1) * t]
                        .iter_mut()
                        .zip(&lsat[i * t..(i + 1) * t])
                    {
                        *gs += ls;
                    }
                }
            }
        }
        self.group_grads(Target::Amplitude, gamp, damp, vals, gv, graw)?;
        for p in 0..2 {
            let Some(dt) = &self.data.tvp[p] else {
                continue;
            };
            let m = dt.m;
            let gf: &[f64] = if p == 0 { gdrift } else { gmult };
            let (lso, eo, zo) = (
                get(Role::TvpLs(p)).ok_or_else(|| bad("tvp ls"))?.0,
                get(Role::TvpEta(p)).ok_or_else(|| bad("tvp eta"))?.0,
                get(Role::TvpZ(p)).ok_or_else(|| bad("tvp z"))?.0,
            );
            let (ls, eta) = (vals[lso], vals[eo]);
            // The forward pass's w (no longer needed) holds dL/dw = phi^T df per GP row,
            // accumulated over contiguous rows of phi.
            let (gw, q) = tw[tw_off[p]..tw_off[p + 1]].split_at_mut(rows[p] * m);
            for (r, (gwr, gfr)) in gw.chunks_exact_mut(m).zip(gf.chunks_exact(t)).enumerate() {
                let phi = &dt.phi[dt.basis_of(r) * t * m..][..t * m];
                gwr.fill(0.0);
                for (ti, &d) in gfr.iter().enumerate() {
                    axpy::<F>(gwr, d, &phi[ti * m..(ti + 1) * m]);
                }
            }
            // q_j = a_j / N, a_j = 1 / (3 + ls^2 w_j^2), N = sqrt(sum_k col_ms_k a_k^2):
            // dq_j/dls = (da_j - q_j * dN) / N with da_j = -2 ls w_j^2 a_j^2, dN = sum_k col_ms_k a_k da_k / N.
            let nb = dt.bases();
            let (mut gls, mut geta) = (0.0, 0.0);
            for b in 0..nb {
                let (om, cm, qb) = (
                    &dt.omega[b * m..][..m],
                    &dt.col_ms[b * m..][..m],
                    &q[b * m..][..m],
                );
                let mut nn = 0.0;
                let mut dn = 0.0;
                for j in 0..m {
                    let a = 1.0 / (3.0 + ls * ls * om[j] * om[j]);
                    let da = -2.0 * ls * om[j] * om[j] * a * a;
                    nn += cm[j] * a * a;
                    dn += cm[j] * a * da;
                }
                let nn = nn.sqrt();
                let dn = dn / nn;
                // The GP rows on basis b: every row (one shared basis) or row b.
                let served = if nb == 1 { 0..rows[p] } else { b..b + 1 };
                for j in 0..m {
                    let a = 1.0 / (3.0 + ls * ls * om[j] * om[j]);
                    let da = -2.0 * ls * om[j] * om[j] * a * a;
                    let dq = (da - qb[j] * dn) / nn;
                    for r in served.clone() {
                        let (gwj, z) = (gw[r * m + j], vals[zo + r * m + j]);
                        gv[zo + r * m + j] += gwj * eta * qb[j];
                        geta += gwj * qb[j] * z;
                        gls += gwj * eta * z * dq;
                    }
                }
            }
            gv[eo] += geta;
            gv[lso] += gls;
        }

        // 7. Backward through the media kernel, all groups.
        {
            let (ga0, rest) = gkern.split_at_mut(gc);
            let (ga1, rest) = rest.split_at_mut(gc);
            let (gs0, gs1) = rest.split_at_mut(gc);
            let out = MediaGrads {
                ga0: &mut *ga0,
                ga1: if n_a == 2 { &mut *ga1 } else { &mut [] },
                gs0: &mut *gs0,
                gs1: if n_s == 2 { &mut *gs1 } else { &mut [] },
                gx: &mut [],
            };
            if threads > 1 {
                self.media_vjp_groups(threads, a0, a1s, cache, gsat, out)?;
            } else {
                media_vjp_cols::<F>(
                    &s.media,
                    d,
                    &self.spend_cols,
                    self.pad,
                    a0,
                    a1s,
                    cache,
                    gsat,
                    out,
                )?;
            }
        }
        if nl > 0 {
            let (lga0, rest) = lgk.split_at_mut(nl2);
            let (lga1, rest) = rest.split_at_mut(nl2);
            let (lgs0, lgs1) = rest.split_at_mut(nl2);
            let lout = MediaGrads {
                ga0: &mut *lga0,
                ga1: if n_a == 2 { &mut *lga1 } else { &mut [] },
                gs0: &mut *lgs0,
                gs1: if n_s == 2 { &mut lgs1[..nl2] } else { &mut [] },
                gx: &mut [],
            };
            let la0 = &lkp[..nl2];
            let la1s: &[f64] = if n_a == 2 { &lkp[nl2..2 * nl2] } else { &[] };
            media_vjp_cols::<F>(
                &s.media,
                ld,
                &self.lift_cols,
                self.pad,
                la0,
                la1s,
                lcache,
                lg,
                lout,
            )?;
            for j in 0..nl2 {
                let k = lf.cell(j % nl, c);
                for q in 0..4 {
                    let used = if q < 2 { q < n_a } else { q - 2 < n_s };
                    if used {
                        gkern[q * gc + k] += lgk[q * nl2 + j];
                    }
                }
            }
        }
        for j in 0..n_a {
            self.group_grads(
                Target::Adstock(j),
                &gkern[j * gc..(j + 1) * gc],
                &dkp[j * gc..(j + 1) * gc],
                vals,
                gv,
                graw,
            )?;
        }
        for j in 0..n_s {
            if s.fixed_saturation[j].is_some() {
                continue;
            }
            let gk = &mut gkern[(2 + j) * gc..(3 + j) * gc];
            if s.relative == Some(j) {
                for (gg, sc) in gk.iter_mut().zip(&self.data.kappa_scale) {
                    *gg *= sc;
                }
            }
            self.group_grads(
                Target::Saturation(j),
                &gkern[(2 + j) * gc..(3 + j) * gc],
                &dkp[(2 + j) * gc..(3 + j) * gc],
                vals,
                gv,
                graw,
            )?;
        }
        for i in 0..n {
            graw[i] += gv[i] * dvdu[i];
        }
        Ok(lp)
    }
}
