"""Process identity and memory: the title ps shows, and memory as the runtime benchmark reports it.

RSS counts every shared page (libtorch is ~200 MB of them) once per process; PSS splits
shared pages among the processes that map them, so summing PSS over the agents of one run
gives the memory the run really takes."""

from __future__ import annotations

from pathlib import Path


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
