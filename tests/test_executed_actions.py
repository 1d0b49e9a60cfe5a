"""An agent learns only from actions the env server played. When its action comes after
action_timeout_s, its seat plays a substitute, and the next RESULT says so: the agent must not
learn from (obs, its own action, a reward that followed another action)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import load_summary, run_launch

LEARNERS = Path(__file__).parent / "tiny_learners.py"
K = 4


def test_a_late_agent_learns_nothing_from_the_steps_its_action_was_not_played(tmp_path):
    steps, every = 60, 5
    options = {"slow_agent": 1, "every": every, "sleep_s": 0.8, "log_dir": str(tmp_path)}
    proc = run_launch(tmp_path / "run", "--env", "pd", "--n", "2", "--steps", str(steps), "--envs", str(K),
                      "--algo", f"{LEARNERS}:SlowEveryNth", "--learner", json.dumps(options),
                      "--action-timeout", "0.3", "--log-every", "10")
    assert proc.returncode == 0, proc.stderr
    assert load_summary(tmp_path / "run")["status"] == "completed"
    for agent in (0, 1):
        given = [int(line) for line in (tmp_path / f"agent_{agent}.txt").read_text().split()]
        stats = json.loads((tmp_path / "run" / f"agent_{agent}" / "stats.json").read_text())
        skipped = stats["not_executed"]
        # the learner got nothing to learn from exactly at the steps the agent counts as not played
        assert given.count(0) == skipped["steps"] and skipped["copies"] == K * skipped["steps"], (given, skipped)
        assert set(given) <= {0, K}
        if agent == 1:  # each slow update made its next action late: at least those were not played
            assert skipped["steps"] >= steps // every - 1, skipped
    env_rows = (tmp_path / "run" / "env_server" / "metrics.csv").read_text().splitlines()
    assert any(float(row.split(",")[5]) > 0 for row in env_rows[1:])  # missing_actions counted there too
