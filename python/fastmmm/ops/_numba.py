"""numba implementations of the transform Ops (PyTensor numba backend, nutpie).

Each Apply node gets a small nopython function, generated from source, that
calls the Rust kernel through ``types.ExternalFunction`` (see ``_ffi``), so no
object-mode fallback is involved.

Registration uses ``register_funcify_and_cache_key`` rather than
``register_funcify_default_op_cache_key``: the generated code depends on the
props *and* on the input ranks (2-D/3-D x, (C,)/(B,C) params) and on the
kernel ABI version, and this API lets us return a key covering all of them.
With a key, PyTensor wraps the function in an on-disk-cached numba function
(``numba_funcify_ensure_cache``); cached code refers to the kernels by symbol
name, which ``_ffi`` registers with LLVM when ``fastmmm.ops`` is imported.
"""

from __future__ import annotations

from hashlib import sha256

import numpy as np
from pytensor.link.numba.cache import compile_numba_function_src
from pytensor.link.numba.dispatch.basic import (
    numba_njit,
    register_funcify_and_cache_key,
)

from fastmmm.ops._base import TransformOp, TransformVJPOp, props_of
from fastmmm.ops._ffi import EXTERNAL, KERNEL_VERSION, MEDIA_FWD_SYMBOL, MEDIA_VJP_SYMBOL
from fastmmm.ops.media import MediaTransformOp, MediaTransformVJPOp

#: bump when the generated code below changes meaning (invalidates caches)
NUMBA_IMPL_VERSION = 1


@numba_njit
def _flat_param_1d(p, B, C):
    """(C,) parameter -> contiguous B*C buffer (broadcast over B)."""
    if B == 1:
        return np.ascontiguousarray(p)
    out = np.empty(B * C)
    for b in range(B):
        out[b * C : (b + 1) * C] = p
    return out


@numba_njit
def _flat_param_2d(p, B, C):
    """(B, C) or (1, C) parameter -> contiguous B*C buffer."""
    out = np.empty(B * C)
    if p.shape[0] == B:
        for b in range(B):
            out[b * C : (b + 1) * C] = p[b]
    else:
        for b in range(B):
            out[b * C : (b + 1) * C] = p[0]
    return out


@numba_njit
def _grad_1d(r, B, C):
    """B*C gradient buffer -> gradient of a (C,) parameter."""
    if B == 1:
        return r
    return r.reshape((B, C)).sum(axis=0)


@numba_njit
def _grad_2d(r, B, C, pb):
    """B*C gradient buffer -> gradient of a (pb, C) parameter, pb in {1, B}."""
    r2 = r.reshape((B, C))
    if pb == B:
        return r2
    return r2.sum(axis=0).reshape((1, C))


def _param_lines(sym: str, i: int, pname: str, nd: int, flatten: bool = True) -> list[str]:
    """Source lines checking parameter p{i} against (B, C) and flattening it to q{i}."""
    if nd == 1:
        L = [
            f"    if p{i}.shape[0] != C:",
            f'        raise ValueError("{sym}: {pname} must have length C")',
        ]
        flat = f"    q{i} = _flat_param_1d(p{i}, B, C)"
    else:
        L = [
            f"    if p{i}.shape[1] != C or (p{i}.shape[0] != B and p{i}.shape[0] != 1):",
            f'        raise ValueError("{sym}: {pname} must have shape (B, C) or (1, C)")',
        ]
        flat = f"    q{i} = _flat_param_2d(p{i}, B, C)"
    return L + [flat] if flatten else L


def _grad_expr(i: int, nd: int) -> str:
    return f"_grad_1d(r{i}, B, C)" if nd == 1 else f"_grad_2d(r{i}, B, C, p{i}.shape[0])"


_GLOBALS = {
    "np": np,
    "_flat_param_1d": _flat_param_1d,
    "_flat_param_2d": _flat_param_2d,
    "_grad_1d": _grad_1d,
    "_grad_2d": _grad_2d,
}


def _cache_key(op, x_ndim, p_ndims, sym, src) -> str:
    key_material = (
        f"fastmmm_v{KERNEL_VERSION}",
        NUMBA_IMPL_VERSION,
        type(op).__module__,
        type(op).__qualname__,
        tuple(props_of(op).items()),
        x_ndim,
        tuple(p_ndims),
        sym,
        src,
    )
    return sha256(repr(key_material).encode()).hexdigest()


def _generate(op, node, vjp: bool):
    kernel = op.kernel
    n = len(kernel.params)
    x_ndim = node.inputs[0].type.ndim
    p_ndims = [v.type.ndim for v in node.inputs[1 : 1 + n]]
    sym = kernel.vjp_symbol if vjp else kernel.fwd_symbol
    opts = "".join(f"{int(v)}, " for v in op.abi_options())
    fname = sym  # a valid identifier, unique per kernel

    ps = [f"p{i}" for i in range(n)]
    args = ["x", *ps] + (["g"] if vjp else [])
    L = [f"def {fname}({', '.join(args)}):"]
    L.append("    x = np.ascontiguousarray(x)")
    if x_ndim == 2:
        L += ["    B = 1", "    T, C = x.shape"]
    else:
        L.append("    B, T, C = x.shape")
    if vjp:
        L += [
            "    if g.shape != x.shape:",
            f'        raise ValueError("{sym}: g must have the shape of x")',
            "    g = np.ascontiguousarray(g)",
        ]
    for i, (pname, nd) in enumerate(zip(kernel.params, p_ndims)):
        L += _param_lines(sym, i, pname, nd)
    qptrs = "".join(f"q{i}.ctypes, " for i in range(n))
    if not vjp:
        L += [
            "    y = np.empty(x.shape)",
            f"    rc = _kernel(x.ctypes, {qptrs}B, T, C, {opts}y.ctypes)",
            "    if rc != 0:",
            f'        raise ValueError("{sym} rejected its arguments")',
            "    return y",
        ]
    else:
        L.append("    gx = np.empty(x.shape)")
        L += [f"    r{i} = np.empty(B * C)" for i in range(n)]
        rptrs = ", ".join(f"r{i}.ctypes" for i in range(n))
        L += [
            f"    rc = _kernel(x.ctypes, {qptrs}g.ctypes, B, T, C, {opts}gx.ctypes, {rptrs})",
            "    if rc != 0:",
            f'        raise ValueError("{sym} rejected its arguments")',
        ]
        outs = ["gx"] + [_grad_expr(i, nd) for i, nd in enumerate(p_ndims)]
        L.append(f"    return {', '.join(outs)}")
    src = "\n".join(L) + "\n"

    func = compile_numba_function_src(src, fname, global_env=_GLOBALS | {"_kernel": EXTERNAL[sym]})
    return numba_njit(func), _cache_key(op, x_ndim, p_ndims, sym, src)


@register_funcify_and_cache_key(TransformOp)
def _numba_funcify_transform(op, node, **kwargs):
    return _generate(op, node, vjp=False)


@register_funcify_and_cache_key(TransformVJPOp)
def _numba_funcify_transform_vjp(op, node, **kwargs):
    return _generate(op, node, vjp=True)


def _generate_media(op, node, vjp: bool):
    """Source of the fused media transform's forward or VJP for one node.

    Inputs: fwd (x, *params); vjp (x, *params, cache, g).  Parameters are
    adstock (a0[, a1]) then saturation (s0[, s1]); a one-parameter kind's
    second pointer is a dummy the kernel never touches (as is gx without
    want_gx).  The VJP only checks the saturation parameters' shapes (the
    cache holds what it needs) and reduces their gradients to those shapes.
    """
    names = op.param_names
    n, na = len(names), len(op.adstock_params)
    x_ndim = node.inputs[0].type.ndim
    p_ndims = [v.type.ndim for v in node.inputs[1 : 1 + n]]
    sym = MEDIA_VJP_SYMBOL if vjp else MEDIA_FWD_SYMBOL
    flags = ", ".join(str(int(v)) for v in op.abi_flags())
    fname = sym
    ps = [f"p{i}" for i in range(n)]
    args = ["x", *ps] + (["cache", "g"] if vjp else [])
    L = [f"def {fname}({', '.join(args)}):"]
    L.append("    x = np.ascontiguousarray(x)")
    if x_ndim == 2:
        L += ["    B = 1", "    T, C = x.shape"]
    else:
        L.append("    B, T, C = x.shape")
    L.append("    nul = np.empty(0)")
    for i, (pname, nd) in enumerate(zip(names, p_ndims)):
        # the VJP does not read the saturation parameters' values
        L += _param_lines(sym, i, pname, nd, flatten=not vjp or i < na)

    def ptrs(prefix, idx):
        """pointer expressions for slots (0, 1) of parameter indices idx"""
        return [f"{prefix}{i}.ctypes" for i in idx] + ["nul.ctypes"] * (2 - len(idx))

    a_idx, s_idx = list(range(na)), list(range(na, n))
    if not vjp:
        qptrs = ", ".join(ptrs("q", a_idx) + ptrs("q", s_idx))
        L += [
            "    y = np.empty(x.shape)",
            "    cache = np.empty(4 * B * T * C)",
            f"    rc = _kernel({flags}, x.ctypes, {qptrs}, B, T, C, y.ctypes, cache.ctypes)",
            "    if rc != 0:",
            f'        raise ValueError("{sym} rejected its arguments")',
            "    return y, cache",
        ]
    else:
        L += [
            "    if g.shape != x.shape:",
            f'        raise ValueError("{sym}: g must have the shape of x")',
            "    g = np.ascontiguousarray(g)",
            "    if cache.shape[0] != 4 * B * T * C:",
            f'        raise ValueError("{sym}: cache must have 4*B*T*C values")',
            "    cache = np.ascontiguousarray(cache)",
        ]
        if op.want_gx:
            L.append("    gx = np.empty(x.shape)")
        L += [f"    r{i} = np.empty(B * C)" for i in range(n)]
        qptrs = ", ".join(ptrs("q", a_idx))
        gx = "gx.ctypes" if op.want_gx else "nul.ctypes"
        rptrs = ", ".join(ptrs("r", a_idx) + ptrs("r", s_idx))
        L += [
            (
                f"    rc = _kernel({flags}, x.ctypes, {qptrs}, cache.ctypes, g.ctypes, "
                f"B, T, C, {int(op.want_gx)}, {gx}, {rptrs})"
            ),
            "    if rc != 0:",
            f'        raise ValueError("{sym} rejected its arguments")',
        ]
        outs = (["gx"] if op.want_gx else []) + [_grad_expr(i, nd) for i, nd in enumerate(p_ndims)]
        L.append(f"    return {', '.join(outs)}")
    src = "\n".join(L) + "\n"
    func = compile_numba_function_src(src, fname, global_env=_GLOBALS | {"_kernel": EXTERNAL[sym]})
    return numba_njit(func), _cache_key(op, x_ndim, p_ndims, sym, src)


@register_funcify_and_cache_key(MediaTransformOp)
def _numba_funcify_media(op, node, **kwargs):
    return _generate_media(op, node, vjp=False)


@register_funcify_and_cache_key(MediaTransformVJPOp)
def _numba_funcify_media_vjp(op, node, **kwargs):
    return _generate_media(op, node, vjp=True)
