"""Adoption: a surviving node restarts the agents of a node that is cut off (`--adopt-after S`).

The nodes of a multi-host run share one run folder (NFS; in tests/test_adopt.py the same folder
seen from two network namespaces). The env server's event feed there (env_server/events.jsonl)
says when it declared an agent dead. A node started with --adopt-after S reads it every second;
an agent of another node that it has seen dead for S seconds is restarted here:

- its incarnation k = one more than the folder's owner (agent/fence.py), claimed with an
  exclusive create, so that two adopters cannot both take it, and written to the folder before
  the agent starts: the original, should it come back, writes nothing there any more;
- from agent_<i>/config.json (what its own node wrote) with this node's address for its PUB, its
  key pair derived from the run secret (drima/security.py: any node of the run can prove agent
  i's identity), resume from agent_<i>/checkpoint.pt, and incarnation k;
- forked by this node's zygote and watched like this node's own agents (--restart-failed
  restarts it here).

Its HELLO says k and its new address: the env server gives it the seat, refuses the older
incarnation (STOP, superseded) and tells the neighbours where it publishes now (MOVED).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from drima import security
from drima.agent import fence
from drima.agent.config import AgentConfig
from drima.config import load_config
from drima.events import ENV_SERVER_FEED, EventFeed, read_events

from .plan import LaunchConfig, RunPlan, _free_tcp_ports, node_agents, uses_curve
from .supervisor import AgentWatch

log = logging.getLogger("drima.launch")

POLL_S = 1.0  # how often the env server's feed is read: adoption is a matter of seconds, not steps
SEAT_EVENTS = ("dead", "rejoined", "adopted")  # the events that say whether a seat is played


def dead_agents(events: list[dict]) -> set[int]:
    """The agents whose last seat event in the env server's feed is "dead"."""
    last: dict[int, str] = {}
    for e in events:
        if e.get("event") in SEAT_EVENTS and isinstance(e.get("agent"), int):
            last[e["agent"]] = e["event"]
    return {i for i, event in last.items() if event == "dead"}


class Adopter:
    """This node's side of adoption: watches the shared run folder, adopts what is due."""

    def __init__(self, cfg: LaunchConfig, plan: RunPlan, watch: AgentWatch, feed: EventFeed):
        self.cfg, self.watch, self.feed = cfg, watch, feed
        self.run_dir = Path(cfg.run_dir)
        self.key_dir = plan.socket_dir  # this node's private 0700 folder (tcp with CURVE: the key files)
        self.secret = security.read_run_secret(cfg.run_secret_file) if uses_curve(cfg) else None
        self.others = set(range(cfg.n)) - set(node_agents(cfg))
        self.dead_since: dict[int, float] = {}  # agent -> when this node first saw it dead (its own clock)
        self.given_up: set[int] = set()
        self.next_poll = 0.0

    def poll(self) -> None:
        now = time.monotonic()
        if now < self.next_poll or self.cfg.adopt_after_s is None:
            return
        self.next_poll = now + POLL_S
        if (self.run_dir / "env_server" / "stats.json").exists():  # the run is over
            return
        dead = dead_agents(read_events(self.run_dir / ENV_SERVER_FEED)) & self.others
        self.dead_since = {i: self.dead_since.get(i, now) for i in dead}
        for i, since in sorted(self.dead_since.items()):
            if now - since >= self.cfg.adopt_after_s and i not in self.given_up:
                self._adopt(i, now - since)

    def _adopt(self, agent: int, dead_s: float) -> None:
        folder = self.run_dir / f"agent_{agent}"
        try:
            original = load_config(AgentConfig, folder / "config.json")
        except ValueError as exc:
            log.error("cannot adopt agent %d: %s (is the run folder shared by the nodes?)", agent, exc)
            self.given_up.add(agent)
            return
        incarnation = max(original.incarnation, fence.owner(folder)) + 1
        if not fence.claim(folder, incarnation):
            log.info("agent %d: another node adopted it as incarnation %d", agent, incarnation)
            self.others.discard(agent)
            return
        if not (folder / "checkpoint.pt").exists():
            log.warning("agent %d has no checkpoint.pt yet: its adopted incarnation starts from scratch", agent)
        self.watch.adopt(self._config(original, folder, incarnation))
        self.others.discard(agent)  # this node's now: its own watch restarts it
        log.warning("agent %d dead for %.1f s: adopted on node %d as incarnation %d, from %s", agent, dead_s,
                    self.cfg.node_rank, incarnation, folder / "checkpoint.pt")
        self.feed.write({"event": "adopted", "agent": agent, "incarnation": incarnation, "node": self.cfg.node_rank})

    def _config(self, original: AgentConfig, folder: Path, incarnation: int) -> AgentConfig:
        """Agent `original` as this node runs it: its PUB on this host, its own key pair (derived
        from the run secret), its folder as this node mounts it, resumed from its checkpoint."""
        cfg, agent = self.cfg, original.agent_id
        bind_host = cfg.bind_host or cfg.host
        port = _free_tcp_ports(bind_host, 1)[0]
        key_file = ""
        if self.secret is not None and self.key_dir:
            _, path = security.write_keypair(self.key_dir, str(agent), security.agent_keypair(self.secret, agent))
            key_file = str(path)
        return dataclasses.replace(original, link_bind=f"tcp://{bind_host}:{port}",
                                   link_address=f"tcp://{cfg.host}:{port}", curve_key_file=key_file,
                                   run_dir=str(folder), resume=True, incarnation=incarnation)
