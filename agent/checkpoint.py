"""Atomic checkpoints: write to a temporary file, fsync, then rename over the old one, so a
kill -9 at any moment leaves the last complete checkpoint loadable.

Checkpoints are read with torch.load(weights_only=True): tensors and plain data only. A
checkpoint is a file that others may send you (a run folder to evaluate or render), and a
full unpickle runs whatever code the file names; a file that holds anything else is refused
with a one-line ValueError."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import torch

from .core import AgentCore

FORMAT_VERSION = 1


def checkpoint_bytes(core: AgentCore, step: int) -> io.BytesIO:
    """The checkpoint of `core` at `step`, serialized now: what a write on another thread puts on
    disk while the learner goes on changing its tensors and buffers (for a 14 MB replay buffer,
    a few ms of copying, against tens of ms to write and fsync it)."""
    state = {"format": FORMAT_VERSION, "step": step, "mu": core.mu, "mode": core.mode,
             "learner": core.learner.state_dict(), "torch_rng": torch.get_rng_state()}
    data = io.BytesIO()
    torch.save(state, data)
    return data


def write_atomic(path: str | Path, data: io.BytesIO) -> None:
    """Write `data` to `path` atomically: temporary file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, core: AgentCore, step: int) -> None:
    """Write `core`'s checkpoint now, on this thread."""
    write_atomic(path, checkpoint_bytes(core, step))


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's content, unpickled with weights_only=True; ValueError (one line) for a
    file that is not a DRIMA checkpoint, or that holds more than tensors and plain data."""
    try:
        state = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # the name torch refused, in its own words
            first = f"it holds {found.group(1) if found else 'objects'}, not only tensors and plain data"
        raise ValueError(f"{path}: not loaded ({first}); a checkpoint may hold tensors and plain data only") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: checkpoint format {got!r}, expected {FORMAT_VERSION}")
    return state


def restore_checkpoint(state: dict, core: AgentCore) -> None:
    """Put a checkpoint's learner, mu and RNG state (read_checkpoint) into `core`."""
    core.learner.load_state_dict(state["learner"])
    core.mu = float(state["mu"])
    torch.set_rng_state(state["torch_rng"])


def load_checkpoint(path: str | Path, core: AgentCore) -> int:
    """Restore learner, mu and RNG into `core`; returns the step the checkpoint was taken at."""
    state = read_checkpoint(path)
    restore_checkpoint(state, core)
    return int(state["step"])
