"""What the learning benchmarks share: run one `drima.launch` configuration (reusing a completed
run with the same settings), run a grid of them in parallel, and read learning curves back."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from drima.launch.report import SUBSTITUTED_WARN  # drima-launch warns above the same share


def load_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def launch(cmd_args: list[str], run_dir: Path, log: Path, timeout_s: float, reuse: Callable[[dict], bool],
           force: bool = False, extend_to: int = 0, extendable: Callable[[dict], bool] | None = None
           ) -> tuple[dict | None, str]:
    """Run `python -m drima.launch CMD_ARGS --run-dir RUN_DIR --quiet` unless a completed run that
    `reuse` accepts is already there; return (summary or None, note). With `extend_to`, a completed
    shorter run that `extendable` accepts is continued to that many steps (`drima-launch --resume`)."""
    s = load_summary(run_dir)
    completed = s is not None and s.get("status") == "completed" and not force
    if completed and reuse(s):
        return s, "cached"
    if s is not None and not force and extend_to and extendable is not None and extendable(s):  # also an
        # interrupted continuation: its checkpoints are where it got
        cmd = [sys.executable, "-m", "drima.launch", "--resume", "--steps", str(extend_to), "--run-dir", str(run_dir),
               "--quiet"]
        mode, ran = "a", f"continued from step {s.get('steps')}"
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # stale or forced: start clean
        cmd = [sys.executable, "-m", "drima.launch", *cmd_args, "--run-dir", str(run_dir), "--quiet"]
        mode, ran = "w", "ran"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, mode) as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout_s:.0f}s (log: {log})"
    s = load_summary(run_dir)
    if rc != 0 or s is None or s.get("status") != "completed":
        status = s.get("status") if s else "no summary.json"
        return None, f"exit {rc}, status {status} (log: {log})"
    share = s.get("substituted_action_share") or 0.0
    if share > SUBSTITUTED_WARN:  # the learners did not play this run alone: say so beside the figures
        ran += f"; WARNING: {100 * share:.1f} % of the actions were substitutes for late or silent agents"
    return s, ran


def run_grid(keys: Iterable[tuple], run_one: Callable[[tuple], tuple[dict | None, str]], jobs: int,
             describe: Callable[[tuple, dict, str], str]) -> tuple[dict[tuple, dict], list[tuple[str, str]]]:
    """Run every key (in `jobs` threads, each driving one launcher); print one line per run."""
    keys = list(keys)
    done, failed = {}, []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(run_one, key): key for key in keys}
        for i, fut in enumerate(as_completed(futs), 1):
            key = futs[fut]
            name = " ".join(map(str, key))
            try:
                s, note = fut.result()
            except Exception as e:  # a bug here must not hide other runs
                s, note = None, f"{type(e).__name__}: {e}"
            if s is None:
                failed.append((name, note))
                print(f"[{i}/{len(keys)}] {name} -> FAILED: {note}", flush=True)
                continue
            done[key] = s
            print(f"[{i}/{len(keys)}] {name} -> {describe(key, s, note)}" + (" (cached)" if note == "cached" else ""),
                  flush=True)
    return done, failed


def read_curve(run_dir: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, column) from the env server's metrics.csv, skipping rows where it is empty."""
    with open(run_dir / "env_server" / "metrics.csv", newline="") as f:
        data = [(float(r["env_steps"]), float(r[column])) for r in csv.DictReader(f) if r.get(column)]
    arr = np.array(data, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def read_curves(run_dirs: Iterable[Path], column: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """`read_curve` of each run whose metrics can be read (a failed run may have none)."""
    curves = []
    for run_dir in run_dirs:
        try:
            curves.append(read_curve(run_dir, column))
        except (OSError, KeyError, ValueError):
            pass
    return curves


def band(curves: list[tuple[np.ndarray, np.ndarray]], smooth: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """Seeds' curves cut to a common length (and moving-averaged over `smooth` points): x, (seeds, T)."""
    curves = [c for c in curves if len(c[0]) >= smooth]
    if not curves:
        return None
    m = min(len(x) for x, _ in curves)
    x, ys = curves[0][0][:m], np.stack([y[:m] for _, y in curves])
    if smooth > 1:
        kernel = np.ones(smooth) / smooth
        ys = np.stack([np.convolve(y, kernel, mode="valid") for y in ys])
        x = x[smooth - 1:]
    return x, ys


def env_steps_label(x: float, _pos=None) -> str:
    """Axis tick for a count of env steps: 400000 -> '400k', 2000000 -> '2M'."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def markdown_table(columns: list[str], rows: list[dict]) -> list[str]:
    """The lines of a Markdown table of `rows`, one column per name in `columns`."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows)]


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def report_failures(failed: list[tuple[str, str]], total: int) -> int:
    """Print the runs that did not complete; the exit status of a benchmark (1 if any)."""
    if not failed:
        return 0
    print(f"{len(failed)} of {total} runs did not complete:", file=sys.stderr)
    for name, note in failed:
        print(f"  {name}: {note}", file=sys.stderr)
    return 1
