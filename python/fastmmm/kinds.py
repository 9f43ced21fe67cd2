"""The registry of adstock and saturation kinds: one row per kind with its
parameters (kernel order), its code in the Rust entry points, each
parameter's domain and default prior (on the scaled space), the parameters
fixed because beta is already the amplitude, and which parameter is relative
to each channel's spend scale.

Rust holds the names, codes and parameter order too (``rust/kernels/kinds.rs``,
exported as ``fastmmm._core.kernel_kinds()``); ``tests/test_kinds.py`` holds the
two equal. Adding a kind: its kernel, a row here and there, a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastmmm.priors import Prior

__all__ = [
    "ADSTOCK_KINDS",
    "SATURATION_KINDS",
    "Kind",
    "kind",
]

#: Parameter domains (checked by the kernels): ``unit`` [0, 1), ``unit_closed`` [0, 1],
#: ``positive`` (0, inf), ``nonnegative`` [0, inf), ``real``.
DOMAINS = ("unit", "unit_closed", "positive", "nonnegative", "real")


@dataclass(frozen=True)
class Kind:
    """One adstock or saturation kind."""

    name: str
    code: int
    params: tuple[str, ...]
    domains: tuple[str, ...]
    #: default prior of each parameter; a callable takes the adstock's ``l_max``
    priors: dict[str, Prior | Callable[[int], Prior]]
    #: parameters fixed to a value (beta already is the amplitude)
    fixed: dict[str, float] = field(default_factory=dict)
    #: the parameter expressed relative to each channel's spend scale
    relative: str | None = None

    def default_prior(self, param: str, l_max: int = 8) -> Prior:
        p = self.priors[param]
        return p(l_max) if callable(p) else p


_BETA_22 = Prior("Beta", alpha=2.0, beta=2.0)

ADSTOCK_KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("geometric", 0, ("alpha",), ("unit",), {"alpha": _BETA_22}),
        Kind(
            "delayed",
            1,
            ("alpha", "theta"),
            ("unit_closed", "nonnegative"),
            # the peak's lag: anywhere in the window
            {
                "alpha": _BETA_22,
                "theta": lambda l_max: Prior("Uniform", lower=0.0, upper=float(max(l_max - 1, 1))),
            },
        ),
        Kind(
            "weibull_pdf",
            2,
            ("lam", "k"),
            ("positive", "positive"),
            {"lam": Prior("Gamma", alpha=4.0, beta=2.0), "k": Prior("Gamma", alpha=9.0, beta=3.0)},
        ),
        Kind(
            "weibull_cdf",
            3,
            ("lam", "k"),
            ("positive", "positive"),
            {"lam": Prior("Gamma", alpha=2.0, beta=1.0), "k": Prior("Gamma", alpha=2.0, beta=1.0)},
        ),
    )
}

SATURATION_KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "hill",
            0,
            ("kappa", "slope"),
            ("positive", "positive"),
            {
                "kappa": Prior("LogNormal", mu=0.0, sigma=0.7),
                "slope": Prior("TruncatedNormal", mu=1.5, sigma=1.0, lower=0.5, upper=4.0),
            },
            relative="kappa",
        ),
        Kind("logistic", 1, ("lam",), ("positive",), {"lam": Prior("Gamma", alpha=3.0, beta=1.0)}),
        Kind(
            "michaelis_menten",
            2,
            ("alpha", "lam"),
            ("real", "positive"),
            # the half-saturation point, relative like Hill's kappa
            {"lam": Prior("LogNormal", mu=0.0, sigma=0.7)},
            fixed={"alpha": 1.0},
            relative="lam",
        ),
        Kind(
            "tanh",
            3,
            ("b", "c"),
            ("positive", "positive"),
            {"c": Prior("Gamma", alpha=3.0, beta=3.0)},
            fixed={"b": 1.0},
        ),
    )
}


def kind(family: str, name: str) -> Kind:
    """The row of ``name`` in ``family`` ("adstock" or "saturation"), or a ValueError naming the
    kinds there are."""
    table = ADSTOCK_KINDS if family == "adstock" else SATURATION_KINDS
    if name not in table:
        raise ValueError(f"unknown {family} {name!r}; expected one of {', '.join(table)}")
    return table[name]
