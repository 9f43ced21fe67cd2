"""Type stubs for fastmmm's private Rust extension module."""

from collections.abc import Callable
from typing import TypedDict

import numpy as np
from numpy.typing import NDArray

KERNEL_VERSION: int
__version__: str

F64 = NDArray[np.float64]

def adstock_fwd(kind: str, x: F64, p0: F64, p1: F64 | None, l_max: int, normalize: bool) -> F64: ...
def adstock_vjp(
    kind: str, x: F64, p0: F64, p1: F64 | None, g: F64, l_max: int, normalize: bool
) -> tuple[F64, F64, F64 | None]: ...
def saturation_fwd(kind: str, x: F64, p0: F64, p1: F64 | None) -> F64: ...
def saturation_vjp(kind: str, x: F64, p0: F64, p1: F64 | None, g: F64) -> tuple[F64, F64, F64 | None]: ...
def adstock_weights(kind: str, p0: float, p1: float, l_max: int, normalize: bool) -> F64: ...
def media_fwd(
    adstock: str,
    saturation: str,
    x: F64,
    a0: F64,
    a1: F64 | None,
    s0: F64,
    s1: F64 | None,
    l_max: int,
    normalize: bool,
) -> tuple[F64, F64]: ...
def media_vjp(
    adstock: str,
    saturation: str,
    x: F64,
    a0: F64,
    a1: F64 | None,
    cache: F64,
    g: F64,
    l_max: int,
    normalize: bool,
    want_gx: bool = False,
) -> tuple[F64 | None, F64, F64 | None, F64, F64 | None]: ...
def response_draws(
    adstock: str,
    saturation: str,
    l_max: int,
    normalize: bool,
    hist: F64,
    plan: F64,
    tail: int,
    a0: F64,
    a1: F64,
    s0: F64,
    s1: F64,
    beta: F64,
) -> tuple[F64, F64]: ...
def contribution_sums(
    adstock: str,
    saturation: str,
    l_max: int,
    normalize: bool,
    x: F64,
    mult: F64,
    window: int,
    a0: F64,
    a1: F64,
    s0: F64,
    s1: F64,
    beta: F64,
) -> tuple[F64, F64, F64]:
    """Per draw, spend multiplier and channel the total contribution (S, K, C), the totals
    over the first ``window`` periods (S, K, C) and those periods' contributions summed
    over the draws (K, window, C), scaled target, one pass (``window`` 0: the last two
    empty)."""

class CorePool:
    """Cores shared by the sampling runs given it (``sample_nuts(pool=...)``)."""

    def __init__(self, cores: int) -> None: ...
    @property
    def cores(self) -> int: ...
    @property
    def peak(self) -> int:
        """The most chains that have drawn at once."""

def sample_nuts(
    problem: MmmProblem,
    *,
    init: list[float] | F64,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    cores: int = 2,
    seed: int = 0,
    target_accept: float = 0.8,
    maxdepth: int = 10,
    jitter: float = 1.0,
    store_unconstrained: bool = False,
    progress: Callable[[list[tuple]], object] | None = None,
    progress_interval: float = 0.1,
    low_rank: bool = False,
    cancelled: Callable[[], bool] | None = None,
    keep: list[tuple[int, int]] | None = None,
    check: list[tuple[int, int]] | None = None,
    max_rhat: float = 1.01,
    min_ess_bulk: float = 0.0,
    extend_by: int = 500,
    max_draws: int | None = None,
    pool: CorePool | None = None,
) -> dict:
    """NUTS (nuts-rs) on the fused log-density, GIL released; see fastmmm.fastpath.sample."""

NUTS_RS_VERSION: str

def convergence_stats(x: F64) -> tuple[F64, F64, F64]:
    """R-hat, bulk ESS and tail ESS of every column of (chain, draw, n) draws."""

def ffi_addresses() -> dict[str, int]: ...
def kernel_kinds() -> dict[str, list[tuple[str, int, list[str]]]]:
    """The registry of kernel kinds: {"adstock"|"saturation": [(name, code, params)]}."""

def simd_level() -> int:
    """0 baseline, 1 AVX2+FMA, 2 AVX-512; capped by the environment variable FASTMMM_SIMD."""

def set_kernel_threads(n: int) -> None:
    """Pieces the batched calls made from this thread cut their work into (1: run on this
    thread; 0, the default: one per pool thread)."""

def get_kernel_threads() -> int:
    """This thread's set_kernel_threads setting (0: the default)."""

def set_eval_threads(n: int) -> None:
    """Threads each log-density evaluation on the calling thread may use for a large panel's
    media passes (1, the default, turns it off; the sampler sets its own)."""

class ProblemStructure(TypedDict, total=False):
    """The model's options (``ModelLayout.structure``); ``groups``/``grouped`` optional."""

    adstock: str
    l_max: int
    normalize: bool
    saturation: str
    intercept: bool
    trend: bool
    likelihood: str
    direct_beta: bool
    relative_param: int
    fixed_saturation: list[tuple[int, float]]
    groups: int
    grouped: bool
    tvp_per_group: list[str]  # time-varying parts with one GP per group: "intercept", "media"

class LiftArrays(TypedDict, total=False):
    """Scaled lift tests (``fastpath.lift_arrays`` without the ``lift_`` prefix)."""

    channel: list[int]
    x0: F64
    x1: F64
    periods: F64
    delta: F64
    se: F64
    steady: int
    group: list[int]
    weights: F64

class TvpBasis(TypedDict):
    phi: F64
    omega: F64
    col_ms: F64

class ProblemData(TypedDict, total=False):
    """One fit's data (``fastpath.problem_data``); a panel's arrays group-major."""

    y: F64
    spend: F64
    trend_t: F64
    fourier: F64
    controls: F64
    kappa_scale: F64
    roas_scale: F64
    lift: LiftArrays
    tvp_intercept: TvpBasis
    tvp_media: TvpBasis
    window: list[tuple[int, int]]  # per group, the periods [start, end) it is observed

class MmmProblem:
    """The fused MMM log-density (rust/logp); see fastmmm.fastpath. Unknown keys are errors."""

    def __init__(self, structure: ProblemStructure, data: ProblemData, blocks: list[dict]) -> None: ...
    def with_data(self, data: ProblemData) -> MmmProblem:
        """Same structure and priors on new data; lift tests and bases kept unless given."""
    @property
    def groups(self) -> int: ...
    @property
    def n_dim(self) -> int: ...
    @property
    def n_expanded(self) -> int: ...
    @property
    def deterministics(self) -> list[tuple[str, list[int]]]: ...
    def logp_dlogp(self, x: F64) -> tuple[float, F64]: ...
    def expand(self, x: F64) -> F64: ...
    def logp_repeat(self, x: F64, n: int) -> float:
        """The log-density and gradient evaluated n times (GIL released); the last log-density."""
    @property
    def logp_address(self) -> int: ...
    @property
    def expand_address(self) -> int: ...
    @property
    def user_data_address(self) -> int: ...
