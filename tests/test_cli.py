"""Bad input to drima-launch: one clear line on stderr, exit status 2, nothing started."""

import json
import subprocess
import sys

import pytest


def launch(*args):
    return subprocess.run([sys.executable, "-m", "drima.launch", "--quiet", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--algo", "ppo2"], "unknown algo 'ppo2': use one of a2c, dqn, ddpg, ppo, or MODULE:CLASS"),
    (["--mode", "greedy"], "invalid choice"),
    (["--n", "0"], "--n must be >= 1"),
    (["--steps", "-3"], "--steps must be >= 1"),
    (["--envs", "abc"], "invalid int value"),
    (["--env", "chess"], "unknown"),
    (["--env", "pd", "--n", "3"], "multiple of 2"),
    (["--topology", "hypercube"], "hypercube"),
    (["--topology", "range:0.8"], "range"),
    (["--learner", "{not json"], "--learner"),
    (["--learner", '{"lr_actorr": 1}'], "lr_actorr"),
    (["--mu-step-size", "2"], "mu-step-size"),
    (["--missing-action", "guess"], "invalid choice"),
    (["--heartbeat-interval", "0"], "--heartbeat-interval"),
    (["--heartbeat-liveness", "0"], "--heartbeat-liveness"),
    (["--kill-agent", "2"], "K@T"),
    (["--kill-agent", "5@10"], "only agents 0..1"),
    (["--nodes", "2"], "--rendezvous HOST:PORT"),
    (["--nodes", "2", "--node-rank", "2", "--rendezvous", "h:1"], "--node-rank"),
    (["--nodes", "3", "--rendezvous", "h:1"], "more than the 2 agents"),
    (["--env", "pd", "--prey", "2"], "options of --env hunting"),
    (["--env", "pd", "--render"], "--render draws MPE envs"),
    (["--env", "hunting", "--topology", "range:far"], "range:0.8"),
    (["--env", "hunting", "--n", "4"], "has 3 learning agents, but --n is 4"),
    (["--env", "hunting", "--interceptors", "0"], "--interceptors must be >= 1"),
    (["--env", "hunting", "--env-options", '{"speed": 1}'], "speed"),
    (["--env", "collection", "--env-options", "[1]"], "--env-options: not a JSON object"),
    (["--env", "collection", "--algo", "a2c", "--actions", "continuous"], "a2c supports discrete"),
    (["--env", "pd", "--actions", "continuous"], "discrete actions only"),
    (["--env", "smax:4m"], "unknown SMAX map '4m'"),
    (["--env", "smax:3m", "--n", "4"], "smax:3m has 3 allied units, but --n is 4"),
    (["--env", "collection", "--topology", "range:sight"], "range:sight needs units with a sight range"),
    (["--env", "smax:3m", "--algo", "ppo", "--learner", '{"chunk_len": 7}'], "chunk_len 7 must divide n_steps 400"),
    (["--env", "sc2:3m"], "github.com/oxwhirl/smac"),  # SMAC is not installed here
    (["--resume"], "launch.json: not a drima run's settings"),
    (["--evaluate", "/nonexistent/run"], "/nonexistent/run/launch.json"),
    (["--resume", "--evaluate", "x"], "one at a time"),
])
def test_bad_flags_exit_2_with_a_message(args, message, tmp_path):
    res = launch("--run-dir", str(tmp_path / "r"), *args)
    assert res.returncode == 2, res
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r" / "env_server").exists()


def test_bad_payoff_file_names_the_problem(tmp_path):
    bad = tmp_path / "game.json"
    bad.write_text(json.dumps({"actions": [["C", "D"], ["C", "D"]], "payoffs": {"C,C": [1, 1]}}))
    res = launch("--run-dir", str(tmp_path / "r"), "--env", f"payoff:{bad}")
    assert res.returncode == 2
    assert "game.json" in res.stderr and "missing" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_topology_file_names_the_line(tmp_path):
    edges = tmp_path / "edges.txt"
    edges.write_text("0 1\n1 7\n")
    res = launch("--run-dir", str(tmp_path / "r"), "--topology", f"file:{edges}", "--n", "2")
    assert res.returncode == 2
    assert "edges.txt:2" in res.stderr and "7" in res.stderr
