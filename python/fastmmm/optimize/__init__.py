"""Budget optimisation over the posterior (Rust response kernels + scipy)."""

from fastmmm.optimize.budget import (
    BudgetResult,
    ChannelGroup,
    LogTargetResponse,
    PanelResponse,
    PosteriorResponse,
    ResponseModel,
    cell_bounds,
    optimize_budget,
)

__all__ = [
    "BudgetResult",
    "ChannelGroup",
    "LogTargetResponse",
    "PanelResponse",
    "PosteriorResponse",
    "ResponseModel",
    "cell_bounds",
    "optimize_budget",
]
