"""The dashboard's status model (launch/dashboard/status.py) on the files of a real run, and the
feeds it reads: the event feed (drima/events.py) and links.json (agent/link_status.py)."""

import csv
import json
import os
import shutil
import time

import pytest

from drima.events import EventFeed, read_events
from drima.launch.dashboard.status import RunDirError, agent_states, run_status
from drima.metrics import last_row, tail_rows
from helpers import load_summary, run_launch

RING6 = [(0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A real 6-agent ring whose agent 2 is killed at step 300 and restarted from its checkpoint."""
    run_dir = tmp_path_factory.mktemp("dash") / "ring6"
    out = run_launch(run_dir, "--env", "pd", "--topology", "ring", "--n", "6", "--steps", "900",
                     "--checkpoint-every", "100", "--restart-failed", "--restart-delay", "3",
                     "--kill-agent", "2@300", timeout=280)
    assert out.returncode == 0, out.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_status_of_a_real_run_with_a_kill_and_a_restart(killed_run):
    s = run_status(killed_run)
    assert s["run"] | {"dir": None} == {"dir": None, "env": "pd", "algo": "a2c", "mode": "dri", "topology": "ring",
                                        "n": 6, "steps": 900, "node_rank": 0, "nodes": 1, "status": "completed",
                                        "graph": "static", "global_state": False}
    assert s["env_server"]["step"] == 900 and s["env_server"]["env_steps_per_s"] > 0
    assert len(s["env_server"]["curves"]["env_steps_per_s"]) == 900 // 50
    states = {a["id"]: a["state"] for a in s["agents"]}
    assert states == {0: "alive", 1: "alive", 2: "rejoined", 3: "alive", 4: "alive", 5: "alive"}
    agent2 = s["agents"][2]
    assert agent2["comebacks"] == 1 and agent2["step"] == 900
    assert agent2["reward"] is not None and agent2["mu"] is not None and agent2["conflict_rate"] is not None
    assert 1 < len(agent2["curves"]["mu"]) <= 900 // 50
    # the timeline: the launcher's kill, exit and restart, the env server's rejoin, in time order
    # (an agent that ends normally while the launcher still watches has an "exited ... status 0" too:
    # which ones do is a race at the end of the run)
    mine = [e["event"] for e in s["events"] if e["agent"] == 2 and "with status 0" not in e["text"]]
    assert mine[:2] == ["killed", "exited"] and mine[-1] == "rejoined" and "restarted" in mine, mine
    assert all(a["t"] <= b["t"] for a, b in zip(s["events"], s["events"][1:], strict=False))
    assert "agent 2 killed by SIGKILL; restarting it" in [e["text"] for e in s["events"]]
    # every ring link, both ends reporting; agent 2's links lost steps while it was down
    assert [(x["a"], x["b"]) for x in s["links"]] == RING6
    assert all(x["reported"] and x["msgs"] > 0 for x in s["links"])
    by_pair = {(x["a"], x["b"]): x for x in s["links"]}
    assert by_pair[(1, 2)]["drops"] > 0 and by_pair[(2, 3)]["drops"] > 0
    assert by_pair[(4, 5)]["drops"] == 0
    json.dumps(s, allow_nan=False)  # what the server sends: plain JSON


@pytest.mark.slow
def test_feeds_written_by_a_real_run(killed_run):
    launcher = [e for e in read_events(killed_run / "events.jsonl") if e.get("status") != 0]  # normal ends: a race
    assert [(e["source"], e["event"], e["agent"]) for e in launcher] == [
        ("launcher", "killed", 2), ("launcher", "exited", 2), ("launcher", "restarted", 2)]
    assert launcher[1]["status"] == -9 and launcher[1]["restarting"] is True
    server = read_events(killed_run / "env_server" / "events.jsonl")
    assert [e["event"] for e in server][-1] == "rejoined"
    # stats.json / summary.json keep their agent_events as before (no late/acting there)
    assert load_summary(killed_run)["agent_events"][-1]["event"] == "rejoined"
    links = json.loads((killed_run / "agent_0" / "links.json").read_text())
    assert set(links["peers"]) == {"1", "5"}
    assert links["peers"]["1"]["recv"] > 0 and links["peers"]["1"]["live"] is True
    assert links["window_s"] >= 0.5  # rewritten at most every 0.5 s


@pytest.mark.slow
def test_stale_links_and_out_of_the_episode(killed_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(killed_run, run_dir)
    now = max(json.loads((run_dir / f"agent_{i}" / "links.json").read_text())["t"] for i in range(6))
    fresh, stale = run_status(run_dir, now=now), run_status(run_dir, now=now + 60)
    assert sum(x["msgs_per_s"] for x in fresh["links"]) > 0
    assert all(x["msgs_per_s"] == 0 and x["msgs"] > 0 for x in stale["links"])  # totals stay, rates go
    # a last metrics row without a reward: agent 3 was out of the episode in every copy
    with open(run_dir / "agent_3" / "metrics.csv", "a") as f:
        fields = next(csv.reader(open(run_dir / "agent_3" / "metrics.csv")))
        csv.DictWriter(f, fields).writerow({"step": 950, "env_steps": 7600, "wall_s": 99.0, "mu": 9.9})
    assert run_status(run_dir)["agents"][3]["state"] == "out"
    # a summary.json older than launch.json is an earlier run's: this one is still running
    later = time.time() + 5
    os.utime(run_dir / "launch.json", (later, later))
    assert run_status(run_dir)["run"]["status"] == "running"


def test_agent_states_fold():
    def ev(kind, agent, **kw):
        return {"t": 0, "event": kind, "agent": agent} | kw

    states, back = agent_states([ev("killed", 0), ev("exited", 0, status=-9), ev("restarted", 0),
                                 ev("rejoined", 0), ev("late", 0), ev("acting", 0),
                                 ev("late", 1), ev("dead", 2, removed=True), ev("exited", 3, status=0),
                                 ev("dead", 4), ev("rejoined", 4), ev("exited", 5, status=1), ev("dead", 9)], 6)
    assert states == ["rejoined", "late", "out", "alive", "rejoined", "dead"]
    assert back == [1, 0, 0, 0, 1, 0]
    # a late agent that acts again is alive; a rejoin without a death before it (start-up) is no comeback
    assert agent_states([ev("late", 0), ev("acting", 0), ev("rejoined", 1)], 2) == (["alive", "rejoined"], [0, 0])


def test_event_feed_survives_torn_and_foreign_lines(tmp_path):
    feed = EventFeed(tmp_path / "events.jsonl", "launcher", append=False)
    feed.write({"event": "killed", "agent": 1})
    feed.close()
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('not json\n[1, 2]\n{"no": "time"}\n{"t": 5, "event": "dead", "agent": 0}\n{"t": 6, "ev')
    events = read_events(tmp_path / "events.jsonl")
    assert [(e["source"] if "source" in e else None, e["event"]) for e in events] == [
        ("launcher", "killed"), (None, "dead")]
    assert read_events(tmp_path / "missing.jsonl") == []
    EventFeed(tmp_path / "events.jsonl", "launcher", append=False).close()  # a new run starts it afresh
    assert read_events(tmp_path / "events.jsonl") == []


def test_tail_rows_reads_only_the_end(tmp_path):
    path = tmp_path / "metrics.csv"
    with open(path, "w") as f:
        f.write("step,reward\n" + "".join(f"{i},{i / 10}\n" for i in range(1, 5001)) + "5001,0.")  # torn last row
    rows = tail_rows(path, 3)
    assert [r["step"] for r in rows] == ["4998", "4999", "5000"]
    assert last_row(path) == {"step": "5000", "reward": "500.0"}
    assert len(tail_rows(path, 60)) == 60
    assert tail_rows(tmp_path / "none.csv", 5) == [] and last_row(tmp_path / "none.csv") is None


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunDirError, match="no such folder"):
        run_status(tmp_path / "nowhere")
    with pytest.raises(RunDirError, match="no launch.json"):
        run_status(tmp_path)


def test_links_json_rates_over_the_window_and_at_most_every_interval(tmp_path):
    from drima.agent.link_status import LinkStatus

    path = tmp_path / "links.json"
    status = LinkStatus(path, min_interval_s=0.2)
    status.write(50, {1: {"recv": 10, "late": 0, "missed": 0}}, live=[1])
    assert not path.exists()  # less than min_interval_s since it was made
    time.sleep(0.3)
    status.write(100, {1: {"recv": 40, "late": 1, "missed": 3}}, live=[])
    first = json.loads(path.read_text())
    peer = first["peers"]["1"]
    assert first["step"] == 100 and first["window_s"] >= 0.2
    assert (peer["recv"], peer["late"], peer["missed"], peer["live"]) == (40, 1, 3, False)
    assert peer["recv_per_s"] == pytest.approx(40 / first["window_s"], rel=0.05)
    status.write(150, {1: {"recv": 50, "late": 1, "missed": 3}}, live=[1])
    assert json.loads(path.read_text()) == first  # too soon: not rewritten
    time.sleep(0.3)
    status.write(200, {1: {"recv": 70, "late": 1, "missed": 3}}, live=[1])
    second = json.loads(path.read_text())
    assert second["peers"]["1"]["recv_per_s"] == pytest.approx(30 / second["window_s"], rel=0.05)
    assert second["peers"]["1"]["missed_per_s"] == 0
