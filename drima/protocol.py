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

PROTOCOL_VERSION = 2  # 2: RESULT carries an extras map (team reward, in-range peers)
MAX_FRAME_BYTES = 8 * 1024 * 1024  # larger frames are dropped unread
MAX_LINK_FRAME_BYTES = 64 * 1024  # neighbour frames are ~50 bytes: a SUB drops a peer that sends more
MAX_SCALAR = 1e9  # |reward| or |mu| beyond this is refused: float32 sums of such values overflow
SERVER_ID = -1  # the env server's sender id

# Message kinds. agent -> env server
HELLO = "hello"  # body: {} ; asks for the env spec
READY = "ready"  # body: {} ; neighbour links are up, the agent can start
ACTION = "act"  # body: [action bytes] ; int32 x K (discrete) or float32 x K*dim (continuous)
# env server -> agent
SPEC = "spec"  # body: dict (obs_dim, action space, n_envs, ...)
RESULT = "result"  # body: [obs bytes, reward bytes, done bytes, last, extras]
# extras: {name: bytes}, only what this agent's mode and topology need:
#   "team": float32 x K, the team reward (ctde mode only);
#   "in_range": uint8 x (n_agents * K), row j = is agent j within range in each copy (range topologies);
#   "avail": uint8 x (K * n_actions), the actions this agent may take at this observation (SMAX, SC2);
#   "state": float32 x (K * state_dim), the global state at this observation (ctde with SMAX, SC2).
STOP = "stop"  # body: {"reason": str}
# both ways on the env link: "I am alive", sent only when nothing else was sent for one
# heartbeat interval (Paranoid Pirate); any frame from a peer counts as a sign of life
HEARTBEAT = "hb"  # body: {}
# launcher node r -> node 0's rendezvous (REQ/ROUTER), multi-node runs only
JOIN = "join"  # body: {"config": dict, "addresses": {"env": str | None, "agents": {id: str}}}
TABLE = "table"  # body: {"env": str, "agents": {id: str}} or {"error": str}
# agent -> agent (neighbour links)
SCALARS = "dri"  # body: [reward bytes (float32 x K), mu]
LINK_HELLO = "link-hello"  # body: {} ; published until the run starts

KINDS = frozenset({HELLO, READY, ACTION, SPEC, RESULT, STOP, HEARTBEAT, JOIN, TABLE, SCALARS, LINK_HELLO})


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


def floats(buf: bytes) -> np.ndarray:
    """A writable float32 array from raw bytes (a copy: torch wants writable inputs)."""
    return np.frombuffer(buf, dtype="<f4").copy()


def to_bytes(arr: np.ndarray, dtype: str = "<f4") -> bytes:
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()
