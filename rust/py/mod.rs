//! PyO3 bindings: numpy in, numpy out. Every array is checked here (shape,
//! contiguity, finiteness, parameter domain) so that bad input becomes a
//! `ValueError` naming the argument, never a panic. Computation runs with the
//! GIL released, and large batches are split across threads.

mod errors;
mod problem;
mod sampler;

use crate::ffi::{ffi_table, KERNEL_VERSION};
use crate::kernels::adstock::{adstock_fwd, adstock_vjp, adstock_weights, Adstock, AdstockKind};
use crate::kernels::fused::{media_fwd, media_vjp, Media, MediaGrads};
use crate::kernels::saturation::{saturation_fwd, saturation_vjp, SaturationKind};
use crate::kernels::{kinds, validate, Dims};
use errors::value_error;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;

/// Work (elements) above which a batched call is split across threads.
const PAR_THRESHOLD: usize = 1 << 15;

thread_local! {
    /// Pieces the batched calls made from this thread cut their work into
    /// (`set_kernel_threads`); 0: one per pool thread.
    static KERNEL_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Pieces a batched call from this thread cuts its work into. 1 runs it on the calling
/// thread itself: handing work to the pool makes the caller wait for a pool thread to be
/// scheduled, which on cores that are all busy (a batch fitting a brand on each) costs more
/// than the work.
fn kernel_threads() -> usize {
    match KERNEL_THREADS.with(std::cell::Cell::get) {
        0 => rayon::current_num_threads().max(1),
        n => n,
    }
}

type Arr3<'py> = Bound<'py, PyArray3<f64>>;
type Arr2<'py> = Bound<'py, PyArray2<f64>>;
type Arr1<'py> = Bound<'py, PyArray1<f64>>;

/// The memory of a row-major array. `as_slice` alone also accepts a Fortran-ordered
/// array (contiguous, but column by column), which the kernels would read in the wrong order.
fn c_slice<'a, D: numpy::ndarray::Dimension>(
    arg: &str,
    a: &'a numpy::PyReadonlyArray<'_, f64, D>,
) -> PyResult<&'a [f64]> {
    let row_major = a.is_c_contiguous();
    match a.as_slice() {
        Ok(v) if row_major => Ok(v),
        _ => Err(value_error(
            arg,
            "must be a C-contiguous (row-major) float64 array",
        )),
    }
}

fn slice3<'a>(arg: &str, a: &'a PyReadonlyArray3<'_, f64>) -> PyResult<&'a [f64]> {
    c_slice(arg, a)
}

fn slice2<'a>(arg: &str, a: &'a PyReadonlyArray2<'_, f64>) -> PyResult<&'a [f64]> {
    c_slice(arg, a)
}

fn dims_of(x: &PyReadonlyArray3<'_, f64>) -> Dims {
    let s = x.shape();
    Dims::new(s[0], s[1], s[2])
}

fn check_param_shape(arg: &str, p: &PyReadonlyArray2<'_, f64>, d: Dims) -> PyResult<()> {
    let s = p.shape();
    if s[0] != d.b || s[1] != d.c {
        return Err(value_error(
            arg,
            format!(
                "expected shape (B, C) = ({}, {}) to match x, got ({}, {})",
                d.b, d.c, s[0], s[1]
            ),
        ));
    }
    Ok(())
}

/// The adstock kind named `kind`, or a ValueError on argument `arg` listing the kinds.
pub(super) fn adstock_kind(arg: &str, kind: &str) -> PyResult<AdstockKind> {
    AdstockKind::from_name(kind).ok_or_else(|| {
        value_error(
            arg,
            format!(
                "unknown adstock '{kind}'; expected one of {}",
                kinds::names(&kinds::ADSTOCK_KINDS)
            ),
        )
    })
}

/// The saturation kind named `kind`, or a ValueError on argument `arg` listing the kinds.
pub(super) fn saturation_kind(arg: &str, kind: &str) -> PyResult<SaturationKind> {
    SaturationKind::from_name(kind).ok_or_else(|| {
        value_error(
            arg,
            format!(
                "unknown saturation '{kind}'; expected one of {}",
                kinds::names(&kinds::SATURATION_KINDS)
            ),
        )
    })
}

/// Python-facing names of a kind's two parameter slots (for messages; "" for an unused slot).
fn slot_names(params: &'static [&'static str]) -> [&'static str; 2] {
    [params[0], params.get(1).copied().unwrap_or("")]
}

fn adstock_param_names(kind: AdstockKind) -> [&'static str; 2] {
    slot_names(kind.param_names())
}

fn saturation_param_names(kind: SaturationKind) -> [&'static str; 2] {
    slot_names(kind.param_names())
}

/// The registry of kernel kinds (`rust/kernels/kinds.rs`):
/// `{"adstock": [(name, code, params)], "saturation": [...]}`.
type KindRows = Vec<(&'static str, i32, Vec<&'static str>)>;

#[pyfunction]
fn kernel_kinds() -> std::collections::HashMap<&'static str, KindRows> {
    fn rows<K>(t: &[kinds::KindRow<K>]) -> KindRows {
        t.iter()
            .map(|r| (r.name, r.code, r.params.to_vec()))
            .collect()
    }
    std::collections::HashMap::from([
        ("adstock", rows(&kinds::ADSTOCK_KINDS)),
        ("saturation", rows(&kinds::SATURATION_KINDS)),
    ])
}

fn check_adstock_domain(kind: AdstockKind, p0: &[f64], p1: &[f64]) -> PyResult<()> {
    let [n0, n1] = adstock_param_names(kind);
    match kind {
        AdstockKind::Geometric => validate::in_unit_interval(n0, p0, false)?,
        AdstockKind::Delayed => {
            validate::in_unit_interval(n0, p0, true)?;
            validate::nonnegative(n1, p1)?;
        }
        _ => {
            validate::positive(n0, p0)?;
            validate::positive(n1, p1)?;
        }
    }
    Ok(())
}

fn check_saturation_domain(kind: SaturationKind, p0: &[f64], p1: &[f64]) -> PyResult<()> {
    let [n0, n1] = saturation_param_names(kind);
    match kind {
        SaturationKind::Hill | SaturationKind::Tanh => {
            validate::positive(n0, p0)?;
            validate::positive(n1, p1)?;
        }
        SaturationKind::Logistic => validate::positive(n0, p0)?,
        SaturationKind::MichaelisMenten => {
            validate::finite(n0, p0)?;
            validate::positive(n1, p1)?;
        }
    }
    Ok(())
}

/// Parameter arrays as slices, the second one empty for one-parameter kinds.
fn params<'a>(
    names: [&'static str; 2],
    n_params: usize,
    d: Dims,
    p0: &'a PyReadonlyArray2<'_, f64>,
    p1: &'a Option<PyReadonlyArray2<'_, f64>>,
) -> PyResult<(&'a [f64], &'a [f64])> {
    check_param_shape(names[0], p0, d)?;
    let s0 = slice2(names[0], p0)?;
    let s1: &[f64] = if n_params == 2 {
        let p1 = p1
            .as_ref()
            .ok_or_else(|| value_error(names[1], "is required for this transform"))?;
        check_param_shape(names[1], p1, d)?;
        slice2(names[1], p1)?
    } else {
        &[]
    };
    Ok((s0, s1))
}

/// Splits `v` into `n` pieces of `per` elements (n empty pieces if `v` is empty).
fn pieces_mut(v: &mut [f64], per: usize, n: usize) -> Vec<&mut [f64]> {
    if v.is_empty() || per == 0 {
        (0..n).map(|_| &mut [][..]).collect()
    } else {
        v.chunks_mut(per).collect()
    }
}

fn pieces(v: &[f64], per: usize, n: usize) -> Vec<&[f64]> {
    if v.is_empty() || per == 0 {
        (0..n).map(|_| &[][..]).collect()
    } else {
        v.chunks(per).collect()
    }
}

/// Batches per thread for a call over `d` (all of them when small).
fn batches_per_task(d: Dims) -> usize {
    let threads = kernel_threads();
    if d.b < 2 || d.len() < PAR_THRESHOLD || threads == 1 {
        return d.b.max(1);
    }
    d.b.div_ceil(threads)
}

/// Runs a forward kernel over batch groups in parallel: `f(dims, x, p0, p1, y)`.
fn run_fwd<F>(d: Dims, x: &[f64], p0: &[f64], p1: &[f64], f: F) -> PyResult<Vec<f64>>
where
    F: Fn(Dims, &[f64], &[f64], &[f64], &mut [f64]) -> crate::error::KResult<()> + Sync,
{
    let mut y = vec![0.0; d.len()];
    let per = batches_per_task(d);
    let n = d.b.div_ceil(per).max(1);
    if n == 1 {
        // One task: run here; handing it to the thread pool costs more than small kernels.
        f(d, x, p0, p1, &mut y)?;
        return Ok(y);
    }
    let (tc, c) = (d.tc(), d.c);
    let ys = pieces_mut(&mut y, per * tc, n);
    let xs = pieces(x, per * tc, n);
    let p0s = pieces(p0, per * c, n);
    let p1s = pieces(p1, per * c, n);
    ys.into_par_iter()
        .zip(xs)
        .zip(p0s)
        .zip(p1s)
        .enumerate()
        .try_for_each(|(i, (((yc, xc), a), bb))| {
            let nb = per.min(d.b - i * per);
            f(Dims::new(nb, d.t, d.c), xc, a, bb, yc)
        })?;
    Ok(y)
}

type Grads = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Runs a VJP kernel over batch groups in parallel: `f(dims, x, p0, p1, g, gx, gp0, gp1)`.
fn run_vjp<F>(
    d: Dims,
    np: usize,
    x: &[f64],
    p0: &[f64],
    p1: &[f64],
    g: &[f64],
    f: F,
) -> PyResult<Grads>
where
    F: Fn(
            Dims,
            &[f64],
            &[f64],
            &[f64],
            &[f64],
            &mut [f64],
            &mut [f64],
            &mut [f64],
        ) -> crate::error::KResult<()>
        + Sync,
{
    let mut gx = vec![0.0; d.len()];
    let mut g0 = vec![0.0; d.n_params()];
    let mut g1 = vec![0.0; if np == 2 { d.n_params() } else { 0 }];
    let per = batches_per_task(d);
    let n = d.b.div_ceil(per).max(1);
    if n == 1 {
        f(d, x, p0, p1, g, &mut gx, &mut g0, &mut g1)?;
        return Ok((gx, g0, g1));
    }
    let (tc, c) = (d.tc(), d.c);
    let outs = pieces_mut(&mut gx, per * tc, n)
        .into_par_iter()
        .zip(pieces_mut(&mut g0, per * c, n))
        .zip(pieces_mut(&mut g1, per * c, n));
    let ins = pieces(x, per * tc, n)
        .into_par_iter()
        .zip(pieces(g, per * tc, n))
        .zip(pieces(p0, per * c, n))
        .zip(pieces(p1, per * c, n));
    outs.zip(ins)
        .enumerate()
        .try_for_each(|(i, (((gxc, g0c), g1c), (((xc, gc), a), bb)))| {
            let nb = per.min(d.b - i * per);
            f(Dims::new(nb, d.t, d.c), xc, a, bb, gc, gxc, g0c, g1c)
        })?;
    Ok((gx, g0, g1))
}

fn to3<'py>(py: Python<'py>, v: Vec<f64>, d: Dims) -> PyResult<Arr3<'py>> {
    v.into_pyarray(py).reshape([d.b, d.t, d.c])
}

fn to2<'py>(py: Python<'py>, v: Vec<f64>, d: Dims) -> PyResult<Arr2<'py>> {
    v.into_pyarray(py).reshape([d.b, d.c])
}

fn l_max_of(kind: AdstockKind, l_max: i64) -> PyResult<usize> {
    if l_max < 0 || (l_max == 0 && kind != AdstockKind::Geometric) {
        return Err(value_error(
            "l_max",
            format!("must be an integer >= 1, got {l_max}"),
        ));
    }
    Ok(l_max as usize)
}

/// Adstock forward pass.
///
/// x: (B, T, C) spend, >= 0; p0, p1: (B, C) parameters (p1 None for geometric).
/// l_max = 0 selects the untruncated geometric recursion. Returns (B, T, C).
#[pyfunction(name = "adstock_fwd")]
#[pyo3(signature = (kind, x, p0, p1, l_max, normalize))]
fn adstock_fwd_py<'py>(
    py: Python<'py>,
    kind: &str,
    x: PyReadonlyArray3<'py, f64>,
    p0: PyReadonlyArray2<'py, f64>,
    p1: Option<PyReadonlyArray2<'py, f64>>,
    l_max: i64,
    normalize: bool,
) -> PyResult<Arr3<'py>> {
    let k = adstock_kind("kind", kind)?;
    let spec = Adstock::new(k, l_max_of(k, l_max)?, normalize)?;
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    validate::nonnegative("x", xs)?;
    let (a, b) = params(adstock_param_names(k), spec.n_params(), d, &p0, &p1)?;
    check_adstock_domain(k, a, b)?;
    let y = py.detach(|| {
        run_fwd(d, xs, a, b, |dd, xx, aa, bb, yy| {
            adstock_fwd(&spec, dd, xx, aa, bb, yy)
        })
    })?;
    to3(py, y, d)
}

/// Adstock VJP: returns (gx (B,T,C), gp0 (B,C), gp1 (B,C) or None).
#[pyfunction(name = "adstock_vjp")]
#[pyo3(signature = (kind, x, p0, p1, g, l_max, normalize))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn adstock_vjp_py<'py>(
    py: Python<'py>,
    kind: &str,
    x: PyReadonlyArray3<'py, f64>,
    p0: PyReadonlyArray2<'py, f64>,
    p1: Option<PyReadonlyArray2<'py, f64>>,
    g: PyReadonlyArray3<'py, f64>,
    l_max: i64,
    normalize: bool,
) -> PyResult<(Arr3<'py>, Arr2<'py>, Option<Arr2<'py>>)> {
    let k = adstock_kind("kind", kind)?;
    let spec = Adstock::new(k, l_max_of(k, l_max)?, normalize)?;
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    validate::nonnegative("x", xs)?;
    if g.shape() != x.shape() {
        return Err(value_error(
            "g",
            format!(
                "expected shape {:?} (that of x), got {:?}",
                x.shape(),
                g.shape()
            ),
        ));
    }
    let gs = slice3("g", &g)?;
    validate::finite("g", gs)?;
    let (a, b) = params(adstock_param_names(k), spec.n_params(), d, &p0, &p1)?;
    check_adstock_domain(k, a, b)?;
    let np = spec.n_params();
    let (gx, g0, g1) = py.detach(|| {
        run_vjp(d, np, xs, a, b, gs, |dd, xx, aa, bb, gg, o1, o2, o3| {
            adstock_vjp(&spec, dd, xx, aa, bb, gg, o1, o2, o3)
        })
    })?;
    let g1 = if np == 2 { Some(to2(py, g1, d)?) } else { None };
    Ok((to3(py, gx, d)?, to2(py, g0, d)?, g1))
}

/// Saturation forward pass. x: (B, T, C) >= 0; p0, p1: (B, C). Returns (B, T, C).
#[pyfunction(name = "saturation_fwd")]
#[pyo3(signature = (kind, x, p0, p1))]
fn saturation_fwd_py<'py>(
    py: Python<'py>,
    kind: &str,
    x: PyReadonlyArray3<'py, f64>,
    p0: PyReadonlyArray2<'py, f64>,
    p1: Option<PyReadonlyArray2<'py, f64>>,
) -> PyResult<Arr3<'py>> {
    let k = saturation_kind("kind", kind)?;
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    validate::nonnegative("x", xs)?;
    let (a, b) = params(saturation_param_names(k), k.n_params(), d, &p0, &p1)?;
    check_saturation_domain(k, a, b)?;
    let y = py.detach(|| {
        run_fwd(d, xs, a, b, |dd, xx, aa, bb, yy| {
            saturation_fwd(k, dd, xx, aa, bb, yy)
        })
    })?;
    to3(py, y, d)
}

/// Saturation VJP: returns (gx (B,T,C), gp0 (B,C), gp1 (B,C) or None).
#[pyfunction(name = "saturation_vjp")]
#[pyo3(signature = (kind, x, p0, p1, g))]
#[allow(clippy::type_complexity)]
fn saturation_vjp_py<'py>(
    py: Python<'py>,
    kind: &str,
    x: PyReadonlyArray3<'py, f64>,
    p0: PyReadonlyArray2<'py, f64>,
    p1: Option<PyReadonlyArray2<'py, f64>>,
    g: PyReadonlyArray3<'py, f64>,
) -> PyResult<(Arr3<'py>, Arr2<'py>, Option<Arr2<'py>>)> {
    let k = saturation_kind("kind", kind)?;
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    validate::nonnegative("x", xs)?;
    if g.shape() != x.shape() {
        return Err(value_error(
            "g",
            format!(
                "expected shape {:?} (that of x), got {:?}",
                x.shape(),
                g.shape()
            ),
        ));
    }
    let gs = slice3("g", &g)?;
    validate::finite("g", gs)?;
    let (a, b) = params(saturation_param_names(k), k.n_params(), d, &p0, &p1)?;
    check_saturation_domain(k, a, b)?;
    let np = k.n_params();
    let (gx, g0, g1) = py.detach(|| {
        run_vjp(d, np, xs, a, b, gs, |dd, xx, aa, bb, gg, o1, o2, o3| {
            saturation_vjp(k, dd, xx, aa, bb, gg, o1, o2, o3)
        })
    })?;
    let g1 = if np == 2 { Some(to2(py, g1, d)?) } else { None };
    Ok((to3(py, gx, d)?, to2(py, g0, d)?, g1))
}

/// Tap weights of one channel's adstock (length l_max, or l_max + 1 for weibull_cdf).
#[pyfunction(name = "adstock_weights")]
#[pyo3(signature = (kind, p0, p1, l_max, normalize))]
fn adstock_weights_py<'py>(
    py: Python<'py>,
    kind: &str,
    p0: f64,
    p1: f64,
    l_max: i64,
    normalize: bool,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let k = adstock_kind("kind", kind)?;
    let spec = Adstock::new(k, l_max_of(k, l_max)?, normalize)?;
    check_adstock_domain(k, &[p0], &[p1])?;
    Ok(adstock_weights(&spec, p0, p1)?.into_pyarray(py))
}

/// Fused `saturation(adstock(x))`: returns (y (B,T,C), cache (4,B,T,C)).
///
/// The cache holds the adstocked spend and the saturation's partial derivatives
/// for `media_vjp`.
#[pyfunction(name = "media_fwd")]
#[pyo3(signature = (adstock, saturation, x, a0, a1, s0, s1, l_max, normalize))]
#[allow(clippy::too_many_arguments)]
fn media_fwd_py<'py>(
    py: Python<'py>,
    adstock: &str,
    saturation: &str,
    x: PyReadonlyArray3<'py, f64>,
    a0: PyReadonlyArray2<'py, f64>,
    a1: Option<PyReadonlyArray2<'py, f64>>,
    s0: PyReadonlyArray2<'py, f64>,
    s1: Option<PyReadonlyArray2<'py, f64>>,
    l_max: i64,
    normalize: bool,
) -> PyResult<(Arr3<'py>, Bound<'py, PyArray1<f64>>)> {
    let ak = adstock_kind("adstock", adstock)?;
    let sk = saturation_kind("saturation", saturation)?;
    let m = Media {
        adstock: Adstock::new(ak, l_max_of(ak, l_max)?, normalize)?,
        saturation: sk,
    };
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    validate::nonnegative("x", xs)?;
    let [an0, an1] = adstock_param_names(ak);
    let [sn0, sn1] = saturation_param_names(sk);
    let (pa0, pa1) = params([an0, an1], m.adstock.n_params(), d, &a0, &a1)?;
    check_adstock_domain(ak, pa0, pa1)?;
    let (ps0, ps1) = params([sn0, sn1], sk.n_params(), d, &s0, &s1)?;
    check_saturation_domain(sk, ps0, ps1)?;
    let (y, cache) = py.detach(|| {
        let mut y = vec![0.0; d.len()];
        let mut cache = vec![0.0; 4 * d.len()];
        let per = batches_per_task(d);
        let n = d.b.div_ceil(per).max(1);
        if n == 1 {
            media_fwd(&m, d, xs, pa0, pa1, ps0, ps1, &mut y, &mut cache)?;
            return Ok((y, cache));
        }
        let (tc, c) = (d.tc(), d.c);
        let outs = pieces_mut(&mut y, per * tc, n)
            .into_par_iter()
            .zip(pieces_mut(&mut cache, per * 4 * tc, n));
        let ins = pieces(xs, per * tc, n)
            .into_par_iter()
            .zip(pieces(pa0, per * c, n))
            .zip(pieces(pa1, per * c, n))
            .zip(pieces(ps0, per * c, n))
            .zip(pieces(ps1, per * c, n));
        outs.zip(ins)
            .enumerate()
            .try_for_each(|(i, ((yc, cc), ((((xc, q0), q1), r0), r1)))| {
                let nb = per.min(d.b - i * per);
                media_fwd(&m, Dims::new(nb, d.t, d.c), xc, q0, q1, r0, r1, yc, cc)
            })?;
        Ok::<_, crate::error::KernelError>((y, cache))
    })?;
    Ok((to3(py, y, d)?, cache.into_pyarray(py)))
}

/// VJP of `media_fwd` from its cache: returns (gx or None, ga0, ga1 or None, gs0, gs1 or None).
#[pyfunction(name = "media_vjp")]
#[pyo3(signature = (adstock, saturation, x, a0, a1, cache, g, l_max, normalize, want_gx=false))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn media_vjp_py<'py>(
    py: Python<'py>,
    adstock: &str,
    saturation: &str,
    x: PyReadonlyArray3<'py, f64>,
    a0: PyReadonlyArray2<'py, f64>,
    a1: Option<PyReadonlyArray2<'py, f64>>,
    cache: numpy::PyReadonlyArray1<'py, f64>,
    g: PyReadonlyArray3<'py, f64>,
    l_max: i64,
    normalize: bool,
    want_gx: bool,
) -> PyResult<(
    Option<Arr3<'py>>,
    Arr2<'py>,
    Option<Arr2<'py>>,
    Arr2<'py>,
    Option<Arr2<'py>>,
)> {
    let ak = adstock_kind("adstock", adstock)?;
    let sk = saturation_kind("saturation", saturation)?;
    let m = Media {
        adstock: Adstock::new(ak, l_max_of(ak, l_max)?, normalize)?,
        saturation: sk,
    };
    let d = dims_of(&x);
    let xs = slice3("x", &x)?;
    if g.shape() != x.shape() {
        return Err(value_error(
            "g",
            format!(
                "expected shape {:?} (that of x), got {:?}",
                x.shape(),
                g.shape()
            ),
        ));
    }
    let gs = slice3("g", &g)?;
    validate::finite("g", gs)?;
    let cs = c_slice("cache", &cache)?;
    let [an0, an1] = adstock_param_names(ak);
    let (pa0, pa1) = params([an0, an1], m.adstock.n_params(), d, &a0, &a1)?;
    check_adstock_domain(ak, pa0, pa1)?;
    let two_a = m.adstock.n_params() == 2;
    let two_s = sk.n_params() == 2;
    let np = d.n_params();
    if cs.len() != 4 * d.len() {
        return Err(value_error(
            "cache",
            format!(
                "expected {} values from media_fwd, got {}",
                4 * d.len(),
                cs.len()
            ),
        ));
    }
    let res = py.detach(|| {
        let mut gx = vec![0.0; if want_gx { d.len() } else { 0 }];
        let mut ga0 = vec![0.0; np];
        let mut ga1 = vec![0.0; if two_a { np } else { 0 }];
        let mut gs0 = vec![0.0; np];
        let mut gs1 = vec![0.0; if two_s { np } else { 0 }];
        let per = batches_per_task(d);
        let n = d.b.div_ceil(per).max(1);
        if n == 1 {
            let out = MediaGrads {
                ga0: &mut ga0,
                ga1: &mut ga1,
                gs0: &mut gs0,
                gs1: &mut gs1,
                gx: &mut gx,
            };
            media_vjp(&m, d, xs, pa0, pa1, cs, gs, out)?;
            return Ok((gx, ga0, ga1, gs0, gs1));
        }
        let (tc, c) = (d.tc(), d.c);
        let outs = pieces_mut(&mut gx, per * tc, n)
            .into_par_iter()
            .zip(pieces_mut(&mut ga0, per * c, n))
            .zip(pieces_mut(&mut ga1, per * c, n))
            .zip(pieces_mut(&mut gs0, per * c, n))
            .zip(pieces_mut(&mut gs1, per * c, n));
        let ins = pieces(xs, per * tc, n)
            .into_par_iter()
            .zip(pieces(pa0, per * c, n))
            .zip(pieces(pa1, per * c, n))
            .zip(pieces(cs, per * 4 * tc, n))
            .zip(pieces(gs, per * tc, n));
        outs.zip(ins).enumerate().try_for_each(
            |(i, (((((gxc, a0c), a1c), s0c), s1c), ((((xc, q0), q1), cc), gc)))| {
                let nb = per.min(d.b - i * per);
                let out = MediaGrads {
                    ga0: a0c,
                    ga1: a1c,
                    gs0: s0c,
                    gs1: s1c,
                    gx: gxc,
                };
                media_vjp(&m, Dims::new(nb, d.t, d.c), xc, q0, q1, cc, gc, out)
            },
        )?;
        Ok::<_, crate::error::KernelError>((gx, ga0, ga1, gs0, gs1))
    })?;
    let (gx, ga0, ga1, gs0, gs1) = res;
    Ok((
        if want_gx { Some(to3(py, gx, d)?) } else { None },
        to2(py, ga0, d)?,
        if two_a { Some(to2(py, ga1, d)?) } else { None },
        to2(py, gs0, d)?,
        if two_s { Some(to2(py, gs1, d)?) } else { None },
    ))
}

/// Incremental response of a spend plan over posterior draws, and its gradient.
///
/// hist: (Lh, C) scaled spend before the plan; plan: (H, C) scaled planned
/// spend; tail: periods after the plan over which carry-over counts; a0, a1,
/// s0, s1, beta: (S, C) per-draw kernel parameters. Returns (resp (S,),
/// grad (S, H, C)) on the scaled target. Draws are split across threads.
#[pyfunction(name = "response_draws")]
#[pyo3(signature = (adstock, saturation, l_max, normalize, hist, plan, tail, a0, a1, s0, s1, beta))]
#[allow(clippy::too_many_arguments)]
fn response_draws_py<'py>(
    py: Python<'py>,
    adstock: &str,
    saturation: &str,
    l_max: i64,
    normalize: bool,
    hist: PyReadonlyArray2<'py, f64>,
    plan: PyReadonlyArray2<'py, f64>,
    tail: usize,
    a0: PyReadonlyArray2<'py, f64>,
    a1: Option<PyReadonlyArray2<'py, f64>>,
    s0: PyReadonlyArray2<'py, f64>,
    s1: Option<PyReadonlyArray2<'py, f64>>,
    beta: PyReadonlyArray2<'py, f64>,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Arr3<'py>)> {
    use crate::kernels::response::{response_draws, Horizon};
    let ak = adstock_kind("adstock", adstock)?;
    let sk = saturation_kind("saturation", saturation)?;
    let m = Media {
        adstock: Adstock::new(ak, l_max_of(ak, l_max)?, normalize)?,
        saturation: sk,
    };
    let (hs, ps) = (hist.shape(), plan.shape());
    let c = ps[1];
    if hs[1] != c {
        return Err(value_error(
            "hist",
            format!("expected {c} channels like plan, got {}", hs[1]),
        ));
    }
    let hz = Horizon {
        lh: hs[0],
        h: ps[0],
        lt: tail,
        c,
    };
    let n_draws = a0.shape()[0];
    let d = Dims::new(n_draws, 1, c); // only for parameter shape checks: (S, C)
    let hv = slice2("hist", &hist)?;
    let pv = slice2("plan", &plan)?;
    validate::nonnegative("hist", hv)?;
    validate::nonnegative("plan", pv)?;
    let [an0, an1] = adstock_param_names(ak);
    let [sn0, sn1] = saturation_param_names(sk);
    let (pa0, pa1) = params([an0, an1], m.adstock.n_params(), d, &a0, &a1)?;
    let (ps0, ps1) = params([sn0, sn1], sk.n_params(), d, &s0, &s1)?;
    check_param_shape("beta", &beta, d)?;
    let bv = slice2("beta", &beta)?;
    let (resp, grad) = py.detach(|| -> crate::error::KResult<(Vec<f64>, Vec<f64>)> {
        let mut resp = vec![0.0; n_draws];
        let mut grad = vec![0.0; n_draws * hz.h * c];
        let per = n_draws.div_ceil(kernel_threads()).max(1);
        let n = n_draws.div_ceil(per).max(1);
        if n == 1 {
            response_draws(&m, hz, hv, pv, pa0, pa1, ps0, ps1, bv, &mut resp, &mut grad)?;
            return Ok((resp, grad));
        }
        let outs = pieces_mut(&mut resp, per, n)
            .into_par_iter()
            .zip(pieces_mut(&mut grad, per * hz.h * c, n));
        let ins = pieces(pa0, per * c, n)
            .into_par_iter()
            .zip(pieces(pa1, per * c, n))
            .zip(pieces(ps0, per * c, n))
            .zip(pieces(ps1, per * c, n))
            .zip(pieces(bv, per * c, n));
        outs.zip(ins)
            .try_for_each(|((rc, gc), ((((q0, q1), r0), r1), bc))| {
                response_draws(&m, hz, hv, pv, q0, q1, r0, r1, bc, rc, gc)
            })?;
        Ok((resp, grad))
    })?;
    let grad = grad.into_pyarray(py).reshape([n_draws, hz.h, c])?;
    Ok((resp.into_pyarray(py), grad))
}

/// Response curves over draws: total contribution per channel when the spend series `x`
/// (T, C; scaled, with zero tail periods for carry-over) is scaled by each of `mult` (K,),
/// and from the same media transforms the sums over the first `window` periods of `x` (the
/// training dates before its zero tail; 0: none). a0, a1, s0, s1, beta: (S, C) per-draw
/// kernel parameters. Returns totals (S, K, C), window totals (S, K, C) and the window's
/// contributions summed over the draws (K, window, C), all on the scaled target (the
/// window outputs empty with `window` 0): a summary's ROAS, marginal ROAS and mean
/// contributions in one pass, without an (S, T, C) array. Draws split across threads.
#[pyfunction(name = "contribution_sums")]
#[pyo3(signature = (adstock, saturation, l_max, normalize, x, mult, window, a0, a1, s0, s1, beta))]
#[allow(clippy::too_many_arguments)]
fn contribution_sums_py<'py>(
    py: Python<'py>,
    adstock: &str,
    saturation: &str,
    l_max: i64,
    normalize: bool,
    x: PyReadonlyArray2<'py, f64>,
    mult: Vec<f64>,
    window: usize,
    a0: PyReadonlyArray2<'py, f64>,
    a1: Option<PyReadonlyArray2<'py, f64>>,
    s0: PyReadonlyArray2<'py, f64>,
    s1: Option<PyReadonlyArray2<'py, f64>>,
    beta: PyReadonlyArray2<'py, f64>,
) -> PyResult<(Arr3<'py>, Arr3<'py>, Arr3<'py>)> {
    if window > x.shape()[0] {
        return Err(value_error(
            "window",
            format!(
                "must be at most the {} periods of x, got {window}",
                x.shape()[0]
            ),
        ));
    }
    use crate::kernels::response::{contribution_sums, ContributionSums};
    let ak = adstock_kind("adstock", adstock)?;
    let sk = saturation_kind("saturation", saturation)?;
    let m = Media {
        adstock: Adstock::new(ak, l_max_of(ak, l_max)?, normalize)?,
        saturation: sk,
    };
    let xs = x.shape();
    let (t, c) = (xs[0], xs[1]);
    let n_draws = a0.shape()[0];
    let d = Dims::new(n_draws, 1, c);
    let xv = slice2("x", &x)?;
    validate::nonnegative("x", xv)?;
    if !mult.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Err(value_error("mult", "multipliers must be finite and >= 0"));
    }
    let [an0, an1] = adstock_param_names(ak);
    let [sn0, sn1] = saturation_param_names(sk);
    let (pa0, pa1) = params([an0, an1], m.adstock.n_params(), d, &a0, &a1)?;
    let (ps0, ps1) = params([sn0, sn1], sk.n_params(), d, &s0, &s1)?;
    check_param_shape("beta", &beta, d)?;
    let bv = slice2("beta", &beta)?;
    let k = mult.len();
    let w = window;
    let (totals, win, over) = py.detach(|| -> crate::error::KResult<_> {
        let mut totals = vec![0.0; n_draws * k * c];
        let mut win = vec![0.0; if w > 0 { n_draws * k * c } else { 0 }];
        let per = n_draws.div_ceil(kernel_threads()).max(1);
        let n = n_draws.div_ceil(per).max(1);
        // Each piece of draws sums its own (K, window, C); the pieces' sums are added after.
        let mut over = vec![0.0; n * k * w * c];
        let run = |(oc, wc, dc): (&mut [f64], &mut [f64], &mut [f64]), q0, q1, r0, r1, bc| {
            let sums = ContributionSums {
                totals: oc,
                window: w,
                window_totals: wc,
                window_over_draws: dc,
            };
            contribution_sums(&m, t, c, xv, &mult, q0, q1, r0, r1, bc, sums)
        };
        if n == 1 {
            run((&mut totals, &mut win, &mut over), pa0, pa1, ps0, ps1, bv)?;
        } else {
            let outs = pieces_mut(&mut totals, per * k * c, n)
                .into_par_iter()
                .zip(pieces_mut(&mut win, per * k * c, n))
                .zip(pieces_mut(&mut over, k * w * c, n));
            let ins = pieces(pa0, per * c, n)
                .into_par_iter()
                .zip(pieces(pa1, per * c, n))
                .zip(pieces(ps0, per * c, n))
                .zip(pieces(ps1, per * c, n))
                .zip(pieces(bv, per * c, n));
            outs.zip(ins)
                .try_for_each(|(((oc, wc), dc), ((((q0, q1), r0), r1), bc))| {
                    run((oc, wc, dc), q0, q1, r0, r1, bc)
                })?;
        }
        let kwc = k * w * c;
        let mut over_draws = vec![0.0; kwc];
        for part in over
            .chunks_exact(kwc.max(1))
            .take(if kwc > 0 { n } else { 0 })
        {
            for (o, v) in over_draws.iter_mut().zip(part) {
                *o += v;
            }
        }
        Ok((totals, win, over_draws))
    })?;
    let totals = totals.into_pyarray(py).reshape([n_draws, k, c])?;
    let wk = if w > 0 { n_draws } else { 0 };
    let win = win.into_pyarray(py).reshape([wk, k, c])?;
    let over = over.into_pyarray(py).reshape([k, w, c])?;
    Ok((totals, win, over))
}

/// Rank-normalised split R-hat, bulk ESS and tail ESS of every column of `x`
/// (chain, draw, n) float64: three (n,) arrays, NaN where undefined. Columns are split
/// across threads; each column is gathered once into its own buffer.
#[pyfunction(name = "convergence_stats")]
fn convergence_stats_py<'py>(
    py: Python<'py>,
    x: PyReadonlyArray3<'py, f64>,
) -> PyResult<(Arr1<'py>, Arr1<'py>, Arr1<'py>)> {
    use crate::convergence::column_stats;
    let shape = x.shape();
    let (chains, draws, n) = (shape[0], shape[1], shape[2]);
    let xv = slice3("x", &x)?;
    let stats = py.detach(|| {
        let column = |j: usize| {
            let col: Vec<f64> = (0..chains * draws).map(|i| xv[i * n + j]).collect();
            column_stats(&col, chains, draws)
        };
        if chains * draws * n >= PAR_THRESHOLD && kernel_threads() > 1 {
            (0..n).into_par_iter().map(column).collect::<Vec<_>>()
        } else {
            (0..n).map(column).collect()
        }
    });
    let pick = |f: fn(&crate::convergence::ColumnStats) -> f64| {
        stats.iter().map(f).collect::<Vec<f64>>().into_pyarray(py)
    };
    Ok((pick(|s| s.rhat), pick(|s| s.ess_bulk), pick(|s| s.ess_tail)))
}

/// How the batched calls (media kernels, responses, contribution totals, convergence
/// statistics) made from the calling thread split their work: 1 keeps them on that thread
/// (what a batch that fits a brand per core wants), n > 1 cuts it into n pieces for the
/// pool, 0 (the default) into one piece per pool thread.
#[pyfunction]
fn set_kernel_threads(n: usize) {
    KERNEL_THREADS.with(|c| c.set(n));
}

/// The calling thread's `set_kernel_threads` setting (0: the default).
#[pyfunction]
fn get_kernel_threads() -> usize {
    KERNEL_THREADS.with(std::cell::Cell::get)
}

/// Addresses of the C-ABI kernels, by symbol name.
#[pyfunction]
fn ffi_addresses(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (name, addr) in ffi_table() {
        d.set_item(name, addr)?;
    }
    Ok(d)
}

/// SIMD level the kernels run at: 0 baseline, 1 AVX2+FMA, 2 AVX-512 (the
/// widest the CPU has, capped by the environment variable FASTMMM_SIMD).
#[pyfunction]
fn simd_level() -> u8 {
    crate::kernels::simd::level()
}

/// Threads each log-density evaluation on the calling thread may use for a large panel's
/// media passes (groups split across them; the sampler sets its chain threads' share of
/// `cores` itself). 1 (the default) turns it off.
#[pyfunction]
fn set_eval_threads(n: usize) {
    crate::logp::set_eval_threads(n);
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("KERNEL_VERSION", KERNEL_VERSION)?;
    m.add("NUTS_RS_VERSION", crate::sampler::NUTS_RS_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(adstock_fwd_py, m)?)?;
    m.add_function(wrap_pyfunction!(adstock_vjp_py, m)?)?;
    m.add_function(wrap_pyfunction!(saturation_fwd_py, m)?)?;
    m.add_function(wrap_pyfunction!(saturation_vjp_py, m)?)?;
    m.add_function(wrap_pyfunction!(adstock_weights_py, m)?)?;
    m.add_function(wrap_pyfunction!(media_fwd_py, m)?)?;
    m.add_function(wrap_pyfunction!(media_vjp_py, m)?)?;
    m.add_function(wrap_pyfunction!(response_draws_py, m)?)?;
    m.add_function(wrap_pyfunction!(contribution_sums_py, m)?)?;
    m.add_function(wrap_pyfunction!(convergence_stats_py, m)?)?;
    m.add_function(wrap_pyfunction!(ffi_addresses, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(set_eval_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_kernel_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_kernel_threads, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_kinds, m)?)?;
    m.add_class::<problem::PyMmmProblem>()?;
    m.add_class::<sampler::PyCorePool>()?;
    m.add_function(wrap_pyfunction!(sampler::sample_nuts, m)?)?;
    Ok(())
}
