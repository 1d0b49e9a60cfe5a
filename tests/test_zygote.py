"""The agents of a run are forked from one zygote that imported torch for all of them: they share
its pages, still restart and checkpoint, and die with the launcher."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import drima_processes_for, load_summary, pid_of, wait_for_env_rows

pytestmark = pytest.mark.slow


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def maps_torch(pid: int) -> bool:
    return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()


def pss_and_rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])


def launch(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet", "--env", "pd",
                             "--topology", "ring", "--n", "4", "--log-every", "10", *args])


def wait_for_new_pid(run_dir: Path, role: str, old: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = pid_of(run_dir, role)
        except AssertionError:  # not (yet) running
            pid = old
        if pid != old:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"{role} was not restarted within {timeout} s")


def test_agents_are_forked_from_one_zygote_and_still_restart_and_checkpoint(tmp_path):
    run_dir = tmp_path / "forked"
    launcher = launch(run_dir, "--steps", "1500", "--checkpoint-every", "50", "--restart-failed")
    try:
        wait_for_env_rows(run_dir, 20)
        zygote, server = pid_of(run_dir, "zygote"), pid_of(run_dir, "env-server")
        agents = [pid_of(run_dir, f"agent {i}") for i in range(4)]
        assert parent_of(zygote) == launcher.pid and parent_of(server) == launcher.pid
        assert all(parent_of(a) == zygote for a in agents)
        # torch is loaded in the zygote and its agents only, and the agents share its pages
        assert maps_torch(zygote) and all(maps_torch(a) for a in agents)
        assert not maps_torch(launcher.pid) and not maps_torch(server)
        for a in agents:
            pss, rss = pss_and_rss_kb(a)
            assert pss < rss / 2, (a, pss, rss)  # alone, an agent's PSS was 70 % of its RSS
        os.kill(agents[1], signal.SIGKILL)
        restarted = wait_for_new_pid(run_dir, "agent 1", agents[1])
        assert parent_of(restarted) == zygote and maps_torch(restarted)
        assert launcher.wait(timeout=300) == 0
    finally:
        launcher.kill()
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["restarts"] == {"1": 1}
    assert summary["agents"]["1"]["exits"] == [-signal.SIGKILL, 0]
    log1 = (run_dir / "agent_1" / "log.txt").read_text()
    assert "resumed from" in log1 and log1.count("agent 1 starting") == 2  # both lives wrote to the same log
    for i in range(4):
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
    assert not drima_processes_for(run_dir)


def test_kill_9_of_the_launcher_leaves_no_process_behind(tmp_path):
    """The zygote gets SIGTERM when the launcher dies, and its agents when the zygote does:
    each agent saves its checkpoint and exits."""
    run_dir = tmp_path / "orphans"
    launcher = launch(run_dir, "--steps", "1000000")
    try:
        wait_for_env_rows(run_dir, 10)
        assert len(drima_processes_for(run_dir)) == 7  # launcher, env server, zygote, 4 agents
    finally:
        launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 60
    while drima_processes_for(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not drima_processes_for(run_dir)
    for i in range(4):  # the first periodic checkpoint is at step 1000: these were saved on the way out
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()


def test_a_killed_zygote_ends_the_run_as_failed_and_leaves_nothing(tmp_path):
    """kill -9 of the zygote: its agents get SIGTERM and save; the launcher, which can no longer
    learn their exit statuses, stops the run at once and says why."""
    run_dir = tmp_path / "nozygote"
    launcher = launch(run_dir, "--steps", "1000000", "--restart-failed")
    try:
        wait_for_env_rows(run_dir, 10)
        os.kill(pid_of(run_dir, "zygote"), signal.SIGKILL)
        assert launcher.wait(timeout=120) == 1
    finally:
        launcher.kill()
    summary = load_summary(run_dir)
    assert summary["status"] == "failed" and summary["failure"] == "agent zygote killed by SIGKILL"
    assert summary["restarts"] == {}  # --restart-failed has no zygote to restart them from
    for i in range(4):
        assert summary["agents"][str(i)]["exits"] == [5]  # EXIT_ZYGOTE_LOST: status unknown
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()  # saved on the zygote's SIGTERM
    assert not drima_processes_for(run_dir)


def test_the_launcher_and_env_server_do_not_import_torch():
    code = ("import sys, drima.launch.cli, drima.env_server.__main__, drima.launch.api; "
            "print(sorted(m for m in ('torch', 'mpe2', 'pettingzoo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_zygote_answers_bad_requests_and_goes_on(tmp_path):
    from drima.launch.plan import LaunchConfig
    from drima.launch.zygote import Zygote

    zygote = Zygote(tmp_path / "run")
    try:
        zygote.link.sock.sendall(b"not json\n[1, 2]\n\n")  # dropped (and logged): not JSON objects
        assert zygote._request({"op": "explode"})["error"] == "unknown request 'explode'"
        assert "bad 'spawn' request: KeyError" in zygote._request({"op": "spawn", "log": "x"})["error"]
        assert zygote.validate(LaunchConfig(env="pd", run_dir=str(tmp_path / "run"))).n == 2  # still serving
        assert zygote.proc.poll() is None
    finally:
        zygote.close()
    assert zygote.proc.returncode == 0  # closing its socket ends it
