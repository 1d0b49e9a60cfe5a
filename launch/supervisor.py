"""Start, watch and stop the processes of one run on this machine.

The env server is started as `python -m drima.env_server`; the agents are forked by the run's
zygote (launch/zygote.py), which has imported torch once for all of them. Without a zygote
(tests that wire a run by hand) an agent is `python -m drima.agent`.

Children run in their own session (a Ctrl-C in the terminal reaches only the launcher, which
owns shutdown) and get SIGTERM if the launcher dies (PR_SET_PDEATHSIG), so no orphan is left;
the zygote's agents get SIGTERM when the zygote ends. Each child's stdout/stderr goes to its own
log file.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. So every
child of a run, restarts included, is started from the thread that runs `drima.run`, which
lives until it has stopped them all.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drima.agent.config import EXIT_REFUSED, EXIT_SUPERSEDED, EXIT_ZYGOTE_LOST, AgentConfig
from drima.config import save_config
from drima.env_server.server import EnvServerConfig
from drima.events import EventFeed
from drima.metrics import last_row
from drima.procinfo import die_with_parent

from .plan import LaunchConfig
from .zygote import CHILD_ENV, Zygote

log = logging.getLogger("drima.launch")


class ChildProcess(Protocol):
    """What the supervisor uses of a child: subprocess.Popen, or a zygote's ForkedChild."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


@dataclass
class Child:
    name: str
    proc: ChildProcess
    log_path: Path


def spawn(name: str, module: str, cfg: EnvServerConfig | AgentConfig, extra_args: list[str] | None = None,
          zygote: Zygote | None = None) -> Child:
    """Write `cfg` into its run folder and start `python -m module --config ...` there, or have
    `zygote` fork it (agents only)."""
    folder = Path(cfg.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "config.json"
    save_config(cfg, cfg_path)
    log_path = folder / "log.txt"
    args = ["--config", str(cfg_path), *(extra_args or [])]
    if zygote is not None:
        return Child(name, zygote.spawn(args, log_path), log_path)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent, env=os.environ | CHILD_ENV)
    return Child(name, proc, log_path)


def spawn_env_server(cfg: EnvServerConfig) -> Child:
    return spawn("env-server", "drima.env_server", cfg)


def spawn_agent(cfg: AgentConfig, zygote: Zygote | None = None) -> Child:
    return spawn(f"agent {cfg.agent_id}", "drima.agent", cfg, ["--agent-id", str(cfg.agent_id)], zygote)


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


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


NOT_RESTARTED = (EXIT_REFUSED, EXIT_ZYGOTE_LOST, EXIT_SUPERSEDED)
"""exit statuses --restart-failed leaves alone: the env server refused the agent; its zygote is gone;
another node adopted it"""


class AgentWatch:
    """The agent children of one run: reports their exits, restarts the failed ones
    (--restart-failed) and injects the kills asked for (--kill-agent)."""

    def __init__(self, cfg: LaunchConfig, configs: list[AgentConfig], zygote: Zygote | None = None,
                 feed: EventFeed | None = None):
        """`feed`: where exits, restarts and kills go the moment they happen (the dashboard reads it)."""
        self.cfg, self.zygote, self.feed = cfg, zygote, feed
        self.configs = {a.agent_id: a for a in configs}
        self.children = {i: spawn_agent(a, zygote) for i, a in self.configs.items()}
        self.restarts = {i: 0 for i in self.configs}
        self.exits: dict[int, list[int]] = {i: [] for i in self.configs}  # every exit status, in order
        self.restart_at: dict[int, float] = {}  # agent -> when to restart it
        self.pending_kills = sorted((tuple(k) for k in cfg.kill_agents), key=lambda k: k[1])
        self.kills: list[dict] = []

    def poll(self, run_dir: Path) -> None:
        if self.pending_kills:
            row = last_row(run_dir / "env_server" / "metrics.csv")
            self._inject_kills(int(row["step"]) if row else 0)
        for i, child in self.children.items():
            code = child.proc.poll()
            if code is None or len(self.exits[i]) > self.restarts[i]:  # running, or this exit already handled
                continue
            self.exits[i].append(code)
            restart = self.cfg.restart_failed and self.restarts[i] < self.cfg.max_restarts and code not in NOT_RESTARTED
            self._event({"event": "exited", "agent": i, "status": code, "how": describe_exit(code),
                         "restarting": bool(code and restart)})
            if code == 0:
                continue
            if code == EXIT_SUPERSEDED:
                log.warning("agent %d was adopted by another node (a later incarnation plays its seat): it exited "
                            "without writing its files", i)
                continue
            if restart:
                log.warning("agent %d %s: restarting it from its last checkpoint in %.1f s (restart %d of %d). "
                            "Its log:\n%s", i, describe_exit(code), self.cfg.restart_delay_s,
                            self.restarts[i] + 1, self.cfg.max_restarts, tail(child.log_path))
                self.restart_at[i] = time.monotonic() + self.cfg.restart_delay_s
            else:
                log.warning("agent %d %s; the run goes on without it. Its log:\n%s", i, describe_exit(code),
                            tail(child.log_path))
        for i, at in list(self.restart_at.items()):
            if time.monotonic() >= at:
                del self.restart_at[i]
                self.restarts[i] += 1
                self.children[i] = spawn_agent(dataclasses.replace(self.configs[i], resume=True), self.zygote)
                self._event({"event": "restarted", "agent": i, "restart": self.restarts[i],
                             "max_restarts": self.cfg.max_restarts})

    def adopt(self, cfg: AgentConfig) -> None:
        """Start an agent of another node here (launch/adopt.py); from now on it is watched, and
        restarted with --restart-failed, like this node's own."""
        i = cfg.agent_id
        self.configs[i] = cfg
        self.restarts[i], self.exits[i] = 0, []
        self.children[i] = spawn_agent(cfg, self.zygote)

    def _event(self, event: dict) -> None:
        if self.feed is not None:
            self.feed.write(event)

    def _inject_kills(self, env_step: int) -> None:
        while self.pending_kills and env_step >= self.pending_kills[0][1]:
            agent, at = self.pending_kills.pop(0)
            child = self.children[agent]
            if child.proc.poll() is not None:
                log.warning("fault injection: agent %d is already down at step %d", agent, env_step)
                continue
            child.proc.kill()
            log.warning("fault injection: SIGKILL agent %d (pid %d) at step %d", agent, child.proc.pid, env_step)
            self.kills.append({"agent": agent, "asked_step": at, "env_step": env_step})
            self._event({"event": "killed", "agent": agent, "step": env_step})

    def running(self) -> bool:
        """Some agent of this node is alive or about to be restarted."""
        return bool(self.restart_at) or any(c.proc.poll() is None for c in self.children.values())

    def report(self) -> dict:
        """Per agent: exit status, restarts and every exit seen; for summary.json."""
        report = {}
        for i, c in self.children.items():
            exits = self.exits[i]
            if c.proc.returncode is not None and len(exits) == self.restarts[i]:  # ended after the last poll
                exits = [*exits, c.proc.returncode]
            report[i] = {"exit_status": c.proc.returncode, "restarts": self.restarts[i], "exits": exits}
            if self.configs[i].incarnation:
                report[i]["incarnation"] = self.configs[i].incarnation  # adopted from another node
        return report
