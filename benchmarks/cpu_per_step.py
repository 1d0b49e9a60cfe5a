"""Where a run's CPU goes: CPU milliseconds per step (one step = K env steps) of every process of
a live run (env server, env workers, each agent, launcher, zygote), read from /proc between two
moments after the start-up, and the throughput that CPU alone allows on this machine's cores.

    python benchmarks/cpu_per_step.py                        # simple_spread N=6, K=8, ring, a2c-dri
    python benchmarks/cpu_per_step.py -- --act-ahead --env-workers 2
    python benchmarks/cpu_per_step.py --env collection --n 6 -- --algo dqn
    python benchmarks/cpu_per_step.py --env collection --n 64 --by-thread -- --algo a2c --heartbeat-liveness 20

CPU time does not count the time a process waits for a core, so on a busy machine these figures
move far less than throughput does; they still grow somewhat with load (caches shared with other
work). `bound` is cores / (all processes' CPU per env step): no schedule of the same work on this
machine can step faster. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import CORES, descendants, newest_step  # benchmarks/ helper, imported by bare name like the others

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_by_process(root: int) -> dict[int, tuple[str, float]]:
    """pid -> (title, user + system CPU seconds) of `root` (the launcher) and every process below it."""
    out = {}
    for pid in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        title = "env worker" if "multiprocessing" in cmd else cmd.split(" /")[0][:40]
        out[pid] = (title, (int(fields[11]) + int(fields[12])) * TICK_S)
    return out


def cpu_by_thread(root: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> ("<role>/<thread>", user + system CPU seconds) for every thread of `root` and
    its descendants; role: agent, env server, ...; thread: main, or its name (ZeroMQ's I/O thread)."""
    out = {}
    for pid in descendants(root):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            cmd = raw.split(b"\0")[0].decode(errors="replace")
            role = "env worker" if b"multiprocessing" in raw else \
                "agent" if cmd.startswith("drima-agent") else cmd.split(" /")[0][:24]
            for tid in map(int, os.listdir(f"/proc/{pid}/task")):
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                name = "main" if tid == pid else Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                out[(pid, tid)] = (f"{role}/{name}", (int(fields[11]) + int(fields[12])) * TICK_S)
        except OSError:  # exited meanwhile
            continue
    return out


def print_by_thread(before: dict, after: dict, steps: int) -> None:
    """CPU ms per step of each kind of thread, the mean over the processes that have one."""
    kinds: dict[str, list[float]] = {}
    for key, (kind, cpu) in after.items():
        if key in before:
            kinds.setdefault(kind, []).append((cpu - before[key][1]) / steps * 1000)
    for kind, values in sorted(kinds.items()):
        if sum(values) > 0:
            print(f"  {kind:40s} x{len(values):<3d} {sum(values) / len(values):6.3f} ms CPU per step each")


def env_server_step(run_dir: Path) -> int:
    """The env server's last logged step; 0 before its first metrics row."""
    newest = newest_step(run_dir)
    return newest[0] if newest else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pettingzoo:mpe2.simple_spread_v3")
    p.add_argument("--env-options", default=None, help='the env\'s options as JSON (default: {"N": 6} for the '
                   'default env, none for any other)')
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--envs", type=int, default=8, help="K, env copies per step")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds before the first reading (start-up)")
    p.add_argument("--window", type=float, default=10.0, help="seconds between the two readings")
    p.add_argument("--by-thread", action="store_true",
                   help="per kind of thread (agent main, agent ZeroMQ I/O, env server main, ...), the mean "
                        "over processes, instead of one line per process")
    p.add_argument("launch_args", nargs="*", help="more drima-launch flags, after --")
    a = p.parse_args()
    if a.env_options is None:
        a.env_options = '{"N": 6}' if a.env == p.get_default("env") else "{}"
    with tempfile.TemporaryDirectory(prefix="drima-cpu-") as tmp:
        run_dir = Path(tmp)
        cmd = [sys.executable, "-m", "drima.launch", "--env", a.env, "--env-options", a.env_options, "--n", str(a.n),
               "--topology", "ring", "--envs", str(a.envs), "--steps", "1000000", "--log-every", "10",
               "--run-dir", str(run_dir), "--quiet", *a.launch_args]
        launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            time.sleep(a.warmup)
            end = time.monotonic() + 300  # a busy machine may take longer to start: until the first step
            while env_server_step(run_dir) == 0 and launcher.poll() is None and time.monotonic() < end:
                time.sleep(1)
            if launcher.poll() is not None:
                print(f"drima-launch exited with status {launcher.returncode} before the first reading")
                return 1
            reading = cpu_by_thread if a.by_thread else cpu_by_process
            before, step0, t0 = reading(launcher.pid), env_server_step(run_dir), time.monotonic()
            time.sleep(a.window)
            after, step1, t1 = reading(launcher.pid), env_server_step(run_dir), time.monotonic()
        finally:
            launcher.terminate()
            launcher.wait(timeout=60)
    steps = step1 - step0
    if steps <= 0:
        print("no steps in the window: raise --warmup or --window")
        return 1
    print(f"drima-launch {' '.join(cmd[3:])}")
    print(f"{steps} steps x K={a.envs} in {t1 - t0:.1f} s: {steps * a.envs / (t1 - t0):.0f} env steps/s; "
          f"load average {os.getloadavg()[0]:.1f}")
    total = sum(cpu - before[key][1] for key, (_, cpu) in after.items() if key in before) / steps * 1000
    if a.by_thread:
        print_by_thread(before, after, steps)
    else:
        for pid, (title, cpu) in sorted(after.items(), key=lambda kv: kv[1][0]):
            if pid in before and (ms := (cpu - before[pid][1]) / steps * 1000) >= 0.01:
                print(f"  {title:40s} {ms:6.2f} ms CPU per step")
    print(f"  {'all processes':40s} {total:6.2f} ms CPU per step -> bound on {CORES} cores: "
          f"{CORES * a.envs / total * 1000:.0f} env steps/s; the run kept "
          f"{100 * total * steps / (t1 - t0) / (CORES * 1000):.0f} % of the cores busy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
