"""The same agents, environment and DRI rule in ONE process with no sockets.

This is the yardstick of the runtime benchmark (what decentralisation costs or gains) and a
fast way to try learner settings. It is not how DRIMA runs: there is no central trainer in
the runtime, and this loop exists only to measure against.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from drima.agent.core import AgentCore
from drima.agent.learners import env_defaults, make_learner
from drima.env_server.envs import (
    AgentEpisodes,
    HasActionMasks,
    HasEpisodeMetrics,
    HasFinalState,
    VectorEnv,
    ctde_spec,
    default_action_type,
    joint_actions,
    make_env,
    peer_masks,
    require_global_state,
    team_reward,
)
from drima.launch.plan import agent_seed
from drima.topology import build_topology, is_dynamic, neighbour_map, range_radius
from drima.types import StepInfo


def run_reference(env: str, algo: str, mode: str, topology: str, n: int, steps: int, seed: int,
                  n_envs: int = 8, learner_overrides: dict | None = None, mu_step_size: float = 0.05,
                  env_options: dict | None = None, log_every: int = 0, global_state: bool = False) -> dict:
    """The same learners, env and DRI rule as `drima-launch` with these settings, in this one
    process; `global_state` as --global-state. Returns env steps/s and the final figures."""
    torch.set_num_threads(1)
    sends_state = mode == "ctde" or global_state  # as the env server: team reward, global state, joint actions
    venv = make_env(env, n, n_envs, seed, default_action_type(env, algo), env_options, final_state=sends_state)
    dynamic = is_dynamic(topology)
    radius = range_radius(topology) if dynamic else None  # None with range:sight: the units' sight ranges
    nbrs = neighbour_map(build_topology("full" if dynamic else topology, n, seed))
    if mode == "ctde":  # learns from the team reward: no neighbours
        nbrs = {i: [] for i in range(n)}
    if sends_state:
        require_global_state(venv, env)
    agents = [_make_agent(venv, i, algo, mode, seed, learner_overrides, mu_step_size, sends_state) for i in range(n)]
    obs = venv.reset()
    infos = _step_infos(venv, n, sends_state)
    final_window = steps - max(1, steps // 10)
    team_rewards, episodes, final_episodes = [], [], []
    t0 = time.perf_counter()
    for t in range(steps):
        venv.count_joint_actions = t >= final_window
        actions = [a.act(o, info) for a, o, info in zip(agents, obs, infos, strict=True)]
        next_obs, rewards, dones = venv.step(actions)
        step_infos = (infos, _step_infos(venv, n, sends_state, actions))  # at obs and at next_obs
        infos = step_infos[1]
        near = venv.in_range(radius) if dynamic else None
        team = team_reward(venv, rewards)
        _learn(agents, nbrs, venv, obs, actions, rewards, next_obs, dones, step_infos, near, team)
        obs = next_obs
        ended = list(venv.pop_task_metrics()) if isinstance(venv, HasEpisodeMetrics) else []
        episodes += ended
        if t >= final_window:
            team_rewards.append(float(team.mean()))
            final_episodes += ended
        if log_every and (t + 1) % log_every == 0 and episodes:
            recent = {k: round(float(np.mean([e[k] for e in episodes[-10:]])), 3) for k in episodes[-1]}
            print(f"step {t + 1}: {recent} ({time.perf_counter() - t0:.0f}s)", flush=True)
    wall = time.perf_counter() - t0
    out = {"env_steps_per_s": steps * n_envs / wall, "wall_s": wall,
           "mean_team_reward": float(np.mean(team_rewards)),
           "joint_action_freq": getattr(venv, "joint_action_freq", dict)()}
    if final_episodes:
        out |= {k: float(np.mean([e[k] for e in final_episodes])) for k in final_episodes[0]}
    return out


def _make_agent(venv: VectorEnv, i: int, algo: str, mode: str, seed: int, learner_overrides: dict | None,
                mu_step_size: float, ctde: bool) -> AgentCore:
    """Agent i as its agent process builds it, from the spec the env server would send."""
    spec = venv.agent_spec(i)
    spec |= ctde_spec(venv, i) if ctde else {}
    options = env_defaults(spec, algo) | (learner_overrides or {})
    learner = make_learner(algo, spec["obs_dim"], spec["action"], options, agent_seed(seed, i),
                           spec.get("state_dim", 0), env_spec=spec)
    return AgentCore(learner, mode, mu_step_size)


def _step_infos(venv: VectorEnv, n: int, ctde: bool, actions: list[np.ndarray] | None = None) -> list[StepInfo | None]:
    """Per agent, what comes with its observation: battles' action masks, and in ctde the global
    state and the joint actions that led to it."""
    avail = venv.avail_actions() if isinstance(venv, HasActionMasks) else [None] * n
    state = venv.global_state() if ctde else None
    joint = None
    if ctde and actions is not None:
        joint = joint_actions(actions, [venv.agent_spec(j)["action"] for j in range(n)], len(actions[0]))
    return [None if a is None and state is None else StepInfo(a, state, joint) for a in avail]


def _final_info(venv: VectorEnv, info: StepInfo | None, truncated: np.ndarray) -> StepInfo | None:
    """info as the transition that led to it sees it: the state truncated copies ended on (MPE)."""
    final = venv.final_global_state() if isinstance(venv, HasFinalState) and info is not None \
        and info.state is not None and truncated.any() else None
    if final is None:
        return info
    return info.ended_on(truncated, final)


def _learn(agents: list[AgentCore], nbrs: dict[int, list[int]], venv: VectorEnv, obs: list[np.ndarray],
           actions: list[np.ndarray], rewards: np.ndarray, next_obs: list[np.ndarray], dones: np.ndarray,
           infos: tuple[list[StepInfo | None], list[StepInfo | None]], near: np.ndarray | None,
           team: np.ndarray) -> None:
    """Every agent learns from the step just taken, with its neighbours' rewards and mus (as
    they were before this step), as the agent processes do."""
    mus = np.array([a.mu for a in agents])
    ends = venv.episode_ends() if isinstance(venv, AgentEpisodes) else None
    masks = peer_masks(near, ends)  # as the env server sends them
    for i, a in enumerate(agents):
        js = nbrs[i]
        mask = None if masks is None else masks[i, js]
        nxt, terminated, truncated, took_part = next_obs[i], dones, None, None
        if ends is not None:
            terminated, truncated, took_part = ends.terminated[i], ends.truncated[i], ends.acted[i]
            if ends.final_obs[i] is not None:
                nxt = np.where(truncated[:, None], ends.final_obs[i], nxt)
        next_info = infos[1][i] if truncated is None else _final_info(venv, infos[1][i], truncated)
        a.learn(obs[i], actions[i], rewards[i], nxt, terminated, rewards[js], mus[js], in_range=mask,
                team_reward=team, next_info=next_info, truncated=truncated, active=took_part, info=infos[0][i])
