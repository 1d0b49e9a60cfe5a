"""K copies of a VMAS scenario behind the env server's VectorEnv contract (`--env vmas:SCENARIO`).

VMAS (the Vectorized Multi-Agent Simulator, the optional `vmas` extra) steps `num_envs` copies
of a scenario as one batched torch computation: here K = --envs, so the env server's K copies
are one array computation with no Python loop over copies.

    --env vmas:navigation --env-options '{"n_agents": 6, "max_steps": 200}'

What maps to what:
- --env-options are the scenario's keyword arguments (an option the scenario does not take is an
  error), plus `max_steps`, the time limit (DEFAULT_MAX_STEPS; null: none, and most scenarios then
  never end). The time limit is truncation, the scenario's own `done()` termination: both are
  reported per agent (EpisodeEnds), with the observation a truncated copy ended on. VMAS agents
  share one episode: every agent is in it, always.
- --n must be the scenario's number of agents. Where --env-options give no `n_agents` and the
  scenario takes one, --n sets it (`--env vmas:navigation --n 6`).
- agent i is VMAS's `env.agents[i]`; each agent has its own observation size and action space.
- actions: discrete (`continuous_actions=False`: one Discrete(n) per agent, VMAS's product of
  its per-axis choices, 0 = stay) or continuous (the learners act in [-1, 1]^dim, rescaled here
  to the agent's Box: [-u_range, u_range] for forces, [0, 1] for communication). LaunchConfig's
  --actions auto picks continuous for ddpg, as in the built-in MPE tasks.
- a copy whose episode ended is reset at once (VMAS's `reset_at`, or one batched `reset` when
  every copy ended together, as a time limit makes them do): its next observation is the new
  episode's first.
- positions: each agent's `state.pos`, so range topologies (`--topology range:R`) work.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .envs import VMAS_PREFIX, EpisodeEnds, EpisodeTally

DEFAULT_MAX_STEPS = 100
INSTALL = 'pip install -e ".[vmas]"'
# vmas.make_env's own arguments: the runtime sets them (from --envs, --seed, --actions)
RESERVED = ("num_envs", "device", "continuous_actions", "seed", "wrapper", "dict_spaces", "multidiscrete_actions",
            "clamp_actions", "grad_enabled", "terminated_truncated", "wrapper_kwargs")


def scenario_name(spec: str) -> str:
    """`vmas:navigation` -> `navigation`."""
    name = spec[len(VMAS_PREFIX):]
    if not name:
        raise ValueError(f"--env {spec}: expected vmas:SCENARIO, e.g. vmas:navigation")
    return name


def import_vmas(spec: str):
    try:
        import vmas
    except ImportError:
        raise ValueError(f"--env {spec} needs the vmas package: {INSTALL}") from None
    return vmas


def build_vmas(spec: str, n_envs: int, seed: int, continuous: bool, options: dict[str, Any] | None,
               n_agents: int | None = None):
    """(VMAS Environment, max_steps) for `vmas:SCENARIO` and its options; with n_agents, a
    scenario that takes `n_agents` and was not given one is built with that many."""
    vmas = import_vmas(spec)
    name = scenario_name(spec)
    known = sorted(set(vmas.scenarios) | set(vmas.mpe_scenarios) | set(vmas.debug_scenarios))
    if name not in known:
        raise ValueError(f"--env {spec}: no VMAS scenario {name!r}; VMAS {vmas.__version__} has {', '.join(known)}")
    options = dict(options or {})
    max_steps = options.pop("max_steps", DEFAULT_MAX_STEPS)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"--env {spec}: env option max_steps must be an integer >= 1 (or null: no time limit), "
                         f"got {max_steps!r}")
    reserved = sorted(set(options) & set(RESERVED))
    if reserved:
        raise ValueError(f"--env {spec}: {reserved} are set by the runtime (--envs, --seed, --actions), "
                         f"not env options")
    env = _make(vmas, spec, name, n_envs, seed, continuous, max_steps, options)
    if n_agents is None or env.n_agents == n_agents:
        return env, max_steps
    if "n_agents" not in options:  # the scenario may take its size: --n sets it
        try:
            sized = _make(vmas, spec, name, n_envs, seed, continuous, max_steps, options | {"n_agents": n_agents})
        except ValueError:  # it does not take n_agents, or not this many
            sized = None
        if sized is not None and sized.n_agents == n_agents:
            return sized, max_steps
    raise ValueError(f"--env {spec} has {env.n_agents} agents ({', '.join(a.name for a in env.agents)}) with "
                     f"these env options, but --n is {n_agents}")


def _make(vmas, spec: str, name: str, n_envs: int, seed: int, continuous: bool, max_steps: int | None,
          options: dict[str, Any]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            env = vmas.make_env(name, num_envs=n_envs, device="cpu", continuous_actions=continuous, seed=seed,
                                max_steps=max_steps, terminated_truncated=True, clamp_actions=True, **options)
        except Exception as exc:  # the scenario's own checks (asserts, TypeErrors): one line
            raise ValueError(f"--env {spec}: building the scenario failed: {type(exc).__name__}: {exc}") from None
    unused = []
    for w in caught:  # VMAS only warns about options a scenario does not take: a typo would go unnoticed
        text = str(w.message)
        if "passed but not used by the scenario" in text:
            unused += [key for key in options if repr(key) in text]
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if unused:
        raise ValueError(f"--env {spec}: scenario {name!r} takes no env option {', '.join(sorted(unused))}")
    return env


def count_agents(spec: str, options: dict[str, Any] | None) -> int:
    """The scenario's number of agents with these options (the launcher's default --n)."""
    env, _ = build_vmas(spec, 1, 0, False, options)
    return env.n_agents


def _space_size(space) -> int:
    from gym import spaces  # VMAS's spaces are gym's (not gymnasium's)

    if isinstance(space, spaces.Dict):
        return sum(_space_size(s) for s in space.spaces.values())
    return int(np.prod(space.shape))


def _flat(obs) -> np.ndarray:
    """One agent's batched observation (a (K, ...) tensor, or a dict of them) -> (K, obs_dim) float32."""
    if isinstance(obs, dict):
        return np.concatenate([_flat(v) for v in obs.values()], axis=1)
    return obs.detach().reshape(obs.shape[0], -1).numpy().astype(np.float32)


class VMASVectorEnv:
    """K copies of one VMAS scenario, stepped as one batched torch computation."""

    metric_names = EpisodeTally.names

    def __init__(self, spec: str, n_agents: int, n_envs: int, seed: int = 0, action_type: str = "discrete",
                 options: dict[str, Any] | None = None, torch_threads: int | None = 1):
        """torch_threads: set torch's intra-op threads in this process (the env server shares the
        machine with the agents' learners; VMAS at these sizes gains little from more). None: leave it."""
        if action_type not in ("discrete", "continuous"):
            raise ValueError(f"--env {spec}: action type {action_type!r}: use discrete or continuous")
        import_vmas(spec)
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.spec, self.n_agents, self.n_envs = spec, n_agents, n_envs
        self.action_type = action_type
        self.env, self.max_steps = build_vmas(spec, n_envs, seed, action_type == "continuous", options, n_agents)
        self.agents = list(self.env.agents)
        self.names = [a.name for a in self.agents]
        self.obs_dims = [_space_size(self.env.observation_space[i]) for i in range(n_agents)]
        self.actions, self._low, self._half = [], [], []
        for i in range(n_agents):
            space = self.env.action_space[i]
            if action_type == "discrete":
                self.actions.append({"type": "discrete", "n": int(space.n)})
                self._low.append(None)
                self._half.append(None)
            else:  # [-1, 1] -> [low, high]: low + (a + 1) * (high - low) / 2
                low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
                self.actions.append({"type": "continuous", "dim": int(low.size), "low": -1.0, "high": 1.0})
                self._low.append(low)
                self._half.append((high - low) / 2)
        k = n_envs
        self._none = np.zeros((n_agents, k), bool)
        self._all = np.ones((n_agents, k), bool)
        self._ends = EpisodeEnds(self._none, self._none, [None] * n_agents, self._all, self._all)
        self._tally = EpisodeTally(k)
        self._positions = self._read_positions()

    # -- VectorEnv ------------------------------------------------------------------------------------
    def agent_spec(self, agent: int) -> dict:
        spec = {"obs_dim": self.obs_dims[agent], "action": dict(self.actions[agent]), "continuing": False,
                "single_state": False, "env": self.spec, "agent_name": self.names[agent]}
        return spec | ({"episode_length": int(self.max_steps)} if self.max_steps else {})

    def reset(self) -> list[np.ndarray]:
        obs = self.env.reset()
        self._tally = EpisodeTally(self.n_envs)
        self._ends = EpisodeEnds(self._none, self._none, [None] * self.n_agents, self._all, self._all)
        self._positions = self._read_positions()
        return [_flat(o) for o in obs]

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        import torch

        obs_t, rew_t, term_t, trunc_t, _ = self.env.step([self._to_vmas(i, a) for i, a in enumerate(actions)])
        obs = [_flat(o) for o in obs_t]
        rewards = torch.stack(rew_t).numpy().astype(np.float32)
        terminated = term_t.numpy().astype(bool)
        truncated = trunc_t.numpy().astype(bool) & ~terminated  # a terminal state at the time limit is terminal
        ended = terminated | truncated
        self._positions = self._read_positions()  # where this step's rewards were earned, before any reset
        self._tally.add(rewards.sum(0))
        final: list[np.ndarray | None] = [o.copy() for o in obs] if truncated.any() else [None] * self.n_agents
        if ended.any():
            self._tally.end(np.flatnonzero(ended))
            obs = self._reset_copies(np.flatnonzero(ended), obs)
        n = self.n_agents
        self._ends = EpisodeEnds(np.broadcast_to(terminated, (n, self.n_envs)).copy(),
                                 np.broadcast_to(truncated, (n, self.n_envs)).copy(), final, self._all, self._all)
        return obs, rewards, ended.astype(np.float32)

    def _to_vmas(self, agent: int, action: np.ndarray):
        import torch

        if self._low[agent] is None:
            return torch.from_numpy(np.asarray(action, np.int64).reshape(self.n_envs))
        a = np.clip(np.asarray(action, np.float32).reshape(self.n_envs, -1), -1.0, 1.0)
        return torch.from_numpy(self._low[agent] + (a + 1.0) * self._half[agent])  # clamp_actions absorbs rounding

    def _reset_copies(self, rows: np.ndarray, obs: list[np.ndarray]) -> list[np.ndarray]:
        """Reset the copies in `rows`; their rows of `obs` become the new episodes' first."""
        if len(rows) == self.n_envs:  # all at once (a time limit): one batched reset
            return [_flat(o) for o in self.env.reset()]
        for k in rows:
            self.env.reset_at(int(k), return_observations=False)
        fresh = self.env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False,
                                           get_dones=False)[0]
        for o, f in zip(obs, fresh, strict=True):
            o[rows] = _flat(f)[rows]
        return obs

    def _read_positions(self) -> np.ndarray:
        """(n_agents, K, dim_p) float32: every agent's position now."""
        import torch

        return torch.stack([a.state.pos for a in self.agents]).numpy().astype(np.float32)

    # -- capabilities ------------------------------------------------------------------------------------
    def episode_ends(self) -> EpisodeEnds:
        return self._ends

    def in_range(self, radius: float | None) -> np.ndarray:
        """(n, n, K) bool: agents i and j are within `radius` of each other (i != j), measured after
        the last step, before an episode reset, i.e. where the rewards of that step were earned."""
        if radius is None:
            raise ValueError(f"--env {self.spec}: VMAS agents have no sight range: use range:R")
        delta = self._positions[:, None] - self._positions[None, :]  # (n, n, K, dim_p)
        close = np.sqrt((delta ** 2).sum(-1)) <= radius
        close[np.arange(self.n_agents), np.arange(self.n_agents)] = False
        return close

    def pop_task_metrics(self) -> list[dict[str, float]]:
        return self._tally.pop()

    def close(self) -> None:
        viewer = getattr(self.env, "viewer", None)
        if viewer is not None:
            viewer.close()
