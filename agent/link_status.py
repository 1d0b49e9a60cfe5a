"""links.json: each neighbour link's traffic as this agent sees it, rewritten (atomically) at
the metrics cadence and at most every MIN_INTERVAL_S, for the dashboard (launch/dashboard/).

Per peer: scalars received in time, late and missed (steps waited for in vain) since this process
started, and per second over the last window, the scalars received and the steps missed. Nothing
here runs per message or per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from drima.metrics import write_json_atomic

MIN_INTERVAL_S = 1.0
"""the file is rewritten at most this often: a dashboard polls once a second (at 0.5 s the
rewrite was 3 % of an agent's CPU on a busy disk)"""


class LinkStatus:
    def __init__(self, path: str | Path, min_interval_s: float = MIN_INTERVAL_S,
                 submit: Callable[[Path, Callable[[], None]], None] | None = None):
        """`submit(path, write)`: where the write runs (the agent's background writer); by
        default here, now."""
        self.path = Path(path)
        self.submit = submit or (lambda _path, write: write())
        self.min_interval_s = min_interval_s
        self._last_t = time.monotonic()
        self._last: dict[int, dict[str, int]] = {}  # the counters at the last write

    def write(self, step: int, per_peer: dict[int, dict[str, int]], live: list[int]) -> None:
        """Rewrite links.json from the link's per-peer counters (NeighbourLink.per_peer) and its
        live peers, unless it was rewritten less than min_interval_s ago."""
        now = time.monotonic()
        window = now - self._last_t
        if window < self.min_interval_s:
            return
        last = self._last
        peers = {str(p): counts | {f"{k}_per_s": round((counts[k] - last.get(p, {}).get(k, 0)) / window, 2)
                                   for k in ("recv", "missed")} | {"live": p in live}
                 for p, counts in per_peer.items()}
        status = {"step": step, "t": round(time.time(), 3), "window_s": round(window, 3), "peers": peers}
        self.submit(self.path, partial(write_json_atomic, self.path, status))
        self._last_t, self._last = now, {p: dict(c) for p, c in per_peer.items()}
