"""Budget optimisation over the posterior (Rust response kernels + scipy)."""

from fastmmm.optimize.budget import (
    BudgetResult,
    LogTargetResponse,
    PosteriorResponse,
    ResponseModel,
    optimize_budget,
)

__all__ = ["BudgetResult", "LogTargetResponse", "PosteriorResponse", "ResponseModel", "optimize_budget"]
