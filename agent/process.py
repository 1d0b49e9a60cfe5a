"""One agent = one OS process: its learner, its mu, its env link and its neighbour links.

Per step t (after the env server sends RESULT t+1 = obs_{t+1} and this agent's reward r_t):
  1. publish (t, r_t, mu_t) to the neighbours;
  2. collect the neighbours' (r_t, mu_t) until the per-step deadline;
  3. DRI signal -> mu update from r_t -> one learner update;
  4. act on obs_{t+1} and send ACTION t+1.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zmq

from drima import protocol
from drima.loggers import make_sinks
from drima.metrics import MetricsWriter, write_json_atomic
from drima.procinfo import memory_mb
from drima.types import StepInfo

from .checkpoint import load_checkpoint, save_checkpoint
from .core import AgentCore
from .learners import ReportsProgress, env_defaults, make_learner
from .neighbour_link import NeighbourLink

log = logging.getLogger("drima.agent")

METRIC_FIELDS = ["step", "env_steps", "wall_s", "reward", "mu", "signal", "conflict_rate", "n_peers",
                 "actor_loss", "critic_loss", "entropy", "q_loss", "epsilon"]


@dataclass
class AgentConfig:
    agent_id: int
    """this agent's id (0..n-1)"""
    env_address: str
    """the env server's ROUTER address, e.g. tcp://127.0.0.1:5555 or ipc:///tmp/x/env"""
    link_bind: str
    """where this agent's PUB socket binds (its neighbours connect here)"""
    peers: dict[str, str]
    """neighbour id -> that neighbour's PUB address (JSON keys are strings)"""
    algo: str = "a2c"
    """a2c | dqn | ddpg | ppo | MODULE:CLASS (a learner of your own, docs/learners.md)"""
    mode: str = "dri"
    """ind | dri | dri-naive | ctde"""
    seed: int = 0
    """this agent's seed (the launcher derives it from the run seed and the agent id)"""
    run_dir: str = "."
    """this agent's own folder: metrics.csv, log, checkpoint.pt"""
    learner: dict = field(default_factory=dict)
    """overrides of the algorithm's config dataclass fields"""
    mu_step_size: float = 0.05
    """step size of the average-reward estimate mu"""
    log_every: int = 50
    """steps between two metrics rows"""
    checkpoint_every: int = 1000
    """steps between two checkpoints (also one on exit)"""
    link_deadline_s: float = 1.0
    """how long to wait for a live neighbour's scalars at one step"""
    link_liveness: int = 3
    """consecutive missed steps after which a neighbour is not waited for"""
    startup_timeout_s: float = 60.0
    """how long to wait for the env server and the neighbours at start-up"""
    heartbeat_interval_s: float = 0.5
    """send the env server a HEARTBEAT while busy or waiting, when nothing else was sent for this long"""
    heartbeat_liveness: int = 4
    """the env server is declared lost after this many silent heartbeat intervals (2 s by default);
    keep heartbeat_interval_s * heartbeat_liveness above the longest learner update"""
    on_env_loss: str = "exit"
    """what to do when the env server is lost: exit (save a checkpoint, exit with status 4) |
    wait (reconnect and rejoin, for up to reconnect_timeout_s, then as exit)"""
    reconnect_timeout_s: float = 60.0
    """with on_env_loss=wait: how long to keep trying to rejoin the env server"""
    link_drop: float = 0.0
    """chaos: fraction of incoming neighbour messages to lose (seeded, per link)"""
    link_delay_ms: float = 0.0
    """chaos: delay of every outgoing neighbour message"""
    resume: bool = False
    """start from run_dir/checkpoint.pt if it exists (and append to metrics.csv)"""
    init_from: str = ""
    """a checkpoint to load the learner and mu from at start (evaluation); the step starts at 0"""
    evaluate: bool = False
    """act greedily (no exploration) and learn nothing; no neighbour scalars are traded"""
    logger: str = "csv"
    """where metrics rows go besides metrics.csv (always written): csv | tensorboard (drima/loggers.py)"""

    def __post_init__(self):
        if self.on_env_loss not in ("exit", "wait"):
            raise ValueError(f"on_env_loss {self.on_env_loss!r}: use exit or wait")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_liveness < 1:
            raise ValueError("heartbeat_interval_s must be > 0 and heartbeat_liveness >= 1")


EXIT_REFUSED = 3  # the env server refused this agent (e.g. it was removed from the run)
EXIT_ENV_LOST = 4  # the env server was lost: checkpoint saved, see the log for why


class EnvServerGone(RuntimeError):
    pass


class AgentProcess:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.dir = Path(cfg.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.Context()
        self.env = self._connect_env()
        peers = {int(k): v for k, v in cfg.peers.items()}
        self.link = NeighbourLink(self.ctx, cfg.agent_id, cfg.link_bind, peers, cfg.link_liveness,
                                 drop=cfg.link_drop, delay_ms=cfg.link_delay_ms, seed=cfg.seed)
        self.stop_requested = False
        self.core: AgentCore | None = None
        self.agent_name: str | None = None  # the env's name for this agent (PettingZoo, MPE, battles)
        self.step = 0
        self.exchange_s: list[float] = []  # publish -> all live neighbours heard, per step
        self.last_heard = time.monotonic()  # last frame from the env server
        self.looked_at = self.last_heard  # last time this agent polled the env link (pauses show as gaps)
        self.last_sent = 0.0  # last frame to the env server
        self.poll_ms = max(1, min(100, int(cfg.heartbeat_interval_s * 500)))  # >= 2 polls per interval

    # -- env link ------------------------------------------------------------------------------
    def _connect_env(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, str(self.cfg.agent_id).encode())
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        sock.connect(self.cfg.env_address)
        return sock

    def _send_env(self, kind: str, step: int, body) -> None:
        try:  # never block on a dead server: the queue only fills (1000 frames) when it is gone
            self.env.send(protocol.encode(kind, self.cfg.agent_id, step, body), zmq.NOBLOCK)
            self.last_sent = time.monotonic()
        except zmq.Again:
            log.debug("env link queue full: %s not sent", kind)

    def _heartbeat(self) -> None:
        """Tell the env server we are alive, if nothing else was sent for one interval (cheap to call often)."""
        if time.monotonic() - self.last_sent >= self.cfg.heartbeat_interval_s:
            self._send_env(protocol.HEARTBEAT, self.step, {})

    def _recv_env(self, timeout_s: float | None = None, while_waiting=None) -> protocol.Message:
        """Next valid message from the env server; heartbeats and malformed frames are consumed here.
        With timeout_s (start-up), gives up after that long; without, once the server has been
        silent for heartbeat_liveness intervals. Silence is only judged after an empty poll, so
        frames that queued while this agent was busy count."""
        start = time.monotonic()
        while not self.stop_requested:
            if self.env.poll(self.poll_ms):
                frame = self.env.recv()
                self.last_heard = self.looked_at = time.monotonic()
                try:
                    msg = protocol.decode(frame)
                except protocol.ProtocolError as exc:
                    log.warning("dropped malformed frame from the env server: %s", exc)
                    continue
                if msg.kind != protocol.HEARTBEAT:
                    return msg
                continue
            self._heartbeat()
            if while_waiting:
                while_waiting()
            self._judge_silence(start, timeout_s)
        raise KeyboardInterrupt

    def _judge_silence(self, start: float, timeout_s: float | None) -> None:
        """After an empty poll: raise EnvServerGone past timeout_s (start-up), or once the server
        has been silent for heartbeat_liveness intervals. If this agent itself has not looked at
        the env link for that long, it was paused (SIGSTOP, swapped out) or busy: libzmq's I/O
        thread, paused with it, may not have read yet what the server sent meanwhile, so the
        server gets a new liveness window instead (as the env server does for its own pauses)."""
        now = time.monotonic()
        since_looked, self.looked_at = now - self.looked_at, now
        interval = self.cfg.heartbeat_interval_s
        window = interval * self.cfg.heartbeat_liveness
        if timeout_s is not None:
            if now - start > timeout_s:
                raise EnvServerGone(f"no answer from the env server for {timeout_s:.0f} s")
        elif since_looked > window:
            log.warning("this agent was paused or busy for %.2f s: the env server gets a new liveness window",
                        since_looked)
            self.last_heard = now
        elif now - self.last_heard > window:
            silent = now - self.last_heard
            raise EnvServerGone(f"env server silent for {silent:.2f} s ({int(silent / interval)} missed heartbeats)")

    def _hello(self) -> protocol.Message:
        """HELLO -> SPEC (or STOP), waiting up to startup_timeout_s."""
        self._send_env(protocol.HELLO, self.step, {})
        return self._recv_env(self.cfg.startup_timeout_s)

    def _reconnect(self) -> bool:
        """on_env_loss=wait: a fresh socket (the old one may hold a dead connection), HELLO until a
        SPEC comes back, then READY. The server then sends the current observation."""
        end = time.monotonic() + self.cfg.reconnect_timeout_s
        lost_since = self.last_heard
        while time.monotonic() < end and not self.stop_requested:
            self.env.close(linger=0)
            self.env = self._connect_env()
            # a fresh socket and HELLO every liveness window: a server that was paused may still
            # hold our old connection and refuse the new one (same identity) until it notices
            retry_s = self.cfg.heartbeat_interval_s * self.cfg.heartbeat_liveness
            try:
                self._send_env(protocol.HELLO, self.step, {})
                msg = self._recv_env(min(retry_s, max(0.1, end - time.monotonic())))
            except EnvServerGone:
                continue
            if msg.kind == protocol.SPEC:
                self._send_env(protocol.READY, self.step, {})
                log.info("reconnected to the env server after %.2f s of silence: rejoining",
                         self.last_heard - lost_since)
                return True
            if msg.kind == protocol.STOP:
                log.error("env server refused the rejoin: %s", msg.body.get("reason"))
                return False
        return False

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        torch.set_num_threads(1)
        spec = self._hello()
        if spec.kind == protocol.STOP:
            log.error("env server refused this agent: %s", spec.body.get("reason"))
            return EXIT_REFUSED
        if spec.kind != protocol.SPEC:
            raise RuntimeError(f"expected an env spec, got {spec.kind}")
        n_envs = self._build(spec.body)
        ckpt = self.dir / "checkpoint.pt"
        self._load_weights(ckpt)
        self._handshake()
        self._send_env(protocol.READY, self.step, {})
        metrics = MetricsWriter(self.dir / "metrics.csv", METRIC_FIELDS, append=cfg.resume,
                                sinks=make_sinks(cfg.logger, self.dir))
        self.t0 = time.monotonic()
        exit_code = 0
        try:
            self._loop_with_rejoins(metrics, n_envs, ckpt)
        except EnvServerGone as exc:
            log.error("%s: saving a checkpoint at step %d and exiting with status %d", exc, self.step, EXIT_ENV_LOST)
            exit_code = EXIT_ENV_LOST
        except KeyboardInterrupt:
            log.info("stop requested at step %d: saving a checkpoint", self.step)
        finally:
            self._shut_down(metrics, ckpt, server_lost=exit_code == EXIT_ENV_LOST)
        return exit_code

    def _build(self, spec: dict) -> int:
        """This agent's learner and core, from the env server's SPEC; returns K, the env copies."""
        cfg = self.cfg
        n_envs = int(spec["n_envs"])
        self.n_agents = int(spec["n_agents"])
        self.action_dtype = "<f4" if spec["action"]["type"] == "continuous" else "<i4"
        learner = make_learner(cfg.algo, int(spec["obs_dim"]), spec["action"],
                               env_defaults(spec, cfg.algo) | cfg.learner, cfg.seed, int(spec.get("state_dim", 0)),
                               env_spec=spec)
        self.obs_dim = int(spec["obs_dim"])
        self.n_actions = int(spec["action"].get("n", 0))
        self.state_dim = int(spec.get("state_dim", 0))
        if isinstance(learner, ReportsProgress):  # long updates (PPO) heartbeat between gradient steps
            learner.on_progress = self._heartbeat
        self.agent_name = spec.get("agent_name")
        if self.agent_name:
            log.info("agent %d is %r in %s", cfg.agent_id, spec["agent_name"], spec.get("env"))
        self.core = AgentCore(learner, cfg.mode, cfg.mu_step_size)
        self._heartbeat()  # a rejoining agent is watched by the server from its HELLO on
        return n_envs

    def _load_weights(self, ckpt: Path) -> None:
        """Resume from this agent's checkpoint, or start from another run's weights (init_from)."""
        cfg = self.cfg
        if cfg.resume and ckpt.exists():
            self.step = load_checkpoint(ckpt, self.core)
            log.info("resumed from %s at step %d (mu=%.4f)", ckpt, self.step, self.core.mu)
        elif cfg.resume:
            log.warning("resume requested but %s does not exist: starting from scratch", ckpt)
        elif cfg.init_from:
            trained = load_checkpoint(cfg.init_from, self.core)
            log.info("weights from %s (trained for %d steps)%s", cfg.init_from, trained,
                     ": evaluating, greedy actions, no learning" if cfg.evaluate else "")

    def _loop_with_rejoins(self, metrics: MetricsWriter, n_envs: int, ckpt: Path) -> None:
        """The step loop; with on_env_loss=wait, a lost env server is rejoined and the loop goes on."""
        cfg = self.cfg
        while True:
            try:
                self._loop(metrics, n_envs, ckpt)
                return
            except EnvServerGone as exc:
                if cfg.on_env_loss != "wait":
                    raise
                log.warning("%s: reconnecting for up to %.0f s (on_env_loss=wait)", exc, cfg.reconnect_timeout_s)
                if not self._reconnect():
                    raise EnvServerGone(f"{exc}, and not back within {cfg.reconnect_timeout_s:.0f} s") from None

    def _shut_down(self, metrics: MetricsWriter, ckpt: Path, server_lost: bool) -> None:
        """On every exit: the last checkpoint (not when evaluating), metrics and stats, sockets closed."""
        if self.core is not None and not self.cfg.evaluate:  # an evaluation changes no weights
            save_checkpoint(ckpt, self.core, self.step)
        metrics.close()
        self._write_stats()
        self.link.close()
        self.env.close(linger=0 if server_lost else None)  # nothing to flush to a dead server
        self.ctx.term()

    def _loop(self, metrics: MetricsWriter, n_envs: int, ckpt: Path) -> None:
        """Steps until the last result or a STOP. The first result after (re)joining carries no
        reward: the agent only acts on it."""
        cfg = self.cfg
        obs = actions = active = None
        while True:
            msg = self._recv_env(while_waiting=self.link.publish_hello if obs is None else None)
            if msg.kind == protocol.STOP:
                log.info("env server says stop: %s", msg.body.get("reason"))
                return
            res = self._result(msg, n_envs)
            if res is None:
                continue
            next_info = self._step_info(res.extras, n_envs)
            if obs is not None and res.reward is not None:  # RESULT t+1 carries r_t for the action sent at step t
                metrics.accumulate(self._observe_only(res, active) if cfg.evaluate
                                   else self._learn(obs, actions, active, res, msg.step, next_info, n_envs))
                self.step = msg.step
                self._record(metrics, n_envs, ckpt)
            elif obs is None and msg.step > self.step:
                log.info("first result at step %d: acting from there", msg.step)
            if res.last:  # last result of the run
                return
            obs, active = res.obs, res.active
            actions = self.core.act(obs, next_info, greedy=cfg.evaluate)
            self._send_env(protocol.ACTION, msg.step, [protocol.to_bytes(actions, self.action_dtype)])

    def _result(self, msg: protocol.Message, n_envs: int) -> protocol.Result | None:
        """The RESULT in `msg`, or None (logged) for another message or a malformed result."""
        if msg.kind != protocol.RESULT:
            log.warning("dropped unexpected %s from the env server", msg.kind)
            return None
        try:
            return protocol.decode_result(msg.body, n_envs, self.obs_dim)
        except protocol.ProtocolError as exc:
            log.warning("dropped a result for step %d: %s", msg.step, exc)
            return None

    def _observe_only(self, res: protocol.Result, active: np.ndarray) -> dict[str, float]:
        """Evaluation: nothing is learned, the learner only sees where episodes end; the step's metrics."""
        self.core.observe(res.terminated | res.truncated | ~active)
        return {"reward": res.reward[active].mean() if active.any() else 0.0, "mu": self.core.mu}

    def _record(self, metrics: MetricsWriter, n_envs: int, ckpt: Path) -> None:
        """A metrics row every log_every steps, a checkpoint every checkpoint_every (not when evaluating)."""
        if self.step % self.cfg.log_every == 0:
            metrics.write({"step": self.step, "env_steps": self.step * n_envs,
                           "wall_s": round(time.monotonic() - self.t0, 3)})
        if self.step % self.cfg.checkpoint_every == 0 and not self.cfg.evaluate:
            save_checkpoint(ckpt, self.core, self.step)

    def _learn(self, obs: np.ndarray, actions: np.ndarray, active: np.ndarray, res: protocol.Result, step: int,
               next_info: StepInfo | None, n_envs: int) -> dict[str, float]:
        """Trade scalars with the neighbours for step t = step - 1, then one learning step on the
        copies where this agent took part (`active`); returns the step's metrics."""
        extras = res.extras
        team = protocol.floats(extras["team"]) if "team" in extras else None
        near = self._in_range(extras, n_envs)
        t = step - 1
        t_pub = time.perf_counter()
        self.link.publish(t, res.reward, self.core.mu)
        wanted = None if near is None else set(np.flatnonzero(near.any(axis=1)).tolist())
        peer_ids, nbr_r, nbr_mu = self.link.collect(t, n_envs, self.cfg.link_deadline_s, wanted,
                                                    on_wait=self._heartbeat)
        self.exchange_s.append(time.perf_counter() - t_pub)
        mask = None if near is None else near[peer_ids]
        reshaped, info = self.core.learn(obs, actions, res.reward, res.next_obs(), res.terminated, nbr_r, nbr_mu,
                                         in_range=mask, team_reward=team, next_info=next_info,
                                         truncated=res.truncated, active=active)
        self._heartbeat()  # after a (possibly long) learner update
        if not active.any():  # out of the episode in every copy: nothing to report but mu
            return {"mu": self.core.mu}
        return {"reward": res.reward[active].mean(), "mu": self.core.mu, "signal": reshaped.signal[active].mean(),
                "conflict_rate": reshaped.conflict[active].mean(),
                "n_peers": len(peer_ids) if mask is None else mask[:, active].sum(0).mean()} | info

    def _in_range(self, extras: dict, n_envs: int) -> np.ndarray | None:
        """(n_agents, K) bool from the env server's in-range row, or None for static topologies."""
        if "in_range" not in extras:
            return None
        raw = np.frombuffer(extras["in_range"], np.uint8)
        if raw.size != self.n_agents * n_envs:
            log.warning("ignored an in-range mask of %d bytes (expected %d x %d): static neighbours this step",
                        raw.size, self.n_agents, n_envs)
            return None
        return raw.reshape(self.n_agents, n_envs).astype(bool)

    def _step_info(self, extras: dict, n_envs: int) -> StepInfo | None:
        """Action masks and global state sent beside an observation (SMAX, SC2), if any."""
        avail = state = None
        if "avail" in extras:
            raw = np.frombuffer(extras["avail"], np.uint8)
            if raw.size == n_envs * self.n_actions:
                avail = raw.reshape(n_envs, self.n_actions).astype(bool)
            else:
                log.warning("ignored an action mask of %d bytes (expected %d x %d)", raw.size, n_envs, self.n_actions)
        if "state" in extras:
            raw = protocol.floats(extras["state"])
            if raw.size == n_envs * self.state_dim:
                state = raw.reshape(n_envs, self.state_dim)
            else:
                log.warning("ignored a global state of %d floats (expected %d x %d)", raw.size, n_envs, self.state_dim)
        return None if avail is None and state is None else StepInfo(avail, state)

    def _write_stats(self) -> None:
        """Link counters and exchange-round latency, for the runtime benchmark and for operators."""
        lat = np.array(self.exchange_s) * 1000
        stats = {"step": self.step, "agent_name": self.agent_name, "link": self.link.stats,
                 "n_peers": len(self.link.peers), "memory": memory_mb(),
                 "exchange_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                 "mean": float(lat.mean())} if lat.size else None}
        log.info("link stats: %s", stats)
        write_json_atomic(self.dir / "stats.json", stats)

    def _handshake(self) -> None:
        """Publish hellos until every neighbour has been heard (so every SUB->PUB connection
        is up before the first step) or the start-up timeout passes."""
        end = time.monotonic() + self.cfg.startup_timeout_s
        peers = set(self.link.peers)
        next_hello = 0.0
        while not peers <= self.link.heard and time.monotonic() < end and not self.stop_requested:
            if time.monotonic() >= next_hello:  # a hello every 50 ms, not one per received frame
                self.link.publish_hello()
                next_hello = time.monotonic() + 0.05
            if self.link.sub.poll(50):
                self.link.drain()
            self._heartbeat()  # a rejoining agent is watched by the server already
        missing = peers - self.link.heard
        if missing:
            log.warning("neighbours %s not heard at start-up: starting without them", sorted(missing))


def main_with_config(cfg: AgentConfig) -> int:
    proc = AgentProcess(cfg)

    def on_term(signum, frame):  # the launcher owns shutdown: SIGTERM means "save and exit"
        proc.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log.info("agent %d starting (pid %d, algo %s, mode %s, peers %s)", cfg.agent_id, os.getpid(), cfg.algo,
             cfg.mode, sorted(int(p) for p in cfg.peers))
    try:
        return proc.run()
    except EnvServerGone as exc:  # before the first step: nothing learned, nothing to save
        log.error("giving up at start-up: %s", exc)
        return EXIT_ENV_LOST
    except KeyboardInterrupt:
        log.info("stopped during start-up")
        return 0
