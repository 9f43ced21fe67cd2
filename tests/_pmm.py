"""Helpers to evaluate pymc-marketing 0.19 transformers on plain numpy arrays.

pymc-marketing 0.19 transformers take xtensor inputs and a ``dim=`` argument
naming the time dimension.  We build symbolic xtensor inputs with dims
("batch", "date", "channel") or ("date", "channel"), per-channel params with
dims ("channel",) or ("batch", "channel"), transpose the output back to the
dims of x, and compile once per static configuration (cached).

For VJPs the xtensor graph is lowered to plain tensors (the ``lower_xtensor``
rewrites) and differentiated with ``pytensor.grad`` of ``sum(g * y)``.  pytensor's
``Min`` op has no gradient, so (Weibull pdf only) each ``min(v)`` is replaced by
``-max(-v)`` first.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="xtensor module is experimental")

import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
import pytensor.xtensor as ptx  # noqa: E402
from pymc_marketing.mmm import transformers as tr  # noqa: E402
from pytensor.graph import clone_replace  # noqa: E402
from pytensor.graph.rewriting.utils import rewrite_graph  # noqa: E402

try:
    from pytensor.graph.traversal import io_toposort
except ImportError:  # older pytensor
    from pytensor.graph.basic import io_toposort

_MODE = "FAST_COMPILE"


def _xdims(ndim):
    return ("date", "channel") if ndim == 2 else ("batch", "date", "channel")


#: pymc-marketing >= 1.0 gives its Weibull CDF adstock l_max taps; 0.x gave it l_max + 1.
WEIBULL_CDF_TAPS_ARE_L_MAX = int(importlib.metadata.version("pymc-marketing").split(".")[0]) >= 1


def _pdims(ndim):
    return ("channel",) if ndim == 1 else ("batch", "channel")


@functools.cache
def _compiled(name, x_ndim, p_ndims, static, vjp=False):
    xd = _xdims(x_ndim)
    xt = pt.tensor("x", shape=(None,) * x_ndim, dtype="float64")
    pts = [pt.tensor(f"p{i}", shape=(None,) * nd, dtype="float64") for i, nd in enumerate(p_ndims)]
    x = ptx.as_xtensor(xt, dims=xd)
    ps = [ptx.as_xtensor(q, dims=_pdims(nd)) for q, nd in zip(pts, p_ndims)]
    kw = dict(static)
    if name == "geometric_adstock":
        y = tr.geometric_adstock(x, ps[0], dim="date", **kw)
    elif name == "delayed_adstock":
        y = tr.delayed_adstock(x, ps[0], ps[1], dim="date", **kw)
    elif name == "weibull_adstock":
        kw["type"] = {"pdf": tr.WeibullType.PDF, "cdf": tr.WeibullType.CDF}[kw.pop("kind")]
        y = tr.weibull_adstock(x, ps[0], ps[1], dim="date", **kw)
    elif name == "hill":
        # fastmmm hill(x, kappa, slope) == pymc-marketing hill_function(x, slope, kappa)
        y = tr.hill_function(x, ps[1], ps[0])
    elif name == "logistic_saturation":
        y = tr.logistic_saturation(x, ps[0])
    elif name == "michaelis_menten":
        y = tr.michaelis_menten(x, ps[0], ps[1])
    elif name == "tanh_saturation":
        y = tr.tanh_saturation(x, ps[0], ps[1])
    else:  # pragma: no cover
        raise KeyError(name)
    y = y.transpose(*xd).values
    if not vjp:
        return pytensor.function([xt, *pts], y, mode=_MODE)
    y = rewrite_graph(y, include=("lower_xtensor",))
    mins = [n for n in io_toposort([xt, *pts], [y]) if type(n.op).__name__ == "Min"]
    if mins:
        y = clone_replace(y, {n.outputs[0]: -pt.max(-n.inputs[0], axis=n.op.axis) for n in mins})
    g = pt.tensor("g", shape=(None,) * x_ndim, dtype="float64")
    grads = pytensor.grad((g * y).sum(), [xt, *pts])
    return pytensor.function([xt, *pts, g], grads, mode=_MODE)


def pmm(name, x, *params, **static):
    """Evaluate pymc-marketing's transformer ``name`` (fastmmm argument order).

    ``static`` holds l_max / normalize / kind; mode is always ConvMode.After.
    """
    return _run(name, x, params, static, None)


def pmm_vjp(name, x, *params_and_g, **static):
    """(gx, gparam...) of sum(g * transformer(x, params)) by pytensor.grad; the
    fastmmm ``*_vjp`` argument order (g after the parameters)."""
    *params, g = params_and_g
    return tuple(_run(name, x, params, static, np.ascontiguousarray(g, dtype=np.float64)))


def _run(name, x, params, static, g):
    x = np.ascontiguousarray(x, dtype=np.float64)
    params = [np.ascontiguousarray(p, dtype=np.float64) for p in params]
    if name == "geometric_adstock" and static.get("l_max", 12) is None:
        static = dict(static, l_max=x.shape[-2])  # untruncated == full-length kernel
    if name in ("geometric_adstock", "delayed_adstock", "weibull_adstock"):
        static.setdefault("normalize", False)
        static["mode"] = tr.ConvMode.After
    if name == "weibull_adstock" and static.get("kind") == "cdf" and WEIBULL_CDF_TAPS_ARE_L_MAX:
        # pymc-marketing 1.x's Weibull CDF kernel has l_max taps (0.x: l_max + 1, as fastmmm's):
        # fastmmm's l_max is its l_max + 1.
        static = dict(static, l_max=static["l_max"] + 1)
    key = tuple(sorted(static.items()))
    f = _compiled(name, x.ndim, tuple(p.ndim for p in params), key, g is not None)
    if g is None:
        return np.asarray(f(x, *params))
    return [np.asarray(a) for a in f(x, *params, g)]
