"""A neighbour that dies mid-run (kill -9): the run completes without it."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import drima_processes_for, load_summary, pid_of, wait_for_env_rows

pytestmark = pytest.mark.slow


def test_kill_one_ring_agent_mid_run(tmp_path):
    run_dir = tmp_path / "ring4"
    steps = 1500
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--env", "pd", "--topology", "ring", "--n", "4", "--steps", str(steps),
                                 "--log-every", "10", "--link-deadline", "0.5"])
    metrics = wait_for_env_rows(run_dir, 20)
    # every process of the run names its role in ps: that is how the victim is found
    titles = sorted(p.split(": ", 1)[1] for p in drima_processes_for(run_dir))
    resolved = run_dir.resolve()
    assert titles == sorted([f"drima-launch {resolved}", f"drima-env-server {resolved}", f"drima-zygote {resolved}"]
                            + [f"drima-agent {i} {resolved}" for i in range(4)]), titles
    os.kill(pid_of(run_dir, "agent 2"), signal.SIGKILL)
    killed_at = len(metrics.read_text().splitlines()) * 10
    assert killed_at < steps, "the run ended before the kill: make it longer"
    assert launcher.wait(timeout=180) == 1  # completed, with an agent failure reported
    summary = load_summary(run_dir)
    assert summary["status"] == "completed with agent failures"
    assert summary["steps"] == steps
    for i in (0, 1, 3):  # the survivors learned to the end
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert int(rows[-1]["step"]) == steps
    for i in (1, 3):  # agent 2's neighbours noticed and went on with one neighbour
        log_text = (run_dir / f"agent_{i}" / "log.txt").read_text()
        assert "neighbour 2 silent" in log_text
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert float(rows[-1]["n_peers"]) == 1.0
    assert "agent 2 silent" in (run_dir / "env_server" / "log.txt").read_text()
    # from the kill on, agent 2's seat played substitutes at every step, and the summary says how many
    count = json.loads((run_dir / "env_server" / "stats.json").read_text())["substituted_actions"]["count"]
    assert 0.5 * (steps - killed_at) <= count <= steps - killed_at + 30, (count, killed_at)
    assert abs(summary["substituted_action_share"] - count / (steps * 4)) < 0.002  # from the metrics rows
    # what agent 2 wrote before it died is still there and readable
    rows = list(csv.DictReader(open(run_dir / "agent_2" / "metrics.csv")))
    assert 0 < int(rows[-1]["step"]) < steps
    assert not drima_processes_for(str(run_dir))


def test_dri_still_beats_ind_when_links_drop_30_percent(tmp_path):
    from helpers import run_launch

    chaos = ["--env", "pd", "--n", "2", "--steps", "600", "--seed", "3",
             "--link-drop", "0.3", "--link-deadline", "0.02"]
    assert run_launch(tmp_path / "dri", *chaos, "--mode", "dri").returncode == 0
    assert run_launch(tmp_path / "ind", *chaos, "--mode", "ind").returncode == 0
    dri, ind = load_summary(tmp_path / "dri"), load_summary(tmp_path / "ind")
    # ind falls to (D,D) = 4; dri escapes it. (With 30 % of the steps learned independently,
    # this seed settles on (D,C) = 18 rather than (C,C) = 20: see the issue notes.)
    assert ind["final"]["joint_action_freq"]["D,D"] >= 0.9
    assert dri["final"]["mean_team_reward"] > ind["final"]["mean_team_reward"] + 10
    import json

    stats = json.loads((tmp_path / "dri" / "agent_0" / "stats.json").read_text())
    assert 0.2 < stats["link"]["dropped_chaos"] / 600 < 0.4


def test_process_title_is_a_no_op_without_setproctitle():
    code = ("import sys; sys.modules['setproctitle'] = None\n"  # makes `import setproctitle` fail
            "from drima.procinfo import set_process_title\n"
            "set_process_title('agent 1', '/tmp/x')\n"
            "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[0].decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "drima-agent" not in out and out.strip() == sys.executable


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_killed_ring_agent_restarts_from_its_checkpoint_and_rejoins(tmp_path):
    from helpers import run_launch

    run_dir = tmp_path / "restart"
    steps = 1500
    res = run_launch(run_dir, "--env", "pd", "--topology", "ring", "--n", "4", "--steps", str(steps),
                     "--log-every", "10", "--checkpoint-every", "100", "--link-deadline", "0.3",
                     "--kill-agent", "2@400", "--restart-failed", "--restart-delay", "6")
    # a restart from the zygote takes a fork, not an `import torch`: the delay keeps agent 2 away
    # for a few seconds after its death is noticed (2 s), so that the run goes on without it
    assert res.returncode == 0, res.stderr
    assert "fault injection: SIGKILL agent 2" in res.stderr and "restarting it from its last checkpoint" in res.stderr
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == steps
    assert summary["restarts"] == {"2": 1}
    kill = summary["kills"][0]
    assert kill["agent"] == 2 and 400 <= kill["env_step"] < steps
    assert summary["agents"]["2"]["exits"] == [-signal.SIGKILL, 0] and summary["agents"]["2"]["exit_status"] == 0
    assert [e["event"] for e in summary["agent_events"] if e["agent"] == 2] == ["dead", "rejoined"]
    # it resumed from the last checkpoint before the kill (load_checkpoint succeeded) ...
    log2 = (run_dir / "agent_2" / "log.txt").read_text()
    resumed = int(re.search(r"resumed from \S+checkpoint.pt at step (\d+)", log2)[1])
    assert resumed % 100 == 0 and 300 <= resumed <= kill["env_step"]
    first = int(re.search(r"first result at step (\d+)", log2)[1])
    assert first > kill["env_step"]
    # ... and its metrics.csv was appended: rows up to the kill, a gap, then rows to the end
    logged = [int(r["step"]) for r in csv.DictReader(open(run_dir / "agent_2" / "metrics.csv"))]
    assert logged == sorted(set(logged)) and logged[-1] == steps
    gap = sorted(set(range(10, steps + 1, 10)) - set(logged))
    assert gap and kill["env_step"] - 10 <= gap[0] and gap[-1] < first + 10, (gap, kill, first)
    assert torch.load(run_dir / "agent_2" / "checkpoint.pt", weights_only=False)["step"] == steps
    for i in (1, 3):  # its neighbours saw it leave and come back, and learn with it to the end
        log_text = (run_dir / f"agent_{i}" / "log.txt").read_text()
        about_2 = [line for line in log_text.splitlines() if "neighbour 2" in line or "link stats" in line]
        assert "neighbour 2 silent" in log_text and "neighbour 2 is back" in log_text, (i, about_2, kill, first)
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert float(rows[-1]["n_peers"]) == 2.0
    server_log = (run_dir / "env_server" / "log.txt").read_text()
    assert "agent 2 silent for" in server_log and "agent 2 is ready: it rejoins at step" in server_log
    assert not drima_processes_for(run_dir)


def test_env_server_killed_every_agent_saves_and_exits_4_in_time(tmp_path):
    run_dir = tmp_path / "srvkill"
    launcher_err = open(tmp_path / "launcher.err", "w")
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--env", "pd", "--topology", "ring", "--n", "4", "--steps", "1000000",
                                 "--log-every", "10", "--checkpoint-every", "50"], stderr=launcher_err)
    wait_for_env_rows(run_dir, 20)
    agents = [pid_of(run_dir, f"agent {i}") for i in range(4)]
    killed_at = time.monotonic()
    os.kill(pid_of(run_dir, "env-server"), signal.SIGKILL)
    while any(_alive(p) for p in agents) and time.monotonic() < killed_at + 30:
        time.sleep(0.02)
    took = time.monotonic() - killed_at
    bound = 0.5 * 4 + 1.0  # heartbeat_interval_s * heartbeat_liveness + the documented 1 s margin
    print(f"every agent exited {took:.2f} s after the env server was killed (bound {bound} s)")
    assert 0.5 * 4 < took < bound, took
    assert launcher.wait(timeout=60) == 1
    assert "env server killed by SIGKILL" in (tmp_path / "launcher.err").read_text()
    summary = load_summary(run_dir)
    assert summary["status"] == "failed" and summary["failure"] == "env server killed by SIGKILL"
    assert summary["steps"] >= 190
    for i in range(4):
        assert summary["agents"][str(i)]["exit_status"] == 4
        log_text = (run_dir / f"agent_{i}" / "log.txt").read_text()
        silent = float(re.search(r"env server silent for ([\d.]+) s \(\d missed heartbeats\)", log_text)[1])
        assert 2.0 <= silent < 2.5
        assert "exiting with status 4" in log_text
        step = int(re.search(r"saving a checkpoint at step (\d+)", log_text)[1])
        assert torch.load(run_dir / f"agent_{i}" / "checkpoint.pt", weights_only=False)["step"] == step >= 190
    assert not drima_processes_for(run_dir)


def test_frozen_env_server_agents_with_on_env_loss_wait_rejoin(tmp_path):
    """SIGSTOP the env server for 4 s (a partition, a GC pause, a live migration): the agents
    declare it lost after 2 s, reconnect, and once it resumes they rejoin and the run completes."""
    run_dir = tmp_path / "frozen"
    steps = 1500
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--env", "pd", "--topology", "ring", "--n", "4", "--steps", str(steps),
                                 "--log-every", "10", "--on-env-loss", "wait", "--reconnect-timeout", "30"])
    wait_for_env_rows(run_dir, 20)
    server = pid_of(run_dir, "env-server")
    os.kill(server, signal.SIGSTOP)
    time.sleep(4.0)
    os.kill(server, signal.SIGCONT)
    assert launcher.wait(timeout=240) == 0
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == steps
    assert all(a["exit_status"] == 0 and a["restarts"] == 0 for a in summary["agents"].values())
    rejoined = {e["agent"] for e in summary["agent_events"] if e["event"] == "rejoined"}
    assert rejoined == {0, 1, 2, 3}
    for i in range(4):
        log_text = (run_dir / f"agent_{i}" / "log.txt").read_text()
        assert "env server silent for" in log_text and "reconnecting for up to 30 s (on_env_loss=wait)" in log_text
        assert "reconnected to the env server" in log_text
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert int(rows[-1]["step"]) == steps


@pytest.mark.parametrize("on_env_loss", ["wait", "exit"])
def test_killed_env_server_is_restarted_and_the_run_completes(tmp_path, on_env_loss):
    """kill -9 the env server with --restart-failed: the launcher starts a new one, which goes on
    from the step the run had reached; agents rejoin it (wait: they reconnect; exit: they exit 4 and
    are restarted from their checkpoints). Nothing already written is lost."""
    run_dir = tmp_path / "srvrestart"
    steps = 1500
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--env", "pd", "--topology", "ring", "--n", "4", "--steps", str(steps),
                                 "--log-every", "10", "--checkpoint-every", "50", "--restart-failed",
                                 "--on-env-loss", on_env_loss, "--reconnect-timeout", "60"])
    metrics = wait_for_env_rows(run_dir, 30)
    old = pid_of(run_dir, "env-server")
    os.kill(old, signal.SIGKILL)
    rows_before = metrics.read_text().splitlines()
    killed_at = int(rows_before[-1].split(",")[0])
    assert killed_at < steps - 100, "the run ended before the kill: make it longer"
    assert launcher.wait(timeout=240) == 0
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["steps"] == steps
    assert summary["env_server_restarts"] == [-signal.SIGKILL] and summary["env_server_exit_status"] == 0
    resumed = [e["step"] for e in summary["agent_events"] if e["event"] == "env_server_resumed"]
    assert len(resumed) == 1 and killed_at <= resumed[0] < killed_at + 50, (resumed, killed_at)
    # the env server's metrics: the rows before the kill are intact, the new ones follow them
    logged = [int(r["step"]) for r in csv.DictReader(open(metrics))]
    assert logged[:len(rows_before) - 1] == list(range(10, killed_at + 1, 10))
    assert logged == sorted(set(logged)) and logged[-1] == steps
    assert "resuming the run at step" in (run_dir / "env_server" / "log.txt").read_text()
    for i in range(4):
        rows = [int(r["step"]) for r in csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv"))]
        assert rows == sorted(set(rows)) and rows[-1] == steps  # no step counted twice, learned to the end
        agent = summary["agents"][str(i)]
        if on_env_loss == "wait":
            assert agent["restarts"] == 0 and "reconnected to the env server" in \
                (run_dir / f"agent_{i}" / "log.txt").read_text()
        else:
            assert agent["exits"] == [4, 0] and agent["restarts"] == 1
    assert not drima_processes_for(run_dir)


def test_the_final_lines_warn_when_more_than_a_percent_of_actions_were_substitutes():
    from drima.launch.report import substituted_line

    assert substituted_line({"substituted_action_share": 0.01}) is None  # at most 1 %: no warning
    assert substituted_line({"substituted_action_share": None}) is None  # a summary from before the count
    assert substituted_line({}) is None
    line = substituted_line({"substituted_action_share": 0.2345})
    assert line.startswith("warning: 23.4 % of the agents' actions were substitutes") and "--heartbeat-liveness" in line


def test_an_agent_asked_to_stop_in_a_long_update_saves_its_checkpoint(tmp_path):
    """SIGTERM to the launcher while every agent is inside a long PPO update (thousands of epochs):
    the agents stop at their next gradient step and save a checkpoint, instead of being killed
    after the launcher's 10 s grace with nothing saved (seen with six SMAX runs on 2 cores)."""
    run_dir = tmp_path / "run"
    learner = json.dumps({"n_steps": 32, "chunk_len": 8, "epochs": 100000, "minibatches": 1})
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--env", "pd", "--n", "2", "--algo", "ppo", "--steps", "1000", "--log-every", "8",
                                 "--learner", learner], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_env_rows(run_dir, 5)  # step 32: the rollout is full, the agents are in their update
        time.sleep(2)
        assert not (run_dir / "agent_0" / "checkpoint.pt").exists()
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    for i in range(2):
        log_text = (run_dir / f"agent_{i}" / "log.txt").read_text()
        assert "stop requested" in log_text, log_text[-2000:]
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
