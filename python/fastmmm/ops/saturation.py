"""Saturation Ops: Hill, logistic, Michaelis-Menten, tanh (see shared API spec)."""

from __future__ import annotations

from fastmmm.ops._base import TransformOp, TransformVJPOp
from fastmmm.ops._ffi import KERNELS


class HillOp(TransformOp):
    """y = x^slope / (kappa^slope + x^slope); inputs (x, kappa, slope)."""

    kernel = KERNELS["hill"]


class LogisticSaturationOp(TransformOp):
    """y = (1 - exp(-lam x)) / (1 + exp(-lam x)); inputs (x, lam)."""

    kernel = KERNELS["logistic"]


class MichaelisMentenOp(TransformOp):
    """y = alpha x / (lam + x); inputs (x, alpha, lam)."""

    kernel = KERNELS["michaelis_menten"]


class TanhSaturationOp(TransformOp):
    """y = b tanh(x / (b c)); inputs (x, b, c)."""

    kernel = KERNELS["tanh"]


class HillVJPOp(TransformVJPOp):
    forward_cls = HillOp


class LogisticSaturationVJPOp(TransformVJPOp):
    forward_cls = LogisticSaturationOp


class MichaelisMentenVJPOp(TransformVJPOp):
    forward_cls = MichaelisMentenOp


class TanhSaturationVJPOp(TransformVJPOp):
    forward_cls = TanhSaturationOp


HillOp.vjp_cls = HillVJPOp
LogisticSaturationOp.vjp_cls = LogisticSaturationVJPOp
MichaelisMentenOp.vjp_cls = MichaelisMentenVJPOp
TanhSaturationOp.vjp_cls = TanhSaturationVJPOp


def hill(x, kappa, slope):
    """Symbolic Hill saturation (pymc-marketing hill_function(x, slope, kappa))."""
    return HillOp()(x, kappa, slope)


def logistic_saturation(x, lam):
    """Symbolic logistic saturation."""
    return LogisticSaturationOp()(x, lam)


def michaelis_menten(x, alpha, lam):
    """Symbolic Michaelis-Menten saturation."""
    return MichaelisMentenOp()(x, alpha, lam)


def tanh_saturation(x, b, c):
    """Symbolic tanh saturation."""
    return TanhSaturationOp()(x, b, c)
