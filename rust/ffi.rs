//! C ABI for numba-compiled callers (PyTensor Ops inside nutpie's log-density).
//!
//! Every function takes raw pointers plus `(B, T, C)` as int64 and returns an
//! int32 status: 0 ok, 1 bad argument (null pointer, negative size, bad
//! option), 2 internal error (a caught panic; never expected). Outputs are
//! allocated by the caller. Parameter values are not domain-checked here: on the
//! sampling path an out-of-domain value yields NaN, which the sampler rejects.
//! Symbol names carry the kernel version so a stale numba cache can never bind
//! to different code.

use crate::kernels::adstock::{adstock_fwd, adstock_vjp, Adstock, AdstockKind};
use crate::kernels::fused::{media_fwd, media_vjp, Media, MediaGrads};
use crate::kernels::saturation::{saturation_fwd, saturation_vjp, SaturationKind};
use crate::kernels::Dims;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Version of the kernels' numerical contract; part of every symbol name.
pub const KERNEL_VERSION: u32 = 1;

const OK: i32 = 0;
const BAD: i32 = 1;
const PANIC: i32 = 2;

fn dims(b: i64, t: i64, c: i64) -> Option<Dims> {
    if b < 0 || t < 0 || c < 0 {
        return None;
    }
    Some(Dims::new(b as usize, t as usize, c as usize))
}

/// Borrows `n` doubles; a null pointer is allowed only for `n == 0`.
unsafe fn rd<'a>(p: *const f64, n: usize) -> Option<&'a [f64]> {
    if n == 0 {
        Some(&[])
    } else if p.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(p, n))
    }
}

unsafe fn wr<'a>(p: *mut f64, n: usize) -> Option<&'a mut [f64]> {
    if n == 0 {
        Some(&mut [])
    } else if p.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts_mut(p, n))
    }
}

fn guard<F: FnOnce() -> Option<i32>>(f: F) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Some(code)) => code,
        Ok(None) => BAD,
        Err(_) => PANIC,
    }
}

fn adstock_spec(kind: AdstockKind, l_max: i64, normalize: i32) -> Option<Adstock> {
    if l_max < 0 {
        return None;
    }
    Adstock::new(kind, l_max as usize, normalize != 0).ok()
}

fn weibull_kind(kind: i32) -> Option<AdstockKind> {
    match kind {
        0 => Some(AdstockKind::WeibullPdf),
        1 => Some(AdstockKind::WeibullCdf),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn adstock_fwd_raw(
    spec: Option<Adstock>,
    x: *const f64,
    p0: *const f64,
    p1: *const f64,
    b: i64,
    t: i64,
    c: i64,
    y: *mut f64,
) -> i32 {
    guard(|| {
        let spec = spec?;
        let d = dims(b, t, c)?;
        let np1 = if spec.n_params() == 2 {
            d.n_params()
        } else {
            0
        };
        let r = adstock_fwd(
            &spec,
            d,
            rd(x, d.len())?,
            rd(p0, d.n_params())?,
            rd(p1, np1)?,
            wr(y, d.len())?,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn adstock_vjp_raw(
    spec: Option<Adstock>,
    x: *const f64,
    p0: *const f64,
    p1: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    gx: *mut f64,
    gp0: *mut f64,
    gp1: *mut f64,
) -> i32 {
    guard(|| {
        let spec = spec?;
        let d = dims(b, t, c)?;
        let np1 = if spec.n_params() == 2 {
            d.n_params()
        } else {
            0
        };
        let r = adstock_vjp(
            &spec,
            d,
            rd(x, d.len())?,
            rd(p0, d.n_params())?,
            rd(p1, np1)?,
            rd(g, d.len())?,
            wr(gx, d.len())?,
            wr(gp0, d.n_params())?,
            wr(gp1, np1)?,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn saturation_fwd_raw(
    kind: SaturationKind,
    x: *const f64,
    p0: *const f64,
    p1: *const f64,
    b: i64,
    t: i64,
    c: i64,
    y: *mut f64,
) -> i32 {
    guard(|| {
        let d = dims(b, t, c)?;
        let np1 = if kind.n_params() == 2 {
            d.n_params()
        } else {
            0
        };
        let r = saturation_fwd(
            kind,
            d,
            rd(x, d.len())?,
            rd(p0, d.n_params())?,
            rd(p1, np1)?,
            wr(y, d.len())?,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn saturation_vjp_raw(
    kind: SaturationKind,
    x: *const f64,
    p0: *const f64,
    p1: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    gx: *mut f64,
    gp0: *mut f64,
    gp1: *mut f64,
) -> i32 {
    guard(|| {
        let d = dims(b, t, c)?;
        let np1 = if kind.n_params() == 2 {
            d.n_params()
        } else {
            0
        };
        let r = saturation_vjp(
            kind,
            d,
            rd(x, d.len())?,
            rd(p0, d.n_params())?,
            rd(p1, np1)?,
            rd(g, d.len())?,
            wr(gx, d.len())?,
            wr(gp0, d.n_params())?,
            wr(gp1, np1)?,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

/// Geometric adstock forward; `l_max = 0` runs the untruncated recursion.
///
/// # Safety
/// Pointers must reference `B*T*C` (x, y) and `B*C` (alpha) valid doubles.
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_geometric_fwd(
    x: *const f64,
    alpha: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    normalize: i32,
    y: *mut f64,
) -> i32 {
    adstock_fwd_raw(
        adstock_spec(AdstockKind::Geometric, l_max, normalize),
        x,
        alpha,
        std::ptr::null(),
        b,
        t,
        c,
        y,
    )
}

/// Geometric adstock VJP: writes gx (B*T*C) and galpha (B*C).
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_geometric_vjp(
    x: *const f64,
    alpha: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    normalize: i32,
    gx: *mut f64,
    galpha: *mut f64,
) -> i32 {
    let spec = adstock_spec(AdstockKind::Geometric, l_max, normalize);
    adstock_vjp_raw(
        spec,
        x,
        alpha,
        std::ptr::null(),
        g,
        b,
        t,
        c,
        gx,
        galpha,
        std::ptr::null_mut(),
    )
}

/// Delayed adstock forward.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_delayed_fwd(
    x: *const f64,
    alpha: *const f64,
    theta: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    normalize: i32,
    y: *mut f64,
) -> i32 {
    adstock_fwd_raw(
        adstock_spec(AdstockKind::Delayed, l_max, normalize),
        x,
        alpha,
        theta,
        b,
        t,
        c,
        y,
    )
}

/// Delayed adstock VJP: writes gx, galpha, gtheta.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_delayed_vjp(
    x: *const f64,
    alpha: *const f64,
    theta: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    normalize: i32,
    gx: *mut f64,
    galpha: *mut f64,
    gtheta: *mut f64,
) -> i32 {
    let spec = adstock_spec(AdstockKind::Delayed, l_max, normalize);
    adstock_vjp_raw(spec, x, alpha, theta, g, b, t, c, gx, galpha, gtheta)
}

/// Weibull adstock forward; `kind` 0 = PDF, 1 = CDF.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_weibull_fwd(
    x: *const f64,
    lam: *const f64,
    k: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    kind: i32,
    normalize: i32,
    y: *mut f64,
) -> i32 {
    let spec = weibull_kind(kind).and_then(|kd| adstock_spec(kd, l_max, normalize));
    adstock_fwd_raw(spec, x, lam, k, b, t, c, y)
}

/// Weibull adstock VJP: writes gx, glam, gk.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_weibull_vjp(
    x: *const f64,
    lam: *const f64,
    k: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    l_max: i64,
    kind: i32,
    normalize: i32,
    gx: *mut f64,
    glam: *mut f64,
    gk: *mut f64,
) -> i32 {
    let spec = weibull_kind(kind).and_then(|kd| adstock_spec(kd, l_max, normalize));
    adstock_vjp_raw(spec, x, lam, k, g, b, t, c, gx, glam, gk)
}

macro_rules! saturation_abi {
    ($fwd:ident, $vjp:ident, $kind:expr, two) => {
        /// Saturation forward (two parameters).
        ///
        /// # Safety
        /// Pointers must reference arrays of the sizes implied by (B, T, C).
        #[no_mangle]
        pub unsafe extern "C" fn $fwd(
            x: *const f64,
            p0: *const f64,
            p1: *const f64,
            b: i64,
            t: i64,
            c: i64,
            y: *mut f64,
        ) -> i32 {
            saturation_fwd_raw($kind, x, p0, p1, b, t, c, y)
        }

        /// Saturation VJP (two parameters): writes gx, gp0, gp1.
        ///
        /// # Safety
        /// Pointers must reference arrays of the sizes implied by (B, T, C).
        #[no_mangle]
        pub unsafe extern "C" fn $vjp(
            x: *const f64,
            p0: *const f64,
            p1: *const f64,
            g: *const f64,
            b: i64,
            t: i64,
            c: i64,
            gx: *mut f64,
            gp0: *mut f64,
            gp1: *mut f64,
        ) -> i32 {
            saturation_vjp_raw($kind, x, p0, p1, g, b, t, c, gx, gp0, gp1)
        }
    };
}

saturation_abi!(
    fastmmm_v1_hill_fwd,
    fastmmm_v1_hill_vjp,
    SaturationKind::Hill,
    two
);
saturation_abi!(
    fastmmm_v1_michaelis_menten_fwd,
    fastmmm_v1_michaelis_menten_vjp,
    SaturationKind::MichaelisMenten,
    two
);
saturation_abi!(
    fastmmm_v1_tanh_fwd,
    fastmmm_v1_tanh_vjp,
    SaturationKind::Tanh,
    two
);

/// Logistic saturation forward.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_logistic_fwd(
    x: *const f64,
    lam: *const f64,
    b: i64,
    t: i64,
    c: i64,
    y: *mut f64,
) -> i32 {
    saturation_fwd_raw(
        SaturationKind::Logistic,
        x,
        lam,
        std::ptr::null(),
        b,
        t,
        c,
        y,
    )
}

/// Logistic saturation VJP: writes gx, glam.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_logistic_vjp(
    x: *const f64,
    lam: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    gx: *mut f64,
    glam: *mut f64,
) -> i32 {
    let null = std::ptr::null_mut();
    saturation_vjp_raw(
        SaturationKind::Logistic,
        x,
        lam,
        std::ptr::null(),
        g,
        b,
        t,
        c,
        gx,
        glam,
        null,
    )
}

/// Adstock kind codes of the fused entry points (`kernels::kinds`).
pub fn adstock_kind_code(code: i32) -> Option<AdstockKind> {
    AdstockKind::from_code(code)
}

/// Saturation kind codes of the fused entry points (`kernels::kinds`).
pub fn saturation_kind_code(code: i32) -> Option<SaturationKind> {
    SaturationKind::from_code(code)
}

fn media_spec(adstock: i32, l_max: i64, normalize: i32, saturation: i32) -> Option<Media> {
    Some(Media {
        adstock: adstock_spec(adstock_kind_code(adstock)?, l_max, normalize)?,
        saturation: saturation_kind_code(saturation)?,
    })
}

/// Fused `saturation(adstock(x))` forward. Kind codes: adstock 0 geometric,
/// 1 delayed, 2 weibull_pdf, 3 weibull_cdf; saturation 0 hill, 1 logistic,
/// 2 michaelis_menten, 3 tanh. Writes y (B*T*C) and cache (4*B*T*C).
/// a1/s1 may be null for one-parameter kinds.
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_media_fwd(
    adstock: i32,
    l_max: i64,
    normalize: i32,
    saturation: i32,
    x: *const f64,
    a0: *const f64,
    a1: *const f64,
    s0: *const f64,
    s1: *const f64,
    b: i64,
    t: i64,
    c: i64,
    y: *mut f64,
    cache: *mut f64,
) -> i32 {
    guard(|| {
        let m = media_spec(adstock, l_max, normalize, saturation)?;
        let d = dims(b, t, c)?;
        let np = d.n_params();
        let na1 = if m.adstock.n_params() == 2 { np } else { 0 };
        let ns1 = if m.saturation.n_params() == 2 { np } else { 0 };
        let r = media_fwd(
            &m,
            d,
            rd(x, d.len())?,
            rd(a0, np)?,
            rd(a1, na1)?,
            rd(s0, np)?,
            rd(s1, ns1)?,
            wr(y, d.len())?,
            wr(cache, 4 * d.len())?,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

/// VJP of the fused transform from its cache: writes ga0, ga1, gs0, gs1 (B*C
/// each; ga1/gs1 may be null for one-parameter kinds) and, when `want_gx` is
/// non-zero, gx (B*T*C).
///
/// # Safety
/// Pointers must reference arrays of the sizes implied by (B, T, C).
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_media_vjp(
    adstock: i32,
    l_max: i64,
    normalize: i32,
    saturation: i32,
    x: *const f64,
    a0: *const f64,
    a1: *const f64,
    cache: *const f64,
    g: *const f64,
    b: i64,
    t: i64,
    c: i64,
    want_gx: i32,
    gx: *mut f64,
    ga0: *mut f64,
    ga1: *mut f64,
    gs0: *mut f64,
    gs1: *mut f64,
) -> i32 {
    guard(|| {
        let m = media_spec(adstock, l_max, normalize, saturation)?;
        let d = dims(b, t, c)?;
        let np = d.n_params();
        let na1 = if m.adstock.n_params() == 2 { np } else { 0 };
        let ns1 = if m.saturation.n_params() == 2 { np } else { 0 };
        let ngx = if want_gx != 0 { d.len() } else { 0 };
        let out = MediaGrads {
            ga0: wr(ga0, np)?,
            ga1: wr(ga1, na1)?,
            gs0: wr(gs0, np)?,
            gs1: wr(gs1, ns1)?,
            gx: wr(gx, ngx)?,
        };
        let r = media_vjp(
            &m,
            d,
            rd(x, d.len())?,
            rd(a0, np)?,
            rd(a1, na1)?,
            rd(cache, 4 * d.len())?,
            rd(g, d.len())?,
            out,
        );
        Some(if r.is_ok() { OK } else { BAD })
    })
}

/// Name and address of every exported C-ABI function, for registration with
/// numba/LLVM by name.
pub fn ffi_table() -> Vec<(&'static str, usize)> {
    macro_rules! entry {
        ($f:ident) => {
            (stringify!($f), $f as *const () as usize)
        };
    }
    vec![
        entry!(fastmmm_v1_geometric_fwd),
        entry!(fastmmm_v1_geometric_vjp),
        entry!(fastmmm_v1_delayed_fwd),
        entry!(fastmmm_v1_delayed_vjp),
        entry!(fastmmm_v1_weibull_fwd),
        entry!(fastmmm_v1_weibull_vjp),
        entry!(fastmmm_v1_hill_fwd),
        entry!(fastmmm_v1_hill_vjp),
        entry!(fastmmm_v1_logistic_fwd),
        entry!(fastmmm_v1_logistic_vjp),
        entry!(fastmmm_v1_michaelis_menten_fwd),
        entry!(fastmmm_v1_michaelis_menten_vjp),
        entry!(fastmmm_v1_tanh_fwd),
        entry!(fastmmm_v1_tanh_vjp),
        entry!(fastmmm_v1_media_fwd),
        entry!(fastmmm_v1_media_vjp),
        entry!(fastmmm_v1_mmm_logp),
        entry!(fastmmm_v1_mmm_expand),
    ]
}

/// nutpie's log-density signature: `logp(dim, x, grad_out, logp_out, user_data)`,
/// returning `c_int` as nutpie's Rust side declares it (`RawLogpFunc` in nutpie's pymc.rs).
/// `user_data` points to an [`crate::logp::MmmProblem`]. Returns 0 on success,
/// 3 (non-finite gradient) or 4 (non-finite log-density), which nutpie treats as
/// a rejected step, and -1 for a dimension mismatch or a bad argument (fatal).
///
/// # Safety
/// `x` and `grad` must reference `dim` doubles, `logp` one double, and
/// `user_data` a live `MmmProblem`.
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_mmm_logp(
    dim: usize,
    x: *const f64,
    grad: *mut f64,
    logp: *mut f64,
    user_data: *const std::ffi::c_void,
) -> std::os::raw::c_int {
    if user_data.is_null() || x.is_null() || grad.is_null() || logp.is_null() {
        return -1;
    }
    let problem = &*(user_data as *const crate::logp::MmmProblem);
    if dim != problem.n_dim() {
        return -1;
    }
    let xs = std::slice::from_raw_parts(x, dim);
    let gs = std::slice::from_raw_parts_mut(grad, dim);
    match catch_unwind(AssertUnwindSafe(|| problem.logp_grad(xs, gs))) {
        Ok(Ok(v)) => {
            *logp = v;
            if !gs.iter().all(|g| g.is_finite()) {
                3
            } else if !v.is_finite() {
                4
            } else {
                0
            }
        }
        _ => -1,
    }
}

/// nutpie's expand signature: `expand(dim, n_expanded, x, out, user_data)`;
/// writes the constrained parameters and the deterministics.
///
/// # Safety
/// `x` must reference `dim` doubles, `out` `n_expanded` doubles, and
/// `user_data` a live `MmmProblem`.
#[no_mangle]
pub unsafe extern "C" fn fastmmm_v1_mmm_expand(
    dim: usize,
    n_expanded: usize,
    x: *const f64,
    out: *mut f64,
    user_data: *const std::ffi::c_void,
) -> std::os::raw::c_int {
    if user_data.is_null() || x.is_null() || out.is_null() {
        return -1;
    }
    let problem = &*(user_data as *const crate::logp::MmmProblem);
    if dim != problem.n_dim() || n_expanded != problem.n_expanded() {
        return -1;
    }
    let xs = std::slice::from_raw_parts(x, dim);
    let os = std::slice::from_raw_parts_mut(out, n_expanded);
    match catch_unwind(AssertUnwindSafe(|| problem.expand(xs, os))) {
        Ok(Ok(())) => 0,
        _ => -2,
    }
}
