"""The agent's background writer (agent/background_writer.py): checkpoints and links.json are
written off the step loop, in order, the newest content of a file first, never after the agent
was superseded; the checkpoint bytes are taken at the step, whatever the learner does next."""

import logging
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from drima.agent import fence
from drima.agent.background_writer import BackgroundWriter
from drima.agent.checkpoint import checkpoint_bytes, load_checkpoint, write_atomic
from drima.agent.core import AgentCore
from drima.agent.learners import make_learner
from drima.agent.process import AgentProcess


def held_write(done: list[str], name: str) -> tuple[threading.Event, threading.Event, object]:
    """A write that records `name` once `release` is set; `started` is set when it begins."""
    started, release = threading.Event(), threading.Event()

    def write():
        started.set()
        assert release.wait(10)
        done.append(name)
    return started, release, write


def test_submit_returns_at_once_and_a_waiting_write_gives_way_to_a_newer_one(tmp_path):
    writer = BackgroundWriter()
    done: list[str] = []
    ckpt, links = tmp_path / "checkpoint.pt", tmp_path / "links.json"
    started, release, first = held_write(done, "checkpoint 1000")
    writer.submit(ckpt, first)
    assert started.wait(10)  # the thread is held inside the first write from here on
    writer.submit(links, lambda: done.append("links at 1.0 s"))
    writer.submit(links, lambda: done.append("links at 2.0 s"))  # the 1.0 s one has not started: replaced
    writer.submit(ckpt, lambda: done.append("checkpoint 2000"))
    writer.submit(ckpt, lambda: done.append("checkpoint 3000"))  # replaces 2000, which had not started
    assert done == []  # every submit returned while the first write was held
    release.set()
    writer.flush()
    assert done == ["checkpoint 1000", "links at 2.0 s", "checkpoint 3000"]  # in order, never older after newer
    writer.close()


def test_a_disk_error_is_logged_and_counted_and_the_next_write_lands(tmp_path, caplog):
    writer = BackgroundWriter()
    target = tmp_path / "links.json"

    def full_disk():
        raise OSError(28, "No space left on device")

    with caplog.at_level(logging.ERROR, logger="drima.agent"):
        writer.submit(target, full_disk)
        writer.flush()
    assert writer.failures == 1
    assert "could not write" in caplog.text and "No space left on device" in caplog.text
    writer.submit(target, lambda: target.write_text("{}"))
    writer.flush()
    assert target.read_text() == "{}"
    writer.close()


def test_a_bug_in_a_write_is_raised_in_the_loop_at_the_next_submit(tmp_path):
    writer = BackgroundWriter()

    def bug():
        raise TypeError("cannot pickle 'generator' object")

    writer.submit(tmp_path / "checkpoint.pt", bug)
    writer.flush()
    with pytest.raises(RuntimeError, match="background write failed.*cannot pickle"):
        writer.submit(tmp_path / "checkpoint.pt", lambda: None)
    writer.close()


@pytest.mark.parametrize("algo", ["dqn", "a2c"])
def test_checkpoint_bytes_are_the_state_at_their_step_while_the_learner_goes_on(tmp_path, algo):
    learner = make_learner(algo, 4, {"type": "discrete", "n": 3}, {}, seed=0)
    core = AgentCore(learner, "dri", 0.05, mu=0.5)
    data = checkpoint_bytes(core, 1000)
    net = next(iter(learner.state_dict()))  # the first network: actor (a2c) or q (dqn)
    before = {k: v.clone() for k, v in learner.state_dict()[net].items()}
    with torch.no_grad():  # the loop goes on: weights (and the replay buffer) change before the write
        for part in learner.state_dict().values():
            for value in part.values() if isinstance(part, dict) else ():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    value.add_(1.0)
    write_atomic(tmp_path / "c.pt", data)
    restored = AgentCore(make_learner(algo, 4, {"type": "discrete", "n": 3}, {}, seed=1), "dri", 0.05)
    assert load_checkpoint(tmp_path / "c.pt", restored) == 1000
    after = restored.learner.state_dict()[net]
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    if algo == "dqn":  # the replay buffer too: it was all zeros at step 1000
        assert np.all(restored.learner.buffer.obs == 0) and np.any(learner.buffer.obs != 0)


def test_a_write_that_waited_is_not_made_once_another_node_adopted_the_agent(tmp_path):
    agent = AgentProcess.__new__(AgentProcess)  # only what _write_unless_superseded uses
    agent.dir, agent.cfg, agent.writer = tmp_path, SimpleNamespace(incarnation=0), BackgroundWriter()
    done: list[str] = []
    started, release, first = held_write(done, "checkpoint")
    agent.writer.submit(tmp_path / "checkpoint.pt", first)
    assert started.wait(10)
    agent._write_unless_superseded(tmp_path / "links.json", lambda: done.append("links before"))
    release.set()
    agent.writer.flush()
    assert done == ["checkpoint", "links before"]  # not superseded: written
    started, release, first = held_write(done, "checkpoint 2")
    agent.writer.submit(tmp_path / "checkpoint.pt", first)
    assert started.wait(10)
    agent._write_unless_superseded(tmp_path / "links.json", lambda: done.append("links after"))
    assert fence.claim(tmp_path, 1)  # adopted elsewhere while the write waited
    release.set()
    agent.writer.flush()
    assert done[-1] == "checkpoint 2"  # the links.json write was dropped
    agent.writer.close()
