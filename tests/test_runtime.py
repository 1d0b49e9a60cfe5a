"""Real processes, real sockets: drima-launch end to end."""

import csv
import json

import pytest
import torch

from helpers import drima_processes_for, load_summary
from helpers import run_launch as launch

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {"env", "algo", "mode", "topology", "n_agents", "seed", "steps", "env_steps_per_s", "final"}


def check_run_files(run_dir, n):
    summary = load_summary(run_dir)
    assert SUMMARY_KEYS <= summary.keys()
    assert {"mean_team_reward", "joint_action_freq"} <= summary["final"].keys()
    assert sum(summary["final"]["joint_action_freq"].values()) == pytest.approx(1.0)
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    for i in range(n):
        folder = run_dir / f"agent_{i}"
        rows = list(csv.DictReader(open(folder / "metrics.csv")))
        assert rows and int(rows[-1]["step"]) == summary["steps"]
        assert (folder / "log.txt").exists()
        ckpt = torch.load(folder / "checkpoint.pt", weights_only=False)
        assert ckpt["step"] == summary["steps"]
    return summary


def test_pd_two_agents_finishes_and_writes_files(tmp_path):
    run_dir = tmp_path / "pd2"
    res = launch(run_dir, "--env", "pd", "--n", "2", "--steps", "300", "--algo", "dqn", "--mode", "dri")
    assert res.returncode == 0, res.stderr
    summary = check_run_files(run_dir, 2)
    assert (summary["env"], summary["algo"], summary["mode"], summary["n_agents"]) == ("pd", "dqn", "dri", 2)
    assert summary["steps"] == 300 and summary["env_steps"] == 300 * 8
    assert set(summary["final"]["joint_action_freq"]) == {"C,C", "C,D", "D,C", "D,D"}
    assert not drima_processes_for(str(run_dir))


def test_ring_of_six_finishes_with_every_agent_hearing_its_two_neighbours(tmp_path):
    run_dir = tmp_path / "ring6"
    res = launch(run_dir, "--env", "pd", "--topology", "ring", "--n", "6", "--steps", "200", "--algo", "ddpg",
                 "--envs", "4")
    assert res.returncode == 0, res.stderr
    summary = check_run_files(run_dir, 6)
    for i in range(6):
        assert summary["agents"][str(i)]["neighbours"] == sorted({(i - 1) % 6, (i + 1) % 6})
        stats = json.loads((run_dir / f"agent_{i}" / "stats.json").read_text())
        # every step: one message from each of the two neighbours, nothing dropped
        assert stats["link"]["recv_msgs"] >= 2 * 200
        assert stats["link"]["dropped_late"] == stats["link"]["dropped_malformed"] == 0
    assert not drima_processes_for(str(run_dir))


def test_ctrl_c_stops_every_process_and_keeps_the_files(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                             "--env", "maintain", "--steps", "1000000", "--log-every", "10"])
    metrics = run_dir / "env_server" / "metrics.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not metrics.exists() or metrics.stat().st_size < 200):
        time.sleep(0.2)
    assert metrics.exists(), "the run never started"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    summary = load_summary(run_dir)
    assert summary["status"] == "interrupted"
    assert 0 < summary["steps"] < 1_000_000
    for i in range(2):
        ckpt = torch.load(run_dir / f"agent_{i}" / "checkpoint.pt", weights_only=False)
        assert ckpt["step"] > 0
    assert not drima_processes_for(str(run_dir))
