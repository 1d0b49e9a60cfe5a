"""All wiring in one place: from the launch config to every process's config and address.

This is the only module that knows the whole topology. It gives each agent the addresses of
its own neighbours and the env server's address, and gives the env server nothing about the
graph.
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from drima.agent.process import AgentConfig
from drima.env_server.server import EnvServerConfig
from drima.env_server.envs import battle_kind, default_action_type
from drima.topology import build_topology, is_dynamic, neighbour_map, range_radius


@dataclass
class LaunchConfig:
    env: str = "pd"
    """pd | maintain | meeting3 | payoff:FILE | hunting | collection | smax:MAP | sc2:MAP"""
    algo: str = "a2c"
    """a2c | dqn | ddpg | ppo: every agent runs its own learner of this kind"""
    mode: str = "dri"
    """ind | dri | dri-naive | ctde (learn from the team reward the env server sends)"""
    topology: str = "full"
    """full | ring | line | star | grid[:RxC] | random-regular[:D] | erdos-renyi[:P] | file:EDGES | range:R
    | range:sight (SMAX, SC2: each unit's sight range)"""
    n: int = 2
    """number of agent processes"""
    steps: int = 3000
    """environment steps (each steps all K copies)"""
    envs: int = 8
    """K: environment copies per step; each message and learner update carries K samples"""
    seed: int = 0
    """run seed; agent i gets seed * 1000 + i"""
    run_dir: str = "runs/latest"
    """output folder (summary.json, plot, one folder per agent)"""
    transport: str = "ipc"
    """ipc (one host, fastest) | tcp"""
    host: str = "127.0.0.1"
    """address to bind and advertise with --transport tcp"""
    mu_step_size: float = 0.05
    """step size of every agent's average-reward estimate mu"""
    log_every: int = 50
    """steps between two metrics rows"""
    checkpoint_every: int = 1000
    """steps between two agent checkpoints"""
    link_deadline_s: float = 1.0
    """per-step wait for a live neighbour's scalars"""
    link_drop: float = 0.0
    """chaos: fraction of neighbour messages each agent loses on receipt"""
    link_delay_ms: float = 0.0
    """chaos: delay added to every neighbour message"""
    learner: dict = field(default_factory=dict)
    """learner option overrides (e.g. {"lr_actor": 0.003})"""
    env_options: dict = field(default_factory=dict)
    """scenario options (MPE: e.g. {"n_prey": 2, "n_attackers": 2, "n_interceptors": 2})"""
    actions: str = "auto"
    """auto | discrete | continuous; auto = continuous forces for ddpg in MPE, else discrete"""


@dataclass
class RunPlan:
    env_server: EnvServerConfig
    agents: list[AgentConfig]
    neighbours: dict[int, list[int]]
    socket_dir: str | None  # ipc socket folder to remove at the end


def agent_seed(run_seed: int, agent_id: int) -> int:
    return run_seed * 1000 + agent_id


def _free_tcp_ports(host: str, count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind((host, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def action_type(cfg: LaunchConfig) -> str:
    return default_action_type(cfg.env, cfg.algo) if cfg.actions == "auto" else cfg.actions


def plan_run(cfg: LaunchConfig) -> RunPlan:
    """Build every process's config. Raises ValueError/TopologyError on a bad config."""
    radius: float | None = 0.0  # None: range:sight
    if cfg.mode == "ctde":  # learns from the team reward: no neighbour scalars to trade
        nbrs = {i: [] for i in range(cfg.n)}
    elif is_dynamic(cfg.topology):  # anyone may come in range: link to all, the env server says who is near
        radius = range_radius(cfg.topology)
        nbrs = neighbour_map(build_topology("full", cfg.n))
    else:
        nbrs = neighbour_map(build_topology(cfg.topology, cfg.n, cfg.seed))
    run_dir = Path(cfg.run_dir)
    socket_dir = None
    if cfg.transport == "ipc":
        socket_dir = tempfile.mkdtemp(prefix="drima-")  # short path: ipc paths are limited to ~100 chars
        env_addr = f"ipc://{socket_dir}/env"
        link_addrs = [f"ipc://{socket_dir}/agent-{i}" for i in range(cfg.n)]
        bind_addrs = link_addrs
    elif cfg.transport == "tcp":
        ports = _free_tcp_ports(cfg.host, cfg.n + 1)
        env_addr = f"tcp://{cfg.host}:{ports[0]}"
        link_addrs = [f"tcp://{cfg.host}:{p}" for p in ports[1:]]
        bind_addrs = link_addrs
    else:
        raise ValueError(f"unknown transport {cfg.transport!r}: use ipc or tcp")
    server = EnvServerConfig(address=env_addr, env=cfg.env, n_agents=cfg.n, steps=cfg.steps, n_envs=cfg.envs,
                             seed=cfg.seed, run_dir=str(run_dir / "env_server"), log_every=cfg.log_every,
                             env_options=dict(cfg.env_options), action_type=action_type(cfg),
                             range_radius=radius or 0.0, range_sight=radius is None,
                             share_team_reward=cfg.mode == "ctde")
    # JAX compiles SMAX's step (a minute on a busy 2-core machine) and SC2 starts K game processes
    # before the env server answers: give the agents that long to hear from it
    startup_s = 600.0 if battle_kind(cfg.env) else AgentConfig.startup_timeout_s
    agents = [
        AgentConfig(agent_id=i, env_address=env_addr, link_bind=bind_addrs[i],
                    peers={str(j): link_addrs[j] for j in nbrs[i]}, algo=cfg.algo, mode=cfg.mode,
                    seed=agent_seed(cfg.seed, i), run_dir=str(run_dir / f"agent_{i}"), learner=dict(cfg.learner),
                    mu_step_size=cfg.mu_step_size, log_every=cfg.log_every,
                    checkpoint_every=cfg.checkpoint_every, link_deadline_s=cfg.link_deadline_s,
                    link_drop=cfg.link_drop, link_delay_ms=cfg.link_delay_ms, startup_timeout_s=startup_s)
        for i in range(cfg.n)
    ]
    return RunPlan(server, agents, nbrs, socket_dir)
