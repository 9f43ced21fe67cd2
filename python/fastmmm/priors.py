"""Prior distributions for fastmmm models, as small immutable values.

A :class:`Prior` names a PyMC distribution and its parameters::

    Prior("HalfNormal", sigma=2.0)
    Prior("Beta", alpha=2, beta=2)
    Prior.parse("Gamma(mu=1.5, sigma=0.5)")      # compact form used in TOML / CLI

It is validated on construction (distribution name, parameter names, parameter
values), is hashable and compares by value, serialises to a plain dict
(:meth:`Prior.to_dict` / :meth:`Prior.from_dict`) and to the compact string
form (``str(prior)`` / :meth:`Prior.parse`), and creates the PyMC random
variable inside a model context with :meth:`Prior.create`.

Per-channel values
------------------
Any parameter value may be a list instead of a number, e.g.
``Prior("HalfNormal", sigma=[1.0, 2.0, 0.5])``. The list holds one value per
element of the variable, which for channel-level parameters of a
:class:`~fastmmm.spec.ModelSpec` (``beta``, ``adstock_*``, ``saturation_*``)
means one value per channel, in ``spec.channels`` order. All list-valued
parameters of one prior must have the same length (:attr:`Prior.size`);
scalar parameters are broadcast. :meth:`Prior.create` passes lists to PyMC as
``(size,)`` arrays and, when neither ``dims`` nor ``shape`` is given, uses
``shape=(size,)``. :meth:`Prior.select` extracts the scalar prior of one
element (one channel).

Supported distributions and parameters (``*`` = required; ``|`` separates
alternative parameterisations; other parameters are optional)::

    Normal           mu, sigma*
    HalfNormal       sigma*
    LogNormal        mu, sigma*
    Gamma            alpha*, beta*  |  mu*, sigma*
    Beta             alpha*, beta*
    Exponential      lam*  |  scale*
    StudentT         nu*, mu, sigma*
    HalfStudentT     nu*, sigma*
    TruncatedNormal  mu, sigma*, lower, upper
    Uniform          lower*, upper*

``sigma``, ``alpha``, ``beta``, ``lam``, ``scale``, ``nu`` (and ``mu`` of
``Gamma``) must be > 0; every value must be finite; ``lower < upper``.
"""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DISTRIBUTIONS", "Prior", "PriorValue", "as_prior", "parse_prior"]

#: A parameter value: a number, or a tuple of numbers (one per channel / element).
PriorValue = float | tuple[float, ...]


@dataclass(frozen=True)
class _DistInfo:
    params: tuple[str, ...]  # every accepted parameter, in canonical order
    required: tuple[tuple[str, ...], ...]  # alternative sets of required parameters
    positive: frozenset[str]


def _info(params, required, positive) -> _DistInfo:
    return _DistInfo(tuple(params), tuple(tuple(r) for r in required), frozenset(positive))


#: Supported distributions: accepted parameters, required parameter sets, positive parameters.
DISTRIBUTIONS: dict[str, _DistInfo] = {
    "Normal": _info(("mu", "sigma"), [("sigma",)], ("sigma",)),
    "HalfNormal": _info(("sigma",), [("sigma",)], ("sigma",)),
    "LogNormal": _info(("mu", "sigma"), [("sigma",)], ("sigma",)),
    "Gamma": _info(
        ("alpha", "beta", "mu", "sigma"),
        [("alpha", "beta"), ("mu", "sigma")],
        ("alpha", "beta", "mu", "sigma"),
    ),
    "Beta": _info(("alpha", "beta"), [("alpha", "beta")], ("alpha", "beta")),
    "Exponential": _info(("lam", "scale"), [("lam",), ("scale",)], ("lam", "scale")),
    "StudentT": _info(("nu", "mu", "sigma"), [("nu", "sigma")], ("nu", "sigma")),
    "HalfStudentT": _info(("nu", "sigma"), [("nu", "sigma")], ("nu", "sigma")),
    "TruncatedNormal": _info(("mu", "sigma", "lower", "upper"), [("sigma",)], ("sigma",)),
    "Uniform": _info(("lower", "upper"), [("lower", "upper")], ()),
}


def _fmt_alternatives(required: tuple[tuple[str, ...], ...]) -> str:
    return " or ".join("(" + ", ".join(r) + ")" for r in required)


def _coerce_value(dist: str, pname: str, v: Any) -> PriorValue:
    """A parameter value as a float or a non-empty tuple of floats (finite, real)."""
    where = f"Prior({dist!r}): parameter {pname!r}"

    def one(x: Any) -> float:
        if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.integer, np.floating)):
            raise ValueError(f"{where} must be a real number or a list of real numbers, got {x!r}")  # noqa: TRY004
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"{where} must be finite, got {x!r}")
        return f

    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return one(v.item())
        if v.ndim != 1:
            raise ValueError(f"{where}: per-channel values must be a 1-D list, got shape {v.shape}")
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            raise ValueError(f"{where}: per-channel list must not be empty")
        return tuple(one(x) for x in v)
    return one(v)


def _values(v: PriorValue) -> tuple[float, ...]:
    return v if isinstance(v, tuple) else (v,)


@dataclass(frozen=True, init=False)
class Prior:
    """An immutable, validated prior: a PyMC distribution name and its parameters.

    Parameters
    ----------
    dist : str
        Distribution name, one of :data:`DISTRIBUTIONS` (``"Normal"``,
        ``"HalfNormal"``, ``"LogNormal"``, ``"Gamma"``, ``"Beta"``,
        ``"Exponential"``, ``"StudentT"``, ``"HalfStudentT"``,
        ``"TruncatedNormal"``, ``"Uniform"``).
    **params : float or list of float
        Distribution parameters. A list gives one value per channel / element
        (shape ``(size,)``); see the module docstring.

    Attributes
    ----------
    dist : str
        The distribution name.
    params : tuple of (str, float or tuple of float)
        The parameters in the distribution's canonical order; values are
        floats, per-channel values tuples of floats.

    Raises
    ------
    ValueError
        Unknown distribution, unknown / missing parameter, non-finite or
        out-of-domain value, per-channel lists of different lengths.

    Examples
    --------
    >>> Prior("HalfNormal", sigma=2)
    Prior('HalfNormal', sigma=2.0)
    >>> str(Prior("Beta", alpha=2, beta=[2, 3]))
    'Beta(alpha=2.0, beta=[2.0, 3.0])'
    """

    dist: str
    params: tuple[tuple[str, PriorValue], ...]

    def __init__(self, dist: str, **params: Any) -> None:
        if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown prior distribution {dist!r}; valid distributions: {', '.join(DISTRIBUTIONS)}"
            )
        info = DISTRIBUTIONS[dist]
        unknown = [p for p in params if p not in info.params]
        if unknown:
            raise ValueError(
                f"Prior({dist!r}): unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(info.params)}"
            )
        given = set(params)
        matching = [r for r in info.required if set(r) <= given]
        if not matching:
            raise ValueError(
                f"Prior({dist!r}) requires parameters {_fmt_alternatives(info.required)}; "
                f"got {', '.join(sorted(given)) or 'none'}"
            )
        if len(info.required) > 1:
            # Alternative parameterisations must not be mixed (e.g. Gamma(alpha=, sigma=)).
            chosen = set(matching[0])
            optional = set(info.params) - set().union(*map(set, info.required))
            extra = given - chosen - optional
            if extra:
                raise ValueError(
                    f"Prior({dist!r}): use exactly one parameterisation {_fmt_alternatives(info.required)}; "
                    f"got {', '.join(sorted(given))}"
                )
        values = {p: _coerce_value(dist, p, params[p]) for p in info.params if p in params}
        sizes = {len(v) for v in values.values() if isinstance(v, tuple)}
        if len(sizes) > 1:
            raise ValueError(
                f"Prior({dist!r}): per-channel parameter lists have different lengths "
                f"{ {p: len(v) for p, v in values.items() if isinstance(v, tuple)} }"
            )
        for p, v in values.items():
            if p in info.positive and any(x <= 0 for x in _values(v)):
                raise ValueError(f"Prior({dist!r}): parameter {p!r} must be > 0, got {_fmt_value(v)}")
        if "lower" in values and "upper" in values:
            lo, hi = values["lower"], values["upper"]
            if np.any(np.asarray(_values(lo)) >= np.asarray(_values(hi))):
                raise ValueError(
                    f"Prior({dist!r}): 'lower' must be < 'upper', got lower={_fmt_value(lo)}, upper={_fmt_value(hi)}"
                )
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple(values.items()))

    # ------------------------------------------------------------------ access
    @property
    def kwargs(self) -> dict[str, PriorValue]:
        """The parameters as a dict (floats, or tuples of floats for per-channel values)."""
        return dict(self.params)

    def __getitem__(self, name: str) -> PriorValue:
        """The value of parameter ``name`` (KeyError if not set)."""
        return self.kwargs[name]

    @property
    def size(self) -> int | None:
        """Length of the per-channel parameter lists, or None if every parameter is scalar."""
        for _, v in self.params:
            if isinstance(v, tuple):
                return len(v)
        return None

    def select(self, index: int) -> Prior:
        """The scalar prior of element ``index`` of a per-channel prior.

        Scalar parameters are kept; list parameters are replaced by their
        ``index``-th value. A prior without lists is returned unchanged.
        """
        n = self.size
        if n is None:
            return self
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a per-channel prior of size {n}")
        return Prior(self.dist, **{p: (v[index] if isinstance(v, tuple) else v) for p, v in self.params})

    # ------------------------------------------------------------------ pymc
    def create(self, name: str, dims: str | Sequence[str] | None = None, shape: Any = None):
        """Create the random variable in the current ``pm.Model`` context.

        Parameters
        ----------
        name : str
            Variable name in the model.
        dims : str or sequence of str, optional
            Model dims (coords) of the variable, passed to PyMC.
        shape : int or tuple of int, optional
            Shape of the variable, passed to PyMC. When the prior has
            per-channel lists and neither ``dims`` nor ``shape`` is given,
            ``shape=(size,)``.

        Returns
        -------
        pytensor.tensor.TensorVariable
            The random variable; per-channel list parameters are passed as
            ``(size,)`` float64 arrays.

        Raises
        ------
        RuntimeError
            Called outside a ``with pm.Model():`` block.
        ValueError
            A per-channel list length does not match the length of the last
            dim (from the model's coords) or of the last entry of ``shape``.
        """
        import pymc as pm

        try:
            model = pm.modelcontext(None)
        except TypeError:
            raise RuntimeError(
                f"Prior.create({name!r}) must be called inside a `with pm.Model():` block"
            ) from None
        n = self.size
        if n is not None:
            last = None
            if shape is not None:
                shp = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
                last = shp[-1] if shp else 1
            elif dims is not None:
                dlist = (dims,) if isinstance(dims, str) else tuple(dims)
                coords = model.coords.get(dlist[-1]) if dlist else None
                if coords is not None:
                    last = len(coords)
            else:
                shape = (n,)
            if last is not None and int(last) != n:
                raise ValueError(
                    f"prior {name!r}: per-channel parameter lists have length {n} "
                    f"but the variable's last dimension has length {last}"
                )
        # float64 arrays, also for scalars: a Python float becomes a float32 constant in the
        # graph when it is exact in float32, and PyMC then computes e.g. Gamma's 1 / beta in
        # float32 (~3e-8 off). The fused log-density uses the float64 values.
        kwargs = {p: np.asarray(v, dtype=np.float64) for p, v in self.params}
        return getattr(pm, self.dist)(name, dims=dims, shape=shape, **kwargs)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict ``{"dist": name, param: value, ...}`` (lists for per-channel values)."""
        out: dict[str, Any] = {"dist": self.dist}
        for p, v in self.params:
            out[p] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`. Also accepts ``{"dist": name, "params": {...}}``."""
        if not isinstance(d, Mapping) or "dist" not in d:
            raise ValueError(f"a prior dict needs a 'dist' key, got {d!r}")
        rest = {k: v for k, v in d.items() if k != "dist"}
        if set(rest) == {"params"} and isinstance(rest["params"], Mapping):
            rest = dict(rest["params"])
        return cls(d["dist"], **rest)

    @classmethod
    def parse(cls, text: str) -> Prior:
        """Parse the compact form ``"Dist(p=v, ...)"``, e.g. ``"HalfNormal(sigma=2)"``.

        Values are number literals or lists of numbers (``"Beta(alpha=[1, 2], beta=3)"``).
        Raises ValueError with the offending text otherwise.
        """
        if not isinstance(text, str):
            raise ValueError(f"a prior string must be a str, got {type(text).__name__}")  # noqa: TRY004
        bad = f"cannot parse prior {text!r}: expected the form Dist(param=value, ...), e.g. 'HalfNormal(sigma=2)'"
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            raise ValueError(bad) from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError(bad)
        params: dict[str, Any] = {}
        # Positional values in the distribution's canonical order: LogNormal(0.5, 0.4) is
        # LogNormal(mu=0.5, sigma=0.4).
        info = DISTRIBUTIONS.get(node.func.id)
        if node.args and info is None:
            raise ValueError(bad)
        if node.args and len(node.args) > len(info.params):
            raise ValueError(
                f"cannot parse prior {text!r}: {node.func.id} takes at most "
                f"{len(info.params)} positional values ({', '.join(info.params)})"
            )
        for name, arg in zip(info.params if info else (), node.args):
            try:
                params[name] = ast.literal_eval(arg)
            except (ValueError, SyntaxError, TypeError):
                raise ValueError(
                    f"cannot parse prior {text!r}: {name} must be a number or a list of numbers"
                ) from None
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError(bad)
            try:
                params[kw.arg] = ast.literal_eval(kw.value)
            except (ValueError, SyntaxError, TypeError):
                raise ValueError(
                    f"cannot parse prior {text!r}: value of {kw.arg!r} must be a number or a list of numbers"
                ) from None
        return cls(node.func.id, **params)

    def __str__(self) -> str:
        return f"{self.dist}({', '.join(f'{p}={_fmt_value(v)}' for p, v in self.params)})"

    def __repr__(self) -> str:
        inner = ", ".join([repr(self.dist)] + [f"{p}={_fmt_value(v)}" for p, v in self.params])
        return f"Prior({inner})"


def _fmt_value(v: PriorValue) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(repr(x) for x in v) + "]"
    return repr(v)


def parse_prior(text: str) -> Prior:
    """Parse the compact string form, e.g. ``"HalfNormal(sigma=2)"``; see :meth:`Prior.parse`."""
    return Prior.parse(text)


def as_prior(value: Prior | str | Mapping[str, Any]) -> Prior:
    """Coerce a :class:`Prior`, a compact string or a prior dict to a :class:`Prior`."""
    if isinstance(value, Prior):
        return value
    if isinstance(value, str):
        return Prior.parse(value)
    if isinstance(value, Mapping):
        return Prior.from_dict(value)
    raise ValueError(
        f"cannot interpret {value!r} as a prior: give a Prior, a string like 'HalfNormal(sigma=2)' "
        f"or a dict like {{'dist': 'HalfNormal', 'sigma': 2}}"
    )
