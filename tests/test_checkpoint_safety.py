"""Checkpoints are loaded with weights_only=True: a checkpoint.pt from someone else's run folder
cannot run code on --resume, --evaluate or drima-render; a file that is not a checkpoint is a
one-line error."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from drima.agent.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from drima.agent.core import AgentCore
from drima.agent.learners import make_learner
from drima.types import transition
from helpers import run_launch


class Payload:
    """What a hostile checkpoint hides: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_checkpoint(path, marker) -> None:
    torch.save({"format": 1, "step": 1, "mu": 0.0, "mode": "dri", "learner": Payload(marker),
                "torch_rng": torch.get_rng_state()}, path)


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg", "ppo"])
def test_every_learner_checkpoints_as_tensors_and_plain_data(tmp_path, algo):
    options = {"n_steps": 4, "chunk_len": 4} if algo == "ppo" else {}
    learner = make_learner(algo, 3, {"type": "discrete", "n": 2}, options, seed=0)
    obs = np.ones((4, 3), np.float32)
    for _ in range(5):
        learner.update(transition(obs, learner.act(obs), np.ones(4), obs, np.zeros(4)))
    save_checkpoint(tmp_path / "c.pt", AgentCore(learner, "dri", 0.05, mu=0.25), step=5)
    restored = AgentCore(make_learner(algo, 3, {"type": "discrete", "n": 2}, options, seed=1), "dri", 0.05)
    assert load_checkpoint(tmp_path / "c.pt", restored) == 5 and restored.mu == 0.25
    for (k, a), b in zip(learner.state_dict().items(), restored.learner.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k


def test_a_checkpoint_that_holds_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    hostile_checkpoint(tmp_path / "c.pt", marker)
    with pytest.raises(ValueError, match="not only tensors and plain data") as err:
        read_checkpoint(tmp_path / "c.pt")
    assert "\n" not in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pt: not loaded") as err:
        read_checkpoint(tmp_path / "junk.pt")
    assert "\n" not in str(err.value)
    torch.save({"format": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="checkpoint format 99, expected 1"):
        read_checkpoint(tmp_path / "future.pt")


@pytest.mark.slow
def test_evaluating_and_resuming_a_run_with_a_hostile_checkpoint_stop_before_anything_runs(tmp_path):
    run = tmp_path / "run"
    proc = run_launch(run, "--env", "pd", "--n", "2", "--algo", "dqn", "--steps", "100", "--log-every", "50")
    assert proc.returncode == 0, proc.stderr
    marker = tmp_path / "pwned"
    hostile_checkpoint(run / "agent_1" / "checkpoint.pt", marker)
    for args in (["--evaluate", str(run), "--steps", "50"], ["--resume", "--steps", "200"]):
        proc = run_launch(run, *args, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "agent_1/checkpoint.pt: not loaded" in lines[0], proc.stderr
    assert not marker.exists()
