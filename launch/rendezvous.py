"""The multi-node rendezvous: how the launchers of one run, one per node, learn each other's
addresses (torchrun convention: every node runs the same command with its own --node-rank).

Node 0 binds a ROUTER socket at --rendezvous HOST:PORT. Every other node connects a REQ socket
and sends JOIN with its launch config and the advertised addresses of its sockets. Once all
nodes have joined, node 0 answers each with the full TABLE (env server address and every
agent's PUB address), or with an error if a node's config differs from its own. Nodes may
start in any order: ZeroMQ keeps reconnecting until node 0 is up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import zmq

from drima import protocol

from .plan import AddressTable, LaunchConfig

log = logging.getLogger("drima.launch")

NODE_FIELDS = {"run_dir", "host", "bind_host", "node_rank", "rendezvous_timeout_s", "render"}  # may differ per node


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
    """Trade this node's addresses for the whole table; raises RendezvousError, also when `stop`
    is set before every node has joined."""
    ctx = zmq.Context.instance()
    stop = stop or threading.Event()
    try:
        return _serve(ctx, cfg, own, stop) if cfg.node_rank == 0 else _join(ctx, cfg, own, stop)
    except zmq.ZMQError as exc:
        raise RendezvousError(f"rendezvous {cfg.rendezvous}: {exc}") from None


def _serve(ctx: zmq.Context, cfg: LaunchConfig, own: AddressTable, stop: threading.Event) -> AddressTable:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 2000)  # the tables must get out before we close
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_LINK_FRAME_BYTES * 16)
    sock.bind(_endpoint(cfg, bind=True))
    log.info("rendezvous on %s: waiting for %d more node(s)", _endpoint(cfg, bind=True), cfg.nodes - 1)
    table: AddressTable = {"env": own["env"], "agents": dict(own["agents"])}
    waiting: dict[int, bytes] = {}  # node rank -> REQ routing id
    errors: dict[int, str] = {}
    end = time.monotonic() + cfg.rendezvous_timeout_s
    mine = shared_config(cfg)
    try:
        while len(waiting) < cfg.nodes - 1:
            if stop.is_set():
                raise RendezvousError(STOPPED)
            if time.monotonic() > end:
                missing = sorted(set(range(1, cfg.nodes)) - waiting.keys())
                raise RendezvousError(f"nodes {missing} did not join within {cfg.rendezvous_timeout_s:.0f} s")
            if not sock.poll(200):
                continue
            parts = sock.recv_multipart()
            try:
                msg = protocol.decode(parts[-1])
                if len(parts) != 3 or msg.kind != protocol.JOIN or not 0 < msg.sender < cfg.nodes:
                    raise protocol.ProtocolError(f"{msg.kind} from node {msg.sender}")
            except protocol.ProtocolError as exc:
                log.warning("rendezvous: dropped %s", exc)
                continue
            node = msg.sender
            waiting[node] = parts[0]
            theirs = msg.body.get("config")
            if theirs != mine:
                diff = sorted(k for k in mine.keys() | (theirs or {}).keys() if mine.get(k) != (theirs or {}).get(k))
                errors[node] = f"node {node}'s launch options differ from node 0's: {diff}"
            else:
                table["agents"].update(msg.body["addresses"]["agents"])
            log.info("rendezvous: node %d joined (%d of %d)", node, len(waiting) + 1, cfg.nodes)
        for node, ident in waiting.items():
            body = {"error": errors[node]} if node in errors else table
            sock.send_multipart([ident, b"", protocol.encode(protocol.TABLE, 0, 0, body)])
    finally:
        sock.close()
    if errors:
        raise RendezvousError("; ".join(errors.values()))
    return table


def _join(ctx: zmq.Context, cfg: LaunchConfig, own: AddressTable, stop: threading.Event) -> AddressTable:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(_endpoint(cfg, bind=False))
    try:
        sock.send(protocol.encode(protocol.JOIN, cfg.node_rank, 0, {"config": shared_config(cfg), "addresses": own}))
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
    if msg.kind != protocol.TABLE or "error" in msg.body:
        raise RendezvousError(msg.body.get("error", f"unexpected {msg.kind}"))
    return msg.body
