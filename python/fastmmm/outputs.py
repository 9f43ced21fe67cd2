"""What a fit writes to its output directory: ``summary.json``, ``contributions.csv``,
the saved model ``model/`` and, unless turned off, ``report.html``.

One writer for the ``fastmmm fit`` / ``demo`` commands and for every brand of
:func:`fastmmm.batch.fit_many` (it sits below both).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = ["atomic_write", "json_safe", "write_outputs"]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place: an
    interrupted write leaves the previous file (a unique temporary name, so two writers
    of one path do not share it)."""
    import secrets

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def json_safe(obj):
    """``obj`` with every non-finite float as None: strict JSON (``null``) where a value is
    undefined, e.g. the ROAS of a channel absent from a panel's group."""
    if isinstance(obj, float):  # numpy's float64 too
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_outputs(result, out, *, report: bool = True) -> dict:
    """summary.json, contributions.csv, the saved model and (``report=True``) report.html
    under ``out``; returns the summary. A panel result writes, instead of the report,
    channel_summary.csv (per group and channel) and roas.png (its forest plot)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    atomic_write(out / "summary.json", json.dumps(json_safe(summary), indent=2, default=float))
    # A panel's table has group and date columns; a national one is indexed by date.
    atomic_write(
        out / "contributions.csv", result.contributions_over_time().to_csv(index=not result.is_panel)
    )
    result.save(out / "model")
    if result.is_panel:
        atomic_write(out / "channel_summary.csv", result.channel_summary().to_csv())
        if report:
            result.plot_roas(out / "roas.png")
    elif report:
        from fastmmm.report import write_report

        write_report(result, out / "report.html")
    return summary
