"""Type stubs for fastmmm's private Rust extension module."""

import numpy as np
from numpy.typing import NDArray

KERNEL_VERSION: int
__version__: str

F64 = NDArray[np.float64]

def adstock_fwd(
    kind: str, x: F64, p0: F64, p1: F64 | None, l_max: int, normalize: bool
) -> F64: ...
def adstock_vjp(
    kind: str, x: F64, p0: F64, p1: F64 | None, g: F64, l_max: int, normalize: bool
) -> tuple[F64, F64, F64 | None]: ...
def saturation_fwd(kind: str, x: F64, p0: F64, p1: F64 | None) -> F64: ...
def saturation_vjp(
    kind: str, x: F64, p0: F64, p1: F64 | None, g: F64
) -> tuple[F64, F64, F64 | None]: ...
def adstock_weights(kind: str, p0: float, p1: float, l_max: int, normalize: bool) -> F64: ...
def media_fwd(
    adstock: str,
    saturation: str,
    x: F64,
    a0: F64,
    a1: F64 | None,
    s0: F64,
    s1: F64 | None,
    l_max: int,
    normalize: bool,
) -> tuple[F64, F64]: ...
def media_vjp(
    adstock: str,
    saturation: str,
    x: F64,
    a0: F64,
    a1: F64 | None,
    cache: F64,
    g: F64,
    l_max: int,
    normalize: bool,
    want_gx: bool = False,
) -> tuple[F64 | None, F64, F64 | None, F64, F64 | None]: ...
def ffi_addresses() -> dict[str, int]: ...
