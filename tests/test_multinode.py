"""Two "nodes" on this machine, each with its own drima-launch (torchrun convention: the same
command with --node-rank 0 / 1). Node 0 runs the env server, the rendezvous and agents 0-1;
node 1 runs agents 2-3. The ring 0-1-2-3 has two links that cross nodes.

First over two loopback addresses (127.0.0.2 and 127.0.0.3), then, where network namespaces
can be created (root), over a veth pair between two namespaces that share nothing else: the
only route between the nodes is the advertised tcp addresses.

Both run with CurveZMQ (the default): the nodes share a run secret through DRIMA_RUN_SECRET, and
a stranger without it is refused at the rendezvous while the run goes on."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from drima import security
from helpers import drima_processes_for, load_summary

pytestmark = pytest.mark.slow

STEPS = 300
COMMON = ["--env", "pd", "--topology", "ring", "--n", "4", "--steps", str(STEPS), "--log-every", "10", "--quiet",
          "--nodes", "2"]
RUN_SECRET = "the secret of this two-node test run"  # every node gets it through its environment


def launch_node(rank: int, host: str, rendezvous: str, run_dir, prefix=(), extra=()) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-m", "drima.launch", *COMMON, "--node-rank", str(rank),
                             "--host", host, "--rendezvous", rendezvous, "--run-dir", str(run_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ | {security.RUN_SECRET_ENV: RUN_SECRET})


def stranger_is_refused(rendezvous: str, keys: security.KeyPair | None, server_key: str) -> None:
    """A JOIN from a REQ socket without the run secret: wait until node 0 has refused its handshake."""
    ctx = zmq.Context()
    try:
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        monitor = req.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        security.connect(req, keys, server_key, f"tcp://{rendezvous}")
        req.send(b"JOIN, let me in")
        assert monitor.poll(120_000), "node 0 never refused the stranger"
        recv_monitor_message(monitor)
        monitor.close()
    finally:
        ctx.destroy(0)


def check_two_node_run(node0, node1, run0, run1, host0: str, host1: str) -> str:
    """Both nodes complete the run together; returns node 0's output."""
    out1 = node1.communicate(timeout=240)[0]  # whichever node started first waits at the rendezvous
    out0 = node0.communicate(timeout=240)[0]
    assert node0.returncode == 0, out0
    assert node1.returncode == 0, out1
    assert "rendezvous: node 1 joined (2 of 2)" in out0
    summary = load_summary(run0)
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    node1_report = json.loads((run1 / "node_1.json").read_text())
    assert node1_report["status"] == "completed"
    assert {k: v["exit_status"] for k, v in node1_report["agents"].items()} == {"2": 0, "3": 0}
    for run, ids, host in ((run0, (0, 1), host0), (run1, (2, 3), host1)):
        for i in ids:
            cfg = json.loads((run / f"agent_{i}" / "config.json").read_text())
            assert cfg["curve_key_file"] and cfg["env_server_key"] and len(cfg["peer_keys"]) == 2  # CurveZMQ
            assert cfg["link_bind"].startswith(f"tcp://{host}:")  # bound on its own node's address
            assert cfg["env_address"].startswith(f"tcp://{host0}:")  # the env server is on node 0
            rows = list(csv.DictReader(open(run / f"agent_{i}" / "metrics.csv")))
            assert int(rows[-1]["step"]) == STEPS and float(rows[-1]["n_peers"]) == 2.0
            stats = json.loads((run / f"agent_{i}" / "stats.json").read_text())
            assert stats["link"]["recv_msgs"] >= 2 * STEPS  # both neighbours, every step
    # agent 1 (node 0) and agent 2 (node 1) are neighbours across the nodes
    peers1 = json.loads((run0 / "agent_1" / "config.json").read_text())["peers"]
    assert peers1["2"].startswith(f"tcp://{host1}:")
    assert not drima_processes_for(run0) and not drima_processes_for(run1)
    return out0


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_two_nodes_over_two_loopback_addresses(tmp_path):
    host0, host1 = "127.0.0.2", "127.0.0.3"
    rendezvous = f"{host0}:{free_port(host0)}"
    node0 = launch_node(0, host0, rendezvous, tmp_path / "node0")
    stranger_is_refused(rendezvous, None, "")  # no CURVE
    wrong_server, wrong_member = security.rendezvous_keys(b"not this run's secret at all")
    stranger_is_refused(rendezvous, wrong_member, wrong_server.public)  # keys from another secret
    node1 = launch_node(1, host1, rendezvous, tmp_path / "node1")
    out0 = check_two_node_run(node0, node1, tmp_path / "node0", tmp_path / "node1", host0, host1)
    assert out0.count("rendezvous: refused a connection") == 2, out0  # logged, and the run went on


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def test_two_nodes_in_two_network_namespaces(tmp_path):
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command: cannot create network namespaces here")
    tag = uuid.uuid4().hex[:6]
    ns = (f"drima-a-{tag}", f"drima-b-{tag}")
    made = _ip("netns", "add", ns[0])
    if made.returncode != 0:
        pytest.skip(f"cannot create network namespaces here (needs root): {made.stderr.strip()}")
    try:
        assert _ip("netns", "add", ns[1]).returncode == 0
        steps = [("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}"),
                 ("link", "set", f"va{tag}", "netns", ns[0]), ("link", "set", f"vb{tag}", "netns", ns[1]),
                 ("-n", ns[0], "addr", "add", "10.231.0.1/24", "dev", f"va{tag}"),
                 ("-n", ns[1], "addr", "add", "10.231.0.2/24", "dev", f"vb{tag}"),
                 ("-n", ns[0], "link", "set", f"va{tag}", "up"), ("-n", ns[1], "link", "set", f"vb{tag}", "up"),
                 ("-n", ns[0], "link", "set", "lo", "up"), ("-n", ns[1], "link", "set", "lo", "up")]
        for step in steps:
            res = _ip(*step)
            assert res.returncode == 0, (step, res.stderr)
        host0, host1 = "10.231.0.1", "10.231.0.2"
        rendezvous = f"{host0}:29500"  # a fresh namespace: torchrun's default port is free
        node1 = launch_node(1, host1, rendezvous, tmp_path / "node1", prefix=("ip", "netns", "exec", ns[1]))
        node0 = launch_node(0, host0, rendezvous, tmp_path / "node0", prefix=("ip", "netns", "exec", ns[0]))
        check_two_node_run(node0, node1, tmp_path / "node0", tmp_path / "node1", host0, host1)
    finally:
        for name in ns:
            _ip("netns", "del", name)  # also removes the veth pair


def test_nodes_with_different_options_are_refused_at_the_rendezvous(tmp_path):
    host = "127.0.0.2"
    rendezvous = f"{host}:{free_port(host)}"
    node1 = launch_node(1, host, rendezvous, tmp_path / "n1", extra=("--seed", "5"))
    node0 = launch_node(0, host, rendezvous, tmp_path / "n0")
    out0, out1 = node0.communicate(timeout=120)[0], node1.communicate(timeout=120)[0]
    assert node0.returncode == 2 and node1.returncode == 2, (out0, out1)
    for out in (out0, out1):
        assert "node 1's launch options differ from node 0's: ['seed']" in out
    assert not (tmp_path / "n0" / "env_server").exists()  # nothing was started
