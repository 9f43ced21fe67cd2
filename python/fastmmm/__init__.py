"""fastmmm: Bayesian media mix modelling with Rust hot paths, sampled by nutpie.

``import fastmmm`` is cheap (numpy and the Rust extension only); the modelling
API (``MMM``, ``ModelSpec``, ``Prior``, ``load``, ``DataError``) loads PyMC on
first use.
"""

from fastmmm import _core, kernels

__version__ = _core.__version__

_LAZY = {
    "MMM": ("fastmmm.fit", "MMM"),
    "ModelSpec": ("fastmmm.spec", "ModelSpec"),
    "Prior": ("fastmmm.priors", "Prior"),
    "DataError": ("fastmmm.data", "DataError"),
    "load": ("fastmmm.results", "load"),
    "MMMResult": ("fastmmm.results", "MMMResult"),
    "HierarchicalMMM": ("fastmmm.hierarchical", "HierarchicalMMM"),
    "HierarchicalResult": ("fastmmm.hierarchical", "HierarchicalResult"),
}

__all__ = ["kernels", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastmmm' has no attribute {name!r}")
