"""K copies of any PettingZoo ParallelEnv behind the env server's VectorEnv contract.

    --env pettingzoo:MODULE            MODULE.parallel_env(**env_options), as every PettingZoo and
                                       mpe2 env module has (or MODULE.env(), an AEC env, converted)
    --env pettingzoo:MODULE:FACTORY    any callable returning a ParallelEnv (or an AECEnv)

MODULE is a dotted module or a .py file. Agent i is `possible_agents[i]`. Copy k is seeded with
seed + k at its first reset and goes on with its own RNG after that.

What a real PettingZoo env does, and what the runtime makes of it:
- heterogeneous agents: each agent's own spaces give it its own obs_dim and action space;
- observations: Box of any shape (flattened to float32), Discrete (one-hot), MultiBinary, and
  the classic-games convention {"observation": ..., "action_mask": ...}, whose mask becomes the
  agent's action mask; actions: Discrete (with its start) and Box (the learners act in [-1, 1],
  rescaled here to the Box's bounds where they are finite). Other spaces: a ValueError that
  names the agent and the space;
- an agent that terminates or is truncated before the others leaves the episode: it keeps
  stepping in lockstep, its actions are not played, its reward is 0 and EpisodeEnds.active says
  so; a copy resets when env.agents is empty;
- termination is not truncation: both are reported per agent, with the observation a truncated
  agent ended on, so that learners bootstrap through time limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drima.loading import absolute_module, import_module, load_object

from .envs import EpisodeEnds, EpisodeTally

PREFIX = "pettingzoo:"


class EnvContractError(ValueError):
    """The user's env broke the contract the env server relies on (one line, names the agent)."""


def is_pettingzoo(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """`pettingzoo:MODULE[:FACTORY]` -> (MODULE, FACTORY or None)."""
    rest = spec[len(PREFIX):]
    # a Windows-free world: the last colon splits MODULE from FACTORY unless MODULE is all there is
    module, sep, factory = rest.rpartition(":")
    if not sep:
        module, factory = rest, None
    if not module:
        raise ValueError(f"--env {spec}: expected pettingzoo:MODULE or pettingzoo:MODULE:FACTORY")
    return module, factory or None


def absolute_spec(spec: str) -> str:
    """`pettingzoo:./envs.py[:F]` -> `pettingzoo:/abs/envs.py[:F]`, so that the env server finds
    the file wherever it runs; dotted modules are left as they are."""
    module, factory = parse(spec)
    return PREFIX + absolute_module(module) + (f":{factory}" if factory else "")


def build_parallel_env(spec: str | Callable[..., Any], options: dict[str, Any] | None = None):
    """One ParallelEnv from `pettingzoo:MODULE[:FACTORY]` (or from a factory callable, in Python)
    and its keyword arguments."""
    from pettingzoo.utils.conversions import aec_to_parallel
    from pettingzoo.utils.env import AECEnv, ParallelEnv

    what = f"--env {spec}" if isinstance(spec, str) else f"env factory {getattr(spec, '__qualname__', spec)!r}"
    module, factory_name = parse(spec) if isinstance(spec, str) else ("", None)
    if not isinstance(spec, str):
        factory = spec
    elif factory_name is None:  # parallel_env, or env for an AEC-only module
        found = import_module(module, what)
        factory = getattr(found, "parallel_env", None) or getattr(found, "env", None)
        if factory is None:
            raise ValueError(f"{what}: {module} has neither parallel_env() nor env()")
    else:
        factory = load_object(module, factory_name, what)
    if not callable(factory):
        raise ValueError(f"{what}: {factory!r} is not callable")
    try:
        env = factory(**(options or {}))
    except Exception as exc:  # the user's constructor: say why in one line
        raise ValueError(f"{what}: building the env failed: {type(exc).__name__}: {exc}") from None
    if isinstance(env, AECEnv):
        try:
            env = aec_to_parallel(env)
        except Exception as exc:
            raise ValueError(f"{what}: an AEC env that PettingZoo's aec_to_parallel cannot convert "
                             f"({type(exc).__name__}: {exc})") from None
    if not isinstance(env, ParallelEnv):
        raise ValueError(f"{what}: the factory returned {type(env).__name__}, not a PettingZoo ParallelEnv")
    return env


def possible_agents(spec: str, options: dict[str, Any] | None = None) -> list[str]:
    """The env's agent names, in the order of the agent ids (the launcher's default --n)."""
    return list(build_parallel_env(spec, options).possible_agents)


# -- spaces -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObsCodec:
    """One agent's observation space as a flat float32 vector (and its action mask, if any)."""

    kind: str  # box | discrete | multibinary
    dim: int
    mask_dim: int = 0  # > 0: observations are {"observation": ..., "action_mask": (mask_dim,)}

    def encode(self, raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
        mask = None
        if self.mask_dim:
            mask = np.asarray(raw["action_mask"]).astype(bool).reshape(-1)
            raw = raw["observation"]
        if self.kind == "discrete":
            out = np.zeros(self.dim, np.float32)
            out[int(raw)] = 1.0
            return out, mask
        return np.asarray(raw, np.float32).reshape(-1), mask


def obs_codec(agent: str, space) -> ObsCodec:
    from gymnasium import spaces

    if isinstance(space, spaces.Dict) and set(space.spaces) >= {"observation", "action_mask"}:
        inner = obs_codec(agent, space["observation"])
        return ObsCodec(inner.kind, inner.dim, int(np.prod(space["action_mask"].shape)))
    if isinstance(space, spaces.Box):
        return ObsCodec("box", int(np.prod(space.shape)))
    if isinstance(space, spaces.Discrete):
        return ObsCodec("discrete", int(space.n))
    if isinstance(space, spaces.MultiBinary):
        return ObsCodec("multibinary", int(np.prod(space.shape)))
    raise ValueError(f"agent {agent!r} has a {space} observation space: supported are Box, Discrete, "
                     f"MultiBinary and {{'observation', 'action_mask'}} dicts of those")


@dataclass(frozen=True)
class ActionCodec:
    """One agent's action space as the learners see it, and back."""

    spec: dict
    start: int = 0  # Discrete(n, start)
    low: np.ndarray | None = None  # Box: [-1, 1] -> [low, high] where both are finite
    high: np.ndarray | None = None
    shape: tuple[int, ...] = ()

    def decode(self, action: np.ndarray) -> Any:
        if self.spec["type"] == "discrete":
            return int(action) + self.start
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        finite = np.isfinite(self.low) & np.isfinite(self.high)
        scaled = np.where(finite, self.low + (a + 1.0) * 0.5 * (self.high - self.low), a)
        return scaled.reshape(self.shape).astype(np.float32)


def action_codec(agent: str, space) -> ActionCodec:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return ActionCodec({"type": "discrete", "n": int(space.n)}, start=int(space.start))
    if isinstance(space, spaces.Box):
        dim = int(np.prod(space.shape))
        return ActionCodec({"type": "continuous", "dim": dim, "low": -1.0, "high": 1.0},
                           low=np.asarray(space.low, np.float64).reshape(-1),
                           high=np.asarray(space.high, np.float64).reshape(-1), shape=tuple(space.shape))
    raise ValueError(f"agent {agent!r} has a {space} action space: supported are Discrete and Box")


# -- blocks of copies --------------------------------------------------------------------------------
@dataclass
class BlockStep:
    """What one block of k copies returns from a reset or a step (arrays per agent, copy)."""

    obs: list[np.ndarray]  # per agent (k, obs_dim) float32
    masks: list[np.ndarray | None]  # per agent (k, n_actions) bool, or None
    rewards: np.ndarray  # (n, k) float32
    done: np.ndarray  # (k,) float32: the copy reset
    terminated: np.ndarray  # (n, k) bool
    truncated: np.ndarray  # (n, k) bool
    final: list[np.ndarray | None]  # per agent (k, obs_dim) where truncated, or None
    active: np.ndarray  # (n, k) bool, at obs
    acted: np.ndarray  # (n, k) bool, for the step just taken
    finished: list[dict[str, float]]  # episodes that ended
    final_state: dict[int, np.ndarray] = field(default_factory=dict)  # copy -> env.state() it was cut at


class Block:
    """Copies of the env stepped one after the other, in the env server or in a worker process."""

    def __init__(self, spec: str | Callable[..., Any], options: dict[str, Any] | None, seeds: list[int]):
        self.envs = [build_parallel_env(spec, options) for _ in seeds]
        self.seeds = seeds
        self.spec = spec if isinstance(spec, str) else f"{PREFIX}{getattr(spec, '__qualname__', spec)}"
        first = self.envs[0]
        self.names: list[str] = list(first.possible_agents)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.obs_codecs = [self._checked(name, obs_codec, first.observation_space) for name in self.names]
        self.act_codecs = [self._checked(name, action_codec, first.action_space) for name in self.names]
        n, k = len(self.names), len(seeds)
        self._obs = [np.zeros((k, c.dim), np.float32) for c in self.obs_codecs]
        self._masks = [np.ones((k, c.mask_dim), bool) if c.mask_dim else None for c in self.obs_codecs]
        self._active = np.zeros((n, k), bool)
        self._tally = EpisodeTally(k)
        self._seeded = False
        space = getattr(first, "state_space", None)  # env.state() is there where it has a shape
        self.state_dim = int(np.prod(space.shape)) if space is not None and getattr(space, "shape", None) else 0

    def _checked(self, name: str, make, space_of):
        try:
            return make(name, space_of(name))
        except ValueError as exc:
            raise ValueError(f"--env {self.spec}: {exc}") from None

    def _out(self, rewards, done, terminated, truncated, final, acted, finished,
             final_state: dict[int, np.ndarray] | None = None) -> BlockStep:
        return BlockStep([o.copy() for o in self._obs], [None if m is None else m.copy() for m in self._masks],
                         rewards, done, terminated, truncated, final, self._active.copy(), acted, finished,
                         final_state or {})

    def reset(self) -> BlockStep:
        for k in range(len(self.envs)):
            self._reset_copy(k)
        self._seeded = True
        n, k = self._active.shape
        self._tally = EpisodeTally(k)  # new episodes everywhere
        none = np.zeros((n, k), bool)
        return self._out(np.zeros((n, k), np.float32), np.zeros(k, np.float32), none, none, [None] * n,
                         self._active.copy(), [])

    def _reset_copy(self, k: int) -> None:
        env = self.envs[k]
        raw, _ = env.reset(seed=None if self._seeded else self.seeds[k])
        self._active[:, k] = False
        for name in env.agents:
            i = self._agent_index(name, "reset")
            self._store(i, k, raw, name, "reset")
            self._active[i, k] = True

    def _agent_index(self, name: str, where: str) -> int:
        if name not in self.index:
            raise EnvContractError(f"--env {self.spec}: {where} names agent {name!r}, which is not in "
                                   f"possible_agents {self.names}")
        return self.index[name]

    def _store(self, i: int, k: int, raw_obs: dict, name: str, where: str) -> None:
        if name not in raw_obs:
            raise EnvContractError(f"--env {self.spec}: {where} gave no observation for agent {name!r}, which is "
                                   f"in the episode")
        try:
            obs, mask = self.obs_codecs[i].encode(raw_obs[name])
            self._obs[i][k] = obs
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise EnvContractError(f"--env {self.spec}: {where}: agent {name!r}'s observation does not fit its "
                                   f"observation space ({type(exc).__name__}: {exc})") from None
        if mask is not None:
            self._masks[i][k] = mask

    def step(self, actions: list[np.ndarray]) -> BlockStep:
        n, k_all = self._active.shape
        rewards = np.zeros((n, k_all), np.float32)
        terminated, truncated = np.zeros((n, k_all), bool), np.zeros((n, k_all), bool)
        final: list[np.ndarray | None] = [None] * n
        acted = self._active.copy()
        done = np.zeros(k_all, np.float32)
        final_state: dict[int, np.ndarray] = {}
        for k, env in enumerate(self.envs):
            playing = [i for i in range(n) if acted[i, k]]
            joint = {self.names[i]: self.act_codecs[i].decode(actions[i][k]) for i in playing}
            raw_obs, raw_rew, raw_term, raw_trunc, _ = env.step(joint)
            still = set(env.agents)
            for i in playing:
                name = self.names[i]
                rewards[i, k] = self._reward(raw_rew, name)
                terminated[i, k] = bool(raw_term.get(name, False))
                truncated[i, k] = bool(raw_trunc.get(name, False)) and not terminated[i, k]
                if name in raw_obs or name in still:
                    self._store(i, k, raw_obs, name, "step")
                if name not in still and not (terminated[i, k] or truncated[i, k]):
                    truncated[i, k] = True  # left without saying why: cut, not a terminal state
                if terminated[i, k] or truncated[i, k]:
                    self._active[i, k] = False
                    if truncated[i, k]:  # the observation it was cut at, before a reset replaces it
                        final[i] = self._obs[i].copy() if final[i] is None else final[i]
                        final[i][k] = self._obs[i][k]
            if not still:  # the episode is over for every agent: a new one in this copy
                if self.state_dim and truncated[:, k].any():  # a ctde critic bootstraps the cut from it
                    final_state[k] = self._state_of(env)
                self._reset_copy(k)
                done[k] = 1.0
        self._tally.add(rewards.sum(0))
        self._tally.end(np.flatnonzero(done))
        return self._out(rewards, done, terminated, truncated, final, acted, self._tally.pop(), final_state)

    def _reward(self, raw: dict, name: str) -> float:
        value = raw.get(name, 0.0)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise EnvContractError(f"--env {self.spec}: agent {name!r}'s reward {value!r} is not a number") from None
        if not math.isfinite(value):
            raise EnvContractError(f"--env {self.spec}: agent {name!r}'s reward is {value}")
        return value

    @staticmethod
    def _state_of(env) -> np.ndarray:
        return np.asarray(env.state(), np.float32).reshape(-1)

    def state(self) -> np.ndarray:
        return np.stack([self._state_of(env) for env in self.envs])

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _serve_block(conn, spec: str, options: dict[str, Any] | None, seeds: list[int]) -> None:
    """A worker process: one Block, driven over a pipe; any error goes back as ("error", text)."""
    try:
        block = Block(spec, options, seeds)
        conn.send(("ok", None))
        while True:
            command, arg = conn.recv()
            if command == "close":
                block.close()
                return
            conn.send(("ok", getattr(block, command)(*arg)))
    except (EOFError, KeyboardInterrupt):  # the env server is gone, or stopping
        return
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)))


class WorkerBlock:
    """A Block in a worker process (spawned: no state inherited from the env server). Calls are
    split in two, so that every worker steps at the same time: `start` sends, `result` waits."""

    def __init__(self, spec: str, options: dict[str, Any] | None, seeds: list[int]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_block, args=(child, spec, options, seeds), daemon=True,
                                name=f"drima-env-worker-{seeds[0]}")
        self.proc.start()
        child.close()
        self.result()  # built, or the error that stopped it

    def start(self, command: str, *arg) -> None:
        self.conn.send((command, arg))

    def result(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"env worker {self.proc.name} died (exit status {self.proc.exitcode})") from None
        if status == "error":
            raise EnvContractError(value)
        return value

    def close(self) -> None:
        try:
            self.conn.send(("close", ()))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


class LocalBlock:
    """A Block in the env server's own process, with WorkerBlock's interface."""

    def __init__(self, block: Block):
        self.block, self._value = block, None

    def start(self, command: str, *arg) -> None:
        self._value = getattr(self.block, command)(*arg)

    def result(self):
        value, self._value = self._value, None
        return value

    def close(self) -> None:
        self.block.close()


# -- the vector env ---------------------------------------------------------------------------------
class PettingZooVectorEnv:
    """K copies of one PettingZoo ParallelEnv, in `workers` blocks: the env server steps the first
    block itself and each other block is a process of its own, all at the same time (an env that is
    slow in Python can then use the cores that the agents leave idle while they wait for it)."""

    metric_names = EpisodeTally.names

    def __init__(self, spec: str | Callable[..., Any], n_agents: int, n_envs: int, seed: int = 0,
                 options: dict[str, Any] | None = None, workers: int = 1):
        workers = max(1, min(int(workers), n_envs))
        if workers > 1 and not isinstance(spec, str):
            raise ValueError("env workers need an env named by a string (pettingzoo:MODULE[:FACTORY])")
        splits = np.array_split(np.arange(n_envs), workers)
        probe = Block(spec, options, [seed + int(k) for k in splits[0]])  # the first block, or just a look
        self.spec, self.names = probe.spec, probe.names
        if len(self.names) != n_agents:
            raise ValueError(f"--env {self.spec} has {len(self.names)} agents ({', '.join(self.names)}), "
                             f"but --n is {n_agents}")
        if len(set(self.names)) != len(self.names):
            raise EnvContractError(f"--env {self.spec}: possible_agents has repeated names: {self.names}")
        self.n_agents, self.n_envs, self.seed = n_agents, n_envs, seed
        self.obs_codecs, self.act_codecs = probe.obs_codecs, probe.act_codecs
        first = probe.envs[0]
        self.episode_length = getattr(first.unwrapped, "max_cycles", None)  # mpe2's time limit, if any
        self.state_dim = probe.state_dim
        self.splits = splits
        # the env server steps the first block itself while worker processes step the others: it
        # would only wait for them otherwise
        self.blocks: list[LocalBlock | WorkerBlock] = [LocalBlock(probe)]
        self.blocks += [WorkerBlock(spec, options, [seed + int(k) for k in ks]) for ks in splits[1:]]
        n, k = n_agents, n_envs
        self._active = np.zeros((n, k), bool)
        self._masks: list[np.ndarray | None] = [None] * n
        self._ends = EpisodeEnds(np.zeros((n, k), bool), np.zeros((n, k), bool), [None] * n, self._active.copy(),
                                 self._active.copy())
        self._finished: list[dict[str, float]] = []
        self._final_state: dict[int, np.ndarray] = {}  # copy -> the state a truncated episode ended on

    def _all(self, command: str, per_block_args=None) -> list:
        """`command` on every block, the workers' first (they run while the local block runs)."""
        for b in [*range(1, len(self.blocks)), 0]:
            self.blocks[b].start(command, *(per_block_args[b] if per_block_args else ()))
        return [block.result() for block in self.blocks]

    def _merge(self, steps: list[BlockStep]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        def cat(get, axis=0):
            return np.concatenate([get(s) for s in steps], axis=axis)

        n = self.n_agents
        obs = [cat(lambda s, i=i: s.obs[i]) for i in range(n)]
        self._masks = [None if steps[0].masks[i] is None else cat(lambda s, i=i: s.masks[i]) for i in range(n)]
        finals = []
        for i in range(n):
            if all(s.final[i] is None for s in steps):
                finals.append(None)
            else:  # rows of blocks with no truncation: their obs (never read: truncated is False there)
                finals.append(cat(lambda s, i=i: s.obs[i] if s.final[i] is None else s.final[i]))
        self._active = cat(lambda s: s.active, axis=1)
        self._ends = EpisodeEnds(cat(lambda s: s.terminated, 1), cat(lambda s: s.truncated, 1), finals,
                                 self._active.copy(), cat(lambda s: s.acted, 1))
        self._final_state = {int(ks[k]): state for s, ks in zip(steps, self.splits, strict=True)
                             for k, state in s.final_state.items()}
        for s in steps:
            self._finished += s.finished
        return obs, cat(lambda s: s.rewards, 1), cat(lambda s: s.done)

    # -- VectorEnv ------------------------------------------------------------------------------------
    def agent_spec(self, agent: int) -> dict:
        name = self.names[agent]
        spec = {"obs_dim": self.obs_codecs[agent].dim, "action": dict(self.act_codecs[agent].spec),
                "continuing": False, "single_state": False, "env": self.spec, "agent_name": name}
        return spec | ({"episode_length": int(self.episode_length)} if self.episode_length else {})

    def reset(self) -> list[np.ndarray]:
        obs, _, _ = self._merge(self._all("reset"))
        return obs

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        per_block = [([a[ks] for a in actions],) for ks in self.splits]
        return self._merge(self._all("step", per_block))

    # -- capabilities ------------------------------------------------------------------------------------
    def episode_ends(self) -> EpisodeEnds:
        return self._ends

    def avail_actions(self) -> list[np.ndarray | None]:
        """Per agent, (K, n) bool from its observations' "action_mask", or None where it has none.
        An agent out of the episode may pick anything (its action is not played)."""
        return [None if m is None else m | ~self._active[i][:, None] for i, m in enumerate(self._masks)]

    def global_state(self) -> np.ndarray:
        """(K, state_dim) float32 from each copy's env.state()."""
        return np.concatenate(self._all("state"))

    def final_global_state(self) -> np.ndarray | None:
        """(K, state_dim): where the last step truncated a copy's episode (and reset the copy), the
        env.state() it ended on; other rows: the current state. None where no episode was cut."""
        if not self._final_state:
            return None
        state = self.global_state()
        for k, ended_on in self._final_state.items():
            state[k] = ended_on
        return state

    def pop_task_metrics(self) -> list[dict[str, float]]:
        out, self._finished = self._finished, []
        return out

    def close(self) -> None:
        for block in self.blocks:
            block.close()
