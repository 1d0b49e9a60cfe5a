"""The one message codec of DRIMA: msgpack frames, versioned, validated on decode.

Every frame is a msgpack array ``[version, kind, sender, step, body]``. Senders build
frames with :func:`encode`, which rejects unknown kinds loudly. Receivers call
:func:`decode`, which raises :class:`ProtocolError` (never anything else) on a malformed,
oversized, wrong-version or unknown frame, so a receiver can log it, drop it and go on.

Arrays travel as raw little-endian bytes (float32 rewards, int32 / float32 actions):
a neighbour message for K environment copies is ``K * 4`` bytes of rewards plus a small
header, which keeps the per-peer payload far under 64 bytes per environment step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .types import StepInfo

PROTOCOL_VERSION = 6  # 2: RESULT has extras; 3: its done is "terminated", truncation apart; 4: "executed";
# 5: "joint_actions" and "final_state" (ctde); 6: HELLO says an incarnation, MOVED (agents adopted by
# another node)
MAX_FRAME_BYTES = 8 * 1024 * 1024  # larger frames are dropped unread
MAX_LINK_FRAME_BYTES = 64 * 1024  # neighbour frames are ~50 bytes: a SUB drops a peer that sends more
MAX_SCALAR = 1e9  # |reward| or |mu| beyond this is refused: float32 sums of such values overflow
SERVER_ID = -1  # the env server's sender id

# Message kinds. agent -> env server
HELLO = "hello"  # body: {} ; asks for the env spec. An agent restarted on another node (adopted) adds
# {"incarnation": k >= 1, "link": its new PUB address}: the server keeps the highest k per agent and
# answers a HELLO with a lower k with STOP {"superseded": True} (fencing: one process per seat)
READY = "ready"  # body: {} ; neighbour links are up, the agent can start
ACTION = "act"  # body: [action bytes] ; int32 x K (discrete) or float32 x K*dim (continuous)
# env server -> agent
SPEC = "spec"  # body: dict (obs_dim, action space, n_envs, ...)
RESULT = "result"  # body: [obs bytes, reward bytes, terminated bytes, last, extras]; see Result
# terminated: float32 x K, 1 where this agent's episode ended in a terminal state at this step.
# extras: {name: bytes}, only what this agent's env, mode and topology need:
#   "truncated": uint8 x K, 1 where this agent's episode was cut (a time limit): not terminal;
#   "final_obs": float32 x (K * obs_dim), the observation the episode ended on, where truncated
#      (obs is then the next episode's first);
#   "active": uint8 x K, 0 where this agent is out of the episode (it ended before the others'):
#      its action is not played and its reward is 0 until the copy resets (absent: all 1);
#   "executed": uint8 x K, 0 where this agent's action of the previous step was not played (it came
#      after action_timeout_s, or not at all: its seat played missing_action); absent: all played;
#   "team": float32 x K, the team reward (ctde mode or --global-state only: MPE, SMAX, SC2 the mean over
#      agents, others the sum);
#   "in_range": uint8 x (n_agents * K), row j = does agent j count as a neighbour in each copy: within
#      range (range topologies) and in the episode (envs where agents leave episodes early);
#   "heard_by": uint8 x (n_agents * K), row j = does agent j count this agent as a neighbour, where that
#      is not "in_range" (range:sight: each unit's own radius); absent: the same as "in_range". The agent
#      sends its scalars only to those peers;
#   "avail": uint8 x (K * n_actions), the actions this agent may take at this observation (SMAX, SC2);
#   "state": float32 x (K * state_dim), the global state at this observation (ctde or --global-state; the
#      SPEC says state_dim);
#   "final_state": float32 x (K * state_dim), the global state each truncated copy's episode ended on
#      (other rows: state), where the env provides it (MPE) and a copy was truncated;
#   "joint_actions": float32 x (K * joint_action_dim), the actions every agent played at the previous
#      step (its own, or the substitute its seat played), in agent order: a discrete action one-hot,
#      a continuous one its values in [-1, 1] (ctde or --global-state; the SPEC says joint_action_dim and
#      own_action_at).
STOP = "stop"  # body: {"reason": str}; {"superseded": True}: another incarnation of this agent plays its seat
# an agent moved to another node: {"agent": id, "incarnation": k, "address": its PUB}; its neighbours reconnect
MOVED = "moved"
# both ways on the env link: "I am alive", sent only when nothing else was sent for one
# heartbeat interval (Paranoid Pirate); any frame from a peer counts as a sign of life
HEARTBEAT = "hb"  # body: {} ; from the env server also {"busy_s": s}: "I may be silent for s seconds now"
# launcher node r -> node 0's rendezvous (REQ/ROUTER), multi-node runs only
# with CurveZMQ, JOIN and TABLE also carry "keys": {"env": public key | None, "agents": {id: public key}}
JOIN = "join"  # body: {"config": dict, "addresses": {"env": str | None, "agents": {id: str}}}
TABLE = "table"  # body: {"env": str, "agents": {id: str}} or {"error": str}
# agent -> agent (neighbour links)
SCALARS = "dri"  # body: [reward bytes (float32 x K), mu]
LINK_HELLO = "link-hello"  # body: {} ; published until the run starts

KINDS = frozenset({HELLO, READY, ACTION, SPEC, RESULT, STOP, HEARTBEAT, JOIN, TABLE, SCALARS, LINK_HELLO, MOVED})


class ProtocolError(ValueError):
    """A frame that does not follow this protocol."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    sender: int
    step: int
    body: Any


def encode(kind: str, sender: int, step: int, body: Any) -> bytes:
    """Pack one frame. Raises ValueError for an unknown kind (a bug in the sender)."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    return msgpack.packb([PROTOCOL_VERSION, kind, int(sender), int(step), body], use_bin_type=True)


def decode(frame: bytes) -> Message:
    """Unpack and validate one frame; raises ProtocolError with the reason."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, list) or len(obj) != 5:
        raise ProtocolError("frame is not a 5-element array [version, kind, sender, step, body]")
    version, kind, sender, step, body = obj
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r}, expected {PROTOCOL_VERSION}")
    if kind not in KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    if type(sender) is not int or type(step) is not int:
        raise ProtocolError("sender and step must be integers")
    if step < 0:
        raise ProtocolError(f"negative step {step}")
    _check_body(kind, body)
    return Message(kind, sender, step, body)


def _check_body(kind: str, body: Any) -> None:
    if kind == SCALARS:
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[0], bytes)
                and isinstance(body[1], (int, float)) and len(body[0]) % 4 == 0):
            raise ProtocolError("scalars body must be [float32 bytes, mu]")
        # a NaN or huge value from a neighbour would poison the learner (and crash its sampling)
        if not abs(body[1]) <= MAX_SCALAR or not np.all(np.abs(np.frombuffer(body[0], "<f4")) <= MAX_SCALAR):
            raise ProtocolError(f"scalars must be finite numbers within +-{MAX_SCALAR:g}")
    elif kind == ACTION:
        if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], bytes) and len(body[0]) % 4 == 0):
            raise ProtocolError("action body must be [int32 or float32 bytes]")
    elif kind == RESULT:
        if not (isinstance(body, list) and len(body) == 5 and all(isinstance(b, bytes) for b in body[:3])
                and isinstance(body[3], bool) and isinstance(body[4], dict)
                and all(isinstance(k, str) and isinstance(v, bytes) for k, v in body[4].items())):
            raise ProtocolError("result body must be [obs bytes, reward bytes, done bytes, last, {name: bytes}]")
    elif not isinstance(body, dict):
        raise ProtocolError(f"{kind} body must be a map")


def spec_body(agent_spec: dict, agent_id: int, n_agents: int, n_envs: int) -> dict:
    """The body of a SPEC frame: the env's spec of one agent and where it sits in the run; what
    the agent builds its learner from (the launcher checks learners with the same)."""
    return agent_spec | {"n_envs": n_envs, "agent_id": agent_id, "n_agents": n_agents, "protocol": PROTOCOL_VERSION}


@dataclass(frozen=True, slots=True)
class Result:
    """A RESULT frame's body, decoded and checked against the agent's sizes."""

    obs: np.ndarray
    """(K, obs_dim) float32: the observation to act on"""
    reward: np.ndarray | None
    """(K,) float32: the reward for the action sent at the previous step; None in the first result
    after (re)joining, which the agent only acts on"""
    terminated: np.ndarray
    """(K,) bool"""
    truncated: np.ndarray
    """(K,) bool"""
    final_obs: np.ndarray | None
    """(K, obs_dim) float32 where truncated (other rows: obs), or None"""
    active: np.ndarray
    """(K,) bool: the agent is in the episode at obs"""
    executed: np.ndarray
    """(K,) bool: the agent's own action of the previous step was played (else a substitute was:
    the reward does not follow from the agent's action, so there is nothing to learn from it)"""
    last: bool
    """the run's last result"""
    extras: dict[str, bytes]
    """the raw extras, for the ones read elsewhere (team, in_range, heard_by)"""
    avail: np.ndarray | None = None
    """(K, n_actions) bool: the actions allowed at obs, or None (all)"""
    state: np.ndarray | None = None
    """(K, state_dim) float32: the global state at obs (ctde), or None"""
    final_state: np.ndarray | None = None
    """(K, state_dim) float32: the state truncated copies ended on (other rows: state), or None"""
    joint_actions: np.ndarray | None = None
    """(K, joint_action_dim) float32: every agent's action at the previous step (ctde), or None"""

    def next_obs(self) -> np.ndarray:
        """The observation each copy's transition led to: the final one where the episode was truncated."""
        if self.final_obs is None:
            return self.obs
        return np.where(self.truncated[:, None], self.final_obs, self.obs)

    def info(self) -> StepInfo | None:
        """What comes with obs, to act on: action masks, global state, joint actions (None: nothing)."""
        if self.avail is None and self.state is None and self.joint_actions is None:
            return None
        return StepInfo(self.avail, self.state, self.joint_actions)

    def next_info(self) -> StepInfo | None:
        """info() as the transition that led here sees it: where a copy was truncated and the env
        sent the state its episode ended on, that state (as next_obs() is the final observation)."""
        info = self.info()
        if info is None or self.final_state is None or self.state is None:
            return info
        return info.ended_on(self.truncated, self.final_state)


def result_body(obs: np.ndarray, reward: np.ndarray | None, terminated: np.ndarray, last: bool,
                extras: dict[str, bytes], truncated: np.ndarray | None = None, final_obs: np.ndarray | None = None,
                active: np.ndarray | None = None, final_state: np.ndarray | None = None) -> list:
    """The body of a RESULT frame; the optional parts travel only where they say something."""
    extras = dict(extras)
    if truncated is not None and truncated.any():
        extras["truncated"] = np.ascontiguousarray(truncated, np.uint8).tobytes()
        if final_obs is not None:
            extras["final_obs"] = to_bytes(final_obs)
        if final_state is not None:
            extras["final_state"] = to_bytes(final_state)
    if active is not None and not active.all():
        extras["active"] = np.ascontiguousarray(active, np.uint8).tobytes()
    return [to_bytes(obs), b"" if reward is None else to_bytes(reward), to_bytes(terminated), bool(last), extras]


def decode_result(body: list, n_envs: int, obs_dim: int, n_actions: int = 0, state_dim: int = 0,
                  joint_action_dim: int = 0) -> Result:
    """Check a RESULT body (already shape-checked by decode) against K, obs_dim and the sizes the
    SPEC gave (n_actions for action masks; state_dim, joint_action_dim in ctde: 0 = not expected,
    not read); raises ProtocolError on any size mismatch."""
    obs_b, reward_b, term_b, last, extras = body

    def sized(buf: bytes, count: int, dtype: str, what: str) -> np.ndarray:
        item = np.dtype(dtype).itemsize
        if len(buf) != count * item:
            raise ProtocolError(f"result {what}: {len(buf)} bytes, expected {count} x {item}")
        return np.frombuffer(buf, dtype).copy()  # writable: torch wants writable inputs

    obs = sized(obs_b, n_envs * obs_dim, "<f4", "obs").reshape(n_envs, obs_dim)
    reward = sized(reward_b, n_envs, "<f4", "reward") if reward_b else None
    if reward is not None and not np.all(np.abs(reward) <= MAX_SCALAR):
        raise ProtocolError(f"result reward: not finite, or beyond +-{MAX_SCALAR:g}")
    terminated = sized(term_b, n_envs, "<f4", "terminated") > 0
    truncated = sized(extras["truncated"], n_envs, "u1", "truncated") > 0 if "truncated" in extras \
        else np.zeros(n_envs, bool)
    final_obs = sized(extras["final_obs"], n_envs * obs_dim, "<f4", "final_obs").reshape(n_envs, obs_dim) \
        if "final_obs" in extras else None
    active = sized(extras["active"], n_envs, "u1", "active") > 0 if "active" in extras else np.ones(n_envs, bool)
    executed = sized(extras["executed"], n_envs, "u1", "executed") > 0 if "executed" in extras \
        else np.ones(n_envs, bool)
    avail = sized(extras["avail"], n_envs * n_actions, "u1", "avail").reshape(n_envs, n_actions) > 0 \
        if "avail" in extras and n_actions else None

    def rows(name: str, dim: int) -> np.ndarray | None:
        return sized(extras[name], n_envs * dim, "<f4", name).reshape(n_envs, dim) if name in extras and dim else None

    return Result(obs, reward, terminated, truncated, final_obs, active, executed, bool(last), extras, avail,
                  rows("state", state_dim), rows("final_state", state_dim), rows("joint_actions", joint_action_dim))


def floats(buf: bytes) -> np.ndarray:
    """A writable float32 array from raw bytes (a copy: torch wants writable inputs)."""
    return np.frombuffer(buf, dtype="<f4").copy()


def to_bytes(arr: np.ndarray, dtype: str = "<f4") -> bytes:
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()
