"""Many brands: compile once, fit many, scale out on Dask.

:func:`fit_many` splits a long-format DataFrame (one row per brand and period)
by a brand column and fits one model per brand with :meth:`fastmmm.MMM.fit`.
Every process keeps its compiled models (:mod:`fastmmm.fit`'s per-process
cache, keyed by model structure and array shapes), so a worker compiles once
per distinct structure and shape and swaps the data in for every further brand
it gets.

Executors
---------
``"local"`` (default)
    A :class:`concurrent.futures.ProcessPoolExecutor` ("spawn" start method) of
    ``workers`` processes (default ``os.cpu_count() // chains``: each fit's
    chains already run in parallel threads); brands are handed out one at a
    time, each worker compiles on its first brand and reuses the model for the
    rest. Each fit runs its chains on ``cpu_count // workers`` threads unless
    ``cores`` is given. When the default comes to one worker (the chains fill
    the machine), brands run in this process instead: a pool would only add
    worker start-up (importing PyMC takes seconds).
``"dask"``
    Tasks submitted to a ``dask.distributed`` cluster: the scheduler at
    ``dask_address`` (or a ``distributed.Client`` passed there), or else a
    :class:`distributed.LocalCluster` started on the loopback interface
    (``workers`` single-threaded worker processes, no dashboard) and closed at
    the end. Workers write the per-brand results themselves, so ``out`` must
    be on a filesystem they all see. Needs the ``dask`` extra.
``None``
    One brand after another in the calling process (debugging; shares the
    caller's compile cache).

Outputs (``out=DIR``)
---------------------
``DIR/<brand>/`` holds ``summary.json``, ``contributions.csv``, the saved
model ``model/`` (:meth:`~fastmmm.results.MMMResult.save`), ``run.json`` (seed
and a fingerprint of data and settings) and, with ``report=True``,
``report.html``. ``DIR/index.csv`` has one row per brand (see
:data:`INDEX_COLUMNS`; plus ``roas_<channel>``, the posterior-mean ROAS of
every channel). A brand's directory is written under a temporary name and
renamed when complete, so an interrupted run never leaves a half-written
result that looks finished. The index is rewritten as brands finish.

Resume: a later run with the same data and settings into the same ``DIR``
skips every brand whose directory is complete and whose ``run.json``
fingerprint matches (brand data, spec, draws/tune/chains, seed, other fit
options); changed brands are refit and replaced, failed ones retried. One run
per output directory at a time (a lock file guards it).

Failure isolation: a brand whose data are invalid
(:class:`~fastmmm.data.DataError`) or whose fit raises is recorded in the index
with ``status="failed"`` and its error; the other brands go on.

Seeds: each brand's seed is :func:`brand_seed` ``(seed, brand)``, independent
of the executor, the worker and the order of fits, so local and Dask runs give
identical results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fastmmm import defaults

__all__ = ["EXECUTORS", "INDEX_COLUMNS", "brand_seed", "fit_many"]

#: Values of ``fit_many(executor=...)``.
EXECUTORS = ("local", "dask", None)

#: Columns of the index, in order; ``roas_<channel>`` columns follow ``r2``.
INDEX_COLUMNS = (
    "brand",
    "status",
    "error",
    "passed",
    "rhat_max",
    "ess_bulk_min",
    "divergences",
    "mape",
    "mape_holdout",
    "r2",
    # roas_<channel> ...
    "build_s",
    "compile_s",
    "sample_s",
    "sample_core_s",
    "total_s",
    "write_s",
    "seed",
    "backend",
    "resumed",
    "failures",
    "warnings",
    "dir",
)

_LOCK = ".fastmmm-fit-many.lock"
_RESERVED = {"index.csv"}  # names in DIR that are not brand directories
# fit options at MMM.fit's defaults are left out of the resume fingerprint (CLI and API runs match)
_NEUTRAL = {"holdout_weeks": 0, "backend": "auto"}
_INDEX_EVERY_S = 2.0  # the index is rewritten at most this often while brands finish


# ---------------------------------------------------------------------------- seeds, names


def brand_seed(seed: int, brand) -> int:
    """The seed of one brand's fit: a hash of ``(seed, str(brand))`` in ``[0, 2**31)``."""
    h = hashlib.blake2b(f"fastmmm-brand-seed:{int(seed)}:{brand}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


def _short_hash(s: str) -> str:
    return hashlib.blake2b(s.encode(), digest_size=4).hexdigest()


def _dirnames(brands: list[str]) -> dict[str, str]:
    """A safe, distinct directory name per brand (a hash is added when the name had to change)."""
    names = {}
    for b in brands:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", b).strip("._") or "brand"
        names[b] = safe if safe == b and safe.lower() not in _RESERVED else f"{safe}-{_short_hash(b)}"
    # Case-insensitive filesystems: brands differing only in case must not share a directory.
    lower: dict[str, int] = {}
    for n in names.values():
        lower[n.lower()] = lower.get(n.lower(), 0) + 1
    return {b: (n if lower[n.lower()] == 1 else f"{n}-{_short_hash(b)}") for b, n in names.items()}


# ---------------------------------------------------------------------------- one brand (runs in a worker)


def _record_from_summary(summary: dict, channels) -> dict:
    d = summary.get("diagnostics", {})
    t = summary.get("timing", {})
    rec = {
        "passed": d.get("passed"),
        "rhat_max": d.get("rhat_max"),
        "ess_bulk_min": d.get("ess_bulk_min"),
        "divergences": d.get("divergences"),
        "mape": d.get("mape_in_sample"),
        "mape_holdout": d.get("mape_holdout"),
        "r2": d.get("r2"),
        "failures": "; ".join(d.get("failures", [])),
        "backend": summary.get("backend"),
    }
    for ch in channels:
        rec[f"roas_{ch}"] = summary.get("channels", {}).get(ch, {}).get("roas", {}).get("mean")
    for k in ("build_s", "compile_s", "sample_s", "sample_core_s", "total_s"):
        rec[k] = t.get(k)
    return rec


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete directory ``tmp`` to ``final``, replacing an old one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


class _WarningRouter:
    """Warnings of fits running on several threads of this process, each to its thread's list.

    ``warnings.catch_warnings`` swaps process-wide state and is not thread-safe; while a
    router is installed (by the thread executor, around all its fits), every thread's
    warnings are recorded into ``_WarningRouter.local.caught`` of that thread.
    """

    local = threading.local()
    active = False

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = self._show
        _WarningRouter.active = True
        return self

    def __exit__(self, *exc):
        _WarningRouter.active = False
        self._cm.__exit__(*exc)

    @staticmethod
    def _show(message, category, filename, lineno, file=None, line=None):
        caught = getattr(_WarningRouter.local, "caught", None)
        if caught is not None:
            caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))


@contextlib.contextmanager
def _recorded_warnings():
    """This thread's warnings as a list (a thread of the thread executor, or a whole process)."""
    if _WarningRouter.active:
        _WarningRouter.local.caught = caught = []
        try:
            yield caught
        finally:
            _WarningRouter.local.caught = None
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught


def _fit_brand(task: dict) -> tuple[dict, object, float]:
    """Fit one brand: (record, result or None, start time); never raises for a bad brand."""
    from fastmmm.fit import MMM
    from fastmmm.spec import ModelSpec

    t0 = time.perf_counter()
    rec = {
        "brand": task["brand"],
        "status": "failed",
        "error": "",
        "seed": task["seed"],
        "resumed": False,
        "dir": task["dirname"],
    }
    result = None
    caught: list = []
    try:
        # Keep a batch run's output readable: fastmmm's own warnings go to the index
        # (failed diagnostics are already in passed / failures), the rest are dropped.
        with _recorded_warnings() as caught:
            result = MMM(ModelSpec.from_dict(task["spec"])).fit(
                task["df"],
                draws=task["draws"],
                tune=task["tune"],
                chains=task["chains"],
                seed=task["seed"],
                progress=False,
                check=False,  # diagnostics go to the index (computed once, by the summary)
                **dict(task["fit_kwargs"]),
            )
    except Exception as e:  # noqa: BLE001 - one brand's failure must not stop the batch
        rec["error"] = _error_text(e)
    rec["warnings"] = _warning_text(caught)
    return rec, result, t0


def _warning_text(caught, before: str = "") -> str:
    """fastmmm's own warnings, one line each, joined (after ``before``'s), duplicates dropped."""
    msgs = dict.fromkeys(m for m in before.split(" | ") if m)
    msgs.update(
        dict.fromkeys(
            " ".join(str(w.message).split())
            for w in caught
            if str(w.message).startswith("fastmmm") and "sampling diagnostics failed" not in str(w.message)
        )
    )
    return " | ".join(msgs)


def _write_brand(task: dict, rec: dict, result, t0: float) -> dict:
    """Write a fitted brand's outputs (summary.json, contributions.csv, model/, run.json) and
    complete its record; never raises for a bad brand."""
    if result is None:
        rec["total_s"] = time.perf_counter() - t0
        return rec
    t_write = time.perf_counter()
    caught: list = []
    try:
        with _recorded_warnings() as caught:
            summary = _write_outputs_of(task, result)
        rec.update(_record_from_summary(summary, task["spec"]["channels"]))
        rec["write_s"] = time.perf_counter() - t_write
        rec["status"] = "ok"
    except Exception as e:  # noqa: BLE001
        rec["error"] = _error_text(e)
        rec["total_s"] = time.perf_counter() - t0
    rec["warnings"] = _warning_text(caught, rec.get("warnings", ""))
    return rec


def _write_outputs_of(task: dict, result) -> dict:
    """The brand's files, under a temporary name renamed into place; its summary."""
    tmp = None
    try:
        if task["out"] is None:
            summary = result.summary()
        else:
            from fastmmm.outputs import write_outputs

            tmp = Path(task["out"]) / f".{task['dirname']}.tmp-{secrets.token_hex(6)}"
            tmp.mkdir()
            summary = write_outputs(result, tmp, report=task["report"])
            run = {
                "brand": task["brand"],
                "seed": task["seed"],
                "fingerprint": task["fingerprint"],
                "draws": task["draws"],
                "tune": task["tune"],
                "chains": task["chains"],
            }
            (tmp / "run.json").write_text(json.dumps(run, indent=1))
            _replace_dir(tmp, Path(task["out"]) / task["dirname"])
            tmp = None
        return summary
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run_task(task: dict) -> dict:
    """Fit one brand and write its outputs; never raises for a bad brand.

    The brand's batched kernels (its summary's contribution totals, convergence statistics)
    get its share of the cores (``kernel_threads``, else ``cores``; a brand thread's 1 keeps
    them on it): the other cores are busy with other brands, and work handed to the whole
    pool would wait for them to be scheduled. Its chains draw from ``core_pool`` when the
    brands share one (:func:`fastmmm.fastpath.sharing_cores`)."""
    from fastmmm import _core
    from fastmmm.fastpath import sharing_cores

    cores = task.get("kernel_threads", task["fit_kwargs"].get("cores"))
    _core.set_kernel_threads(int(cores) if cores else 0)
    try:
        with sharing_cores(task.get("core_pool")):
            return _write_brand(task, *_fit_brand(task))
    finally:
        _core.set_kernel_threads(0)  # the default again, should the thread be reused


def _error_text(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ---------------------------------------------------------------------------- resume


def _data_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in df.columns]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _setting_digest(v) -> str:
    """A fit option as it enters the resume fingerprint: by content for tables, arrays and
    files (a lift-test CSV edited in place, or a DataFrame whose repr is truncated, must not
    match the old run), by ``repr`` otherwise."""
    if isinstance(v, pd.DataFrame):
        return "frame:" + _data_hash(v)
    if isinstance(v, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() + str(v.shape)
    if isinstance(v, (str, os.PathLike)) and Path(v).is_file():
        return "file:" + hashlib.sha256(Path(v).read_bytes()).hexdigest()
    return repr(v)


def _fingerprint(settings: dict, df: pd.DataFrame) -> str:
    text = json.dumps({"settings": settings, "data": _data_hash(df)}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _finished(path: Path, fingerprint: str) -> dict | None:
    """The summary of a complete brand directory written with ``fingerprint``, else None."""
    try:
        run = json.loads((path / "run.json").read_text())
        if run.get("fingerprint") != fingerprint:
            return None
        if not ((path / "model" / "meta.json").is_file() and (path / "model" / "idata.nc").is_file()):
            return None
        summary = json.loads((path / "summary.json").read_text())
        return {"summary": summary, "seed": run.get("seed")}
    except (OSError, ValueError):
        return None


class _DirLock:
    """One fit_many run per output directory: a lock file naming host and pid."""

    def __init__(self, out: Path):
        self.path = out / _LOCK
        self.held = False

    def __enter__(self):
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and not _pid_alive(other.get("pid")):
                    self.path.unlink(missing_ok=True)  # left by a run that was killed
                    continue
                raise RuntimeError(
                    f"another fit_many run (host {other.get('host')}, pid {other.get('pid')}) is writing to "
                    f"{self.path.parent}; if none is, delete {self.path}"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RuntimeError(f"could not take the lock {self.path}")

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out: Path) -> None:
    """Remove temporary directories left by an interrupted run."""
    for p in out.iterdir():
        if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------- index, progress


def _index_frame(records: dict[str, dict], order: list[str], channels) -> pd.DataFrame:
    cols = list(INDEX_COLUMNS)
    i = cols.index("r2") + 1
    cols[i:i] = [f"roas_{ch}" for ch in channels]
    rows = [records[b] for b in order if b in records]
    df = pd.DataFrame(rows, columns=cols)
    df["resumed"] = df["resumed"].astype(bool)
    df["passed"] = df["passed"].astype("boolean")  # missing for failed brands
    df["divergences"] = df["divergences"].astype("Int64")
    df["seed"] = df["seed"].astype("Int64")
    for c in ("error", "failures", "warnings"):
        df[c] = df[c].astype(object).fillna("")
    return df


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


class _Progress:
    """A bar over brands with ETA (tqdm when installed, else a line per brand)."""

    def __init__(self, total: int, enabled: bool, done: int = 0):
        self.total, self.enabled, self.n = total, enabled and total > 0, 0
        self.ok = self.failed = 0
        self.t0 = time.perf_counter()
        self.bar = None
        if self.enabled:
            if done:
                print(f"fit-many: {done} brand(s) already done, {total} to fit", file=sys.stderr)
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover - tqdm comes with pymc
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=total, desc="fit-many", unit="brand", file=sys.stderr, dynamic_ncols=True
                )

    def update(self, rec: dict) -> None:
        self.n += 1
        if rec["status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(ok=self.ok, failed=self.failed, refresh=False)
            self.bar.update(1)
        else:
            el = time.perf_counter() - self.t0
            eta = el / self.n * (self.total - self.n)
            print(
                f"fit-many: {self.n}/{self.total} {rec['brand']} {rec['status']}  elapsed {el:.0f}s  ETA {eta:.0f}s",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------- executors


def _run_serial(tasks, on_done) -> None:
    """Brands back to back in this process: while one brand samples (in Rust, the GIL
    released) the previous one's outputs are written on a second thread, so the cores the
    chains leave idle (a chain that finishes early, the gap between fits) do the writing."""
    from concurrent.futures import ThreadPoolExecutor

    # The router: warnings of the writer thread go to its brand, not to the one being fitted.
    with _WarningRouter(), ThreadPoolExecutor(1, thread_name_prefix="fastmmm-writer") as writer:
        pending = None
        for t in tasks:
            fitted = _fit_brand(t)
            if pending is not None:
                on_done(pending.result())
            pending = writer.submit(_write_brand, t, *fitted)
        if pending is not None:
            on_done(pending.result())


def _fast_path_covers(spec) -> bool:
    from fastmmm.fastpath import supported

    return supported(spec)[0]


def _run_threads(tasks, on_done, threads: int) -> None:
    """Several brands at once in this process, one per thread: the fast path samples in Rust
    with the GIL released, so brands sample side by side on every core while another
    thread's Python work (data checks, outputs) goes on, and no process has to start."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with _WarningRouter(), ThreadPoolExecutor(threads, thread_name_prefix="fastmmm-brand") as pool:
        futures = [pool.submit(_run_task, t) for t in tasks]
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
        except BaseException:
            from fastmmm.fastpath import cancel_running

            for f in futures:
                f.cancel()
            # The brands sampling now stop too (their threads never see the Ctrl-C).
            cancel_running()
            raise


def _run_local(tasks, on_done, workers: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # "spawn": a forked copy of a process whose sampler threads are running is not safe.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    clean = False
    try:
        futures = {pool.submit(_run_task, t): t for t in tasks}
        for fut in as_completed(futures):
            on_done(_result_or_failure(fut, futures[fut]))
        clean = True
    finally:
        if clean:
            # Idle workers take seconds to finalise (PyMC, numba): let them exit in the background.
            pool.shutdown(wait=False)
        else:  # interrupted: stop the workers now rather than after their current brand
            pool.shutdown(wait=False, cancel_futures=True)
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()


def _run_dask(tasks, on_done, workers: int, dask_address) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as e:  # pragma: no cover - exercised without the extra installed
        raise ImportError("executor='dask' needs dask.distributed: pip install 'fastmmm[dask]'") from e

    cluster = None
    if dask_address is not None and hasattr(dask_address, "submit"):
        client, own_client = dask_address, False
    elif dask_address is not None:
        client, own_client = Client(dask_address, set_as_default=False), True
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client, own_client = Client(cluster, set_as_default=False), True
    try:
        futures = {}
        for i, t in enumerate(tasks):
            fut = client.submit(
                _run_task, t, pure=False, key=f"fastmmm-fit-{i}-{t['dirname']}-{secrets.token_hex(4)}"
            )
            futures[fut] = t
        for fut in as_completed(list(futures), loop=client.loop):
            on_done(_result_or_failure(fut, futures[fut]))
            fut.release()
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _result_or_failure(fut, task) -> dict:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - a worker died or the task could not run
        return {
            "brand": task["brand"],
            "status": "failed",
            "error": _error_text(e),
            "seed": task["seed"],
            "resumed": False,
            "dir": task["dirname"],
        }


# ---------------------------------------------------------------------------- API


def fit_many(
    df,
    by: str = "brand",
    spec=None,
    executor: str | None = "local",
    out=None,
    *,
    draws: int = defaults.DRAWS,
    tune: int = defaults.TUNE,
    chains: int = defaults.CHAINS,
    seed: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    dask_address=None,
    report: bool = False,
    **fit_kwargs,
) -> pd.DataFrame:
    """Fit one model per brand: compile once per structure and shape, fit many.

    Parameters
    ----------
    df : pandas.DataFrame or path to a CSV file
        Long format: the ``by`` column plus the spec's columns, one row per
        brand and period.
    by : str
        Column naming the brand (any hashable values; written as ``str``).
    spec : ModelSpec or mapping
        The model for every brand (a mapping goes to ``ModelSpec.from_dict``).
    executor : {"local", "dask", None}
        See the module docstring: a process pool, a Dask cluster, or in this
        process one brand after another.
    out : path, optional
        Output directory (``DIR/<brand>/`` and ``DIR/index.csv``); without it
        nothing is written and nothing can be resumed.
    draws, tune, chains : int
        As in :meth:`fastmmm.MMM.fit`.
    seed : int, optional
        Base seed; brand ``b`` is fitted with :func:`brand_seed` ``(seed, b)``.
        Without it a random base seed is drawn (recorded per brand in the index).
    workers : int, optional
        Worker processes (local pool, or the LocalCluster started for
        ``executor="dask"``); default ``max(1, os.cpu_count() // chains)``, at
        most the number of brands to fit.
    progress : bool
        Progress bar over brands with ETA (per-fit sampler bars are always off).
    dask_address : str or distributed.Client, optional
        Scheduler address (``"tcp://host:8786"``) or a client; without it a
        loopback LocalCluster is started.
    report : bool
        Also write each brand's ``report.html`` (slow: plots).
    **fit_kwargs
        Passed to :meth:`fastmmm.MMM.fit` (``holdout_weeks``, ``backend``,
        ``cores``, ``target_accept``, ...).

    Returns
    -------
    pandas.DataFrame
        The index: one row per brand in order of first appearance, columns
        :data:`INDEX_COLUMNS` plus ``roas_<channel>``; also written to
        ``DIR/index.csv``.
    """
    from fastmmm.data import DataError
    from fastmmm.spec import ModelSpec

    if executor not in EXECUTORS:
        raise ValueError(f"executor: must be 'local', 'dask' or None, got {executor!r}")
    if spec is None:
        raise TypeError("fit_many: spec is required (a ModelSpec or a mapping)")
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    for name, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
    if "progress_bar" in fit_kwargs:
        raise TypeError("fit_many: use progress=, not progress_bar=")

    if isinstance(df, (str, os.PathLike)):
        df = pd.read_csv(df, dtype={by: str})
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a DataFrame or a CSV path, got {type(df).__name__}")
    if by not in df.columns:
        raise DataError(
            f"column {by!r} (the brand column, by=) is not in the data; columns: {', '.join(map(str, df.columns))}"
        )
    missing = df[by].isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise DataError(f"column {by!r}: {int(missing.sum())} row(s) have no brand (first rows {rows})")

    keys = df[by].astype(str)
    order = list(pd.unique(keys))
    groups = {b: g.drop(columns=[by]).reset_index(drop=True) for b, g in df.groupby(keys, sort=False)}
    dirnames = _dirnames(order)
    base_seed = int(seed) if seed is not None else secrets.randbits(31)
    spec_dict = spec.to_dict()
    channels = list(spec.channels)

    cpus = os.cpu_count() or 1
    n_workers = int(workers) if workers is not None else max(1, cpus // max(int(chains), 1))
    kw = dict(fit_kwargs)
    threads = 0
    on_fast_path = kw.get("backend", "auto") != "pytensor" and _fast_path_covers(spec)
    if executor == "local" and workers is None and on_fast_path:
        # Brands on threads of this process, their chains drawing from one pool of the cores
        # (a chain starts whenever a core frees): no worker start-up, and the cores stay busy
        # across brand boundaries and to the last brand's last chain.
        threads = cpus
    own_workers = executor == "local" or (executor == "dask" and dask_address is None)
    if own_workers and not threads and "cores" not in kw and n_workers > 1:
        kw["cores"] = max(1, cpus // n_workers)  # chains of concurrent fits share the cores
    settings = {
        "defaults": defaults.FIT_DEFAULTS_VERSION,
        "spec": spec_dict,
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "seed": None if seed is None else int(seed),
        "report": bool(report),
        "fit_kwargs": {
            k: _setting_digest(v)
            for k, v in sorted(fit_kwargs.items())
            if k != "cores" and not (k in _NEUTRAL and v == _NEUTRAL[k])
        },
    }

    out_p = None if out is None else Path(out)
    records: dict[str, dict] = {}
    tasks = []
    lock = None
    if out_p is not None:
        out_p.mkdir(parents=True, exist_ok=True)
        lock = _DirLock(out_p).__enter__()
    try:
        if out_p is not None:
            _clean_stale(out_p)
        for b in order:
            fp = _fingerprint(settings, groups[b]) if out_p is not None else ""
            done = _finished(out_p / dirnames[b], fp) if out_p is not None else None
            if done is not None:
                rec = {
                    "brand": b,
                    "status": "ok",
                    "error": "",
                    "seed": done["seed"],
                    "resumed": True,
                    "dir": dirnames[b],
                }
                rec.update(_record_from_summary(done["summary"], channels))
                records[b] = rec
                continue
            tasks.append(
                {
                    "brand": b,
                    "dirname": dirnames[b],
                    "df": groups[b],
                    "spec": spec_dict,
                    "draws": int(draws),
                    "tune": int(tune),
                    "chains": int(chains),
                    "seed": brand_seed(base_seed, b),
                    "fit_kwargs": kw,
                    "out": None if out_p is None else str(out_p),
                    "report": bool(report),
                    "fingerprint": fp,
                }
            )

        bar = _Progress(len(tasks), progress, done=len(records))
        last_write = [time.perf_counter()]

        def write_index(force: bool = False) -> None:
            if out_p is None:
                return
            now = time.perf_counter()
            if force or now - last_write[0] >= _INDEX_EVERY_S:
                _write_csv(_index_frame(records, order, channels), out_p / "index.csv")
                last_write[0] = now

        def on_done(rec: dict) -> None:
            records[rec["brand"]] = rec
            bar.update(rec)
            write_index(force=bar.n == 1)

        try:
            if records:
                write_index(force=True)
            if tasks:
                w = max(1, min(n_workers, len(tasks)))
                if executor is None:
                    _run_serial(tasks, on_done)
                elif threads:
                    n = max(1, min(threads, len(tasks)))
                    if "cores" not in kw:
                        # The brands' chains draw from one pool of the cores: a chain starts
                        # as soon as any core frees, so the last brands use the cores the
                        # others leave (a fixed share each would leave them idle). A brand's
                        # own kernels (its summary) keep to its share.
                        from fastmmm import _core

                        pool = _core.CorePool(cpus)
                        share = max(1, cpus // n)
                        for t in tasks:
                            t["fit_kwargs"] = {**kw, "cores": max(int(chains), share)}
                            t["kernel_threads"] = share
                            t["core_pool"] = pool
                    _run_threads(tasks, on_done, n)
                elif executor == "local":
                    _run_local(tasks, on_done, w)
                else:
                    _run_dask(tasks, on_done, w, dask_address)
        finally:
            bar.close()
            write_index(force=True)
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
    return _index_frame(records, order, channels)
