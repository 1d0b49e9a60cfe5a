"""What measuring memory costs a run: one live run, its throughput in windows taken in turn with
and without a memory sampler reading every process's /proc/PID/smaps_rollup.

Until session 19, benchmarks/scale.py sampled the peak PSS by reading every process's
smaps_rollup twice (once for Pss, once for Rss), then sleeping 1 s, for the whole run. The kernel
answers that read by walking the process's page tables, and charges the work to the reader: the
more processes, the more it costs, so the big runs paid far more than the small ones. This
script measures that side by side, in one run, so that the machine's drift between runs cannot
decide it; its sampling windows run that old sampler as it was.

One `drima-launch --topology ring` run (long enough for every window); after a warm-up, R rounds
(an even number) of two windows of W seconds each, quiet then sampling in even rounds and the
other way round in odd ones (ABBA). Per window: agent steps/s from the env server's metrics rows;
for the sampling ones, the sampler's CPU (this process's user + system time) as a share of the
cores, its reads of smaps_rollup per second, and its CPU per read. Printed and written to OUT:
every window, the medians, and sampling against quiet.

    python benchmarks/ablations/sampler_cost.py --env collection --n 64 \\
        --launch-args "--algo a2c --heartbeat-liveness 20"
"""

from __future__ import annotations

import argparse
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/, for scale.py's helpers
from scale import CORES, descendants, newest_step, own_cpu_s  # noqa: E402


def old_sample(root: int) -> int:
    """One sample as scale.py took it until session 19: each process's smaps_rollup read twice (Pss,
    then Rss); the number of reads."""
    reads = 0
    for pid in descendants(root):
        for _ in ("Pss", "Rss"):
            try:
                Path(f"/proc/{pid}/smaps_rollup").read_text()
                reads += 1
            except OSError:  # ended meanwhile
                pass
    return reads


class Window(NamedTuple):
    steps_per_s: float
    cpu_pct: float  # this process's CPU, as a share of the cores
    reads_per_s: float
    cpu_ms_per_read: float


def window(launcher: subprocess.Popen, run_dir: Path, seconds: float, sampling: bool) -> Window:
    """The run's steps per second over `seconds`, with the old sampler running (a sample, then 1 s
    of sleep, as scale.py did) or without it."""
    start, cpu0, t0, reads = newest_step(run_dir), own_cpu_s(), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        if launcher.poll() is not None:
            raise SystemExit(f"the run ended (exit {launcher.returncode}) during a window")
        if sampling:
            reads += old_sample(launcher.pid)
        time.sleep(1.0)
    end, elapsed, cpu_s = newest_step(run_dir), time.monotonic() - t0, own_cpu_s() - cpu0
    if start is None or end is None or end[1] <= start[1]:
        raise SystemExit("the run wrote no metrics rows during a window: use longer windows")
    return Window((end[0] - start[0]) / (end[1] - start[1]), 100 * cpu_s / (elapsed * CORES), reads / elapsed,
                  1000 * cpu_s / reads if reads else 0.0)


def run_windows(launcher: subprocess.Popen, run_dir: Path, a: argparse.Namespace,
                err_path: Path) -> tuple[dict[str, list[Window]], list[str]]:
    """Wait for the first step and the warm-up, then the windows in ABBA order: every window by
    mode, and the table's lines."""
    while newest_step(run_dir) is None:
        if launcher.poll() is not None:
            tail = err_path.read_text()[-500:].strip()
            raise SystemExit(f"the run ended (exit {launcher.returncode}) before its first step: {tail}")
        time.sleep(1.0)
    time.sleep(a.warm_up)
    results: dict[str, list[Window]] = {"quiet": [], "sampling": []}
    lines = []
    for r in range(a.rounds):
        for mode in ("quiet", "sampling") if r % 2 == 0 else ("sampling", "quiet"):
            w = window(launcher, run_dir, a.window, sampling=mode == "sampling")
            results[mode].append(w)
            extra = f"{w.reads_per_s:.0f} | {w.cpu_ms_per_read:.1f}" if mode == "sampling" else " | "
            lines.append(f"| {r} | {mode} | {w.steps_per_s * a.K * a.n:,.0f} | {w.cpu_pct:.1f} | {extra} |")
            print(lines[-1], flush=True)
    return results, lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="collection")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("-K", type=int, default=8)
    p.add_argument("--rounds", type=int, default=4, help="an even number: ABBA")
    p.add_argument("--window", type=float, default=20.0, help="seconds per window")
    p.add_argument("--warm-up", type=float, default=20.0, help="seconds after the first step before the first window")
    p.add_argument("--launch-args", default="--algo a2c --heartbeat-liveness 20", help="more drima-launch flags")
    p.add_argument("--out", default="benchmarks/results/ablations/sampler_cost.md")
    a = p.parse_args()
    if a.rounds < 2 or a.rounds % 2:
        p.error("--rounds must be even and at least 2 (ABBA order)")
    with tempfile.TemporaryDirectory(prefix="drima-sampler-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "drima.launch", "--env", a.env, "--topology", "ring", "--n", str(a.n),
               "--envs", str(a.K), "--steps", "1000000", "--log-every", "10", "--checkpoint-every", "1000000",
               "--run-dir", str(run_dir), "--quiet", *shlex.split(a.launch_args)]
        err_path = Path(tmp) / "launch.err"
        with open(err_path, "w") as err:
            launcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            results, lines = run_windows(launcher, run_dir, a, err_path)
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=120)
            except subprocess.TimeoutExpired:
                launcher.kill()
    median = {m: statistics.median(w.steps_per_s * a.K * a.n for w in v) for m, v in results.items()}
    cpu = {m: statistics.median(w.cpu_pct for w in v) for m, v in results.items()}
    sampled = results["sampling"]
    table = [f"# Memory sampling against none, one run: {a.env}, n={a.n}, K={a.K}", "",
             "Command: `python " + " ".join(shlex.quote(x) for x in sys.argv) + "`", "",
             f"{a.window:.0f} s windows after a {a.warm_up:.0f} s warm-up; sampling: scale.py's sampler until "
             "session 19 (every process's smaps_rollup read twice, then 1 s of sleep).", "",
             "| round | window | agent steps/s | sampler CPU (% of cores) | smaps reads/s | CPU ms per read |",
             "|---|---|---|---|---|---|", *lines,
             f"| median | quiet | {median['quiet']:,.0f} | {cpu['quiet']:.1f} | | |",
             f"| median | sampling | {median['sampling']:,.0f} | {cpu['sampling']:.1f} "
             f"| {statistics.median(w.reads_per_s for w in sampled):.0f} "
             f"| {statistics.median(w.cpu_ms_per_read for w in sampled):.1f} |", "",
             f"Sampling against quiet: **{median['sampling'] / median['quiet'] - 1:+.0%}** agent steps/s."]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(table) + "\n")
    print("\n".join(table[-4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
