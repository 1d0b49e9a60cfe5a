"""Process identity, lifetime and memory: the title ps shows, ending with the parent, and memory as
the runtime benchmark reports it.

RSS counts every shared page (libtorch is ~200 MB of them) once per process; PSS splits
shared pages among the processes that map them, so summing PSS over the agents of one run
gives the memory the run really takes."""

from __future__ import annotations

import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1
try:  # loaded at import, not between fork and exec: dlopen there can deadlock when the parent has threads
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux: the children's env-server timeout still ends them
    _LIBC = None


def _kb(path: str, key: str) -> float | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def memory_mb() -> dict[str, float | None]:
    hwm = _kb("/proc/self/status", "VmHWM:")  # peak RSS of this program (reset by exec)
    pss = _kb("/proc/self/smaps_rollup", "Pss:")
    return {"rss_peak_mb": round(hwm / 1024, 1) if hwm else None, "pss_mb": round(pss / 1024, 1) if pss else None}


def set_process_title(role: str, run_dir: str | Path) -> None:
    """Name this process in ps/top as `drima-<role> <run_dir>` (e.g. `drima-agent 3 /runs/x`),
    so that an operator or a fault test can find one process of one run. Does nothing if the
    optional setproctitle package is missing."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"drima-{role} {Path(run_dir).resolve()}")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send this process `sig` when its parent ends (PR_SET_PDEATHSIG; Linux only).
    It fires when the parent *thread* that forked this process exits, not the parent process."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
