"""The environment server: one process that steps K copies of the environment and routes
each agent ITS OWN observation and reward. It trains nothing, and it never sends one
agent's reward to another: agent i's RESULT frame carries exactly K rewards, agent i's.

Protocol on its ROUTER socket (agents connect DEALER sockets; the ROUTER names each connection):
  agent HELLO -> server SPEC;  agent READY (its neighbour links are up);
  once all agents are ready: server RESULT 0 (first obs) -> agent ACTION 0 ->
  server RESULT 1 (obs_1, r_0, done_0) -> ... -> RESULT S with last=True.
Malformed frames, unknown agent ids and actions of the wrong shape are logged and dropped.

Routes: agent i's frames go to the connection its last accepted frame came over (with
CurveZMQ, one that proved agent i's key). Agents do not pick routing ids, so no agent (not even
one of the run, with a key of its own) can take over another's route; an agent that reconnects
(a new socket, or libzmq reconnecting the old one under a new id) moves its route with its next
frame.

Liveness, Paranoid-Pirate style: the server sends an agent a HEARTBEAT whenever it has sent
it nothing for heartbeat_interval_s, and agents do the same while they are busy or waiting.
Any frame counts as a sign of life. An agent silent for heartbeat_liveness intervals is
declared dead: it is no longer waited for and its seat plays `missing_action`. An agent that
says HELLO mid-run (restarted, or reconnecting) gets its SPEC again and, after its READY, the
current observation with an empty reward, so it acts from the next step without learning from
steps it did not take.

Adoption (launch/adopt.py): when another node restarts an agent whose host was cut off, the new
process says HELLO with a higher incarnation and its new PUB address. The seat goes to the
highest incarnation: an older one's HELLO gets STOP {"superseded": True}, and an adopted agent's
other frames count only over connections that said HELLO with its incarnation. The other agents
are told where it publishes now (MOVED; later joiners in their SPEC).

Each agent's seat (never heard, handshaking, playing, lagging, dead, rejoining, removed) is a
state machine of its own, in env_server/seats.py.

Restart (resume=True, what `drima-launch --restart-failed` does when this process dies): the
server reads how far the run got from its own metrics.csv and from the step each agent says in
its HELLO, and goes on from the furthest of them with fresh episodes (the episodes in flight
died with the old process); agents that do not come back within startup_timeout_s are treated as
dead and may rejoin later. Rows already in metrics.csv are kept and new ones appended.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from drima import protocol, security
from drima.connections import detect_dead_connections
from drima.events import EventFeed
from drima.loggers import make_sinks
from drima.metrics import MetricsWriter, last_row, write_json_atomic
from drima.procinfo import memory_mb

from .envs import (
    AgentEpisodes,
    EpisodeEnds,
    HasActionMasks,
    HasEpisodeMetrics,
    HasFinalState,
    HasIdleActions,
    HasPositions,
    VectorEnv,
    ctde_spec,
    joint_actions,
    make_env,
    peer_masks,
    require_global_state,
    team_reward,
)
from .seats import Seats, SeatState

log = logging.getLogger("drima.env_server")

MISSING_ACTIONS = ("last", "noop", "random", "remove")
ENV_CALL_WINDOW = 200  # env calls whose durations set busy_s: more than an MPE episode, so its reset is in it
METRIC_FIELDS = ["step", "env_steps", "wall_s", "env_steps_per_s", "team_reward", "missing_actions"]


@dataclass
class EnvServerConfig:
    address: str
    """where the ROUTER socket binds, e.g. tcp://0.0.0.0:5555 or ipc:///tmp/run/env"""
    env: str
    """pd | maintain | meeting3 | payoff:FILE | hunting | collection | smax:MAP | sc2:MAP
    | pettingzoo:MODULE[:FACTORY] | vmas:SCENARIO"""
    n_agents: int
    """how many agent processes take part"""
    steps: int
    """environment steps to run (each one steps all K copies)"""
    n_envs: int = 8
    """K: environment copies stepped together; every message carries K values"""
    seed: int = 0
    """seed of the environment"""
    run_dir: str = "."
    """the server's own folder: metrics.csv, stats.json, log"""
    log_every: int = 50
    """steps between two metrics rows"""
    startup_timeout_s: float = 120.0
    """how long to wait for every agent's HELLO and READY"""
    action_timeout_s: float = 10.0
    """how long to wait for an agent's action before repeating its last one"""
    agent_liveness: int = 3
    """consecutive missed steps after which a live (heartbeating) agent is no longer waited for"""
    heartbeat_interval_s: float = 0.5
    """send an agent a HEARTBEAT when it was sent nothing else for this long"""
    heartbeat_liveness: int = 4
    """an agent silent for this many heartbeat intervals (2 s by default) is declared dead"""
    missing_action: str = "last"
    """what an agent's seat plays when its action is missing (dead, or later than
    action_timeout_s): last (its last action) | noop (action 0, or zero force; battles: stop) | random
    (uniform, seeded; battles: over the actions allowed now);
    remove: like last, and a dead agent is dropped for the rest of the run (never waited for
    or sent to again, a HELLO from it is refused)"""
    env_options: dict = field(default_factory=dict)
    """scenario options (MPE: e.g. {"n_prey": 2, "view_radius": 1.0})"""
    action_type: str = "discrete"
    """discrete | continuous (MPE forces, for DDPG)"""
    range_radius: float = 0.0
    """> 0: tell each agent, per step and copy, which agents are within this distance (range:R
    topologies). The server is the physical medium here, like a radio; it learns nothing."""
    range_sight: bool = False
    """range:sight (SMAX, SC2): as range_radius, with each unit's own sight range as its radius"""
    resume: bool = False
    """this process replaces a server of the same run that died: go on from where it got (see the
    module docstring) instead of from step 0"""
    final_fraction: float = 0.1
    """the share of the run, at its end, that the `final` figures of stats.json average over
    (an evaluation run: 1, all of it)"""
    env_workers: int = 1
    """PettingZoo envs: step the K copies in this many worker processes at once (1: in this process)"""
    share_team_reward: bool = False
    """ctde mode or --global-state: send every agent the team reward too (MPE, SMAX and SC2: the mean of all agents'
    rewards, see env_server/mpe/vector.py and smax.py; other envs: the sum), the global state (the
    env must have one) and every agent's played actions (joint_actions)"""
    logger: str = "csv"
    """where metrics rows go besides metrics.csv (always written): csv | tensorboard (drima/loggers.py)"""
    curve_key_file: str = ""
    """with tcp: this server's CurveZMQ key pair (a 0600 file, drima/security.py); "" = plain text"""
    agent_keys: dict = field(default_factory=dict)
    """agent id (str) -> that agent's CurveZMQ public key: only a connection that proved agent i's
    secret key may connect and speak for agent i. Empty = no CURVE (ipc, --insecure)"""
    end_linger_s: float = 0.0
    """after the last step, how long to stay and tell agents that missed the end (dead seats: cut
    off by a partition, paused, reconnecting) that the run completed, so they exit cleanly instead
    of waiting for a server that is gone. Only while some seat missed the end."""

    def __post_init__(self):
        if bool(self.agent_keys) != bool(self.curve_key_file):
            raise ValueError("agent_keys and curve_key_file go together (CURVE on) or are both empty (off)")
        if self.missing_action not in MISSING_ACTIONS:
            raise ValueError(f"missing_action {self.missing_action!r}: use one of {', '.join(MISSING_ACTIONS)}")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_liveness < 1:
            raise ValueError("heartbeat_interval_s must be > 0 and heartbeat_liveness >= 1")
        if not 0 < self.final_fraction <= 1:
            raise ValueError(f"final_fraction {self.final_fraction} must be in (0, 1]")


class EnvServer:
    def __init__(self, cfg: EnvServerConfig, env: VectorEnv | None = None):
        self.cfg = cfg
        self.dir = Path(cfg.run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # resume: the last metrics row the dead server wrote, and when (its wall clock goes on from there)
        row = last_row(self.dir / "metrics.csv") if cfg.resume else None
        self.resumed_row_step = int(row["step"]) if row else 0
        # a server that died was running until now; one that ended cleanly (stats.json: a run
        # continued with `drima-launch --resume`) was not
        self.wall_offset = 0.0
        if row:
            stopped = (self.dir / "stats.json").exists()
            gap = 0.0 if stopped else time.time() - (self.dir / "metrics.csv").stat().st_mtime
            self.wall_offset = float(row["wall_s"]) + max(0.0, gap)
            (self.dir / "stats.json").unlink(missing_ok=True)  # so that if this server dies, its restart counts the gap
        # fresh episodes after a restart, not a replay of the first ones
        seed = cfg.seed + 1 + self.resumed_row_step if cfg.resume else cfg.seed
        self.env = env or make_env(cfg.env, cfg.n_agents, cfg.n_envs, seed, cfg.action_type, cfg.env_options,
                                   workers=cfg.env_workers, final_state=cfg.share_team_reward)
        self.neighbourhoods = cfg.range_radius > 0 or cfg.range_sight
        if self.neighbourhoods and not isinstance(self.env, HasPositions):
            raise ValueError(f"env {cfg.env!r} has no positions: range topologies need an MPE, SMAX or SC2 env")
        if cfg.share_team_reward:
            require_global_state(self.env, cfg.env)
        self.send_state = cfg.share_team_reward
        self.task_metric_names: tuple[str, ...] = \
            tuple(self.env.metric_names) if isinstance(self.env, HasEpisodeMetrics) else ()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a vanished agent raises, not drops
        detect_dead_connections(self.sock)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        if cfg.agent_keys:  # only the run's agents' keys get in, each as its agent id (User-Id)
            security.serve(self.sock, security.load_keypair(cfg.curve_key_file), cfg.agent_keys, "env server")
        self.sock.bind(cfg.address)
        self.stop_requested = False
        self.step = 0
        self.seats = Seats(cfg.n_agents, cfg.agent_liveness, remove_dead=cfg.missing_action == "remove",
                           feed=EventFeed(self.dir / "events.jsonl", "env_server", append=cfg.resume))
        self.hello_steps: dict[int, int] = {}  # the step each agent says it is at (resume)
        self.action_spaces = [self.env.agent_spec(i)["action"] for i in range(cfg.n_agents)]  # off the hot path
        self.unreachable: set[int] = set()
        self.routes: dict[int, bytes] = {}  # agent -> the routing id of its connection (module docstring)
        # fencing (an agent adopted by another node): per agent the highest incarnation that said HELLO,
        # the connections it said HELLO over, and where adopted agents publish now
        self.incarnations = [0] * cfg.n_agents
        self.fenced_routes: dict[int, set[bytes]] = {}
        self.moved: dict[int, list] = {}  # agent -> [incarnation, PUB address], for SPECs and MOVED
        self.stale_told: set[bytes] = set()
        self.bytes_sent = np.zeros(cfg.n_agents, np.int64)
        self.bytes_recv = np.zeros(cfg.n_agents, np.int64)
        self.dropped = 0
        self.substituted = 0  # agent-steps whose own action was not played (late, silent, dead): missing_action
        # liveness (monotonic seconds; 0 = never): see the module docstring
        self.last_heard = np.zeros(cfg.n_agents)
        self.last_sent = np.zeros(cfg.n_agents)
        self.next_tick = 0.0
        # how long the recent env resets and steps took (see _announce_busy): a window, so that a
        # one-off slow call (JAX compiling SMAX's step, SC2 starting its games) is forgotten
        self.env_call_s: deque[float] = deque(maxlen=ENV_CALL_WINDOW)
        self.rng = np.random.default_rng(cfg.seed)  # for missing_action=random
        self.alone_since: float | None = None  # since when no agent is in the run
        self.abandoned = False

    # -- socket helpers --------------------------------------------------------------------------
    def _send(self, agent: int, kind: str, step: int, body) -> None:
        route = self.routes.get(agent)
        if route is None:  # it never said HELLO to this process: nowhere to send
            return
        frame = protocol.encode(kind, protocol.SERVER_ID, step, body)
        try:
            self.sock.send_multipart([route, frame])
            self.bytes_sent[agent] += len(frame)
            self.last_sent[agent] = time.monotonic()
            self.unreachable.discard(agent)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the agent is gone; say so once
            if agent not in self.unreachable:
                log.warning("could not send %s to agent %d: %s", kind, agent, exc)
            self.unreachable.add(agent)

    def _recv(self, timeout_ms: int) -> protocol.Message | None:
        """One valid message from a known agent, or None on timeout or a dropped frame."""
        if not self.sock.poll(timeout_ms):
            return None
        parts, user = security.recv_multipart(self.sock, bool(self.cfg.agent_keys))
        msg = self._parse_frame(parts, user)
        if msg is None:
            return None
        self.bytes_recv[msg.sender] += len(parts[1])
        if msg.kind != protocol.HELLO and not self.seats.greeted(msg.sender):
            self.dropped += 1
            return None
        self._heard_from(msg.sender)
        if self.seats.state(msg.sender) is SeatState.REMOVED:
            if msg.kind == protocol.HELLO:
                self._send(msg.sender, protocol.STOP, self.step,
                           {"reason": "removed from the run (missing_action=remove)"})
            return self._drop(f"{msg.kind} from removed agent {msg.sender}")
        return msg

    def _parse_frame(self, parts: list[bytes], user: str | None = None) -> protocol.Message | None:
        """The message in [routing id, frame] if it decodes and, with CURVE, comes over a
        connection that proved the key of the agent it claims (User-Id `user`); that connection
        becomes the agent's route. None (dropped) otherwise."""
        if len(parts) != 2:
            return self._drop(f"{len(parts)}-part message")
        ident, frame = parts
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolError as exc:
            return self._drop(f"malformed frame from {ident[:32]!r}: {exc}")
        if not 0 <= msg.sender < self.cfg.n_agents:
            return self._drop(f"{msg.kind} from unknown agent id {msg.sender} (agents are 0..{self.cfg.n_agents - 1})")
        if self.cfg.agent_keys and user != str(msg.sender):
            return self._drop(f"{msg.kind} claims agent {msg.sender} over a connection with agent {user}'s key")
        if not self._current_incarnation(msg, ident):
            return None
        self.routes[msg.sender] = ident  # its latest connection (libzmq may have reconnected it under a new id)
        return msg

    def _current_incarnation(self, msg: protocol.Message, ident: bytes) -> bool:
        """Fencing: one process per seat. A HELLO with a higher incarnation (another node adopted
        the agent) takes the seat; one with a lower incarnation (the original, back after a
        partition) is told it is superseded. Once an agent was adopted, its other frames count only
        over connections that said HELLO with its current incarnation."""
        i = msg.sender
        if msg.kind == protocol.HELLO:
            incarnation = msg.body.get("incarnation", 0)
            if type(incarnation) is not int or incarnation < 0:
                return bool(self._drop(f"HELLO of agent {i} with incarnation {incarnation!r}"))
            if incarnation < self.incarnations[i]:
                self._tell_superseded(ident, i, incarnation)
                return False
            if incarnation > self.incarnations[i]:
                self._adopted(i, incarnation, msg.body.get("link"))
            if self.incarnations[i]:
                self.fenced_routes[i].add(ident)
            return True
        if self.incarnations[i] and ident not in self.fenced_routes[i]:
            # not told: this may be the current incarnation's socket that libzmq reconnected; it finds
            # this server silent and says HELLO again, as does an older one (which then hears STOP)
            self.dropped += 1
            if ident not in self.stale_told:
                self.stale_told.add(ident)
                log.warning("agent %d: %s over a connection without a HELLO of incarnation %d, which plays its "
                            "seat: dropped", i, msg.kind, self.incarnations[i])
            return False
        return True

    def _tell_superseded(self, ident: bytes, agent: int, incarnation: int) -> None:
        """A HELLO from an older incarnation of `agent`: dropped, and answered with a STOP that
        says so; the agent exits without writing anything."""
        self.dropped += 1
        now = self.incarnations[agent]
        log.warning("agent %d: HELLO from incarnation %d dropped: incarnation %d plays its seat; telling it to exit",
                    agent, incarnation, now)
        body = {"reason": f"superseded: agent {agent} runs as incarnation {now} on another node", "superseded": True}
        try:
            self.sock.send_multipart([ident, protocol.encode(protocol.STOP, protocol.SERVER_ID, self.step, body)])
        except zmq.ZMQError:  # that connection is gone already
            pass

    def _adopted(self, agent: int, incarnation: int, link: object) -> None:
        """Incarnation `incarnation` of `agent` (another node adopted it) takes its seat; its
        neighbours are told where it publishes now (MOVED; later joiners: in their SPEC)."""
        self.incarnations[agent] = incarnation
        self.fenced_routes[agent] = set()
        log.warning("agent %d: incarnation %d says hello at step %d (adopted by another node): it takes the seat%s",
                    agent, incarnation, self.step, f", publishing at {link}" if isinstance(link, str) else "")
        self.seats.record({"event": "adopted", "agent": agent, "incarnation": incarnation, "step": self.step})
        if not (isinstance(link, str) and link):
            return
        self.moved[agent] = [incarnation, link]
        body = {"agent": agent, "incarnation": incarnation, "address": link}
        for j in range(self.cfg.n_agents):
            if j != agent and self.seats.state(j) not in (SeatState.ABSENT, SeatState.DEAD, SeatState.REMOVED):
                self._send(j, protocol.MOVED, self.step, body)

    def _drop(self, why: str) -> None:
        self.dropped += 1
        log.warning("dropped %s", why)
        return None

    def _spec(self, agent: int) -> dict:
        spec = protocol.spec_body(self.env.agent_spec(agent), agent, self.cfg.n_agents, self.cfg.n_envs)
        if self.moved:  # neighbours adopted by other nodes publish elsewhere now
            spec["moved"] = {str(j): where for j, where in self.moved.items() if j != agent}
        return spec | (ctde_spec(self.env, agent) if self.send_state else {})

    # -- liveness ----------------------------------------------------------------------------------
    def _heard_from(self, agent: int) -> None:
        now = time.monotonic()
        self.seats.heard(agent, now - self.last_heard[agent], self.step)  # a dead one is back
        self.last_heard[agent] = now

    def _tick(self) -> None:
        """Between polls, at most every interval/5: heartbeat the agents sent nothing lately and
        declare dead the ones silent for heartbeat_liveness intervals (only once running)."""
        now = time.monotonic()
        if now < self.next_tick:
            return
        interval = self.cfg.heartbeat_interval_s
        window = interval * self.cfg.heartbeat_liveness
        if self.next_tick and now - self.next_tick > window:  # this process itself was paused (SIGSTOP, swap)
            log.warning("env server was paused for %.2f s: the agents get a new liveness window",
                        now - self.next_tick)
            self.last_heard[self.last_heard > 0] = now
        self.next_tick = now + interval / 5
        # frames already queued are signs of life not yet counted: judge silence on an empty queue
        judge = self.seats.running and not self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
        for i in range(self.cfg.n_agents):
            if self.seats.state(i) is SeatState.REMOVED or self.last_heard[i] == 0:  # never heard: nobody yet
                continue
            if now - self.last_sent[i] >= interval:
                self._send(i, protocol.HEARTBEAT, self.step, {})
            silent = now - self.last_heard[i]
            if judge and self.seats.judged(i) and silent > interval * self.cfg.heartbeat_liveness:
                self.seats.silent(i, silent, int(silent / interval), self.step, self.cfg.missing_action)

    # -- phases ------------------------------------------------------------------------------------
    def _handle_control(self, msg: protocol.Message) -> None:
        i = msg.sender
        if msg.kind == protocol.HEARTBEAT:
            return  # its sign of life is already counted
        if msg.kind == protocol.HELLO:
            self.hello_steps[i] = msg.step
            if self.seats.hello(i, self.step):  # mid-run: not waited for until it is ready
                self._send(i, protocol.SPEC, self.step, self._spec(i))
        elif msg.kind == protocol.READY and self.seats.ready(i, self.step):
            pass
        else:
            self._drop(f"{msg.kind} from agent {i} outside its phase")

    def wait_for_agents(self) -> bool:
        end = time.monotonic() + self.cfg.startup_timeout_s
        while not self.seats.all_ready():
            if self.stop_requested or time.monotonic() > end:
                ready = self.seats.in_state(SeatState.READY)
                missing = sorted(set(range(self.cfg.n_agents)) - set(ready))
                if self.cfg.resume and ready and not self.stop_requested:
                    # a restart goes on with the agents that came back; the others may rejoin later
                    log.warning("agents %s not back after %.0f s: going on without them", missing,
                                self.cfg.startup_timeout_s)
                    return True
                log.error("agents %s not ready after %.0f s", missing, self.cfg.startup_timeout_s)
                return False
            self._tick()  # ready agents wait for the first result: keep them sure we are alive
            msg = self._recv(100)
            if msg is not None:
                self._handle_control(msg)
        return True

    def _step_complete(self, actions: dict[int, np.ndarray]) -> bool:
        waited = self.seats.waited_for()
        if waited:
            return waited <= actions.keys()
        # nobody to wait for (all dead or rejoining): do not race through the run on substitutes;
        # step once someone acts or is ready to rejoin, or after action_timeout_s
        return bool(actions) or bool(self.seats.in_state(SeatState.REJOINING))

    def _collect_actions(self, step: int, last_actions: list[np.ndarray]) -> tuple[list[np.ndarray], set[int]]:
        """Actions for `step` from every agent waited for, until action_timeout_s. A missing
        action is replaced according to missing_action. Returns the actions played and the
        agents whose own action was played."""
        actions = self._receive_actions(step)
        self._check_abandoned(actions)
        if not self.stop_requested:
            self.seats.step_done(step, set(actions), self.cfg.missing_action)
        full = [actions[i] if i in actions else self._substitute(i, last_actions[i]) for i in range(self.cfg.n_agents)]
        return full, set(actions)

    def _receive_actions(self, step: int) -> dict[int, np.ndarray]:
        """Valid actions for `step` by agent, until every agent waited for has sent one, or
        action_timeout_s; control messages that come meanwhile are handled."""
        actions: dict[int, np.ndarray] = {}
        end = time.monotonic() + self.cfg.action_timeout_s
        while not self._step_complete(actions) and not self.stop_requested:
            self._tick()
            left_ms = int((end - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            msg = self._recv(min(left_ms, 100))
            if msg is None:
                continue
            if msg.kind != protocol.ACTION:
                self._handle_control(msg)
            elif msg.step != step:
                self._drop(f"action of agent {msg.sender} for step {msg.step} at step {step}")
            else:
                act = self._parse_action(msg)
                if act is not None:
                    actions[msg.sender] = act
        return actions

    def _check_abandoned(self, actions: dict[int, np.ndarray]) -> None:
        """No agent acting or rejoining for startup_timeout_s: the run has nobody left; end it."""
        now = time.monotonic()
        if actions or self.seats.rejoining() or self.seats.waited_for():
            self.alone_since = None
        elif self.alone_since is None:
            self.alone_since = now
        elif now - self.alone_since > self.cfg.startup_timeout_s:
            log.error("no agent has acted or rejoined for %.0f s (startup_timeout_s): ending the run at step %d",
                      now - self.alone_since, self.step)
            self.abandoned = True

    def _substitute(self, agent: int, last: np.ndarray) -> np.ndarray:
        if self.cfg.missing_action == "noop":
            return self._idle_action(agent)
        if self.cfg.missing_action == "random":
            avail = self.env.avail_actions()[agent] if isinstance(self.env, HasActionMasks) else None
            if avail is not None:  # battles: uniform over the actions allowed now
                return np.argmax(avail * self.rng.random(avail.shape), axis=1).astype(np.int32)
            space = self.action_spaces[agent]
            if space["type"] == "continuous":
                low, high = space["low"], space["high"]
                return self.rng.uniform(low, high, (self.cfg.n_envs, space["dim"])).astype(np.float32)
            return self.rng.integers(0, space["n"], self.cfg.n_envs).astype(np.int32)
        return last  # last, remove

    def _parse_action(self, msg: protocol.Message) -> np.ndarray | None:
        space = self.action_spaces[msg.sender]
        if space["type"] == "continuous":
            dim = space["dim"]
            if len(msg.body[0]) != 4 * self.cfg.n_envs * dim:
                return self._drop(f"action of agent {msg.sender}: {len(msg.body[0])} bytes, "
                                  f"expected {self.cfg.n_envs} x {dim} float32")
            act = np.frombuffer(msg.body[0], dtype="<f4").reshape(self.cfg.n_envs, dim)
            if not np.isfinite(act).all():
                return self._drop(f"action of agent {msg.sender} with non-finite values")
            return np.clip(act, space["low"], space["high"])
        act = np.frombuffer(msg.body[0], dtype="<i4") if len(msg.body[0]) % 4 == 0 else np.zeros(0, np.int32)
        n = space["n"]
        if act.shape[0] != self.cfg.n_envs or act.min() < 0 or act.max() >= n:
            return self._drop(f"action of agent {msg.sender} with shape {act.shape} / values outside 0..{n - 1}")
        return act

    def _idle_action(self, agent: int) -> np.ndarray:
        if isinstance(self.env, HasIdleActions):  # battles: stop (action 0 is a move in SMAX)
            return self.env.idle_actions()[:, agent]
        space = self.action_spaces[agent]
        if space["type"] == "continuous":
            return np.zeros((self.cfg.n_envs, space["dim"]), np.float32)
        return np.zeros(self.cfg.n_envs, np.int32)

    def _ctde_extras(self, rewards: np.ndarray | None, actions: list[np.ndarray] | None) -> dict[str, bytes]:
        """ctde's extras, the same for every agent: team reward, global state, joint actions."""
        if not self.send_state:
            return {}
        extras = {"state": protocol.to_bytes(self.env.global_state())}
        if rewards is not None:
            extras["team"] = protocol.to_bytes(team_reward(self.env, rewards))
        if actions is not None:
            extras["joint_actions"] = protocol.to_bytes(joint_actions(actions, self.action_spaces, self.cfg.n_envs))
        return extras

    def _send_results(self, step: int, obs: list[np.ndarray], rewards: np.ndarray | None, done: np.ndarray,
                      last: bool, played: set[int] | None = None, actions: list[np.ndarray] | None = None) -> None:
        """RESULT `step` to every agent in the run. An agent rejoining gets the observation with an
        empty reward (the reward was for an action it did not take); a dead one, or one still in
        its handshake, gets nothing (results would pile up in its queue). An agent whose own
        action was not played (`played`: those whose was) is told so: it must not learn from it.
        `actions`: what every seat played at the step (ctde sends them)."""
        ends = self.env.episode_ends() if isinstance(self.env, AgentEpisodes) else None
        terminated = np.broadcast_to(done > 0, (self.cfg.n_agents, self.cfg.n_envs)) if ends is None \
            else ends.terminated
        extras = self._ctde_extras(rewards, actions)
        final_state = self.env.final_global_state() if self.send_state and isinstance(self.env, HasFinalState) \
            else None
        peers = self._peer_masks(ends) if rewards is not None else None
        avail = self.env.avail_actions() if isinstance(self.env, HasActionMasks) else None
        not_played = np.zeros(self.cfg.n_envs, np.uint8).tobytes()
        for i in range(self.cfg.n_agents):
            if not self.seats.gets_results(i):
                continue
            fresh = rewards is None or self.seats.fresh(i)
            if peers is not None:  # only agent i's own row: who counts as i's neighbour
                extras["in_range"] = np.ascontiguousarray(peers[i], np.uint8).tobytes()
                # ... and who counts i (where that differs: sight ranges): i sends its scalars only to them
                extras.pop("heard_by", None)
                if not np.array_equal(peers[:, i], peers[i]):
                    extras["heard_by"] = np.ascontiguousarray(peers[:, i], np.uint8).tobytes()
            if avail is not None and avail[i] is not None:
                extras["avail"] = np.ascontiguousarray(avail[i], np.uint8).tobytes()
            body = protocol.result_body(obs[i], None if fresh else rewards[i], terminated[i], last, extras,
                                        truncated=None if ends is None or fresh else ends.truncated[i],
                                        final_obs=None if ends is None else ends.final_obs[i],
                                        active=None if ends is None else ends.active[i],
                                        final_state=None if fresh else final_state)
            if not fresh and played is not None and i not in played:
                body[4]["executed"] = not_played
            self._send(i, protocol.RESULT, step, body)
        self.seats.results_sent(step)

    def _peer_masks(self, ends: EpisodeEnds | None) -> np.ndarray | None:
        """envs.peer_masks for the step just taken, with this run's range."""
        near = self.env.in_range(None if self.cfg.range_sight else self.cfg.range_radius) \
            if self.neighbourhoods else None
        return peer_masks(near, ends)

    # -- main loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        log.info("env server on %s: env %s, %d agents, %d copies, %d steps", cfg.address, cfg.env,
                 cfg.n_agents, cfg.n_envs, cfg.steps)
        if not self.wait_for_agents():
            self._broadcast_stop("not every agent came up")
            return 3
        metrics = MetricsWriter(self.dir / "metrics.csv", METRIC_FIELDS + list(self.task_metric_names),
                                append=cfg.resume, sinks=make_sinks(cfg.logger, self.dir))
        # resume: from the furthest step any agent reached, so no agent sees its steps go back
        start = min(cfg.steps, max([self.resumed_row_step, *self.hello_steps.values()])) if cfg.resume else 0
        if cfg.resume:
            log.info("resuming the run at step %d (last metrics row: step %d; agents at %s)", start,
                     self.resumed_row_step, dict(sorted(self.hello_steps.items())))
            self.seats.record({"event": "env_server_resumed", "step": start})
        obs = self._timed(self.env.reset)
        last_actions = [self._idle_action(i) for i in range(cfg.n_agents)]
        final_from = cfg.steps - max(1, round(cfg.steps * cfg.final_fraction))
        final_team, final_episodes = [], []
        t0 = t_log = time.monotonic()
        self.seats.start()
        self.last_heard[:] = t0  # every agent was just heard (READY); silence counts from here
        self._send_results(start, obs, None, np.zeros(cfg.n_envs, np.float32), last=cfg.steps == start)
        step = start
        for step in range(start, cfg.steps):
            self.step = step
            actions, played = self._collect_actions(step, last_actions)
            if self.stop_requested or self.abandoned:
                break
            self.env.count_joint_actions = step >= final_from
            self._announce_busy()
            obs, rewards, done = self._timed(self.env.step, actions)
            last_actions = actions
            self._send_results(step + 1, obs, rewards, done, last=step + 1 == cfg.steps, played=played,
                               actions=actions)
            team = float(rewards.sum(0).mean())
            self.substituted += cfg.n_agents - len(played)
            metrics.accumulate({"team_reward": team, "missing_actions": cfg.n_agents - len(played)})
            if step >= final_from:
                final_team.append(team)
            for episode in self.env.pop_task_metrics() if self.task_metric_names else ():
                metrics.accumulate(episode)
                if step >= final_from:
                    final_episodes.append(episode)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                now = time.monotonic()
                rate = cfg.log_every * cfg.n_envs / max(now - t_log, 1e-9)
                metrics.write({"step": step + 1, "env_steps": (step + 1) * cfg.n_envs,
                               "wall_s": round(self.wall_offset + now - t0, 3), "env_steps_per_s": round(rate, 1)})
                t_log = now
        return self._end(metrics, start, step, time.monotonic() - t0, final_team, final_episodes)

    def _end(self, metrics: MetricsWriter, start: int, step: int, wall: float, final_team: list[float],
             final_episodes: list[dict]) -> int:
        """After the step loop (completed, interrupted or abandoned): stats.json, the agents that
        missed the end told, sockets closed; the exit status."""
        cfg = self.cfg
        done_steps = step + 1 if not (self.stop_requested or self.abandoned) and cfg.steps > start else step
        if self.stop_requested or self.abandoned:
            self._broadcast_stop("run interrupted" if self.stop_requested else "no agent left")
        metrics.close()
        stats = self._stats(done_steps, start, wall, final_team, final_episodes)
        write_json_atomic(self.dir / "stats.json", stats)
        getattr(self.env, "close", lambda: None)()  # SC2: end the game processes
        if not (self.stop_requested or self.abandoned):
            self._tell_those_who_missed_the_end(done_steps)
        log.info("done: %d steps in %.1f s (%.0f env steps/s)", done_steps, wall, stats["env_steps_per_s"])
        self.sock.close()
        security.term(self.ctx)
        return 130 if self.stop_requested else 3 if self.abandoned else 0

    def _stats(self, done_steps: int, start: int, wall: float, final_team: list[float],
               final_episodes: list[dict]) -> dict:
        """stats.json: the run's figures, its final share's averages, the agents' events."""
        cfg = self.cfg
        stepped = done_steps - start  # by this process
        return {"env": cfg.env, "steps": done_steps, "n_envs": cfg.n_envs, "env_steps": done_steps * cfg.n_envs,
                 "wall_s": round(wall, 3), "env_steps_per_s": round(stepped * cfg.n_envs / max(wall, 1e-9), 1),
                 "resumed_from_step": start if cfg.resume else None,
                 "final": {"mean_team_reward": float(np.mean(final_team)) if final_team else None,
                           "joint_action_freq": getattr(self.env, "joint_action_freq", dict)(),
                           "episodes": len(final_episodes)} | {
                     name: float(np.mean([e[name] for e in final_episodes])) if final_episodes else None
                     for name in self.task_metric_names},
                 "env_link_bytes_sent_per_agent_step": (self.bytes_sent / max(stepped, 1)).round(1).tolist(),
                 "env_link_bytes_recv_per_agent_step": (self.bytes_recv / max(stepped, 1)).round(1).tolist(),
                 "dropped_frames": self.dropped, "interrupted": self.stop_requested, "abandoned": self.abandoned,
                 "agent_events": self.seats.events, "replaced_actions": getattr(self.env, "replaced_actions", 0),
                 # a share of more than a percent or so: the agents learned from a run that was not
                 # only theirs (an overloaded machine starves them past the liveness window)
                 "substituted_actions": {"count": self.substituted,
                                         "share": round(self.substituted / max(stepped * cfg.n_agents, 1), 4)},
                 "memory": memory_mb()}

    def _timed(self, fn, *args):
        """fn(*args), its duration kept among the recent env calls (a reset of every world: seconds
        for 64 agents x 8 copies on a busy machine)."""
        t0 = time.monotonic()
        out = fn(*args)
        self.env_call_s.append(time.monotonic() - t0)
        return out

    @property
    def slowest_env_s(self) -> float:
        """The longest of the recent env resets and steps."""
        return max(self.env_call_s, default=0.0)

    def _announce_busy(self) -> None:
        """Before a step that may outlast the agents' liveness window (the slowest recent env call,
        twice over, is more than one heartbeat interval): a HEARTBEAT that says how long this
        server may now be silent. Nothing is sent while steps are quick."""
        busy_s = 2 * self.slowest_env_s
        if busy_s <= self.cfg.heartbeat_interval_s:
            return
        for i in range(self.cfg.n_agents):
            if self.seats.gets_results(i):
                self._send(i, protocol.HEARTBEAT, self.step, {"busy_s": round(busy_s, 3)})

    def _tell_those_who_missed_the_end(self, last_step: int) -> None:
        """The run is complete, but agents whose seats were dead at the end (cut off, paused,
        reconnecting) never got the last result. For up to end_linger_s, answer each one's next
        frame (a HELLO from a reconnecting agent, a heartbeat or action from a paused one) with a
        STOP that says the run completed, so it ends cleanly rather than wait for a server that
        is gone. Their seats stay as they are: the run's events and stats are already final."""
        missed = {i for i in range(self.cfg.n_agents)
                  if not self.seats.gets_results(i) and self.seats.state(i) is not SeatState.REMOVED}
        if not missed or self.cfg.end_linger_s <= 0:
            return
        log.info("run complete at step %d; agents %s missed the end: telling them, for up to %.0f s",
                 last_step, sorted(missed), self.cfg.end_linger_s)
        body = {"reason": f"the run completed at step {last_step}", "completed": True, "step": last_step}
        end = time.monotonic() + self.cfg.end_linger_s
        while missed and time.monotonic() < end and not self.stop_requested:
            if not self.sock.poll(100):
                continue
            parts, user = security.recv_multipart(self.sock, bool(self.cfg.agent_keys))
            msg = self._parse_frame(parts, user)
            if msg is not None and msg.sender in missed:
                self._send(msg.sender, protocol.STOP, last_step, body)
                missed.discard(msg.sender)
                log.info("told agent %d (%s at step %d) that the run is over", msg.sender, msg.kind, msg.step)
        if missed:
            log.warning("agents %s did not come back within %.0f s to hear that the run is over",
                        sorted(missed), self.cfg.end_linger_s)

    def _broadcast_stop(self, reason: str) -> None:
        for i in range(self.cfg.n_agents):
            self._send(i, protocol.STOP, 0, {"reason": reason})
