"""Real StarCraft II battles through SMAC (`smac.env.StarCraft2Env`) behind the VectorEnv contract.

`--env sc2:MAP`, MAP a SMAC map (3m, 2s3z, 5m_vs_6m, ...). This needs the StarCraft II game and the
StarCraft Multi-Agent Challenge package from GitHub:

    pip install git+https://github.com/oxwhirl/smac.git     # plus SC2 and the SMAC maps

NOT `pip install smac`: PyPI's `smac` is SMAC3, a hyper-parameter optimiser; this module detects it
and says so. Neither package is a dependency of DRIMA, and none of this can run on a machine
without StarCraft II; the tests drive the adapter with a stand-in object that has the
StarCraft2Env methods used here (get_env_info, reset, step, get_obs, get_state,
get_avail_actions, unit_sight_range and the `agents` / `enemies` unit tables).

K copies are K StarCraft2Env instances (K game processes), stepped one after the other. Rewards,
done and metrics follow env_server/smax.py exactly (same formulas, `battle_rewards`), computed
from the units' health + shield fractions; SMAC's own scalar reward is not used. Actions are
SMAC's: 0 no-op (dead units only), 1 stop, 2..5 move, 6 + j attack enemy j. SMAC rejects an
unavailable action with an assertion, so one that is not available (e.g. the server repeating a
silent agent's last action) is replaced by stop, or no-op for a dead unit, and counted.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable

import numpy as np

from .smax import Battles, battle_ends, battle_rewards

log = logging.getLogger("drima.env_server")

NO_OP, STOP, N_NON_ATTACK = 0, 1, 6
INSTALL = "pip install git+https://github.com/oxwhirl/smac.git (and StarCraft II with the SMAC maps)"


def starcraft2_env_class() -> Callable:
    """smac.env.StarCraft2Env, or a clear ValueError when SMAC is missing or the PyPI `smac` (SMAC3)
    is installed in its place."""
    if importlib.util.find_spec("smac") is None:
        raise ValueError(f"--env sc2:MAP needs the StarCraft Multi-Agent Challenge: {INSTALL}")
    smac = importlib.import_module("smac")
    try:
        module = importlib.import_module("smac.env")
    except ImportError:
        module = None
    if module is None or not hasattr(module, "StarCraft2Env"):
        what = "SMAC3, the hyper-parameter optimiser from PyPI" if hasattr(smac, "facade") or \
            importlib.util.find_spec("smac.facade") else "not the StarCraft Multi-Agent Challenge"
        raise ValueError(f"the installed `smac` package ({getattr(smac, '__file__', '?')}) is {what}. "
                         f"Uninstall it (pip uninstall smac) and {INSTALL}")
    return module.StarCraft2Env


def map_size(spec: str) -> tuple[int, int]:
    """(allies, enemies) of `sc2:MAP` from SMAC's map table (no game needed)."""
    starcraft2_env_class()
    from smac.env.starcraft2.maps import get_map_params

    name = spec.partition(":")[2]
    try:
        params = get_map_params(name)
    except KeyError:
        params = None
    if not params:
        raise ValueError(f"unknown SMAC map {name!r} in --env {spec}")
    return int(params["n_agents"]), int(params["n_enemies"])


def _health(units) -> np.ndarray:
    """Health + shield fraction per unit, in the tables' id order."""
    return np.array([(u.health + u.shield) / max(u.health_max + u.shield_max, 1e-9)
                     for _, u in sorted(units.items())], np.float64)


class SC2VectorEnv(Battles):
    stop_action, no_op_action = STOP, NO_OP

    def __init__(self, spec: str, n_agents: int, n_envs: int, seed: int = 0, options: dict | None = None,
                 env_class: Callable | None = None):
        """`env_class` builds one StarCraft2Env (default: SMAC's); `options` go to its constructor,
        except health_coef and won_bonus (see env_server/smax.py)."""
        options = dict(options or {})
        self.health_coef = float(options.pop("health_coef", 0.5))
        self.won_bonus = float(options.pop("won_bonus", 1.0))
        make = env_class or starcraft2_env_class()
        name = spec.partition(":")[2]
        self.envs = [make(map_name=name, seed=seed + k, **options) for k in range(n_envs)]
        info = self.envs[0].get_env_info()
        if int(info["n_agents"]) != n_agents:
            raise ValueError(f"--env {spec} has {info['n_agents']} allied units, but --n is {n_agents}")
        self.spec, self.n_agents, self.n_envs = spec, n_agents, n_envs
        self.n_actions, self.state_dim = int(info["n_actions"]), int(info["state_shape"])
        self.obs_dim, self.episode_limit = int(info["obs_shape"]), int(info["episode_limit"])
        self.replaced_actions = 0

    def agent_spec(self, agent: int) -> dict:
        return {"obs_dim": self.obs_dim, "action": {"type": "discrete", "n": self.n_actions}, "continuing": False,
                "single_state": False, "episode_limit": self.episode_limit, "env": self.spec,
                "agent_name": f"ally_{agent}"}

    def _observe(self) -> list[np.ndarray]:
        self._obs = np.stack([np.asarray(e.get_obs(), np.float32) for e in self.envs])  # (K, n, obs_dim)
        self._avail = np.stack([np.asarray(e.get_avail_actions(), np.uint8) for e in self.envs])
        self._state = np.stack([np.asarray(e.get_state(), np.float32) for e in self.envs])
        return [self._obs[:, i] for i in range(self.n_agents)]

    def _units(self, env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Health fractions (allies then enemies), ally positions and ally sight ranges of one copy."""
        hp = np.concatenate([_health(env.agents), _health(env.enemies)])
        pos = np.array([(u.pos.x, u.pos.y) for _, u in sorted(env.agents.items())], np.float64)
        sight = np.array([env.unit_sight_range(i) for i in range(self.n_agents)], np.float64)
        return hp, pos, sight

    def reset(self) -> list[np.ndarray]:
        for e in self.envs:
            e.reset()
        self._hp = np.stack([self._units(e)[0] for e in self.envs])
        self._start_books()
        return self._observe()

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        acts = np.stack(actions, axis=1).astype(np.int64)  # (K, n)
        allowed = np.take_along_axis(self._avail, acts[..., None], axis=-1)[..., 0].astype(bool)
        if not allowed.all():  # SMAC asserts on these: stop, or no-op where stop is not allowed (dead)
            self.replaced_actions += int((~allowed).sum())
            acts = np.where(allowed, acts, self.idle_actions())
        n = self.n_agents
        before, after = self._hp, np.empty_like(self._hp)
        done, won = np.zeros(self.n_envs, bool), np.zeros(self.n_envs, bool)
        self._pos, self._sight = np.empty((self.n_envs, n, 2)), np.empty((self.n_envs, n))
        for k, e in enumerate(self.envs):
            _, terminated, info = e.step(acts[k].tolist())
            after[k], self._pos[k], self._sight[k] = self._units(e)
            done[k], won[k] = bool(terminated), bool(info.get("battle_won", False))
        rewards = battle_rewards(before[:, :n], after[:, :n], before[:, n:], after[:, n:], won,
                                 self.health_coef, self.won_bonus)
        self._alive = after[:, :n] > 0  # at the end of this step, before any reset
        self._book(rewards, done, won, self._alive, after[:, n:] > 0)
        before_reset_alive = after > 0
        final = np.zeros((self.n_envs, n, self.obs_dim), np.float32)
        self._final_state = self._state.copy()  # rows of battles that go on: never read
        for k in np.flatnonzero(done):  # this battle is over: the copy starts the next one by itself
            final[k] = np.asarray(self.envs[k].get_obs(), np.float32)  # what it ended on, before the reset
            self._final_state[k] = np.asarray(self.envs[k].get_state(), np.float32)
            self.envs[k].reset()
            after[k] = self._units(self.envs[k])[0]
        self._ends = battle_ends(done, before_reset_alive, n, final)
        self._hp = after
        return self._observe(), rewards, done.astype(np.float32)

    def close(self) -> None:
        for e in self.envs:
            e.close()
