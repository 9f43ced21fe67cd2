"""A terminal progress bar for chains sampling in the Rust core.

``fastmmm._core.sample_nuts`` calls :meth:`ChainProgressBar.update` about ten
times a second with one row per chain. On a terminal the bar redraws one
line (draws per chain, divergences so far, elapsed time and ETA); elsewhere
(logs, CI, notebooks) it prints a line at most every ``every`` seconds and a
last line when sampling ends.
"""

from __future__ import annotations

import sys
import time

__all__ = ["ChainProgressBar"]


def _fmt_s(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}:{s:02d} min"


class ChainProgressBar:
    """Progress of ``chains`` chains of ``tune + draws`` draws each (more when the sampler
    extends them until they converge: the rows carry the totals)."""

    def __init__(
        self, chains: int, draws: int, tune: int, *, stream=None, every: float = 10.0, width: int = 24
    ):
        self.chains, self.draws, self.tune = int(chains), int(draws), int(tune)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.width = every, width
        self.t0 = time.perf_counter()
        self._last_line = 0.0
        self._rows: list = []
        self._shown = False

    def update(self, rows) -> None:
        self._rows = list(rows)
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line(now) + "\033[K")
            self.stream.flush()
            self._shown = True
        elif now - self._last_line >= self.every and now - self.t0 >= self.every:
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()
            self._last_line = now

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        elapsed = now - self.t0
        # The rows' totals grow when the sampler extends the chains until they converge.
        total = sum(int(r[1]) for r in self._rows) or self.chains * (self.draws + self.tune)
        done = sum(int(r[0]) for r in self._rows)
        div = sum(int(r[2]) for r in self._rows)
        frac = done / total if total else 1.0
        filled = int(round(self.width * frac))
        bar = "#" * filled + "-" * (self.width - filled)
        tuning = any(bool(r[3]) and not bool(r[7]) for r in self._rows)
        per_chain = "  ".join(f"{int(r[0])}/{int(r[1])}" for r in self._rows[:4])
        if len(self._rows) > 4:
            per_chain += "  ..."
        eta = (elapsed / frac - elapsed) if 0 < frac < 1 else 0.0
        extending = any(int(r[1]) > self.draws + self.tune for r in self._rows)
        phase = "warmup" if tuning else "extending" if extending else "sampling"
        return (
            f"{phase} [{bar}] {100 * frac:3.0f}%  chains {per_chain}  divergences {div}  "
            f"{_fmt_s(elapsed)} (ETA {_fmt_s(eta)})"
        )

    def close(self) -> None:
        now = time.perf_counter()
        div = sum(int(r[2]) for r in self._rows)
        done = all(bool(r[7]) for r in self._rows) if self._rows else False
        drawn = max((int(r[0]) for r in self._rows), default=self.tune + self.draws) - self.tune
        extended = f" (extended from {self.draws} until converged)" if drawn > self.draws else ""
        summary = (
            f"sampled {self.chains} chain{'s' * (self.chains != 1)} x {drawn} draws{extended} "
            f"(+{self.tune} warmup) in {_fmt_s(now - self.t0)}, {div} divergence{'s' * (div != 1)}"
        )
        if not done:
            summary = "sampling stopped: " + self.line(now)
        if self.tty:
            self.stream.write("\r" + summary + "\033[K\n")
        else:
            self.stream.write(summary + "\n")
        self.stream.flush()
