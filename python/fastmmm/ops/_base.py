"""Base classes for the fastmmm transform Ops and their VJP Ops.

Shapes: x is (T, C) or (B, T, C).  With 2-D x every parameter is (C,); with
3-D x a parameter is (C,) (shared over B), (B, C) or (1, C).  The kernels want
B*C parameter values, so shared parameters are broadcast before the call and
their gradients summed over B after it.  Parameter gradients have the
parameter's shape.

Semantics follow the C ABI, not the validating numpy API in
``fastmmm.kernels``: a parameter outside its domain gives NaN outputs (what a
sampler needs), and only shape errors raise.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from fastmmm.ops._ffi import CTYPES_FUNCS, Kernel


def props_of(op: Op) -> dict:
    """An Op's ``__props__`` and their values: what PyTensor compares Ops by, and what a
    related Op (its VJP, a numba implementation) is built from (through the public
    ``__props__``, not PyTensor's private helpers)."""
    return {name: getattr(op, name) for name in type(op).__props__}


def _as_float64(v):
    v = pt.as_tensor_variable(v)
    if v.dtype != "float64":
        v = pt.cast(v, "float64")
    return v


def _check_inputs(op_name: str, kernel: Kernel, x, params):
    if len(params) != len(kernel.params):
        raise TypeError(
            f"{op_name} takes x and {len(kernel.params)} parameter(s) "
            f"{kernel.params}, got {1 + len(params)} inputs"
        )
    x = _as_float64(x)
    if x.type.ndim not in (2, 3):
        raise ValueError(f"{op_name}: x must be 2-D (T, C) or 3-D (B, T, C), got ndim={x.type.ndim}")
    params = [_as_float64(p) for p in params]
    allowed = (1,) if x.type.ndim == 2 else (1, 2)
    for name, p in zip(kernel.params, params):
        if p.type.ndim not in allowed:
            raise ValueError(
                f"{op_name}: {name} must have ndim in {allowed} for x of ndim "
                f"{x.type.ndim}, got ndim={p.type.ndim}"
            )
    return x, params


# ---------------------------------------------------------------------------
# numpy helpers for perform (mirrored in nopython code by _numba.py)


def _btc(x: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x, 1, x.shape[0], x.shape[1]
    return x, x.shape[0], x.shape[1], x.shape[2]


def _param_buffer(op_name: str, name: str, p: np.ndarray, B: int, C: int) -> np.ndarray:
    """(C,), (B, C) or (1, C) parameter -> contiguous buffer of B*C doubles."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        if p.shape[0] != C:
            raise ValueError(f"{op_name}: {name} has length {p.shape[0]}, expected C={C}")
    elif p.shape[1] != C or p.shape[0] not in (1, B):
        raise ValueError(f"{op_name}: {name} has shape {p.shape}, expected ({B}, {C}) or (1, {C})")
    p2 = p[None, :] if p.ndim == 1 else p
    return np.ascontiguousarray(np.broadcast_to(p2, (B, C))).reshape(B * C)


def _reduce_grad(r: np.ndarray, p_shape: tuple, B: int, C: int) -> np.ndarray:
    """Gradient buffer of B*C doubles -> gradient of the parameter's shape."""
    r = r.reshape(B, C)
    if len(p_shape) == 1:
        return r.reshape(C) if B == 1 else r.sum(axis=0)
    return r if p_shape[0] == B else r.sum(axis=0, keepdims=True)


def _check_rc(rc: int, symbol: str) -> None:
    if rc != 0:
        raise ValueError(f"{symbol} rejected its arguments (return code {rc})")


# ---------------------------------------------------------------------------


class TransformOp(Op):
    """Forward Op of one fastmmm transform: y = f(x, *params), y.shape == x.shape."""

    kernel: ClassVar[Kernel]
    vjp_cls: ClassVar[type[TransformVJPOp]]
    __props__: tuple[str, ...] = ()

    def abi_options(self) -> tuple[int, ...]:
        """Values of the kernel's option arguments (ABI order, as ints)."""
        return ()

    def make_node(self, x, *params):
        x, params = _check_inputs(type(self).__name__, self.kernel, x, params)
        return Apply(self, [x, *params], [x.type()])

    def perform(self, node, inputs, output_storage):
        x, *params = inputs
        name = type(self).__name__
        xc, B, T, C = _btc(x)
        bufs = [_param_buffer(name, pname, p, B, C) for pname, p in zip(self.kernel.params, params)]
        y = np.empty_like(xc)
        sym = self.kernel.fwd_symbol
        rc = CTYPES_FUNCS[sym](
            xc.ctypes.data,
            *(b.ctypes.data for b in bufs),
            B,
            T,
            C,
            *self.abi_options(),
            y.ctypes.data,
        )
        _check_rc(rc, sym)
        output_storage[0][0] = y

    def infer_shape(self, *args):
        # (fgraph, node, input_shapes) on PyTensor 2, (node, input_shapes) on PyTensor >= 3.
        node, input_shapes = args[-2:]
        return [input_shapes[0]]

    def vjp_op(self) -> TransformVJPOp:
        return self.vjp_cls(**props_of(self))

    def pullback(self, inputs, outputs, cotangents):
        # PyTensor >= 3 calls pullback (L_op is deprecated there); PyTensor 2 calls L_op.
        return self.L_op(inputs, outputs, cotangents)

    def L_op(self, inputs, outputs, output_grads):
        (g,) = output_grads
        return self.vjp_op()(*inputs, g)


class TransformVJPOp(Op):
    """(x, *params, g) -> (gx, *g_params): vector-Jacobian product of the forward Op.

    Has the forward Op's props.  Its own gradient is not implemented (no
    second-order derivatives).
    """

    forward_cls: ClassVar[type[TransformOp]]
    __props__: tuple[str, ...] = ()

    def __init__(self, **props):
        self.forward = self.forward_cls(**props)
        for k in self.__props__:
            setattr(self, k, getattr(self.forward, k))

    @property
    def kernel(self) -> Kernel:
        return self.forward.kernel

    def abi_options(self) -> tuple[int, ...]:
        return self.forward.abi_options()

    def make_node(self, x, *params_and_g):
        *params, g = params_and_g
        x, params = _check_inputs(type(self).__name__, self.kernel, x, params)
        g = _as_float64(g)
        if g.type.ndim != x.type.ndim:
            raise ValueError(f"{type(self).__name__}: g must have the ndim of x")
        return Apply(self, [x, *params, g], [x.type(), *(p.type() for p in params)])

    def perform(self, node, inputs, output_storage):
        x, *params, g = inputs
        name = type(self).__name__
        xc, B, T, C = _btc(x)
        if np.shape(g) != xc.shape:
            raise ValueError(f"{name}: g has shape {np.shape(g)}, expected {xc.shape}")
        gc = np.ascontiguousarray(g, dtype=np.float64)
        bufs = [_param_buffer(name, pname, p, B, C) for pname, p in zip(self.kernel.params, params)]
        gx = np.empty_like(xc)
        gbufs = [np.empty(B * C) for _ in params]
        sym = self.kernel.vjp_symbol
        rc = CTYPES_FUNCS[sym](
            xc.ctypes.data,
            *(b.ctypes.data for b in bufs),
            gc.ctypes.data,
            B,
            T,
            C,
            *self.abi_options(),
            gx.ctypes.data,
            *(b.ctypes.data for b in gbufs),
        )
        _check_rc(rc, sym)
        output_storage[0][0] = gx
        for i, (r, p) in enumerate(zip(gbufs, params), start=1):
            output_storage[i][0] = _reduce_grad(r, np.shape(p), B, C)

    def infer_shape(self, *args):
        # (fgraph, node, input_shapes) on PyTensor 2, (node, input_shapes) on PyTensor >= 3.
        node, input_shapes = args[-2:]
        return list(input_shapes[:-1])

    def pullback(self, inputs, outputs, cotangents):
        # PyTensor >= 3 calls pullback (L_op is deprecated there); PyTensor 2 calls L_op.
        return self.L_op(inputs, outputs, cotangents)

    def L_op(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]
