"""The dashboard's status model: what a run looks like now, read from the files its processes
already write in the run folder. Pure functions of those files (and of `now`): no sockets, no
process of the run is asked anything, so it works while agents die and after the run ended.

    launch.json                     the run's settings (agents, topology)
    agent_<i>/config.json           agent i's neighbours, as the launcher wired them
    agent_<i>/metrics.csv           reward, mu, conflict rate (tail only)
    agent_<i>/links.json            traffic per neighbour link (agent/link_status.py)
    env_server/metrics.csv          env steps/s, team reward (tail only)
    env_server/events.jsonl         deaths, rejoins, late agents (drima/events.py)
    events.jsonl, events_node<r>.jsonl   exits, restarts, kills (the launchers)
    summary.json, node_<r>.json     the run's end

An agent's state is one of STATES: the events folded in time order (`agent_states`), then
`out` for an agent outside the episode in every copy (its last metrics row has no reward).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from drima.events import ENV_SERVER_FEED, read_events
from drima.metrics import tail_rows
from drima.topology import build_topology, is_dynamic, neighbour_map

STATES = ("alive", "late", "dead", "rejoined", "out")
"""alive; late (alive, but the env server stopped waiting for its actions); dead (its process
ended, was killed, or went silent); rejoined (alive again after being dead); out (removed from
the run, or out of the episode in every copy)"""
CURVE_ROWS = 60
"""metrics rows in each small curve (60 rows of 50 steps: the last 3000 steps by default)"""
STALE_S = 5.0
"""a links.json older than this says nothing about traffic now (its agent is dead or stuck)"""
TIMELINE = 50
"""the most recent events listed"""


class RunDirError(ValueError):
    """The folder is not (yet) a run folder: one line, for the page and the CLI."""


# --- files -----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or a process died mid-write (writers rename, so rarely)
        return None
    return data if isinstance(data, dict) else None


def _number(value: str | None) -> float | None:
    """A CSV field as a finite float; None for an empty, malformed or non-finite one (JSON has no NaN)."""
    try:
        x = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def launch_settings(run_dir: Path) -> dict:
    """launch.json; RunDirError when the folder or the file is missing (a run not yet started)."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such folder (yet)")
    settings = _read_json(run_dir / "launch.json")
    if settings is None or not isinstance(settings.get("n"), int):
        raise RunDirError(f"{run_dir}: no launch.json with an agent count: not a drima run folder (yet)")
    return settings


def all_events(run_dir: Path) -> list[dict]:
    """The env server's and every launcher's events, in time order."""
    feeds = [run_dir / ENV_SERVER_FEED, *sorted(run_dir.glob("events*.jsonl"))]
    return sorted((e for feed in feeds for e in read_events(feed)), key=lambda e: e["t"])


def run_end(run_dir: Path, node_rank: int) -> dict | None:
    """summary.json (node 0) or node_<r>.json, if this run wrote it: one older than launch.json
    belongs to an earlier run in the same folder."""
    path = run_dir / ("summary.json" if node_rank == 0 else f"node_{node_rank}.json")
    try:
        if path.stat().st_mtime < (run_dir / "launch.json").stat().st_mtime:
            return None
    except OSError:
        return None
    return _read_json(path)


# --- the graph -------------------------------------------------------------------------------------


def edges(run_dir: Path, settings: dict) -> list[tuple[int, int]]:
    """The neighbour links, each once (a < b): from the agents' config.json where the launcher
    wrote one, else rebuilt from the topology (the agents of other nodes)."""
    n, pairs, unknown = settings["n"], set(), []
    for i in range(n):
        cfg = _read_json(run_dir / f"agent_{i}" / "config.json")
        if cfg is None or not isinstance(cfg.get("peers"), dict):
            unknown.append(i)
            continue
        pairs |= {(min(i, int(j)), max(i, int(j))) for j in cfg["peers"]}
    if unknown and settings.get("mode") != "ctde":
        for i, peers in _built_neighbours(settings).items():
            if i in unknown:
                pairs |= {(min(i, j), max(i, j)) for j in peers}
    return sorted(pairs)


def _built_neighbours(settings: dict) -> dict[int, list[int]]:
    topology = "full" if is_dynamic(settings.get("topology", "full")) else settings.get("topology", "full")
    try:
        return neighbour_map(build_topology(topology, settings["n"], settings.get("seed", 0)))
    except (ValueError, OSError):  # file:EDGES that this machine cannot read
        return {}


# --- agents ----------------------------------------------------------------------------------------


def agent_states(events: list[dict], n: int) -> tuple[list[str], list[int]]:
    """Each agent's state after `events` (in time order), and how often it came back."""
    states, back = ["alive"] * n, [0] * n
    for e in events:
        i = e.get("agent")
        if isinstance(i, int) and 0 <= i < n:
            states[i], came_back = _next_state(states[i], e, back[i] > 0)
            back[i] += came_back
    return states, back


def _next_state(state: str, e: dict, came_back: bool) -> tuple[str, bool]:
    """(the state after event `e`, whether `e` brought the agent back)."""
    kind = e.get("event")
    if kind == "dead":
        return ("out" if e.get("removed") else "dead"), False
    # status 6: an older incarnation of an agent that another node adopted ends; the seat plays on
    if kind == "killed" or (kind == "exited" and e.get("status") not in (0, 6)):
        return "dead", False
    if kind == "rejoined":
        return "rejoined", state == "dead" or came_back
    if kind == "late" and state in ("alive", "rejoined"):
        return "late", False
    if kind == "acting" and state == "late":
        return ("rejoined" if came_back else "alive"), False
    return state, False


def agent_status(run_dir: Path, i: int, state: str, comebacks: int) -> dict:
    """Agent i: its state, latest figures and small curves."""
    rows = tail_rows(run_dir / f"agent_{i}" / "metrics.csv", CURVE_ROWS)
    last = rows[-1] if rows else {}
    if state in ("alive", "rejoined") and last and _number(last.get("reward")) is None:
        state = "out"  # no reward in the whole interval: out of the episode in every copy
    return {"id": i, "state": state, "comebacks": comebacks,
            "step": int(_number(last.get("step")) or 0) if last else None,
            **{k: _number(last.get(k)) for k in ("reward", "mu", "conflict_rate", "n_peers")},
            "curves": {k: [_number(r.get(k)) for r in rows] for k in ("reward", "mu", "conflict_rate")}}


# --- links -----------------------------------------------------------------------------------------


def link_status(run_dir: Path, pairs: list[tuple[int, int]], now: float) -> list[dict]:
    """Per link a-b, both directions together: scalars per second and steps missed per second
    over the last window, and the totals since the start."""
    views = {}
    for i in {x for pair in pairs for x in pair}:
        data = _read_json(run_dir / f"agent_{i}" / "links.json")
        if data is not None and isinstance(data.get("peers"), dict):
            views[i] = (data["peers"], now - float(data.get("t", 0)) > STALE_S)
    return [_link(a, b, views) for a, b in pairs]


def _link(a: int, b: int, views: dict[int, tuple[dict, bool]]) -> dict:
    link = {"a": a, "b": b, "msgs_per_s": 0.0, "drops_per_s": 0.0, "msgs": 0, "drops": 0, "late": 0,
            "reported": False}
    for me, peer in ((a, b), (b, a)):
        peers, stale = views.get(me, ({}, True))
        seen = peers.get(str(peer))
        if not isinstance(seen, dict):
            continue
        link["reported"] = True
        link["msgs"] += int(seen.get("recv", 0))
        link["drops"] += int(seen.get("missed", 0))
        link["late"] += int(seen.get("late", 0))
        if not stale:
            link["msgs_per_s"] += float(seen.get("recv_per_s", 0.0))
            link["drops_per_s"] += float(seen.get("missed_per_s", 0.0))
    link["msgs_per_s"], link["drops_per_s"] = round(link["msgs_per_s"], 1), round(link["drops_per_s"], 1)
    return link


# --- the env server, the timeline, the whole ---------------------------------------------------------


def env_server_status(run_dir: Path, now: float) -> dict:
    path = run_dir / "env_server" / "metrics.csv"
    rows = tail_rows(path, CURVE_ROWS)
    last = rows[-1] if rows else {}
    try:
        age = round(now - path.stat().st_mtime, 1)
    except OSError:
        age = None
    return {"step": int(_number(last.get("step")) or 0), "env_steps_per_s": _number(last.get("env_steps_per_s")),
            "team_reward": _number(last.get("team_reward")), "last_row_age_s": age,
            "curves": {k: [_number(r.get(k)) for r in rows] for k in ("env_steps_per_s", "team_reward")}}


def describe(e: dict) -> str:
    """One event as a line of the timeline."""
    who = f"agent {e['agent']}" if "agent" in e else "env server"
    at = f" at step {e['step']}" if "step" in e else ""
    kind = e.get("event")
    texts = {
        "dead": f"{who} silent for {e.get('silent_s')} s{at}: " + ("removed" if e.get("removed") else "dead"),
        "rejoined": f"{who} rejoined{at}",
        "late": f"{who} late{at}: no action for {e.get('missed')} steps, no longer waited for",
        "acting": f"{who} acts again{at}",
        "killed": f"{who} killed (fault injection){at}",
        "exited": f"{who} {e.get('how', 'exited')}" + ("; restarting it" if e.get("restarting") else ""),
        "restarted": f"{who} restarted ({e.get('restart')} of {e.get('max_restarts')})",
        "env_server_exited": f"env server {e.get('how', 'exited')}" + ("; restarting it" if e.get("restarting")
                                                                        else ""),
        "env_server_restarted": f"env server restarted ({e.get('restart')})",
        "env_server_resumed": f"env server resumed the run{at}",
        "adopted": f"{who} adopted as incarnation {e.get('incarnation')}"
                   + (f" by node {e['node']}" if "node" in e else f" takes its seat{at}"),
    }
    return texts.get(kind, f"{who}: {kind}{at}")


def run_status(run_dir: str | Path, now: float | None = None) -> dict:
    """Everything the page shows, as JSON-ready data. Raises RunDirError for a folder that is not
    (yet) a run folder."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    settings = launch_settings(run_dir)
    n = settings["n"]
    events = all_events(run_dir)
    states, comebacks = agent_states(events, n)
    pairs = edges(run_dir, settings)
    env = env_server_status(run_dir, now)
    end = run_end(run_dir, int(settings.get("node_rank", 0)))
    dynamic = is_dynamic(str(settings.get("topology", "")))
    return {
        "run": {"dir": str(run_dir), "env": settings.get("env"), "algo": settings.get("algo"),
                "mode": settings.get("mode"), "topology": settings.get("topology"), "n": n,
                "global_state": bool(settings.get("global_state")) and settings.get("mode") != "ctde",
                "steps": settings.get("steps"), "node_rank": settings.get("node_rank", 0),
                "nodes": settings.get("nodes", 1),
                "status": end.get("status", "ended") if end else "running" if env["step"] else "starting",
                "graph": "in range" if dynamic else "static"},
        "env_server": env,
        "agents": [agent_status(run_dir, i, states[i], comebacks[i]) for i in range(n)],
        "links": link_status(run_dir, pairs, now),
        "events": [{"t": e["t"], "source": e.get("source"), "agent": e.get("agent"), "event": e.get("event"),
                    "text": describe(e)} for e in events[-TIMELINE:]],
        "now": now,
    }
