"""Posterior draws as plain numpy arrays, and their netCDF files.

A fit keeps its draws as a :class:`Posterior`: groups (``posterior``,
``sample_stats``, optionally ``posterior_predictive`` / ``observed_data``) of
named arrays with ``(chain, draw, ...)`` leading axes, their dimension names
and coordinates. Everything in fastmmm reads these arrays directly; an ArviZ
object is built only when asked for (:meth:`Posterior.to_arviz`, i.e.
``result.idata``), so a fit imports neither ArviZ nor xarray.

The file format is ArviZ's netCDF layout (one HDF5 group per InferenceData
group, CF-encoded dates, booleans as int8 with ``dtype="bool"``), written with
h5py and read with h5netcdf: files from earlier fastmmm versions (written by
ArviZ) load, and ``arviz.from_netcdf`` / ``xarray.open_dataset(...,
group=...)`` read ours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Group", "Posterior", "read_netcdf", "write_netcdf"]

_EPOCH_UNITS = "nanoseconds since 1970-01-01"


@dataclass
class Group:
    """Named arrays that share dimension names and coordinates."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def add(self, name: str, value: np.ndarray, dims: tuple[str, ...]) -> None:
        value = np.asarray(value)
        if value.ndim != len(dims):
            raise ValueError(f"{name}: {value.ndim}-d array with dims {dims}")
        self.values[name] = value
        self.dims[name] = tuple(dims)

    def dim_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, v in self.values.items():
            for d, n in zip(self.dims[name], v.shape):
                if out.setdefault(d, n) != n:
                    raise ValueError(f"dimension {d!r} has lengths {out[d]} and {n}")
        return out

    def coord(self, dim: str, n: int) -> np.ndarray:
        c = self.coords.get(dim)
        return np.arange(n) if c is None else np.asarray(c)

    def to_xarray(self):
        import xarray as xr

        sizes = self.dim_sizes()
        coords = {d: self.coord(d, n) for d, n in sizes.items()}
        return xr.Dataset({k: (self.dims[k], v) for k, v in self.values.items()}, coords=coords)

    @classmethod
    def from_xarray(cls, ds) -> Group:
        g = cls()
        for name, var in ds.data_vars.items():
            g.add(str(name), np.asarray(var.values), tuple(str(d) for d in var.dims))
        for name, c in ds.coords.items():
            g.coords[str(name)] = np.asarray(c.values)
        return g


class Posterior:
    """A fit's draws: ``posterior`` and ``sample_stats`` groups (and any others).

    ``post[name]`` is the ``(chain, draw, ...)`` array of a posterior variable,
    :meth:`flat` the same with chain and draw merged.
    """

    def __init__(self, groups: Mapping[str, Group], attrs: Mapping[str, Any] | None = None):
        self.groups: dict[str, Group] = dict(groups)
        self.groups.setdefault("posterior", Group())
        self.groups.setdefault("sample_stats", Group())
        self.attrs = dict(attrs or {})
        #: Max R-hat and min bulk / tail ESS of the parameters, once computed (by the
        #: sampler's checks or :func:`fastmmm.diagnostics.convergence_summary`).
        self.convergence: dict | None = None

    # -------------------------------------------------------------- access
    @property
    def posterior(self) -> Group:
        return self.groups["posterior"]

    @property
    def sample_stats(self) -> Group:
        return self.groups["sample_stats"]

    def __contains__(self, name: object) -> bool:
        return name in self.posterior

    def __getitem__(self, name: str) -> np.ndarray:
        return self.posterior.values[name]

    def flat(self, name: str) -> np.ndarray:
        """``(chain * draw, ...)`` draws of a posterior variable."""
        v = self[name]
        return v.reshape((-1,) + v.shape[2:])

    @property
    def n_chains(self) -> int:
        return int(next(iter(self.posterior.values.values())).shape[0])

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.posterior.values.values())).shape[1])

    @property
    def n_samples(self) -> int:
        return self.n_chains * self.n_draws

    def stat(self, name: str) -> np.ndarray | None:
        return self.sample_stats.values.get(name)

    def without(self, *names: str) -> Posterior:
        """These draws less the posterior variables ``names`` (the arrays shared, not copied),
        recorded in ``attrs["left_out"]``."""
        gone = [n for n in names if n in self.posterior]
        if not gone:
            return self
        post = self.posterior
        kept = Group(
            {k: v for k, v in post.values.items() if k not in gone},
            {k: d for k, d in post.dims.items() if k not in gone},
            dict(post.coords),
        )
        before = [n for n in str(self.attrs.get("left_out", "")).split(",") if n]
        attrs = {**self.attrs, "left_out": ",".join(dict.fromkeys(before + gone))}
        return Posterior({**self.groups, "posterior": kept}, attrs)

    # -------------------------------------------------------------- ArviZ
    def to_arviz(self):
        """The draws as an ArviZ object (InferenceData with ArviZ 0.x, DataTree with 1.x)."""
        import arviz as az

        datasets = {name: g.to_xarray() for name, g in self.groups.items() if g.values}
        if hasattr(az, "InferenceData") and not _is_arviz_1(az):
            return az.InferenceData(**datasets)
        import xarray as xr

        return xr.DataTree.from_dict({f"/{k}": v for k, v in datasets.items()})

    @classmethod
    def from_arviz(cls, idata) -> Posterior:
        """From an ArviZ InferenceData or DataTree (nutpie's output)."""
        groups = {}
        names = idata.groups() if callable(getattr(idata, "groups", None)) else list(idata.children)
        for name in names:
            name = str(name).strip("/")
            ds = idata[name]
            ds = getattr(ds, "dataset", ds)  # a DataTree node holds its Dataset
            g = Group.from_xarray(ds)
            # PyMC's unconstrained value variables ("x_log__") are the sampler's business.
            for v in [v for v in g.values if v.endswith("__")]:
                del g.values[v], g.dims[v]
            groups[name] = g
        return cls(groups)

    # -------------------------------------------------------------- files
    def save(self, path) -> None:
        write_netcdf(path, self.groups, self.attrs)

    @classmethod
    def load(cls, path) -> Posterior:
        groups, attrs = read_netcdf(path)
        return cls(groups, attrs)


def _is_arviz_1(az) -> bool:
    try:
        return int(str(az.__version__).split(".")[0]) >= 1
    except ValueError:
        return False


# ---------------------------------------------------------------------- netCDF
def _encode(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """A numpy array as netCDF can store it, and the attributes that undo the encoding."""
    a = np.asarray(values)
    if a.dtype == bool:
        return a.astype(np.int8), {"dtype": "bool"}
    if np.issubdtype(a.dtype, np.datetime64):
        return a.astype("datetime64[ns]").astype(np.int64), {
            "units": _EPOCH_UNITS,
            "calendar": "proleptic_gregorian",
        }
    if a.dtype.kind in "UO":
        return np.array([str(x) for x in a.reshape(-1)], dtype=object).reshape(a.shape), {}
    if a.dtype == np.uint64:
        return a.astype(np.int64), {}
    return a, {}


def _decode(values: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    a = np.asarray(values)
    if attrs.get("dtype") == "bool":
        return a.astype(bool)
    units = attrs.get("units")
    if isinstance(units, bytes):
        units = units.decode()
    if isinstance(units, str) and " since " in units and a.dtype.kind in "iuf":
        step, _, origin = units.partition(" since ")
        unit = {
            "days": "D",
            "hours": "h",
            "minutes": "m",
            "seconds": "s",
            "milliseconds": "ms",
            "microseconds": "us",
            "nanoseconds": "ns",
        }.get(step.strip())
        if unit is not None:
            base = np.datetime64(origin.strip().split(" ")[0], "ns")
            return base + (a.astype(np.int64) * np.timedelta64(1, unit)).astype("timedelta64[ns]")
    if a.dtype.kind in "OS":
        return (
            np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a.reshape(-1)], dtype=object)
            .reshape(a.shape)
            .astype(str)
        )
    return a


#: Strided arrays above this size are written in slabs of about this size.
_SLAB_BYTES = 16 << 20


def _numeric_dataset(h, name: str, data: np.ndarray):
    """``h[name] = data``. The sampler's draws are strided views into one (chain, draw,
    values) array, which h5py would first copy whole (a large panel's ``mu`` is ~170 MB, the
    peak of writing its outputs): those go in slabs of draws instead, the same file."""
    if data.flags.c_contiguous or data.ndim < 2 or data.nbytes <= _SLAB_BYTES:
        return h.create_dataset(name, data=data)
    ds = h.create_dataset(name, shape=data.shape, dtype=data.dtype)
    per_draw = max(1, data[0, 0].nbytes)
    step = max(1, _SLAB_BYTES // per_draw)
    for c in range(data.shape[0]):
        for i in range(0, data.shape[1], step):
            ds[c, i : i + step] = data[c, i : i + step]
    return ds


def write_netcdf(path, groups: Mapping[str, Group], attrs: Mapping[str, Any] | None = None) -> None:
    """Write groups to one netCDF-4 file in ArviZ's layout.

    Written with h5py directly, following the netCDF-4 conventions (a
    coordinate variable per dimension, marked as an HDF5 dimension scale and
    attached to the variables that use it): about ten times faster than going
    through h5netcdf's bookkeeping, which matters when a batch writes one model
    per brand. h5netcdf, xarray and ArviZ read the result.
    """
    import h5py

    with h5py.File(str(path), "w", libver="earliest", track_order=True) as f:
        for key, v in (attrs or {}).items():
            f.attrs[key] = v
        dim_id = 0  # netCDF-C numbers dimensions across the whole file, not per group
        for gname, g in groups.items():
            if not g.values:
                continue
            h = f.create_group(gname, track_order=True)
            scales = {}
            for dim, n in g.dim_sizes().items():
                data, extra = _encode(g.coord(dim, n))
                if data.dtype == object:
                    ds = h.create_dataset(
                        dim, data=data.astype(str).astype(object), dtype=h5py.string_dtype()
                    )
                else:
                    ds = h.create_dataset(dim, data=data)
                for k, a in extra.items():
                    ds.attrs[k] = a
                ds.make_scale(dim)
                ds.attrs["_Netcdf4Dimid"] = np.int32(dim_id)
                dim_id += 1
                scales[dim] = ds
            for name, value in g.values.items():
                data, extra = _encode(value)
                if data.dtype == object:
                    ds = h.create_dataset(
                        name, data=data.astype(str).astype(object), dtype=h5py.string_dtype()
                    )
                else:
                    ds = _numeric_dataset(h, name, data)
                for k, a in extra.items():
                    ds.attrs[k] = a
                for j, dim in enumerate(g.dims[name]):
                    ds.dims[j].attach_scale(scales[dim])


def read_netcdf(path) -> tuple[dict[str, Group], dict[str, Any]]:
    """Read every group of a netCDF-4 file written by :func:`write_netcdf` or by ArviZ."""
    import h5netcdf

    path = Path(path)
    groups: dict[str, Group] = {}
    with h5netcdf.File(str(path), "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        for gname, h in f.groups.items():
            g = Group()
            dims = set(h.dimensions)
            for name, var in h.variables.items():
                value = _decode(var[...], var.attrs)
                if name in dims and var.dimensions == (name,):
                    g.coords[name] = value
                else:
                    g.add(name, value, tuple(var.dimensions))
            groups[gname] = g
    return groups, attrs
