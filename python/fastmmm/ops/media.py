"""Fused media transform Op: y = saturation(adstock(x)) in one kernel call.

``MediaTransformOp`` has two outputs, ``y`` (shape of x) and ``cache``, a 1-D
float64 vector of 4*B*T*C values (adstocked spend and the saturation's partial
derivatives) that only the VJP Op reads; users want ``y``, which
:func:`media_transform` returns.  Inputs are ``(x, *adstock_params,
*saturation_params)`` in the order of ``fastmmm.kernels.ADSTOCK_PARAMS`` /
``SATURATION_PARAMS``; shapes as for the per-transform Ops (see ``_base``).

Gradients
---------
``L_op`` calls ``MediaTransformVJPOp`` on the forward node's cache, so the
backward pass does no transcendental work.  The spend gradient (half of the
adstock's backward work) is computed only when it can be needed:

* x a ``TensorConstant`` or ``SharedVariable`` (a ``pm.Data`` container): x is
  data.  The VJP Op is built with ``want_gx=False`` and the gradient returned
  for x is a NullType (``grad_not_implemented``).  pytensor only evaluates an
  input's gradient term when that input lies between the cost and ``wrt``, so
  ``pt.grad(cost, params)`` is unaffected, while ``pt.grad(cost, x)`` raises
  ``NullTypeGradError`` instead of returning a wrong zero.  (A
  ``disconnected_type()`` term would need a node-dependent
  ``connection_pattern`` declaring x unconnected, and then
  ``pt.grad(cost, x, disconnected_inputs="ignore")`` would silently give
  zeros.)
* any other x (a free input, or a variable computed from data such as
  ``spend / scale``): ``want_gx=True`` and the true gradient.  When nothing
  uses that gradient (the usual case: ``pt.grad`` w.r.t. the parameters only),
  the graph rewrite ``local_media_vjp_drop_unused_gx`` (canonicalize,
  fast_compile and fast_run, so NUMBA mode and nutpie) swaps in the
  ``want_gx=False`` VJP.

The cache output is mathematically connected to every input; the Op does not
differentiate through it: if a cost depends on the cache, every input gets a
NullType gradient (``pt.grad`` raises) rather than a silently wrong one.
"""

from __future__ import annotations

import operator
from types import SimpleNamespace

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply, Constant
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.rewriting.basic import register_canonicalize
from pytensor.tensor.type import TensorType

from fastmmm.kernels import ADSTOCK_PARAMS, SATURATION_PARAMS
from fastmmm.ops._base import (
    _as_float64,
    _btc,
    _check_inputs,
    _check_rc,
    _param_buffer,
    _reduce_grad,
    props_of,
)
from fastmmm.ops._ffi import (
    ADSTOCK_CODES,
    CTYPES_FUNCS,
    MEDIA_FWD_SYMBOL,
    MEDIA_VJP_SYMBOL,
    SATURATION_CODES,
)

assert set(ADSTOCK_CODES) == set(ADSTOCK_PARAMS)
assert set(SATURATION_CODES) == set(SATURATION_PARAMS)


def _media_options(adstock, saturation, l_max, normalize):
    adstock = str(adstock).lower()
    saturation = str(saturation).lower()
    if adstock not in ADSTOCK_CODES:
        raise ValueError(f"adstock must be one of {sorted(ADSTOCK_CODES)}, got {adstock!r}")
    if saturation not in SATURATION_CODES:
        raise ValueError(f"saturation must be one of {sorted(SATURATION_CODES)}, got {saturation!r}")
    minimum = 2 if adstock == "weibull_pdf" else 1
    if l_max is None:
        if adstock != "geometric":
            raise ValueError(f"{adstock} adstock needs an int l_max >= {minimum}")
    else:
        try:
            l_max = int(operator.index(l_max))
        except TypeError:
            raise ValueError(f"l_max must be an int >= {minimum}, got {l_max!r}") from None
        if l_max < minimum:
            raise ValueError(f"l_max must be an int >= {minimum}, got {l_max!r}")
    normalize = bool(normalize)
    if normalize and l_max is None:
        raise ValueError("normalize=True needs a finite l_max")
    return adstock, saturation, l_max, normalize


class _MediaBase(Op):
    """Options shared by the forward and the VJP Op."""

    def _set_options(self, adstock, saturation, l_max, normalize):
        (self.adstock, self.saturation, self.l_max, self.normalize) = _media_options(
            adstock, saturation, l_max, normalize
        )

    @property
    def adstock_params(self) -> tuple[str, ...]:
        return ADSTOCK_PARAMS[self.adstock]

    @property
    def saturation_params(self) -> tuple[str, ...]:
        return SATURATION_PARAMS[self.saturation]

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.adstock_params + self.saturation_params

    def abi_flags(self) -> tuple[int, int, int, int]:
        """(adstock code, l_max, normalize, saturation code) as the ABI takes them."""
        return (
            ADSTOCK_CODES[self.adstock],
            0 if self.l_max is None else self.l_max,
            int(self.normalize),
            SATURATION_CODES[self.saturation],
        )

    def _check(self, x, params):
        spec = SimpleNamespace(params=self.param_names)
        return _check_inputs(type(self).__name__, spec, x, params)

    def _param_buffers(self, params, B, C):
        """Flat B*C buffers (adstock a0, a1, saturation s0, s1); None for absent ones."""
        name = type(self).__name__
        bufs = [_param_buffer(name, pname, p, B, C) for pname, p in zip(self.param_names, params)]
        na = len(self.adstock_params)
        a, s = bufs[:na], bufs[na:]
        return (a[0], a[1] if na == 2 else None, s[0], s[1] if len(s) == 2 else None)


def _ptr(a):
    return None if a is None else a.ctypes.data


def _cache_type(x) -> TensorType:
    shape = x.type.shape
    n = None if any(s is None for s in shape) else 4 * int(np.prod(shape))
    return TensorType("float64", shape=(n,))


def _is_data(x) -> bool:
    """x is data whose gradient nobody can ask for through pm.Data / constants."""
    return isinstance(x, Constant | SharedVariable)


class MediaTransformOp(_MediaBase):
    """(x, *adstock_params, *saturation_params) -> (y, cache); y = saturation(adstock(x)).

    adstock: "geometric", "delayed", "weibull_pdf", "weibull_cdf";
    saturation: "hill", "logistic", "michaelis_menten", "tanh";
    l_max: int (None = untruncated geometric recursion, geometric only).
    """

    __props__ = ("adstock", "saturation", "l_max", "normalize")

    def __init__(self, adstock="geometric", saturation="hill", l_max=None, normalize=False):
        self._set_options(adstock, saturation, l_max, normalize)

    def make_node(self, x, *params):
        x, params = self._check(x, params)
        return Apply(self, [x, *params], [x.type(), _cache_type(x)()])

    def perform(self, node, inputs, output_storage):
        x, *params = inputs
        xc, B, T, C = _btc(x)
        a0, a1, s0, s1 = self._param_buffers(params, B, C)
        y = np.empty_like(xc)
        cache = np.empty(4 * xc.size)
        rc = CTYPES_FUNCS[MEDIA_FWD_SYMBOL](
            *self.abi_flags(),
            xc.ctypes.data,
            _ptr(a0),
            _ptr(a1),
            _ptr(s0),
            _ptr(s1),
            B,
            T,
            C,
            y.ctypes.data,
            cache.ctypes.data,
        )
        _check_rc(rc, MEDIA_FWD_SYMBOL)
        output_storage[0][0] = y
        output_storage[1][0] = cache

    def infer_shape(self, *args):
        # (fgraph, node, input_shapes) on PyTensor 2, (node, input_shapes) on PyTensor >= 3.
        node, input_shapes = args[-2:]
        xs = input_shapes[0]
        n = xs[0]
        for s in xs[1:]:
            n = n * s
        return [xs, (4 * n,)]

    def vjp_op(self, want_gx: bool = True) -> MediaTransformVJPOp:
        return MediaTransformVJPOp(**props_of(self), want_gx=want_gx)

    def pullback(self, inputs, outputs, cotangents):
        # PyTensor >= 3 calls pullback (L_op is deprecated there); PyTensor 2 calls L_op.
        return self.L_op(inputs, outputs, cotangents)

    def L_op(self, inputs, outputs, output_grads):
        gy, gcache = output_grads
        if isinstance(gy.type, DisconnectedType) or not isinstance(gcache.type, DisconnectedType):
            return [
                grad_not_implemented(
                    self, i, v, "MediaTransformOp does not differentiate through its cache output"
                )
                for i, v in enumerate(inputs)
            ]
        x, *params = inputs
        want_gx = not _is_data(x)
        grads = self.vjp_op(want_gx)(x, *params, outputs[1], gy)
        if want_gx:
            return list(grads)
        gx = grad_not_implemented(
            self,
            0,
            x,
            "x is a constant or shared variable (data, e.g. pm.Data), so the spend "
            "gradient is not computed; pass x as a non-shared variable to get it",
        )
        return [gx, *grads]


class MediaTransformVJPOp(_MediaBase):
    """(x, *params, cache, g) -> ([gx,] *g_params) from MediaTransformOp's cache.

    gx is an output only with ``want_gx``.  The saturation parameters' values
    are not read (the cache holds what is needed); they are inputs for their
    shapes, which the gradients take.  No second-order derivatives.
    """

    __props__ = ("adstock", "saturation", "l_max", "normalize", "want_gx")

    def __init__(self, adstock="geometric", saturation="hill", l_max=None, normalize=False, want_gx=True):
        self._set_options(adstock, saturation, l_max, normalize)
        self.want_gx = bool(want_gx)

    def forward_op(self) -> MediaTransformOp:
        return MediaTransformOp(self.adstock, self.saturation, self.l_max, self.normalize)

    def make_node(self, x, *params_cache_g):
        name = type(self).__name__
        if len(params_cache_g) < 2:
            raise TypeError(f"{name} takes (x, *params, cache, g)")
        *params, cache, g = params_cache_g
        x, params = self._check(x, params)
        cache, g = _as_float64(cache), _as_float64(g)
        if cache.type.ndim != 1:
            raise ValueError(f"{name}: cache must be 1-D")
        if g.type.ndim != x.type.ndim:
            raise ValueError(f"{name}: g must have the ndim of x")
        outs = ([x.type()] if self.want_gx else []) + [p.type() for p in params]
        return Apply(self, [x, *params, cache, g], outs)

    def perform(self, node, inputs, output_storage):
        x, *params, cache, g = inputs
        name = type(self).__name__
        xc, B, T, C = _btc(x)
        if np.shape(g) != xc.shape:
            raise ValueError(f"{name}: g has shape {np.shape(g)}, expected {xc.shape}")
        if np.shape(cache) != (4 * xc.size,):
            raise ValueError(f"{name}: cache has shape {np.shape(cache)}, expected ({4 * xc.size},)")
        gc = np.ascontiguousarray(g, dtype=np.float64)
        cc = np.ascontiguousarray(cache, dtype=np.float64)
        a0, a1, _, s1 = self._param_buffers(params, B, C)  # saturation: shape checks only
        gx = np.empty_like(xc) if self.want_gx else None
        ga0 = np.empty(B * C)
        ga1 = None if a1 is None else np.empty(B * C)
        gs0 = np.empty(B * C)
        gs1 = None if s1 is None else np.empty(B * C)
        rc = CTYPES_FUNCS[MEDIA_VJP_SYMBOL](
            *self.abi_flags(),
            xc.ctypes.data,
            _ptr(a0),
            _ptr(a1),
            cc.ctypes.data,
            gc.ctypes.data,
            B,
            T,
            C,
            int(self.want_gx),
            _ptr(gx),
            _ptr(ga0),
            _ptr(ga1),
            _ptr(gs0),
            _ptr(gs1),
        )
        _check_rc(rc, MEDIA_VJP_SYMBOL)
        outs = ([gx] if self.want_gx else []) + [
            _reduce_grad(r, np.shape(p), B, C)
            for r, p in zip((r for r in (ga0, ga1, gs0, gs1) if r is not None), params)
        ]
        for storage, v in zip(output_storage, outs, strict=True):
            storage[0] = v

    def infer_shape(self, *args):
        # (fgraph, node, input_shapes) on PyTensor 2, (node, input_shapes) on PyTensor >= 3.
        node, input_shapes = args[-2:]
        xs, *ps = input_shapes[:-2]
        return ([xs] if self.want_gx else []) + list(ps)

    def pullback(self, inputs, outputs, cotangents):
        # PyTensor >= 3 calls pullback (L_op is deprecated there); PyTensor 2 calls L_op.
        return self.L_op(inputs, outputs, cotangents)

    def L_op(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


@register_canonicalize("fastmmm")
@node_rewriter([MediaTransformVJPOp])
def local_media_vjp_drop_unused_gx(fgraph, node):
    """VJP with want_gx whose gx output nothing uses -> the want_gx=False VJP."""
    op = node.op
    if not op.want_gx or fgraph.clients.get(node.outputs[0]):
        return None
    props = props_of(op) | {"want_gx": False}
    new = MediaTransformVJPOp(**props).make_node(*node.inputs).outputs
    return dict(zip(node.outputs[1:], new, strict=True))


def media_transform(
    x,
    adstock,
    saturation,
    adstock_params,
    saturation_params,
    l_max=None,
    normalize=False,
):
    """Symbolic fused ``saturation(adstock(x))`` of x ((T, C) or (B, T, C)).

    ``adstock_params`` / ``saturation_params`` are sequences of symbolic (or
    array) parameters in the order of ``fastmmm.kernels.ADSTOCK_PARAMS`` /
    ``SATURATION_PARAMS``, each (C,) or, for 3-D x, (B, C) / (1, C).  Returns
    y only (the cache output is for the gradient).
    """
    op = MediaTransformOp(adstock, saturation, l_max=l_max, normalize=normalize)
    adstock_params, saturation_params = tuple(adstock_params), tuple(saturation_params)
    if len(adstock_params) != len(op.adstock_params):
        raise TypeError(
            f"adstock_params: {op.adstock} takes {op.adstock_params}, got {len(adstock_params)} value(s)"
        )
    if len(saturation_params) != len(op.saturation_params):
        raise TypeError(
            f"saturation_params: {op.saturation} takes {op.saturation_params}, "
            f"got {len(saturation_params)} value(s)"
        )
    y, _cache = op(x, *adstock_params, *saturation_params)
    return y
