"""PyTensor Ops for the fastmmm transforms.

Every Op has a Python ``perform`` (ctypes call into the Rust kernels), a
gradient through a companion VJP Op, ``infer_shape``, and a nopython numba
implementation (used by PyTensor's NUMBA mode and by nutpie's numba backend)
that calls the same kernels through their C ABI.

Importing this package registers the kernel symbols with LLVM; it must be
imported before numba code using the Ops is compiled or loaded from cache
(building a graph with the Ops does that).
"""

from fastmmm.ops import _numba  # noqa: F401  (registers the numba implementations)
from fastmmm.ops._base import TransformOp, TransformVJPOp
from fastmmm.ops._ffi import KERNEL_VERSION
from fastmmm.ops.adstock import (
    DelayedAdstockOp,
    DelayedAdstockVJPOp,
    GeometricAdstockOp,
    GeometricAdstockVJPOp,
    WeibullAdstockOp,
    WeibullAdstockVJPOp,
    delayed_adstock,
    geometric_adstock,
    weibull_adstock,
)
from fastmmm.ops.media import (
    MediaTransformOp,
    MediaTransformVJPOp,
    media_transform,
)
from fastmmm.ops.saturation import (
    HillOp,
    HillVJPOp,
    LogisticSaturationOp,
    LogisticSaturationVJPOp,
    MichaelisMentenOp,
    MichaelisMentenVJPOp,
    TanhSaturationOp,
    TanhSaturationVJPOp,
    hill,
    logistic_saturation,
    michaelis_menten,
    tanh_saturation,
)

__all__ = [
    "KERNEL_VERSION",
    "TransformOp",
    "TransformVJPOp",
    "GeometricAdstockOp",
    "GeometricAdstockVJPOp",
    "DelayedAdstockOp",
    "DelayedAdstockVJPOp",
    "WeibullAdstockOp",
    "WeibullAdstockVJPOp",
    "HillOp",
    "HillVJPOp",
    "LogisticSaturationOp",
    "LogisticSaturationVJPOp",
    "MichaelisMentenOp",
    "MichaelisMentenVJPOp",
    "TanhSaturationOp",
    "TanhSaturationVJPOp",
    "geometric_adstock",
    "delayed_adstock",
    "weibull_adstock",
    "hill",
    "logistic_saturation",
    "michaelis_menten",
    "tanh_saturation",
    "MediaTransformOp",
    "MediaTransformVJPOp",
    "media_transform",
]
