"""The one place that decides whether a launch config can run, for `drima-launch` and `drima.run`
alike. Everything here happens before any process starts or any file is written.

Messages name the CLI flag (`--n` is `LaunchConfig.n`, `--link-drop` is `link_drop`), so that
the CLI and the Python API report a bad config with the same line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from drima import protocol
from drima.env_server.envs import (
    MPE_ENVS,
    battle_kind,
    battle_spec,
    default_agents,
    has_positions,
    is_mpe,
    require_global_state,
)
from drima.env_server.pettingzoo_env import is_pettingzoo
from drima.env_server.server import MISSING_ACTIONS
from drima.loggers import check_loggers
from drima.metrics import last_row
from drima.security import run_secret_available
from drima.topology import build_topology, is_dynamic, is_sight_range, range_radius
from drima.types import REWARD_MODES

from .defaults import auto_env_workers, copy_step_seconds, usable_cores, with_run_defaults
from .plan import LaunchConfig, action_type, sends_global_state


class ConfigError(ValueError):
    """A launch config that cannot run. The message is one line, the same that `drima-launch`
    prints after `drima-launch: error:`."""


def validate(cfg: LaunchConfig) -> LaunchConfig:
    """Check every value of `cfg`, the env, the topology and the learner options; return `cfg`
    with what depends on them filled in (n, algo and steps from the env when None, tcp across nodes).
    Raises ConfigError."""
    try:
        _check_values(cfg)
        cfg = dataclasses.replace(with_run_defaults(cfg), n=default_n(cfg) if cfg.n is None else cfg.n,
                                  transport="tcp" if cfg.nodes > 1 else cfg.transport)  # ipc does not cross hosts
        _check_agent_ids(cfg)
        _check_run_secret(cfg)
        _check_continuation(cfg)
        _check_topology(cfg)
        check_learner(cfg, check_env(cfg))
        cfg = dataclasses.replace(cfg, env_workers=_env_workers(cfg))
    except ConfigError:
        raise
    except AssertionError as exc:  # the MPE scenarios assert on their own arguments
        raise ConfigError(_one_line(f"--env {cfg.env}: {exc}")) from None
    except ValueError as exc:  # TopologyError, PayoffFileError, the envs' and learners' own checks
        raise ConfigError(_one_line(str(exc))) from None
    return cfg


def _one_line(text: str) -> str:
    return " ".join(text.split())


CHOICES = (("mode", REWARD_MODES), ("transport", ("ipc", "tcp")), ("actions", ("auto", "discrete", "continuous")),
           ("missing_action", MISSING_ACTIONS), ("on_env_loss", ("exit", "wait")))


def _check_values(cfg: LaunchConfig) -> None:
    """Ranges and choices of single values; argparse already checked the choices for the CLI."""
    for name in ("n", "steps", "envs", "env_workers", "log_every", "checkpoint_every"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    for name, allowed in CHOICES:
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: choose from {', '.join(allowed)}")
    _check_faults(cfg)
    _check_nodes(cfg)
    _check_dashboard(cfg)
    if cfg.mu_step_size <= 0 or cfg.mu_step_size > 1:
        raise ConfigError("--mu-step-size must be in (0, 1]")
    _check_types(cfg)
    if cfg.resume and cfg.evaluate_from:
        raise ConfigError("--resume and --evaluate: one at a time")
    check_loggers(cfg.logger)  # a ValueError: the package the logger needs is missing
    if cfg.render and cfg.evaluate_from:
        raise ConfigError(f"--render draws an MPE run's learned policies: `drima-render {cfg.evaluate_from}`")


def _check_types(cfg: LaunchConfig) -> None:
    """Switches and dicts from Python callers (argparse makes them right for the CLI)."""
    for name in ("global_state", "act_ahead", "resume", "render", "restart_failed", "insecure"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name} must be True or False, not {getattr(cfg, name)!r}")
    for name in ("learner", "env_options"):
        if not isinstance(getattr(cfg, name), dict):
            raise ConfigError(f"--{name.replace('_', '-')} must be a dict (a JSON object)")


def _check_faults(cfg: LaunchConfig) -> None:
    """Chaos, liveness, restarts and injected kills."""
    if not 0 <= cfg.link_drop <= 1:
        raise ConfigError("--link-drop must be in [0, 1]")
    if cfg.link_delay_ms < 0:
        raise ConfigError("--link-delay-ms must be >= 0")
    if not cfg.action_timeout_s > 0:
        raise ConfigError("--action-timeout must be > 0")
    if cfg.heartbeat_interval_s <= 0 or cfg.heartbeat_liveness < 1 or cfg.reconnect_timeout_s <= 0:
        raise ConfigError("--heartbeat-interval and --reconnect-timeout must be > 0, --heartbeat-liveness >= 1")
    if cfg.max_restarts < 0 or cfg.restart_delay_s < 0:
        raise ConfigError("--max-restarts and --restart-delay must be >= 0")
    for kill in cfg.kill_agents:
        if not (isinstance(kill, (list, tuple)) and len(kill) == 2
                and all(isinstance(x, int) and x >= 0 for x in kill)):
            raise ConfigError(f"--kill-agent {kill!r}: expected [agent, step], both ints >= 0")


def _check_nodes(cfg: LaunchConfig) -> None:
    if cfg.nodes < 1 or not 0 <= cfg.node_rank < cfg.nodes:
        raise ConfigError("--nodes must be >= 1 and --node-rank in 0..nodes-1")
    if cfg.nodes > 1 and not re.fullmatch(r"[^:\s]+:\d+", cfg.rendezvous):
        raise ConfigError("--nodes > 1 needs --rendezvous HOST:PORT (node 0's address)")
    if cfg.adopt_after_s is not None:
        if not isinstance(cfg.adopt_after_s, (int, float)) or not cfg.adopt_after_s >= 0:
            raise ConfigError(f"--adopt-after {cfg.adopt_after_s!r}: seconds, >= 0")
        if cfg.nodes < 2:
            raise ConfigError("--adopt-after restarts agents of other nodes: it needs --nodes > 1 (and a run folder "
                              "the nodes share)")


def _check_dashboard(cfg: LaunchConfig) -> None:
    if cfg.dashboard is not None and not (isinstance(cfg.dashboard, int) and 0 <= cfg.dashboard <= 65535):
        raise ConfigError(f"--dashboard {cfg.dashboard!r}: a port is 0..65535 (0: any free port)")
    if not (isinstance(cfg.dashboard_bind, str) and cfg.dashboard_bind.strip()):
        raise ConfigError("--dashboard-bind must be an address, e.g. 127.0.0.1 or 0.0.0.0")


def _check_agent_ids(cfg: LaunchConfig) -> None:
    if cfg.nodes > cfg.n:
        raise ConfigError(f"--nodes {cfg.nodes} is more than the {cfg.n} agents")
    for agent, _ in cfg.kill_agents:
        if agent >= cfg.n:
            raise ConfigError(f"--kill-agent {agent}@...: there are only agents 0..{cfg.n - 1}")


def _check_run_secret(cfg: LaunchConfig) -> None:
    """CurveZMQ across hosts: the rendezvous keys come from the run secret every node is given."""
    if cfg.nodes > 1 and not cfg.insecure:
        problem = run_secret_available(cfg.run_secret_file)
        if problem:
            raise ConfigError(problem)


def _check_continuation(cfg: LaunchConfig) -> None:
    """--resume and --evaluate start from a run's checkpoints: they must be there."""
    if not (cfg.resume or cfg.evaluate_from):
        return
    source = Path(cfg.evaluate_from or cfg.run_dir)
    missing = [i for i in range(cfg.n) if not (source / f"agent_{i}" / "checkpoint.pt").exists()]
    if missing and cfg.nodes == 1:  # with several nodes, the other nodes' agents are elsewhere
        raise ConfigError(f"{source}: no checkpoint.pt for agents {missing}")
    from drima.agent.checkpoint import read_checkpoint  # imports torch

    for i in set(range(cfg.n)) - set(missing):  # tensors and plain data only: a run folder may come from anyone
        read_checkpoint(source / f"agent_{i}" / "checkpoint.pt")
    if cfg.resume:
        env_row = last_row(source / "env_server" / "metrics.csv")
        reached = int(env_row["step"]) if env_row else 0
        if cfg.steps <= reached:
            raise ConfigError(f"--resume: {source} has reached step {reached} already; --steps is the new total, "
                              f"and must be more than that")


def _check_topology(cfg: LaunchConfig) -> None:
    if is_dynamic(cfg.topology):  # its edges come from positions at every step
        range_radius(cfg.topology)
    else:
        build_topology(cfg.topology, cfg.n, cfg.seed)


# --- The environment: every env family's checks, and the agent count it implies ---


def default_n(cfg: LaunchConfig) -> int:
    """As many agents as the environment has learners: the game's players, the MPE scenario's
    learning agents, the battle map's allied units, the PettingZoo env's possible_agents."""
    return default_agents(cfg.env, cfg.env_options)


def check_env(cfg: LaunchConfig) -> list[dict]:
    """The env spec, its options, and what the rest of the config asks of the env (positions for
    range topologies, sight for range:sight, MPE for render). Returns the agents' specs (obs_dim,
    action) that the learner check builds learners for: agent 0's where all agents are alike,
    every agent's where they may differ (PettingZoo)."""
    if cfg.render and not is_mpe(cfg.env):
        raise ConfigError(f"--render draws MPE envs ({', '.join(MPE_ENVS)}), not {cfg.env}")
    if is_dynamic(cfg.topology) and not has_positions(cfg.env):
        raise ConfigError(f"--topology {cfg.topology}: range topologies need an environment with positions "
                          f"({', '.join(MPE_ENVS)}, smax:MAP, sc2:MAP, vmas:SCENARIO)")
    if is_sight_range(cfg.topology) and not battle_kind(cfg.env):
        raise ConfigError("--topology range:sight needs units with a sight range: smax:MAP or sc2:MAP")
    if is_pettingzoo(cfg.env):
        return _pettingzoo_specs(cfg)
    if cfg.env_workers not in (None, 1):
        raise ConfigError(f"--env-workers steps pettingzoo envs; --env {cfg.env} is stepped in one batch already")
    if battle_kind(cfg.env):  # no JAX or StarCraft II in the launcher: sizes from the map tables
        sizes = battle_spec(cfg.env)
        if cfg.n != sizes["n_agents"]:
            raise ConfigError(f"--env {cfg.env} has {sizes['n_agents']} allied units, but --n is {cfg.n}")
        return [{"obs_dim": sizes["obs_dim"] or 1, "action": {"type": "discrete", "n": sizes["n_actions"]}}]
    from drima.env_server.envs import make_env

    venv = make_env(cfg.env, cfg.n, cfg.envs, cfg.seed, action_type(cfg), cfg.env_options)
    _check_ctde(cfg, venv)
    return [venv.agent_spec(0)]


def _env_workers(cfg: LaunchConfig) -> int:
    """--env-workers as given, else 1, or for a PettingZoo env whose block of K copies is slow to
    step in Python, 2 on a machine with a second core (launch/defaults.py auto_env_workers)."""
    if cfg.env_workers is not None:
        return cfg.env_workers
    if not is_pettingzoo(cfg.env) or auto_env_workers(cfg.envs, float("inf"), usable_cores()) == 1:
        return 1  # one copy or one core: nothing to time
    from drima.env_server.envs import make_env

    venv = make_env(cfg.env, cfg.n, 1, cfg.seed, "discrete", cfg.env_options)
    try:
        return auto_env_workers(cfg.envs, copy_step_seconds(venv, seed=cfg.seed), usable_cores())
    finally:
        getattr(venv, "close", lambda: None)()


def _check_ctde(cfg: LaunchConfig, venv: object) -> None:
    """ctde's centralised critics (and --global-state's) read the global state: the env must have one."""
    if cfg.global_state and cfg.mode != "ctde" and cfg.algo == "dqn":
        raise ConfigError("--global-state: dqn has no critic to read the state (a2c, ppo and ddpg have)")
    if sends_global_state(cfg):
        try:
            require_global_state(venv, cfg.env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _pettingzoo_specs(cfg: LaunchConfig) -> list[dict]:
    """A user's PettingZoo env: every agent's spec, after a short run through the env server's
    contract (check_env), so that a broken env is a one-line error here and not a crash later."""
    from drima.env_server.check import check_env as check_contract
    from drima.env_server.envs import make_env

    if cfg.actions != "auto":
        raise ConfigError(f"--actions {cfg.actions}: a PettingZoo env's own action spaces decide "
                          f"(leave --actions auto)")
    if cfg.env_workers is not None and cfg.env_workers > cfg.envs:
        raise ConfigError(f"--env-workers {cfg.env_workers} is more than the {cfg.envs} copies (--envs)")
    venv = make_env(cfg.env, cfg.n, 1, cfg.seed, "discrete", cfg.env_options)
    _check_ctde(cfg, venv)
    specs = [venv.agent_spec(i) for i in range(cfg.n)]
    problems = check_contract(cfg.env, cfg.env_options, steps=50, n_envs=1, seed=cfg.seed)
    if problems:
        more = f" (and {len(problems) - 1} more: drima.check_env lists them)" if len(problems) > 1 else ""
        raise ConfigError(_one_line(f"--env {cfg.env} breaks the env contract: {problems[0]}{more}"))
    return specs


def check_learner(cfg: LaunchConfig, specs: list[dict]) -> None:
    """Build a learner of cfg.algo with cfg.learner's options for each spec: the algo, its action
    types and every option are checked by the code that will run them."""
    from drima.agent.learners import env_defaults, make_learner  # imports torch

    for i, env_spec in enumerate(specs):
        spec = protocol.spec_body(env_spec, i, cfg.n, cfg.envs)  # what agent i's learner is built from
        who = f"agent {i} ({spec['agent_name']}): " if len(specs) > 1 and "agent_name" in spec else ""
        try:
            make_learner(cfg.algo, spec["obs_dim"], spec["action"], env_defaults(spec, cfg.algo) | cfg.learner, 0,
                         env_spec=spec)
        except TypeError as exc:  # an option of the wrong type, e.g. {"hidden": "64"}
            raise ConfigError(_one_line(f"{who}--learner {cfg.learner}: {exc}")) from None
        except ValueError as exc:
            raise ConfigError(_one_line(f"{who}{exc}")) from None
