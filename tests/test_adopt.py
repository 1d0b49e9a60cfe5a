"""Restart on another host: the agents of a host that is cut off are adopted by a surviving host
from their checkpoints in the run folder the hosts share, and the originals, back after the
partition heals, are fenced off (they exit without writing anything).

Two "hosts" (tests/twohosts.py: network namespaces joined by a veth pair, the cut made with `tc`)
share one run folder, as NFS would. A ring of 6: node 0 (10.231.0.1) runs the env server and
agents 0-2 and adopts after 2 s (--adopt-after 2); node 1 (10.231.0.2) runs agents 3-5. Nothing is
injected inside a drima process."""

import csv
import json
import time
from pathlib import Path

import pytest

from drima.agent import fence
from drima.agent.config import EXIT_ENV_LOST, EXIT_SUPERSEDED
from drima.events import read_events
from helpers import drima_processes_for, wait_for_env_rows
from twohosts import HostsUnavailable, launch_node, two_hosts

pytestmark = pytest.mark.slow

STEPS = 600
# at most 50 steps/s whatever the machine: the run outlasts the cut, the adoption and the heal
PACED = ["--env", f"pettingzoo:{Path(__file__).parent / 'tiny_envs.py'}:Paced", "--envs", "1",
         "--env-options", json.dumps({"n": 6, "step_s": 0.02})]
ARGS = ["--topology", "ring", "--n", "6", "--log-every", "10", "--quiet", *PACED, "--steps", str(STEPS),
        "--checkpoint-every", "20", "--reconnect-timeout", "90"]


def env_step(run_dir: Path) -> int:
    rows = (run_dir / "env_server" / "metrics.csv").read_text().splitlines()
    return int(rows[-1].split(",")[0]) if len(rows) > 1 else 0


def seat_events(run_dir: Path, agent: int) -> list[str]:
    return [e["event"] for e in read_events(run_dir / "env_server" / "events.jsonl") if e.get("agent") == agent
            and e["event"] in ("dead", "adopted", "rejoined")]


def wait_for(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)


def diagnosis(run_dir: Path, logs: tuple[Path, Path]) -> str:
    parts = [log.read_text() for log in logs]
    for path in sorted(run_dir.glob("*.json")) + sorted(run_dir.glob("*/log.txt")):
        parts.append(f"--- {path.relative_to(run_dir)}\n" + "\n".join(path.read_text().splitlines()[-12:]))
    return "\n".join(parts)


@pytest.mark.parametrize("originals", [
    ["--on-env-loss", "wait"],  # they keep reconnecting, and say HELLO after the heal
    # they save a checkpoint and exit 4 two seconds into the cut, node 1 restarts them, and the
    # restarted ones wait for the env server in their first HELLO
    ["--on-env-loss", "exit", "--restart-failed"],
], ids=["reconnecting", "restarted"])
def test_agents_of_a_cut_off_host_are_adopted_and_the_originals_fenced(tmp_path, originals):
    try:
        with two_hosts() as hosts:
            _adoption_run(hosts, tmp_path, originals)
    except HostsUnavailable as exc:
        pytest.skip(str(exc))


def _adoption_run(hosts, tmp_path: Path, originals: list[str]) -> None:
    run_dir = tmp_path / "shared"  # one folder, both nodes
    logs = (tmp_path / "node0.log", tmp_path / "node1.log")
    node1 = launch_node(hosts, 1, run_dir, [*ARGS, *originals], logs[1])
    node0 = launch_node(hosts, 0, run_dir, [*ARGS, *originals, "--adopt-after", "2"], logs[0])
    try:
        wait_for_env_rows(run_dir, 10)
        hosts.cut()
        cut_at = env_step(run_dir)
        # the env server declares 3-5 dead, node 0 adopts them, and they play again, all during the cut
        wait_for(lambda: all(seat_events(run_dir, i)[-3:] == ["dead", "adopted", "rejoined"] for i in (3, 4, 5)),
                 60, "agents 3-5 adopted by node 0 and back in the run")
        healed_at = env_step(run_dir)
        hosts.heal()  # the originals come back: they must not play, nor write
        assert node1.wait(timeout=120) == 0, diagnosis(run_dir, logs)
        assert node0.wait(timeout=120) == 0, diagnosis(run_dir, logs)
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
    assert cut_at <= healed_at < STEPS, "the run ended before the heal"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS, summary
    node1_report = json.loads((run_dir / "node_1.json").read_text())
    assert node1_report["status"] == "completed", node1_report
    server_log = (run_dir / "env_server" / "log.txt").read_text()
    for i in (3, 4, 5):
        events = [(e["event"], e["step"]) for e in summary["agent_events"] if e["agent"] == i]
        assert [e for e, _ in events] == ["dead", "adopted", "rejoined"], events
        assert cut_at <= events[0][1] <= events[1][1] <= events[2][1] < STEPS, (events, cut_at)
        # node 0 ran incarnation 1 to the end; node 1's original was told it is superseded and exited 6
        assert summary["agents"][str(i)]["incarnation"] == 1 and summary["agents"][str(i)]["exits"] == [0]
        exits = [EXIT_SUPERSEDED] if "wait" in originals else [EXIT_ENV_LOST, EXIT_SUPERSEDED]
        assert node1_report["agents"][str(i)]["exits"] == exits, node1_report
        assert fence.owner(run_dir / f"agent_{i}") == 1
        log = (run_dir / f"agent_{i}" / "log.txt").read_text()  # both incarnations append to it
        assert "resumed from" in log and "superseded" in log and "without writing" in log, log
        # nothing written was lost or mixed: one header, steps strictly increasing, to the end
        text = (run_dir / f"agent_{i}" / "metrics.csv").read_text()
        assert text.count("step,") == 1
        steps = [int(r["step"]) for r in csv.DictReader(text.splitlines())]
        assert steps == sorted(set(steps)) and steps[-1] == STEPS, steps
        assert steps[0] < cut_at and any(s > healed_at for s in steps)  # the original's rows, then the adopter's
        stats = json.loads((run_dir / f"agent_{i}" / "stats.json").read_text())
        assert stats["step"] == STEPS  # the adopter's, not overwritten by the stale original
        assert f"agent {i}: incarnation 1 says hello" in server_log
    assert "incarnation 1 plays its seat" in server_log  # the originals' frames after the heal
    for i in range(6):  # every neighbour link works again, with the adopted agents at their new addresses
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert int(rows[-1]["step"]) == STEPS and float(rows[-1]["n_peers"]) == 2.0, (i, rows[-1])
    for i, peer in ((0, 5), (2, 3)):
        log = (run_dir / f"agent_{i}" / "log.txt").read_text()
        assert f"neighbour {peer} moved from tcp://10.231.0.2:" in log and "to tcp://10.231.0.1:" in log, log
    from drima.agent.checkpoint import read_checkpoint  # torch: only here

    for i in (3, 4, 5):
        assert read_checkpoint(run_dir / f"agent_{i}" / "checkpoint.pt")["step"] == STEPS
    assert not drima_processes_for(run_dir)
