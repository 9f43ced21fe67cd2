"""Plots and the HTML report (fastmmm.report) on one small fit of the example data."""

from __future__ import annotations

import dataclasses
import html
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.dates import date2num
from matplotlib.figure import Figure

from fastmmm import report
from fastmmm.spec import ModelSpec

DATA = Path(__file__).parents[2] / "shared" / "data" / "mmm_example.csv"
CHANNELS = ("x1", "x2")
CONTROLS = ("event_1", "event_2", "t")
SVG = re.compile(r"<svg .*?</svg>", flags=re.DOTALL)


@pytest.fixture(scope="module")
def result():
    if not DATA.is_file():
        pytest.skip(f"example data not found: {DATA}")
    from fastmmm.fit import MMM

    spec = ModelSpec(
        channels=CHANNELS,
        controls=CONTROLS,
        date_column="date_week",
        target="y",
        adstock="geometric",
        saturation="logistic",
        l_max=8,
        yearly_seasonality=2,
    )
    with warnings.catch_warnings():
        # fit() warns, as it should: 2 x 100 draws fail the R-hat / ESS checks, and control
        # "t" duplicates the built-in trend (which fit() then turns off).
        warnings.filterwarnings("ignore", message="fastmmm: ", category=UserWarning)
        return MMM(spec).fit(DATA, draws=100, tune=100, chains=2, seed=1, progress=False)


@pytest.fixture(scope="module")
def with_holdout(result):
    """The same posterior with 10 made-up periods after the training data as a hold-out set."""
    df = pd.read_csv(DATA, parse_dates=["date_week"])
    fut = df.tail(10).copy()
    fut["date_week"] = fut["date_week"] + pd.Timedelta(weeks=10)
    return dataclasses.replace(result, holdout=result.data.transform_new(fut))


def _legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def _polys(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ---------------------------------------------------------------------------- plot_fit
def test_plot_fit(result):
    fig = report.plot_fit(result)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 2  # posterior mean, actual
    assert len(_polys(ax)) == 1  # the 95% interval band
    fit = result.fitted()
    mean, actual = ax.lines
    np.testing.assert_allclose(mean.get_ydata(), fit["mean"].to_numpy())
    np.testing.assert_allclose(actual.get_ydata(), np.asarray(result.data.y))
    assert "actual" in _legend(ax) and not any("hold-out" in s for s in _legend(ax))


def test_plot_fit_holdout(with_holdout):
    r = with_holdout
    fig = report.plot_fit(r)
    (ax,) = fig.axes
    # mean, actual, hold-out boundary, forecast mean, hold-out actual
    assert len(ax.lines) == 5
    assert len(_polys(ax)) == 2  # fit and forecast intervals
    labels = _legend(ax)
    for want in ("hold-out start", "forecast mean", "hold-out actual"):
        assert want in labels
    forecast = next(ln for ln in ax.lines if ln.get_label() == "forecast mean")
    assert len(forecast.get_xdata()) == len(r.holdout.dates)
    boundary = next(ln for ln in ax.lines if ln.get_label() == "hold-out start")
    x0 = ax.xaxis.convert_units(boundary.get_xdata()[0])
    assert date2num(r.data.dates[-1]) < x0 < date2num(r.holdout.dates[0])


def test_plot_on_given_axes(result):
    fig = Figure()
    ax = fig.add_subplot()
    assert report.plot_fit(result, ax=ax) is fig
    assert fig.axes == [ax] and len(ax.lines) == 2


# ---------------------------------------------------------------------------- contributions
def test_plot_contributions(result):
    fig = report.plot_contributions(result)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    comp = ["baseline", "seasonality", "controls", *CHANNELS]
    assert _legend(ax) == comp + ["fitted (sum)", "actual"]
    assert len(ax.lines) == 3  # fitted, actual, and the zero line (there are negative parts)
    cot = result.contributions_over_time()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), cot["fitted"].to_numpy())
    # One area per non-empty positive or negative part of each component.
    groups = {
        # fit() turns the built-in trend off here: control "t" is a time trend.
        "baseline": cot[[c for c in ("intercept", "trend") if c in cot]].sum(axis=1),
        "seasonality": cot["seasonality"],
        "controls": cot[list(CONTROLS)].sum(axis=1),
        **{ch: cot[ch] for ch in CHANNELS},
    }
    parts = sum(int((v > 0).any()) + int((v < 0).any()) for v in groups.values())
    assert len(_polys(ax)) == parts
    # The positive stack's top is the sum of the positive parts, the negative bottom the sum
    # of the negative ones (the fitted line lies between).
    top = sum(np.clip(v.to_numpy(), 0, None) for v in groups.values())
    bottom = sum(np.clip(v.to_numpy(), None, 0) for v in groups.values())
    ys = np.concatenate([p.get_paths()[0].vertices[:, 1] for p in _polys(ax)])
    assert ys.max() == pytest.approx(top.max()) and ys.min() == pytest.approx(bottom.min())
    assert (bottom <= cot["fitted"].to_numpy() + 1e-9).all() and (
        cot["fitted"].to_numpy() <= top + 1e-9
    ).all()


# ---------------------------------------------------------------------------- ROAS
def test_plot_roas(result):
    fig = report.plot_roas(result)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    n = len(CHANNELS)
    assert len(_polys(ax)) == 2 * n  # a violin per channel for ROAS and mROAS
    assert len([c for c in ax.collections if isinstance(c, LineCollection)]) == 2 * n  # intervals
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CHANNELS)
    assert {"ROAS posterior", "mROAS posterior", "mean", "95% interval"} <= set(_legend(ax))
    means = sorted(
        float(ln.get_ydata()[0]) for ln in ax.lines if ln.get_marker() == "o" and len(ln.get_ydata())
    )
    cs = result.channel_summary()
    want = sorted([*cs["roas_mean"], *cs["mroas_mean"]])
    np.testing.assert_allclose(means, want)


# ---------------------------------------------------------------------------- response curves
def test_plot_response_curves(result):
    fig = report.plot_response_curves(result)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(CHANNELS)  # one panel per channel
    for ax, ch in zip(fig.axes, CHANNELS):
        assert ch in ax.get_title()
        assert len(ax.lines) == 3  # mean, current-spend line and marker
        assert len(_polys(ax)) == 1
        cur = result.response_curve(ch, multipliers=[1.0]).iloc[0]
        marker = ax.lines[2]
        assert marker.get_xdata()[0] == pytest.approx(cur["spend"])
        assert marker.get_ydata()[0] == pytest.approx(cur["mean"])
        assert cur["spend"] == pytest.approx(
            float(np.asarray(result.data.spend)[:, CHANNELS.index(ch)].sum())
        )


def test_plot_response_curves_one_axes(result):
    fig = Figure()
    ax = fig.add_subplot()
    assert report.plot_response_curves(result, ax=ax) is fig
    assert len(ax.lines) == 3 * len(CHANNELS) and len(_polys(ax)) == len(CHANNELS)
    assert {f"{ch} current spend" for ch in CHANNELS} <= set(_legend(ax))
    with pytest.raises(ValueError, match="one per channel"):
        report.plot_response_curves(result, ax=[ax])


# ---------------------------------------------------------------------------- report
def _check_report(text: str, result) -> list:
    """Four figures of inline SVG (one panel per channel for the response curves), each a
    well-formed SVG document with drawn marks; no images, scripts or network references."""
    assert text.count("<figure>") == 4  # fit, contributions, ROAS, response curves
    svgs = SVG.findall(text)
    assert len(svgs) == 3 + len(result.channels)
    trees = [ET.fromstring(s) for s in svgs]
    ns = "{http://www.w3.org/2000/svg}"
    for t in trees:
        marks = [e for e in t.iter() if e.tag in (ns + "polygon", ns + "polyline", ns + "circle")]
        assert len(marks) >= 2, ET.tostring(t)[:300]
        # coordinates are numbers, inside the view box
        w, h = (float(v) for v in t.get("viewBox").split()[2:])
        for e in t.iter(ns + "polyline"):
            pts = np.array([[float(a) for a in p.split(",")] for p in e.get("points").split()])
            assert pts.size and np.all(np.isfinite(pts))
            assert (
                pts[:, 0].min() >= 0
                and pts[:, 0].max() <= w
                and pts[:, 1].min() >= 0
                and pts[:, 1].max() <= h
            )
    assert "<img " not in text
    assert "<script" not in text.lower() and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    return trees


def test_write_report(result, tmp_path):
    path = report.write_report(result, tmp_path / "out" / "report.html")
    assert path == tmp_path / "out" / "report.html" and path.is_file()
    assert not list(path.parent.glob(".*tmp"))
    text = path.read_text(encoding="utf-8")
    _check_report(text, result)
    # channel table
    for ch in CHANNELS:
        assert f"<th>{ch}</th>" in text
    assert "ROAS" in text and "mROAS" in text
    # header
    d = result.data.dates
    assert f"{d[0]:%Y-%m-%d} to {d[-1]:%Y-%m-%d}" in text
    assert f"{len(d)} training" in text and result.backend == "rust" and "rust" in text and "logistic" in text
    # diagnostics: every failure sentence, coloured rows, the verdict
    v = result.validate()
    assert "Diagnostics" in text and "in-sample MAPE" in text and "max R-hat" in text
    assert f"{100 * v.mape_in_sample:.2f}%" in text
    for sentence in v.failures:
        assert html.escape(sentence) in text
    assert text.count('<tr class="fail">') == sum(ok is False for ok in v.checks.values())
    assert text.count('<tr class="pass">') == sum(ok is True for ok in v.checks.values())
    assert ('class="verdict pass"' in text) == v.passed


def test_write_report_holdout_and_directory(with_holdout, tmp_path):
    path = report.write_report(with_holdout, tmp_path)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    _check_report(text, with_holdout)
    assert "+ 10 hold-out" in text and "hold-out MAPE" in text
    assert with_holdout.validate().mape_holdout is not None


def test_write_report_escapes_names(result, tmp_path):
    evil = ("<b>tv</b>", "$search & co$")
    spec = result.spec.replace(channels=evil, target="<script>alert('y')</script>")
    r = dataclasses.replace(result, spec=spec)
    text = report.write_report(r, tmp_path / "r.html").read_text(encoding="utf-8")
    _check_report(text, r)
    assert "<b>tv</b>" not in text and html.escape("<b>tv</b>") in text
    assert html.escape("$search & co$") in text
    assert html.escape("<script>alert('y')</script>") in text


# ---------------------------------------------------------------------------- browser
def test_report_renders_in_browser(request, tmp_path):
    import render_report as rr

    if rr.find_chromium() is None:
        pytest.skip("no chromium binary (apt-get install -y chromium)")
    pytest.importorskip("PIL")
    result = request.getfixturevalue("result")  # fit only when there is a browser
    page = report.write_report(result, tmp_path / "report.html")
    png = rr.screenshot(page, tmp_path / "out.png", width=1200, height=3000)
    st = rr.image_stats(png)
    assert (st["width"], st["height"]) == (1200, 3000)
    assert rr.looks_rendered(st), st
    # The same page without its plots (text and tables only) does not pass for one with them.
    text = re.sub(r"<figure>.*?</figure>", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    bare = tmp_path / "bare.html"
    bare.write_text(text, encoding="utf-8")
    assert not rr.looks_rendered(rr.image_stats(rr.screenshot(bare, tmp_path / "bare.png"))), st
