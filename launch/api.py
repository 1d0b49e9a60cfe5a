"""Runs from Python: start a run on this machine, wait for its end, get its results.

    from drima import LaunchConfig, run

    result = run(LaunchConfig(env="pd", n=2, steps=300, run_dir="runs/pd"))
    result.status, result.summary["final"], result.agents[0].final_reward

`run` works from any thread (a notebook, a worker thread); a `threading.Event` stops it. Its
only signal handling: called from the main thread with Python's own SIGINT handler in place,
Ctrl-C sets that event until `run` returns. `drima-launch` is a thin layer over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drima.agent import fence
from drima.agent.config import EXIT_ENV_LOST, EXIT_SUPERSEDED
from drima.events import EventFeed, launcher_feed_name
from drima.metrics import write_json_atomic

from .adopt import Adopter
from .dashboard.server import DashboardServer
from .plan import LaunchConfig, RunPlan, plan_run
from .progress import Progress
from .rendezvous import exchange
from .report import plot_run, write_summary
from .supervisor import AgentWatch, describe_exit, spawn_env_server, stop_all, tail
from .validate import ConfigError
from .zygote import Zygote

log = logging.getLogger("drima.launch")

EXIT_CODES = {"completed": 0, "interrupted": 130}
"""the exit status of `drima-launch` per run status; any other status (a failure) is 1"""

AGENT_EXIT_MARGIN_S = 1.0
"""agents exit within heartbeat_interval_s * heartbeat_liveness + this after the env server dies"""


@dataclass(frozen=True)
class AgentResult:
    """One agent's end of the run, as summary.json's `agents` has it. The final figures are
    means over summary.json's final window (the last 10 % of steps; an evaluation: all), None
    when the agent logged nothing there (and on nodes other than 0, which have no summary)."""

    final_reward: float | None
    final_mu: float | None
    final_conflict_rate: float | None
    exit_status: int | None
    """the agent process's last exit status: 0 done, -15 stopped by SIGTERM, 4 env server lost"""
    restarts: int
    """how often --restart-failed restarted it"""


@dataclass(frozen=True)
class RunResult:
    status: str
    """completed | interrupted | failed | completed with agent failures"""
    exit_code: int
    """what drima-launch exits with: 0 completed, 130 interrupted, 1 otherwise"""
    run_dir: Path
    summary: dict = field(repr=False)  # long: a notebook shows the rest
    """summary.json's content (a node other than 0: its node_R.json)"""
    summary_path: Path
    plot_path: Path | None
    """learning_curves.png; None when nothing was logged, or on a node other than 0"""
    agents: dict[int, AgentResult]
    """this node's agents (node 0: all of them)"""
    failure: str | None
    """why the run failed, e.g. "env server killed by SIGKILL"; None otherwise"""
    gif_path: Path | None = None
    """with render: the episode played by the learned policies"""
    render_metrics: dict | None = None
    """with render: that episode's task metrics"""


class _Processes:
    """This node's processes during a run: the env server (node 0 only; restarted with
    --restart-failed) and the agents (AgentWatch)."""

    def __init__(self, cfg: LaunchConfig, plan: RunPlan, zygote: Zygote, feed: EventFeed):
        self.cfg, self.plan, self.zygote, self.feed = cfg, plan, zygote, feed
        self.server = spawn_env_server(plan.env_server) if plan.env_server else None  # node 0 only
        self.server_exits: list[int] = []  # of env servers that died and were restarted
        for agent in plan.agents:  # an earlier run's adoptions in this folder are over
            fence.reset(agent.run_dir)
        self.watch = AgentWatch(cfg, plan.agents, zygote, feed)
        self.adopter = Adopter(cfg, plan, self.watch, feed) if cfg.adopt_after_s is not None else None

    def supervise(self, stop: threading.Event, line: Progress, run_dir: Path) -> bool:
        """Until the run ends; True if it was interrupted (stop, or a KeyboardInterrupt)."""
        try:
            while not stop.is_set():
                if self.server is not None and self.server.proc.poll() is not None and not self._restart_server(stop):
                    return False
                self.watch.poll(run_dir)  # first: exits it schedules for a restart keep the node running
                if self.adopter is not None:
                    self.adopter.poll()
                if self.server is None and not self.watch.running():
                    return False
                if self.zygote.gone:  # its agents got SIGTERM with it: the run cannot go on
                    return False
                line.update()
                stop.wait(0.1)
        except KeyboardInterrupt:  # Ctrl-C in an interactive Python: the same clean stop
            pass
        return True

    def _restart_server(self, stop: threading.Event) -> bool:
        """The env server ended: restart it if it crashed and --restart-failed allows; False when
        the run is over."""
        cfg, code = self.cfg, self.server.proc.returncode
        restart = _restartable_server_exit(cfg, code, len(self.server_exits))
        if code != 0:
            self.feed.write({"event": "env_server_exited", "status": code, "how": describe_exit(code),
                             "restarting": restart})
        if not restart:
            return False
        self.server_exits.append(code)
        log.warning("env server %s: restarting it in %.1f s (restart %d of %d); the agents rejoin it. "
                    "Its log:\n%s", describe_exit(code), cfg.restart_delay_s, len(self.server_exits),
                    cfg.max_restarts, tail(self.server.log_path, 20))
        if not stop.wait(cfg.restart_delay_s):
            self.server = spawn_env_server(dataclasses.replace(self.plan.env_server, resume=True))
            self.feed.write({"event": "env_server_restarted", "restart": len(self.server_exits)})
        return True

    def outcome(self, interrupted: bool) -> tuple[str, str | None]:
        """Stop what is left as the ending requires; (status, failure)."""
        cfg, server, agents = self.cfg, self.server, list(self.watch.children.values())
        if interrupted:
            stop_all([c for c in (server, *agents) if c])
            return "interrupted", None
        if self.zygote.gone:
            failure = f"agent zygote {describe_exit(self.zygote.proc.returncode)}"
            log.error("%s: its agents got SIGTERM (each saves a checkpoint); stopping the run", failure)
            stop_all([c for c in (server, *agents) if c])
            return "failed", failure
        if server is not None and server.proc.returncode != 0:
            failure = f"env server {describe_exit(server.proc.returncode)}"
            # the agents notice by themselves (heartbeats), save a checkpoint and exit with status 4
            grace = cfg.heartbeat_interval_s * cfg.heartbeat_liveness + AGENT_EXIT_MARGIN_S
            if cfg.on_env_loss == "wait":
                grace += cfg.reconnect_timeout_s
            log.error("%s; waiting up to %.1f s for the agents to save and exit. Its log:\n%s", failure, grace,
                      tail(server.log_path, 20))
            stop_all(agents, grace_s=grace, signal_first=False)
            return "failed", failure
        stop_all(agents, grace_s=10.0, signal_first=False)  # they end by themselves after the last result
        # an agent adopted by another node (superseded) ended cleanly: its seat played on there
        bad = [c.name for c in agents if c.proc.returncode not in (0, -signal.SIGTERM, EXIT_SUPERSEDED)]
        if server is None and any(c.proc.returncode == EXIT_ENV_LOST for c in agents):
            return "failed", "env server lost (agents exited with status 4)"
        if bad:
            log.warning("agents %s did not finish cleanly; see their log.txt", bad)
            return "completed with agent failures", None
        return "completed", None

    def stop_everything(self) -> None:
        stop_all([c for c in (self.server, *self.watch.children.values()) if c])


def _report(cfg: LaunchConfig, plan: RunPlan, procs: _Processes, status: str, failure: str | None,
            wall_s: float) -> tuple[Path, dict, Path | None]:
    """summary.json and the plot (node 0), or node_<r>.json (other nodes)."""
    run_dir = Path(cfg.run_dir)
    if procs.server is None:  # node r > 0: the env server's stats and the summary are node 0's
        summary_path = run_dir / f"node_{cfg.node_rank}.json"
        summary = {"node": cfg.node_rank, "status": status, "failure": failure,
                   "agents": {str(i): a for i, a in procs.watch.report().items()},
                   "kills": procs.watch.kills, "wall_s": round(wall_s, 2)}
        write_json_atomic(summary_path, summary)
        return summary_path, summary, None
    processes = {"agents": procs.watch.report(), "kills": procs.watch.kills, "failure": failure,
                 "env_server_exit_status": procs.server.proc.returncode, "env_server_restarts": procs.server_exits}
    summary = write_summary(cfg, status, wall_s, plan.neighbours, processes)
    return run_dir / "summary.json", summary, plot_run(cfg)


def run(cfg: LaunchConfig, *, stop: threading.Event | None = None, progress: bool = False) -> RunResult:
    """Run one experiment (this node's share of it) and wait for its end.

    `cfg` goes through `validate` first: a bad config raises ConfigError and starts no env server
    or agent.
    Setting `stop`, from any thread, interrupts the run cleanly: every process gets SIGTERM and
    saves a checkpoint and its metrics, and the result says "interrupted". So does Ctrl-C
    while the run goes on, its start-up included (a notebook's interrupt button): called from the
    main thread, run() turns SIGINT into `stop` until it returns. `progress` prints
    the live progress line. With several nodes, raises RendezvousError when the nodes do not
    all meet (or `stop` is set before they do).

    Call it from a thread that lives until it returns (as any caller does): the children get
    SIGTERM when the thread that started them exits (PR_SET_PDEATHSIG, see supervisor.py).

    The agents are forked by a zygote process that has imported torch for all of them; it also
    validates `cfg`, so that this process never imports torch (launch/zygote.py)."""
    stop = stop or threading.Event()
    with _ctrl_c_sets(stop):
        zygote = Zygote(cfg.run_dir)
        try:
            cfg = zygote.validate(cfg)
            with _dashboard(cfg):
                return _run(cfg, zygote, stop, progress)
        finally:
            zygote.close()


@contextlib.contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While a run goes on, Ctrl-C in the main thread sets `stop` (as drima-launch's handler
    does) instead of raising KeyboardInterrupt wherever the main thread happens to be: raised
    while the processes were being spawned, it escaped run() and left them running. Only where
    Python's own handler is in place; a caller's own handler (drima-launch's) is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    with signals_set(stop, [signal.SIGINT]):
        yield


@contextlib.contextmanager
def signals_set(stop: threading.Event, signals: Iterable[signal.Signals]) -> Iterator[None]:
    """While the block runs, each of `signals` sets `stop` instead of doing what it did; the
    handlers in place before come back after (main thread only, as Python's signal module asks)."""
    before = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in signals}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _dashboard(cfg: LaunchConfig) -> Iterator[None]:
    """With cfg.dashboard, the run's live view is served from a thread of this process while it runs."""
    if cfg.dashboard is None:
        yield
        return
    try:
        server = DashboardServer(cfg.run_dir, cfg.dashboard, cfg.dashboard_bind).start()
    except OSError as exc:  # the port is taken, the address is not this host's
        raise ConfigError(f"--dashboard {cfg.dashboard}: cannot serve on {cfg.dashboard_bind}:{cfg.dashboard} "
                          f"({exc.strerror or exc})") from None
    log.info("dashboard: %s", server.url)
    try:
        yield
    finally:
        server.close()


def _run(cfg: LaunchConfig, zygote: Zygote, stop: threading.Event, progress: bool) -> RunResult:
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.node_rank == 0 or not (run_dir / "launch.json").exists():  # nodes may share the folder: node 0's
        (run_dir / "launch.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    plan = plan_run(cfg, exchange=functools.partial(exchange, cfg, stop=stop) if cfg.nodes > 1 else None)
    t0 = time.monotonic()
    feed = EventFeed(run_dir / launcher_feed_name(cfg.node_rank), "launcher", append=cfg.resume)
    procs = _Processes(cfg, plan, zygote, feed)
    line = Progress(cfg, quiet=not progress)
    try:
        interrupted = procs.supervise(stop, line, run_dir)
        status, failure = procs.outcome(interrupted)
    finally:
        procs.stop_everything()
        if plan.socket_dir:
            shutil.rmtree(plan.socket_dir, ignore_errors=True)
    line.update(force=True)
    line.done()
    summary_path, summary, plot = _report(cfg, plan, procs, status, failure, time.monotonic() - t0)
    result = RunResult(status=status, exit_code=EXIT_CODES.get(status, 1), run_dir=run_dir, summary=summary,
                       summary_path=summary_path, plot_path=plot, agents=_agent_results(summary["agents"]),
                       failure=failure)
    if cfg.render and result.exit_code == 0:
        from .render import render_run  # imports the MPE renderer

        gif = run_dir / "episode.gif"
        result = dataclasses.replace(result, gif_path=gif, render_metrics=render_run(run_dir, gif))
    return result


def _restartable_server_exit(cfg: LaunchConfig, code: int, restarts: int) -> bool:
    """--restart-failed restarts an env server that crashed or was killed, not one that ended the
    run on purpose (0 done, 3 no agents, 130 stopped), and at most max_restarts times."""
    return cfg.restart_failed and code not in (0, 3, 130) and restarts < cfg.max_restarts


def _agent_results(agents: dict) -> dict[int, AgentResult]:
    """From the `agents` of summary.json or of a node's report (agent ids as strings)."""
    return {int(i): AgentResult(final_reward=a.get("final_reward"), final_mu=a.get("final_mu"),
                                final_conflict_rate=a.get("final_conflict_rate"), exit_status=a.get("exit_status"),
                                restarts=a.get("restarts", 0))
            for i, a in agents.items()}
