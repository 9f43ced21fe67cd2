"""Input data: validation, scaling and the design features of a fastmmm model.

:func:`prepare` checks a DataFrame (or CSV file) against a
:class:`~fastmmm.spec.ModelSpec` before any modelling and raises
:class:`DataError` naming the problem (columns, first offending dates / rows).
It returns :class:`PreparedData`: the raw and scaled arrays, the Fourier and
trend features and the :class:`Scales` used, which
:meth:`PreparedData.transform_new` reuses for new rows (forecasts, holdout)
and which serialise with :meth:`Scales.to_dict` for saved models.

Shapes: ``T`` rows (dates), ``C`` channels, ``K`` controls, ``F = 2 *
spec.yearly_seasonality`` Fourier features.

Scaling
-------
* target: ``y_scaled = y / target_scale`` with ``target_scale = max|y|``
  (``target_scaling="max"``) or ``mean|y|`` (``"mean"``). With
  ``spec.log_target``: ``y_scaled = log(y / target_scale)`` with ``target_scale =
  mean(y)`` (so the level is near 0 and the amplitude's ROAS scale keeps its meaning:
  a log-scale effect ``m`` at the mean level is ``m * target_scale`` in sales).
* channels: ``spend_scaled[:, c] = spend[:, c] / channel_scale[c]``, the
  column's max or mean (``channel_scaling``).
* controls: standardised, ``(x - mean) / sd`` (population sd, ``ddof=0``).
* trend: ``(date - first training date) / period / (T_train - 1)``: 0 at the
  first and 1 at the last training date, and extrapolating linearly for
  later dates (period = 7 days for weekly, 1 day for daily data).
* Fourier: ``sin(2 pi k d / 365.25)`` for ``k = 1..order`` then the cosines,
  ``d`` the day of the year (1-based), ordered ``[sin_1..sin_n, cos_1..cos_n]``
  as in pymc-marketing.

Checks (all raise :class:`DataError`)
--------------------------------------
missing columns, non-numeric value columns, numeric / unparseable / missing
dates, duplicate dates, NaN or inf in target / channels / controls, negative
spend, too few rows (default ``max(2 * l_max, 26)``), a frequency that is
neither weekly nor daily (inferred from the median step), weekly dates not all
on one weekday, missing dates (gaps), an all-zero channel, a constant target,
``target <= 0`` with ``log_target``, a constant control, and a column used in
two roles.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fastmmm.spec import ModelSpec

__all__ = [
    "DataError",
    "PreparedData",
    "Scales",
    "default_min_rows",
    "fourier_features",
    "fourier_names",
    "panel_grid",
    "prepare",
    "split_holdout",
]

_PERIOD_DAYS = {"W": 7, "D": 1}
_SHOW = 5  # offending dates / rows listed in a message


#: Largest absolute value a data column may hold, and the smallest its largest value may be:
#: beyond them float64 arithmetic on the column (squares, sums over periods) overflows or underflows.
MAX_MAGNITUDE = 1e30
MIN_MAGNITUDE = 1e-30


class DataError(ValueError):
    """The input data cannot be modelled; the message names the columns and rows at fault."""


def default_min_rows(spec: ModelSpec) -> int:
    """Default minimum number of rows: ``max(2 * spec.l_max, 26)`` (half a year of weeks)."""
    return max(2 * spec.l_max, 26)


def fourier_names(order: int) -> tuple[str, ...]:
    """Names of the ``2 * order`` Fourier features: ``("sin_1", .., "sin_n", "cos_1", .., "cos_n")``."""
    return tuple(f"sin_{k}" for k in range(1, order + 1)) + tuple(f"cos_{k}" for k in range(1, order + 1))


def fourier_features(dates: pd.DatetimeIndex, order: int) -> np.ndarray:
    """Yearly Fourier features of ``dates``.

    Parameters
    ----------
    dates : pd.DatetimeIndex, shape (T,)
    order : int
        Fourier order ``n`` (0 gives a ``(T, 0)`` array).

    Returns
    -------
    np.ndarray, shape (T, 2 * order)
        ``[sin(2 pi k d / 365.25) for k=1..n] + [cos(...) for k=1..n]`` with
        ``d`` the (1-based) day of the year.
    """
    d = np.asarray(pd.DatetimeIndex(dates).day_of_year, dtype=np.float64)
    x = 2.0 * np.pi * d[:, None] / 365.25 * np.arange(1, order + 1, dtype=np.float64)[None, :]
    return np.concatenate([np.sin(x), np.cos(x)], axis=1)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------- scales
@dataclass(frozen=True, eq=False)
class Scales:
    """The transformation from raw to model units, fitted on training data.

    Attributes
    ----------
    target_scale : float
        ``y_scaled = y / target_scale`` (with ``log_target``: ``y_scaled =
        log(y / target_scale)``, ``target_scale = mean(y)``).
    channel_scale : np.ndarray, shape (C,)
        ``spend_scaled = spend / channel_scale``.
    control_mean, control_sd : np.ndarray, shape (K,)
        ``controls_scaled = (controls - control_mean) / control_sd``.
    log_target : bool
    frequency : {"W", "D"}
    origin : pd.Timestamp
        First training date (trend 0).
    trend_span : float
        Number of periods from the first to the last training date
        (``T_train - 1``; trend 1 at the last training date).
    channels, controls : tuple of str
        Column names, ``(C,)`` and ``(K,)``.
    """

    target_scale: float
    channel_scale: np.ndarray
    control_mean: np.ndarray
    control_sd: np.ndarray
    log_target: bool
    frequency: str
    origin: pd.Timestamp
    trend_span: float
    channels: tuple[str, ...]
    controls: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("channel_scale", "control_mean", "control_sd"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "origin", pd.Timestamp(self.origin))
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "controls", tuple(self.controls))

    @property
    def period(self) -> pd.Timedelta:
        """The time step: 7 days (weekly) or 1 day (daily)."""
        return pd.Timedelta(days=_PERIOD_DAYS[self.frequency])

    # --- forward / back transforms
    def scale_target(self, y: Any) -> np.ndarray:
        """Raw target -> model units; ``(T,)`` -> ``(T,)`` (any shape)."""
        y = np.asarray(y, dtype=np.float64)
        return np.log(y / self.target_scale) if self.log_target else y / self.target_scale

    def unscale_target(self, y_scaled: Any) -> np.ndarray:
        """Model units -> raw target (``exp`` with ``log_target``); any shape.

        For additive contributions (not levels) without ``log_target``,
        multiplying by ``target_scale`` is the same thing.
        """
        y_scaled = np.asarray(y_scaled, dtype=np.float64)
        return (np.exp(y_scaled) if self.log_target else y_scaled) * self.target_scale

    def scale_spend(self, spend: Any) -> np.ndarray:
        """Raw spend ``(..., C)`` -> scaled spend ``(..., C)``."""
        return np.asarray(spend, dtype=np.float64) / self.channel_scale

    def unscale_spend(self, spend_scaled: Any) -> np.ndarray:
        """Scaled spend ``(..., C)`` -> raw spend ``(..., C)``."""
        return np.asarray(spend_scaled, dtype=np.float64) * self.channel_scale

    def scale_controls(self, controls: Any) -> np.ndarray:
        """Raw controls ``(..., K)`` -> standardised controls ``(..., K)``."""
        return (np.asarray(controls, dtype=np.float64) - self.control_mean) / self.control_sd

    def unscale_controls(self, controls_scaled: Any) -> np.ndarray:
        """Standardised controls ``(..., K)`` -> raw controls ``(..., K)``."""
        return np.asarray(controls_scaled, dtype=np.float64) * self.control_sd + self.control_mean

    def trend_at(self, dates: Any) -> np.ndarray:
        """Trend feature of ``dates`` ``(T,)`` -> ``(T,)``: 0 at the first, 1 at the last training date."""
        dates = pd.DatetimeIndex(dates)
        steps = (dates - self.origin) / self.period
        return np.asarray(steps, dtype=np.float64) / self.trend_span

    # --- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``Scales.from_dict(s.to_dict()) == s``."""
        return {
            "target_scale": float(self.target_scale),
            "channel_scale": self.channel_scale.tolist(),
            "control_mean": self.control_mean.tolist(),
            "control_sd": self.control_sd.tolist(),
            "log_target": bool(self.log_target),
            "frequency": self.frequency,
            "origin": self.origin.isoformat(),
            "trend_span": float(self.trend_span),
            "channels": list(self.channels),
            "controls": list(self.controls),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scales:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        return cls(
            target_scale=float(d["target_scale"]),
            channel_scale=np.asarray(d["channel_scale"], dtype=np.float64),
            control_mean=np.asarray(d["control_mean"], dtype=np.float64).reshape(-1),
            control_sd=np.asarray(d["control_sd"], dtype=np.float64).reshape(-1),
            log_target=bool(d["log_target"]),
            frequency=str(d["frequency"]),
            origin=pd.Timestamp(d["origin"]),
            trend_span=float(d["trend_span"]),
            channels=tuple(d["channels"]),
            controls=tuple(d["controls"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scales):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------- prepared data
@dataclass(frozen=True, eq=False)
class PreparedData:
    """Validated, sorted and scaled model inputs (arrays are read-only float64).

    Attributes
    ----------
    spec : ModelSpec
    dates : pd.DatetimeIndex, shape (T,)
        Sorted ascending.
    frequency : {"W", "D"}
    y : np.ndarray, shape (T,), or None
        Raw target; None for new data without the target column (forecasts).
    spend : np.ndarray, shape (T, C)
        Raw spend, columns in ``spec.channels`` order.
    controls : np.ndarray, shape (T, K)
        Raw controls, in ``spec.controls`` order.
    y_scaled : np.ndarray, shape (T,), or None
        ``y / target_scale``, or ``log(y / target_scale)`` with ``spec.log_target``.
    spend_scaled : np.ndarray, shape (T, C)
    controls_scaled : np.ndarray, shape (T, K)
    fourier : np.ndarray, shape (T, 2 * spec.yearly_seasonality)
        ``[sin_1..sin_n, cos_1..cos_n]``.
    trend : np.ndarray, shape (T,)
    scales : Scales
    """

    spec: ModelSpec
    dates: pd.DatetimeIndex
    frequency: str
    y: np.ndarray | None
    spend: np.ndarray
    controls: np.ndarray
    y_scaled: np.ndarray | None
    spend_scaled: np.ndarray
    controls_scaled: np.ndarray
    fourier: np.ndarray
    trend: np.ndarray
    scales: Scales

    @property
    def n_obs(self) -> int:
        """Number of rows ``T``."""
        return len(self.dates)

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """``spec.channels``, ``(C,)``."""
        return self.spec.channels

    @property
    def control_names(self) -> tuple[str, ...]:
        """``spec.controls``, ``(K,)``."""
        return self.spec.controls

    @property
    def fourier_names(self) -> tuple[str, ...]:
        """Names of the Fourier columns, ``(2 * order,)``."""
        return fourier_names(self.spec.yearly_seasonality)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (raw values, dates and scales); floats round-trip exactly."""
        return {
            "spec": self.spec.to_dict(),
            "dates": [d.isoformat() for d in self.dates],
            "dates_unit": self.dates.unit,
            "frequency": self.frequency,
            "y": None if self.y is None else [float(v) for v in self.y],
            "spend": np.asarray(self.spend, dtype=float).tolist(),
            "controls": np.asarray(self.controls, dtype=float).tolist(),
            "scales": self.scales.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreparedData:
        """Inverse of :meth:`to_dict` (scaled arrays are recomputed with the saved scales)."""
        spec = ModelSpec.from_dict(d["spec"])
        n_c, n_k = len(spec.channels), len(spec.controls)
        raw = _Raw(
            dates=pd.DatetimeIndex(pd.to_datetime(d["dates"])).as_unit(d.get("dates_unit", "ns")),
            frequency=d["frequency"],
            y=None if d["y"] is None else np.asarray(d["y"], dtype=np.float64),
            spend=np.asarray(d["spend"], dtype=np.float64).reshape(-1, n_c),
            # An explicit row count: with no controls, reshape(-1, 0) is ambiguous and raises.
            controls=np.asarray(d["controls"], dtype=np.float64).reshape(len(d["dates"]), n_k),
        )
        return _build(raw, spec, Scales.from_dict(d["scales"]))

    def transform_new(self, df_new: pd.DataFrame | str | os.PathLike) -> PreparedData:
        """Validate and scale new rows with these (training) scales.

        For out-of-sample forecasts or holdout scoring. The same checks as
        :func:`prepare` apply, except that any number of rows (>= 1) is
        allowed, the target column is optional (``y`` / ``y_scaled`` are then
        None), channels may be all zero and target / controls may be
        constant. Dates must lie on the training grid (same frequency and,
        for weekly data, weekday) without gaps among themselves.

        Parameters
        ----------
        df_new : pd.DataFrame or path to a CSV file
            Columns: the spec's date column, channels, controls, optionally the target.

        Returns
        -------
        PreparedData
            With ``T_new`` rows and ``scales`` equal to this object's.
        """
        raw = _validate(_read(df_new), self.spec, scales=self.scales, min_rows=1)
        return _build(raw, self.spec, self.scales)


@dataclass(frozen=True)
class _Raw:
    dates: pd.DatetimeIndex  # (T,) sorted
    frequency: str
    y: np.ndarray | None  # (T,)
    spend: np.ndarray  # (T, C)
    controls: np.ndarray  # (T, K)


# ---------------------------------------------------------------------------- panels
def panel_grid(datas, names=None) -> tuple[pd.DatetimeIndex, list[tuple[int, int]]]:
    """The dates of a panel (every group's dates together, on one regular grid) and each
    group's window on them, ``[start, end)``: groups may start late or stop early.
    ``names``: the groups' names, for messages.

    Raises
    ------
    DataError
        Groups on different grids (another weekday or frequency), or a gap in the panel's
        dates (no group observed there).
    """
    freqs = {d.frequency for d in datas}
    if len(freqs) > 1:
        raise DataError(f"groups have different frequencies ({', '.join(sorted(freqs))})")
    step = pd.Timedelta(days=_PERIOD_DAYS[datas[0].frequency])
    first = min(pd.Timestamp(d.dates[0]) for d in datas)
    last = max(pd.Timestamp(d.dates[-1]) for d in datas)
    dates = pd.date_range(first, last, freq=step)
    windows = []
    for i, d in enumerate(datas):
        start = (pd.Timestamp(d.dates[0]) - first) / step
        if start != int(start):
            who = f"group {names[i]!r}" if names is not None else f"group {i}"
            raise DataError(
                f"{who}: dates {d.dates[0].date()}..{d.dates[-1].date()} are not on the panel's grid "
                f"(every {step.days} day(s) from {first.date()})"
            )
        windows.append((int(start), int(start) + len(d.dates)))
    covered = np.zeros(len(dates), dtype=bool)
    for a, b in windows:
        covered[a:b] = True
    if not covered.all():
        gap = dates[~covered]
        raise DataError(
            f"no group is observed on {len(gap)} date(s) from {gap[0].date()} ({_SHOW} at most: "
            f"{', '.join(str(x.date()) for x in gap[:_SHOW])}); a panel's dates must be one grid"
        )
    return dates, windows


# ---------------------------------------------------------------------------- public functions
def prepare(
    df: pd.DataFrame | str | os.PathLike,
    spec: ModelSpec,
    *,
    min_rows: int | None = None,
    allow_absent_channels: bool = False,
) -> PreparedData:
    """Validate ``df`` against ``spec`` and compute the model's scaled inputs.

    Parameters
    ----------
    df : pd.DataFrame or path to a CSV file
        One row per date; the spec's date, target, channel and control columns
        (other columns are ignored). Rows may be in any order (they are
        sorted by date); the caller's frame is never modified.
    spec : ModelSpec
    min_rows : int, optional
        Minimum number of rows (>= 2); default :func:`default_min_rows`,
        ``max(2 * spec.l_max, 26)``.
    allow_absent_channels : bool
        A channel may have no spend at all (one group of a panel, where the channel
        does not run); its scale is then 1.

    Returns
    -------
    PreparedData
        ``T`` rows sorted by date, scales fitted on these rows.

    Raises
    ------
    DataError
        The data fail a check (see the module docstring); the message names
        the columns and the first offending dates / rows (row = 0-based
        position in the input).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    if min_rows is None:
        min_rows = default_min_rows(spec)
    elif isinstance(min_rows, bool) or not isinstance(min_rows, (int, np.integer)) or min_rows < 2:
        raise ValueError(f"min_rows must be an integer >= 2, got {min_rows!r}")
    raw = _validate(_read(df), spec, scales=None, min_rows=int(min_rows))
    scales = _fit_scales(raw, spec, allow_absent=allow_absent_channels)
    return _build(raw, spec, scales)


def split_holdout(
    prepared: PreparedData, weeks: int, *, min_rows: int | None = None, allow_absent_channels: bool = False
) -> tuple[PreparedData, PreparedData]:
    """Split off the last ``weeks`` weeks as a holdout set.

    The training part gets its own scales (fitted on the training rows only,
    so nothing leaks from the holdout); the holdout is scaled with the
    training scales, so its trend continues past 1.

    Parameters
    ----------
    prepared : PreparedData
        With a target (``prepared.y`` not None).
    weeks : int
        Holdout length in weeks (>= 1): ``weeks`` rows of weekly data,
        ``7 * weeks`` rows of daily data.
    min_rows : int, optional
        Minimum number of training rows; default :func:`default_min_rows`.

    Returns
    -------
    train, holdout : PreparedData
        ``T - n_holdout`` and ``n_holdout`` rows; ``holdout.scales == train.scales``.

    Raises
    ------
    DataError
        Too few training rows left, or the training part fails a check that
        depends on the rows (all-zero channel, constant target or control).
    """
    if isinstance(weeks, bool) or not isinstance(weeks, (int, np.integer)) or weeks < 1:
        raise ValueError(f"weeks must be an integer >= 1, got {weeks!r}")
    if prepared.y is None:
        raise DataError("split_holdout needs data with the target column")
    spec = prepared.spec
    if min_rows is None:
        min_rows = default_min_rows(spec)
    n_hold = int(weeks) * (7 // _PERIOD_DAYS[prepared.frequency])
    n_train = prepared.n_obs - n_hold
    if n_train < min_rows:
        raise DataError(
            f"holdout of {weeks} week(s) ({n_hold} rows) leaves {max(n_train, 0)} training rows "
            f"of {prepared.n_obs}; at least {min_rows} are needed"
        )

    def part(sl: slice) -> _Raw:
        return _Raw(
            dates=prepared.dates[sl],
            frequency=prepared.frequency,
            y=prepared.y[sl],
            spend=prepared.spend[sl],
            controls=prepared.controls[sl],
        )

    train_raw, hold_raw = part(slice(0, n_train)), part(slice(n_train, None))
    scales = _fit_scales(train_raw, spec, what="training part", allow_absent=allow_absent_channels)
    return _build(train_raw, spec, scales), _build(hold_raw, spec, scales)


# ---------------------------------------------------------------------------- internals
def _read(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if isinstance(df, (str, os.PathLike)):
        path = os.fspath(df)
        if not os.path.isfile(path):
            raise DataError(f"CSV file not found: {path}")
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read CSV file {path}: {e}") from None
    raise DataError(f"data must be a pandas DataFrame or a path to a CSV file, got {type(df).__name__}")


def _fmt_date(ts: pd.Timestamp) -> str:
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()


def _where(dates: pd.DatetimeIndex, rows: np.ndarray, mask: np.ndarray) -> str:
    """'N rows, first at 2020-01-06 (row 3), ...' for the True entries of mask (sorted order)."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(f"{_fmt_date(dates[i])} (row {rows[i]})" for i in idx[:_SHOW])
    more = f", ... ({len(idx) - _SHOW} more)" if len(idx) > _SHOW else ""
    return f"{len(idx)} row(s), first at {shown}{more}"


def _check_roles(spec: ModelSpec) -> None:
    seen: dict[str, str] = {}
    for role, cols in (
        ("date", (spec.date_column,)),
        ("target", (spec.target,)),
        ("channel", spec.channels),
        ("control", spec.controls),
    ):
        for c in cols:
            if c in seen:
                raise DataError(f"column {c!r} is used as both {seen[c]} and {role}")
            seen[c] = role


def _numeric(df: pd.DataFrame, cols: list[str]) -> dict[str, np.ndarray]:
    """Columns as float64 arrays (input order); DataError listing every non-numeric column."""
    out: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for c in cols:
        s = df[c]
        if pd.api.types.is_bool_dtype(s.dtype) or (
            pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype)
        ):
            out[c] = np.array(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, copy=True)
            continue
        textual = pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)
        textual = textual or isinstance(s.dtype, pd.CategoricalDtype)
        conv = pd.to_numeric(s.astype(object), errors="coerce") if textual else None
        offending = (
            np.flatnonzero(np.asarray(conv.isna() & s.notna())) if conv is not None else np.arange(len(s))
        )
        if conv is not None and len(offending) == 0:
            out[c] = np.array(conv.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, copy=True)
            continue
        ex = ", ".join(f"{s.iloc[i]!r} (row {i})" for i in offending[:3])
        bad.append(f"{c!r} (dtype {s.dtype}; e.g. {ex})")
    if bad:
        raise DataError(f"non-numeric column(s): {'; '.join(bad)}")
    return out


def _date_format(s: pd.Series) -> str | None:
    """The format of string dates, guessed from the first one as pandas itself would, or
    "mixed" (each parsed on its own) where no guess works. Passing it explicitly keeps
    pandas from warning, so no warning filter has to be swapped (that is process-wide
    state, and batches parse dates on several threads at once)."""
    from pandas.tseries.api import guess_datetime_format

    first = s.dropna()
    if first.empty or not isinstance(first.iloc[0], str):
        return None
    return guess_datetime_format(first.iloc[0]) or "mixed"


def _parse_dates(df: pd.DataFrame, col: str) -> pd.DatetimeIndex:
    s = df[col]
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        raise DataError(
            f"date column {col!r} is numeric (dtype {s.dtype}); it must hold dates such as '2024-01-01'"
        )
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        parsed = s
    else:
        try:
            parsed = pd.to_datetime(s, errors="coerce", format=_date_format(s))
        except (TypeError, ValueError, OverflowError):
            parsed = pd.Series([pd.NaT] * len(s))
    bad = np.asarray(parsed.isna())
    if bad.any():
        idx = np.flatnonzero(bad)
        ex = ", ".join(f"row {i}: {s.iloc[i]!r}" for i in idx[:_SHOW])
        more = f", ... ({len(idx) - _SHOW} more)" if len(idx) > _SHOW else ""
        raise DataError(f"date column {col!r} has {len(idx)} missing or unparseable date(s): {ex}{more}")
    dates = pd.DatetimeIndex(parsed)
    if dates.tz is not None:
        dates = dates.tz_localize(None)
    return dates.as_unit("ns")  # pandas >= 3 may parse to "s"/"us"; integer steps below assume ns


def _check_grid(dates: pd.DatetimeIndex, rows: np.ndarray, freq: str, col: str) -> None:
    """Consecutive dates must be exactly one period apart; DataError listing gaps / irregular steps."""
    period = pd.Timedelta(days=_PERIOD_DAYS[freq])
    name = "weekly" if freq == "W" else "daily"
    if freq == "W":
        wd = np.asarray(dates.day_of_week)
        off = wd != wd[0]
        if off.any():
            i = np.flatnonzero(off)
            ex = ", ".join(f"{_fmt_date(dates[j])} ({dates[j].day_name()}, row {rows[j]})" for j in i[:_SHOW])
            raise DataError(
                f"weekly dates in {col!r} must all fall on the same weekday; the first date "
                f"{_fmt_date(dates[0])} is a {dates[0].day_name()} but {len(i)} date(s) are not: {ex}"
            )
    steps = np.diff(dates.asi8)
    p = period.value
    irregular = np.flatnonzero(steps % p != 0)
    if len(irregular):
        ex = ", ".join(f"{_fmt_date(dates[j])} -> {_fmt_date(dates[j + 1])}" for j in irregular[:_SHOW])
        raise DataError(
            f"{name} dates in {col!r} are irregular (steps not a multiple of {period.days} day(s)): {ex}"
        )
    gaps = np.flatnonzero(steps > p)
    if len(gaps):
        missing: list[pd.Timestamp] = []
        n_missing = 0
        for j in gaps:
            k = int(steps[j] // p)
            n_missing += k - 1
            missing += [dates[j] + period * m for m in range(1, k) if len(missing) < _SHOW]
        more = f", ... ({n_missing - len(missing)} more)" if n_missing > len(missing) else ""
        raise DataError(
            f"{name} series in {col!r} has {n_missing} missing date(s): "
            f"{', '.join(_fmt_date(d) for d in missing)}{more}"
        )


def _validate(df: pd.DataFrame, spec: ModelSpec, *, scales: Scales | None, min_rows: int) -> _Raw:
    """All checks; returns sorted raw arrays. ``scales`` given = new data for a fitted model."""
    training = scales is None
    _check_roles(spec)
    dup_cols = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if dup_cols:
        raise DataError(f"duplicate column name(s) in the data: {', '.join(map(repr, dup_cols))}")
    has_target = spec.target in df.columns
    needed = [spec.date_column, spec.target, *spec.channels, *spec.controls]
    if not training and not has_target:
        needed.remove(spec.target)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s): {', '.join(map(repr, missing))}; "
            f"available columns: {', '.join(map(repr, map(str, df.columns)))}"
        )
    if len(df) == 0:
        raise DataError("the data have no rows")

    value_cols = ([spec.target] if has_target else []) + [*spec.channels, *spec.controls]
    values = _numeric(df, value_cols)
    dates = _parse_dates(df, spec.date_column)

    order = np.argsort(dates.asi8, kind="stable")
    dates = dates[order]
    rows = order  # 0-based position in the input, per sorted row
    values = {c: v[order] for c, v in values.items()}

    dup = np.asarray(dates.duplicated(keep=False))
    if dup.any():
        raise DataError(f"duplicate dates in {spec.date_column!r}: {_where(dates, rows, dup)}")

    problems = []
    for c in value_cols:
        bad = ~np.isfinite(values[c])
        if bad.any():
            problems.append(f"{c!r}: {_where(dates, rows, bad)}")
    if problems:
        raise DataError("NaN or infinite values in " + "; ".join(problems))

    # Magnitudes no currency or count reaches: squares and sums of them overflow (or vanish in)
    # float64, and the model's scaling would hide that until some statistic comes out inf or 0.
    problems = []
    for c in value_cols:
        a = np.abs(values[c])
        nz = a > 0
        if np.any(a > MAX_MAGNITUDE):
            problems.append(
                f"{c!r} reaches {a.max():.3g} (> {MAX_MAGNITUDE:g}): {_where(dates, rows, a > MAX_MAGNITUDE)}"
            )
        elif nz.any() and a.max() < MIN_MAGNITUDE:
            problems.append(
                f"{c!r} has no value above {MIN_MAGNITUDE:g} in magnitude (largest {a.max():.3g})"
            )
    if problems:
        raise DataError(
            "absurd magnitudes in "
            + "; ".join(problems)
            + "; rescale the column(s) (e.g. to thousands or millions)"
        )

    problems = []
    for c in spec.channels:
        neg = values[c] < 0
        if neg.any():
            problems.append(f"{c!r} (min {values[c].min():g}): {_where(dates, rows, neg)}")
    if problems:
        raise DataError("negative spend in " + "; ".join(problems))

    n = len(dates)
    if n < min_rows:
        rule = f"max(2 * l_max, 26) = {min_rows}" if min_rows == default_min_rows(spec) else str(min_rows)
        raise DataError(f"too few rows: {n}; need at least {rule} (pass min_rows= to change)")

    if training:
        steps_days = np.diff(dates.asi8) / pd.Timedelta(days=1).value
        med = float(np.median(steps_days))
        freq = {7.0: "W", 1.0: "D"}.get(med)
        if freq is None:
            raise DataError(
                f"cannot use the dates in {spec.date_column!r}: the median step between dates is "
                f"{med:g} days; fastmmm needs weekly (7) or daily (1) data"
            )
    else:
        freq = scales.frequency
        off = np.asarray(((dates - scales.origin) % scales.period) != pd.Timedelta(0))
        if off.any():
            name = "weekly" if freq == "W" else "daily"
            on = f" on {scales.origin.day_name()}s" if freq == "W" else ""
            raise DataError(
                f"dates in {spec.date_column!r} are not on the training grid ({name}{on}, from "
                f"{_fmt_date(scales.origin)}): {_where(dates, rows, off)}"
            )
    if n >= 2:
        _check_grid(dates, rows, freq, spec.date_column)

    y = values[spec.target] if has_target else None
    if y is not None and spec.log_target:
        nonpos = y <= 0
        if nonpos.any():
            raise DataError(
                f"log_target needs a positive target but {spec.target!r} is <= 0 in {_where(dates, rows, nonpos)}"
            )
    C, K = len(spec.channels), len(spec.controls)
    spend = np.column_stack([values[c] for c in spec.channels]) if C else np.zeros((n, 0))
    controls = np.column_stack([values[c] for c in spec.controls]) if K else np.zeros((n, 0))
    return _Raw(dates=dates, frequency=freq, y=y, spend=spend, controls=controls)


def _fit_scales(raw: _Raw, spec: ModelSpec, what: str = "data", allow_absent: bool = False) -> Scales:
    """Scales from training rows; DataError for all-zero channels (unless ``allow_absent``:
    their scale is 1), constant target / controls."""
    zero = [c for c, col in zip(spec.channels, raw.spend.T) if not np.any(col != 0)]
    if zero and not allow_absent:
        raise DataError(
            f"channel(s) with zero spend in every row of the {what}: {', '.join(map(repr, zero))}; "
            f"drop them from the spec"
        )
    y = raw.y
    if y is None:
        raise DataError(f"the target column {spec.target!r} is required")
    if np.all(y == y[0]):
        raise DataError(f"the target {spec.target!r} is constant ({y[0]:g}) in the {what}; nothing to model")
    sd = raw.controls.std(axis=0)
    const = [c for c, s in zip(spec.controls, sd) if s == 0]
    if const:
        raise DataError(
            f"control(s) constant in the {what}: {', '.join(map(repr, const))}; "
            f"they duplicate the intercept, drop them"
        )
    if spec.log_target:
        target_scale = float(np.mean(y))  # y > 0 was checked
    elif spec.target_scaling == "max":
        target_scale = float(np.max(np.abs(y)))
    else:
        target_scale = float(np.mean(np.abs(y)))
    agg = np.max if spec.channel_scaling == "max" else np.mean
    channel_scale = agg(raw.spend, axis=0)
    channel_scale = np.where(channel_scale > 0, channel_scale, 1.0)  # absent channels: spend stays 0
    return Scales(
        target_scale=target_scale,
        channel_scale=channel_scale,
        control_mean=raw.controls.mean(axis=0),
        control_sd=sd,
        log_target=spec.log_target,
        frequency=raw.frequency,
        origin=raw.dates[0],
        trend_span=float(max(len(raw.dates) - 1, 1)),
        channels=spec.channels,
        controls=spec.controls,
    )


def _build(raw: _Raw, spec: ModelSpec, scales: Scales) -> PreparedData:
    y = None if raw.y is None else _frozen(raw.y)
    return PreparedData(
        spec=spec,
        dates=raw.dates,
        frequency=raw.frequency,
        y=y,
        spend=_frozen(raw.spend),
        controls=_frozen(raw.controls),
        y_scaled=None if y is None else _frozen(scales.scale_target(y)),
        spend_scaled=_frozen(scales.scale_spend(raw.spend)),
        controls_scaled=_frozen(scales.scale_controls(raw.controls)),
        fourier=_frozen(fourier_features(raw.dates, spec.yearly_seasonality)),
        trend=_frozen(scales.trend_at(raw.dates)),
        scales=scales,
    )
