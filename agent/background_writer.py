"""Files written on one background thread, so that the step loop never waits for the disk.

An agent rewrites two files while it runs: its checkpoint (every checkpoint_every steps; with a
replay buffer 3 to 23 MB, written and fsynced) and links.json (once a second, for the dashboard).
Written in the loop, each write stalls the agent and with it every neighbour that waits for its
scalars: tens of ms per 14 MB checkpoint on this machine's disk, hundreds when several agents
reach a checkpoint together (benchmarks/ablations/checkpoint_stall.py).

The caller hands over what to write already taken (checkpoint bytes serialized at the step, a
links.json dict built fresh); the thread does the slow part. Writes run one at a time in the
order submitted, so an older checkpoint never lands after a newer one. Per file, one write waits
at most: a newer one for the same file replaces the waiting one (only the newest content
matters), so a slow or stuck disk costs at most two copies of a checkpoint in memory, the one
being written and the newest waiting, never a queue of them. Each write stays atomic (temporary
file, rename), so a crash at any moment leaves the last whole file.

A write that fails with OSError (a full disk) is logged and counted, and the run goes on: the
next one tries again. Any other exception is a bug, and is raised again in the step loop at the
next submit, as it was when the loop wrote itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("drima.agent")


class BackgroundWriter:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drima-writer")
        self._lock = threading.Lock()
        self._waiting: dict[Path, Callable[[], None]] = {}  # per file, the newest write not started
        self._runs: list[Future] = []
        self._bug: BaseException | None = None
        self.failures = 0  # writes that failed with OSError (logged), for the agent's stats

    def submit(self, path: Path, write: Callable[[], None]) -> None:
        """Run `write()` (which writes `path`) on the writer thread; returns at once. A write of
        the same path still waiting to start is replaced by this one."""
        if self._bug is not None:
            raise RuntimeError(f"a background write failed: {self._bug!r}") from self._bug
        with self._lock:
            already_queued = path in self._waiting
            self._waiting[path] = write
        if not already_queued:  # its run, queued already, will take this newer write
            self._runs = [run for run in self._runs if not run.done()]
            self._runs.append(self._pool.submit(self._write_newest, path))

    def _write_newest(self, path: Path) -> None:
        with self._lock:
            write = self._waiting.pop(path)
        try:
            write()
        except OSError as exc:  # the disk, not the code: logged, and the next write tries again
            self.failures += 1
            log.error("could not write %s: %s", path, exc)
        except Exception as exc:
            self._bug = exc
            log.exception("writing %s failed", path)

    def flush(self) -> None:
        """Wait until every write submitted so far has finished (or failed)."""
        for run in list(self._runs):
            run.result()
        self._runs = []

    def close(self) -> None:
        """Finish the write in progress and drop those not started (the caller writes its last
        state itself, after this), then stop the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._runs = []
