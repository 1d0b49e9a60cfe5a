"""Acting ahead (the default; --no-act-ahead turns it off): an agent sends its action for step t+1
before it learns from step t, so the env server steps while the agents learn. Only learners that
declare ActsAhead are driven that way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drima.agent.learners import ActsAhead, make_learner
from helpers import load_summary, run_launch

LEARNERS = Path(__file__).parent / "tiny_learners.py"
STEPS = 20


AHEAD = "a" + "au" * (STEPS - 1) + "u"  # act on t+1, then learn from t; the last result: learn only


@pytest.mark.parametrize("flag, declares, order", [
    ([], True, AHEAD),  # the default
    (["--act-ahead"], True, AHEAD),
    (["--no-act-ahead"], True, "au" * STEPS),  # act, learn, act, learn
    ([], False, "au" * STEPS),  # the learner declares acts_ahead = False: never ahead
])
def test_the_agent_acts_before_it_learns_only_when_asked_and_allowed(tmp_path, flag, declares, order):
    options = {"log_dir": str(tmp_path), "acts_ahead": declares}
    proc = run_launch(tmp_path / "run", "--env", "pd", "--n", "2", "--steps", str(STEPS), "--envs", "2",
                      "--algo", f"{LEARNERS}:CallOrder", "--learner", json.dumps(options), "--log-every", "5",
                      *flag)
    assert proc.returncode == 0, proc.stderr
    assert load_summary(tmp_path / "run")["steps"] == STEPS
    for agent in (0, 1):
        assert (tmp_path / f"agent_{agent}.txt").read_text() == order


def test_which_built_in_learners_act_ahead():
    discrete = {"type": "discrete", "n": 3}
    for algo, ahead in (("a2c", True), ("dqn", True), ("ddpg", True), ("ppo", False)):
        learner = make_learner(algo, 4, discrete, {}, seed=0)
        assert (isinstance(learner, ActsAhead) and learner.acts_ahead) == ahead, algo
