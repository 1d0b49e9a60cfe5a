"""Where a run's CPU goes: CPU milliseconds per step (one step = K env steps) of every process of
a live run (env server, env workers, each agent, launcher, zygote), read from /proc between two
moments after the start-up, and the throughput that CPU alone allows on this machine's cores.

    python benchmarks/cpu_per_step.py                        # simple_spread N=6, K=8, ring, a2c-dri
    python benchmarks/cpu_per_step.py -- --act-ahead --env-workers 2
    python benchmarks/cpu_per_step.py --env collection --n 6 -- --algo dqn

CPU time does not count the time a process waits for a core, so on a busy machine these figures
move far less than throughput does; they still grow somewhat with load (caches shared with other
work). `bound` is cores / (all processes' CPU per env step): no schedule of the same work on this
machine can step faster. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import descendants  # benchmarks/ helper, imported by bare name like the others

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


def env_server_step(run_dir: Path) -> int:
    rows = list(csv.DictReader(open(run_dir / "env_server" / "metrics.csv")))
    return int(rows[-1]["step"]) if rows else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pettingzoo:mpe2.simple_spread_v3")
    p.add_argument("--env-options", default=None, help='the env\'s options as JSON (default: {"N": 6} for the '
                   'default env, none for any other)')
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--envs", type=int, default=8, help="K, env copies per step")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds before the first reading (start-up)")
    p.add_argument("--window", type=float, default=10.0, help="seconds between the two readings")
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
            if launcher.poll() is not None:
                print(f"drima-launch exited with status {launcher.returncode} before the first reading")
                return 1
            before, step0, t0 = cpu_by_process(launcher.pid), env_server_step(run_dir), time.monotonic()
            time.sleep(a.window)
            after, step1, t1 = cpu_by_process(launcher.pid), env_server_step(run_dir), time.monotonic()
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
    total = 0.0
    for pid, (title, cpu) in sorted(after.items(), key=lambda kv: kv[1][0]):
        if pid in before:
            ms = (cpu - before[pid][1]) / steps * 1000
            total += ms
            if ms >= 0.01:
                print(f"  {title:40s} {ms:6.2f} ms CPU per step")
    cores = len(os.sched_getaffinity(0))
    print(f"  {'all processes':40s} {total:6.2f} ms CPU per step -> bound on {cores} cores: "
          f"{cores * a.envs / total * 1000:.0f} env steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
