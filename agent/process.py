"""One agent = one OS process: its learner, its mu, its env link (env_link.py) and its neighbour
links (neighbour_link.py).

Per step t (after the env server sends RESULT t+1 = obs_{t+1} and this agent's reward r_t):
  1. publish (t, r_t, mu_t) to the neighbours, first, so that theirs are more likely there
     when this agent comes to collect them;
  2. acting ahead: act on obs_{t+1} and send ACTION t+1;
  3. collect the neighbours' (r_t, mu_t) until the per-step deadline;
  4. DRI signal -> mu update from r_t -> one learner update;
  5. not acting ahead: act on obs_{t+1} and send ACTION t+1.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import zmq

from drima import protocol, security
from drima.loggers import make_sinks
from drima.metrics import MetricsWriter, write_json_atomic
from drima.procinfo import memory_mb
from drima.types import StepInfo

from . import fence
from .background_writer import BackgroundWriter
from .checkpoint import checkpoint_bytes, read_checkpoint, restore_checkpoint, save_checkpoint, write_atomic
from .config import EXIT_ENV_LOST, EXIT_REFUSED, EXIT_SUPERSEDED, AgentConfig
from .core import AgentCore
from .env_link import EnvLink, EnvServerGone, RunCompletedMeanwhile, Superseded, is_superseded
from .learners import ActsAhead, ReportsProgress, env_defaults, make_learner
from .link_status import LinkStatus
from .neighbour_link import NeighbourLink

log = logging.getLogger("drima.agent")

Taken = tuple[np.ndarray, np.ndarray, np.ndarray, StepInfo | None]
"""what an action was taken on: (obs, actions, active, the StepInfo sent with obs)"""


class Exchange(NamedTuple):
    """One step's scalar exchange, between publishing and collecting."""
    step: int  # t, the step the scalars are for
    near: np.ndarray | None  # (n_agents, K) whom this agent counts as a neighbour; None: every linked peer
    published_at: float  # perf_counter(), for the exchange latency


METRIC_FIELDS = ["step", "env_steps", "wall_s", "reward", "mu", "signal", "conflict_rate", "n_peers",
                 "actor_loss", "critic_loss", "entropy", "q_loss", "epsilon"]




class AgentProcess:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.dir = Path(cfg.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctx = zmq.Context()
        self.stop_requested = False
        self.keys = security.load_keypair(cfg.curve_key_file)  # None: plain text
        self.env = EnvLink(self.ctx, cfg.agent_id, cfg.env_address, cfg.heartbeat_interval_s, cfg.heartbeat_liveness,
                           stop_requested=lambda: self.stop_requested, keys=self.keys,
                           server_key=cfg.env_server_key, incarnation=cfg.incarnation,
                           link_address=cfg.link_address or cfg.link_bind)
        self.env.on_moved = self._peer_moved
        self.peer_incarnations: dict[int, int] = {}  # neighbours adopted by another node: their incarnation
        peers = {int(k): v for k, v in cfg.peers.items()}
        self.link = NeighbourLink(self.ctx, cfg.agent_id, cfg.link_bind, peers, cfg.link_liveness,
                                 drop=cfg.link_drop, delay_ms=cfg.link_delay_ms, seed=cfg.seed,
                                 keys=self.keys, peer_keys={int(k): v for k, v in cfg.peer_keys.items()})
        # checkpoints and links.json are written off the step loop (background_writer.py)
        self.writer = BackgroundWriter()
        self.link_status = LinkStatus(self.dir / "links.json", submit=self._write_unless_superseded)
        self.core: AgentCore | None = None
        self.agent_name: str | None = None  # the env's name for this agent (PettingZoo, MPE, battles)
        self.step = 0
        self.exchange_s: list[float] = []  # publish -> all live neighbours heard, per step
        # steps (and copies) whose action the env server did not play: not learned from
        self.not_executed = {"steps": 0, "copies": 0}

    def _heartbeat(self) -> None:
        """A heartbeat to the env server if nothing else went out lately (learners and waits call this)."""
        self.env.heartbeat(self.step)

    def _between_gradient_steps(self) -> None:
        """A long update's progress (PPO's epochs): a heartbeat, and a stop (SIGTERM) is honoured here
        rather than after the update. The launcher kills an agent that has not stopped within 10 s,
        and one killed mid-update (thirty PPO updates at once on 2 cores take longer) saved no
        checkpoint; stopped here, it saves one, with the gradient steps taken so far."""
        if self.stop_requested:
            raise KeyboardInterrupt
        self._heartbeat()

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        torch.set_num_threads(1)
        if self._superseded():  # restarted on its own node after another node adopted it
            log.error("not starting: this agent's folder belongs to its incarnation %d (another node adopted it)",
                      fence.owner(self.dir))
            self.link.close()
            self.env.close(server_lost=True)
            security.term(self.ctx)
            return EXIT_SUPERSEDED
        ckpt = self.dir / "checkpoint.pt"
        saved = self._saved_state(ckpt)
        # a restarted env server goes on from the furthest step the agents say in their HELLO
        self.step = int(saved["step"]) if saved and cfg.resume else 0
        spec = self.env.hello(self.step, cfg.startup_timeout_s)
        if is_superseded(spec):
            log.error("env server: %s; exiting without writing anything", spec.body.get("reason"))
            return EXIT_SUPERSEDED
        if spec.kind == protocol.STOP:
            log.error("env server refused this agent: %s", spec.body.get("reason"))
            return EXIT_REFUSED
        if spec.kind != protocol.SPEC:
            raise RuntimeError(f"expected an env spec, got {spec.kind}")
        n_envs = self._build(spec.body)
        self._load_weights(saved)
        self._handshake()
        self.env.send(protocol.READY, self.step, {})
        metrics = MetricsWriter(self.dir / "metrics.csv", METRIC_FIELDS, append=cfg.resume,
                                sinks=make_sinks(cfg.logger, self.dir))
        self.t0 = time.monotonic()
        exit_code = 0
        try:
            self._loop_with_rejoins(metrics, n_envs, ckpt)
        except EnvServerGone as exc:
            log.error("%s: saving a checkpoint at step %d and exiting with status %d", exc, self.step, EXIT_ENV_LOST)
            exit_code = EXIT_ENV_LOST
        except Superseded as exc:
            log.error("superseded at step %d: %s; exiting with status %d without writing a checkpoint, metrics "
                      "or stats (the adopter owns this folder now)", self.step, exc, EXIT_SUPERSEDED)
            exit_code = EXIT_SUPERSEDED
        except KeyboardInterrupt:
            log.info("stop requested at step %d: saving a checkpoint", self.step)
        finally:
            self._shut_down(metrics, ckpt, server_lost=exit_code in (EXIT_ENV_LOST, EXIT_SUPERSEDED),
                            superseded=exit_code == EXIT_SUPERSEDED)
        return exit_code

    def _superseded(self) -> bool:
        """A later incarnation of this agent (adopted by another node) owns its folder."""
        return fence.owner(self.dir) > self.cfg.incarnation

    def _peer_moved(self, body: dict) -> None:
        """MOVED: a neighbour was adopted by another node and publishes elsewhere now."""
        try:
            peer, incarnation, address = int(body["agent"]), int(body["incarnation"]), str(body["address"])
        except (KeyError, TypeError, ValueError):
            log.warning("dropped a malformed MOVED from the env server: %r", body)
            return
        if peer in self.link.peers and incarnation > self.peer_incarnations.get(peer, 0):
            self.peer_incarnations[peer] = incarnation
            self.link.move(peer, address)

    def _build(self, spec: dict) -> int:
        """This agent's learner and core, from the env server's SPEC; returns K, the env copies."""
        cfg = self.cfg
        n_envs = int(spec["n_envs"])
        self.n_agents = int(spec["n_agents"])
        self.env.moved_meanwhile(spec)  # neighbours adopted by another node before this agent started
        self.action_dtype = "<f4" if spec["action"]["type"] == "continuous" else "<i4"
        learner = make_learner(cfg.algo, int(spec["obs_dim"]), spec["action"],
                               env_defaults(spec, cfg.algo) | cfg.learner, cfg.seed, int(spec.get("state_dim", 0)),
                               env_spec=spec)
        self.obs_dim = int(spec["obs_dim"])
        self.n_actions = int(spec["action"].get("n", 0))
        self.state_dim = int(spec.get("state_dim", 0))
        self.joint_action_dim = int(spec.get("joint_action_dim", 0))
        if isinstance(learner, ReportsProgress):  # long updates (PPO) heartbeat between gradient steps
            learner.on_progress = self._between_gradient_steps
        self.agent_name = spec.get("agent_name")
        if self.agent_name:
            log.info("agent %d is %r in %s", cfg.agent_id, spec["agent_name"], spec.get("env"))
        self.core = AgentCore(learner, cfg.mode, cfg.mu_step_size)
        # act on t+1 before learning from t, where the learner allows it and the config asks for it
        self.acts_ahead = cfg.act_ahead and isinstance(learner, ActsAhead) and learner.acts_ahead
        self._heartbeat()  # a rejoining agent is watched by the server from its HELLO on
        return n_envs

    def _saved_state(self, ckpt: Path) -> dict | None:
        """The checkpoint to start from: this agent's own (resume), another run's weights
        (init_from), or None (read before the HELLO, which says the step it holds)."""
        cfg = self.cfg
        if cfg.resume and ckpt.exists():
            return read_checkpoint(ckpt)
        if cfg.resume:
            log.warning("resume requested but %s does not exist: starting from scratch", ckpt)
        elif cfg.init_from:
            return read_checkpoint(cfg.init_from)
        return None

    def _load_weights(self, saved: dict | None) -> None:
        """Learner, mu and RNG from the checkpoint read at start; a resumed agent goes on from its step."""
        if saved is None:
            return
        restore_checkpoint(saved, self.core)
        if self.cfg.resume:
            log.info("resumed from %s at step %d (mu=%.4f)", self.dir / "checkpoint.pt", self.step, self.core.mu)
        else:
            log.info("weights from %s (trained for %d steps)%s", self.cfg.init_from, int(saved["step"]),
                     ": evaluating, greedy actions, no learning" if self.cfg.evaluate else "")

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
                try:
                    if not self.env.reconnect(self.step, cfg.reconnect_timeout_s):
                        raise EnvServerGone(f"{exc}, and not back within {cfg.reconnect_timeout_s:.0f} s") from None
                except RunCompletedMeanwhile as end:
                    log.info("%s while this agent was cut off (its last step: %d): done", end, self.step)
                    return

    def _shut_down(self, metrics: MetricsWriter, ckpt: Path, server_lost: bool, superseded: bool = False) -> None:
        """On every exit: the last checkpoint (not when evaluating), metrics and stats, sockets
        closed; a superseded agent writes none of them (its adopter's files are there now)."""
        self.writer.close()  # a periodic write in progress lands before the last checkpoint, never after it
        superseded = superseded or self._superseded()  # read after that wait: an adopter may have come meanwhile
        if superseded:
            log.warning("superseded: leaving checkpoint.pt and stats.json to incarnation %d", fence.owner(self.dir))
        if self.core is not None and not self.cfg.evaluate and not superseded:  # an evaluation changes no weights
            save_checkpoint(ckpt, self.core, self.step)
        metrics.close()  # rows are written whole as they come: nothing is left to write here
        if not superseded:
            self._write_stats()
        self.link.close()
        self.env.close(server_lost)
        security.term(self.ctx)

    def _loop(self, metrics: MetricsWriter, n_envs: int, ckpt: Path) -> None:
        """Steps until the last result or a STOP. The first result after (re)joining carries no
        reward: the agent only acts on it. Acting ahead, the agent sends its action for t+1 first
        and learns from step t while the env server steps (its action is one update late)."""
        cfg = self.cfg
        ahead = self.acts_ahead and not cfg.evaluate
        taken: Taken | None = None  # of the action sent last
        while True:
            # the first result may take long: the server resets every world first (64 agents x 8 copies
            # take seconds on a busy machine), and it does not heartbeat within a step
            msg = self.env.recv(self.step, timeout_s=cfg.startup_timeout_s if taken is None else None,
                                while_waiting=self.link.publish_hello if taken is None else None)
            if is_superseded(msg):
                raise Superseded(str(msg.body.get("reason")))
            if msg.kind == protocol.STOP:
                log.info("env server says stop: %s", msg.body.get("reason"))
                return
            res = self._result(msg, n_envs)
            if res is None:
                continue
            prev, learn = taken, taken is not None and res.reward is not None  # RESULT t+1 carries r_t
            if taken is None and msg.step > self.step:
                log.info("first result at step %d: acting from there", msg.step)
            exchange = self._publish(res, msg.step, n_envs) if learn and not cfg.evaluate else None
            if ahead and not res.last:
                taken = self._act(res, msg.step)
            if learn:
                metrics.accumulate(self._observe_only(res, prev[2]) if cfg.evaluate
                                   else self._learn(prev, res, exchange, n_envs))
                self.step = msg.step
                self._record(metrics, n_envs, ckpt)
            if res.last:  # last result of the run
                return
            if not ahead:
                taken = self._act(res, msg.step)

    def _act(self, res: protocol.Result, step: int) -> Taken:
        """Act on the result's observation and send the action for `step`; what was taken."""
        info = res.info()
        actions = self.core.act(res.obs, info, greedy=self.cfg.evaluate)
        self.env.send(protocol.ACTION, step, [protocol.to_bytes(actions, self.action_dtype)])
        return res.obs, actions, res.active, info

    def _result(self, msg: protocol.Message, n_envs: int) -> protocol.Result | None:
        """The RESULT in `msg`, or None (logged) for another message or a malformed result."""
        if msg.kind != protocol.RESULT:
            log.warning("dropped unexpected %s from the env server", msg.kind)
            return None
        try:
            return protocol.decode_result(msg.body, n_envs, self.obs_dim, self.n_actions, self.state_dim,
                                          self.joint_action_dim)
        except protocol.ProtocolError as exc:
            log.warning("dropped a result for step %d: %s", msg.step, exc)
            return None

    def _observe_only(self, res: protocol.Result, active: np.ndarray) -> dict[str, float]:
        """Evaluation: nothing is learned, the learner only sees where episodes end; the step's metrics."""
        self.core.observe(res.terminated | res.truncated | ~active)
        return {"reward": res.reward[active].mean() if active.any() else 0.0, "mu": self.core.mu}

    def _record(self, metrics: MetricsWriter, n_envs: int, ckpt: Path) -> None:
        """A metrics row every log_every steps, a checkpoint every checkpoint_every (not when evaluating)."""
        writes = self.step % self.cfg.log_every == 0 or self.step % self.cfg.checkpoint_every == 0
        if writes and self._superseded():  # adopted elsewhere while this one went on: write nothing
            raise Superseded(f"incarnation {fence.owner(self.dir)} owns {self.dir}")
        if self.step % self.cfg.log_every == 0:
            metrics.write({"step": self.step, "env_steps": self.step * n_envs,
                           "wall_s": round(time.monotonic() - self.t0, 3)})
            self.link_status.write(self.step, self.link.per_peer, self.link.live_peers())
        if self.step % self.cfg.checkpoint_every == 0 and not self.cfg.evaluate:
            self._write_unless_superseded(ckpt, partial(write_atomic, ckpt, checkpoint_bytes(self.core, self.step)))

    def _write_unless_superseded(self, path: Path, write: Callable[[], None]) -> None:
        """`write` (of `path`) on the writer thread, unless by then another node has adopted
        this agent: the fence is checked again just before writing, as the write may wait."""
        def guarded() -> None:
            if self._superseded():
                log.warning("not writing %s: incarnation %d owns this folder now", path.name, fence.owner(self.dir))
                return
            write()
        self.writer.submit(path, guarded)

    def _publish(self, res: protocol.Result, step: int, n_envs: int) -> Exchange:
        """Publish this agent's (r_t, mu_t) for t = step - 1 to the neighbours that count it; the
        step's exchange, for `_learn` to collect."""
        extras = res.extras
        near = self._peer_mask(extras, "in_range", n_envs)  # whom this agent counts as a neighbour now
        heard_by = self._peer_mask(extras, "heard_by", n_envs)  # who counts it (where that differs)
        exchange = Exchange(step - 1, near, time.perf_counter())
        self.link.publish(exchange.step, res.reward, self.core.mu, to=_ids(near if heard_by is None else heard_by))
        return exchange

    def _learn(self, taken: Taken, res: protocol.Result, exchange: Exchange, n_envs: int) -> dict[str, float]:
        """Collect the neighbours' scalars for the step published in `exchange`, then one learning
        step on the copies where this agent took part (taken's `active`); returns the step's metrics."""
        obs, actions, active, info = taken
        extras = res.extras
        team = protocol.floats(extras["team"]) if "team" in extras else None
        near = exchange.near
        peer_ids, nbr_r, nbr_mu = self.link.collect(exchange.step, n_envs, self.cfg.link_deadline_s, _ids(near),
                                                    on_wait=self._heartbeat)
        self.exchange_s.append(time.perf_counter() - exchange.published_at)
        mask = None if near is None else near[peer_ids]
        if not res.executed.all():  # a substitute was played for our late action: its reward is not ours to learn
            self.not_executed["steps"] += 1
            self.not_executed["copies"] += int((active & ~res.executed).sum())
        reshaped, info = self.core.learn(obs, actions, res.reward, res.next_obs(), res.terminated, nbr_r, nbr_mu,
                                         in_range=mask, team_reward=team, next_info=res.next_info(),
                                         truncated=res.truncated, active=active & res.executed, info=info)
        self._heartbeat()  # after a (possibly long) learner update
        if not active.any():  # out of the episode in every copy: nothing to report but mu
            return {"mu": self.core.mu}
        return {"reward": res.reward[active].mean(), "mu": self.core.mu, "signal": reshaped.signal[active].mean(),
                "conflict_rate": reshaped.conflict[active].mean(),
                "n_peers": len(peer_ids) if mask is None else mask[:, active].sum(0).mean()} | info

    def _peer_mask(self, extras: dict, name: str, n_envs: int) -> np.ndarray | None:
        """(n_agents, K) bool from the env server's in_range or heard_by row; None where it sent none
        (static topologies)."""
        if name not in extras:
            return None
        raw = np.frombuffer(extras[name], np.uint8)
        if raw.size != self.n_agents * n_envs:
            log.warning("ignored a %s mask of %d bytes (expected %d x %d): static neighbours this step",
                        name, raw.size, self.n_agents, n_envs)
            return None
        return raw.reshape(self.n_agents, n_envs).astype(bool)

    def _write_stats(self) -> None:
        """Link counters and exchange-round latency, for the runtime benchmark and for operators."""
        lat = np.array(self.exchange_s) * 1000
        stats = {"step": self.step, "agent_name": self.agent_name, "link": self.link.stats,
                 "not_executed": self.not_executed,
                 "n_peers": len(self.link.peers), "memory": memory_mb(),
                 "failed_writes": self.writer.failures,
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
            self.env.pump()  # a neighbour that moves while we link up (MOVED)
            self._heartbeat()  # a rejoining agent is watched by the server already
        missing = peers - self.link.heard
        if missing:
            log.warning("neighbours %s not heard at start-up: starting without them", sorted(missing))


def _ids(mask: np.ndarray | None) -> set[int] | None:
    """The agents a (n_agents, K) mask names in any copy; None for no mask (every linked peer)."""
    return None if mask is None else set(np.flatnonzero(mask.any(axis=1)).tolist())


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
