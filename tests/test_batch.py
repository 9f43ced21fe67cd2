"""fit_many (fastmmm.batch): many brands through one compiled model per worker,
failure isolation, resume after a real kill of `fastmmm fit-many`, and Dask
giving the same numbers as the local process pool.

Small data (60 weeks x 2 channels, 100 + 100 draws, 2 chains) keeps it quick.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmmm import batch
from fastmmm.batch import INDEX_COLUMNS, _dirnames, brand_seed, fit_many
from fastmmm.data import DataError
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_dataset

SPEC = ModelSpec(
    date_column="date",
    target="sales",
    channels=("tv", "search"),
    controls=("event",),
    adstock="geometric",
    saturation="logistic",
    l_max=4,
    yearly_seasonality=1,
)
FIT = {"draws": 100, "tune": 100, "chains": 2, "seed": 11}
GOOD = ["acme", "bolt", "cora", "dune"]
ROAS = ["roas_tv", "roas_search"]

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def brands_frame(names, *, bad: bool = False, weeks: int = 60) -> pd.DataFrame:
    parts = []
    for i, b in enumerate(names):
        d, _ = make_dataset(weeks, 2, saturation="logistic", l_max=4, seed=100 + i)
        d.insert(0, "brand", b)
        parts.append(d)
    if bad:
        d, _ = make_dataset(weeks, 2, saturation="logistic", l_max=4, seed=7)
        d.loc[10, "tv"] = np.nan
        d.insert(0, "brand", "nan_spend")
        parts.append(d)
        d, _ = make_dataset(weeks, 2, saturation="logistic", l_max=4, seed=8)
        d["sales"] = 0.0
        d.insert(0, "brand", "zero_sales")
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit_many_local")
    df = brands_frame(GOOD, bad=True)
    t0 = time.perf_counter()
    index = fit_many(df, by="brand", spec=SPEC, out=out, workers=2, progress=False, **FIT)
    return df, out, index, time.perf_counter() - t0


def test_local_pool_fits_good_brands_and_isolates_bad_ones(local_run):
    _, out, index, _ = local_run
    assert list(index["brand"]) == GOOD + ["nan_spend", "zero_sales"]
    cols = list(INDEX_COLUMNS)
    cols[cols.index("r2") + 1 : cols.index("r2") + 1] = ROAS
    assert list(index.columns) == cols
    st = dict(zip(index["brand"], index["status"]))
    assert all(st[b] == "ok" for b in GOOD), index[["brand", "status", "error"]]
    assert st["nan_spend"] == st["zero_sales"] == "failed"
    err = dict(zip(index["brand"], index["error"]))
    assert (
        err["nan_spend"].startswith("DataError:") and "'tv'" in err["nan_spend"] and "NaN" in err["nan_spend"]
    )
    assert (
        err["zero_sales"].startswith("DataError:")
        and "'sales'" in err["zero_sales"]
        and "constant" in err["zero_sales"]
    )
    assert all(err[b] == "" for b in GOOD)

    # index.csv on disk matches what was returned
    disk = pd.read_csv(out / "index.csv", keep_default_na=False, na_values=[""])
    assert list(disk["brand"]) == list(index["brand"])
    np.testing.assert_array_equal(disk[ROAS].to_numpy(), index[ROAS].to_numpy(dtype=float))

    ok = index[index["status"] == "ok"]
    assert np.isfinite(ok[ROAS + ["rhat_max", "mape", "sample_s", "total_s"]].to_numpy(dtype=float)).all()
    assert (ok["divergences"] >= 0).all()
    # one compilation per worker process at most (2 workers); the other brands reuse it
    assert int((ok["compile_s"] > 0).sum()) <= 2
    assert list(ok["seed"]) == [brand_seed(FIT["seed"], b) for b in GOOD]

    for b in GOOD:
        d = out / b
        assert (d / "summary.json").is_file() and (d / "contributions.csv").is_file()
        assert (d / "model" / "meta.json").is_file() and (d / "model" / "idata.nc").is_file()
        assert not (d / "report.html").exists()  # report is opt-in
        summary = json.loads((d / "summary.json").read_text())
        row = index.set_index("brand").loc[b]
        assert summary["channels"]["tv"]["roas"]["mean"] == row["roas_tv"]
        assert summary["diagnostics"]["rhat_max"] == row["rhat_max"]
    for b in ("nan_spend", "zero_sales"):
        assert not (out / b).exists()
    # nothing temporary left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD + ["index.csv"])


def test_saved_brand_model_loads(local_run):
    from fastmmm.results import load

    _, out, index, _ = local_run
    r = load(out / "acme" / "model")
    roas = r.channel_summary()["roas_mean"]
    assert roas["tv"] == pytest.approx(index.set_index("brand").loc["acme", "roas_tv"], rel=1e-12)


def test_resume_skips_finished_brands_and_refits_missing_one(local_run, tmp_path):
    import shutil

    df, out0, index0, _ = local_run
    out = tmp_path / "copy"
    shutil.copytree(out0, out)
    shutil.rmtree(out / "bolt")
    mtimes = {b: (out / b / "summary.json").stat().st_mtime_ns for b in GOOD if b != "bolt"}
    # in this process (executor=None): same seeds, so the refit brand gets the same numbers
    index = fit_many(df, by="brand", spec=SPEC, out=out, executor=None, progress=False, **FIT)
    res = dict(zip(index["brand"], index["resumed"]))
    assert res == {
        "acme": True,
        "bolt": False,
        "cora": True,
        "dune": True,
        "nan_spend": False,
        "zero_sales": False,
    }
    assert {b: (out / b / "summary.json").stat().st_mtime_ns for b in mtimes} == mtimes
    assert (out / "bolt" / "summary.json").is_file()
    np.testing.assert_array_equal(index[ROAS].to_numpy(dtype=float), index0[ROAS].to_numpy(dtype=float))

    # other settings (more draws) must not reuse the old results
    idx2 = fit_many(
        df[df["brand"] == "acme"],
        by="brand",
        spec=SPEC,
        out=out,
        executor=None,
        progress=False,
        **{**FIT, "draws": 120},
    )
    assert not idx2["resumed"].any() and (idx2["status"] == "ok").all()
    assert (out / "acme" / "summary.json").stat().st_mtime_ns != mtimes["acme"]


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fastmmm.cli",
        "fit-many",
        str(data),
        "--by",
        "brand",
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        "tv,search",
        "--controls",
        "event",
        "--adstock",
        "geometric",
        "--saturation",
        "logistic",
        "--l-max",
        "4",
        "--yearly-seasonality",
        "1",
        "--draws",
        "200",
        "--tune",
        "200",
        "--chains",
        "2",
        "--seed",
        "5",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_killed_cli_run_resumes_without_refitting(tmp_path):
    names = [f"brand{i}" for i in range(6)]
    data = tmp_path / "brands.csv"
    brands_frame(names, bad=True).to_csv(data, index=False)  # two bad brands at the end
    everyone = names + ["nan_spend", "zero_sales"]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        _cli(data, out, "--workers", "1"),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not any((out / b / "summary.json").exists() for b in names):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no brand finished within 120 s"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker process, as a crash would
        proc.wait()
    finished = [b for b in names if (out / b / "summary.json").exists()]
    assert 0 < len(finished) < len(names), f"the kill came too late to test resuming: {finished}"
    mtimes = {b: (out / b / "summary.json").stat().st_mtime_ns for b in finished}
    # whatever the kill left: a brand directory is either absent or complete
    for b in everyone:
        if (out / b).exists():
            assert (out / b / "model" / "idata.nc").is_file() and (out / b / "run.json").is_file()

    rerun = subprocess.run(_cli(data, out), check=False, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # 1: some brands failed
    assert f"6/8 brands fitted ({len(finished)} from an earlier run)" in rerun.stdout, rerun.stdout
    assert "nan_spend: DataError" in rerun.stdout and "zero_sales: DataError" in rerun.stdout
    index = pd.read_csv(out / "index.csv")
    assert list(index["brand"]) == everyone
    assert list(index["status"]) == ["ok"] * 6 + ["failed"] * 2
    assert set(index.loc[index["resumed"], "brand"]) == set(finished)
    assert {b: (out / b / "summary.json").stat().st_mtime_ns for b in finished} == mtimes
    # the killed run's temporary directories and lock are gone
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["index.csv"])


def test_dask_gives_the_local_results(local_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    df, _, local_index, _ = local_run
    # a light in-process cluster on the loopback interface, reached by address
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=None,
    ) as cluster:
        index = fit_many(
            df,
            by="brand",
            spec=SPEC,
            out=tmp_path / "dask",
            executor="dask",
            dask_address=cluster.scheduler_address,
            progress=False,
            **FIT,
        )
    assert list(index["status"]) == list(local_index["status"])
    assert list(index["error"]) == list(local_index["error"])
    np.testing.assert_array_equal(index[ROAS].to_numpy(dtype=float), local_index[ROAS].to_numpy(dtype=float))
    np.testing.assert_array_equal(
        index["rhat_max"].to_numpy(dtype=float), local_index["rhat_max"].to_numpy(dtype=float)
    )
    assert (tmp_path / "dask" / "acme" / "model" / "idata.nc").is_file()


def test_dask_own_local_cluster(local_run):
    pytest.importorskip("distributed")
    df, _, local_index, _ = local_run
    # no address: fit_many starts (and closes) a loopback LocalCluster of worker processes
    index = fit_many(df, by="brand", spec=SPEC, executor="dask", workers=1, progress=False, **FIT)
    np.testing.assert_array_equal(index[ROAS].to_numpy(dtype=float), local_index[ROAS].to_numpy(dtype=float))


def test_brand_seed_and_dirnames():
    assert brand_seed(1, "a") == brand_seed(1, "a")
    assert len({brand_seed(1, "a"), brand_seed(1, "b"), brand_seed(2, "a")}) == 3
    assert 0 <= brand_seed(123, "x") < 2**31
    names = _dirnames(["plain", "a/b", "../up", "Acme", "acme", "", "index.csv"])
    assert names["plain"] == "plain"
    assert all("/" not in n and not n.startswith(".") and n for n in names.values())
    assert len({n.lower() for n in names.values()}) == 7
    assert names["index.csv"] != "index.csv"


def test_bad_arguments_fail_before_any_fit(tmp_path):
    df = brands_frame(["a"])
    with pytest.raises(DataError, match="'region'"):
        fit_many(df, by="region", spec=SPEC, out=tmp_path, progress=False)
    df2 = df.copy()
    df2.loc[3, "brand"] = None
    with pytest.raises(DataError, match="no brand"):
        fit_many(df2, spec=SPEC, progress=False)
    with pytest.raises(ValueError, match="executor"):
        fit_many(df, spec=SPEC, executor="threads")
    with pytest.raises(ValueError, match="draws"):
        fit_many(df, spec=SPEC, draws=0)


def test_one_run_per_output_directory(tmp_path):
    (tmp_path / ".fastmmm-fit-many.lock").write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
    )
    with pytest.raises(RuntimeError, match="another fit_many run"):
        fit_many(brands_frame(["a"]), spec=SPEC, out=tmp_path, progress=False)


def test_fastmmm_warnings_go_to_the_index():
    df = brands_frame(["solo"])
    df["t"] = np.arange(
        len(df), dtype=float
    )  # a linear time control: fastmmm drops its own trend and says so
    spec = SPEC.replace(controls=("event", "t"))
    index = fit_many(df, spec=spec, executor=None, progress=False, **FIT)
    assert index.loc[0, "status"] == "ok", index.loc[0, "error"]
    assert "linear time trend" in index.loc[0, "warnings"]


def test_brand_threads_share_the_cores_and_keep_their_kernels_on_them(monkeypatch):
    """On fit-many's brand threads the brands' chains draw from one pool of the cores (at
    most as many chains at once as there are cores, and the last brand's chains side by
    side once the others are done), each brand's batched kernels run on its share of the
    cores (one each when there are as many brands as cores, all of them for a lone brand:
    the other cores sample other brands); the settings are the defaults again afterwards."""
    from fastmmm import _core, fastpath

    monkeypatch.setattr(batch.os, "cpu_count", lambda: 2)
    seen, pools = [], []
    real = batch._fit_brand

    def spy(task):
        seen.append((task["fit_kwargs"]["cores"], _core.get_kernel_threads()))
        pools.append(fastpath._sharing.pool)
        return real(task)

    monkeypatch.setattr(batch, "_fit_brand", spy)
    index = fit_many(brands_frame(GOOD[:3]), by="brand", spec=SPEC, progress=False, **FIT)
    assert (index["status"] == "ok").all()
    chains = FIT["chains"]
    assert seen == [(max(chains, 1), 1)] * 3
    assert isinstance(pools[0], _core.CorePool) and pools[0].cores == 2
    assert all(p is pools[0] for p in pools)  # one pool for every brand
    assert pools[0].peak == 2  # the chains drew from it, two at a time at most
    assert (index["sample_core_s"] > 0).all()  # the chains' CPU time, in the index
    seen.clear()
    pools.clear()
    fit_many(brands_frame(GOOD[:1]), by="brand", spec=SPEC, progress=False, **FIT)
    assert seen == [(2, 2)]
    assert getattr(fastpath._sharing, "pool", None) is None  # the calling thread is untouched
    assert _core.get_kernel_threads() == 0  # the calling thread is untouched
