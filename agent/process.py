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
from drima.metrics import MetricsWriter, write_json_atomic
from drima.procinfo import memory_mb
from drima.types import StepInfo

from .checkpoint import load_checkpoint, save_checkpoint
from .core import AgentCore
from .learners import env_defaults, make_learner
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
    """a2c | dqn | ddpg | ppo"""
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
    env_timeout_s: float = 60.0
    """no message from the env server for this long: checkpoint and exit non-zero"""
    link_drop: float = 0.0
    """chaos: fraction of incoming neighbour messages to lose (seeded, per link)"""
    link_delay_ms: float = 0.0
    """chaos: delay of every outgoing neighbour message"""
    resume: bool = False
    """start from run_dir/checkpoint.pt if it exists"""


class EnvServerGone(RuntimeError):
    pass


class AgentProcess:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.dir = Path(cfg.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.Context()
        self.env = self.ctx.socket(zmq.DEALER)
        self.env.setsockopt(zmq.IDENTITY, str(cfg.agent_id).encode())
        self.env.setsockopt(zmq.LINGER, 1000)
        self.env.connect(cfg.env_address)
        peers = {int(k): v for k, v in cfg.peers.items()}
        self.link = NeighbourLink(self.ctx, cfg.agent_id, cfg.link_bind, peers, cfg.link_liveness,
                                 drop=cfg.link_drop, delay_ms=cfg.link_delay_ms, seed=cfg.seed)
        self.stop_requested = False
        self.core: AgentCore | None = None
        self.step = 0
        self.exchange_s: list[float] = []  # publish -> all live neighbours heard, per step

    # -- env link ------------------------------------------------------------------------------
    def _send_env(self, kind: str, step: int, body) -> None:
        self.env.send(protocol.encode(kind, self.cfg.agent_id, step, body))

    def _recv_env(self, timeout_s: float, while_waiting=None) -> protocol.Message:
        """Next valid message from the env server; malformed frames are logged and dropped."""
        end = time.monotonic() + timeout_s
        while not self.stop_requested:
            left = end - time.monotonic()
            if left <= 0:
                raise EnvServerGone(f"no message from the env server for {timeout_s:.0f} s")
            if not self.env.poll(min(100, int(left * 1000) + 1)):
                if while_waiting:
                    while_waiting()
                continue
            frame = self.env.recv()
            try:
                return protocol.decode(frame)
            except protocol.ProtocolError as exc:
                log.warning("dropped malformed frame from the env server: %s", exc)
        raise KeyboardInterrupt

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        torch.set_num_threads(1)
        self._send_env(protocol.HELLO, 0, {})
        spec = self._recv_env(cfg.startup_timeout_s)
        if spec.kind == protocol.STOP:
            log.error("env server refused this agent: %s", spec.body.get("reason"))
            return 3
        if spec.kind != protocol.SPEC:
            raise RuntimeError(f"expected an env spec, got {spec.kind}")
        spec = spec.body
        n_envs = int(spec["n_envs"])
        self.n_agents = int(spec["n_agents"])
        action_dtype = "<f4" if spec["action"]["type"] == "continuous" else "<i4"
        learner = make_learner(cfg.algo, int(spec["obs_dim"]), spec["action"],
                               env_defaults(spec, cfg.algo) | cfg.learner, cfg.seed, int(spec.get("state_dim", 0)))
        n_actions = int(spec["action"].get("n", 0))
        state_dim = int(spec.get("state_dim", 0))
        self.core = AgentCore(learner, cfg.mode, cfg.mu_step_size)
        ckpt = self.dir / "checkpoint.pt"
        if cfg.resume and ckpt.exists():
            self.step = load_checkpoint(ckpt, self.core)
            log.info("resumed from %s at step %d (mu=%.4f)", ckpt, self.step, self.core.mu)
        self._handshake()
        self._send_env(protocol.READY, 0, {})
        metrics = MetricsWriter(self.dir / "metrics.csv", METRIC_FIELDS, append=cfg.resume)
        t0 = time.monotonic()
        obs = actions = None
        exit_code = 0
        try:
            while True:
                msg = self._recv_env(cfg.env_timeout_s, while_waiting=self.link.publish_hello if obs is None else None)
                if msg.kind == protocol.STOP:
                    log.info("env server says stop: %s", msg.body.get("reason"))
                    break
                if msg.kind != protocol.RESULT:
                    log.warning("dropped unexpected %s from the env server", msg.kind)
                    continue
                next_obs = protocol.floats(msg.body[0]).reshape(n_envs, -1)
                next_info = self._step_info(msg.body[4], n_envs, n_actions, state_dim)
                if obs is not None:  # RESULT t+1 carries r_t for the action sent at step t
                    rewards = protocol.floats(msg.body[1])
                    done = protocol.floats(msg.body[2])
                    extras = msg.body[4]
                    team = protocol.floats(extras["team"]) if "team" in extras else None
                    near = self._in_range(extras, n_envs)
                    t = msg.step - 1
                    t_pub = time.perf_counter()
                    self.link.publish(t, rewards, self.core.mu)
                    wanted = None if near is None else set(np.flatnonzero(near.any(axis=1)).tolist())
                    peer_ids, nbr_r, nbr_mu = self.link.collect(t, n_envs, cfg.link_deadline_s, wanted)
                    self.exchange_s.append(time.perf_counter() - t_pub)
                    mask = None if near is None else near[peer_ids]
                    reshaped, info = self.core.learn(obs, actions, rewards, next_obs, done, nbr_r, nbr_mu,
                                                     in_range=mask, team_reward=team, next_info=next_info)
                    metrics.accumulate({"reward": rewards.mean(), "mu": self.core.mu, "signal": reshaped.signal.mean(),
                                        "conflict_rate": reshaped.conflict.mean(),
                                        "n_peers": len(peer_ids) if mask is None else mask.sum(0).mean()} | info)
                    self.step = t + 1
                    if self.step % cfg.log_every == 0:
                        metrics.write({"step": self.step, "env_steps": self.step * n_envs,
                                       "wall_s": round(time.monotonic() - t0, 3)})
                    if self.step % cfg.checkpoint_every == 0:
                        save_checkpoint(ckpt, self.core, self.step)
                if msg.body[3]:  # last result of the run
                    break
                obs = next_obs
                actions = self.core.act(obs, next_info)
                self._send_env(protocol.ACTION, msg.step, [protocol.to_bytes(actions, action_dtype)])
        except EnvServerGone as exc:
            log.error("%s: saving a checkpoint and exiting", exc)
            exit_code = 4
        except KeyboardInterrupt:
            log.info("stop requested at step %d: saving a checkpoint", self.step)
        finally:
            if self.core is not None:
                save_checkpoint(ckpt, self.core, self.step)
            metrics.close()
            self._write_stats()
            self.link.close()
            self.env.close()
            self.ctx.term()
        return exit_code

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

    @staticmethod
    def _step_info(extras: dict, n_envs: int, n_actions: int, state_dim: int) -> StepInfo | None:
        """Action masks and global state sent beside an observation (SMAX, SC2), if any."""
        avail = state = None
        if "avail" in extras:
            raw = np.frombuffer(extras["avail"], np.uint8)
            if raw.size == n_envs * n_actions:
                avail = raw.reshape(n_envs, n_actions).astype(bool)
            else:
                log.warning("ignored an action mask of %d bytes (expected %d x %d)", raw.size, n_envs, n_actions)
        if "state" in extras:
            raw = protocol.floats(extras["state"])
            if raw.size == n_envs * state_dim:
                state = raw.reshape(n_envs, state_dim)
            else:
                log.warning("ignored a global state of %d floats (expected %d x %d)", raw.size, n_envs, state_dim)
        return None if avail is None and state is None else StepInfo(avail, state)

    def _write_stats(self) -> None:
        """Link counters and exchange-round latency, for the runtime benchmark and for operators."""
        lat = np.array(self.exchange_s) * 1000
        stats = {"step": self.step, "link": self.link.stats, "n_peers": len(self.link.peers),
                 "memory": memory_mb(),
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
        return 4
    except KeyboardInterrupt:
        log.info("stopped during start-up")
        return 0
