//! `MmmProblem`: the fused log-density problem as a Python object. It owns the
//! Rust problem in a `Box`, so the address handed to nutpie as user data stays
//! valid for the object's lifetime.

use super::errors::value_error;
use crate::kernels::adstock::{Adstock, AdstockKind};
use crate::kernels::fused::Media;
use crate::kernels::saturation::SaturationKind;
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

fn data_from(
    y: PyReadonlyArray1<'_, f64>,
    spend: PyReadonlyArray2<'_, f64>,
    trend_t: PyReadonlyArray1<'_, f64>,
    fourier: PyReadonlyArray2<'_, f64>,
    controls: PyReadonlyArray2<'_, f64>,
    kappa_scale: PyReadonlyArray1<'_, f64>,
    groups: usize,
) -> PyResult<(MmmData, [usize; 4])> {
    let (spend_v, rows, c) = vec2("spend", &spend)?;
    if groups == 0 || rows % groups != 0 {
        return Err(value_error(
            "spend",
            format!("{rows} rows cannot be split into {groups} equal groups"),
        ));
    }
    let t = rows / groups;
    let (four_v, t2, f) = vec2("fourier", &fourier)?;
    let (ctrl_v, t3, k) = vec2("controls", &controls)?;
    if t2 != rows || t3 != rows {
        return Err(value_error(
            "fourier/controls",
            "must have as many rows as spend",
        ));
    }
    let data = MmmData {
        y: vec1("y", &y)?,
        spend: spend_v,
        trend_t: vec1("trend_t", &trend_t)?,
        fourier: four_v,
        controls: ctrl_v,
        kappa_scale: vec1("kappa_scale", &kappa_scale)?,
        roas_scale: Vec::new(),
        lift: LiftData::default(),
        tvp: [None, None],
    };
    Ok((data, [t, c, f, k]))
}

/// One time-varying part's basis: phi (T, m), omega (m,), col_ms (m,), all given or none.
fn tvp_from(
    name: &str,
    phi: Option<PyReadonlyArray2<'_, f64>>,
    omega: Option<PyReadonlyArray1<'_, f64>>,
    col_ms: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<Option<TvpData>> {
    match (phi, omega, col_ms) {
        (None, None, None) => Ok(None),
        (Some(phi), Some(omega), Some(col_ms)) => {
            let (phi, _, m) = vec2(name, &phi)?;
            let omega = vec1(name, &omega)?;
            if omega.len() != m {
                return Err(value_error(name, "phi has a column per omega"));
            }
            Ok(Some(TvpData {
                phi,
                omega,
                col_ms: vec1(name, &col_ms)?,
            }))
        }
        _ => Err(value_error(name, "give phi, omega and col_ms, or none")),
    }
}

/// The lift-test arrays, all given or none.
#[allow(clippy::too_many_arguments)]
fn lift_from(
    channel: Option<Vec<usize>>,
    group: Option<Vec<usize>>,
    x0: Option<PyReadonlyArray1<'_, f64>>,
    x1: Option<PyReadonlyArray1<'_, f64>>,
    periods: Option<PyReadonlyArray1<'_, f64>>,
    delta: Option<PyReadonlyArray1<'_, f64>>,
    se: Option<PyReadonlyArray1<'_, f64>>,
    steady: usize,
    weights: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<Option<LiftData>> {
    match (channel, x0, x1, periods, delta, se) {
        (None, None, None, None, None, None) if weights.is_some() => Err(value_error(
            "lift_weights",
            "given without lift tests (lift_channel, lift_x0, ...)",
        )),
        (None, None, None, None, None, None) => Ok(None),
        (Some(channel), Some(x0), Some(x1), Some(periods), Some(delta), Some(se)) => {
            Ok(Some(LiftData {
                channel,
                group: group.unwrap_or_default(),
                x0: vec1("lift_x0", &x0)?,
                x1: vec1("lift_x1", &x1)?,
                periods: vec1("lift_periods", &periods)?,
                delta: vec1("lift_delta", &delta)?,
                se: vec1("lift_se", &se)?,
                steady,
                weights: match weights {
                    Some(w) => vec1("lift_weights", &w)?,
                    None => Vec::new(),
                },
            }))
        }
        _ => Err(value_error(
            "lift",
            "give all of lift_channel, lift_x0, lift_x1, lift_periods, lift_delta, lift_se or none",
        )),
    }
}

#[pymethods]
impl PyMmmProblem {
    #[new]
    #[pyo3(signature = (y, spend, trend_t, fourier, controls, kappa_scale, adstock, l_max, normalize, saturation,
                        intercept, trend, likelihood, direct_beta, relative_param, fixed_saturation, blocks,
                        groups=1, grouped=false, lift_channel=None, lift_x0=None, lift_x1=None,
                        lift_periods=None, lift_delta=None, lift_se=None, lift_steady=1, lift_group=None, lift_weights=None,
                        tvp_intercept_phi=None, tvp_intercept_omega=None, tvp_intercept_col_ms=None,
                        tvp_media_phi=None, tvp_media_omega=None, tvp_media_col_ms=None, roas_scale=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        y: PyReadonlyArray1<'_, f64>,
        spend: PyReadonlyArray2<'_, f64>,
        trend_t: PyReadonlyArray1<'_, f64>,
        fourier: PyReadonlyArray2<'_, f64>,
        controls: PyReadonlyArray2<'_, f64>,
        kappa_scale: PyReadonlyArray1<'_, f64>,
        adstock: &str,
        l_max: usize,
        normalize: bool,
        saturation: &str,
        intercept: bool,
        trend: bool,
        likelihood: &str,
        direct_beta: bool,
        relative_param: i64,
        fixed_saturation: Vec<(usize, f64)>,
        blocks: &Bound<'_, PyList>,
        groups: usize,
        grouped: bool,
        lift_channel: Option<Vec<usize>>,
        lift_x0: Option<PyReadonlyArray1<'_, f64>>,
        lift_x1: Option<PyReadonlyArray1<'_, f64>>,
        lift_periods: Option<PyReadonlyArray1<'_, f64>>,
        lift_delta: Option<PyReadonlyArray1<'_, f64>>,
        lift_se: Option<PyReadonlyArray1<'_, f64>>,
        lift_steady: usize,
        lift_group: Option<Vec<usize>>,
        lift_weights: Option<PyReadonlyArray1<'_, f64>>,
        tvp_intercept_phi: Option<PyReadonlyArray2<'_, f64>>,
        tvp_intercept_omega: Option<PyReadonlyArray1<'_, f64>>,
        tvp_intercept_col_ms: Option<PyReadonlyArray1<'_, f64>>,
        tvp_media_phi: Option<PyReadonlyArray2<'_, f64>>,
        tvp_media_omega: Option<PyReadonlyArray1<'_, f64>>,
        tvp_media_col_ms: Option<PyReadonlyArray1<'_, f64>>,
        roas_scale: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let (mut data, [t, c, f, k]) =
            data_from(y, spend, trend_t, fourier, controls, kappa_scale, groups)?;
        if let Some(r) = roas_scale {
            data.roas_scale = vec1("roas_scale", &r)?;
        }
        if let Some(l) = lift_from(
            lift_channel,
            lift_group,
            lift_x0,
            lift_x1,
            lift_periods,
            lift_delta,
            lift_se,
            lift_steady,
            lift_weights,
        )? {
            data.lift = l;
        }
        data.tvp = [
            tvp_from(
                "tvp_intercept",
                tvp_intercept_phi,
                tvp_intercept_omega,
                tvp_intercept_col_ms,
            )?,
            tvp_from(
                "tvp_media",
                tvp_media_phi,
                tvp_media_omega,
                tvp_media_col_ms,
            )?,
        ];
        let akind = match adstock {
            "geometric" => AdstockKind::Geometric,
            "delayed" => AdstockKind::Delayed,
            "weibull_pdf" => AdstockKind::WeibullPdf,
            "weibull_cdf" => AdstockKind::WeibullCdf,
            _ => return Err(value_error("adstock", format!("unknown kind {adstock:?}"))),
        };
        let skind = match saturation {
            "hill" => SaturationKind::Hill,
            "logistic" => SaturationKind::Logistic,
            "michaelis_menten" => SaturationKind::MichaelisMenten,
            "tanh" => SaturationKind::Tanh,
            _ => {
                return Err(value_error(
                    "saturation",
                    format!("unknown kind {saturation:?}"),
                ))
            }
        };
        let student_t = match likelihood {
            "normal" => false,
            "studentt" => true,
            _ => return Err(value_error("likelihood", "must be 'normal' or 'studentt'")),
        };
        let mut fixed = [None, None];
        for (i, v) in fixed_saturation {
            if i >= 2 {
                return Err(value_error("fixed_saturation", "index must be 0 or 1"));
            }
            fixed[i] = Some(v);
        }
        let s = MmmStructure {
            g: groups,
            grouped,
            t,
            c,
            f,
            k,
            media: Media {
                adstock: Adstock::new(akind, l_max, normalize)?,
                saturation: skind,
            },
            relative: usize::try_from(relative_param).ok(),
            fixed_saturation: fixed,
            intercept,
            trend,
            student_t,
            direct_beta,
        };
        let mut bs = Vec::new();
        for item in blocks.iter() {
            bs.push(parse_block(item.cast::<PyDict>()?)?);
        }
        Ok(PyMmmProblem {
            inner: Arc::new(MmmProblem::new(s, data, bs)?),
        })
    }

    /// Same structure and priors with new data (another brand, a refresh). The
    /// lift tests are kept unless new ones are given (all six arrays).
    #[pyo3(signature = (y, spend, trend_t, fourier, controls, kappa_scale, lift_channel=None, lift_x0=None,
                        lift_x1=None, lift_periods=None, lift_delta=None, lift_se=None, lift_group=None,
                        lift_weights=None, tvp_intercept_phi=None, tvp_intercept_omega=None, tvp_intercept_col_ms=None,
                        tvp_media_phi=None, tvp_media_omega=None, tvp_media_col_ms=None, roas_scale=None))]
    #[allow(clippy::too_many_arguments)]
    fn with_data(
        &self,
        y: PyReadonlyArray1<'_, f64>,
        spend: PyReadonlyArray2<'_, f64>,
        trend_t: PyReadonlyArray1<'_, f64>,
        fourier: PyReadonlyArray2<'_, f64>,
        controls: PyReadonlyArray2<'_, f64>,
        kappa_scale: PyReadonlyArray1<'_, f64>,
        lift_channel: Option<Vec<usize>>,
        lift_x0: Option<PyReadonlyArray1<'_, f64>>,
        lift_x1: Option<PyReadonlyArray1<'_, f64>>,
        lift_periods: Option<PyReadonlyArray1<'_, f64>>,
        lift_delta: Option<PyReadonlyArray1<'_, f64>>,
        lift_se: Option<PyReadonlyArray1<'_, f64>>,
        lift_group: Option<Vec<usize>>,
        lift_weights: Option<PyReadonlyArray1<'_, f64>>,
        tvp_intercept_phi: Option<PyReadonlyArray2<'_, f64>>,
        tvp_intercept_omega: Option<PyReadonlyArray1<'_, f64>>,
        tvp_intercept_col_ms: Option<PyReadonlyArray1<'_, f64>>,
        tvp_media_phi: Option<PyReadonlyArray2<'_, f64>>,
        tvp_media_omega: Option<PyReadonlyArray1<'_, f64>>,
        tvp_media_col_ms: Option<PyReadonlyArray1<'_, f64>>,
        roas_scale: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let tvp = [
            tvp_from(
                "tvp_intercept",
                tvp_intercept_phi,
                tvp_intercept_omega,
                tvp_intercept_col_ms,
            )?,
            tvp_from(
                "tvp_media",
                tvp_media_phi,
                tvp_media_omega,
                tvp_media_col_ms,
            )?,
        ];
        let steady = self.inner.data.lift.steady;
        if self.inner.data.lift.is_empty() && lift_channel.is_some() {
            return Err(value_error(
                "lift_channel",
                "this problem was built without lift tests; build a new one to add them",
            ));
        }
        // Level lifts (log target) read the level at their dates: new data needs them anew, and
        // a problem keeps its kind of lift.
        let level = !self.inner.data.lift.weights.is_empty();
        if level && lift_weights.is_none() {
            return Err(value_error(
                "lift_weights",
                "this problem's lift tests read the level at their dates (log target): give the \
                 tests again with their weights",
            ));
        }
        if !level && lift_weights.is_some() {
            return Err(value_error(
                "lift_weights",
                "this problem's lift tests are additive; build a new problem for level lifts",
            ));
        }
        let lift = lift_from(
            lift_channel,
            lift_group,
            lift_x0,
            lift_x1,
            lift_periods,
            lift_delta,
            lift_se,
            steady.max(1),
            lift_weights,
        )?
        .unwrap_or_else(|| self.inner.data.lift.clone());
        let (mut data, _) = data_from(
            y,
            spend,
            trend_t,
            fourier,
            controls,
            kappa_scale,
            self.inner.s.g,
        )?;
        data.lift = lift;
        // A ROAS-parameterised problem needs the new data's roas_scale (it depends on the spend).
        data.roas_scale = match roas_scale {
            Some(r) => vec1("roas_scale", &r)?,
            None if self.inner.data.roas_scale.is_empty() => Vec::new(),
            None => {
                return Err(value_error(
                    "roas_scale",
                    "a ROAS-parameterised problem needs roas_scale with its new data",
                ))
            }
        };
        for (p, new) in tvp.into_iter().enumerate() {
            data.tvp[p] = new.or_else(|| self.inner.data.tvp[p].clone());
        }
        Ok(PyMmmProblem {
            inner: Arc::new(self.inner.with_data(data)?),
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
