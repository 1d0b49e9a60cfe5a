"""`--algo MODULE:CLASS`: a learner of the user's own, here the one docs/learners.md writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from drima.agent.learners import Learner, make_learner
from drima.types import transition
from helpers import load_summary, run_launch

DOC = Path(__file__).parent.parent / "docs" / "learners.md"
TINY = Path(__file__).parent / "tiny_envs.py"


def docs_learner(folder: Path) -> Path:
    """The REINFORCE learner of docs/learners.md, written to a file as a user would save it."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = folder / "reinforce.py"
    path.write_text(code)
    return path


def test_the_docs_learner_is_short_and_follows_the_protocol(tmp_path):
    path = docs_learner(tmp_path)
    assert len(path.read_text().splitlines()) <= 80
    learner = make_learner(f"{path}:Reinforce", 3, {"type": "discrete", "n": 2}, {"rollout": 2}, seed=0)
    assert isinstance(learner, Learner)
    obs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    acts = learner.act(obs)
    assert acts.shape == (4,) and acts.dtype == np.int32
    learner.update(transition(obs, acts, np.ones(4), obs, np.zeros(4)))
    assert "actor_loss" in learner.update(transition(obs, acts, np.ones(4), obs, np.zeros(4)))


@pytest.mark.parametrize("algo, options, expected", [
    ("{path}:Nope", {}, "has no 'Nope'"),
    ("{path}:ReinforceOptions", {}, "the learner has no act, update, state_dict, load_state_dict"),
    ("{path}:Reinforce", {"lrr": 1}, "building the learner failed: TypeError"),
    ("/no/such/file.py:Reinforce", {}, "no such file /no/such/file.py"),
    ("no_such_module_abc:Reinforce", {}, "no module named 'no_such_module_abc'"),
    ("reinforce", {}, "unknown algo 'reinforce': use one of a2c, dqn, ddpg, ppo, or MODULE:CLASS"),
])
def test_a_bad_learner_is_a_one_line_error(tmp_path, algo, options, expected):
    path = docs_learner(tmp_path)
    with pytest.raises(ValueError, match=re.escape(expected)):
        make_learner(algo.format(path=path), 3, {"type": "discrete", "n": 2}, options, seed=0)


def test_a_learner_that_raises_anything_while_built_is_a_one_line_error():
    """A user's learner may raise any exception in its constructor (here KeyError: a missing option)."""
    tiny = Path(__file__).parent / "tiny_learners.py"
    with pytest.raises(ValueError, match=re.escape("building the learner failed: KeyError: 'slow_agent'")):
        make_learner(f"{tiny}:SlowEveryNth", 3, {"type": "discrete", "n": 2}, {}, seed=0, env_spec={"agent_id": 0})


def test_the_launcher_refuses_a_bad_learner_before_any_process_starts(tmp_path):
    path = docs_learner(tmp_path)
    proc = run_launch(tmp_path / "run", "--algo", f"{path}:Reinforce", "--learner", '{"lrr": 1}', timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "building the learner failed" in proc.stderr
    assert not (tmp_path / "run" / "agent_0").exists()


@pytest.mark.slow
def test_a_learner_from_a_file_learns_in_a_real_run_and_resumes(tmp_path, monkeypatch):
    path = docs_learner(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative --algo path, as a user types it
    run = tmp_path / "run"
    proc = run_launch(run, "--env", f"pettingzoo:{TINY}:Matching", "--algo", "./reinforce.py:Reinforce",
                      "--mode", "ind", "--steps", "600", "--checkpoint-every", "200")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert summary["config"]["algo"] == f"{path}:Reinforce"  # made absolute for the agent processes
    assert min(summary["agents"][str(i)]["final_reward"] for i in range(2)) > 0.8  # random play: 1/3
    proc = run_launch(run, "--resume", "--steps", "700")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "resumed from" in (run / "agent_0" / "log.txt").read_text()
