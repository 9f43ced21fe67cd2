"""Run metadata shared by the benchmark scripts: package versions and the CPU."""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

#: Packages every benchmark reports.
CORE = ("fastmmm", "pymc_marketing", "pymc", "pytensor", "nutpie", "arviz")


def versions(*extra: str) -> dict:
    """Python, numpy and the installed versions of ``CORE`` plus ``extra`` packages
    (from their metadata: nothing is imported; "not installed" when absent)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in (*CORE, *extra):
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@contextlib.contextmanager
def quiet(record: list):
    """Silence warnings (recorded in ``record``), logging and stdout chatter of a fit."""
    with warnings.catch_warnings(record=True) as w, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
            for m in w:
                msg = str(m.message).strip().splitlines()[0][:160]
                if msg not in record:
                    record.append(msg)
