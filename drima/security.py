"""CurveZMQ on every tcp socket of a run, the ZeroMQ guide's Ironhouse pattern with pyzmq's own
`zmq.auth`: each server socket (the env server's ROUTER, each agent's PUB, node 0's rendezvous)
is a CURVE server whose ZAP handler knows the public keys allowed to connect; each client
socket (an agent's DEALER and SUB, a node's REQ) proves its own key pair and checks the
server's public key. Frames are encrypted and authenticated; a connection that fails the
handshake never reaches the application.

Keys: every agent has its own key pair, the env server has one. A connection's User-Id (a frame
property that libzmq sets from the ZAP reply) is the name its key was registered under, e.g. the
agent id "3", so the env server can check that a frame claiming agent 3 came over a connection
that proved agent 3's secret key (`user_id`).

Multi-host: the nodes share one run secret (a file, or DRIMA_RUN_SECRET; never a command-line
argument, which `ps` shows). The rendezvous key pairs are derived from it (`rendezvous_keys`),
so only a node that holds it can complete the rendezvous handshake; agents' key pairs are made
on each agent's own node and only their PUBLIC keys travel in the rendezvous table.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth import load_certificate
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("drima.security")

RUN_SECRET_ENV = "DRIMA_RUN_SECRET"
MIN_RUN_SECRET_BYTES = 16
_REFUSALS_LOGGED = 5  # per server socket: a peer that reconnects every 100 ms must not flood the log


class SecurityError(ValueError):
    pass


@dataclass(frozen=True)
class KeyPair:
    """A CurveZMQ key pair, both halves as 40-character Z85 text."""

    public: str
    secret: str


def new_keypair() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def write_keypair(folder: str | Path, name: str, pair: KeyPair | None = None) -> tuple[KeyPair, Path]:
    """A key pair (`pair`, else a fresh one) in `folder`/`name`.key_secret (pyzmq's certificate
    format), created 0600 so that no other user can read it even for a moment; returns the pair
    and the file."""
    pair = pair or new_keypair()
    path = Path(folder) / f"{name}.key_secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'curve\n    public-key = "{pair.public}"\n    secret-key = "{pair.secret}"\n')
    return pair, path


def load_keypair(path: str) -> KeyPair | None:
    """The key pair in a file that `write_keypair` wrote; None for "" (no CURVE)."""
    if not path:
        return None
    public, secret = load_certificate(path)
    if secret is None:
        raise SecurityError(f"{path}: no secret key")
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def is_public_key(text: object) -> bool:
    """A 40-character Z85 CurveZMQ public key."""
    if not isinstance(text, str) or len(text) != 40:
        return False
    try:
        z85.decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, KeyError):
        return False
    return True


# -- the run secret (multi-host) -------------------------------------------------------------------
def run_secret_available(path: str) -> str | None:
    """Why the run secret cannot be read, or None when it can (for the launch config checks)."""
    try:
        read_run_secret(path)
    except SecurityError as exc:
        return str(exc)
    return None


def read_run_secret(path: str) -> bytes:
    """The run secret every node of a run is given: the file at `path` (stripped), else the
    DRIMA_RUN_SECRET environment variable. At least 16 bytes."""
    if path:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as exc:
            raise SecurityError(f"run secret file {path}: {exc.strerror}") from None
        where = path
    else:
        secret, where = os.environ.get(RUN_SECRET_ENV, "").strip().encode(), RUN_SECRET_ENV
    if not secret:
        raise SecurityError(f"no run secret: set {RUN_SECRET_ENV} or give --run-secret-file on every node "
                            "(or --insecure)")
    if len(secret) < MIN_RUN_SECRET_BYTES:
        raise SecurityError(f"run secret from {where}: {len(secret)} bytes, use at least {MIN_RUN_SECRET_BYTES}")
    return secret


def rendezvous_keys(run_secret: bytes) -> tuple[KeyPair, KeyPair]:
    """(node 0's rendezvous server key pair, the key pair every other node joins with), both
    derived from the run secret: whoever holds it can join, nobody else can finish the handshake."""
    return _derived(run_secret, b"server"), _derived(run_secret, b"member")


def agent_keypair(run_secret: bytes, agent_id: int) -> KeyPair:
    """Agent `agent_id`'s key pair in a multi-host run, derived from the run secret: any node that
    holds the secret can prove the agent's identity, so a surviving node can adopt an agent whose
    host is cut off (launch/adopt.py). Fencing (the incarnation in HELLO) keeps it to one seat."""
    return _derived(run_secret, f"agent {agent_id}".encode(), b"drima agent ")


def _derived(run_secret: bytes, role: bytes, label: bytes = b"drima rendezvous ") -> KeyPair:
    # any 32 bytes are a valid Curve25519 secret key; the public key follows from it
    secret = z85.encode(hashlib.sha256(label + role + b"\0" + run_secret).digest())
    return KeyPair(zmq.curve_public(secret).decode("ascii"), secret.decode("ascii"))


# -- sockets ---------------------------------------------------------------------------------------
def serve(sock: zmq.Socket, own: KeyPair, allowed: dict[str, str], label: str) -> None:
    """Make `sock` a CURVE server (call before bind) that accepts only the public keys in
    `allowed` (name -> key); a frame's User-Id is the name its sender's key has there."""
    gate = _gate(sock.context)
    domain = f"drima-{id(sock)}"
    gate.configure_curve_callback(domain, _Allowed(label, allowed))
    gate.names.update({key: name for name, key in allowed.items()})
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, own.secret.encode("ascii"))


def connect(sock: zmq.Socket, own: KeyPair | None, server_key: str, address: str) -> None:
    """Connect `sock` to `address`, as a CURVE client that proves `own` and accepts only a server
    with `server_key`; a plain connect when `own` is None. A socket may connect to several servers,
    each with its own key (the options are read at connect time)."""
    if own is not None:
        sock.setsockopt(zmq.CURVE_PUBLICKEY, own.public.encode("ascii"))
        sock.setsockopt(zmq.CURVE_SECRETKEY, own.secret.encode("ascii"))
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
    sock.connect(address)


def recv_multipart(sock: zmq.Socket, curve: bool) -> tuple[list[bytes], str | None]:
    """A message's frames and, with `curve`, its User-Id (the name of the key its connection
    proved); None without."""
    if not curve:  # plain frames are cheaper to receive as bytes
        return sock.recv_multipart(), None
    frames = sock.recv_multipart(copy=False)
    return [f.bytes for f in frames], user_id(frames[-1])


def user_id(frame: zmq.Frame) -> str | None:
    try:
        return frame.get("User-Id") or None
    except zmq.ZMQError:  # no ZAP handler took part: a plain connection
        return None


class Refusals:
    """Logs the connections a CURVE server socket refuses before any ZAP check: a peer without
    CURVE, or one that does not know this server's public key (it cannot hold the secret it is
    derived from). A few lines, then a count, so that a peer retrying every 100 ms cannot flood
    the log."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL

    def __init__(self, sock: zmq.Socket, label: str):
        self.label = label
        self.monitor = sock.get_monitor_socket(self.EVENTS)
        self.count = 0

    def log(self) -> int:
        """Log the refusals seen since the last call; returns how many so far."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.count += 1
            if self.count <= _REFUSALS_LOGGED:
                log.warning("%s: refused a connection on %s: CurveZMQ handshake failed (%s): not a member of "
                            "this run%s", self.label, event["endpoint"].decode(errors="replace"),
                            _handshake_error(event["value"]),
                            " (further refusals are not logged)" if self.count == _REFUSALS_LOGGED else "")
        return self.count

    def close(self) -> None:
        self.monitor.close(linger=0)


def _handshake_error(code: int) -> str:
    names = {zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "no CURVE",
             zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "wrong server key"}
    return names.get(code, f"error {code:#x}")


def term(ctx: zmq.Context) -> None:
    """Stop the context's ZAP handler, if `serve` started one, then terminate the context."""
    with _lock:
        entry = _gates.pop(id(ctx), None)
    if entry is not None:
        entry[1].stop()
    ctx.term()


class _Gate(ThreadAuthenticator):
    """One ZAP handler per context: per server socket (ZAP domain) the keys it allows; the
    User-Id of an accepted connection is the name of its key."""

    def __init__(self, ctx: zmq.Context):
        super().__init__(ctx, log=logging.getLogger("drima.security.zap"))
        self.names: dict[str, str] = {}  # public key (Z85) -> name

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names.get(z85.encode(client_public_key).decode("ascii"), "")


class _Allowed:
    """pyzmq's credentials provider for one server socket: the keys it lets in."""

    def __init__(self, label: str, allowed: dict[str, str]):
        self.label = label
        self.keys = {key.encode("ascii") for key in allowed.values()}
        self.refused = 0

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.keys:
            return True
        self.refused += 1
        if self.refused <= _REFUSALS_LOGGED:
            log.warning("%s: refused a connection with an unknown CurveZMQ key %s%s", self.label,
                        key.decode("ascii", "replace"), " (further refusals are not logged)"
                        if self.refused == _REFUSALS_LOGGED else "")
        return False


_lock = threading.Lock()
_gates: dict[int, tuple[zmq.Context, _Gate]] = {}  # id(context) -> (the context, its ZAP handler)


def _gate(ctx: zmq.Context) -> _Gate:
    with _lock:
        entry = _gates.get(id(ctx))
        if entry is None or entry[0] is not ctx:  # (a context that was never term()ed here may share an id)
            entry = _gates[id(ctx)] = (ctx, _Gate(ctx))
            entry[1].start()
        return entry[1]
