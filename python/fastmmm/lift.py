"""Lift-test calibration: experiment results as an extra likelihood on the media curves.

A lift test (geo experiment, go-dark / holdout test, spend ramp) measures the
incremental sales caused by changing one channel's spend for a while. Such a
measurement is causal where the time series alone is not (a confounder that
drives both spend and sales biases the regression), so it enters the model as
an additional observation of the channel's response curve, as
pymc-marketing's ``add_lift_test_measurements`` does.

Columns of a lift-test table (DataFrame or CSV file, one row per test;
other columns are ignored; names are matched case-insensitively)
------------------------------------------------------------------------
``channel``
    One of the model's channels.
``spend_before``
    ``x0``: spend per period (week for weekly data, day for daily) in the
    control condition, in the channel's original units (those of the data's
    spend column).
``spend_after`` or ``delta_spend``
    ``x1``: spend per period in the test condition, or the change
    ``x1 - x0``. If both are given they must agree.
``lift``
    ``delta_y``: the measured incremental target (sales) over the whole test,
    ``sales(x1) - sales(x0)`` summed over its periods, in target units
    (negative for a spend cut or a go-dark test).
``lift_se``
    ``sigma``: the standard error of ``lift`` (> 0), same units.
``periods``, ``weeks`` or ``days``; or ``start`` and ``end``
    The test's length, per row: a number of model periods, of weeks or of
    days (converted to the data's frequency; one of them per row, the others
    empty), or else the first and last calendar day of the test (inclusive;
    ``(end - start + 1 day) / period`` periods). Where a row gives a count
    and dates, the count is used and the dates are kept as labels.

The likelihood
--------------
On the model's scaled space (target / ``target_scale``, spend /
``channel_scale``), the modelled lift of test ``i`` on channel ``c`` is::

    lift_model[i] = periods[i] * beta[c] * (f_c(x1[i] / s_c) - f_c(x0[i] / s_c)) * target_scale

with ``f_c`` the channel's ``saturation(adstock(.))`` at its steady state:
the fused media transform of a spend held constant for ``l_max + 1``
periods, evaluated at the last one (with normalised adstock weights, the
default, this is ``saturation(x)``; otherwise ``saturation(x * sum(w))``),
and ``s_c`` the channel's spend scale. So a lift test is read as a sustained
per-period change of spend, at the response curve the model fits over the
training window, with carry-over inside the test window. With a
time-varying media multiplier (``spec.time_varying_media``) the lift is
also multiplied by the multiplier averaged over the test's dates (``start``
to ``end`` where they overlap the training data, else over all training
dates). The observation is::

    lift[i] ~ Normal(lift_model[i], lift_se[i])

(written on the scaled space, which only shifts the log-density by a
constant). The modelled lift is the deterministic ``lift_model`` (dim
``lift_test``, scaled) of the posterior.

On the multiplicative model (``spec.log_target``) the lift is in sales units
at the test's own dates: with ``w[i, t]`` the same time weights (uniform over
the test's dates inside the training data, else over all dates)::

    lift_model[i] = periods[i] * sum_t w[i, t] * L[t, c] * (exp(b1[i, t]) - exp(b0[i, t]))

``L[t, c] = exp(mu[t] - m[t, c] + sigma^2 / 2)`` the expected (scaled) level at
date ``t`` without channel ``c``'s own term ``m[t, c]``, and ``b{0,1}[i, t] =
beta[c] * f_c(x{0,1}[i] / s_c) * multiplier[t]`` the channel's term at the
test's steady spends. The fused Rust log-density has the same term (equal to
the PyMC model to 1e-9, ``tests/test_lift.py``), and so does the hierarchical model
(each test reads its own group's level).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastmmm.data import DataError

__all__ = [
    "LIFT_DATA_NAMES",
    "LiftTests",
    "add_lift_likelihood",
    "lift_data",
    "lift_summary",
    "modelled_lift",
    "read_lift_tests",
    "read_table",
    "rows_text",
    "steady_length",
]

#: Names of the model's lift-test data containers (swapped by ``with_data`` on refits);
#: ``lift_time_weights`` only with a time-varying media multiplier.
LIFT_DATA_NAMES = (
    "lift_x0",
    "lift_x1",
    "lift_periods",
    "lift_delta",
    "lift_se",
    "lift_time_weights",
)

_PERIOD_DAYS = {"W": 7, "D": 1}
_SHOW = 5


@dataclass(frozen=True, eq=False)
class LiftTests:
    """Validated lift tests in original units, one entry per test (``n`` tests).

    Attributes
    ----------
    channel : tuple of str, (n,)
    spend_before, spend_after : np.ndarray, (n,)
        Per-period spend ``x0`` and ``x1``, original units.
    lift, lift_se : np.ndarray, (n,)
        Measured incremental target over the test and its standard error.
    periods : np.ndarray, (n,)
        Test length in model periods (may be fractional).
    start, end : tuple of (str or None), (n,)
        ISO dates of the test when given: labels, and the dates over which a time-varying
        media multiplier, or a log-target model's level, is averaged.
    """

    channel: tuple[str, ...]
    spend_before: np.ndarray
    spend_after: np.ndarray
    lift: np.ndarray
    lift_se: np.ndarray
    periods: np.ndarray
    start: tuple[str | None, ...]
    end: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.channel)

    def to_dict(self) -> dict[str, list]:
        """JSON-able form (column lists); inverse :meth:`from_dict`."""
        return {
            "channel": list(self.channel),
            "spend_before": [float(v) for v in self.spend_before],
            "spend_after": [float(v) for v in self.spend_after],
            "lift": [float(v) for v in self.lift],
            "lift_se": [float(v) for v in self.lift_se],
            "periods": [float(v) for v in self.periods],
            "start": list(self.start),
            "end": list(self.end),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LiftTests:
        n = len(d["channel"])

        def f(k):
            return np.asarray(d[k], dtype=np.float64)

        return cls(
            channel=tuple(str(c) for c in d["channel"]),
            spend_before=f("spend_before"),
            spend_after=f("spend_after"),
            lift=f("lift"),
            lift_se=f("lift_se"),
            periods=f("periods"),
            start=tuple(d.get("start") or [None] * n),
            end=tuple(d.get("end") or [None] * n),
        )

    def to_frame(self) -> pd.DataFrame:
        """The tests as a DataFrame with the documented column names (and ``periods``)."""
        return pd.DataFrame(self.to_dict())


# ---------------------------------------------------------------------------- validation
def rows_text(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:_SHOW])
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return f"row{'s' if len(idx) > 1 else ''} {shown}{more}"


def read_table(obj) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        return obj.copy()
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isfile(path):
            raise DataError(f"lift_tests: CSV file not found: {path}")
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DataError(f"lift_tests: cannot read CSV file {path}: {e}") from None
    if isinstance(obj, (list, tuple)) and all(isinstance(r, Mapping) for r in obj):
        return pd.DataFrame(list(obj))
    raise DataError(
        "lift_tests: must be a pandas DataFrame, a path to a CSV file or a list of dicts, "
        f"got {type(obj).__name__}"
    )


def _numeric(df: pd.DataFrame, col: str, allow_nan: bool = False) -> np.ndarray:
    raw = df[col]
    v = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(v) & raw.notna().to_numpy()
    if bad.any():
        raise DataError(f"lift_tests: column {col!r} has non-numeric values in {rows_text(bad)}")
    if np.isnan(v).any() and not allow_nan:
        raise DataError(f"lift_tests: column {col!r} has missing (NaN) values in {rows_text(np.isnan(v))}")
    if np.isinf(v).any():
        raise DataError(f"lift_tests: column {col!r} has infinite values in {rows_text(np.isinf(v))}")
    return v


def read_lift_tests(obj, spec, *, frequency: str = "W") -> LiftTests | None:
    """Validate a lift-test table (see the module docstring for its columns).

    Parameters
    ----------
    obj : DataFrame, path to a CSV file, list of dicts, LiftTests or None
    spec : ModelSpec
        Its channels are the valid ``channel`` values.
    frequency : {"W", "D"}
        The data's frequency, to convert weeks / days / dates to periods.

    Returns
    -------
    LiftTests, or None when ``obj`` is None.

    Raises
    ------
    DataError
        Naming the problem and the offending rows (0-based): missing columns,
        unknown channel, non-numeric / NaN / infinite values, negative spend,
        ``spend_after == spend_before``, ``lift_se <= 0``, a non-positive or
        missing test length, unparseable dates or ``end < start``.
    """
    if obj is None:
        return None
    channels = tuple(spec.channels)
    if isinstance(obj, LiftTests):
        obj = obj.to_frame()
    df = read_table(obj)
    df.columns = [str(c).strip().lower() for c in df.columns]
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise DataError(f"lift_tests: duplicate columns {dup}")
    if len(df) == 0:
        raise DataError("lift_tests: the table has no rows")
    missing = [c for c in ("channel", "spend_before", "lift", "lift_se") if c not in df.columns]
    if "spend_after" not in df.columns and "delta_spend" not in df.columns:
        missing.append("spend_after (or delta_spend)")
    counts = [c for c in ("periods", "weeks", "days") if c in df.columns]
    dates = [c for c in ("start", "end") if c in df.columns]
    if not counts and len(dates) < 2:
        missing.append("periods, weeks or days (or start and end)")
    if missing:
        raise DataError(
            f"lift_tests: missing column(s) {', '.join(missing)}; have {list(df.columns)}. Expected "
            "channel, spend_before, spend_after or delta_spend, lift, lift_se, and periods / weeks / days "
            "or start and end"
        )
    ch = df["channel"]
    if ch.isna().any():
        raise DataError(
            f"lift_tests: column 'channel' has missing values in {rows_text(ch.isna().to_numpy())}"
        )
    ch = ch.astype(str).str.strip()
    unknown = ~ch.isin(channels).to_numpy()
    if unknown.any():
        names = sorted(set(ch[unknown]))
        raise DataError(
            f"lift_tests: unknown channel(s) {names} in {rows_text(unknown)}; the model's channels are {list(channels)}"
        )

    x0 = _numeric(df, "spend_before")
    if "spend_after" in df.columns:
        x1 = _numeric(df, "spend_after")
        if "delta_spend" in df.columns:
            dx = _numeric(df, "delta_spend")
            off = ~np.isclose(x0 + dx, x1, rtol=1e-9, atol=1e-9)
            if off.any():
                raise DataError(
                    f"lift_tests: spend_after != spend_before + delta_spend in {rows_text(off)} (give one of them)"
                )
    else:
        x1 = x0 + _numeric(df, "delta_spend")
    for name, v in (("spend_before", x0), ("spend_after", x1)):
        if (v < 0).any():
            raise DataError(
                f"lift_tests: negative {name} in {rows_text(v < 0)} (spend per period must be >= 0)"
            )
    same = x1 == x0
    if same.any():
        raise DataError(
            f"lift_tests: spend_after equals spend_before in {rows_text(same)}; a lift test needs a change in spend"
        )
    lift = _numeric(df, "lift")
    se = _numeric(df, "lift_se")
    if (se <= 0).any():
        raise DataError(f"lift_tests: lift_se must be > 0, not in {rows_text(se <= 0)}")

    period_days = _PERIOD_DAYS.get(frequency)
    if period_days is None:
        raise ValueError(f"frequency: must be 'W' or 'D', got {frequency!r}")
    n = len(df)
    # Test length, row by row: a count (periods / weeks / days), else the dates.
    periods = np.full(n, np.nan)
    given = np.zeros(n, dtype=int)
    for col in counts:
        v = _numeric(df, col, allow_nan=True)
        has = ~np.isnan(v)
        bad = has & (v <= 0)
        if bad.any():
            raise DataError(f"lift_tests: {col} must be > 0, not in {rows_text(bad)}")
        periods = np.where(
            has, v * {"periods": period_days, "weeks": 7, "days": 1}[col] / period_days, periods
        )
        given += has
    if (given > 1).any():
        raise DataError(
            f"lift_tests: {rows_text(given > 1)} give{'s' if (given > 1).sum() == 1 else ''} more than one of "
            f"the columns {counts}; give one test length per row"
        )
    start: list[str | None] = [None] * n
    end: list[str | None] = [None] * n
    need = given == 0
    if len(dates) == 1 and need.any():
        other = "end" if dates[0] == "start" else "start"
        raise DataError(
            f"lift_tests: column {dates[0]!r} given without {other!r} (and no periods / weeks / days)"
        )
    if len(dates) == 2:
        sd = pd.to_datetime(df["start"], errors="coerce").reset_index(drop=True)
        ed = pd.to_datetime(df["end"], errors="coerce").reset_index(drop=True)
        for name, v in (("start", sd), ("end", ed)):
            bad = v.isna().to_numpy() & need
            if bad.any():
                raise DataError(
                    f"lift_tests: column {name!r} has missing or unparseable dates in {rows_text(bad)} "
                    "(and no periods / weeks / days there)"
                )
        both = (sd.notna() & ed.notna()).to_numpy()
        back = both & (ed < sd).to_numpy()
        if back.any():
            raise DataError(f"lift_tests: end is before start in {rows_text(back)}")
        days = ((ed - sd).dt.days + 1).to_numpy(dtype=np.float64)
        periods = np.where(need, days / period_days, periods)
        start = [ts.date().isoformat() if ok else None for ts, ok in zip(sd, both)]
        end = [ts.date().isoformat() if ok else None for ts, ok in zip(ed, both)]
    if np.isnan(periods).any():
        raise DataError(
            f"lift_tests: {rows_text(np.isnan(periods))} ha{'s' if np.isnan(periods).sum() == 1 else 've'} no test "
            "length: give periods, weeks or days, or start and end"
        )
    return LiftTests(
        channel=tuple(ch),
        spend_before=x0,
        spend_after=x1,
        lift=lift,
        lift_se=se,
        periods=periods,
        start=tuple(start),
        end=tuple(end),
    )


# ---------------------------------------------------------------------------- the model
def lift_data(lift: LiftTests, data) -> dict[str, np.ndarray]:
    """Values of the model's lift-test data containers for ``data``'s scales.

    Returns
    -------
    dict with ``lift_x0``, ``lift_x1`` (n, C): the scaled per-period spend of
    each test in its channel's column, 0 elsewhere (so the other channels
    contribute nothing to the difference); ``lift_periods`` (n,);
    ``lift_delta``, ``lift_se`` (n,): lift and its standard error divided by
    the target scale; ``lift_time_weights`` (n, T): each test's averaging
    weights over the training dates for a time-varying media multiplier
    (uniform over the test's dates where they overlap the data, else over
    all dates).
    """
    channels = list(data.spec.channels)
    scale = np.asarray(data.scales.channel_scale, dtype=np.float64)
    ts = float(data.scales.target_scale)
    n, c = len(lift), len(channels)
    x0, x1 = np.zeros((n, c)), np.zeros((n, c))
    for i, ch in enumerate(lift.channel):
        j = channels.index(ch)
        x0[i, j] = lift.spend_before[i] / scale[j]
        x1[i, j] = lift.spend_after[i] / scale[j]
    dates = pd.DatetimeIndex(data.dates)
    w = np.full((n, len(dates)), 1.0 / max(len(dates), 1))
    for i, (a, b) in enumerate(zip(lift.start, lift.end)):
        if a is not None and b is not None:
            inside = np.asarray((dates >= pd.Timestamp(a)) & (dates <= pd.Timestamp(b)))
            if inside.any():
                w[i] = inside / inside.sum()
    return {
        "lift_x0": x0,
        "lift_x1": x1,
        "lift_periods": np.asarray(lift.periods, dtype=np.float64),
        "lift_delta": np.asarray(lift.lift, dtype=np.float64) / ts,
        "lift_se": np.asarray(lift.lift_se, dtype=np.float64) / ts,
        "lift_time_weights": w,
    }


def steady_length(design) -> int:
    # Enough constant periods to fill every adstock tap (weibull_cdf has l_max + 1).
    return int(design.l_max or 1) + 1


def add_lift_likelihood(model, spec, data, lift: LiftTests) -> None:
    """Add the lift-test observations to a model built by :func:`fastmmm.model.build_model`.

    Adds the coordinate ``lift_test`` (0..n-1), data containers
    :data:`LIFT_DATA_NAMES`, the deterministic ``lift_model`` (n,) (scaled
    modelled lift) and the observed ``lift_obs ~ Normal(lift_model,
    lift_se)``. Reads the model's own parameters (``beta``, the adstock and
    saturation parameters and ``kappa_scale`` per channel group), so the
    curve is exactly the one of the time-series likelihood.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from fastmmm.kernels import SATURATION_PARAMS
    from fastmmm.layout import FIXED_SATURATION_PARAMS, media_designs
    from fastmmm.ops.media import media_transform

    arrays = lift_data(lift, data)
    n = len(lift)
    with model:
        model.add_coord("lift_test", np.arange(n))
        x0 = pm.Data("lift_x0", arrays["lift_x0"], dims=("lift_test", "channel"))
        x1 = pm.Data("lift_x1", arrays["lift_x1"], dims=("lift_test", "channel"))
        periods = pm.Data("lift_periods", arrays["lift_periods"], dims="lift_test")
        delta = pm.Data("lift_delta", arrays["lift_delta"], dims="lift_test")
        se = pm.Data("lift_se", arrays["lift_se"], dims="lift_test")
        xs = pt.concatenate([x0, x1], axis=0)  # (2n, C)
        sats, order = [], []
        for d in media_designs(spec):
            cols = list(d.channels)
            x = xs if not d.label else xs[:, cols]
            steady = steady_length(d)
            # (2n, L, C_g): each test's spend held constant for L periods; the last period is the steady state.
            x3 = pt.broadcast_to(x[:, None, :], (x.shape[0], steady, x.shape[1]))
            a_params = tuple(model[d.var(f"adstock_{p}")] for p in d.adstock_params)
            fixed = FIXED_SATURATION_PARAMS.get(d.saturation, {})
            s_params = []
            for p in SATURATION_PARAMS[d.saturation]:
                if p in fixed:
                    s_params.append(pt.as_tensor_variable(np.full(len(cols), fixed[p])))
                    continue
                v = model[d.var(f"saturation_{p}")]
                s_params.append(v * model[d.var("kappa_scale")] if p == d.relative_param else v)
            y = media_transform(
                x3,
                d.adstock,
                d.saturation,
                a_params,
                tuple(s_params),
                l_max=d.l_max,
                normalize=d.normalize,
            )
            sats.append(y[:, -1, :])
            order += cols
        sat = sats[0] if len(sats) == 1 else pt.concatenate(sats, axis=1)[:, np.argsort(order)]
        n_sym = x0.shape[0]
        if spec.log_target:
            lift_model = _log_target_lift(model, sat[:n_sym], sat[n_sym:], periods, arrays)
            lift_model = pm.Deterministic("lift_model", lift_model, dims="lift_test")
            pm.Normal("lift_obs", mu=lift_model, sigma=se, observed=delta, dims="lift_test")
            return
        diff = sat[n_sym:] - sat[:n_sym]  # (n, C); zero outside each test's channel
        lift_model = periods * (diff * model["beta"]).sum(axis=1)
        if "media_multiplier" in model.named_vars:
            # Time-varying media effectiveness: the test sees the multiplier of its own dates.
            tw = pm.Data("lift_time_weights", arrays["lift_time_weights"], dims=("lift_test", "date"))
            lift_model = lift_model * pt.dot(tw, model["media_multiplier"])
        lift_model = pm.Deterministic("lift_model", lift_model, dims="lift_test")
        pm.Normal("lift_obs", mu=lift_model, sigma=se, observed=delta, dims="lift_test")


def _channel_mask(arrays) -> np.ndarray:
    """(n, C) one-hot of each test's channel (its x0 / x1 columns are the only non-zero ones;
    a test from 0 to 0 spend has no column: it is then all zeros and its lift 0)."""
    x = arrays["lift_x0"] + arrays["lift_x1"]
    return (x > 0).astype(np.float64)


def _log_target_lift(model, sat0, sat1, periods, arrays):
    """The scaled modelled lift of a log-target model (module docstring), PyMC graph."""
    import pymc as pm
    import pytensor.tensor as pt

    # The test's channel from its spend columns (the containers a refit swaps), as _channel_mask.
    mask = pt.gt(model["lift_x0"] + model["lift_x1"], 0.0).astype("float64")
    tw = pm.Data("lift_time_weights", arrays["lift_time_weights"], dims=("lift_test", "date"))
    beta = (mask * model["beta"]).sum(axis=1)  # (n,)
    f0, f1 = (sat0 * mask).sum(axis=1), (sat1 * mask).sum(axis=1)
    own = pt.dot(mask, model["channel_contribution"].T)  # (n, T): the test channel's term
    level = pt.exp(model["mu"][None, :] - own + 0.5 * model["sigma"] ** 2)
    mult = model["media_multiplier"][None, :] if "media_multiplier" in model.named_vars else 1.0
    b0, b1 = (beta * f0)[:, None] * mult, (beta * f1)[:, None] * mult
    return periods * (tw * level * (pt.exp(b1) - pt.exp(b0))).sum(axis=1)


def modelled_lift(result, lift: LiftTests | None = None) -> np.ndarray:
    """Posterior draws of each test's modelled lift, in target units, computed in numpy.

    Uses the Rust kernels (:func:`fastmmm.kernels.media_transform`) on the
    posterior parameters, independently of the PyMC graph.

    Returns
    -------
    (S, n) array.
    """
    from fastmmm import kernels as K

    lift = lift if lift is not None else result.lift_tests
    if lift is None:
        raise ValueError("this result has no lift tests")
    channels = list(result.channels)
    scale = np.asarray(result.data.scales.channel_scale, dtype=np.float64)
    beta = result.draws("beta")  # (S, C)
    s = beta.shape[0]
    out = np.zeros((s, len(lift)))
    f0, f1 = np.zeros_like(out), np.zeros_like(out)  # steady-state curves (log target)
    for d in result.media_designs():
        cols = list(d.channels)
        a, sp = result.kernel_params(d)
        steady = steady_length(d)
        for i, ch in enumerate(lift.channel):
            j = channels.index(ch)
            if j not in cols:
                continue
            k = cols.index(j)
            ys = []
            for x in (lift.spend_before[i], lift.spend_after[i]):
                xs = np.zeros(len(cols))
                xs[k] = x / scale[j]
                x3 = np.broadcast_to(xs, (s, steady, len(cols)))
                y, _ = K.media_transform(
                    x3, d.adstock, d.saturation, a, sp, l_max=d.l_max, normalize=d.normalize
                )
                ys.append(y[:, -1, k])
            if result.spec.log_target:
                f0[:, i], f1[:, i] = ys
            out[:, i] = lift.periods[i] * beta[:, j] * (ys[1] - ys[0])
    if result.spec.log_target:
        return _log_target_lift_draws(result, lift, f0, f1)
    if "media_multiplier" in result.posterior:
        out *= result.draws("media_multiplier") @ lift_data(lift, result.data)["lift_time_weights"].T
    return out * float(result.data.scales.target_scale)


def _log_target_lift_draws(result, lift, f0, f1) -> np.ndarray:
    """(S, n) modelled lift of a log-target result in target units (module docstring), numpy."""
    arrays = lift_data(lift, result.data)
    mask = _channel_mask(arrays)
    beta = result.draws("beta") @ mask.T  # (S, n)
    mu, sigma = result.draws("mu"), result.draws("sigma")
    own = np.einsum("stc,nc->snt", result.draws("channel_contribution"), mask)
    level = np.exp(mu[:, None, :] - own + 0.5 * sigma[:, None, None] ** 2)
    mult = result.draws("media_multiplier")[:, None, :] if "media_multiplier" in result.posterior else 1.0
    gain = np.exp((beta * f1)[:, :, None] * mult) - np.exp((beta * f0)[:, :, None] * mult)
    tw = arrays["lift_time_weights"][None]
    out = np.asarray(lift.periods, dtype=float)[None] * (tw * level * gain).sum(axis=2)
    return out * float(result.data.scales.target_scale)


def lift_summary(result, interval: float = 0.95) -> list[dict]:
    """Per test: the inputs, the observed lift and the posterior modelled lift (mean, low, high)."""
    lift = result.lift_tests
    if lift is None:
        return []
    post = result.posterior
    if "lift_model" in post and post["lift_model"].shape[-1] == len(lift):
        draws = result.draws("lift_model") * float(result.data.scales.target_scale)
    else:
        draws = modelled_lift(result, lift)
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    rows = []
    for i in range(len(lift)):
        q = np.quantile(draws[:, i], [lo, hi])
        rows.append(
            {
                "channel": lift.channel[i],
                "spend_before": float(lift.spend_before[i]),
                "spend_after": float(lift.spend_after[i]),
                "periods": float(lift.periods[i]),
                "start": lift.start[i],
                "end": lift.end[i],
                "lift": float(lift.lift[i]),
                "lift_se": float(lift.lift_se[i]),
                "lift_model": {
                    "mean": float(draws[:, i].mean()),
                    "low": float(q[0]),
                    "high": float(q[1]),
                },
            }
        )
    return rows
