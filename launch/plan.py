"""All wiring in one place: from the launch config to every process's config and address.

This is the only module that knows the whole topology. It gives each agent the addresses of
its own neighbours and the env server's address, and gives the env server nothing about the
graph.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drima import security
from drima.agent.config import AgentConfig
from drima.env_server.envs import battle_kind, default_action_type
from drima.env_server.server import EnvServerConfig
from drima.topology import build_topology, is_dynamic, neighbour_map, range_radius

from .defaults import with_run_defaults

log = logging.getLogger("drima.launch")


@dataclass
class LaunchConfig:
    env: str = "pd"
    """pd | maintain | meeting3 | payoff:FILE | hunting | collection | smax:MAP | sc2:MAP
    | pettingzoo:MODULE[:FACTORY] | vmas:SCENARIO"""
    algo: str | None = None
    """a2c | dqn | ddpg | ppo | MODULE:CLASS: every agent runs its own learner of this kind; None: the
    env's default (launch/defaults.py: dqn for collection, else a2c), filled in by `validate`"""
    mode: str = "dri"
    """ind | dri | dri-naive | ctde (learn from the team reward the env server sends)"""
    global_state: bool = False
    """send every agent the global state and every agent's played actions in any mode, as ctde
    does: the built-in learners' critics read them (A2C, PPO: V(state); DDPG: MADDPG's Q) while the
    reward stays the mode's own (ind: each agent's, dri: the DRI signal). ctde implies it"""
    topology: str = "full"
    """full | ring | line | star | grid[:RxC] | random-regular[:D] | erdos-renyi[:P] | file:EDGES | range:R
    | range:sight (SMAX, SC2: each unit's sight range)"""
    n: int | None = None
    """number of agent processes; None: the env's own count (the game's players, the scenario's
    learners, the map's allied units), filled in by `validate`"""
    steps: int | None = None
    """environment steps (each steps all K copies); None: the env's default (launch/defaults.py:
    6000 for collection, else 3000), filled in by `validate`"""
    envs: int = 8
    """K: environment copies per step; each message and learner update carries K samples"""
    seed: int = 0
    """run seed; agent i gets seed * 1000 + i"""
    run_dir: str = "runs/latest"
    """output folder (summary.json, plot, one folder per agent)"""
    transport: str = "ipc"
    """ipc (one host, fastest) | tcp"""
    host: str = "127.0.0.1"
    """with tcp: the address of this node that the other processes connect to (advertised)"""
    bind_host: str = ""
    """with tcp: the address this node's sockets bind to; empty = host (0.0.0.0 = every interface)"""
    nodes: int = 1
    """number of nodes (hosts) the run is spread over; > 1 needs tcp and a rendezvous"""
    node_rank: int = 0
    """this node's rank: node 0 runs the env server and the rendezvous; node r runs agents
    [r * n // nodes, (r + 1) * n // nodes)"""
    rendezvous: str = ""
    """HOST:PORT of node 0's rendezvous (ZeroMQ), where the nodes trade their addresses"""
    rendezvous_timeout_s: float = 120.0
    """how long a node waits for every other node at the rendezvous"""
    insecure: bool = False
    """with tcp: no CurveZMQ (plain text; anyone who reaches a port may connect, take a free seat or
    subscribe). Off by default: every tcp socket is encrypted and authenticated (docs/security.md)"""
    run_secret_file: str = ""
    """with several nodes: a file holding the run secret every node is given (else the
    DRIMA_RUN_SECRET environment variable); only nodes that hold it can join the rendezvous.
    The path, never the secret, is in launch.json"""
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
    env_workers: int | None = None
    """PettingZoo envs: processes that step the K copies at once (1: the env server alone); None:
    2 where stepping a block of K copies takes 2 ms or more and the machine has a second core, else 1"""
    env_options: dict = field(default_factory=dict)
    """scenario options (MPE: e.g. {"n_prey": 2, "n_attackers": 2, "n_interceptors": 2})"""
    actions: str = "auto"
    """auto | discrete | continuous; auto = continuous forces for ddpg in MPE, else discrete"""
    adopt_after_s: float | None = None
    """multi-host, a run folder shared by the nodes (NFS): restart on this node, from its checkpoint,
    an agent of another node that the env server has declared dead for this long (its host cut
    off); None: never (launch/adopt.py)"""
    render: bool = False
    """MPE: after a completed run, play one episode with the learned policies into run_dir/episode.gif"""
    heartbeat_interval_s: float = 0.5
    """env link heartbeat interval, both ways (env server <-> agents)"""
    heartbeat_liveness: int = 4
    """silent heartbeat intervals after which the other end of the env link is declared dead"""
    act_ahead: bool = True
    """agents send their action for step t+1 before they learn from step t, so the env server steps
    while they learn (a2c, dqn, ddpg; each action comes one update late; learning measured the same
    on pd and collection, benchmarks/results/act_ahead.md)"""
    action_timeout_s: float = 10.0
    """how long the env server waits for a live agent's action before its seat plays missing_action
    for that step (the agent is told, and learns nothing from that step)"""
    missing_action: str = "last"
    """what a dead or late agent's seat plays: last | noop | random | remove (see EnvServerConfig)"""
    on_env_loss: str = "exit"
    """what agents do when the env server is lost: exit (checkpoint, status 4) | wait (reconnect)"""
    reconnect_timeout_s: float = 60.0
    """with on_env_loss=wait: how long agents keep trying to rejoin"""
    restart_failed: bool = False
    """restart an agent that crashed or was killed, from its last checkpoint, while the run goes on"""
    max_restarts: int = 3
    """with restart_failed: restarts per agent before it is left down"""
    restart_delay_s: float = 1.0
    """with restart_failed: seconds between an agent's exit and its restart"""
    kill_agents: list = field(default_factory=list)
    """fault injection: [agent, step] pairs; the launcher SIGKILLs that agent once the env server reports that step"""
    resume: bool = False
    """continue the run in run_dir up to `steps`: agents from their checkpoints, the env server from
    the step the run reached, metrics appended (drima-launch --resume)"""
    evaluate_from: str = ""
    """a trained run's folder: its agents' weights act greedily and learn nothing, on fresh
    episodes (drima-launch --evaluate)"""
    logger: str = "csv"
    """csv | tensorboard (or a comma list): where every process's metrics rows go; metrics.csv is
    always written, tensorboard adds an event file in each process's folder (drima/loggers.py)"""
    dashboard: int | None = None
    """serve the live dashboard of this run on this port while it runs (0: any free port; None:
    none). The launcher serves it from a thread; it reads the run folder (launch/dashboard/)"""
    dashboard_bind: str = "127.0.0.1"
    """the address the dashboard listens on: loopback unless asked, since the page shows the run
    to whoever reaches it"""


EVALUATION_SEED_OFFSET = 100_003
"""an evaluation's env server seed is the trained run's plus this: battles it never trained on"""


def end_linger_s(cfg: LaunchConfig) -> float:
    """How long the env server stays after the last step for agents that missed the end: as long
    as they may still come back (a paused one: one liveness window; one that waits for a lost
    server: its reconnect window too)."""
    window = cfg.heartbeat_interval_s * cfg.heartbeat_liveness
    return window + (cfg.reconnect_timeout_s if cfg.on_env_loss == "wait" else 0.0)


def final_fraction(cfg: LaunchConfig) -> float:
    """The share of the run, at its end, that summary.json's `final` figures average over: the last
    10 % of training, or all of an evaluation."""
    return 1.0 if cfg.evaluate_from else 0.1


@dataclass
class RunPlan:
    env_server: EnvServerConfig | None  # None on nodes other than 0
    agents: list[AgentConfig]  # this node's agents only
    neighbours: dict[int, list[int]]
    socket_dir: str | None  # private folder (0700) of ipc sockets and secret keys, removed at the end


# what a node tells the others at the rendezvous: {"env": advertised env address (node 0 only),
# "agents": {agent id (str): advertised PUB address}, and with CURVE "keys": {"env": the env server's
# public key (node 0 only), "agents": {agent id (str): its public key}}}
AddressTable = dict


def sends_global_state(cfg: LaunchConfig) -> bool:
    """Whether the env server sends every agent the global state, the joint actions and the team reward."""
    return cfg.mode == "ctde" or cfg.global_state


def uses_curve(cfg: LaunchConfig) -> bool:
    """Every tcp socket is CurveZMQ unless --insecure; ipc stays in a 0700 folder on one host."""
    return cfg.transport == "tcp" and not cfg.insecure


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


def node_agents(cfg: LaunchConfig) -> list[int]:
    """The agent ids this node runs: a contiguous block, like torchrun's ranks."""
    return list(range(cfg.node_rank * cfg.n // cfg.nodes, (cfg.node_rank + 1) * cfg.n // cfg.nodes))


def _own_addresses(cfg: LaunchConfig, mine: list[int]) -> tuple[str | None, dict[str, str], dict[str, str], str | None]:
    """Bind and advertised addresses of this node's sockets: (env bind, binds, advertised table, ipc dir).
    Binds and advertised addresses differ only with tcp and a bind_host (e.g. 0.0.0.0 behind NAT)."""
    if cfg.transport == "ipc":
        # mkdtemp makes it 0700: no other user can reach the sockets; short path: ipc paths are limited
        # to ~100 chars
        socket_dir = tempfile.mkdtemp(prefix="drima-")
        binds = {"env": f"ipc://{socket_dir}/env"} | {str(i): f"ipc://{socket_dir}/agent-{i}" for i in mine}
        return binds["env"], binds, dict(binds), socket_dir
    if cfg.transport != "tcp":
        raise ValueError(f"unknown transport {cfg.transport!r}: use ipc or tcp")
    bind_host = cfg.bind_host or cfg.host
    names = (["env"] if cfg.node_rank == 0 else []) + [str(i) for i in mine]
    ports = dict(zip(names, _free_tcp_ports(bind_host, len(names)), strict=True))
    binds = {k: f"tcp://{bind_host}:{p}" for k, p in ports.items()}
    advertised = {k: f"tcp://{cfg.host}:{p}" for k, p in ports.items()}
    return binds.get("env"), binds, advertised, None


def _own_keys(names: list[str], folder: str, run_secret: bytes | None) -> tuple[dict[str, str], dict[str, str]]:
    """A CurveZMQ key pair per name ("env", agent ids) of this node: (secret key files, public keys).
    The env server's is made here; agents' are made here on one host, and derived from the run
    secret across hosts (so that another node can adopt an agent, launch/adopt.py). Secret keys
    never travel; public keys go to the others at the rendezvous."""
    files, publics = {}, {}
    for name in names:
        derived = security.agent_keypair(run_secret, int(name)) if run_secret and name != "env" else None
        pair, path = security.write_keypair(folder, name, derived)
        files[name], publics[name] = str(path), pair.public
    return files, publics


def _trade(cfg: LaunchConfig, mine: list[int], exchange: Callable[[AddressTable], AddressTable] | None
           ) -> tuple[str | None, dict[str, str], AddressTable, dict[str, str], str | None]:
    """This node's sockets and keys, traded for everyone's addresses and public keys (one node:
    its own). Returns (env bind, binds, the whole table, this node's secret key files, private folder)."""
    env_bind, binds, advertised, private_dir = _own_addresses(cfg, mine)
    own: AddressTable = {"env": advertised.get("env"), "agents": {k: v for k, v in advertised.items() if k != "env"}}
    files: dict[str, str] = {}
    try:
        if uses_curve(cfg):
            private_dir = private_dir or tempfile.mkdtemp(prefix="drima-")  # 0700
            secret = security.read_run_secret(cfg.run_secret_file) if cfg.nodes > 1 else None
            files, publics = _own_keys(list(binds), private_dir, secret)
            own["keys"] = {"env": publics.get("env"), "agents": {k: v for k, v in publics.items() if k != "env"}}
        elif cfg.transport == "tcp":
            log.warning("--insecure: tcp sockets in plain text; anyone who reaches %s can connect, play a seat "
                        "that is free and read the agents' rewards", cfg.bind_host or cfg.host)
        table = exchange(own) if exchange else own
    except BaseException:  # nothing starts: no secret key is left behind
        if private_dir:
            shutil.rmtree(private_dir, ignore_errors=True)
        raise
    return env_bind, binds, table, files, private_dir


def plan_run(cfg: LaunchConfig, exchange: Callable[[AddressTable], AddressTable] | None = None) -> RunPlan:
    """Build the configs of this node's processes. With several nodes, `exchange` trades this
    node's advertised addresses for everyone's (the rendezvous). `cfg` is one that `validate`
    returned (n filled in)."""
    cfg = with_run_defaults(cfg)  # as validate does: a config built by hand may leave algo and steps out
    radius: float | None = 0.0  # None: range:sight
    if cfg.mode == "ctde":  # learns from the team reward: no neighbour scalars to trade
        nbrs = {i: [] for i in range(cfg.n)}
    elif is_dynamic(cfg.topology):  # anyone may come in range: link to all, the env server says who is near
        radius = range_radius(cfg.topology)
        nbrs = neighbour_map(build_topology("full", cfg.n))
    else:
        nbrs = neighbour_map(build_topology(cfg.topology, cfg.n, cfg.seed))
    run_dir = Path(cfg.run_dir)
    mine = node_agents(cfg)
    env_bind, binds, table, key_files, socket_dir = _trade(cfg, mine, exchange)
    env_addr, link_addrs = table["env"], {int(k): v for k, v in table["agents"].items()}
    keys = table.get("keys") or {"env": "", "agents": {}}  # public keys, everyone's
    server = EnvServerConfig(address=env_bind or "", env=cfg.env, n_agents=cfg.n, steps=cfg.steps, n_envs=cfg.envs,
                             seed=cfg.seed + (EVALUATION_SEED_OFFSET if cfg.evaluate_from else 0),
                             run_dir=str(run_dir / "env_server"), log_every=cfg.log_every,
                             env_options=dict(cfg.env_options), action_type=action_type(cfg),
                             range_radius=radius or 0.0, range_sight=radius is None,
                             share_team_reward=sends_global_state(cfg),
                             heartbeat_interval_s=cfg.heartbeat_interval_s, heartbeat_liveness=cfg.heartbeat_liveness,
                             missing_action=cfg.missing_action, action_timeout_s=cfg.action_timeout_s,
                             resume=cfg.resume, env_workers=cfg.env_workers or 1,
                             final_fraction=final_fraction(cfg), logger=cfg.logger,
                             curve_key_file=key_files.get("env", ""),
                             agent_keys=dict(keys["agents"]) if "env" in key_files else {},
                             end_linger_s=end_linger_s(cfg))
    # JAX compiles SMAX's step (a minute on a busy 2-core machine) and SC2 starts K game processes
    # before the env server answers: give the agents that long to hear from it
    startup_s = 600.0 if battle_kind(cfg.env) else AgentConfig.startup_timeout_s
    agents = [
        AgentConfig(agent_id=i, env_address=env_addr, link_bind=binds[str(i)], link_address=link_addrs[i],
                    peers={str(j): link_addrs[j] for j in nbrs[i]}, algo=cfg.algo, mode=cfg.mode,
                    seed=agent_seed(cfg.seed, i), run_dir=str(run_dir / f"agent_{i}"), learner=dict(cfg.learner),
                    mu_step_size=cfg.mu_step_size, log_every=cfg.log_every,
                    checkpoint_every=cfg.checkpoint_every, link_deadline_s=cfg.link_deadline_s,
                    link_drop=cfg.link_drop, link_delay_ms=cfg.link_delay_ms,
                    heartbeat_interval_s=cfg.heartbeat_interval_s, heartbeat_liveness=cfg.heartbeat_liveness,
                    on_env_loss=cfg.on_env_loss, reconnect_timeout_s=cfg.reconnect_timeout_s,
                    startup_timeout_s=startup_s, resume=cfg.resume, evaluate=bool(cfg.evaluate_from),
                    logger=cfg.logger, act_ahead=cfg.act_ahead, curve_key_file=key_files.get(str(i), ""),
                    env_server_key=keys["env"] or "",
                    peer_keys={str(j): keys["agents"][str(j)] for j in nbrs[i] if str(j) in keys["agents"]},
                    init_from=str(Path(cfg.evaluate_from) / f"agent_{i}" / "checkpoint.pt")
                    if cfg.evaluate_from else "")
        for i in mine
    ]
    return RunPlan(server if cfg.node_rank == 0 else None, agents, nbrs, socket_dir)
