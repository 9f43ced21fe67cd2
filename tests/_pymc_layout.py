"""Test oracle: the fused log-density's blocks read off a built PyMC model's graph.

:func:`blocks_from_model` walks ``model.free_RVs`` (the order of the
unconstrained vector), reads each variable's distribution, parameters and
transform from the graph, and describes it as the Rust problem's block. The
package builds its blocks from the spec (:mod:`fastmmm.layout`) without PyMC;
tests hold the two equal.
"""

from __future__ import annotations

import numpy as np

from fastmmm.layout import SATURATION_PARAMS, prior_const


def _dist_of(op) -> str:
    from pymc.distributions.continuous import HalfStudentTRV, TruncatedNormalRV
    from pytensor.tensor.random import basic as rb

    table = [
        (TruncatedNormalRV, "TruncatedNormal"),
        (HalfStudentTRV, "HalfStudentT"),
        (rb.HalfNormalRV, "HalfNormal"),
        (rb.LogNormalRV, "LogNormal"),
        (rb.GammaRV, "Gamma"),
        (rb.BetaRV, "Beta"),
        (rb.ExponentialRV, "Exponential"),
        (rb.StudentTRV, "StudentT"),
        (rb.UniformRV, "Uniform"),
        (rb.NormalRV, "Normal"),
    ]
    for cls, name in table:
        if type(op) is cls:
            return name
    raise ValueError(f"distribution {type(op).__name__} is not in the fused log-density")


def _params(dist: str, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
    if dist == "Normal":
        return {"mu": raw[0], "sigma": raw[1]}
    if dist == "HalfNormal":
        assert np.all(raw[0] == 0)
        return {"sigma": raw[1]}
    if dist == "LogNormal":
        return {"mu": raw[0], "sigma": raw[1]}
    if dist == "Gamma":  # pytensor's gamma takes (shape, scale)
        return {"alpha": raw[0], "beta": 1.0 / raw[1]}
    if dist == "Beta":
        return {"alpha": raw[0], "beta": raw[1]}
    if dist == "Exponential":  # (scale,)
        return {"lam": 1.0 / raw[0]}
    if dist == "StudentT":
        return {"nu": raw[0], "mu": raw[1], "sigma": raw[2]}
    if dist == "HalfStudentT":
        return {"nu": raw[0], "sigma": raw[1]}
    if dist == "TruncatedNormal":
        return {"mu": raw[0], "sigma": raw[1], "lower": raw[2], "upper": raw[3]}
    if dist == "Uniform":
        return {"lower": raw[0], "upper": raw[1]}
    raise ValueError(dist)


def _transform_kind(transform) -> str:
    from pymc.logprob.transforms import IntervalTransform, LogOddsTransform, LogTransform

    if transform is None:
        return "identity"
    if type(transform) is LogTransform:
        return "log"
    if type(transform) is LogOddsTransform:
        return "logodds"
    if isinstance(transform, IntervalTransform):
        return "interval"
    raise ValueError(f"transform {type(transform).__name__}")


def _role(name: str, model) -> str:
    """The block role of a model variable, from its name and the model's media kinds."""
    for suffix in ("_sd", "_z", "_w"):
        if name.endswith(suffix) and not name.startswith("tvp_"):
            base = name[: -len(suffix)]
            target = "amplitude" if base in ("channel_share", "roas", "beta") else _role(base, model)
            return target + suffix
    if name == "level" or name in (
        "trend",
        "gamma_fourier",
        "gamma_control",
        "channel_share",
        "roas",
        "beta",
        "sigma",
        "nu",
    ):
        return name
    if name.startswith("tvp_"):
        return name
    from fastmmm.kernels import ADSTOCK_PARAMS

    if name.startswith("adstock_"):
        p = name[len("adstock_") :]
        for params in ADSTOCK_PARAMS.values():
            if p in params:
                return f"adstock_{params.index(p)}"
    if name.startswith("saturation_"):
        p = name[len("saturation_") :]
        for params in SATURATION_PARAMS.values():
            if p in params:
                return f"saturation_{params.index(p)}"
    raise ValueError(f"{name!r} has no role")


def blocks_from_model(model) -> list[dict]:
    """Per free RV (in model.free_RVs order) the block the fused log-density takes."""
    import pytensor

    outputs, plan = [], []
    for rv in model.free_RVs:
        node = rv.owner
        dist = _dist_of(node.op)
        raw = list(node.op.dist_params(node))
        tr = model.rvs_to_transforms.get(rv)
        kind = _transform_kind(tr)
        bounds: tuple = (None, None)
        if kind == "interval":
            bounds = tr.args_fn(*node.inputs)
        outs = [rv.shape, *raw, *[b for b in bounds if b is not None]]
        plan.append((rv, dist, kind, len(raw), [b is not None for b in bounds], len(outputs), len(outs)))
        outputs += outs
    values = (
        pytensor.function([], outputs, mode="FAST_COMPILE", on_unused_input="ignore")() if outputs else []
    )
    blocks = []
    for rv, dist, kind, n_raw, has_bound, start, n in plan:
        vals = values[start : start + n]
        shape = tuple(int(s) for s in vals[0])
        size = int(np.prod(shape, dtype=int))
        raw = [
            np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(size) for v in vals[1 : 1 + n_raw]
        ]
        rest = [
            np.broadcast_to(np.asarray(v, dtype=np.float64), shape).reshape(size) for v in vals[1 + n_raw :]
        ]
        lower = rest.pop(0) if has_bound[0] else None
        upper = rest.pop(0) if has_bound[1] else None
        if kind == "interval":
            kind = (
                "interval"
                if (lower is not None and upper is not None)
                else "lowerbound"
                if lower is not None
                else "identity"
            )
        if _role(rv.name, model).endswith("_w"):
            # A centred pool's group values: Normal(global, sd), the pool's density (the
            # block has none of its own but the Normal's constant).
            assert dist == "Normal", rv.name
            blocks.append(
                {
                    "role": _role(rv.name, model),
                    "size": size,
                    "dist": "Flat",
                    "params": {},
                    "const": [-0.5 * float(np.log(2 * np.pi))] * size,
                    "transform": "identity",
                    "lower": None,
                    "upper": None,
                }
            )
            continue
        params = _params(dist, raw)
        blocks.append(
            {
                "role": _role(rv.name, model),
                "size": size,
                "dist": dist,
                "params": {k: [float(x) for x in v] for k, v in params.items()},
                "const": [float(x) for x in np.broadcast_to(prior_const(dist, params), (size,))],
                "transform": kind,
                "lower": None if lower is None else [float(x) for x in lower],
                "upper": None if upper is None or kind != "interval" else [float(x) for x in upper],
            }
        )
    return blocks
