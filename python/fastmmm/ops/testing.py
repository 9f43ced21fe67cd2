"""Test helpers for the Ops."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: start of the warning PyTensor's numba backend emits (generate_fallback_impl)
#: when an Op has no numba implementation and its Python perform is wrapped in
#: numba object mode
OBJECT_MODE_WARNING = "Numba will use object mode"


@contextmanager
def forbid_numba_object_mode() -> Iterator[None]:
    """Make a PyTensor numba object-mode fallback an error inside the block.

    PyTensor only warns (UserWarning) when it falls back to object mode; inside
    this block that warning is raised as an exception, so compiling a graph
    (``pytensor.function(..., mode="NUMBA")`` or
    ``nutpie.compile_pymc_model(..., backend="numba")``) fails instead.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=OBJECT_MODE_WARNING, category=UserWarning)
        yield
