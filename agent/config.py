"""An agent's settings and exit statuses: what the launcher needs of an agent without importing
its learners (and torch)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentConfig:
    agent_id: int
    """this agent's id (0..n-1)"""
    env_address: str
    """the env server's ROUTER address, e.g. tcp://127.0.0.1:5555 or ipc:///tmp/x/env"""
    link_bind: str
    """where this agent's PUB socket binds (its neighbours connect here)"""
    peers: dict[str, str]
    """neighbour id -> that neighbour's PUB address (JSON keys are strings)"""
    link_address: str = ""
    """the address neighbours connect to for link_bind (it differs with a bind host such as 0.0.0.0);
    "" = link_bind. An adopted agent announces it in its HELLO"""
    incarnation: int = 0
    """0: this agent as its own node started it; k >= 1: the k-th time another node adopted it
    (launch/adopt.py). The env server plays a seat only for its highest incarnation, and an agent
    whose folder names a higher one writes nothing there (agent/fence.py)"""
    algo: str = "a2c"
    """a2c | dqn | ddpg | ppo | MODULE:CLASS (a learner of your own, docs/learners.md)"""
    mode: str = "dri"
    """ind | dri | dri-naive | ctde"""
    seed: int = 0
    """this agent's seed (the launcher derives it from the run seed and the agent id)"""
    run_dir: str = "."
    """this agent's own folder: metrics.csv, log, checkpoint.pt"""
    learner: dict = field(default_factory=dict)
    """overrides of the algorithm's config dataclass fields"""
    mu_step_size: float = 0.05
    """step size of the average-reward estimate mu"""
    log_every: int = 50
    """steps between two metrics rows"""
    checkpoint_every: int = 1000
    """steps between two checkpoints (also one on exit)"""
    link_deadline_s: float = 1.0
    """how long to wait for a live neighbour's scalars at one step"""
    link_liveness: int = 3
    """consecutive missed steps after which a neighbour is not waited for"""
    startup_timeout_s: float = 60.0
    """how long to wait for the env server and the neighbours at start-up"""
    heartbeat_interval_s: float = 0.5
    """send the env server a HEARTBEAT while busy or waiting, when nothing else was sent for this long"""
    heartbeat_liveness: int = 4
    """the env server is declared lost after this many silent heartbeat intervals (2 s by default);
    keep heartbeat_interval_s * heartbeat_liveness above the longest learner update"""
    on_env_loss: str = "exit"
    """what to do when the env server is lost: exit (save a checkpoint, exit with status 4) |
    wait (reconnect and rejoin, for up to reconnect_timeout_s, then as exit)"""
    reconnect_timeout_s: float = 60.0
    """with on_env_loss=wait: how long to keep trying to rejoin the env server"""
    link_drop: float = 0.0
    """chaos: fraction of incoming neighbour messages to lose (seeded, per link)"""
    link_delay_ms: float = 0.0
    """chaos: delay of every outgoing neighbour message"""
    resume: bool = False
    """start from run_dir/checkpoint.pt if it exists (and append to metrics.csv)"""
    init_from: str = ""
    """a checkpoint to load the learner and mu from at start (evaluation); the step starts at 0"""
    evaluate: bool = False
    """act greedily (no exploration) and learn nothing; no neighbour scalars are traded"""
    logger: str = "csv"
    """where metrics rows go besides metrics.csv (always written): csv | tensorboard (drima/loggers.py)"""
    act_ahead: bool = True
    """send the action for step t+1 before learning from step t, so that the env server steps while
    this agent learns (the action comes from the policy before that update); only learners that
    declare ActsAhead (a2c, dqn, ddpg; not the recurrent ppo)"""
    curve_key_file: str = ""
    """with tcp: this agent's own CurveZMQ key pair (a 0600 file, drima/security.py), proved on its
    env link and neighbour SUBs and served on its PUB; "" = plain text (ipc, --insecure)"""
    env_server_key: str = ""
    """with curve_key_file: the env server's public key (a server without it is not connected to)"""
    peer_keys: dict[str, str] = field(default_factory=dict)
    """with curve_key_file: neighbour id -> its public key; only these may subscribe to this agent's
    PUB, and a neighbour's PUB must prove its key"""

    def __post_init__(self):
        if self.on_env_loss not in ("exit", "wait"):
            raise ValueError(f"on_env_loss {self.on_env_loss!r}: use exit or wait")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_liveness < 1:
            raise ValueError("heartbeat_interval_s must be > 0 and heartbeat_liveness >= 1")
        if self.incarnation < 0:
            raise ValueError(f"incarnation {self.incarnation} must be >= 0")


EXIT_REFUSED = 3  # the env server refused this agent (e.g. it was removed from the run)
EXIT_ENV_LOST = 4  # the env server was lost: checkpoint saved, see the log for why
EXIT_ZYGOTE_LOST = 5  # set by the launcher: the zygote that forked this agent ended, and its status with it
EXIT_SUPERSEDED = 6  # another node adopted this agent (a higher incarnation plays its seat): it wrote nothing
