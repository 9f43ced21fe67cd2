"""The fast path's sampler: nuts-rs inside the Rust core.

* no fastmmm module reaches into a private (underscore) name of nutpie, pymc,
  pytensor or arviz;
* ``fastmmm fit`` samples on backend "rust" in a process where ``import
  nutpie`` fails;
* any exception while setting up or starting the fast path falls back to the
  pytensor backend, with the reason logged and in summary.json;
* the progress bar; Ctrl-C stops every chain within a second and leaves no
  sampler thread running.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastmmm.progress import ChainProgressBar
from fastmmm.spec import ModelSpec
from fastmmm.synthetic import make_dataset

PACKAGE = Path(__import__("fastmmm").__file__).parent
DEPENDENCIES = ("nutpie", "pymc", "pytensor", "arviz")


def _private_uses(tree: ast.AST) -> list[str]:
    """Underscore names of the dependencies a module imports or reaches by attribute."""
    found = []
    aliases = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                root = a.name.split(".")[0]
                if root in DEPENDENCIES:
                    aliases[a.asname or root] = root
                    found += [f"import {a.name}" for part in a.name.split(".") if part.startswith("_")]
        elif isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] in DEPENDENCIES:
            parts = n.module.split(".")
            bad = [p for p in parts if p.startswith("_")] + [
                a.name for a in n.names if a.name.startswith("_")
            ]
            found += [f"from {n.module} import {b}" for b in bad]
            for a in n.names:
                aliases[a.asname or a.name] = parts[0]
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__"):
            root = n
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.append(ast.unparse(n))
    return found


def test_no_module_uses_a_private_name_of_a_dependency():
    bad = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        uses = _private_uses(ast.parse(f.read_text()))
        if uses:
            bad[str(f.relative_to(PACKAGE))] = uses
    assert not bad, f"private API of a dependency used: {bad}"
    # the check itself sees such uses
    assert _private_uses(ast.parse("from nutpie.compile_pymc import _prepare_dims_and_coords")) != []
    assert _private_uses(ast.parse("import nutpie\nnutpie.compile_pymc._x(1)")) != []
    assert _private_uses(ast.parse("import pymc as pm\npm.Model()")) == []


def _write_data(tmp_path) -> tuple[Path, list[str]]:
    df, truth = make_dataset(80, 3, adstock="geometric", saturation="hill", seed=4)
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path, list(truth.channels)


_BLOCK = """
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked for this test")
        return None
sys.meta_path.insert(0, _Block())
"""


def test_fit_samples_on_rust_without_nutpie(tmp_path):
    data, channels = _write_data(tmp_path)
    out = tmp_path / "out"
    code = _BLOCK.format(blocked=("nutpie",)) + textwrap.dedent(f"""
        try:
            import nutpie
            raise SystemExit("nutpie imported")
        except ImportError:
            pass
        from fastmmm.cli import main
        code = main(["fit", {str(data)!r}, "--date-column", "date", "--target", "sales",
                     "--channels", {",".join(channels)!r}, "--controls", "event", "--draws", "200",
                     "--tune", "200", "--seed", "1", "--quiet", "--no-report", "--out", {str(out)!r}])
        print("MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("nutpie", "pymc", "pytensor")))
        raise SystemExit(code)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "rust" and summary["backend_note"] == ""
    assert "MODULES []" in proc.stdout, proc.stdout
    assert not (out / "report.html").exists()  # --no-report


@pytest.fixture(scope="module")
def small():
    df, truth = make_dataset(60, 2, adstock="geometric", saturation="hill", seed=7)
    spec = ModelSpec(
        date_column="date", target="sales", channels=truth.channels, controls=("event",), l_max=4
    )
    return df, spec


@pytest.mark.parametrize(
    "target, error",
    [
        ("fastmmm.fastpath.build_problem", ZeroDivisionError("injected")),
        ("fastmmm.layout.ModelLayout.initial_point", TypeError("injected")),
        ("fastmmm._core.sample_nuts", OSError("injected")),
    ],
    ids=["build", "init", "sampler"],
)
def test_any_fast_path_failure_falls_back_to_pytensor(small, monkeypatch, caplog, tmp_path, target, error):
    import importlib

    from fastmmm.fit import MMM
    from fastmmm.outputs import write_outputs

    df, spec = small
    mod, _, attr = target.rpartition(".")
    try:
        owner = importlib.import_module(mod)
    except ImportError:
        mod, _, cls = mod.rpartition(".")
        owner = getattr(importlib.import_module(mod), cls)

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(owner, attr, fail)
    with caplog.at_level(logging.WARNING, logger="fastmmm"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MMM(spec).fit(df, draws=30, tune=30, chains=2, seed=1, progress=False)
    assert r.backend == "pytensor"
    assert type(error).__name__ in r.backend_note and "injected" in r.backend_note
    assert any("using the pytensor backend" in rec.getMessage() for rec in caplog.records)
    summary = write_outputs(r, tmp_path / "out", report=False)
    assert (
        json.loads((tmp_path / "out" / "summary.json").read_text())["backend_note"] == summary["backend_note"]
    )
    with pytest.raises(type(error)):
        MMM(spec).fit(df, draws=30, tune=30, chains=2, seed=1, progress=False, backend="rust")


def test_progress_bar_lines():
    s = io.StringIO()
    s.isatty = lambda: True
    bar = ChainProgressBar(2, 100, 100, stream=s)
    bar.update([(50, 200, 0, True, 0.1, 500, True, False), (40, 200, 0, True, 0.1, 400, True, False)])
    bar.update([(200, 200, 1, False, 0.1, 2000, True, True), (150, 200, 2, False, 0.1, 1500, True, False)])
    text = s.getvalue()
    assert "warmup" in text and "50/200" in text and "ETA" in text
    assert "divergences 3" in text and "88%" in text
    bar.update([(200, 200, 1, False, 0.1, 2000, True, True), (200, 200, 2, False, 0.1, 2000, True, True)])
    bar.close()
    assert s.getvalue().rstrip().endswith("3 divergences\x1b[K")


def test_progress_on_stderr_and_off_with_quiet(small, capfd):
    from fastmmm.fit import MMM

    df, spec = small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MMM(spec).fit(df, draws=50, tune=50, chains=2, seed=1, progress=True, max_draws=50)
        err = capfd.readouterr().err
        assert "sampled 2 chains x 50 draws (+50 warmup)" in err
        # 50 draws fail the ESS check (100 per chain): the chains go on, and the line says so.
        r = MMM(spec).fit(df, draws=50, tune=50, chains=2, seed=1, progress=True)
        err = capfd.readouterr().err
        assert r.posterior.n_draws > 50
        assert f"sampled 2 chains x {r.posterior.n_draws} draws (extended from 50 until converged)" in err
        MMM(spec).fit(df, draws=50, tune=50, chains=2, seed=1, progress=False)
        assert capfd.readouterr().err == ""


def test_ctrl_c_stops_every_chain_within_a_second(tmp_path):
    """SIGINT during sampling: KeyboardInterrupt within a second, no sampler thread left."""
    code = textwrap.dedent("""
        import os, sys, time, threading
        from fastmmm import MMM
        from fastmmm.synthetic import make_dataset
        df, truth = make_dataset(104, 4, adstock="geometric", saturation="hill", seed=2)
        m = MMM(date_column="date", target="sales", channels=truth.channels, controls=["event"])
        def tasks():
            return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1
        before = tasks()
        print("READY", flush=True)
        try:
            m.fit(df, draws=100, tune=10_000_000, chains=2, seed=1, progress=False)
            print("FINISHED")
        except KeyboardInterrupt:
            print("INTERRUPTED", threading.active_count(), before, tasks(), flush=True)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(2.5)  # into sampling
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - sent
    assert "INTERRUPTED" in out, (out, err[-2000:])
    assert elapsed < 1.5, elapsed
    py_threads, before, after = (int(v) for v in out.split("INTERRUPTED")[1].split()[:3])
    assert py_threads == 1
    # The OS threads of the process (where /proc tells): as many as before sampling started.
    assert after == before, out


def test_ctrl_c_stops_a_batch_sampling_on_threads(tmp_path):
    """fit_many runs brands on threads, which never see SIGINT: Ctrl-C in the main thread
    must still stop every brand's chains promptly (not after they finish)."""
    code = textwrap.dedent("""
        import os, threading
        import pandas as pd
        from fastmmm.batch import fit_many
        from fastmmm.spec import ModelSpec
        from fastmmm.synthetic import make_dataset
        dfs = []
        for i in range(2):
            df, truth = make_dataset(104, 3, adstock="geometric", saturation="hill", seed=10 + i)
            dfs.append(df.assign(brand=f"b{i}"))
        spec = ModelSpec(date_column="date", target="sales", channels=truth.channels, controls=("event",))
        print("READY", flush=True)
        try:
            fit_many(pd.concat(dfs), by="brand", spec=spec, draws=100, tune=10_000_000, seed=1,
                     progress=False)
            print("FINISHED")
        except KeyboardInterrupt:
            print("INTERRUPTED", threading.active_count(), flush=True)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(3.0)  # both brands sampling
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - sent
    assert "INTERRUPTED 1" in out, (out, err[-2000:])
    assert elapsed < 3.0, elapsed


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="no SIGINT")
def test_cli_ctrl_c_exits_130(tmp_path):
    data, channels = _write_data(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "fastmmm.cli",
        "fit",
        str(data),
        "--date-column",
        "date",
        "--target",
        "sales",
        "--channels",
        ",".join(channels),
        "--draws",
        "100",
        "--tune",
        "10000000",
        "--quiet",
        "--out",
        str(tmp_path / "o"),
    ]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err[-2000:])
    assert "interrupted" in err and "Traceback" not in err


def test_draws_that_cannot_fit_in_memory_are_a_clear_error(small):
    from fastmmm.fit import MMM

    df, spec = small
    with pytest.raises(ValueError, match="draws: .* GB"):
        MMM(spec).fit(df, draws=10**12, tune=10, progress=False)


def test_same_seed_same_draws_in_a_fresh_process(small, tmp_path):
    """Reproducible across processes, not only within one."""
    df, spec = small
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    code = textwrap.dedent(f"""
        import warnings, numpy as np
        warnings.simplefilter("ignore")
        from fastmmm import MMM
        from fastmmm.spec import ModelSpec
        import pandas as pd
        r = MMM(ModelSpec.from_json({spec.to_json()!r})).fit(pd.read_csv({str(path)!r}), draws=50, tune=50,
                                                        seed=9, progress=False)
        print(repr(float(r.posterior["sigma"].sum())))
    """)
    outs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    for o in outs:
        assert o.returncode == 0, o.stderr[-2000:]
    assert outs[0].stdout == outs[1].stdout
    assert np.isfinite(float(outs[0].stdout))
