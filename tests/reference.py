"""Independent float64 numpy reference for the ``fastmmm.kernels`` API.

Deliberately written "the plain way" so that it shares no algorithm with the
Rust kernels:

* every adstock is an explicit (T x T) lower-triangular Toeplitz matrix ``M``
  per (batch, channel), ``y = M x``;
* the adstock VJP is ``gx = M^T g`` and ``gparam = g^T (dM/dparam) x`` where
  ``dM/dparam`` is the Toeplitz matrix built from the analytic derivative of
  the lag weights (normalisation handled with the quotient rule);
* saturations are elementwise with analytic partial derivatives,
  ``gx = g * dy/dx`` and ``gparam = sum(g * dy/dparam)``.

Shapes follow shared_api_spec.md: ``x`` is (T, C) or (B, T, C); per-channel
parameters are (C,) or (B, C) (the latter only with 3-D ``x``).  Parameter
gradients have the parameter's shape.

Every VJP also accepts ``abs_scale=True``: it then returns, instead of the
gradients, the same sums evaluated with absolute values of all terms
(``|M|^T |g|`` and ``|g|^T |dM/dp| |x|`` or ``sum |g| |dy/dp|``).  Tests use
these as the natural scale of the floating-point error of a sum whose terms
may cancel.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "geometric_weights",
    "delayed_weights",
    "weibull_weights",
    "geometric_adstock",
    "geometric_adstock_vjp",
    "delayed_adstock",
    "delayed_adstock_vjp",
    "weibull_adstock",
    "weibull_adstock_vjp",
    "hill",
    "hill_vjp",
    "logistic_saturation",
    "logistic_saturation_vjp",
    "michaelis_menten",
    "michaelis_menten_vjp",
    "tanh_saturation",
    "tanh_saturation_vjp",
]


# --------------------------------------------------------------------------
# shape handling
# --------------------------------------------------------------------------
def _as3d(x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[None], True
    if x.ndim == 3:
        return x, False
    raise ValueError("x must be 2-D or 3-D")


def _param(p, B, C):
    """Broadcast a (C,) or (B, C) parameter to (B, C)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        p = np.full(C, float(p))
    if p.ndim == 1:
        assert p.shape == (C,), p.shape
        return np.broadcast_to(p, (B, C)).copy()
    assert p.shape == (B, C), p.shape
    return p.copy()


def _reduce_param_grad(gp, p_orig):
    """(B, C) gradient -> the shape of the original parameter."""
    p_orig = np.asarray(p_orig)
    if p_orig.ndim == 0:
        return gp.sum()
    if p_orig.ndim == 1:
        return gp.sum(axis=0)
    return gp


def _out(y3, squeeze):
    return y3[0] if squeeze else y3


# --------------------------------------------------------------------------
# lag weights and their analytic derivatives.  All return (B, C, L) arrays.
# --------------------------------------------------------------------------
def _normalize(w, dws, dws_abs):
    """w / sum(w) and, by the quotient rule, d(w / sum w)/dp = dw/S - w dS/S**2 for
    each dw in dws; dws_abs are bounds on |dw| used to build the matching bounds
    |dw|/S + w sum|dw|/S**2 for the normalised derivatives."""
    S = w.sum(axis=-1, keepdims=True)
    out, out_abs = [], []
    for dw, da in zip(dws, dws_abs):
        dS = dw.sum(axis=-1, keepdims=True)
        out.append(dw / S - w * dS / S**2)
        out_abs.append(da / S + w * da.sum(axis=-1, keepdims=True) / S**2)
    return w / S, out, out_abs


def _geometric_weights(alpha, L, normalize):
    alpha = np.asarray(alpha, dtype=np.float64)[..., None]
    lags = np.arange(L, dtype=np.float64)
    w = np.ones(alpha.shape[:-1] + (L,))
    dw = np.zeros_like(w)
    for l in range(1, L):  # noqa: E741  (explicit powers, no recursion on w)
        w[..., l] = alpha[..., 0] ** lags[l]
        dw[..., l] = lags[l] * alpha[..., 0] ** (lags[l] - 1.0)
    dws, dabs = [dw], [np.abs(dw)]
    if normalize:
        w, dws, dabs = _normalize(w, dws, dabs)
    return w, dws, dabs


def geometric_weights(alpha, L, normalize=False):
    """w_l = alpha**l, l = 0..L-1; returns (w, dw/dalpha)."""
    w, (dw,), _ = _geometric_weights(alpha, L, normalize)
    return w, dw


def _delayed_weights(alpha, theta, L, normalize):
    alpha = np.asarray(alpha, dtype=np.float64)[..., None]
    theta = np.asarray(theta, dtype=np.float64)[..., None]
    lags = np.arange(L, dtype=np.float64)
    e = (lags - theta) ** 2
    w = alpha**e
    # d/dalpha alpha**e = e * alpha**(e-1) ; written as e * w / alpha (alpha > 0)
    dw_dalpha = e * w / alpha
    # d/dtheta alpha**e = w * log(alpha) * de/dtheta,  de/dtheta = -2 (l - theta)
    dw_dtheta = w * np.log(alpha) * (-2.0 * (lags - theta))
    dws = [dw_dalpha, dw_dtheta]
    dabs = [np.abs(d) for d in dws]
    if normalize:
        w, dws, dabs = _normalize(w, dws, dabs)
    return w, dws, dabs


def delayed_weights(alpha, theta, L, normalize=False):
    """w_l = alpha**((l - theta)**2); returns (w, dw/dalpha, dw/dtheta)."""
    w, (da, dt), _ = _delayed_weights(alpha, theta, L, normalize)
    return w, da, dt


def _weibull_pdf(t, lam, k):
    """Weibull density f(t; shape k, scale lam), its d/dlam, d/dk, and bounds on the
    size of the terms of those derivatives."""
    z = t / lam
    zk = z**k
    p = (k / lam) * z ** (k - 1.0) * np.exp(-zk)
    # d log p / d lam = (k / lam) * (z**k - 1)
    dlogp_dlam = (k / lam) * (zk - 1.0)
    # d log p / d k = 1/k + log z - z**k log z
    dlogp_dk = 1.0 / k + np.log(z) - zk * np.log(z)
    abs_lam = p * (k / lam) * (zk + 1.0)
    abs_k = p * (1.0 / k + np.abs(np.log(z)) * (1.0 + zk))
    return p, p * dlogp_dlam, p * dlogp_dk, abs_lam, abs_k


def _weibull_weights(lam, k, L, kind, normalize):
    lam = np.asarray(lam, dtype=np.float64)[..., None]
    k = np.asarray(k, dtype=np.float64)[..., None]
    t = np.arange(1, L + 1, dtype=np.float64)
    if kind == "pdf":
        p, dp_dlam, dp_dk, ap_lam, ap_k = _weibull_pdf(t, lam, k)
        shape = p.shape
        w = np.empty(shape)
        dws = [np.empty(shape), np.empty(shape)]
        dabs = [np.empty(shape), np.empty(shape)]
        for idx in np.ndindex(shape[:-1]):
            pv = p[idx]
            imin = int(np.argmin(pv))
            imax = int(np.argmax(pv))
            D = pv[imax] - pv[imin]
            w[idx] = (pv - pv[imin]) / D
            for dp, ap, dw, da in (
                (dp_dlam[idx], ap_lam[idx], dws[0], dabs[0]),
                (dp_dk[idx], ap_k[idx], dws[1], dabs[1]),
            ):
                dD = dp[imax] - dp[imin]
                dw[idx] = (dp - dp[imin]) / D - (pv - pv[imin]) * dD / D**2
                aD = ap[imax] + ap[imin]
                da[idx] = (ap + ap[imin]) / D + np.abs(pv - pv[imin]) * aD / D**2
    elif kind == "cdf":
        z = (t / lam) ** k  # (..., L) cumulative hazard at t
        # d z/dlam = -k z / lam ;  d z/dk = z log(t/lam)
        dz = [-k * z / lam, z * np.log(t / lam)]
        n = L + 1
        shape = z.shape[:-1] + (n,)
        w = np.empty(shape)
        dws = [np.zeros(shape), np.zeros(shape)]
        dabs = [np.zeros(shape), np.zeros(shape)]
        w[..., 0] = 1.0
        for j in range(1, n):
            # w_j = prod_{t<=j} exp(-z_t) = exp(-sum_{t<=j} z_t)
            w[..., j] = np.prod(np.exp(-z[..., :j]), axis=-1)
            for dzi, dw, da in zip(dz, dws, dabs):
                dw[..., j] = -w[..., j] * dzi[..., :j].sum(axis=-1)
                da[..., j] = w[..., j] * np.abs(dzi[..., :j]).sum(axis=-1)
    else:
        raise ValueError(f"kind must be 'pdf' or 'cdf', got {kind!r}")
    if normalize:
        w, dws, dabs = _normalize(w, dws, dabs)
    return w, dws, dabs


def weibull_weights(lam, k, L, kind="pdf", normalize=False):
    """Weibull adstock weights exactly as pymc-marketing 0.19 builds them.

    pdf: t = 1..L, p_t = pdf(t), w = (p - min p) / (max p - min p)      (L weights)
    cdf: t = 1..L, s_t = 1 - cdf(t) = exp(-(t/lam)**k),
         w = cumprod([1, s_1, ..., s_L])                                 (L+1 weights)
    Returns (w, dw/dlam, dw/dk), each (..., n_weights).
    """
    w, (dl, dk), _ = _weibull_weights(lam, k, L, kind, normalize)
    return w, dl, dk


# --------------------------------------------------------------------------
# explicit Toeplitz convolution ("After" mode: zeros before t = 0)
# --------------------------------------------------------------------------
def toeplitz(wvec, T):
    """(T, T) lower-triangular Toeplitz matrix with M[t, s] = w[t - s]."""
    wvec = np.asarray(wvec, dtype=np.float64)
    L = wvec.shape[0]
    M = np.zeros((T, T))
    for lag in range(min(L, T)):
        idx = np.arange(lag, T)
        M[idx, idx - lag] = wvec[lag]
    return M


def _adstock_forward(x, weights):
    """x (B,T,C), weights (B,C,L) -> y (B,T,C) via y[:, c] = M_c x[:, c]."""
    B, T, C = x.shape
    y = np.empty_like(x)
    for b in range(B):
        for c in range(C):
            y[b, :, c] = toeplitz(weights[b, c], T) @ x[b, :, c]
    return y


def _adstock_vjp(x, g, weights, dweights, dweights_abs, abs_scale=False):
    """gx = M^T g ; gp = g^T (dM/dp) x for each dp in dweights.

    With abs_scale, |M|^T |g| and |g|^T dMabs |x| where dMabs is built from
    dweights_abs (bounds on the sizes of the terms of dw/dp)."""
    if abs_scale:
        dweights = dweights_abs
    B, T, C = x.shape
    gx = np.empty_like(x)
    gps = [np.empty((B, C)) for _ in dweights]
    f = np.abs if abs_scale else (lambda a: a)
    for b in range(B):
        for c in range(C):
            M = f(toeplitz(weights[b, c], T))
            gbc = f(g[b, :, c])
            xbc = f(x[b, :, c])
            gx[b, :, c] = M.T @ gbc
            for gp, dw in zip(gps, dweights):
                dM = f(toeplitz(dw[b, c], T))
                gp[b, c] = gbc @ dM @ xbc
    return gx, gps


# --------------------------------------------------------------------------
# adstocks: public functions
# --------------------------------------------------------------------------
def _geometric_L(l_max, T, normalize):
    if l_max is None:
        if normalize:
            raise NotImplementedError("normalize with l_max=None is not specified")
        return T  # untruncated recursion == full-length Toeplitz with alpha**l
    return int(l_max)


def geometric_adstock(x, alpha, l_max=None, normalize=False):
    x3, sq = _as3d(x)
    B, T, C = x3.shape
    a = _param(alpha, B, C)
    w, _, _ = _geometric_weights(a, _geometric_L(l_max, T, normalize), normalize)
    return _out(_adstock_forward(x3, w), sq)


def geometric_adstock_vjp(x, alpha, g, l_max=None, normalize=False, abs_scale=False):
    x3, sq = _as3d(x)
    g3, _ = _as3d(g)
    B, T, C = x3.shape
    a = _param(alpha, B, C)
    w, dws, dabs = _geometric_weights(a, _geometric_L(l_max, T, normalize), normalize)
    gx, (ga,) = _adstock_vjp(x3, g3, w, dws, dabs, abs_scale)
    return _out(gx, sq), _reduce_param_grad(ga, alpha)


def delayed_adstock(x, alpha, theta, l_max, normalize=False):
    x3, sq = _as3d(x)
    B, T, C = x3.shape
    w, _, _ = _delayed_weights(_param(alpha, B, C), _param(theta, B, C), int(l_max), normalize)
    return _out(_adstock_forward(x3, w), sq)


def delayed_adstock_vjp(x, alpha, theta, g, l_max, normalize=False, abs_scale=False):
    x3, sq = _as3d(x)
    g3, _ = _as3d(g)
    B, T, C = x3.shape
    w, dws, dabs = _delayed_weights(_param(alpha, B, C), _param(theta, B, C), int(l_max), normalize)
    gx, (ga, gt) = _adstock_vjp(x3, g3, w, dws, dabs, abs_scale)
    return _out(gx, sq), _reduce_param_grad(ga, alpha), _reduce_param_grad(gt, theta)


def weibull_adstock(x, lam, k, l_max, kind="pdf", normalize=False):
    x3, sq = _as3d(x)
    B, T, C = x3.shape
    w, _, _ = _weibull_weights(_param(lam, B, C), _param(k, B, C), int(l_max), kind, normalize)
    return _out(_adstock_forward(x3, w), sq)


def weibull_adstock_vjp(x, lam, k, g, l_max, kind="pdf", normalize=False, abs_scale=False):
    x3, sq = _as3d(x)
    g3, _ = _as3d(g)
    B, T, C = x3.shape
    w, dws, dabs = _weibull_weights(_param(lam, B, C), _param(k, B, C), int(l_max), kind, normalize)
    gx, (gl, gk) = _adstock_vjp(x3, g3, w, dws, dabs, abs_scale)
    return _out(gx, sq), _reduce_param_grad(gl, lam), _reduce_param_grad(gk, k)


# --------------------------------------------------------------------------
# saturations: elementwise value and analytic partials
# --------------------------------------------------------------------------
def _bcast(x, *params):
    """x -> (B,T,C); params -> (B,1,C) so they broadcast along T."""
    x3, sq = _as3d(x)
    B, T, C = x3.shape
    return x3, sq, [_param(p, B, C)[:, None, :] for p in params]


def _sat_vjp(g, sq, dydx, dparams, params_orig, abs_scale):
    g3, _ = _as3d(g)
    f = np.abs if abs_scale else (lambda a: a)
    gx = f(g3) * f(dydx)
    out = [_out(gx, sq)]
    for dp, p in zip(dparams, params_orig):
        out.append(_reduce_param_grad((f(g3) * f(dp)).sum(axis=1), p))
    return tuple(out)


def _hill_parts(x3, kappa, slope):
    """y = x^s/(kappa^s + x^s) with partials; x == 0 follows the spec convention."""
    pos = x3 > 0
    xs = np.where(pos, x3, 1.0)  # placeholder where x == 0
    xpow = xs**slope
    kpow = kappa**slope
    den = kpow + xpow
    y = np.where(pos, xpow / den, 0.0)
    dydx = np.where(
        pos, slope * xs ** (slope - 1.0) * kpow / den**2, np.where(slope == 1.0, 1.0 / kappa, 0.0)
    )
    dydk = np.where(pos, -slope * kappa ** (slope - 1.0) * xpow / den**2, 0.0)
    dyds = np.where(pos, kpow * xpow * (np.log(xs) - np.log(kappa)) / den**2, 0.0)
    logs_abs = np.abs(np.log(xs)) + np.abs(np.log(kappa))
    dyds_abs = np.where(pos, kpow * xpow * logs_abs / den**2, 0.0)
    return y, dydx, dydk, dyds, dyds_abs


def hill(x, kappa, slope):
    x3, sq, (kap, s) = _bcast(x, kappa, slope)
    return _out(_hill_parts(x3, kap, s)[0], sq)


def hill_vjp(x, kappa, slope, g, abs_scale=False):
    x3, sq, (kap, s) = _bcast(x, kappa, slope)
    _, dydx, dydk, dyds, dyds_abs = _hill_parts(x3, kap, s)
    if abs_scale:  # log(x) - log(kappa) cancels for x ~ kappa
        dyds = dyds_abs
    return _sat_vjp(g, sq, dydx, [dydk, dyds], [kappa, slope], abs_scale)


def logistic_saturation(x, lam):
    x3, sq, (lm,) = _bcast(x, lam)
    # (1 - e^{-u}) / (1 + e^{-u}) == tanh(u / 2), evaluated without cancellation
    return _out(np.tanh(lm * x3 / 2.0), sq)


def logistic_saturation_vjp(x, lam, g, abs_scale=False):
    x3, sq, (lm,) = _bcast(x, lam)
    # d tanh(u/2)/du = sech(u/2)**2 / 2; 1/cosh**2 (not 1 - y**2, which cancels for large u)
    with np.errstate(over="ignore"):  # cosh -> inf gives the correct 0
        sech2_half = 0.5 / np.cosh(lm * x3 / 2.0) ** 2
    return _sat_vjp(g, sq, lm * sech2_half, [x3 * sech2_half], [lam], abs_scale)


def michaelis_menten(x, alpha, lam):
    x3, sq, (a, lm) = _bcast(x, alpha, lam)
    return _out(a * x3 / (lm + x3), sq)


def michaelis_menten_vjp(x, alpha, lam, g, abs_scale=False):
    x3, sq, (a, lm) = _bcast(x, alpha, lam)
    den = lm + x3
    dydx = a * lm / den**2
    dyda = x3 / den
    dydl = -a * x3 / den**2
    return _sat_vjp(g, sq, dydx, [dyda, dydl], [alpha, lam], abs_scale)


def tanh_saturation(x, b, c):
    x3, sq, (bb, cc) = _bcast(x, b, c)
    return _out(bb * np.tanh(x3 / (bb * cc)), sq)


def tanh_saturation_vjp(x, b, c, g, abs_scale=False):
    x3, sq, (bb, cc) = _bcast(x, b, c)
    u = x3 / (bb * cc)
    th = np.tanh(u)
    with np.errstate(over="ignore"):  # not 1 - th**2: that cancels for large u
        sech2 = 1.0 / np.cosh(u) ** 2
    dydx = sech2 / cc
    # y = b tanh(u), du/db = -u/b, du/dc = -u/c
    dydb = th - u * sech2
    dydc = -bb * sech2 * u / cc
    if abs_scale:  # dydb is a difference of two terms: scale is the sum of their sizes
        dydb = np.abs(th) + np.abs(u * sech2)
    return _sat_vjp(g, sq, dydx, [dydb, dydc], [b, c], abs_scale)
