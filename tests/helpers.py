import json
import os
import subprocess
import sys
from pathlib import Path



def run_launch(run_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the real `drima-launch` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def drima_processes_for(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (a run dir)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "drima" in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def load_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())

