"""What measuring memory costs a run: one live run, its throughput in windows taken in turn with
and without a memory sampler reading every process's /proc/PID/smaps_rollup.

Until session 19, benchmarks/scale.py read each process's smaps_rollup twice a second for the
peak PSS. The kernel answers that read by walking the process's page tables, and charges the work
to the reader: at n=64 it took a large share of this 2-core machine, and only the big runs paid,
which made n=64 look slower against n=8 than it is. This script measures that side by side, in
one run, so that the machine's drift between runs cannot decide it.

One `drima-launch --topology ring` run (long enough for every window); after a warm-up, R rounds
of two windows of W seconds each, quiet then sampling in even rounds and the other way round in
odd ones (ABBA). Per window: agent steps/s from the env server's metrics rows, and the sampler's
CPU (this process's user + system time) as a share of the machine's cores. Printed and written to
OUT: every window, the medians, and sampling against quiet.

    python benchmarks/ablations/sampler_cost.py --env collection --n 64 \\
        --launch-args "--algo a2c --heartbeat-liveness 20"
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/, for scale.py's helpers
from scale import descendants, own_cpu_s, pss_rss_mb  # noqa: E402


def progress(run_dir: Path) -> tuple[int, float] | None:
    """(step, the env server's wall_s at that step) of its newest metrics row; None before the first."""
    try:
        with open(run_dir / "env_server" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    return (int(rows[-1]["step"]), float(rows[-1]["wall_s"])) if rows else None


def window(root: int, run_dir: Path, seconds: float, reads_per_s: float) -> tuple[float, float]:
    """Steps per second of the run over `seconds`, and this process's CPU over them as a share of
    the machine's cores; reads every process's smaps_rollup `reads_per_s` times a second (0: none)."""
    start, cpu0, t0 = progress(run_dir), own_cpu_s(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        tick = time.monotonic()
        if reads_per_s > 0:
            for pid in descendants(root):
                try:
                    pss_rss_mb(pid)
                except (OSError, KeyError):  # ended meanwhile
                    pass
        time.sleep(max(0.0, (1 / reads_per_s if reads_per_s > 0 else 1.0) - (time.monotonic() - tick)))
    end, elapsed = progress(run_dir), time.monotonic() - t0
    if start is None or end is None or end[1] <= start[1]:
        raise SystemExit("the run wrote no metrics rows during a window: use longer windows or a smaller --log-every")
    cpu_pct = 100 * (own_cpu_s() - cpu0) / (elapsed * (os.cpu_count() or 1))
    return (end[0] - start[0]) / (end[1] - start[1]), cpu_pct


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="collection")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("-K", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=20.0, help="seconds per window")
    p.add_argument("--warm-up", type=float, default=20.0, help="seconds after the first step before the first window")
    p.add_argument("--reads-per-second", type=float, default=2.0,
                   help="smaps_rollup reads of each process a second while sampling (scale.py until session 19: 2)")
    p.add_argument("--launch-args", default="--algo a2c --heartbeat-liveness 20", help="more drima-launch flags")
    p.add_argument("--out", default="benchmarks/results/ablations/sampler_cost.md")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="drima-sampler-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "drima.launch", "--env", a.env, "--topology", "ring", "--n", str(a.n),
               "--envs", str(a.K), "--steps", "1000000", "--log-every", "10", "--checkpoint-every", "1000000",
               "--run-dir", str(run_dir), "--quiet", *shlex.split(a.launch_args)]
        launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while progress(run_dir) is None:
                if launcher.poll() is not None:
                    raise SystemExit(f"the run ended (exit {launcher.returncode}) before its first step")
                time.sleep(1.0)
            time.sleep(a.warm_up)
            results: dict[str, list[tuple[float, float]]] = {"quiet": [], "sampling": []}
            lines = []
            for r in range(a.rounds):
                for mode in ("quiet", "sampling") if r % 2 == 0 else ("sampling", "quiet"):
                    reads = a.reads_per_second if mode == "sampling" else 0
                    rate, cpu_pct = window(launcher.pid, run_dir, a.window, reads)
                    results[mode].append((rate * a.K * a.n, cpu_pct))
                    lines.append(f"| {r} | {mode} | {rate * a.K * a.n:,.0f} | {cpu_pct:.1f} |")
                    print(lines[-1], flush=True)
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=120)
            except subprocess.TimeoutExpired:
                launcher.kill()
    median = {m: statistics.median(x for x, _ in v) for m, v in results.items()}
    cpu = {m: statistics.median(c for _, c in v) for m, v in results.items()}
    table = [f"# Memory sampling against none, one run: {a.env}, n={a.n}, K={a.K}", "",
             "Command: `python " + " ".join(shlex.quote(x) for x in sys.argv) + "`", "",
             f"{a.window:.0f} s windows after a {a.warm_up:.0f} s warm-up; sampling: every process's "
             f"smaps_rollup read {a.reads_per_second:g} times a second.", "",
             "| round | window | agent steps/s | sampler CPU (% of cores) |", "|---|---|---|---|", *lines,
             f"| median | quiet | {median['quiet']:,.0f} | {cpu['quiet']:.1f} |",
             f"| median | sampling | {median['sampling']:,.0f} | {cpu['sampling']:.1f} |", "",
             f"Sampling against quiet: **{median['sampling'] / median['quiet'] - 1:+.0%}** agent steps/s."]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(table) + "\n")
    print("\n".join(table[-4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
