"""Adstock Ops: geometric, delayed, Weibull (see shared API spec for definitions)."""

from __future__ import annotations

import operator

from fastmmm.ops._base import TransformOp, TransformVJPOp
from fastmmm.ops._ffi import KERNELS


def _l_max(value, *, allow_none: bool = False, minimum: int = 1):
    if value is None and allow_none:
        return None
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"l_max must be an int >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"l_max must be an int >= {minimum}, got {value!r}")
    return int(v)


class GeometricAdstockOp(TransformOp):
    """y = geometric_adstock(x, alpha, l_max, normalize); l_max=None: untruncated recursion."""

    kernel = KERNELS["geometric"]
    __props__ = ("l_max", "normalize")

    def __init__(self, l_max: int | None = None, normalize: bool = False):
        self.l_max = _l_max(l_max, allow_none=True)
        self.normalize = bool(normalize)
        if self.normalize and self.l_max is None:
            raise ValueError("normalize=True needs a finite l_max")

    def abi_options(self):
        return (0 if self.l_max is None else self.l_max, int(self.normalize))


class DelayedAdstockOp(TransformOp):
    """y = delayed_adstock(x, alpha, theta, l_max, normalize)."""

    kernel = KERNELS["delayed"]
    __props__ = ("l_max", "normalize")

    def __init__(self, l_max: int, normalize: bool = False):
        self.l_max = _l_max(l_max)
        self.normalize = bool(normalize)

    def abi_options(self):
        return (self.l_max, int(self.normalize))


_WEIBULL_KINDS = {"pdf": 0, "cdf": 1}


class WeibullAdstockOp(TransformOp):
    """y = weibull_adstock(x, lam, k, l_max, kind, normalize); kind "pdf" or "cdf"."""

    kernel = KERNELS["weibull"]
    __props__ = ("l_max", "kind", "normalize")

    def __init__(self, l_max: int, kind: str = "pdf", normalize: bool = False):
        kind = str(kind).lower()
        if kind not in _WEIBULL_KINDS:
            raise ValueError(f"kind must be 'pdf' or 'cdf', got {kind!r}")
        self.kind = kind
        self.l_max = _l_max(l_max, minimum=2 if kind == "pdf" else 1)
        self.normalize = bool(normalize)

    def abi_options(self):
        return (self.l_max, _WEIBULL_KINDS[self.kind], int(self.normalize))


class GeometricAdstockVJPOp(TransformVJPOp):
    forward_cls = GeometricAdstockOp
    __props__ = GeometricAdstockOp.__props__


class DelayedAdstockVJPOp(TransformVJPOp):
    forward_cls = DelayedAdstockOp
    __props__ = DelayedAdstockOp.__props__


class WeibullAdstockVJPOp(TransformVJPOp):
    forward_cls = WeibullAdstockOp
    __props__ = WeibullAdstockOp.__props__


GeometricAdstockOp.vjp_cls = GeometricAdstockVJPOp
DelayedAdstockOp.vjp_cls = DelayedAdstockVJPOp
WeibullAdstockOp.vjp_cls = WeibullAdstockVJPOp


def geometric_adstock(x, alpha, l_max=None, normalize=False):
    """Symbolic geometric adstock of x ((T, C) or (B, T, C))."""
    return GeometricAdstockOp(l_max=l_max, normalize=normalize)(x, alpha)


def delayed_adstock(x, alpha, theta, l_max, normalize=False):
    """Symbolic delayed adstock of x ((T, C) or (B, T, C))."""
    return DelayedAdstockOp(l_max=l_max, normalize=normalize)(x, alpha, theta)


def weibull_adstock(x, lam, k, l_max, kind="pdf", normalize=False):
    """Symbolic Weibull adstock of x ((T, C) or (B, T, C))."""
    return WeibullAdstockOp(l_max=l_max, kind=kind, normalize=normalize)(x, lam, k)
