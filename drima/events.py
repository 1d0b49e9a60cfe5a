"""The run's event feed: one JSON object a line, appended and flushed the moment something
happens to a process (an agent dead, back, late, killed, restarted; the env server restarted), so
that a reader such as the dashboard (launch/dashboard/) sees it at once, and a crash loses
nothing already written.

Written only on events, never per step: it costs the hot path nothing. Two writers, two files:
the env server's `env_server/events.jsonl` (what its seats see) and the launcher's
`events.jsonl` (node r > 0: `events_node<r>.jsonl`: what happens to the processes it runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

LAUNCHER_FEED = "events.jsonl"
"""the launcher's feed in the run folder (node 0); see launcher_feed_name"""
ENV_SERVER_FEED = "env_server/events.jsonl"
"""the env server's feed, relative to the run folder"""


def launcher_feed_name(node_rank: int) -> str:
    """Node 0's launcher writes events.jsonl; node r's events_node<r>.jsonl, so that nodes that
    share one run folder (NFS) never write the same file."""
    return LAUNCHER_FEED if node_rank == 0 else f"events_node{node_rank}.jsonl"


class EventFeed:
    """Appends events to `path`; `append=False` starts the file afresh (a new run in an old folder)."""

    def __init__(self, path: str | Path, source: str, append: bool = True):
        self.path = Path(path)
        self.source = source
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", buffering=1)

    def write(self, event: dict) -> None:
        """One line: `event` with the wall-clock time `t` and this feed's `source`, on disk before returning."""
        self._file.write(json.dumps({"t": round(time.time(), 3), "source": self.source} | event) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(path: str | Path) -> list[dict]:
    """Every complete event of a feed, in file order; [] for a missing file. A torn last line (a
    writer died mid-line) and lines that are not JSON objects are skipped."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    events = []
    for line in text.split("\n")[:-1]:  # the part after the last newline may be torn
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("t"), (int, float)):
            events.append(event)
    return events
