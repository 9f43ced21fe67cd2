"""fastmmm: Bayesian media mix modelling with Rust hot paths, sampled by nutpie."""

from fastmmm import _core, kernels

__version__ = _core.__version__

__all__ = ["kernels", "__version__"]
