"""The ``fastmmm`` command as a user runs it: what it imports, what it writes, how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fastmmm.cli import main
from fastmmm.synthetic import make_dataset

HEAVY = ("pymc", "pytensor", "arviz", "matplotlib", "xarray", "nutpie", "numba")


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_import_fastmmm_is_light():
    mods = _modules_after("import fastmmm")
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY + ("pandas", "scipy"))
    assert not heavy, heavy


def test_fit_command_with_report_imports_no_modelling_or_plotting_library(tmp_path):
    df, truth = make_dataset(70, 3, adstock="geometric", saturation="hill", seed=5)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        from fastmmm.cli import main
        assert main(["fit", {str(data)!r}, "--date-column", "date", "--target", "sales", "--channels",
                     {",".join(truth.channels)!r}, "--controls", "event", "--draws", "200", "--tune", "200",
                     "--seed", "1", "--quiet", "--out", {str(out)!r}]) == 0
    """)
    mods = _modules_after(code)
    heavy = sorted({m.split(".")[0] for m in mods} & set(HEAVY))
    assert not heavy, heavy
    assert {p.name for p in out.iterdir()} >= {"summary.json", "contributions.csv", "model", "report.html"}
    assert json.loads((out / "summary.json").read_text())["backend"] == "rust"


def test_fit_prints_the_commands_wall_time_and_a_clean_summary(tmp_path, capsys):
    df, truth = make_dataset(60, 2, adstock="geometric", saturation="hill", seed=6)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    code = main(
        [
            "fit",
            str(data),
            "--date-column",
            "date",
            "--target",
            "sales",
            "--channels",
            ",".join(truth.channels),
            "--draws",
            "100",
            "--tune",
            "100",
            "--max-draws",
            "100",
            "--quiet",
            "--no-report",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    out = capsys.readouterr()
    assert "fastmmm fit: done in" in out.out
    # --max-draws equal to --draws: exactly the draws asked for, as summary.json records.
    sampler = json.loads((tmp_path / "o" / "summary.json").read_text())["sampler"]
    assert (sampler["draws"], sampler["draws_planned"], sampler["chains"]) == (100, 100, 2)
    assert "INFO" not in out.out + out.err and "Traceback" not in out.err
    assert not (tmp_path / "o" / "report.html").exists()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda df, c: df.__setitem__(c, df[c].where(df.index != 5, -1.0)), "negative spend"),
        (lambda df, c: df.__setitem__(c, df[c] * 1e300), "absurd magnitudes in 'tv'"),
    ],
    ids=["negative", "times_1e300"],
)
def test_bad_data_is_one_line_and_status_2(tmp_path, capsys, corrupt, message):
    df, truth = make_dataset(60, 2, adstock="geometric", saturation="hill", seed=6)
    corrupt(df, truth.channels[0])
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    code = main(
        [
            "fit",
            str(data),
            "--date-column",
            "date",
            "--target",
            "sales",
            "--channels",
            ",".join(truth.channels),
            "--quiet",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"fastmmm fit: error: {message}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--channels (or a --config with channels) is required"),
        (["--channels", ""], "at least one channel column is required"),
        (
            ["--media-prior", "share", "--roas-prior", "tv=LogNormal(0.5,0.4)"],
            "--roas-prior sets ROAS priors",
        ),
        (["--roas-prior", "radio=LogNormal(0.5,0.4)"], "radio"),
        (["--roas-prior", "tv=LogNormal(0.5,-1)"], "sigma"),
        (["--max-draws", "10"], "max_draws: must be an integer >= draws (1000)"),
    ],
    ids=[
        "no_channels",
        "empty_channels",
        "roas_prior_with_share",
        "unknown_channel",
        "negative_sigma",
        "max_draws_below_draws",
    ],
)
def test_bad_options_are_one_line_and_status_2(tmp_path, capsys, extra, message):
    df, truth = make_dataset(60, 2, adstock="geometric", saturation="hill", seed=6)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    args = ["fit", str(data), "--date-column", "date", "--target", "sales", "--quiet"]
    if extra and extra[0] != "--channels":
        args += ["--channels", ",".join(truth.channels)]
    code = main(args + extra + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_an_unwritable_output_is_a_user_error(tmp_path, capsys):
    df, truth = make_dataset(60, 2, adstock="geometric", saturation="hill", seed=6)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    args = [
        "fit",
        str(data),
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        ",".join(truth.channels),
    ]
    code = main(args + ["--quiet", "--draws", "50", "--tune", "50", "--out", str(blocker / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "fastmmm fit: error:" in err and "internal error" not in err, err


def test_an_internal_error_is_reported_without_a_traceback(tmp_path, capsys, monkeypatch):
    import fastmmm.fit

    def broken(*a, **k):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(fastmmm.fit.MMM, "fit", broken)
    monkeypatch.delenv("FASTMMM_DEBUG", raising=False)
    code = main(["demo", "--quiet", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 1 and "internal error (ZeroDivisionError: injected)" in err and "Traceback" not in err
    monkeypatch.setenv("FASTMMM_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["demo", "--quiet", "--out", str(tmp_path / "d")])


def test_demo_runs_and_compares_with_the_truth(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--quiet",
            "--weeks",
            "80",
            "--channels",
            "3",
            "--draws",
            "200",
            "--tune",
            "200",
            "--out",
            str(tmp_path / "demo"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "true ROAS inside the 95% interval" in out and "fastmmm demo: done in" in out
    assert (tmp_path / "demo" / "report.html").is_file()


def test_bounds_name_channels_or_panel_cells():
    """--bounds: a national channel may contain '/'; on a panel GROUP/CHANNEL names a cell."""
    from fastmmm.cli import _parse_bounds, _parse_totals

    assert _parse_bounds("tv/online=0:5, search=1:") == {"tv/online": (0.0, 5.0), "search": (1.0, None)}
    assert _parse_bounds("north / tv=0:5,search=:9", panel=True) == {
        ("north", "tv"): (0.0, 5.0),
        "search": (None, 9.0),
    }
    assert _parse_totals("north=10,south=2.5") == {"north": 10.0, "south": 2.5}
    with pytest.raises(ValueError, match="GROUP=TOTAL"):
        _parse_totals("north")
