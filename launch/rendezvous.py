"""The multi-node rendezvous: how the launchers of one run, one per node, learn each other's
addresses and public keys (torchrun convention: every node runs the same command with its own
--node-rank).

Node 0 binds a ROUTER socket at --rendezvous HOST:PORT. Every other node connects a REQ socket
and sends JOIN with its launch config, the advertised addresses of its agents' sockets and (with
CurveZMQ) their public keys. Once all nodes have joined, node 0 answers each with the full TABLE
(env server address and key, every agent's PUB address and key), or with an error if a node's
config differs from its own. Nodes may start in any order: ZeroMQ keeps reconnecting until node 0
is up.

Trust (docs/security.md): with CurveZMQ (the default) the rendezvous is encrypted and only a
node that holds the run secret completes the handshake; anyone else is refused with a log line
and the run goes on. A JOIN may announce only the agents the plan gives to the sender's node rank,
never node 0's or another node's; a malformed JOIN gets an error answer, a garbage frame is
dropped, and neither counts as a node joining nor ends the run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import zmq

from drima import protocol, security

from .plan import AddressTable, LaunchConfig, node_agents, uses_curve

log = logging.getLogger("drima.launch")

NODE_FIELDS = {"run_dir", "host", "bind_host", "node_rank", "rendezvous_timeout_s", "render",
               "run_secret_file", "adopt_after_s"}  # may differ per node (only some nodes adopt)


class RendezvousError(RuntimeError):
    pass


STOPPED = "stopped while waiting for the other nodes at the rendezvous"


def shared_config(cfg: LaunchConfig) -> dict:
    """The part of the launch config that every node must agree on."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NODE_FIELDS}


def _endpoint(cfg: LaunchConfig, bind: bool) -> str:
    host, _, port = cfg.rendezvous.rpartition(":")
    if not host or not port.isdigit():
        raise RendezvousError(f"--rendezvous {cfg.rendezvous!r}: expected HOST:PORT")
    return f"tcp://{(cfg.bind_host or host) if bind else host}:{port}"


def exchange(cfg: LaunchConfig, own: AddressTable, stop: threading.Event | None = None) -> AddressTable:
    """Trade this node's addresses (and public keys) for the whole table; raises RendezvousError,
    also when `stop` is set before every node has joined."""
    ctx = zmq.Context()  # its own: the ZAP handler of the rendezvous lives and ends with it
    stop = stop or threading.Event()
    try:
        keys = security.rendezvous_keys(security.read_run_secret(cfg.run_secret_file)) if uses_curve(cfg) else None
        return _serve(ctx, cfg, own, stop, keys) if cfg.node_rank == 0 else _join(ctx, cfg, own, stop, keys)
    except zmq.ZMQError as exc:
        raise RendezvousError(f"rendezvous {cfg.rendezvous}: {exc}") from None
    except security.SecurityError as exc:
        raise RendezvousError(str(exc)) from None
    finally:
        security.term(ctx)


class _Meeting:
    """Node 0's view of the rendezvous: who joined, with what, and what each will be answered."""

    def __init__(self, cfg: LaunchConfig, own: AddressTable):
        self.cfg, self.mine = cfg, shared_config(cfg)
        self.table: AddressTable = {"env": own["env"], "agents": dict(own["agents"])}
        if "keys" in own:
            self.table["keys"] = {"env": own["keys"]["env"], "agents": dict(own["keys"]["agents"])}
        self.waiting: dict[int, bytes] = {}  # node rank -> REQ routing id
        self.errors: dict[int, str] = {}

    def handle(self, sock: zmq.Socket, parts: list[bytes]) -> None:
        """One message on the ROUTER: a valid JOIN is recorded; anything else is logged and dropped
        (a malformed JOIN is answered with the reason, so that its node stops waiting)."""
        if len(parts) != 3 or parts[1] != b"":
            log.warning("rendezvous: dropped a %d-part message (not a JOIN from a REQ socket)", len(parts))
            return
        try:
            msg = protocol.decode(parts[2])
            if msg.kind != protocol.JOIN or not 0 < msg.sender < self.cfg.nodes:
                raise protocol.ProtocolError(f"{msg.kind} from node {msg.sender} (nodes are 1..{self.cfg.nodes - 1})")
        except protocol.ProtocolError as exc:
            log.warning("rendezvous: dropped %s", exc)
            return
        problem = join_problem(self.cfg, msg.sender, msg.body)
        if problem:
            log.warning("rendezvous: refused node %d's JOIN: %s", msg.sender, problem)
            sock.send_multipart([parts[0], b"", protocol.encode(protocol.TABLE, 0, 0, {"error": problem})])
            return
        self._record(msg.sender, parts[0], msg.body)

    def _record(self, node: int, ident: bytes, body: dict) -> None:
        theirs = body["config"]
        if theirs != self.mine:
            diff = sorted(k for k in self.mine.keys() | theirs.keys() if self.mine.get(k) != theirs.get(k))
            self.errors[node] = f"node {node}'s launch options differ from node 0's: {diff}"
        else:
            self.errors.pop(node, None)
            self.table["agents"].update(body["addresses"]["agents"])
            if "keys" in self.table:
                self.table["keys"]["agents"].update(body["keys"]["agents"])
        self.waiting[node] = ident  # a node that joins again (restarted) is answered on its new socket
        log.info("rendezvous: node %d joined (%d of %d)", node, len(self.waiting) + 1, self.cfg.nodes)

    def answer_all(self, sock: zmq.Socket) -> None:
        for node, ident in self.waiting.items():
            body = {"error": self.errors[node]} if node in self.errors else self.table
            sock.send_multipart([ident, b"", protocol.encode(protocol.TABLE, 0, 0, body)])


def join_problem(cfg: LaunchConfig, node: int, body: object) -> str | None:
    """Why node `node`'s JOIN body cannot be accepted, or None. A node announces exactly the agents
    the plan gives to its rank, each with a tcp address (and, with CURVE, a public key)."""
    if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
        return "no launch config"
    addresses = body.get("addresses")
    agents = addresses.get("agents") if isinstance(addresses, dict) else None
    if not isinstance(agents, dict):
        return "no agent addresses"
    own = {str(i) for i in node_agents(dataclasses.replace(cfg, node_rank=node))}
    if set(agents) != own:
        return (f"it announces agents {sorted(agents, key=str)}, but node {node} runs agents "
                f"{sorted(own, key=int)} (a node announces only its own agents)")
    if not all(isinstance(a, str) and a.startswith("tcp://") for a in agents.values()):
        return "an agent address is not tcp://HOST:PORT"
    if uses_curve(cfg):
        keys = body.get("keys")
        agent_keys = keys.get("agents") if isinstance(keys, dict) else None
        if not isinstance(agent_keys, dict) or set(agent_keys) != own \
                or not all(security.is_public_key(k) for k in agent_keys.values()):
            return f"no CurveZMQ public key for each of its agents {sorted(own, key=int)}"
    return None


def table_problem(cfg: LaunchConfig, body: object) -> str | None:
    """Why node 0's TABLE cannot be used, or None: every agent's address (and key) must be there."""
    if not isinstance(body, dict) or not isinstance(body.get("env"), str) or not isinstance(body.get("agents"), dict):
        return "no env server address or agent addresses"
    every = {str(i) for i in range(cfg.n)}
    if set(body["agents"]) != every or not all(isinstance(a, str) for a in body["agents"].values()):
        return "the agent addresses are not those of agents 0..n-1"
    if uses_curve(cfg):
        keys = body.get("keys")
        if not (isinstance(keys, dict) and security.is_public_key(keys.get("env"))
                and isinstance(keys.get("agents"), dict) and set(keys["agents"]) == every
                and all(security.is_public_key(k) for k in keys["agents"].values())):
            return "no CurveZMQ public key for the env server and every agent"
    return None


def _serve(ctx: zmq.Context, cfg: LaunchConfig, own: AddressTable, stop: threading.Event,
           keys: tuple[security.KeyPair, security.KeyPair] | None) -> AddressTable:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 2000)  # the tables must get out before we close
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_LINK_FRAME_BYTES * 16)
    refusals = None
    if keys is not None:  # only the holders of the run secret (the member key) get in
        security.serve(sock, keys[0], {"node": keys[1].public}, "rendezvous")
        refusals = security.Refusals(sock, "rendezvous")
    sock.bind(_endpoint(cfg, bind=True))
    log.info("rendezvous on %s%s: waiting for %d more node(s)", _endpoint(cfg, bind=True),
             " (CurveZMQ, run secret)" if keys else " (plain text, --insecure)", cfg.nodes - 1)
    meeting = _Meeting(cfg, own)
    end = time.monotonic() + cfg.rendezvous_timeout_s
    try:
        while len(meeting.waiting) < cfg.nodes - 1:
            if stop.is_set():
                raise RendezvousError(STOPPED)
            if time.monotonic() > end:
                missing = sorted(set(range(1, cfg.nodes)) - meeting.waiting.keys())
                raise RendezvousError(f"nodes {missing} did not join within {cfg.rendezvous_timeout_s:.0f} s")
            if refusals is not None:
                refusals.log()
            if sock.poll(200):
                meeting.handle(sock, sock.recv_multipart())
        meeting.answer_all(sock)
    finally:
        if refusals is not None:
            refusals.close()
        sock.close()
    if meeting.errors:
        raise RendezvousError("; ".join(meeting.errors.values()))
    return meeting.table


def _join(ctx: zmq.Context, cfg: LaunchConfig, own: AddressTable, stop: threading.Event,
          keys: tuple[security.KeyPair, security.KeyPair] | None) -> AddressTable:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_LINK_FRAME_BYTES * 16)
    # with CURVE: prove the run secret (member key) and talk only to a node 0 that holds it too
    security.connect(sock, keys[1] if keys else None, keys[0].public if keys else "", _endpoint(cfg, bind=False))
    try:
        body = {"config": shared_config(cfg), "addresses": {"env": None, "agents": own["agents"]}}
        if "keys" in own:
            body["keys"] = {"agents": own["keys"]["agents"]}
        sock.send(protocol.encode(protocol.JOIN, cfg.node_rank, 0, body))
        log.info("node %d: joined the rendezvous at %s, waiting for the others", cfg.node_rank, cfg.rendezvous)
        end = time.monotonic() + cfg.rendezvous_timeout_s
        while not sock.poll(200):  # in short waits, so that `stop` is seen
            if stop.is_set():
                raise RendezvousError(STOPPED)
            if time.monotonic() > end:
                raise RendezvousError(f"no answer from the rendezvous at {cfg.rendezvous} "
                                      f"within {cfg.rendezvous_timeout_s:.0f} s")
        try:
            msg = protocol.decode(sock.recv())
        except protocol.ProtocolError as exc:
            raise RendezvousError(f"bad answer from the rendezvous: {exc}") from None
    finally:
        sock.close()
    if msg.kind != protocol.TABLE:
        raise RendezvousError(f"unexpected {msg.kind} from the rendezvous")
    if "error" in msg.body:
        raise RendezvousError(str(msg.body["error"]))
    problem = table_problem(cfg, msg.body)
    if problem:
        raise RendezvousError(f"bad table from the rendezvous: {problem}")
    return msg.body
