"""Shared helpers for the kernel tests (import of fastmmm.kernels, tolerances)."""

from __future__ import annotations

import numpy as np
import pytest

try:  # the kernels may not be built yet: tests must then fail, not error at collection
    import fastmmm.kernels as _FK

    _IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the build state
    _FK = None
    _IMPORT_ERROR = exc


def kernels():
    """Return the ``fastmmm.kernels`` module or fail the calling test cleanly."""
    if _FK is None:
        pytest.fail(
            f"fastmmm.kernels is not importable (build with `maturin develop` / "
            f"`pip install -e .`): {_IMPORT_ERROR!r}",
            pytrace=False,
        )
    return _FK


def assert_close(got, ref, rtol=1e-12, scale=None, what=""):
    """assert_allclose with atol = rtol * max(1, max|scale|) (scale defaults to ref)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != expected {ref.shape}"
    s = np.abs(ref if scale is None else scale)
    atol = rtol * max(1.0, float(s.max()) if s.size else 1.0)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=what)


# names of (forward) kernels with the names of their parameters and static options
KERNELS = {
    "geometric_adstock": (("alpha",), ("l_max", "normalize")),
    "delayed_adstock": (("alpha", "theta"), ("l_max", "normalize")),
    "weibull_adstock": (("lam", "k"), ("l_max", "kind", "normalize")),
    "hill": (("kappa", "slope"), ()),
    "logistic_saturation": (("lam",), ()),
    "michaelis_menten": (("alpha", "lam"), ()),
    "tanh_saturation": (("b", "c"), ()),
}
