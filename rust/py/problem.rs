//! `MmmProblem`: the fused log-density problem as a Python object. It owns the
//! Rust problem in a `Box`, so the address handed to nutpie as user data stays
//! valid for the object's lifetime.

use super::errors::value_error;
use crate::kernels::adstock::Adstock;
use crate::kernels::fused::Media;
use crate::logp::{
    Block, Dist, LiftData, MmmData, MmmProblem, MmmStructure, Role, Transform, TvpData,
};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::Arc;

fn vec1(arg: &str, a: &PyReadonlyArray1<'_, f64>) -> PyResult<Vec<f64>> {
    Ok(a.as_slice()
        .map_err(|_| value_error(arg, "must be a C-contiguous float64 array"))?
        .to_vec())
}

fn vec2(arg: &str, a: &PyReadonlyArray2<'_, f64>) -> PyResult<(Vec<f64>, usize, usize)> {
    if !a.is_c_contiguous() {
        // A Fortran-ordered array is contiguous too, but its memory is column by column.
        return Err(value_error(
            arg,
            "must be a C-contiguous (row-major) float64 array",
        ));
    }
    let s = a.shape();
    let v = a
        .as_slice()
        .map_err(|_| value_error(arg, "must be a C-contiguous float64 array"))?
        .to_vec();
    Ok((v, s[0], s[1]))
}

fn floats(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Vec<f64>>> {
    match d.get_item(key)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => Ok(Some(v.extract::<Vec<f64>>()?)),
    }
}

fn parse_block(d: &Bound<'_, PyDict>) -> PyResult<Block> {
    let role_s: String = d
        .get_item("role")?
        .ok_or_else(|| value_error("blocks", "missing role"))?
        .extract()?;
    let role = Role::from_name(&role_s)
        .ok_or_else(|| value_error("blocks", format!("unknown role {role_s:?}")))?;
    let size: usize = d
        .get_item("size")?
        .ok_or_else(|| value_error("blocks", "missing size"))?
        .extract()?;
    let dist_s: String = d
        .get_item("dist")?
        .ok_or_else(|| value_error("blocks", "missing dist"))?
        .extract()?;
    let dist = Dist::from_name(&dist_s)
        .ok_or_else(|| value_error("blocks", format!("unsupported prior {dist_s:?}")))?;
    let params_d = d
        .get_item("params")?
        .ok_or_else(|| value_error("blocks", "missing params"))?;
    let params_d = params_d.cast::<PyDict>()?;
    let mut params = Vec::new();
    for name in dist.param_names() {
        let v = floats(params_d, name)?.ok_or_else(|| {
            value_error(
                "blocks",
                format!("{role_s}: {dist_s} needs parameter {name}"),
            )
        })?;
        params.push(v);
    }
    let konst = floats(d, "const")?
        .ok_or_else(|| value_error("blocks", format!("{role_s}: missing const")))?;
    let tr_s: String = d
        .get_item("transform")?
        .ok_or_else(|| value_error("blocks", "missing transform"))?
        .extract()?;
    let transform = Transform::from_name(&tr_s)
        .ok_or_else(|| value_error("blocks", format!("unknown transform {tr_s:?}")))?;
    Ok(Block {
        role,
        size,
        dist,
        params,
        konst,
        transform,
        lower: floats(d, "lower")?.unwrap_or_default(),
        upper: floats(d, "upper")?.unwrap_or_default(),
    })
}

/// The fused MMM log-density (see `rust/logp.rs`).
#[pyclass(name = "MmmProblem", module = "fastmmm._core")]
pub struct PyMmmProblem {
    inner: Arc<MmmProblem>,
}

impl PyMmmProblem {
    /// The Rust problem, shared with the sampler's threads.
    pub(crate) fn shared(&self) -> Arc<MmmProblem> {
        Arc::clone(&self.inner)
    }
}

/// The model's options: the same for every dataset the problem is fitted to
/// (`ModelLayout.structure` in Python).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct StructureArg {
    adstock: String,
    l_max: usize,
    normalize: bool,
    saturation: String,
    intercept: bool,
    trend: bool,
    likelihood: String,
    direct_beta: bool,
    relative_param: i64,
    fixed_saturation: Vec<(usize, f64)>,
    #[pyo3(default = 1)]
    groups: usize,
    #[pyo3(default)]
    grouped: bool,
    /// The time-varying parts ("intercept", "media") with one GP per group.
    #[pyo3(default)]
    tvp_per_group: Vec<String>,
}

const STRUCTURE_KEYS: &[&str] = &[
    "adstock",
    "l_max",
    "normalize",
    "saturation",
    "intercept",
    "trend",
    "likelihood",
    "direct_beta",
    "relative_param",
    "fixed_saturation",
    "groups",
    "grouped",
    "tvp_per_group",
];

/// One time-varying part's HSGP bases: phi (B * T, m), omega (B * m,), col_ms (B * m,); B = 1
/// (one basis shared by the part's GP rows) or one per GP row (a ragged panel's groups).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct TvpArg<'py> {
    phi: PyReadonlyArray2<'py, f64>,
    omega: PyReadonlyArray1<'py, f64>,
    col_ms: PyReadonlyArray1<'py, f64>,
}

/// The lift tests, scaled (`fastpath.lift_arrays`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct LiftArg<'py> {
    channel: Vec<usize>,
    x0: PyReadonlyArray1<'py, f64>,
    x1: PyReadonlyArray1<'py, f64>,
    periods: PyReadonlyArray1<'py, f64>,
    delta: PyReadonlyArray1<'py, f64>,
    se: PyReadonlyArray1<'py, f64>,
    /// Periods of constant spend that reach the steady state; `with_data` keeps the problem's
    /// own when this is left out.
    #[pyo3(default)]
    steady: Option<usize>,
    #[pyo3(default)]
    group: Option<Vec<usize>>,
    /// Level lifts (log target): each test's weights over the dates.
    #[pyo3(default)]
    weights: Option<PyReadonlyArray1<'py, f64>>,
}

const LIFT_KEYS: &[&str] = &[
    "channel", "x0", "x1", "periods", "delta", "se", "steady", "group", "weights",
];

/// The data of one fit (`fastpath.problem_data`); a panel's arrays are group-major.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct DataArg<'py> {
    y: PyReadonlyArray1<'py, f64>,
    spend: PyReadonlyArray2<'py, f64>,
    trend_t: PyReadonlyArray1<'py, f64>,
    fourier: PyReadonlyArray2<'py, f64>,
    controls: PyReadonlyArray2<'py, f64>,
    kappa_scale: PyReadonlyArray1<'py, f64>,
    #[pyo3(default)]
    roas_scale: Option<PyReadonlyArray1<'py, f64>>,
    #[pyo3(default)]
    lift: Option<LiftArg<'py>>,
    #[pyo3(default)]
    tvp_intercept: Option<TvpArg<'py>>,
    #[pyo3(default)]
    tvp_media: Option<TvpArg<'py>>,
    /// Per group `(start, end)`: the periods it is observed (ragged panels).
    #[pyo3(default)]
    window: Option<Vec<(usize, usize)>>,
}

const DATA_KEYS: &[&str] = &[
    "y",
    "spend",
    "trend_t",
    "fourier",
    "controls",
    "kappa_scale",
    "roas_scale",
    "lift",
    "tvp_intercept",
    "tvp_media",
    "window",
];

/// A dict of named fields: a key outside `known` is a typo the caller should hear about.
fn dict_of<'a, 'py>(
    arg: &str,
    obj: &'a Bound<'py, PyAny>,
    known: &[&str],
) -> PyResult<&'a Bound<'py, PyDict>> {
    let d = obj
        .cast::<PyDict>()
        .map_err(|_| value_error(arg, "must be a dict"))?;
    for k in d.keys() {
        let k: String = k.extract()?;
        if !known.contains(&k.as_str()) {
            return Err(value_error(
                arg,
                format!("unknown key {k:?}; known: {}", known.join(", ")),
            ));
        }
    }
    Ok(d)
}

fn extract_data<'py>(obj: &Bound<'py, PyAny>) -> PyResult<DataArg<'py>> {
    let d = dict_of("data", obj, DATA_KEYS)?;
    if let Some(l) = d.get_item("lift")? {
        if !l.is_none() {
            dict_of("data['lift']", &l, LIFT_KEYS)?;
        }
    }
    for part in ["tvp_intercept", "tvp_media"] {
        if let Some(t) = d.get_item(part)? {
            if !t.is_none() {
                dict_of(part, &t, &["phi", "omega", "col_ms"])?;
            }
        }
    }
    d.extract()
}

fn tvp_from(name: &str, t: Option<TvpArg<'_>>) -> PyResult<Option<TvpData>> {
    let Some(t) = t else { return Ok(None) };
    let (phi, _, m) = vec2(name, &t.phi)?;
    let omega = vec1(name, &t.omega)?;
    if m == 0 || omega.len() % m != 0 {
        return Err(value_error(
            name,
            "omega has m values per basis (m = phi's columns)",
        ));
    }
    Ok(Some(TvpData {
        phi,
        omega,
        col_ms: vec1(name, &t.col_ms)?,
        m,
    }))
}

fn lift_from(l: LiftArg<'_>, default_steady: usize) -> PyResult<LiftData> {
    Ok(LiftData {
        channel: l.channel,
        group: l.group.unwrap_or_default(),
        x0: vec1("lift.x0", &l.x0)?,
        x1: vec1("lift.x1", &l.x1)?,
        periods: vec1("lift.periods", &l.periods)?,
        delta: vec1("lift.delta", &l.delta)?,
        se: vec1("lift.se", &l.se)?,
        steady: l.steady.unwrap_or(default_steady),
        weights: match l.weights {
            Some(w) => vec1("lift.weights", &w)?,
            None => Vec::new(),
        },
    })
}

/// The Rust data of `d` (without its lift tests, which `with_data` may keep) and
/// the dimensions (T, C, F, K) it implies for `groups` groups.
fn data_from(d: &DataArg<'_>, groups: usize) -> PyResult<(MmmData, [usize; 4])> {
    let (spend_v, rows, c) = vec2("spend", &d.spend)?;
    if groups == 0 || rows % groups != 0 {
        return Err(value_error(
            "spend",
            format!("{rows} rows cannot be split into {groups} equal groups"),
        ));
    }
    let t = rows / groups;
    let (four_v, t2, f) = vec2("fourier", &d.fourier)?;
    let (ctrl_v, t3, k) = vec2("controls", &d.controls)?;
    if t2 != rows || t3 != rows {
        return Err(value_error(
            "fourier/controls",
            "must have as many rows as spend",
        ));
    }
    let data = MmmData {
        y: vec1("y", &d.y)?,
        spend: spend_v,
        trend_t: vec1("trend_t", &d.trend_t)?,
        fourier: four_v,
        controls: ctrl_v,
        kappa_scale: vec1("kappa_scale", &d.kappa_scale)?,
        roas_scale: match &d.roas_scale {
            Some(r) => vec1("roas_scale", r)?,
            None => Vec::new(),
        },
        lift: LiftData::default(),
        tvp: [None, None],
        window: d.window.clone().unwrap_or_default(),
    };
    Ok((data, [t, c, f, k]))
}

fn structure_from(st: StructureArg, [t, c, f, k]: [usize; 4]) -> PyResult<MmmStructure> {
    let akind = super::adstock_kind("adstock", &st.adstock)?;
    let skind = super::saturation_kind("saturation", &st.saturation)?;
    let student_t = match st.likelihood.as_str() {
        "normal" => false,
        "studentt" => true,
        _ => return Err(value_error("likelihood", "must be 'normal' or 'studentt'")),
    };
    let mut tvp_per_group = [false, false];
    for part in &st.tvp_per_group {
        match part.as_str() {
            "intercept" => tvp_per_group[0] = true,
            "media" => tvp_per_group[1] = true,
            _ => {
                return Err(value_error(
                    "tvp_per_group",
                    format!("unknown time-varying part {part:?}; known: intercept, media"),
                ))
            }
        }
    }
    let mut fixed = [None, None];
    for (i, v) in st.fixed_saturation {
        if i >= 2 {
            return Err(value_error("fixed_saturation", "index must be 0 or 1"));
        }
        fixed[i] = Some(v);
    }
    Ok(MmmStructure {
        g: st.groups,
        grouped: st.grouped,
        t,
        c,
        f,
        k,
        media: Media {
            adstock: Adstock::new(akind, st.l_max, st.normalize)?,
            saturation: skind,
        },
        relative: usize::try_from(st.relative_param).ok(),
        fixed_saturation: fixed,
        intercept: st.intercept,
        trend: st.trend,
        student_t,
        direct_beta: st.direct_beta,
        tvp_per_group,
    })
}

#[pymethods]
impl PyMmmProblem {
    /// `MmmProblem(structure, data, blocks)`: the model's options (dict, see
    /// `StructureArg`), one fit's data (dict, see `DataArg`; optional `lift`,
    /// `tvp_intercept`, `tvp_media` sub-dicts) and the parameter blocks.
    #[new]
    fn new(
        structure: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        blocks: &Bound<'_, PyList>,
    ) -> PyResult<Self> {
        let st: StructureArg = dict_of("structure", structure, STRUCTURE_KEYS)?.extract()?;
        let mut d = extract_data(data)?;
        let groups = st.groups;
        let (mut md, dims) = data_from(&d, groups)?;
        if let Some(l) = d.lift.take() {
            md.lift = lift_from(l, 1)?;
        }
        md.tvp = [
            tvp_from("tvp_intercept", d.tvp_intercept.take())?,
            tvp_from("tvp_media", d.tvp_media.take())?,
        ];
        let s = structure_from(st, dims)?;
        let mut bs = Vec::new();
        for item in blocks.iter() {
            bs.push(parse_block(item.cast::<PyDict>()?)?);
        }
        Ok(PyMmmProblem {
            inner: Arc::new(MmmProblem::new(s, md, bs)?),
        })
    }

    /// Same structure and priors with new data (another brand, a refresh). The
    /// lift tests and time-varying bases are kept unless new ones are given.
    fn with_data(&self, data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut d = extract_data(data)?;
        let old = &self.inner.data;
        let new_lift = d.lift.take();
        if old.lift.is_empty() && new_lift.is_some() {
            return Err(value_error(
                "lift",
                "this problem was built without lift tests; build a new one to add them",
            ));
        }
        // Level lifts (log target) read the level at their dates: new data needs them anew, and
        // a problem keeps its kind of lift.
        let level = !old.lift.weights.is_empty();
        let new_weights = new_lift.as_ref().map(|l| l.weights.is_some());
        if level && new_weights != Some(true) {
            return Err(value_error(
                "lift.weights",
                "this problem's lift tests read the level at their dates (log target): give the \
                 tests again with their weights",
            ));
        }
        if !level && new_weights == Some(true) {
            return Err(value_error(
                "lift.weights",
                "this problem's lift tests are additive; build a new problem for level lifts",
            ));
        }
        let (mut md, _) = data_from(&d, self.inner.s.g)?;
        md.lift = match new_lift {
            Some(l) => lift_from(l, old.lift.steady.max(1))?,
            None => old.lift.clone(),
        };
        // A ROAS-parameterised problem needs the new data's roas_scale (it depends on the spend).
        if md.roas_scale.is_empty() && !old.roas_scale.is_empty() {
            return Err(value_error(
                "roas_scale",
                "a ROAS-parameterised problem needs roas_scale with its new data",
            ));
        }
        let tvp = [
            tvp_from("tvp_intercept", d.tvp_intercept.take())?,
            tvp_from("tvp_media", d.tvp_media.take())?,
        ];
        for (p, new) in tvp.into_iter().enumerate() {
            md.tvp[p] = new.or_else(|| old.tvp[p].clone());
        }
        Ok(PyMmmProblem {
            inner: Arc::new(self.inner.with_data(md)?),
        })
    }

    /// Number of groups (geos / brands) in one evaluation.
    #[getter]
    fn groups(&self) -> usize {
        self.inner.s.g
    }

    #[getter]
    fn n_dim(&self) -> usize {
        self.inner.n_dim()
    }

    #[getter]
    fn n_expanded(&self) -> usize {
        self.inner.n_expanded()
    }

    /// Names and shapes of the deterministics appended after the parameters by `expand`.
    #[getter]
    fn deterministics(&self) -> Vec<(String, Vec<usize>)> {
        self.inner
            .deterministics()
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect()
    }

    /// (log-density, gradient) at unconstrained `x`.
    fn logp_dlogp<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<(f64, Bound<'py, PyArray1<f64>>)> {
        let xs = vec1("x", &x)?;
        let mut g = vec![0.0; self.inner.n_dim()];
        let lp = py.detach(|| self.inner.logp_grad(&xs, &mut g))?;
        Ok((lp, g.into_pyarray(py)))
    }

    /// Evaluates the log-density and gradient `n` times at `x` (GIL released) and
    /// returns the last log-density: a caller timing this call measures the
    /// evaluation alone, without Python or array allocation per call.
    fn logp_repeat(&self, py: Python<'_>, x: PyReadonlyArray1<'_, f64>, n: usize) -> PyResult<f64> {
        let xs = vec1("x", &x)?;
        let mut g = vec![0.0; self.inner.n_dim()];
        let inner = &self.inner;
        py.detach(|| {
            let mut lp = f64::NAN;
            for _ in 0..n {
                lp = inner.logp_grad(&xs, &mut g)?;
            }
            Ok::<f64, crate::error::KernelError>(lp)
        })
        .map_err(Into::into)
    }

    /// Constrained parameters followed by the deterministics.
    fn expand<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let xs = vec1("x", &x)?;
        let mut out = vec![0.0; self.inner.n_expanded()];
        py.detach(|| self.inner.expand(&xs, &mut out))?;
        Ok(out.into_pyarray(py))
    }

    #[getter]
    fn logp_address(&self) -> usize {
        crate::ffi::fastmmm_v1_mmm_logp as *const () as usize
    }

    #[getter]
    fn expand_address(&self) -> usize {
        crate::ffi::fastmmm_v1_mmm_expand as *const () as usize
    }

    /// Address of the Rust problem: the `user_data` pointer for the C functions.
    /// Valid while this object is alive.
    #[getter]
    fn user_data_address(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}
