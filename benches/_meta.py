"""Run metadata shared by the benchmark scripts: package versions and the CPU."""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

import numpy as np

#: Packages every benchmark reports.
CORE = ("fastmmm", "pymc_marketing", "pymc", "pytensor", "nutpie", "arviz")


def versions(*extra: str) -> dict:
    """Python, numpy and the versions of ``CORE`` plus ``extra`` packages."""
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in (*CORE, *extra):
        out[name] = importlib.import_module(name).__version__
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
