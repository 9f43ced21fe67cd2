"""Budget optimisation over the posterior (Rust response kernels + scipy)."""

from fastmmm.optimize.budget import (
    BudgetResult,
    ChannelGroup,
    LogTargetResponse,
    PosteriorResponse,
    ResponseModel,
    optimize_budget,
)

__all__ = [
    "BudgetResult",
    "ChannelGroup",
    "LogTargetResponse",
    "PosteriorResponse",
    "ResponseModel",
    "optimize_budget",
]
