#!/usr/bin/env python
"""Real network faults between two hosts: final team reward and env steps/s of a ring of 6,
dri vs ind, on pd and collection, under each fault.

Two network namespaces joined by a veth pair stand for two hosts (tests/twohosts.py, the same
helper as tests/test_net_faults.py; needs root). Node 0 runs the env server and agents 0-2,
node 1 runs agents 3-5; the ring crosses the hosts at 2-3 and 5-0. The faults, made with the
operating system's own tools, never inside a drima process:

  none        no fault
  loss10      10 % of the packets between the hosts dropped at random, both ways (tc)
  delay20     netem delay 20 ms, jitter 10 ms, both ways (only where the kernel has netem)
  partition   every packet between the hosts dropped for 10 s, from step 50, then healed; these runs
              are --partition-steps long (1500): node 1's agents cannot learn that a run ended while
              they were cut off, so they would wait --reconnect-timeout and exit 4
  straggler   agent 4 stopped (SIGSTOP) for 2 s every 5 s, for the whole run

Every run uses --on-env-loss wait (node 1's agents rejoin after the partition) and the default
link deadline (1 s). Runs are short (the default 400 steps x 8 copies): the figures say what
each fault costs in throughput and whether the run completes and keeps learning, not what a
converged policy reaches. The final team reward is the env server's stats.json
`final.mean_team_reward` (the mean over the last 10 % of steps of the summed rewards; pd:
6 agents x 10 = 60 when all cooperate).

Writes OUT/net_faults.csv (one row per run) and OUT/net_faults.md; run folders in OUT/net_faults/runs/.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the two-hosts helper is shared with the tests

from common import write_csv  # noqa: E402 (after the path above, like the helper)
from helpers import pid_of, wait_for_env_rows  # noqa: E402
from twohosts import HostsUnavailable, TwoHosts, launch_node, two_hosts  # noqa: E402

ENVS = {"pd": ["--env", "pd", "--algo", "a2c"], "collection": ["--env", "collection", "--algo", "ddpg"]}
MODES = ["dri", "ind"]
FAULTS = ["none", "loss10", "delay20", "partition", "straggler"]
FIELDS = ["env", "mode", "fault", "status", "final_team_reward", "env_steps_per_s", "wall_s", "late_scalars",
          "missing_action_steps", "deaths", "rejoins", "kernel_dropped_packets", "load_avg_1min", "note"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    p.add_argument("--faults", nargs="+", choices=FAULTS, default=FAULTS)
    p.add_argument("--steps", type=int, default=400, help="steps per run (x 8 env copies)")
    p.add_argument("--partition-steps", type=int, default=1500,
                   help="steps of the partition runs: long enough that the heal comes before the end (node 1's "
                        "agents cannot learn that a run ended while they were cut off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--run-timeout", type=float, default=900.0)
    return p.parse_args()


class Fault:
    """Puts one fault on the hosts of a running run (a thread for the timed ones)."""

    def __init__(self, name: str, hosts: TwoHosts, dirs: tuple[Path, Path]):
        self.name, self.hosts, self.dirs = name, hosts, dirs
        self.done = threading.Event()  # the run has ended
        self.thread = threading.Thread(target=self._timed, daemon=True)

    def before_start(self) -> None:
        if self.name == "loss10":
            self.hosts.impair(loss=0.10)
        elif self.name == "delay20":
            self.hosts.impair(delay_ms=20, jitter_ms=10)  # raises HostsUnavailable without netem

    def start(self) -> None:
        if self.name in ("partition", "straggler"):
            self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _timed(self) -> None:
        wait_for_env_rows(self.dirs[0], 5, timeout=300)  # step 50: the run is under way
        if self.name == "partition":
            self.hosts.cut()
            self.done.wait(10.0)
            self.hosts.heal()
            return
        pid = pid_of(self.dirs[1], "agent 4")
        while not self.done.wait(3.0):  # 3 s running, 2 s stopped
            try:
                os.kill(pid, signal.SIGSTOP)
                self.done.wait(2.0)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # it ended with the run
                return


def run_cell(args: argparse.Namespace, env: str, mode: str, fault: str) -> dict:
    folder = args.out / "net_faults" / "runs" / f"{env}-{mode}-{fault}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    dirs = (folder / "node0", folder / "node1")
    row = {"env": env, "mode": mode, "fault": fault}
    steps = args.partition_steps if fault == "partition" else args.steps
    launch_args = [*ENVS[env], "--mode", mode, "--topology", "ring", "--n", "6", "--steps", str(steps),
                   "--seed", str(args.seed), "--log-every", "10", "--quiet", "--on-env-loss", "wait"]
    try:
        with two_hosts() as hosts:
            faults = Fault(fault, hosts, dirs)
            faults.before_start()
            nodes = [launch_node(hosts, 1, dirs[1], launch_args, folder / "node1.log"),
                     launch_node(hosts, 0, dirs[0], launch_args, folder / "node0.log")]
            faults.start()
            try:
                codes = [p.wait(timeout=args.run_timeout) for p in nodes]
            finally:
                faults.stop()
                for p in nodes:
                    if p.poll() is None:  # interrupted or timed out: the launcher stops its children
                        p.terminate()
                        try:
                            p.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            p.kill()
            row["kernel_dropped_packets"] = hosts.dropped_packets()
            row["load_avg_1min"] = round(os.getloadavg()[0], 1)  # a shared machine: how busy it was
    except HostsUnavailable as exc:
        return row | {"status": "n/a", "note": str(exc)}
    return row | measured(dirs, codes)


def measured(dirs: tuple[Path, Path], codes: list[int]) -> dict:
    """The run's figures from the env server's stats.json and the agents' link counters."""
    try:
        stats = json.loads((dirs[0] / "env_server" / "stats.json").read_text())
        summary = json.loads((dirs[0] / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        return {"status": "failed", "note": f"exit {codes}: {exc}"}
    late = 0
    for i in range(6):
        try:
            late += json.loads((dirs[i // 3] / f"agent_{i}" / "stats.json").read_text())["link"]["dropped_late"]
        except (OSError, ValueError, KeyError):
            pass
    rows = (dirs[0] / "env_server" / "metrics.csv").read_text().splitlines()[1:]
    missing = sum(float(r.split(",")[5]) for r in rows) * 10  # each row: the mean over 10 steps
    events = stats["agent_events"]
    reward = stats["final"]["mean_team_reward"]
    return {"status": summary["status"] + ("" if codes == [0, 0] else f" (exit {codes})"),
            "final_team_reward": round(reward, 2) if reward is not None else None,
            "env_steps_per_s": stats["env_steps_per_s"], "wall_s": summary.get("wall_s"), "late_scalars": late,
            "missing_action_steps": round(missing), "deaths": sum(e["event"] == "dead" for e in events),
            "rejoins": sum(e["event"] == "rejoined" for e in events), "note": ""}


def earlier_rows(path: Path, cells: list[tuple[str, str, str]]) -> list[dict]:
    """Rows of net_faults.csv for cells this invocation does not run (they stay in the table)."""
    try:
        with open(path, newline="") as f:
            return [r for r in csv.DictReader(f) if (r["env"], r["mode"], r["fault"]) not in cells]
    except (OSError, KeyError):
        return []


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the namespaces are removed (finally)
    args.out.mkdir(parents=True, exist_ok=True)
    cells = [(e, m, f) for e in args.envs for m in args.modes for f in args.faults]
    print(f"{len(cells)} runs, one at a time -> {args.out}/net_faults.md", flush=True)
    t0, rows = time.time(), earlier_rows(args.out / "net_faults.csv", cells)
    for i, (env, mode, fault) in enumerate(cells, 1):
        row = run_cell(args, env, mode, fault)
        rows.append(row)
        print(f"[{i}/{len(cells)}] {env} {mode} {fault}: {row.get('status')}, team reward "
              f"{row.get('final_team_reward')}, {row.get('env_steps_per_s')} env steps/s {row.get('note') or ''}",
              flush=True)
        write_csv(args.out / "net_faults.csv", FIELDS, rows)
    write_table(args, rows, time.time() - t0)
    return 0 if all(r["status"] in ("completed", "n/a") for r in rows) else 1


def write_table(args: argparse.Namespace, rows: list[dict], elapsed: float) -> None:
    rows = sorted(rows, key=lambda r: (list(ENVS).index(r["env"]), MODES.index(r["mode"]), FAULTS.index(r["fault"])))
    faults = [f for f in FAULTS if any(r["fault"] == f for r in rows)]
    envs = [e for e in ENVS if any(r["env"] == e for r in rows)]
    lines = ["# Network faults between two hosts: ring of 6, dri vs ind", "",
             f"{args.steps} steps x 8 copies per run ({args.partition_steps} for partition, so that the heal comes "
             f"before the end), seed {args.seed}, one run per cell; two network namespaces "
             "joined by a veth pair (node 0: env server + agents 0-2, node 1: agents 3-5). Each cell: final team "
             "reward (env server's `final.mean_team_reward`, last 10 % of steps) / env steps/s.", "",
             "| env | mode | " + " | ".join(faults) + " |", "|---|---|" + "---|" * len(faults)]
    for env in envs:
        for mode in MODES:
            cells = []
            for fault in faults:
                r = next((r for r in rows if (r["env"], r["mode"], r["fault"]) == (env, mode, fault)), None)
                if r is None or r["status"] == "n/a":
                    cells.append("n/a")
                elif r["status"] != "completed":
                    cells.append(f"{r['status']}")
                else:
                    cells.append(f"{r['final_team_reward']} / {float(r['env_steps_per_s']):.0f}")
            lines.append(f"| {env} | {mode} | " + " | ".join(cells) + " |")
    lines += ["", "What each fault left behind (sum over the six agents; deaths and rejoins: the env server's events):",
              "", "| env | mode | fault | late scalars | steps with a substitute action | deaths | rejoins "
              "| packets the kernel dropped | wall s | load average |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "n/a":
            lines.append(f"| {r['env']} | {r['mode']} | {r['fault']} | {r.get('late_scalars')} | "
                         f"{r.get('missing_action_steps')} | {r.get('deaths')} | {r.get('rejoins')} | "
                         f"{r.get('kernel_dropped_packets')} | {r.get('wall_s')} | {r.get('load_avg_1min')} |")
    notes = sorted({r["note"] for r in rows if r["status"] == "n/a"})
    lines += [""] + [f"n/a: {n}" for n in notes] + [
        "", f"Command: `python {shlex.join(sys.argv)}`  ", f"Wall time of this invocation: {elapsed:.0f} s. "
        "Cells it did not run are kept from earlier invocations (net_faults.csv).", ""]
    (args.out / "net_faults.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
