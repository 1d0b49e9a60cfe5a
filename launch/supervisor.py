"""Start, watch and stop the processes of one run on this machine.

Children run in their own session (a Ctrl-C in the terminal reaches only the launcher, which
owns shutdown) and get SIGTERM if the launcher dies (PR_SET_PDEATHSIG), so no orphan is left.
Each child's stdout/stderr goes to its own log file.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drima.agent.process import AgentConfig
from drima.config import save_config
from drima.env_server.server import EnvServerConfig

log = logging.getLogger("drima.launch")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the children's env-server timeout still ends them
        pass


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path


def spawn(name: str, module: str, cfg: EnvServerConfig | AgentConfig, extra_args: list[str] | None = None) -> Child:
    """Write `cfg` into its run folder and start `python -m module --config ...` there."""
    folder = Path(cfg.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "config.json"
    save_config(cfg, cfg_path)
    log_path = folder / "log.txt"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(cfg_path), *(extra_args or [])],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent,
                                env=os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    return Child(name, proc, log_path)


def spawn_env_server(cfg: EnvServerConfig) -> Child:
    return spawn("env-server", "drima.env_server", cfg)


def spawn_agent(cfg: AgentConfig) -> Child:
    return spawn(f"agent {cfg.agent_id}", "drima.agent", cfg, ["--agent-id", str(cfg.agent_id)])


def stop_all(children: list[Child], grace_s: float = 10.0, signal_first: bool = True) -> None:
    """SIGTERM every live child (each saves and exits), then SIGKILL what is left after grace_s.
    With signal_first=False, the children get grace_s to end by themselves before the SIGTERM."""
    if not signal_first:
        _wait_all(children, grace_s)
    for c in children:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    if not signal_first:
        grace_s = 10.0
    end = time.monotonic() + grace_s
    for c in children:
        try:
            c.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", c.name, grace_s)
            c.proc.kill()
            c.proc.wait()


def _wait_all(children: list[Child], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    for c in children:
        try:
            c.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
