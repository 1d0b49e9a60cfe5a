"""A fixed-size ring buffer of transitions (obs, action, signal, next_obs, done); `done` marks a
terminal next_obs (no bootstrap), never a truncated one."""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    ARRAYS = ("obs", "next_obs", "actions", "signal", "done")

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple[int, ...], action_dtype: str, seed: int,
                 extras: dict[str, int] | None = None):
        """`extras`: more float32 rows per transition, by name and width (ctde DDPG: global states,
        joint actions); sample() returns them after the five, in this order."""
        self.capacity = capacity
        self.extras = {name: np.zeros((capacity, width), np.float32) for name, width in (extras or {}).items()}
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.signal = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size = 0
        self.pos = 0
        self.rng = np.random.default_rng(seed)

    def add_batch(self, obs, actions, signal, next_obs, done, **extras: np.ndarray) -> None:
        """Add K transitions at once (one per environment copy); every extra named at construction."""
        idx = (self.pos + np.arange(len(signal))) % self.capacity
        self.obs[idx], self.actions[idx], self.signal[idx] = obs, actions, signal
        self.next_obs[idx], self.done[idx] = next_obs, done
        for name, rows in self.extras.items():
            rows[idx] = extras[name]
        self.pos = int((self.pos + len(signal)) % self.capacity)
        self.size = min(self.size + len(signal), self.capacity)

    def sample(self, batch_size: int) -> tuple[np.ndarray, ...]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        return (self.obs[idx], self.actions[idx], self.signal[idx], self.next_obs[idx], self.done[idx],
                *(rows[idx] for rows in self.extras.values()))

    def state_dict(self) -> dict:
        """Arrays as tensors: checkpoints are loaded with torch.load(weights_only=True), which
        refuses pickled numpy arrays (they are code to the unpickler)."""
        arrays = {k: torch.from_numpy(getattr(self, k)) for k in self.ARRAYS}
        extras = {f"extra_{name}": torch.from_numpy(rows) for name, rows in self.extras.items()}
        return arrays | extras | {"size": self.size, "pos": self.pos, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for k in self.ARRAYS:
            setattr(self, k, np.asarray(state[k]).copy())  # a tensor or, from older checkpoints, an array
        for name in self.extras:
            self.extras[name] = np.asarray(state[f"extra_{name}"]).copy()
        self.size, self.pos = int(state["size"]), int(state["pos"])
        self.rng.bit_generator.state = state["rng"]
