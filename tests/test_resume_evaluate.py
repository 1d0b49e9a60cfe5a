"""Continuing a run (`drima-launch --resume`) and evaluating one (`drima-launch --evaluate`),
with real processes."""

import csv

import torch

from helpers import load_summary, run_launch

TRAIN = ("--env", "pd", "--algo", "a2c", "--log-every", "50", "--checkpoint-every", "100")


def _steps(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_resume_continues_a_finished_run_from_its_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert run_launch(run, *TRAIN, "--steps", "200").returncode == 0
    res = run_launch(run, "--resume", "--steps", "400")
    assert res.returncode == 0, res.stderr[-2000:]
    expected = list(range(50, 401, 50))  # appended, no step twice, none missing
    assert _steps(run / "env_server" / "metrics.csv") == expected
    for i in (0, 1):
        assert _steps(run / f"agent_{i}" / "metrics.csv") == expected
        assert f"resumed from {run / f'agent_{i}' / 'checkpoint.pt'} at step 200" in \
            (run / f"agent_{i}" / "log.txt").read_text()
        assert torch.load(run / f"agent_{i}" / "checkpoint.pt", weights_only=False)["step"] == 400
    s = load_summary(run)
    assert s["status"] == "completed" and s["steps"] == 400 and s["config"]["resume"]
    assert s["config"]["env"] == "pd" and s["config"]["algo"] == "a2c"  # the run's own settings

    again = run_launch(run, "--resume", "--steps", "300")
    assert again.returncode == 2 and "reached step 400 already" in again.stderr


def test_evaluate_plays_the_trained_agents_greedily_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    assert run_launch(run, *TRAIN, "--steps", "300").returncode == 0
    trained = {i: (run / f"agent_{i}" / "checkpoint.pt").read_bytes() for i in (0, 1)}
    res = run_launch(tmp_path / "eval", "--evaluate", str(run), "--steps", "100")
    assert res.returncode == 0, res.stderr[-2000:]
    s = load_summary(tmp_path / "eval")
    assert s["status"] == "completed" and s["steps"] == 100 and s["final"]["window"] == "all steps (evaluation)"
    # greedy play of a one-state game: one joint action, every step of every copy
    assert sorted(s["final"]["joint_action_freq"].values())[-1] == 1.0
    for i in (0, 1):
        assert (run / f"agent_{i}" / "checkpoint.pt").read_bytes() == trained[i]  # the trained run is untouched
        assert not (tmp_path / "eval" / f"agent_{i}" / "checkpoint.pt").exists()  # nothing learned to save
        with open(tmp_path / "eval" / f"agent_{i}" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2 and all(r["conflict_rate"] == "" and r["actor_loss"] == "" for r in rows)
        assert "evaluating, greedy actions, no learning" in (tmp_path / "eval" / f"agent_{i}" / "log.txt").read_text()

    for bad, message in ((("--evaluate", str(run), "--render"), "drima-render"),
                         (("--evaluate", str(tmp_path / "eval")), "no checkpoint.pt for agents [0, 1]")):
        res = run_launch(tmp_path / "eval2", *bad, "--steps", "10")
        assert res.returncode == 2 and message in res.stderr and not (tmp_path / "eval2").exists()
