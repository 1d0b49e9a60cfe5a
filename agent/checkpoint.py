"""Atomic checkpoints: write to a temporary file, fsync, then rename over the old one, so a
kill -9 at any moment leaves the last complete checkpoint loadable."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .core import AgentCore

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, core: AgentCore, step: int) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {"format": FORMAT_VERSION, "step": step, "mu": core.mu, "mode": core.mode,
             "learner": core.learner.state_dict(), "torch_rng": torch.get_rng_state()}
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, core: AgentCore) -> int:
    """Restore learner, mu and RNG into `core`; returns the step the checkpoint was taken at."""
    state = torch.load(path, weights_only=False)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}")
    core.learner.load_state_dict(state["learner"])
    core.mu = float(state["mu"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
