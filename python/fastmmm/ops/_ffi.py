"""Binding of the fastmmm C ABI for the PyTensor Ops.

At import this module:

1. reads the kernel symbol addresses from ``fastmmm._core.ffi_addresses()``;
2. registers every symbol *by name* in LLVM's global symbol table
   (``llvmlite.binding.add_symbol``), so numba code that declares them with
   ``types.ExternalFunction`` links against the Rust library, both when it is
   compiled and when it is loaded from numba's on-disk cache;
3. builds ctypes callables on the same addresses for ``Op.perform``.

Registration must happen before any numba code calling a kernel is compiled or
loaded from cache; importing ``fastmmm.ops`` does it.  ``ExternalFunction`` is
used instead of a ctypes function pointer inside numba code because a pointer
is a run-time constant and numba refuses to cache functions containing one; a
symbol name is stable, so cached machine code stays valid across processes.
The kernel version is part of every symbol name, so an ABI change gives new
names and an old cache entry can never bind to a new ABI.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llvmlite.binding as llvm
from numba import types

from fastmmm.kinds import ADSTOCK_KINDS, SATURATION_KINDS

KERNEL_VERSION = 1
SYMBOL_PREFIX = f"fastmmm_v{KERNEL_VERSION}_"

# C types of the arguments, in the ABI's spelling:
#   "p"   double*  (const for inputs)
#   "i64" int64_t  (dims, l_max)
#   "i32" int32_t  (flags: normalize, kind)
_NUMBA = {
    "p": types.CPointer(types.float64),
    "i64": types.int64,
    "i32": types.int32,
}
_CTYPES = {"p": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int32}


@dataclass(frozen=True)
class Kernel:
    """ABI description of one transform (its ``_fwd`` and ``_vjp`` symbols).

    fwd: (x, *params, B, T, C, *options, y)
    vjp: (x, *params, g, B, T, C, *options, gx, *g_params)
    """

    stem: str
    params: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()  # (name, "i64" | "i32"), ABI order

    @property
    def fwd_symbol(self) -> str:
        return f"{SYMBOL_PREFIX}{self.stem}_fwd"

    @property
    def vjp_symbol(self) -> str:
        return f"{SYMBOL_PREFIX}{self.stem}_vjp"

    def argkinds(self, vjp: bool) -> tuple[str, ...]:
        n = len(self.params)
        opts = tuple(kind for _, kind in self.options)
        if vjp:
            return ("p",) * (n + 2) + ("i64",) * 3 + opts + ("p",) * (n + 1)
        return ("p",) * (n + 1) + ("i64",) * 3 + opts + ("p",)


_ADSTOCK_OPTS = (("l_max", "i64"), ("normalize", "i32"))

KERNELS: dict[str, Kernel] = {
    k.stem: k
    for k in (
        Kernel("geometric", ("alpha",), _ADSTOCK_OPTS),
        Kernel("delayed", ("alpha", "theta"), _ADSTOCK_OPTS),
        Kernel(
            "weibull",
            ("lam", "k"),
            (("l_max", "i64"), ("kind", "i32"), ("normalize", "i32")),
        ),
        Kernel("hill", ("kappa", "slope")),
        Kernel("logistic", ("lam",)),
        Kernel("michaelis_menten", ("alpha", "lam")),
        Kernel("tanh", ("b", "c")),
    )
}


# Fused saturation(adstock(x)) entry points (``ops.media``).  Their argument
# lists do not follow ``Kernel``'s pattern, so they are spelled out:
#   fwd: (adstock, l_max, normalize, saturation, x, a0, a1, s0, s1, B, T, C,
#         y, cache)
#   vjp: (adstock, l_max, normalize, saturation, x, a0, a1, cache, g, B, T, C,
#         want_gx, gx, ga0, ga1, gs0, gs1)
# a1/s1/ga1/gs1 (second parameter of a one-parameter kind) and gx (want_gx=0)
# are not read or written and may be any pointer, null included.
MEDIA_FWD_SYMBOL = f"{SYMBOL_PREFIX}media_fwd"
MEDIA_VJP_SYMBOL = f"{SYMBOL_PREFIX}media_vjp"
_MEDIA_FLAGS = ("i32", "i64", "i32", "i32")  # adstock, l_max, normalize, saturation
FUSED_SYMBOLS: dict[str, tuple[str, ...]] = {
    MEDIA_FWD_SYMBOL: _MEDIA_FLAGS + ("p",) * 5 + ("i64",) * 3 + ("p",) * 2,
    MEDIA_VJP_SYMBOL: _MEDIA_FLAGS + ("p",) * 5 + ("i64",) * 3 + ("i32",) + ("p",) * 5,
}

#: kind codes of the fused entry points (names as in ``fastmmm.kernels``)
ADSTOCK_CODES = {k.name: k.code for k in ADSTOCK_KINDS.values()}
SATURATION_CODES = {k.name: k.code for k in SATURATION_KINDS.values()}


def _symbols() -> dict[str, tuple[str, ...]]:
    out = {}
    for k in KERNELS.values():
        out[k.fwd_symbol] = k.argkinds(vjp=False)
        out[k.vjp_symbol] = k.argkinds(vjp=True)
    out.update(FUSED_SYMBOLS)
    return out


SYMBOLS = _symbols()


def _load_addresses() -> dict[str, int]:
    try:
        from fastmmm import _core
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "fastmmm.ops needs the compiled extension fastmmm._core "
            "(build it with `maturin develop` or `pip install -e .`)"
        ) from exc
    version = getattr(_core, "KERNEL_VERSION", None)
    if version != KERNEL_VERSION:
        raise ImportError(
            f"fastmmm._core has KERNEL_VERSION={version!r}, "
            f"fastmmm.ops expects {KERNEL_VERSION}; rebuild the extension"
        )
    addrs = {str(k): int(v) for k, v in _core.ffi_addresses().items()}
    missing = sorted(s for s in SYMBOLS if not addrs.get(s))
    if missing:
        raise ImportError(f"fastmmm._core.ffi_addresses() lacks {missing}")
    return addrs


def _register(addrs: dict[str, int]) -> None:
    for name in SYMBOLS:
        llvm.add_symbol(name, addrs[name])


ADDRESSES = _load_addresses()
_register(ADDRESSES)

#: numba declarations, callable in nopython code; pass ``arr.ctypes`` for a
#: pointer argument (numba converts ArrayCTypes to ``double*`` and keeps the
#: array alive for the duration of the call).
EXTERNAL = {
    name: types.ExternalFunction(name, types.int32(*(_NUMBA[k] for k in kinds)))
    for name, kinds in SYMBOLS.items()
}

#: ctypes callables on the same addresses, used by ``Op.perform``.
CTYPES_FUNCS = {
    name: ctypes.CFUNCTYPE(ctypes.c_int32, *(_CTYPES[k] for k in kinds))(ADDRESSES[name])
    for name, kinds in SYMBOLS.items()
}
