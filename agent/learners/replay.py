"""A fixed-size ring buffer of transitions (obs, action, signal, next_obs, done); `done` marks a
terminal next_obs (no bootstrap), never a truncated one."""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    ARRAYS = ("obs", "next_obs", "actions", "signal", "done")

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple[int, ...], action_dtype: str, seed: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.signal = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size = 0
        self.pos = 0
        self.rng = np.random.default_rng(seed)

    def add_batch(self, obs, actions, signal, next_obs, done) -> None:
        """Add K transitions at once (one per environment copy)."""
        idx = (self.pos + np.arange(len(signal))) % self.capacity
        self.obs[idx], self.actions[idx], self.signal[idx] = obs, actions, signal
        self.next_obs[idx], self.done[idx] = next_obs, done
        self.pos = int((self.pos + len(signal)) % self.capacity)
        self.size = min(self.size + len(signal), self.capacity)

    def sample(self, batch_size: int) -> tuple[np.ndarray, ...]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        return self.obs[idx], self.actions[idx], self.signal[idx], self.next_obs[idx], self.done[idx]

    def state_dict(self) -> dict:
        """Arrays as tensors: checkpoints are loaded with torch.load(weights_only=True), which
        refuses pickled numpy arrays (they are code to the unpickler)."""
        arrays = {k: torch.from_numpy(getattr(self, k)) for k in self.ARRAYS}
        return arrays | {"size": self.size, "pos": self.pos, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for k in self.ARRAYS:
            setattr(self, k, np.asarray(state[k]).copy())  # a tensor or, from older checkpoints, an array
        self.size, self.pos = int(state["size"]), int(state["pos"])
        self.rng.bit_generator.state = state["rng"]
