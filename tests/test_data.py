"""Tests of fastmmm.data: validation (DataError), scaling, features, new data, holdout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmmm.data import (
    DataError,
    PreparedData,
    Scales,
    default_min_rows,
    fourier_features,
    fourier_names,
    prepare,
    split_holdout,
)
from fastmmm.spec import ModelSpec

EXAMPLE_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmm_example.csv"


def make_df(T=40, freq="W", seed=0, start="2021-01-04"):
    """Synthetic data: date, y, tv, radio (spend), price, promo (controls)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=T, freq="W-MON" if freq == "W" else "D")
    tv = rng.gamma(2.0, 50.0, T) * (rng.random(T) > 0.2)
    radio = rng.gamma(2.0, 10.0, T)
    price = 10 + rng.normal(0, 1, T)
    promo = (rng.random(T) > 0.7).astype(float)
    promo[:2] = [0.0, 1.0]
    y = 1000 + 2 * tv + 5 * radio - 30 * price + rng.normal(0, 20, T)
    return pd.DataFrame(
        {
            "date": dates,
            "y": y,
            "tv": tv,
            "radio": radio,
            "price": price,
            "promo": promo,
            "other": "x",
        }
    )


SPEC = ModelSpec(channels=("tv", "radio"), controls=("price", "promo"))


def spec(**kw):
    return SPEC.replace(**kw)


# ============================================================================ happy path
class TestPrepare:
    def test_shapes_types_and_readonly(self):
        df = make_df()
        p = prepare(df, SPEC)
        T = len(df)
        assert isinstance(p, PreparedData) and len(p) == p.n_obs == T
        assert p.frequency == "W"
        assert isinstance(p.dates, pd.DatetimeIndex) and p.dates.is_monotonic_increasing
        assert p.y.shape == p.y_scaled.shape == p.trend.shape == (T,)
        assert p.spend.shape == p.spend_scaled.shape == (T, 2)
        assert p.controls.shape == p.controls_scaled.shape == (T, 2)
        assert p.fourier.shape == (T, 4)
        for a in (
            p.y,
            p.spend,
            p.controls,
            p.y_scaled,
            p.spend_scaled,
            p.controls_scaled,
            p.fourier,
            p.trend,
        ):
            assert a.dtype == np.float64 and not a.flags.writeable
        assert p.channel_names == ("tv", "radio") and p.control_names == ("price", "promo")
        np.testing.assert_array_equal(p.spend, df[["tv", "radio"]].to_numpy())

    def test_target_and_channel_scaling_max(self):
        df = make_df()
        p = prepare(df, SPEC)
        s = p.scales
        assert s.target_scale == df["y"].abs().max()
        np.testing.assert_allclose(p.y_scaled, df["y"] / df["y"].abs().max(), rtol=1e-15)
        np.testing.assert_allclose(s.channel_scale, df[["tv", "radio"]].max().to_numpy())
        np.testing.assert_allclose(p.spend_scaled.max(axis=0), [1.0, 1.0])
        # back-transforms
        np.testing.assert_allclose(s.unscale_target(p.y_scaled), p.y, rtol=1e-14)
        np.testing.assert_allclose(s.unscale_spend(p.spend_scaled), p.spend, rtol=1e-14)
        np.testing.assert_allclose(s.unscale_controls(p.controls_scaled), p.controls, rtol=1e-13)
        np.testing.assert_allclose(s.scale_target(p.y), p.y_scaled)
        np.testing.assert_allclose(s.scale_spend(p.spend), p.spend_scaled)
        np.testing.assert_allclose(s.scale_controls(p.controls), p.controls_scaled)

    def test_mean_scaling(self):
        df = make_df()
        p = prepare(df, spec(target_scaling="mean", channel_scaling="mean"))
        assert p.scales.target_scale == pytest.approx(df["y"].abs().mean(), rel=1e-14)
        np.testing.assert_allclose(p.scales.channel_scale, df[["tv", "radio"]].mean().to_numpy(), rtol=1e-14)
        np.testing.assert_allclose(p.y_scaled.mean(), 1.0, rtol=1e-13)
        np.testing.assert_allclose(p.spend_scaled.mean(axis=0), [1.0, 1.0], rtol=1e-13)

    def test_controls_standardised(self):
        df = make_df()
        p = prepare(df, SPEC)
        np.testing.assert_allclose(p.controls_scaled.mean(axis=0), 0.0, atol=1e-13)
        np.testing.assert_allclose(p.controls_scaled.std(axis=0), 1.0, rtol=1e-13)
        np.testing.assert_allclose(
            p.scales.control_mean, df[["price", "promo"]].mean().to_numpy(), rtol=1e-14
        )
        np.testing.assert_allclose(
            p.scales.control_sd, df[["price", "promo"]].std(ddof=0).to_numpy(), rtol=1e-13
        )

    def test_no_controls(self):
        p = prepare(make_df(), spec(controls=()))
        assert p.controls.shape == p.controls_scaled.shape == (40, 0)
        assert p.scales.control_mean.shape == (0,)

    def test_log_target(self):
        df = make_df()
        p = prepare(df, spec(log_target=True))
        assert p.scales.target_scale == pytest.approx(df["y"].mean(), rel=1e-14) and p.scales.log_target
        np.testing.assert_allclose(p.y_scaled, np.log(df["y"] / df["y"].mean()), rtol=1e-13)
        np.testing.assert_allclose(p.scales.unscale_target(p.y_scaled), df["y"], rtol=1e-14)

    def test_fourier_shape_order_and_values(self):
        df = make_df()
        p = prepare(df, spec(yearly_seasonality=3))
        assert p.fourier.shape == (40, 6)
        assert p.fourier_names == fourier_names(3) == ("sin_1", "sin_2", "sin_3", "cos_1", "cos_2", "cos_3")
        doy = df["date"].dt.day_of_year.to_numpy()
        for k in (1, 2, 3):
            np.testing.assert_allclose(p.fourier[:, k - 1], np.sin(2 * np.pi * k * doy / 365.25), atol=1e-14)
            np.testing.assert_allclose(p.fourier[:, 2 + k], np.cos(2 * np.pi * k * doy / 365.25), atol=1e-14)
        assert prepare(df, spec(yearly_seasonality=0)).fourier.shape == (40, 0)
        assert fourier_features(pd.DatetimeIndex(["2024-01-01"]), 2).shape == (1, 4)

    def test_trend(self):
        p = prepare(make_df(), SPEC)
        np.testing.assert_allclose(p.trend, np.linspace(0, 1, 40), atol=1e-15)
        later = p.dates[-1] + pd.Timedelta(weeks=39)
        np.testing.assert_allclose(p.scales.trend_at([p.dates[0], later]), [0.0, 2.0])

    def test_unsorted_input_is_sorted_and_frame_untouched(self):
        df = make_df().sample(frac=1.0, random_state=3)
        df["date"] = df["date"].dt.strftime("%Y-%m-%d")  # strings, parsed by prepare
        before = df.copy(deep=True)
        p = prepare(df, SPEC)
        pd.testing.assert_frame_equal(df, before)
        assert p.dates.is_monotonic_increasing
        ref = prepare(make_df(), SPEC)
        np.testing.assert_array_equal(p.y, ref.y)
        np.testing.assert_array_equal(p.spend, ref.spend)
        assert p.scales == ref.scales

    def test_arrays_do_not_alias_the_frame(self):
        df = make_df()
        p = prepare(df, SPEC)
        df.loc[0, "tv"] = 1e9
        assert p.spend[0, 0] != 1e9

    def test_csv_path(self, tmp_path):
        df = make_df()
        path = tmp_path / "data.csv"
        df.to_csv(path, index=False)
        p = prepare(path, SPEC)
        q = prepare(str(path), SPEC)
        np.testing.assert_allclose(p.y, df["y"].to_numpy(), rtol=1e-15)
        assert p.scales == q.scales

    def test_daily(self):
        p = prepare(make_df(T=60, freq="D"), SPEC)
        assert p.frequency == "D" and p.scales.period == pd.Timedelta(days=1)

    def test_tz_aware_and_object_numeric(self):
        df = make_df()
        df["date"] = df["date"].dt.tz_localize("Europe/Berlin")
        df["radio"] = df["radio"].astype(str)  # numeric strings are accepted
        p = prepare(df, SPEC)
        assert p.dates.tz is None and p.frequency == "W"
        np.testing.assert_allclose(p.spend[:, 1], make_df()["radio"], rtol=1e-15)

    def test_min_rows(self):
        assert default_min_rows(SPEC) == 26 and default_min_rows(spec(l_max=20)) == 40
        p = prepare(make_df(T=10), SPEC, min_rows=10)
        assert p.n_obs == 10
        with pytest.raises(ValueError, match="min_rows must be an integer >= 2"):
            prepare(make_df(), SPEC, min_rows=1)


# ============================================================================ errors
def _mutate(fn):
    df = make_df()
    fn(df)
    return df


class TestErrors:
    def test_missing_columns(self):
        df = make_df().drop(columns=["tv", "price"])
        with pytest.raises(
            DataError, match=r"missing column\(s\): 'tv', 'price'; available columns: 'date', 'y'"
        ):
            prepare(df, SPEC)
        with pytest.raises(DataError, match=r"missing column\(s\): 'date_week'"):
            prepare(make_df(), spec(date_column="date_week"))

    def test_non_numeric(self):
        df = _mutate(lambda d: d.__setitem__("radio", ["a"] + ["1.5"] * 39))
        with pytest.raises(DataError, match=r"non-numeric column\(s\): 'radio' \(dtype .*'a' \(row 0\)"):
            prepare(df, SPEC)
        df = make_df()
        df["price"] = df["date"]  # datetimes are not numbers
        with pytest.raises(DataError, match=r"non-numeric column\(s\): 'price' \(dtype datetime64"):
            prepare(df, SPEC)

    def test_unparseable_dates(self):
        df = make_df()
        df["date"] = df["date"].dt.strftime("%Y-%m-%d").astype(object)
        df.loc[5, "date"] = "not a date"
        df.loc[7, "date"] = None
        with pytest.raises(
            DataError,
            match=r"'date' has 2 missing or unparseable date\(s\): row 5: 'not a date', row 7",
        ):
            prepare(df, SPEC)

    @pytest.mark.parametrize("col", ["tv", "y", "price"])
    def test_absurd_magnitudes_name_the_column(self, col):
        # Spend x 1e300 used to reach numpy's LinAlgError deep in the model build.
        df = make_df()
        df[col] = df[col] * 1e300
        with pytest.raises(DataError, match=rf"absurd magnitudes in '{col}' reaches .* \(> 1e\+30\)"):
            prepare(df, SPEC)
        df = make_df()
        df[col] = df[col] * 1e-40
        with pytest.raises(DataError, match=rf"'{col}' has no value above 1e-30 in magnitude"):
            prepare(df, SPEC)

    def test_large_but_sane_magnitudes_are_fine(self):
        df = make_df()
        df["tv"] = df["tv"] * 1e12  # spend in a small currency unit
        df["y"] = df["y"] * 1e-6  # sales in millions
        assert prepare(df, SPEC).n_obs == 40

    def test_numeric_date_column(self):
        df = make_df().assign(date=np.arange(40))
        with pytest.raises(DataError, match="date column 'date' is numeric"):
            prepare(df, SPEC)

    @pytest.mark.parametrize(
        "col, value, match",
        [
            (
                "y",
                np.nan,
                r"NaN or infinite values in 'y': 1 row\(s\), first at 2021-02-01 \(row 4\)",
            ),
            (
                "tv",
                np.inf,
                r"NaN or infinite values in 'tv': 1 row\(s\), first at 2021-02-01 \(row 4\)",
            ),
            ("promo", np.nan, r"NaN or infinite values in 'promo'"),
        ],
    )
    def test_nan_inf(self, col, value, match):
        df = make_df()
        df.loc[4, col] = value
        with pytest.raises(DataError, match=match):
            prepare(df, SPEC)

    def test_nan_lists_every_column(self):
        df = make_df()
        df.loc[[3, 9], "y"] = np.nan
        df.loc[1, "radio"] = -np.inf
        with pytest.raises(
            DataError,
            match=r"'y': 2 row\(s\), first at 2021-01-25 \(row 3\), 2021-03-08 \(row 9\); "
            r"'radio': 1 row",
        ):
            prepare(df, SPEC)

    def test_negative_spend(self):
        df = make_df()
        df.loc[[2, 6], "radio"] = [-1.0, -3.5]
        with pytest.raises(
            DataError,
            match=r"negative spend in 'radio' \(min -3.5\): 2 row\(s\), first at 2021-01-18",
        ):
            prepare(df, SPEC)

    def test_all_zero_channel(self):
        df = make_df().assign(tv=0.0)
        with pytest.raises(DataError, match=r"zero spend in every row of the data: 'tv'"):
            prepare(df, SPEC)

    def test_duplicate_dates(self):
        df = make_df()
        df.loc[10, "date"] = df.loc[11, "date"]
        with pytest.raises(
            DataError,
            match=r"duplicate dates in 'date': 2 row\(s\), first at 2021-03-22 \(row 10\), "
            r"2021-03-22 \(row 11\)",
        ):
            prepare(df, SPEC)

    def test_missing_weekly_dates(self):
        df = make_df().drop(index=[10, 11, 20])
        with pytest.raises(
            DataError,
            match=r"weekly series in 'date' has 3 missing date\(s\): 2021-03-15, "
            r"2021-03-22, 2021-05-24",
        ):
            prepare(df, SPEC)

    def test_missing_daily_dates(self):
        df = make_df(T=60, freq="D").drop(index=[30])
        with pytest.raises(DataError, match=r"daily series in 'date' has 1 missing date\(s\): 2021-02-03"):
            prepare(df, SPEC)

    def test_inconsistent_weekday(self):
        df = make_df()
        df.loc[5, "date"] += pd.Timedelta(days=1)
        with pytest.raises(
            DataError,
            match=r"same weekday; the first date 2021-01-04 is a Monday but 1 date\(s\) "
            r"are not: 2021-02-09 \(Tuesday, row 5\)",
        ):
            prepare(df, SPEC)

    def test_unsupported_frequency(self):
        df = make_df()
        df["date"] = pd.date_range("2020-01-01", periods=40, freq="MS")
        with pytest.raises(DataError, match=r"median step between dates is 3\d days; fastmmm needs weekly"):
            prepare(df, SPEC)

    def test_too_few_rows(self):
        with pytest.raises(DataError, match=r"too few rows: 20; need at least max\(2 \* l_max, 26\) = 26"):
            prepare(make_df(T=20), SPEC)
        with pytest.raises(DataError, match=r"too few rows: 30; need at least max\(2 \* l_max, 26\) = 32"):
            prepare(make_df(T=30), spec(l_max=16))
        with pytest.raises(DataError, match=r"too few rows: 30; need at least 35"):
            prepare(make_df(T=30), SPEC, min_rows=35)
        with pytest.raises(DataError, match="no rows"):
            prepare(make_df().iloc[:0], SPEC)

    def test_constant_target(self):
        with pytest.raises(DataError, match=r"target 'y' is constant \(5\)"):
            prepare(make_df().assign(y=5.0), SPEC)

    def test_log_target_nonpositive(self):
        df = make_df()
        df.loc[3, "y"] = 0.0
        with pytest.raises(
            DataError,
            match=r"log_target needs a positive target but 'y' is <= 0 in 1 row\(s\), "
            r"first at 2021-01-25 \(row 3\)",
        ):
            prepare(df, spec(log_target=True))
        prepare(df, SPEC)  # fine without log_target

    def test_constant_control(self):
        with pytest.raises(DataError, match=r"control\(s\) constant in the data: 'promo'"):
            prepare(make_df().assign(promo=1.0), SPEC)

    def test_duplicate_roles(self):
        # ModelSpec already refuses a column in two roles ...
        with pytest.raises(ValueError, match="'tv' is used as channel and control"):
            spec(controls=("tv",))
        # ... and prepare re-checks (e.g. a spec mutated behind the dataclass's back).
        s = spec()
        object.__setattr__(s, "controls", ("tv",))
        with pytest.raises(DataError, match="column 'tv' is used as both channel and control"):
            prepare(make_df(), s)

    def test_duplicate_column_names(self):
        df = make_df()
        df = pd.concat([df, df[["tv"]]], axis=1)
        with pytest.raises(DataError, match=r"duplicate column name\(s\) in the data: 'tv'"):
            prepare(df, SPEC)

    def test_bad_source(self, tmp_path):
        with pytest.raises(DataError, match="CSV file not found"):
            prepare(tmp_path / "nope.csv", SPEC)
        with pytest.raises(DataError, match="DataFrame or a path"):
            prepare({"y": [1, 2]}, SPEC)

    def test_errors_are_value_errors(self):
        assert issubclass(DataError, ValueError)


# ============================================================================ new data / holdout
class TestTransformNew:
    def test_forecast_rows_without_target(self):
        full = make_df(T=48)
        p = prepare(full.iloc[:40], SPEC)
        future = full.iloc[40:].drop(columns=["y"]).iloc[::-1]  # unsorted too
        f = p.transform_new(future)
        assert f.y is None and f.y_scaled is None
        assert f.scales == p.scales and f.n_obs == 8
        np.testing.assert_allclose(
            f.spend_scaled, full[["tv", "radio"]].iloc[40:].to_numpy() / p.scales.channel_scale
        )
        np.testing.assert_allclose(
            f.controls_scaled, p.scales.scale_controls(full[["price", "promo"]].iloc[40:])
        )
        np.testing.assert_allclose(f.trend, np.arange(40, 48) / 39)
        np.testing.assert_allclose(f.fourier, fourier_features(f.dates, 2))

    def test_with_target_one_row_zero_spend(self):
        full = make_df(T=41)
        p = prepare(full.iloc[:40], SPEC)
        new = full.iloc[[40]].assign(tv=0.0)  # one row; zero spend / constant columns are fine here
        f = p.transform_new(new)
        assert f.n_obs == 1
        np.testing.assert_allclose(f.y_scaled, full["y"].iloc[40] / p.scales.target_scale)

    def test_new_data_validated(self):
        full = make_df(T=48)
        p = prepare(full.iloc[:40], SPEC)
        with pytest.raises(DataError, match=r"missing column\(s\): 'radio'"):
            p.transform_new(full.iloc[40:].drop(columns=["radio"]))
        with pytest.raises(DataError, match="negative spend in 'tv'"):
            p.transform_new(full.iloc[40:].assign(tv=-1.0))
        with pytest.raises(
            DataError, match=r"not on the training grid \(weekly on Mondays, from 2021-01-04\)"
        ):
            p.transform_new(full.iloc[40:].assign(date=full["date"].iloc[40:] + pd.Timedelta(days=2)))
        with pytest.raises(DataError, match=r"weekly series in 'date' has 1 missing date"):
            p.transform_new(full.iloc[[40, 42]])
        with pytest.raises(DataError, match="NaN or infinite values in 'y'"):
            p.transform_new(full.iloc[40:].assign(y=np.nan))


class TestSplitHoldout:
    def test_split(self):
        p = prepare(make_df(T=52), SPEC)
        train, hold = split_holdout(p, 8)
        assert (train.n_obs, hold.n_obs) == (44, 8)
        assert train.dates.append(hold.dates).equals(p.dates)
        assert hold.scales == train.scales
        assert train.scales.target_scale == np.abs(p.y[:44]).max()  # fitted on the training rows only
        np.testing.assert_allclose(train.trend, np.linspace(0, 1, 44), atol=1e-15)
        np.testing.assert_allclose(hold.trend, np.arange(44, 52) / 43)
        np.testing.assert_array_equal(hold.y, p.y[44:])
        np.testing.assert_allclose(hold.y_scaled, p.y[44:] / train.scales.target_scale)
        np.testing.assert_allclose(hold.spend_scaled, p.spend[44:] / train.scales.channel_scale)

    def test_daily_weeks(self):
        p = prepare(make_df(T=60, freq="D"), SPEC)
        train, hold = split_holdout(p, 2)
        assert (train.n_obs, hold.n_obs) == (46, 14)

    def test_errors(self):
        p = prepare(make_df(T=40), SPEC)
        with pytest.raises(
            DataError,
            match=r"holdout of 20 week\(s\) \(20 rows\) leaves 20 training rows of 40; "
            r"at least 26",
        ):
            split_holdout(p, 20)
        with pytest.raises(ValueError, match="weeks must be an integer >= 1"):
            split_holdout(p, 0)
        df = make_df(T=40)
        df.loc[30:, "tv"] = 1.0
        df.loc[:29, "tv"] = 0.0
        with pytest.raises(DataError, match="zero spend in every row of the training part: 'tv'"):
            split_holdout(prepare(df, SPEC), 10, min_rows=26)


def test_scales_serialise():
    p = prepare(make_df(), spec(log_target=True))
    d = json.loads(json.dumps(p.scales.to_dict()))
    s = Scales.from_dict(d)
    assert s == p.scales and s.to_dict() == p.scales.to_dict()
    np.testing.assert_array_equal(s.trend_at(p.dates), p.trend)
    assert s.log_target and s.frequency == "W" and s.origin == p.dates[0]


@pytest.mark.skipif(not EXAMPLE_CSV.exists(), reason=f"{EXAMPLE_CSV} not present")
def test_realistic_example_csv():
    s = ModelSpec(date_column="date_week", target="y", channels=("x1", "x2"), controls=("event_1", "event_2"))
    p = prepare(EXAMPLE_CSV, s)
    raw = pd.read_csv(EXAMPLE_CSV)
    assert p.n_obs == len(raw) == 179 and p.frequency == "W"
    assert p.dates[0] == pd.Timestamp("2018-04-02")
    np.testing.assert_allclose(p.y_scaled.max(), 1.0)
    np.testing.assert_allclose(p.spend_scaled.max(axis=0), [1.0, 1.0])
    np.testing.assert_allclose(p.trend, raw["t"] / raw["t"].max())  # the file's own time index, rescaled
    doy = raw["dayofyear"].to_numpy()
    np.testing.assert_allclose(p.fourier[:, 0], np.sin(2 * np.pi * doy / 365.25), atol=1e-14)
    train, hold = split_holdout(p, 13)
    assert (train.n_obs, hold.n_obs) == (166, 13) and hold.trend[0] > 1.0
    f = train.transform_new(raw.iloc[166:].drop(columns=["y"]))
    np.testing.assert_allclose(f.spend_scaled, hold.spend_scaled)
    np.testing.assert_allclose(f.trend, hold.trend)
