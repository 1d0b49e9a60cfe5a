"""The launcher's side of the zygote (agent/zygote.py): start it, have it validate the config,
fork agents, and learn how they ended. The launcher itself never imports torch.

A forked agent is the zygote's child, not the launcher's: its exit status comes as a message
from the zygote, and `ForkedChild` offers the part of `subprocess.Popen` the supervisor uses.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from drima.agent.config import EXIT_ZYGOTE_LOST
from drima.config import config_from_dict
from drima.jsonlines import Closed, JsonLines
from drima.procinfo import die_with_parent

from .plan import LaunchConfig
from .validate import ConfigError

CHILD_ENV = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
"""added to the environment of every process the launcher starts: one torch/BLAS thread each"""

REPLY_TIMEOUT_S = 600.0
"""how long to wait for the zygote's answer (validation may run a PettingZoo env's checks)"""


class ZygoteGone(RuntimeError):
    pass


class Zygote:
    """One run's zygote. Start it from the thread that runs the run: it gets SIGTERM when that
    thread ends (PR_SET_PDEATHSIG), and its agents get SIGTERM when it ends."""

    def __init__(self, run_dir: str | Path):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drima.agent.zygote", "--control-fd", str(theirs.fileno()), "--run-dir",
             str(run_dir)], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent, env=os.environ | CHILD_ENV)
        theirs.close()
        self.link = JsonLines(ours)
        self.exits: dict[int, int] = {}  # pid -> exit status, as the zygote reported them
        self.replies: list[dict] = []
        self.gone = False

    def validate(self, cfg: LaunchConfig) -> LaunchConfig:
        """`drima.validate(cfg)`, run in the zygote. Raises ConfigError."""
        reply = self._request({"op": "validate", "cfg": dataclasses.asdict(cfg)})
        if reply.get("config_error"):
            raise ConfigError(reply["error"])
        if "error" in reply:
            raise RuntimeError(f"validating the config failed in the zygote:\n{reply['error']}")
        return config_from_dict(LaunchConfig, reply["cfg"], "the zygote's validated config")

    def spawn(self, argv: list[str], log_path: Path) -> ForkedChild:
        """Fork `drima-agent ARGV` with its stdout and stderr appended to log_path."""
        reply = self._request({"op": "spawn", "argv": argv, "log": str(log_path)})
        if "error" in reply:
            raise RuntimeError(f"the zygote could not fork {argv}: {reply['error']}")
        return ForkedChild(self, reply["pid"])

    def pump(self, timeout_s: float = 0.0) -> None:
        """Take in what the zygote sent (exit reports, replies), waiting up to timeout_s for it."""
        if self.gone:
            time.sleep(timeout_s)
            return
        try:
            messages = self.link.receive(timeout_s)
        except (Closed, ConnectionResetError):  # api.py reports it and ends the run
            self.gone = True
            self.proc.wait()
            return
        for msg in messages:
            if "exit" in msg:
                self.exits[int(msg["exit"])] = int(msg["status"])
            else:
                self.replies.append(msg)

    def _request(self, msg: dict) -> dict:
        if self.gone:
            raise ZygoteGone("the agent zygote has ended")
        self.link.send(msg)
        end = time.monotonic() + REPLY_TIMEOUT_S
        while not self.replies and not self.gone and time.monotonic() < end:
            self.pump(min(1.0, end - time.monotonic()))
        if not self.replies:
            raise ZygoteGone(f"the agent zygote did not answer {msg['op']!r} "
                             f"({'it ended' if self.gone else 'timed out'}; its error, if any, is above)")
        return self.replies.pop(0)

    def close(self) -> None:
        """Closing its socket ends the zygote (and, by SIGTERM, any agent still alive)."""
        self.link.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedChild:
    """A process forked by the zygote, with the part of Popen's interface the supervisor uses."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.zygote.pump()
            self._settle()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 1.0 if end is None else end - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            self.zygote.pump(min(left, 0.2))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended since: its exit report is on its way
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _settle(self) -> None:
        if self.pid in self.zygote.exits:
            self.returncode = self.zygote.exits[self.pid]
        elif self.zygote.gone and not _alive(self.pid):  # no one left to tell us its status
            self.returncode = EXIT_ZYGOTE_LOST


def _alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan's zombie lasts until whoever adopted it reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
