"""Media transforms as plain numpy functions, computed by fastmmm's Rust core.

Shapes
------
``x`` is ``(T, C)`` (weeks x channels) or ``(B, T, C)`` (brands/geos x weeks x
channels), float64 (other real dtypes are converted). Per-channel parameters
are scalars, ``(C,)`` (shared across the batch) or ``(B, C)``. Outputs have
the shape of ``x``; gradients of parameters have the shape the parameter was
given in (a ``(C,)`` parameter used across a batch gets the summed gradient).

Parameterisations are those of ``pymc_marketing.mmm.transformers`` (0.19),
convolution mode "After": ``y[t] = sum_l w[l] x[t - l]`` with zeros before
the first week.

Every ``*_vjp`` function takes the forward function's arguments plus ``g``,
the upstream gradient (shape of the output), and returns the vector-Jacobian
products ``(g_x, g_param1, ...)`` in argument order.

Bad input (NaN/inf, negative spend, wrong ndim, parameter of the wrong length,
out-of-domain parameter, bad ``l_max``) raises ``ValueError`` naming the
argument.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastmmm import _core
from fastmmm.kinds import ADSTOCK_KINDS, SATURATION_KINDS

__all__ = [
    "geometric_adstock",
    "geometric_adstock_vjp",
    "delayed_adstock",
    "delayed_adstock_vjp",
    "weibull_adstock",
    "weibull_adstock_vjp",
    "adstock_weights",
    "hill",
    "hill_vjp",
    "logistic_saturation",
    "logistic_saturation_vjp",
    "michaelis_menten",
    "michaelis_menten_vjp",
    "tanh_saturation",
    "tanh_saturation_vjp",
    "media_transform",
    "media_transform_vjp",
    "ADSTOCK_PARAMS",
    "SATURATION_PARAMS",
]

#: Parameter names of each adstock / saturation kind, in kernel order (fastmmm.kinds).
ADSTOCK_PARAMS = {k.name: k.params for k in ADSTOCK_KINDS.values()}
SATURATION_PARAMS = {k.name: k.params for k in SATURATION_KINDS.values()}


def _as_float(name: str, v) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: must be a real numeric array ({e})") from None
    return a


def _prep_x(x, name: str = "x") -> tuple[np.ndarray, bool]:
    """x as a C-contiguous (B, T, C) float64 array, and whether it was 2-D."""
    a = _as_float(name, x)
    if a.ndim == 2:
        return np.ascontiguousarray(a[None]), True
    if a.ndim == 3:
        return np.ascontiguousarray(a), False
    raise ValueError(f"{name}: must be 2-D (T, C) or 3-D (B, T, C), got ndim={a.ndim}")


def _prep_param(name: str, p, b: int, c: int) -> tuple[np.ndarray, int]:
    """A parameter as a C-contiguous (B, C) array, and the ndim it was given in."""
    a = _as_float(name, p)
    if a.ndim == 0:
        return np.full((b, c), float(a)), 0
    if a.ndim == 1:
        if a.shape[0] != c:
            raise ValueError(f"{name}: expected {c} values (one per channel of x), got {a.shape[0]}")
        return np.ascontiguousarray(np.broadcast_to(a, (b, c))), 1
    if a.ndim == 2:
        if a.shape != (b, c):
            raise ValueError(f"{name}: expected shape (B, C) = ({b}, {c}) to match x, got {a.shape}")
        return np.ascontiguousarray(a), 2
    raise ValueError(f"{name}: must be a scalar, (C,) or (B, C), got ndim={a.ndim}")


def _unprep_grad(gp: np.ndarray, ndim: int) -> np.ndarray:
    if ndim == 0:
        return np.asarray(gp.sum())
    if ndim == 1:
        return gp.sum(axis=0)
    return gp


def _l_max(l_max, allow_none: bool = False) -> int:
    if l_max is None:
        if allow_none:
            return 0
        raise ValueError("l_max: is required for this adstock")
    if isinstance(l_max, bool) or not isinstance(l_max, numbers.Integral):
        if isinstance(l_max, numbers.Real) and float(l_max).is_integer():
            l_max = int(l_max)
        else:
            raise ValueError(f"l_max: must be an integer >= 1, got {l_max!r}")
    if l_max < 1:
        raise ValueError(f"l_max: must be an integer >= 1, got {l_max}")
    return int(l_max)


def _check_g(g, x3: np.ndarray, squeeze: bool) -> np.ndarray:
    want = x3.shape[1:] if squeeze else x3.shape
    if np.shape(g) != tuple(want):
        raise ValueError(f"g: expected the shape of x {tuple(want)}, got {np.shape(g)}")
    g3, _ = _prep_x(g, "g")
    return g3


def _adstock(kind, x, p0n, p0, p1n, p1, l_max, normalize):
    x3, squeeze = _prep_x(x)
    b, _, c = x3.shape
    a, _ = _prep_param(p0n, p0, b, c)
    bb = _prep_param(p1n, p1, b, c)[0] if p1n else None
    y = _core.adstock_fwd(kind, x3, a, bb, l_max, bool(normalize))
    return y[0] if squeeze else y


def _adstock_vjp(kind, x, p0n, p0, p1n, p1, g, l_max, normalize):
    x3, squeeze = _prep_x(x)
    b, _, c = x3.shape
    a, nd0 = _prep_param(p0n, p0, b, c)
    bb, nd1 = _prep_param(p1n, p1, b, c) if p1n else (None, 0)
    g3 = _check_g(g, x3, squeeze)
    gx, g0, g1 = _core.adstock_vjp(kind, x3, a, bb, g3, l_max, bool(normalize))
    out = [gx[0] if squeeze else gx, _unprep_grad(g0, nd0)]
    if p1n:
        out.append(_unprep_grad(g1, nd1))
    return tuple(out)


def _weibull_kind(kind: str) -> str:
    if kind not in ("pdf", "cdf"):
        raise ValueError(f"kind: must be 'pdf' or 'cdf', got {kind!r}")
    return f"weibull_{kind}"


def geometric_adstock(x, alpha, l_max: int | None = None, normalize: bool = False) -> np.ndarray:
    """Geometric adstock.

    ``l_max=None``: the untruncated recursion ``y[t] = x[t] + alpha * y[t-1]``.
    Otherwise a convolution with weights ``w[l] = alpha**l``, ``l = 0..l_max-1``,
    divided by their sum when ``normalize``. ``alpha`` in [0, 1).

    Parameters
    ----------
    x : array (T, C) or (B, T, C), spend >= 0
    alpha : scalar, (C,) or (B, C)
    """
    return _adstock("geometric", x, "alpha", alpha, None, None, _l_max(l_max, True), normalize)


def geometric_adstock_vjp(x, alpha, g, l_max: int | None = None, normalize: bool = False):
    """VJP of :func:`geometric_adstock`: returns ``(g_x, g_alpha)``."""
    return _adstock_vjp("geometric", x, "alpha", alpha, None, None, g, _l_max(l_max, True), normalize)


def delayed_adstock(x, alpha, theta, l_max: int, normalize: bool = False) -> np.ndarray:
    """Delayed adstock: weights ``w[l] = alpha**((l - theta)**2)``, ``l = 0..l_max-1``.

    ``alpha`` in (0, 1), ``theta >= 0`` (the peak lag). Shapes as in
    :func:`geometric_adstock`.
    """
    return _adstock("delayed", x, "alpha", alpha, "theta", theta, _l_max(l_max), normalize)


def delayed_adstock_vjp(x, alpha, theta, g, l_max: int, normalize: bool = False):
    """VJP of :func:`delayed_adstock`: returns ``(g_x, g_alpha, g_theta)``."""
    return _adstock_vjp("delayed", x, "alpha", alpha, "theta", theta, g, _l_max(l_max), normalize)


def weibull_adstock(x, lam, k, l_max: int, kind: str = "pdf", normalize: bool = False) -> np.ndarray:
    """Weibull adstock, as pymc-marketing's ``weibull_adstock``.

    ``kind="pdf"``: ``p[i] = pdf(i; shape=k, scale=lam)`` for ``i = 1..l_max``,
    min-max scaled to [0, 1] (needs ``l_max >= 2``). ``kind="cdf"``: survival
    ``s[i] = exp(-(i/lam)**k)`` and weights ``cumprod([1, s[1], ..., s[l_max]])``,
    i.e. ``l_max + 1`` taps. ``lam > 0``, ``k > 0``.
    """
    return _adstock(_weibull_kind(kind), x, "lam", lam, "k", k, _l_max(l_max), normalize)


def weibull_adstock_vjp(x, lam, k, g, l_max: int, kind: str = "pdf", normalize: bool = False):
    """VJP of :func:`weibull_adstock`: returns ``(g_x, g_lam, g_k)``."""
    return _adstock_vjp(_weibull_kind(kind), x, "lam", lam, "k", k, g, _l_max(l_max), normalize)


def adstock_weights(kind: str, p0: float, p1: float = 0.0, l_max: int = 12, normalize: bool = False):
    """Tap weights of one channel's adstock, for plots and inspection.

    ``kind`` is ``geometric``, ``delayed``, ``weibull_pdf`` or ``weibull_cdf``;
    ``(p0, p1)`` are (alpha, -), (alpha, theta) or (lam, k).
    """
    return _core.adstock_weights(kind, float(p0), float(p1), _l_max(l_max), bool(normalize))


def _saturation(kind, x, names, params):
    x3, squeeze = _prep_x(x)
    b, _, c = x3.shape
    ps = [_prep_param(n, p, b, c)[0] for n, p in zip(names, params)]
    y = _core.saturation_fwd(kind, x3, ps[0], ps[1] if len(ps) > 1 else None)
    return y[0] if squeeze else y


def _saturation_vjp(kind, x, names, params, g):
    x3, squeeze = _prep_x(x)
    b, _, c = x3.shape
    prepped = [_prep_param(n, p, b, c) for n, p in zip(names, params)]
    g3 = _check_g(g, x3, squeeze)
    p1 = prepped[1][0] if len(prepped) > 1 else None
    gx, g0, g1 = _core.saturation_vjp(kind, x3, prepped[0][0], p1, g3)
    out = [gx[0] if squeeze else gx, _unprep_grad(g0, prepped[0][1])]
    if len(prepped) > 1:
        out.append(_unprep_grad(g1, prepped[1][1]))
    return tuple(out)


def hill(x, kappa, slope) -> np.ndarray:
    """Hill saturation ``x**slope / (kappa**slope + x**slope)``.

    Same as pymc-marketing's ``hill_function(x, slope, kappa)``. ``kappa > 0``
    (half-saturation point, in the units of x), ``slope > 0``. At ``x = 0`` the
    value is 0 and the gradient is finite by convention: ``d/dx = 1/kappa`` if
    ``slope == 1`` else 0, ``d/dkappa = d/dslope = 0``.
    """
    return _saturation("hill", x, ("kappa", "slope"), (kappa, slope))


def hill_vjp(x, kappa, slope, g):
    """VJP of :func:`hill`: returns ``(g_x, g_kappa, g_slope)``."""
    return _saturation_vjp("hill", x, ("kappa", "slope"), (kappa, slope), g)


def logistic_saturation(x, lam) -> np.ndarray:
    """Logistic saturation ``(1 - exp(-lam x)) / (1 + exp(-lam x))``, ``lam > 0``."""
    return _saturation("logistic", x, ("lam",), (lam,))


def logistic_saturation_vjp(x, lam, g):
    """VJP of :func:`logistic_saturation`: returns ``(g_x, g_lam)``."""
    return _saturation_vjp("logistic", x, ("lam",), (lam,), g)


def michaelis_menten(x, alpha, lam) -> np.ndarray:
    """Michaelis-Menten saturation ``alpha x / (lam + x)``; ``lam > 0``."""
    return _saturation("michaelis_menten", x, ("alpha", "lam"), (alpha, lam))


def michaelis_menten_vjp(x, alpha, lam, g):
    """VJP of :func:`michaelis_menten`: returns ``(g_x, g_alpha, g_lam)``."""
    return _saturation_vjp("michaelis_menten", x, ("alpha", "lam"), (alpha, lam), g)


def tanh_saturation(x, b, c) -> np.ndarray:
    """Tanh saturation ``b tanh(x / (b c))``; ``b > 0`` (ceiling), ``c > 0``."""
    return _saturation("tanh", x, ("b", "c"), (b, c))


def tanh_saturation_vjp(x, b, c, g):
    """VJP of :func:`tanh_saturation`: returns ``(g_x, g_b, g_c)``."""
    return _saturation_vjp("tanh", x, ("b", "c"), (b, c), g)


def _media_prep(adstock, saturation, x, adstock_params, saturation_params, l_max):
    if adstock not in ADSTOCK_PARAMS:
        raise ValueError(f"adstock: unknown kind {adstock!r}; expected one of {sorted(ADSTOCK_PARAMS)}")
    if saturation not in SATURATION_PARAMS:
        raise ValueError(
            f"saturation: unknown kind {saturation!r}; expected one of {sorted(SATURATION_PARAMS)}"
        )
    x3, squeeze = _prep_x(x)
    b, _, c = x3.shape
    an, sn = ADSTOCK_PARAMS[adstock], SATURATION_PARAMS[saturation]
    if len(adstock_params) != len(an):
        raise ValueError(f"adstock_params: {adstock} takes {an}, got {len(adstock_params)} values")
    if len(saturation_params) != len(sn):
        raise ValueError(f"saturation_params: {saturation} takes {sn}, got {len(saturation_params)} values")
    ap = [_prep_param(n, p, b, c) for n, p in zip(an, adstock_params)]
    sp = [_prep_param(n, p, b, c) for n, p in zip(sn, saturation_params)]
    lm = _l_max(l_max, allow_none=adstock == "geometric")
    return x3, squeeze, ap, sp, lm


def media_transform(
    x,
    adstock: str = "geometric",
    saturation: str = "hill",
    adstock_params=(),
    saturation_params=(),
    l_max: int | None = None,
    normalize: bool = False,
):
    """Fused ``saturation(adstock(x))`` in one pass.

    Parameters
    ----------
    x : array (T, C) or (B, T, C), spend >= 0
    adstock : "geometric", "delayed", "weibull_pdf" or "weibull_cdf"
    saturation : "hill", "logistic", "michaelis_menten" or "tanh"
    adstock_params, saturation_params : tuples of per-channel parameters in the
        order of ``ADSTOCK_PARAMS`` / ``SATURATION_PARAMS`` (scalars, (C,) or (B, C))

    Returns
    -------
    y : array, shape of x
    cache : 1-D array of 4*B*T*C values (adstocked spend and the saturation's
        partial derivatives) for :func:`media_transform_vjp`
    """
    x3, squeeze, ap, sp, lm = _media_prep(adstock, saturation, x, adstock_params, saturation_params, l_max)
    a1 = ap[1][0] if len(ap) > 1 else None
    s1 = sp[1][0] if len(sp) > 1 else None
    y, cache = _core.media_fwd(adstock, saturation, x3, ap[0][0], a1, sp[0][0], s1, lm, bool(normalize))
    return (y[0] if squeeze else y), cache


def media_transform_vjp(
    x,
    g,
    cache,
    adstock: str = "geometric",
    saturation: str = "hill",
    adstock_params=(),
    saturation_params=(),
    l_max: int | None = None,
    normalize: bool = False,
    want_gx: bool = False,
):
    """VJP of :func:`media_transform` from its cache.

    Returns ``(g_x or None, g_adstock_params, g_saturation_params)`` where the
    last two are tuples in parameter order. The spend gradient is computed only
    with ``want_gx`` (spend is data in an MMM, and skipping it halves the
    adstock's backward work).
    """
    x3, squeeze, ap, sp, lm = _media_prep(adstock, saturation, x, adstock_params, saturation_params, l_max)
    g3 = _check_g(g, x3, squeeze)
    cache = np.ascontiguousarray(cache, dtype=np.float64).ravel()
    if cache.size != 4 * x3.size:
        raise ValueError(f"cache: expected {4 * x3.size} values from media_transform, got {cache.size}")
    a1 = ap[1][0] if len(ap) > 1 else None
    gx, ga0, ga1, gs0, gs1 = _core.media_vjp(
        adstock, saturation, x3, ap[0][0], a1, cache, g3, lm, bool(normalize), bool(want_gx)
    )
    ga = [_unprep_grad(ga0, ap[0][1])] + ([_unprep_grad(ga1, ap[1][1])] if len(ap) > 1 else [])
    gs = [_unprep_grad(gs0, sp[0][1])] + ([_unprep_grad(gs1, sp[1][1])] if len(sp) > 1 else [])
    if gx is not None and squeeze:
        gx = gx[0]
    return gx, tuple(ga), tuple(gs)
