"""`drima.check_env`: run an environment through the env server's contract and say, one line
each, where it breaks it (like PettingZoo's parallel_api_test, but for what the runtime relies
on, and reporting instead of asserting). The launcher runs it on a PettingZoo env before any
process starts, so that a broken env is a one-line error there, not a crash in the socket loop.

    from drima import check_env
    problems = check_env("pettingzoo:my_envs:make_env", {"size": 5})
    assert not problems, "\n".join(problems)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .envs import AgentEpisodes, default_agents, make_env
from .pettingzoo_env import build_parallel_env, is_pettingzoo

MAX_LINES = 20  # past this many, the env is broken enough: stop listing


def check_env(env: str | Callable[..., Any], options: dict[str, Any] | None = None, steps: int = 100,
              n_envs: int = 2, seed: int = 0) -> list[str]:
    """Violations of the contract, one line each; [] when the env passes.

    `env`: an --env spec (`pettingzoo:MODULE[:FACTORY]`, `collection`, `pd`, ...) or a callable
    that returns a PettingZoo ParallelEnv (called with `options` as keyword arguments)."""
    spec = env if isinstance(env, str) else f"pettingzoo:{getattr(env, '__module__', '?')}:" \
                                             f"{getattr(env, '__qualname__', repr(env))}"
    problems, n_agents = [], None
    if callable(env) or is_pettingzoo(spec):
        problems, n_agents = _check_parallel_api(env, options, steps, seed)
    if problems:  # the runtime's own checks would only repeat them
        return problems[:MAX_LINES]
    return _check_vector_env(env, spec, options, steps, n_envs, seed, n_agents)[:MAX_LINES]


def _check_parallel_api(env_ref, options, steps: int, seed: int) -> tuple[list[str], int]:
    """The PettingZoo ParallelEnv API as the adapter uses it, on one copy with random actions:
    what is wrong, and how many agents the env has."""
    try:
        env = build_parallel_env(env_ref, options)
    except ValueError as exc:
        return [str(exc)], 0
    agents = list(getattr(env, "possible_agents", []) or [])
    spaces, problems = _spaces(env, agents)
    if problems:
        return problems, len(agents)
    rng = np.random.default_rng(seed)
    try:
        out = env.reset(seed=seed)
    except Exception as exc:
        return [f"reset(seed={seed}) failed: {type(exc).__name__}: {exc}"], len(agents)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
        return ["reset() must return (observations, infos), two dicts keyed by agent name"], len(agents)
    problems += _check_obs(out[0], list(env.agents), agents, spaces, "reset")
    for t in range(steps):
        if problems:
            break
        problems += _step(env, agents, spaces, rng, t)
    return problems, len(agents)


def _spaces(env, agents: list[str]) -> tuple[dict, list[str]]:
    """Each agent's (observation space, action space), and what is wrong with the agent list."""
    if not agents:
        return {}, ["possible_agents is empty: the env has no agents"]
    if len(set(agents)) != len(agents):
        return {}, [f"possible_agents has repeated names: {agents}"]
    spaces, problems = {}, []
    for name in agents:
        try:
            spaces[name] = (env.observation_space(name), env.action_space(name))
        except Exception as exc:
            problems.append(f"observation_space/action_space({name!r}) failed: {type(exc).__name__}: {exc}")
    return spaces, problems


def _step(env, agents: list[str], spaces: dict, rng: np.random.Generator, t: int) -> list[str]:
    """One step with random actions (and a reset where the episode ended): what is wrong with it."""
    live = list(env.agents)
    actions = {name: _random_action(spaces[name][1], rng) for name in live}
    where = f"step {t}"
    try:
        out = env.step(actions)
    except Exception as exc:
        return [f"{where}: step() failed: {type(exc).__name__}: {exc}"]
    if not (isinstance(out, tuple) and len(out) == 5 and all(isinstance(x, dict) for x in out[:4])):
        return [f"{where}: step() must return (observations, rewards, terminations, truncations, infos), dicts"]
    obs, rewards, terms, truncs, _ = out
    problems = [f"{where}: agent {name!r} is not in possible_agents {agents}"
                for name in sorted(set(rewards) | set(terms) | set(truncs)) if name not in agents]
    for name in live:
        problems += _check_agent_step(name, rewards.get(name, 0.0), terms.get(name), truncs.get(name),
                                      name not in env.agents, where)
    problems += _check_obs(obs, [a for a in live if a in env.agents], agents, spaces, where)
    if not env.agents:
        try:
            env.reset()
        except Exception as exc:
            problems.append(f"{where}: reset() after the episode failed: {type(exc).__name__}: {exc}")
    return problems


def _check_agent_step(name: str, reward: Any, term: Any, trunc: Any, gone: bool, where: str) -> list[str]:
    problems = []
    try:
        finite = math.isfinite(float(reward))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        problems.append(f"{where}: agent {name!r}'s reward is {reward!r}, not a finite number")
    if gone and not (term or trunc):
        problems.append(f"{where}: agent {name!r} left env.agents with neither terminated nor truncated set")
    if term and trunc:
        problems.append(f"{where}: agent {name!r} is both terminated and truncated")
    return problems


def _check_obs(obs: dict, live: list[str], agents: list[str], spaces: dict, where: str) -> list[str]:
    from .pettingzoo_env import obs_codec

    problems = []
    for name in live:
        if name not in agents:
            problems.append(f"{where}: agent {name!r} is in env.agents but not in possible_agents {agents}")
            continue
        if name not in obs:
            problems.append(f"{where}: no observation for agent {name!r}, which is in the episode")
            continue
        try:
            codec = obs_codec(name, spaces[name][0])
            flat, _ = codec.encode(obs[name])
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        except (TypeError, IndexError, KeyError) as exc:
            problems.append(f"{where}: agent {name!r}'s observation does not fit its space ({exc})")
            continue
        if flat.shape != (codec.dim,):
            problems.append(f"{where}: agent {name!r}'s observation has {flat.size} values, its space {codec.dim}")
        elif not np.isfinite(flat).all():
            problems.append(f"{where}: agent {name!r}'s observation has NaN or infinite values")
    return problems


def _random_action(space, rng: np.random.Generator):
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return int(space.start + rng.integers(space.n))
    if isinstance(space, spaces.Box):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return rng.uniform(low, high).astype(space.dtype)
    return space.sample()


def _check_vector_env(env_ref, spec: str, options, steps: int, n_envs: int, seed: int,
                      n_agents: int | None) -> list[str]:
    """What the env server sends, through the adapter: shapes, dtypes, finiteness, episode ends.
    n_agents: known already for PettingZoo envs (from _check_parallel_api)."""
    try:
        n = n_agents if n_agents is not None else default_agents(spec, options or {})
        if isinstance(env_ref, str):
            venv = make_env(spec, n, n_envs, seed, "discrete", options)
        else:
            from .pettingzoo_env import PettingZooVectorEnv

            venv = PettingZooVectorEnv(env_ref, n, n_envs, seed, options)
        specs = [venv.agent_spec(i) for i in range(n)]
        obs = venv.reset()
    except ValueError as exc:
        return [str(exc)]
    problems = _check_vector_obs(obs, specs, n_envs, "reset")
    rng = np.random.default_rng(seed)
    for t in range(steps):
        if problems:
            break
        actions = [random_actions(s["action"], n_envs, rng) for s in specs]
        try:
            obs, rewards, done = venv.step(actions)
        except ValueError as exc:
            return problems + [f"step {t}: {exc}"]
        problems += _check_vector_step(venv, obs, rewards, done, specs, n_envs, f"step {t}")
    getattr(venv, "close", lambda: None)()
    return problems


def _check_vector_step(venv, obs: list[np.ndarray], rewards: np.ndarray, done: np.ndarray, specs: list[dict],
                       n_envs: int, where: str) -> list[str]:
    n = len(specs)
    problems = _check_vector_obs(obs, specs, n_envs, where)
    if np.shape(rewards) != (n, n_envs) or not np.isfinite(rewards).all():
        problems.append(f"{where}: rewards must be finite, shape ({n}, {n_envs}), got {np.shape(rewards)}")
    if np.shape(done) != (n_envs,):
        problems.append(f"{where}: done must have shape ({n_envs},), got {np.shape(done)}")
    if isinstance(venv, AgentEpisodes):
        ends = venv.episode_ends()
        if (ends.terminated & ends.truncated).any():
            problems.append(f"{where}: an agent is both terminated and truncated")
        if ((ends.terminated | ends.truncated) & ~ends.acted).any():
            problems.append(f"{where}: an agent out of the episode ended it again")
    return problems


def _check_vector_obs(obs: list[np.ndarray], specs: list[dict], n_envs: int, where: str) -> list[str]:
    problems = []
    if len(obs) != len(specs):
        return [f"{where}: {len(obs)} observations for {len(specs)} agents"]
    for i, (o, s) in enumerate(zip(obs, specs, strict=True)):
        name = s.get("agent_name", i)
        if np.shape(o) != (n_envs, s["obs_dim"]) or np.asarray(o).dtype != np.float32:
            problems.append(f"{where}: agent {name!r}'s observations are {np.asarray(o).dtype} "
                            f"{np.shape(o)}, expected float32 ({n_envs}, {s['obs_dim']})")
        elif not np.isfinite(o).all():
            problems.append(f"{where}: agent {name!r}'s observation has NaN or infinite values")
    return problems


def random_actions(space: dict, n_envs: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions of one agent (its spec's "action") for n_envs copies."""
    if space["type"] == "continuous":
        return rng.uniform(-1.0, 1.0, (n_envs, space["dim"])).astype(np.float32)
    return rng.integers(0, space["n"], n_envs).astype(np.int32)
