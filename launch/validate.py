"""The one place that decides whether a launch config can run, for `drima-launch` and `drima.run`
alike. Everything here happens before any process starts or any file is written.

Messages name the CLI flag (`--n` is `LaunchConfig.n`, `--link-drop` is `link_drop`), so that
the CLI and the Python API report a bad config with the same line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from drima.env_server.envs import MPE_ENVS, battle_kind, battle_spec, has_positions, is_mpe
from drima.env_server.matrix_games import get_game
from drima.env_server.server import MISSING_ACTIONS
from drima.metrics import last_row
from drima.topology import build_topology, is_dynamic, is_sight_range, range_radius
from drima.types import REWARD_MODES

from .plan import LaunchConfig, action_type


class ConfigError(ValueError):
    """A launch config that cannot run. The message is one line, the same that `drima-launch`
    prints after `drima-launch: error:`."""


def validate(cfg: LaunchConfig) -> LaunchConfig:
    """Check every value of `cfg`, the env, the topology and the learner options; return `cfg`
    with what depends on them filled in (n from the env when None, tcp across nodes).
    Raises ConfigError."""
    try:
        _check_values(cfg)
        cfg = dataclasses.replace(cfg, n=default_n(cfg) if cfg.n is None else cfg.n,
                                  transport="tcp" if cfg.nodes > 1 else cfg.transport)  # ipc does not cross hosts
        _check_agent_ids(cfg)
        _check_continuation(cfg)
        _check_topology(cfg)
        check_learner(cfg, check_env(cfg))
    except ConfigError:
        raise
    except AssertionError as exc:  # the MPE scenarios assert on their own arguments
        raise ConfigError(_one_line(f"--env {cfg.env}: {exc}")) from None
    except ValueError as exc:  # TopologyError, PayoffFileError, the envs' and learners' own checks
        raise ConfigError(_one_line(str(exc))) from None
    return cfg


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_values(cfg: LaunchConfig) -> None:
    """Ranges and choices of single values; argparse already checked the choices for the CLI."""
    for name in ("n", "steps", "envs", "log_every", "checkpoint_every"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    for name, allowed in (("mode", REWARD_MODES), ("transport", ("ipc", "tcp")), ("actions", ("auto", "discrete",
                          "continuous")), ("missing_action", MISSING_ACTIONS), ("on_env_loss", ("exit", "wait"))):
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: choose from {', '.join(allowed)}")
    if not 0 <= cfg.link_drop <= 1:
        raise ConfigError("--link-drop must be in [0, 1]")
    if cfg.link_delay_ms < 0:
        raise ConfigError("--link-delay-ms must be >= 0")
    if cfg.heartbeat_interval_s <= 0 or cfg.heartbeat_liveness < 1 or cfg.reconnect_timeout_s <= 0:
        raise ConfigError("--heartbeat-interval and --reconnect-timeout must be > 0, --heartbeat-liveness >= 1")
    if cfg.nodes < 1 or not 0 <= cfg.node_rank < cfg.nodes:
        raise ConfigError("--nodes must be >= 1 and --node-rank in 0..nodes-1")
    if cfg.nodes > 1 and not re.fullmatch(r"[^:\s]+:\d+", cfg.rendezvous):
        raise ConfigError("--nodes > 1 needs --rendezvous HOST:PORT (node 0's address)")
    if cfg.max_restarts < 0 or cfg.restart_delay_s < 0:
        raise ConfigError("--max-restarts and --restart-delay must be >= 0")
    if cfg.mu_step_size <= 0 or cfg.mu_step_size > 1:
        raise ConfigError("--mu-step-size must be in (0, 1]")
    for name in ("learner", "env_options"):
        if not isinstance(getattr(cfg, name), dict):
            raise ConfigError(f"--{name.replace('_', '-')} must be a dict (a JSON object)")
    for kill in cfg.kill_agents:
        if not (isinstance(kill, (list, tuple)) and len(kill) == 2 and all(isinstance(x, int) and x >= 0 for x in kill)):
            raise ConfigError(f"--kill-agent {kill!r}: expected [agent, step], both ints >= 0")
    if cfg.resume and cfg.evaluate_from:
        raise ConfigError("--resume and --evaluate: one at a time")
    if cfg.render and cfg.evaluate_from:
        raise ConfigError(f"--render draws an MPE run's learned policies: `drima-render {cfg.evaluate_from}`")


def _check_agent_ids(cfg: LaunchConfig) -> None:
    if cfg.nodes > cfg.n:
        raise ConfigError(f"--nodes {cfg.nodes} is more than the {cfg.n} agents")
    for agent, _ in cfg.kill_agents:
        if agent >= cfg.n:
            raise ConfigError(f"--kill-agent {agent}@...: there are only agents 0..{cfg.n - 1}")


def _check_continuation(cfg: LaunchConfig) -> None:
    """--resume and --evaluate start from a run's checkpoints: they must be there."""
    if not (cfg.resume or cfg.evaluate_from):
        return
    source = Path(cfg.evaluate_from or cfg.run_dir)
    missing = [i for i in range(cfg.n) if not (source / f"agent_{i}" / "checkpoint.pt").exists()]
    if missing and cfg.nodes == 1:  # with several nodes, the other nodes' agents are elsewhere
        raise ConfigError(f"{source}: no checkpoint.pt for agents {missing}")
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
    learning agents, the battle map's allied units."""
    if battle_kind(cfg.env):
        return battle_spec(cfg.env)["n_agents"]
    if is_mpe(cfg.env):
        from drima.env_server.mpe.vector import count_learners  # imports mpe2: only when asked for

        return count_learners(cfg.env, cfg.env_options)
    return get_game(cfg.env).n_players


def check_env(cfg: LaunchConfig) -> dict:
    """The env spec, its options, and what the rest of the config asks of the env (positions for
    range topologies, sight for range:sight, MPE for render). Returns agent 0's spec (obs_dim,
    action), which the learner check builds a learner for."""
    if cfg.render and not is_mpe(cfg.env):
        raise ConfigError(f"--render draws MPE envs ({', '.join(MPE_ENVS)}), not {cfg.env}")
    if is_dynamic(cfg.topology) and not has_positions(cfg.env):
        raise ConfigError(f"--topology {cfg.topology}: range topologies need an environment with positions "
                          f"({', '.join(MPE_ENVS)}, smax:MAP, sc2:MAP)")
    if is_sight_range(cfg.topology) and not battle_kind(cfg.env):
        raise ConfigError("--topology range:sight needs units with a sight range: smax:MAP or sc2:MAP")
    if battle_kind(cfg.env):  # no JAX or StarCraft II in the launcher: sizes from the map tables
        sizes = battle_spec(cfg.env)
        if cfg.n != sizes["n_agents"]:
            raise ConfigError(f"--env {cfg.env} has {sizes['n_agents']} allied units, but --n is {cfg.n}")
        return {"obs_dim": sizes["obs_dim"] or 1, "action": {"type": "discrete", "n": sizes["n_actions"]}}
    from drima.env_server.envs import make_env

    return make_env(cfg.env, cfg.n, cfg.envs, cfg.seed, action_type(cfg), cfg.env_options).agent_spec(0)


def check_learner(cfg: LaunchConfig, spec: dict) -> None:
    """Build one learner of cfg.algo with cfg.learner's options for this env: the algo, its action
    types and every option are checked by the code that will run them."""
    from drima.agent.learners import env_defaults, make_learner  # imports torch

    try:
        make_learner(cfg.algo, spec["obs_dim"], spec["action"], env_defaults(spec, cfg.algo) | cfg.learner, 0)
    except TypeError as exc:  # an option of the wrong type, e.g. {"hidden": "64"}
        raise ConfigError(_one_line(f"--learner {cfg.learner}: {exc}")) from None
