"""How the runtime scales with the number of agents on one machine: throughput, memory, start-up.

    python benchmarks/scale.py                                  # pd and collection, n in {6, 12, 24, 32, 64}
    python benchmarks/scale.py --envs pd --ns 6 12 --steps 400  # a subset
    python benchmarks/scale.py --envs collection --ns 6 --out /tmp/scale   # somewhere else

Each row is one real `drima-launch --env ENV --topology ring --n N --envs K` run (dri, the env's default
learner: a2c on pd, dqn on collection; `--launch-args "--algo a2c"` for another). While it
runs, the memory of every process of the run (the launcher and all its descendants: env server,
zygote, agents) is read from /proc/PID/smaps_rollup, as often as a CPU budget allows
(`--memory-budget`, 2 % of the cores by default: once a second for a small run, every 20 s or so
at n=64); the table gives the peak of the total PSS (shared pages split among the processes that
map them, so the sum is what the run really takes) and, at that peak, the PSS of each role. `MB
per added agent` is the growth of the total from the row above (same env, fewer agents) divided
by the agents added.

- env steps/s: the env server's own figure (steps x K over its stepping time, start-up excluded);
- agent steps/s: env steps/s x n, the transitions all agents learn from per second;
- agent steps/s, 2nd half: the same over the second half of the steps only (the steady state: each
  agent's first updates are slow, and at n=64 on 2 cores they weigh on a short run's figure);
- start-up: from starting `drima-launch` until the env server starts stepping;
- load: the machine's 5-minute load average when the run ended; the run's own processes are in it;
- other CPU: the CPU that neither the run nor this script used while the run went on (the
  machine's busy time from /proc/stat, less the run's processes once waited for, less this
  script), as a share of the cores: other work beside the run. Throughput needs it near 0;
  memory does not;
- memory samples, and sampler CPU: how many times the memory was read during the run, and this
  script's own CPU time as a share of the machine's cores. Reading smaps_rollup makes the kernel
  walk the process's page tables, and the reader pays for it. Until session 19 this script read
  every process twice per sample, with 1 s between samples; at n=64 that took a fifth of the cores
  and 18 % of the run's throughput (`benchmarks/ablations/sampler_cost.py`),
  hence the budget. `--memory-budget 0` samples nothing, for throughput alone. With the budget, a
  long n=64 run gets a sample every 20 s or so, so its peak is read from fewer samples.

Rows accumulate in OUT.csv (a rerun of the same env and n replaces its row, unless the rerun failed
and the row was a completed run); OUT.md and OUT.png
(agent steps/s and total PSS against n, one line per env) are rebuilt from it after every row.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = ["env", "algo", "n", "K", "steps", "env_steps_per_s", "agent_steps_per_s", "steady_agent_steps_per_s",
           "startup_s", "total_pss_mb",
           "agent_pss_mb", "zygote_pss_mb", "launcher_pss_mb", "env_server_pss_mb", "agent_rss_mb", "processes",
           "wall_s", "load", "other_cpu_pct", "memory_samples", "sampler_cpu_pct", "extra", "status"]
ROLES = ("agent", "zygote", "launch", "env-server")
CORES = len(os.sched_getaffinity(0))  # the cores this script and the run may use


def pss_rss_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of one process in MB, from one read of its smaps_rollup (the read is the costly part)."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = value
    return float(fields["Pss"].split()[0]) / 1024, float(fields["Rss"].split()[0]) / 1024


def descendants(root: int) -> list[int]:
    """root and every process below it (by the parent pid in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and ')'
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def role_of(pid: int) -> str:
    """A drima process's role from its title (`drima-agent 3 /run`), else `other`."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for role in ROLES:
        if cmd.startswith(f"drima-{role}"):
            return role
    return "other"


def sample(root: int) -> dict[str, list[tuple[float, float]]]:
    """role -> [(PSS MB, RSS MB)] for each live process of the run."""
    by_role: dict[str, list[tuple[float, float]]] = {}
    for pid in descendants(root):
        try:
            pss, rss = pss_rss_mb(pid)
        except (OSError, KeyError):  # ended between the listing and the read
            continue
        by_role.setdefault(role_of(pid), []).append((pss, rss))
    return by_role


def newest_step(run_dir: Path) -> tuple[int, float] | None:
    """(step, wall_s) of the env server's newest metrics row; None before its first."""
    try:
        with open(run_dir / "env_server" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    except OSError:  # not stepping yet
        return None
    for row in reversed(rows):  # the last line may be half written
        try:
            return int(row["step"]), float(row["wall_s"])
        except (TypeError, ValueError):
            continue
    return None


def first_step_at(run_dir: Path) -> float | None:
    """When the env server started stepping (wall clock), from its first metrics row; None before."""
    metrics = run_dir / "env_server" / "metrics.csv"
    try:
        rows = metrics.read_text().splitlines()
    except OSError:
        return None
    if len(rows) < 2:
        return None
    wall_s = float(rows[1].split(",")[2])  # step,env_steps,wall_s,...: seconds since it started stepping
    return metrics.stat().st_mtime - wall_s


def second_half_rate(run_dir: Path, k: int) -> float | None:
    """Env steps/s over the second half of the run, from the env server's metrics rows (step,
    wall_s): the steady state, after every agent's first updates (at n=64 those take a while: 64
    processes each allocate and touch their memory for the first time on 2 cores)."""
    try:
        with open(run_dir / "env_server" / "metrics.csv") as f:
            rows = [(int(r["step"]), float(r["wall_s"])) for r in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return None
    if len(rows) < 4:
        return None
    (s0, w0), (s1, w1) = rows[len(rows) // 2], rows[-1]
    return (s1 - s0) * k / (w1 - w0) if w1 > w0 else None


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: all but idle and iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def reaped_children_cpu_s() -> float:
    """CPU seconds of this process's children that have ended and been waited for, with theirs (the
    launcher, once it is waited for, carries its env server, zygote and, through the zygote, agents)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    """This process's user + system CPU seconds (the kernel's smaps walks are system time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MemorySampler:
    """The peak total PSS of a process tree (and each role's share at that peak), sampled within a
    CPU budget. A sample reads every process's smaps_rollup; the kernel walks that process's page
    tables and charges the walk to this process (about 11 ms per agent process at n=64 on this
    machine). So a sample comes at most once a second, and later where its CPU cost would exceed
    budget_pct of the cores (0: never)."""

    def __init__(self, root: int, budget_pct: float = 2.0):
        self.root, self.budget_pct = root, budget_pct
        self.peak_total = 0.0
        self.peak_by_role: dict[str, list[tuple[float, float]]] = {}
        self.samples = 0
        self._next = time.monotonic() + 1.0  # the first once the processes exist

    def maybe_sample(self) -> None:
        if self.budget_pct <= 0 or time.monotonic() < self._next:
            return
        cpu0 = own_cpu_s()
        by_role = sample(self.root)
        cost_s = own_cpu_s() - cpu0
        self.samples += 1
        self._next = time.monotonic() + max(1.0, cost_s / (self.budget_pct / 100 * CORES))
        total = sum(p for procs in by_role.values() for p, _ in procs)
        if total > self.peak_total:
            self.peak_total, self.peak_by_role = total, by_role


def measure(env: str, n: int, k: int, steps: int, timeout_s: float, extra: list[str],
            memory_budget_pct: float = 2.0) -> dict:
    """One run; its memory sampled by a MemorySampler with memory_budget_pct (0: none, throughput only)."""
    with tempfile.TemporaryDirectory(prefix="drima-scale-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "drima.launch", "--env", env, "--topology", "ring", "--n", str(n), "--envs",
               str(k), "--steps", str(steps), "--log-every", str(max(10, steps // 20)), "--run-dir", str(run_dir),
               "--quiet", *extra]
        t0, cpu0, busy0, run0 = time.time(), own_cpu_s(), machine_busy_s(), reaped_children_cpu_s()
        launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        memory = MemorySampler(launcher.pid, memory_budget_pct)
        started = None
        while launcher.poll() is None and time.time() - t0 < timeout_s:
            memory.maybe_sample()
            started = started or first_step_at(run_dir)
            time.sleep(0.5)
        if launcher.poll() is None:
            launcher.kill()
        err = launcher.communicate()[1]
        wall_s = time.time() - t0
        sampler_s = own_cpu_s() - cpu0
        sampler_pct = 100 * sampler_s / (wall_s * CORES)
        # the machine's busy time that was neither the run's nor this script's: other work beside the run
        other_pct = 100 * (machine_busy_s() - busy0 - (reaped_children_cpu_s() - run0) - sampler_s) / (wall_s * CORES)
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {"status": f"no summary (exit {launcher.returncode}): {err.strip()[-200:]}"}
        steady = second_half_rate(run_dir, k)
    row = _row(env, n, k, steps, summary, memory, (started - t0) if started else None, wall_s)
    return row | {"extra": " ".join(extra), "steady_agent_steps_per_s": round(steady * n) if steady else "",
                  "memory_samples": memory.samples, "sampler_cpu_pct": round(sampler_pct, 1),
                  "other_cpu_pct": round(other_pct, 1)}


def _row(env: str, n: int, k: int, steps: int, summary: dict, memory: MemorySampler, startup_s: float | None,
         wall_s: float) -> dict:
    by_role = memory.peak_by_role

    def role_mb(role: str, which: int = 0, mean: bool = False) -> float | str:
        values = [p[which] for p in by_role.get(role, [])]
        if not values:
            return ""
        return round(sum(values) / (len(values) if mean else 1), 1)

    rate = summary.get("env_steps_per_s")
    return {"env": env, "algo": summary.get("algo", ""), "n": n, "K": k, "steps": steps, "env_steps_per_s": rate or "",
            "agent_steps_per_s": round(rate * n) if rate else "",
            "startup_s": round(startup_s, 1) if startup_s is not None else "",
            "total_pss_mb": round(memory.peak_total) if memory.peak_total else "",
            "agent_pss_mb": role_mb("agent", mean=True),
            "zygote_pss_mb": role_mb("zygote"), "launcher_pss_mb": role_mb("launch"),
            "env_server_pss_mb": role_mb("env-server"), "agent_rss_mb": role_mb("agent", 1, mean=True),
            "processes": sum(len(v) for v in by_role.values()) or "", "wall_s": round(wall_s, 1),
            "load": round(os.getloadavg()[1], 1), "status": _status(summary)}


def _status(summary: dict) -> str:
    """The run's status, and the exit statuses of the agents that did not exit 0."""
    bad = {i: a["exits"] for i, a in summary.get("agents", {}).items() if a.get("exits") != [0]}
    return summary.get("status", "") + (f" (agents' exits: {bad})" if bad else "")


# --- Output: the csv accumulates rows; the table and the plot are rebuilt from it ---


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def save_rows(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["env"], int(r["n"])))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def added_agent_mb(rows: list[dict]) -> dict[tuple[str, str], str]:
    """(env, n) -> total PSS growth per agent from the previous row of the same env."""
    out, last = {}, {}
    for r in sorted(rows, key=lambda r: (r["env"], int(r["n"]))):
        if not r["total_pss_mb"]:  # not measured (--memory-budget 0): compare with the last row that was
            continue
        prev = last.get(r["env"])
        if prev:
            grow = (float(r["total_pss_mb"]) - float(prev["total_pss_mb"])) / (int(r["n"]) - int(prev["n"]))
            out[(r["env"], r["n"])] = f"{grow:.1f}"
        last[r["env"]] = r
    return out


def write_table(path: Path, rows: list[dict], command: str) -> None:
    grow = added_agent_mb(rows)
    head = ["env", "algo", "n", "K", "steps", "env steps/s", "agent steps/s", "agent steps/s, 2nd half", "start-up (s)",
            "peak total PSS (MB)",
            "MB per added agent", "PSS per agent (MB)", "zygote", "launcher", "env server", "RSS per agent (MB)",
            "processes", "load (5 min)", "other CPU (% of cores)", "memory samples", "sampler CPU (% of cores)",
            "other flags", "status"]
    log_path = path.with_suffix(".commands")  # every command whose rows may be in the table
    commands = log_path.read_text().splitlines() if log_path.exists() else []
    if command not in commands:
        log_path.write_text("\n".join([*commands, command]) + "\n")
        commands.append(command)
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores. Commands (a row is from the last one that "
             f"ran its env and n):", "", *(f"- `{c}`" for c in commands), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["env"], int(r["n"]))):
        cells = [r["env"], r.get("algo", ""), r["n"], r["K"], r["steps"], r["env_steps_per_s"], r["agent_steps_per_s"],
                 r.get("steady_agent_steps_per_s", ""), r["startup_s"],
                 r["total_pss_mb"], grow.get((r["env"], r["n"]), ""), r["agent_pss_mb"], r["zygote_pss_mb"],
                 r["launcher_pss_mb"], r["env_server_pss_mb"], r["agent_rss_mb"], r["processes"], r.get("load", ""),
                 r.get("other_cpu_pct", ""), r.get("memory_samples", ""), r.get("sampler_cpu_pct", ""),
                 r.get("extra", ""), r["status"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, (ax_rate, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for env in sorted({r["env"] for r in rows}):
        mine = sorted((r for r in rows if r["env"] == env and r["agent_steps_per_s"]), key=lambda r: int(r["n"]))
        ns = [int(r["n"]) for r in mine]
        name = f"{env} ({mine[0].get('algo') or 'default'})" if mine else env
        line = ax_rate.plot(ns, [float(r["agent_steps_per_s"]) for r in mine], "o-", label=f"{name}, whole run")[0]
        steady = [(int(r["n"]), float(r["steady_agent_steps_per_s"])) for r in mine
                  if r.get("steady_agent_steps_per_s")]
        if steady:
            ax_rate.plot(*zip(*steady, strict=True), "s--", color=line.get_color(), label=f"{name}, 2nd half")
        measured = [(int(r["n"]), float(r["total_pss_mb"])) for r in mine if r["total_pss_mb"]]
        if measured:
            ax_mem.plot(*zip(*measured, strict=True), "o-", label=env)
    ax_rate.set(xlabel="agents (n)", ylabel="agent steps/s", title="throughput (K=8, ring)")
    ax_rate.set_ylim(bottom=0)  # flat is the goal: an axis from 0 shows how flat
    ax_mem.set(xlabel="agents (n)", ylabel="peak total PSS (MB)", title="memory of the whole run")
    for ax in (ax_rate, ax_mem):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["pd", "collection"], help="pd and/or collection")
    p.add_argument("--ns", nargs="+", type=int, default=[6, 12, 24, 32, 64])
    p.add_argument("-K", type=int, default=8, help="env copies (--envs of drima-launch)")
    p.add_argument("--steps", type=int, default=500, help="steps per run (each step is K env steps)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    p.add_argument("--out", default="benchmarks/results/scale", help="OUT.csv, OUT.md, OUT.png")
    p.add_argument("--launch-args", default="", help='more drima-launch flags, e.g. "--heartbeat-liveness 20"')
    p.add_argument("--memory-budget", type=float, default=2.0,
                   help="%% of the cores the memory sampler may take (0: no samples, throughput only)")
    a = p.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    rows = load_rows(out.with_suffix(".csv"))
    failed = 0
    for env in a.envs:
        for n in a.ns:
            row = measure(env, n, a.K, a.steps, a.timeout, shlex.split(a.launch_args), a.memory_budget)
            failed += row["status"] != "completed"
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            kept = [r for r in rows if (r["env"], int(r["n"])) == (env, n) and r["status"] == "completed"]
            if row["status"] != "completed" and kept:  # a failed rerun does not wipe a measured row
                print(f"  (kept the completed row of {env} n={n} from an earlier run)")
                continue
            rows = [r for r in rows if (r["env"], int(r["n"])) != (env, n)] + [row]
            save_rows(out.with_suffix(".csv"), rows)
            rows = load_rows(out.with_suffix(".csv"))
            write_table(out.with_suffix(".md"), rows, command)
            plot(out.with_suffix(".png"), rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
