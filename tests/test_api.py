"""`drima.run` from Python: a run from a worker thread, one stopped by an event or a
KeyboardInterrupt, and bad configs refused with the CLI's own message. Real processes and sockets."""

import _thread
import dataclasses
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drima import ConfigError, LaunchConfig, RunResult, run, validate
from helpers import drima_processes_for, load_summary, wait_for_env_rows


def test_import_drima_stays_cheap():
    code = ("import sys, drima; assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'; "
            "from drima import run, LaunchConfig, RunResult, ConfigError; print(run.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "drima.launch.api"


@pytest.mark.parametrize("fields, n", [
    ({"env": "pd"}, 2), ({"env": "meeting3"}, 3), ({"env": "hunting"}, 3), ({"env": "collection"}, 6),
    ({"env": "hunting", "env_options": {"n_prey": 2, "n_attackers": 2, "n_interceptors": 2}}, 4),
    ({"env": "smax:3m", "algo": "ppo"}, 3), ({"env": "pd", "n": 4}, 4),
])
def test_validate_fills_in_the_envs_agent_count(fields, n):
    cfg = LaunchConfig(**fields)
    assert validate(cfg).n == n
    assert cfg.n == fields.get("n")  # the caller's config is left as it was


def test_validate_fills_in_the_envs_learner_and_budget_from_one_table():
    from drima.launch.cli import config_from_args
    from drima.launch.defaults import GENERIC, RUN_DEFAULTS

    collection = RUN_DEFAULTS["collection"]
    assert collection != GENERIC  # the quick-start env has its own, measured (benchmarks/quick_start.py)
    for cfg in (LaunchConfig(env="collection"), config_from_args(["--env", "collection"])[0]):
        assert (cfg.algo, cfg.steps) == (None, None)  # the CLI and run() leave them to validate
        filled = validate(cfg)
        assert (filled.algo, filled.steps) == (collection.algo, collection.steps)
    assert (validate(LaunchConfig(env="pd")).algo, validate(LaunchConfig(env="pd")).steps) == ("a2c", 3000)
    given = validate(LaunchConfig(env="collection", algo="a2c", steps=100))
    assert (given.algo, given.steps) == ("a2c", 100)


def test_env_workers_default_to_a_second_process_for_a_slow_pettingzoo_env():
    """--env-workers not given: 1 for the built-in envs (stepped in one batch) and for a PettingZoo
    env that is quick to step; 2 where a block of K copies takes 2 ms or more, on 2+ cores."""
    from drima.launch.defaults import auto_env_workers, usable_cores

    assert [auto_env_workers(k, 0.001, 2) for k in (1, 2, 8)] == [1, 2, 2]
    assert auto_env_workers(8, 0.0002, 2) == 1 and auto_env_workers(8, 0.01, 1) == 1
    assert validate(LaunchConfig(env="pd")).env_workers == 1
    paced = f"pettingzoo:{Path(__file__).parent / 'tiny_envs.py'}:Paced"
    slow = {"n": 2, "step_s": 0.002}  # every copy's step takes 2 ms or more
    assert validate(LaunchConfig(env=paced, env_options=slow, envs=4)).env_workers == min(2, usable_cores())
    assert validate(LaunchConfig(env=paced, env_options=slow, envs=1)).env_workers == 1
    assert validate(LaunchConfig(env=paced, env_options={"n": 2, "step_s": 0.0}, envs=4)).env_workers == 1
    assert validate(LaunchConfig(env=paced, env_options=slow, envs=4, env_workers=1)).env_workers == 1


def test_validate_uses_tcp_across_nodes(monkeypatch):
    monkeypatch.setenv("DRIMA_RUN_SECRET", "sixteen or more bytes")
    assert validate(LaunchConfig(nodes=2, rendezvous="h:1")).transport == "tcp"


def test_several_nodes_need_a_run_secret_unless_insecure(monkeypatch, tmp_path):
    monkeypatch.delenv("DRIMA_RUN_SECRET", raising=False)
    cfg = LaunchConfig(nodes=2, rendezvous="h:1")
    with pytest.raises(ConfigError, match="no run secret: set DRIMA_RUN_SECRET or give --run-secret-file"):
        validate(cfg)
    short = tmp_path / "secret"
    short.write_text("too short\n")
    with pytest.raises(ConfigError, match="9 bytes, use at least 16"):
        validate(dataclasses.replace(cfg, run_secret_file=str(short)))
    short.write_text("a secret long enough for a run\n")
    assert validate(dataclasses.replace(cfg, run_secret_file=str(short))).run_secret_file == str(short)
    assert validate(dataclasses.replace(cfg, insecure=True)).insecure


@pytest.mark.parametrize("fields, args", [
    ({"topology": "hypercube"}, ["--topology", "hypercube"]),
    ({"n": 0}, ["--n", "0"]),
    ({"learner": {"lr_actorr": 1}}, ["--learner", '{"lr_actorr": 1}']),
    ({"link_drop": 1.5}, ["--link-drop", "1.5"]),
    ({"topology": "range:0.8"}, ["--topology", "range:0.8"]),
    ({"kill_agents": [[5, 10]]}, ["--kill-agent", "5@10"]),
    ({"env": "smax:3m", "n": 4}, ["--env", "smax:3m", "--n", "4"]),
    ({"env": "hunting", "env_options": {"speed": 1}}, ["--env", "hunting", "--env-options", '{"speed": 1}']),
])
def test_a_bad_config_raises_the_line_the_cli_prints(fields, args, tmp_path):
    run_dir = tmp_path / "r"
    with pytest.raises(ConfigError) as err:
        run(LaunchConfig(run_dir=str(run_dir), **fields))
    message = str(err.value)
    assert message and "\n" not in message
    res = subprocess.run([sys.executable, "-m", "drima.launch", "--quiet", "--run-dir", str(run_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"drima-launch: error: {message}"
    assert not run_dir.exists()  # nothing started, nothing written


def _run_in_thread(cfg: LaunchConfig, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = run(cfg, **kwargs)
        except BaseException as exc:  # reported by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=target, name="drima-run")
    thread.start()
    return thread, out


def _finished(thread: threading.Thread, out: dict, timeout: float) -> RunResult:
    thread.join(timeout)
    assert not thread.is_alive(), "run() did not return"
    assert "error" not in out, repr(out.get("error"))
    return out["result"]


@pytest.mark.slow
def test_run_from_a_thread_completes_and_reports(tmp_path):
    run_dir = tmp_path / "pd"
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    thread, out = _run_in_thread(LaunchConfig(env="pd", n=2, steps=300, algo="dqn", run_dir=str(run_dir)))
    result = _finished(thread, out, timeout=240)
    assert (result.status, result.exit_code, result.failure) == ("completed", 0, None)
    assert result.run_dir == run_dir and result.summary_path == run_dir / "summary.json"
    assert result.summary == load_summary(run_dir)
    assert result.summary["steps"] == 300 and result.summary["n_agents"] == 2
    assert result.plot_path == run_dir / "learning_curves.png" and result.plot_path.exists()
    assert sorted(result.agents) == [0, 1]
    for i, agent in result.agents.items():
        saved = result.summary["agents"][str(i)]
        assert agent.final_reward == saved["final_reward"] and isinstance(agent.final_reward, float)
        assert agent.final_mu == saved["final_mu"] and isinstance(agent.final_mu, float)
        assert agent.final_conflict_rate == saved["final_conflict_rate"] and 0 <= agent.final_conflict_rate <= 1
        assert (agent.exit_status, agent.restarts) == (0, 0)
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert not drima_processes_for(run_dir)


def _assert_interrupted(result: RunResult, run_dir) -> None:
    assert (result.status, result.exit_code) == ("interrupted", 130)  # drima-launch's Ctrl-C status
    summary = load_summary(run_dir)
    assert summary["status"] == "interrupted" and 0 < summary["steps"] < 1_000_000
    for i in (0, 1):  # each agent saved on its way out
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
    assert not drima_processes_for(run_dir)


@pytest.mark.slow
def test_stop_event_interrupts_a_run_cleanly(tmp_path):
    run_dir = tmp_path / "stopped"
    stop = threading.Event()
    thread, out = _run_in_thread(LaunchConfig(env="maintain", n=2, steps=1_000_000, log_every=10,
                                              run_dir=str(run_dir)), stop=stop)
    assert len(wait_for_env_rows(run_dir, 5).read_text().splitlines()) >= 5, "the run never got going"
    assert len(drima_processes_for(run_dir)) == 4  # the env server, the zygote and two agents
    stop.set()
    _assert_interrupted(_finished(thread, out, timeout=90), run_dir)


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as in an interactive session: a shell that starts pytest in
    the background leaves SIGINT ignored, and _thread.interrupt_main() then does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _run_with_ctrl_c(run_dir, wait) -> RunResult:
    """A long run in this (the main) thread, and a Ctrl-C from another thread once `wait()` returns;
    fails the test if the KeyboardInterrupt escapes run()."""

    def interrupt():
        wait()
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        return run(LaunchConfig(env="maintain", n=2, steps=1_000_000, log_every=10, run_dir=str(run_dir)))
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped run()")


@pytest.mark.slow
def test_keyboard_interrupt_in_the_calling_thread_stops_the_run(tmp_path, python_sigint):
    """A notebook's interrupt button: a KeyboardInterrupt in the thread that called run()."""
    run_dir = tmp_path / "ctrl-c"
    result = _run_with_ctrl_c(run_dir, lambda: wait_for_env_rows(run_dir, 5))
    _assert_interrupted(result, run_dir)


@pytest.mark.slow
def test_keyboard_interrupt_during_start_up_stops_the_run(tmp_path, python_sigint):
    """Ctrl-C while run() is still starting the env server and the agents: no KeyboardInterrupt
    escapes from the middle of the start-up, and no process of the run is left behind."""
    run_dir = tmp_path / "ctrl-c-early"

    def launch_json_written():  # just before the processes are started
        deadline = time.monotonic() + 90
        while not (run_dir / "launch.json").exists() and time.monotonic() < deadline:
            time.sleep(0.002)

    result = _run_with_ctrl_c(run_dir, launch_json_written)
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert load_summary(run_dir)["status"] == "interrupted"
    assert not drima_processes_for(run_dir)


def test_stop_ends_the_wait_at_the_rendezvous(tmp_path, monkeypatch):
    """Node 0 of two, the other never comes: `stop` ends the wait long before its timeout."""
    import socket

    from drima.launch.rendezvous import RendezvousError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DRIMA_RUN_SECRET", "sixteen or more bytes")
    stop = threading.Event()
    cfg = LaunchConfig(n=2, nodes=2, rendezvous=f"127.0.0.1:{port}", rendezvous_timeout_s=120,
                       run_dir=str(tmp_path / "node0"))
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(RendezvousError, match="stopped while waiting"):
        run(cfg, stop=stop)
    assert time.monotonic() - t0 < 60  # far below the 120 s timeout (the zygote's start-up: seconds when busy)
    assert not drima_processes_for(tmp_path / "node0")
