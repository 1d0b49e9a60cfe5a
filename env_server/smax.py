"""SMAX battles (jaxmarl 0.2.0's JAX re-implementation of SMAC) behind the env server's VectorEnv contract.

`--env smax:MAP`, MAP one of jaxmarl's maps (3m, 2s3z, 5m_vs_6m, ..., see MAPS). One agent process
per allied unit; the enemy team is jaxmarl's scripted heuristic (HeuristicEnemySMAX: shoot the
closest enemy in range, else advance), as in JaxMARL's own SMAX baselines.

K copies are stepped by one jitted `jax.vmap` of the step. Battles end at different times: a copy
whose battle ended is reset by itself, its `done` is 1 at that step and the observation sent is the
new battle's first. A battle ends in a terminal state when one side is destroyed; one still going at
the episode limit was cut (a truncation), and episode_ends() says so, with the observation it ended
on, so that learners bootstrap there (battle_ends). Only the env-server process imports JAX (inside
SMAXVectorEnv); the launcher and the agents use the JAX-free parts of this module.

Actions of an allied unit, n_actions = 5 + n_enemies:
  0..3 move, 4 stop, 5 + j attack enemy j.
The avail-actions mask (RESULT extra "avail", uint8 K x n_actions) says which are allowed now:
moves while alive, stop always, an attack when that enemy is alive and within attack range. A dead
unit's process keeps stepping in lockstep with the others: only stop is available (its policy has
one choice, so its policy gradient is 0), its own-health term is 0, and it still gets the group
term below, as in SMAX and SMAC, where the dead share the team's later reward. A dead unit is
nobody's neighbour under `range:sight`, so its reward enters no one's DRI signal.

Rewards, per step and copy. h is a unit's health fraction (health / its type's max health, in
[0, 1]) and damage = max(0, h(t) - h(t+1)) over one step:

  group term, every agent:   g   = (1 / n_enemies) * sum_e damage_e  +  won_bonus * won
  own term, agent i:         o_i = -health_coef * damage_i
  agent i's reward:          r_i = g + o_i
  team reward (ctde):        R   = mean_i r_i = g - health_coef * (1 / n_allies) * sum_j damage_j

g is jaxmarl's SMAX reward: destroying the whole enemy team sums to 1 over a battle and a win adds
won_bonus (env option `won_bonus` or jaxmarl's `won_battle_bonus`, default 1). won = every enemy
dead and an ally alive.
health_coef (env option, default 0.5): a unit that dies has lost 0.5 in ind and dri; in ctde a team
that loses every unit has lost 0.5 altogether. The -ind and -dri agents learn from r_i (own health
only); ctde agents learn from R, the "reward containing all ally members" of the paper, which the
env server sends as the extra "team" together with the global state ("state": jaxmarl's world state,
per unit health, position, weapon cooldown and type bits, then every unit's team and type).

Episode metrics, one row per finished battle: won, episode_team_return (sum of r_i over allies and
steps), allies_alive and enemies_alive at the end, episode_length.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .envs import EpisodeEnds, time_limit_ends

# jaxmarl 0.2.0's MAP_NAME_TO_SCENARIO as (allies, enemies), so that the launcher can check a map
# and size a run without importing JAX (tests compare this table with jaxmarl's).
MAPS: dict[str, tuple[int, int]] = {
    "3m": (3, 3), "8m": (8, 8), "25m": (25, 25), "5m_vs_6m": (5, 6), "10m_vs_11m": (10, 11),
    "27m_vs_30m": (27, 30), "2s3z": (5, 5), "3s5z": (8, 8), "3s5z_vs_3s6z": (8, 9), "3s_vs_5z": (3, 5),
    "6h_vs_8z": (6, 8), "smacv2_5_units": (5, 5), "smacv2_10_units": (10, 10), "smacv2_20_units": (20, 20),
}
N_MOVE_ACTIONS = 5  # 4 moves + stop
STOP = 4
_UNIT_TYPES, _UNIT_FEATURES, _OWN_FEATURES = 6, 7 + 6, 4 + 6  # jaxmarl's unit_list observation
METRIC_NAMES = ("won", "episode_team_return", "allies_alive", "enemies_alive", "episode_length")


def map_of(spec: str) -> str:
    """MAP of `smax:MAP`, checked against the known maps."""
    name = spec.partition(":")[2]
    if name not in MAPS:
        raise ValueError(f"unknown SMAX map {name!r} in --env {spec}; choose from {', '.join(MAPS)}")
    return name


def static_spec(spec: str) -> dict:
    """Observation and action sizes of `smax:MAP` without JAX (jaxmarl's formulas)."""
    allies, enemies = MAPS[map_of(spec)]
    return {"n_allies": allies, "obs_dim": _UNIT_FEATURES * (allies - 1 + enemies) + _OWN_FEATURES,
            "n_actions": N_MOVE_ACTIONS + enemies, "state_dim": (_OWN_FEATURES + 2) * (allies + enemies)}


def battle_rewards(ally_before: np.ndarray, ally_after: np.ndarray, enemy_before: np.ndarray,
                   enemy_after: np.ndarray, won: np.ndarray, health_coef: float, won_bonus: float) -> np.ndarray:
    """r_i = g + o_i of the module docstring. Health fractions are (K, units); won is (K,).
    Returns (n_allies, K) float32. Shared by the SMAX and the StarCraft II adapters."""
    enemy_damage = np.clip(enemy_before - enemy_after, 0.0, None)
    group = enemy_damage.sum(1) / enemy_damage.shape[1] + won_bonus * np.asarray(won, np.float64)
    own = -health_coef * np.clip(ally_before - ally_after, 0.0, None)  # shields that regrow earn nothing
    return (group[:, None] + own).T.astype(np.float32)


def team_reward(rewards: np.ndarray) -> np.ndarray:
    """R = mean over allies of r_i: the group term plus every ally's health term (ctde)."""
    return rewards.mean(0)


def sight_neighbours(positions: np.ndarray, alive: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """(n, n, K) bool: unit j is within unit i's reach, both alive, i != j.
    positions (K, n, 2), alive (K, n), reach (K, n): each unit's sight range or one radius."""
    dist = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1)  # (K, i, j)
    near = (dist < reach[:, :, None]) & alive[:, :, None] & alive[:, None, :]
    near[:, np.arange(near.shape[1]), np.arange(near.shape[1])] = False
    return near.transpose(1, 2, 0)


def battle_ends(done: np.ndarray, alive: np.ndarray, n_allies: int, final_obs: np.ndarray) -> EpisodeEnds:
    """How the battles ended: one side destroyed is a terminal state; a battle still going at the
    episode limit (done with both sides alive) was cut, a truncation. done (K,), alive (K, units)
    bool after the step, final_obs (K, n_allies, obs_dim) the observations the battles ended on."""
    both_alive = alive[:, :n_allies].any(1) & alive[:, n_allies:].any(1)
    done = np.asarray(done, bool)
    return time_limit_ends(done & both_alive, done & ~both_alive,
                           [final_obs[:, i] for i in range(n_allies)], n_allies)


class Battles:
    """What the SMAX and StarCraft II adapters share: per-battle metrics and the views the env
    server reads. After every reset and step a subclass sets `_avail` (K, n, n_actions) uint8 and
    `_state` (K, state_dim) float32; after every step `_pos` (K, n, 2), `_alive` (K, n) and `_sight`
    (K, n) of the allied units, as they were at the step's end (before any reset), `_ends` (the
    battles' EpisodeEnds) and `_final_state` (K, state_dim), the global state each battle that
    ended ended on (None where the env does not keep it)."""

    n_agents: int
    n_envs: int
    metric_names = METRIC_NAMES
    stop_action = no_op_action = STOP  # SMAX: stop is always allowed, dead or alive

    def final_global_state(self) -> np.ndarray | None:
        """(K, state_dim): where the last step cut a battle at the episode limit, the global state it
        ended on (the copy is a new battle now); other rows: the current state. None where none was cut."""
        cut = self._ends.truncated.any(0)
        if not cut.any() or self._final_state is None:  # SMAX built without final_state
            return None
        return np.where(cut[:, None], self._final_state, self._state)

    def idle_actions(self) -> np.ndarray:
        """(K, n) int32: doing nothing, for each agent and copy: stop, or no-op where stop is not
        allowed (a dead SC2 unit). The env server plays it for an absent agent (missing_action=noop)."""
        return np.where(self._avail[..., self.stop_action] == 1, self.stop_action, self.no_op_action).astype(np.int32)

    def _start_books(self) -> None:
        no_end = np.zeros(self.n_envs, bool)
        self._ends = time_limit_ends(no_end, no_end, None, self.n_agents)
        self._ep_return = np.zeros(self.n_envs)  # per copy, this battle so far
        self._ep_len = np.zeros(self.n_envs, np.int64)
        self._finished: list[dict[str, float]] = []

    def _book(self, rewards: np.ndarray, done: np.ndarray, won: np.ndarray, allies_alive: np.ndarray,
              enemies_alive: np.ndarray) -> None:
        """Add one step; close the battles that ended (done, won (K,) bool; alive (K, units) bool)."""
        self._ep_return += rewards.sum(0)
        self._ep_len += 1
        for k in np.flatnonzero(done):
            self._finished.append({"won": float(won[k]), "episode_team_return": float(self._ep_return[k]),
                                   "allies_alive": float(allies_alive[k].sum()),
                                   "enemies_alive": float(enemies_alive[k].sum()),
                                   "episode_length": float(self._ep_len[k])})
        self._ep_return[done] = 0.0
        self._ep_len[done] = 0

    def episode_ends(self) -> EpisodeEnds:
        """How the last step ended battles: destroyed sides terminal, the episode limit a truncation
        (AgentEpisodes; battle_ends)."""
        return self._ends

    def avail_actions(self) -> list[np.ndarray]:
        """Per agent (K, n_actions) uint8: the actions allowed at the current observation."""
        return [self._avail[:, i] for i in range(self.n_agents)]

    def global_state(self) -> np.ndarray:
        """(K, state_dim) float32: the global state at the current observation (ctde critics)."""
        return self._state

    def team_reward(self, rewards: np.ndarray) -> np.ndarray:
        return team_reward(rewards)

    def in_range(self, radius: float | None) -> np.ndarray:
        """(n, n, K) bool over the allied units at the end of the last step (before a reset):
        j is within i's sight range (radius None, `range:sight`) or within `radius`; dead units
        are nobody's neighbour."""
        reach = self._sight if radius is None else np.full((self.n_envs, self.n_agents), float(radius))
        return sight_neighbours(self._pos, self._alive, reach)

    def pop_task_metrics(self) -> list[dict[str, float]]:
        """One dict per battle that ended since the last call (METRIC_NAMES)."""
        done, self._finished = self._finished, []
        return done


@contextlib.contextmanager
def _silent_stdout():
    """jaxmarl prints to stdout on import, past contextlib.redirect_stdout: silence fd 1 itself."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import_jax():
    # Compiled steps are cached on disk: the first run of a map compiles for a minute on a busy
    # 2-core machine, later runs load in seconds.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # small batches: the CPU is right, and no accelerator probing
    import jax

    cache = os.environ.get("DRIMA_JAX_CACHE", str(Path.home() / ".cache" / "drima" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    with _silent_stdout():
        from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    return jax, HeuristicEnemySMAX, map_name_to_scenario


def _jitted_battles(jax, env, n_envs: int, final_state: bool) -> tuple[Callable, Callable, Callable]:
    """jaxmarl's `env` over K copies as three jitted functions: reset_all(key), step_all(key,
    states, actions), where a copy whose battle ended is reset by itself, and observe_all(states)."""
    import jax.numpy as jnp

    ally_names = env.agents

    def health(s):  # per unit health fraction, (units,)
        return s.unit_health / env.unit_type_health[s.unit_types]

    def observe(state):
        obs, avail = env.get_obs(state), env.get_avail_actions(state)
        return (jnp.stack([obs[a] for a in ally_names]), jnp.stack([avail[a] for a in ally_names]),
                env.get_world_state(state))

    def reset_one(key):
        _, state = env.reset(key)
        # explicit dtypes: a weakly typed leaf out of reset would compile the step a second time
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state)

    def step_one(key, state, actions):
        k_step, k_reset = jax.random.split(key)
        _, after, _, dones, _ = env.step_env(k_step, state, {a: actions[i] for i, a in enumerate(ally_names)})
        done = dones["__all__"]
        fresh = reset_one(k_reset)
        nxt = jax.tree.map(lambda f, x: jnp.where(done, f, x), fresh, after)
        final = env.get_obs(after)  # what a battle cut by the time limit ended on: its value is bootstrapped
        end = (health(state.state), health(after.state), after.state.unit_alive, after.state.unit_positions,
               env.unit_type_sight_ranges[after.state.unit_types], done, jnp.stack([final[a] for a in ally_names]),
               # ... and the global state it ended on, for ctde critics (else an empty row: a fifth of the step)
               env.get_world_state(after) if final_state else jnp.zeros(0))
        return nxt, end

    def reset_all(key):
        key, sub = jax.random.split(key)
        states = jax.vmap(reset_one)(jax.random.split(sub, n_envs))
        return key, states, jax.vmap(observe)(states)

    def step_all(key, states, actions):
        key, sub = jax.random.split(key)
        states, end = jax.vmap(step_one)(jax.random.split(sub, n_envs), states, actions)
        return key, states, jax.vmap(observe)(states), end

    return jax.jit(reset_all), jax.jit(step_all), jax.jit(jax.vmap(observe))


class SMAXVectorEnv(Battles):
    def __init__(self, spec: str, n_agents: int, n_envs: int, seed: int = 0, options: dict | None = None,
                 final_state: bool = False):
        name = map_of(spec)
        options = dict(options or {})
        self.health_coef = float(options.pop("health_coef", 0.5))
        if "won_bonus" in options:  # the same option name as the SC2 adapter; jaxmarl calls it won_battle_bonus
            options["won_battle_bonus"] = options.pop("won_bonus")
        allies, enemies = MAPS[name]
        if n_agents != allies:
            raise ValueError(f"--env {spec} has {allies} allied units, but --n is {n_agents}")
        try:
            jax, smax_cls, scenario = _import_jax()
        except ImportError as exc:
            raise ValueError(f"--env {spec} needs the smax extra: pip install -e \".[smax]\" ({exc})") from None
        try:
            env = smax_cls(scenario=scenario(name), **options)
        except TypeError as exc:
            raise ValueError(f"--env {spec}: {exc}") from None
        self.spec, self.n_agents, self.n_envs, self.n_enemies = spec, allies, n_envs, enemies
        self.won_bonus = float(env.won_battle_bonus)
        self.episode_limit = int(env.max_steps)
        self.unit_types = [env.unit_type_names[int(t)] for t in np.asarray(env.scenario)[:allies]]
        self._reset_all, self._step_all, self._observe_all = _jitted_battles(jax, env, n_envs, final_state)
        self._key = jax.random.PRNGKey(seed)
        # compile now, not at the first step the agents wait for: reset, then two steps (the first
        # step after a reset is where a second compilation would show up)
        self.reset()
        for _ in range(2):
            self.step([np.full(n_envs, STOP, np.int32)] * allies)
        self._key = jax.random.PRNGKey(seed)
        self.state_dim = int(self._state.shape[1])
        self._obs_dim = int(self._obs.shape[2])

    def agent_spec(self, agent: int) -> dict:
        return {"obs_dim": self._obs_dim, "action": {"type": "discrete", "n": N_MOVE_ACTIONS + self.n_enemies},
                "continuing": False, "single_state": False, "episode_limit": self.episode_limit,
                "env": self.spec, "agent_name": f"ally_{agent}", "role": self.unit_types[agent]}

    def _take(self, out) -> list[np.ndarray]:
        obs, avail, wstate = out  # copied out of JAX's read-only buffers: learners may write to them
        self._obs, self._avail = np.array(obs, np.float32), np.array(avail, np.uint8)
        self._state = np.array(wstate, np.float32)
        return [self._obs[:, i] for i in range(self.n_agents)]

    def reset(self) -> list[np.ndarray]:
        self._key, self._states, out = self._reset_all(self._key)
        self._start_books()
        return self._take(out)

    def set_battles(self, edit) -> list[np.ndarray]:
        """Replace the K battles by `edit(states)` (jaxmarl's batched SMAX state, e.g. units placed by
        hand in tests) and return the observations of the new state. Episodes start anew there."""
        self._states = self._states.replace(state=edit(self._states.state))
        self._start_books()
        return self._take(self._observe_all(self._states))

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        acts = np.stack(actions, axis=1).astype(np.int32)  # (K, n_allies)
        self._key, self._states, out, end = self._step_all(self._key, self._states, acts)
        before, after, alive, pos, sight, done, final, final_state = (np.asarray(x) for x in end)
        n = self.n_agents
        won = (~alive[:, n:]).all(1) & alive[:, :n].any(1)
        self._ends = battle_ends(done, alive, n, np.array(final, np.float32))
        self._final_state = np.array(final_state, np.float32) if final_state.size else None
        rewards = battle_rewards(before[:, :n], after[:, :n], before[:, n:], after[:, n:], won,
                                 self.health_coef, self.won_bonus)
        self._alive, self._pos, self._sight = alive[:, :n], pos[:, :n], sight[:, :n]
        self._book(rewards, done, won, alive[:, :n], alive[:, n:])
        return self._take(out), rewards, done.astype(np.float32)
