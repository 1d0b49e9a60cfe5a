"""What watching a run costs it: the same pd ring run without a dashboard, with `--dashboard`
and a headless Chromium page polling it (every second, as a user's browser does), and with
`--dashboard` polled by a plain HTTP client (the server's own cost, without the browser's). Runs
are interleaved, the order rotating, so that a machine's load drifting over time hits every
configuration alike. Prints env steps/s per run (summary.json) and the medians' ratio to the run
without a dashboard, and writes them as Markdown.

On a busy shared machine env steps/s drift a lot between runs, so the script also measures what
does not: the launcher's own CPU time (its dashboard thread included), the CPU time of the
Chromium processes that show the page, and the CPU time of one /status.json.

    python benchmarks/dashboard_cost.py                  # -> benchmarks/results/dashboard_cost.md
    python benchmarks/dashboard_cost.py --steps 6000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Chromium client is the tests'

from chromium import Chromium, agent_states  # noqa: E402 (after the path above)

CONFIGS = ("no dashboard", "dashboard + Chromium page", "dashboard + HTTP poller")


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of process `pid`'s threads so far, its children not included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """The last CPU reading of a process, sampled until it ends (its own CPU time is gone with it)."""

    def __init__(self, pid: int):
        self.pid, self.cpu_s = pid, 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while (cpu := _cpu_s(self.pid)) is not None:
            self.cpu_s = cpu
            time.sleep(0.2)

    def result(self) -> float:
        self._thread.join()
        return self.cpu_s


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _launch(run_dir: Path, steps: int, dashboard: bool) -> tuple[subprocess.Popen, Path, list[str]]:
    args = ["--env", "pd", "--topology", "ring", "--n", "6", "--steps", str(steps), "--seed", "0",
            "--run-dir", str(run_dir), "--quiet"] + (["--dashboard", "0"] if dashboard else [])
    log = run_dir.parent / f"{run_dir.name}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "drima.launch", *args], stdout=f, stderr=subprocess.STDOUT)
    return proc, log, args


def _url(log: Path, proc: subprocess.Popen) -> str:
    while proc.poll() is None:
        found = re.search(r"dashboard: (http://\S+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"the launcher ended without a dashboard: {log.read_text()[-1000:]}")


def _poll_http(url: str, proc: subprocess.Popen) -> int:
    """GET /status.json every second until the run ends; how many answers came back."""
    answers = 0
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "status.json", timeout=10) as r:
                json.load(r)
                answers += 1
        except OSError:  # starting, or the run just ended
            pass
        time.sleep(1.0)
    return answers


def _watch_in_chromium(url: str, proc: subprocess.Popen) -> tuple[int, float]:
    """Keep the page open (it polls every second by itself) until the run ends; how often the page
    was seen showing the agents, and the CPU seconds of the browser's processes."""
    seen = 0
    with Chromium() as browser:
        page = browser.open(url)
        while proc.poll() is None:
            time.sleep(2.0)
            try:
                seen += bool(agent_states(page))
            except Exception:  # the page between two polls, or the run just ended
                pass
        # the launcher was reaped by proc.poll() above: from here on only the browser is, as it closes
        cpu0 = _children_cpu_s()
    return seen, _children_cpu_s() - cpu0


def one_run(config: str, run_dir: Path, steps: int) -> dict:
    proc, log, args = _launch(run_dir, steps, dashboard=config != CONFIGS[0])
    launcher_cpu = CpuWatch(proc.pid)
    watched, browser_cpu = None, None
    if config == CONFIGS[1]:
        watched, browser_cpu = _watch_in_chromium(_url(log, proc), proc)
    elif config == CONFIGS[2]:
        watched = _poll_http(_url(log, proc), proc)
    if proc.wait() != 0:
        raise RuntimeError(f"{config}: the run failed: {log.read_text()[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"config": config, "env_steps_per_s": summary["env_steps_per_s"], "wall_s": summary["wall_s"],
            "watched": watched, "launcher_cpu_s": launcher_cpu.result(), "browser_cpu_s": browser_cpu,
            "command": "drima-launch " + shlex.join(args)}


def status_cpu_ms(run_dir: Path, calls: int = 200) -> float:
    """CPU milliseconds of one /status.json of a finished run (what the server does per poll)."""
    from drima.launch.dashboard.status import run_status

    run_status(run_dir)
    t0 = time.process_time()
    for _ in range(calls):
        run_status(run_dir)
    return (time.process_time() - t0) / calls * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "dashboard_cost.md"))
    a = p.parse_args(argv)
    load = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="dashboard-cost-") as tmp:
        for r in range(a.repeats):
            for config in CONFIGS[r % 3:] + CONFIGS[:r % 3]:
                run = one_run(config, Path(tmp) / f"r{r}-{CONFIGS.index(config)}", a.steps) | {"repeat": r}
                print(f"repeat {r}: {config:28s} {run['env_steps_per_s']:8.1f} env steps/s, launcher CPU "
                      f"{run['launcher_cpu_s']:.2f} s, browser CPU {run['browser_cpu_s']} s "
                      f"(watched: {run['watched']})", flush=True)
                runs.append(run)
        per_poll_ms = status_cpu_ms(Path(tmp) / "r0-0")
    print(f"one /status.json: {per_poll_ms:.2f} ms of CPU")
    Path(a.out).write_text(report(a, load, runs, per_poll_ms))
    print(f"wrote {a.out}")
    return 0


def report(a: argparse.Namespace, load: tuple[float, float, float], runs: list[dict], per_poll_ms: float) -> str:
    base = median(x["env_steps_per_s"] for x in runs if x["config"] == CONFIGS[0])
    lines = [
        "# What watching a run costs it: `--dashboard`",
        "",
        f"`python benchmarks/dashboard_cost.py --steps {a.steps} --repeats {a.repeats}`, on "
        f"{os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the start "
        f"(a shared machine). Each run: `{runs[0]['command']}` (a fresh --run-dir each; with `--dashboard 0` "
        f"for the dashboard rows). Runs interleaved, the order rotating.",
        "",
        "| configuration | env steps/s per run | median | ratio to no dashboard | launcher CPU s per run "
        "(median) | browser CPU s per run second (median) |",
        "|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        mine = [x for x in runs if x["config"] == config]
        rates = [x["env_steps_per_s"] for x in mine]
        browser = [x["browser_cpu_s"] / x["wall_s"] for x in mine if x["browser_cpu_s"] is not None]
        lines.append(f"| {config} | {', '.join(f'{v:.0f}' for v in rates)} | {median(rates):.0f} | "
                     f"{median(rates) / base:.3f} | {median(x['launcher_cpu_s'] for x in mine):.2f} | "
                     f"{f'{median(browser):.3f}' if browser else '-'} |")
        print(f"{config:28s} median {median(rates):8.1f} env steps/s, ratio {median(rates) / base:.3f}")
    lines += ["", f"One `/status.json` of this 6-agent ring takes {per_poll_ms:.2f} ms of CPU in the process that "
              "serves it (the launcher's dashboard thread); the page asks once a second.", "",
              "`watched`: Chromium: the times the page was seen showing the agents (checked every 2 s); "
              "HTTP poller: /status.json answers (one a second).", "",
              "| repeat | configuration | env steps/s | wall s | launcher CPU s | browser CPU s | watched |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {x['repeat']} | {x['config']} | {x['env_steps_per_s']:.1f} | {x['wall_s']:.1f} | "
              f"{x['launcher_cpu_s']:.2f} | {x['browser_cpu_s'] if x['browser_cpu_s'] is not None else '-'} | "
              f"{x['watched'] if x['watched'] is not None else '-'} |" for x in runs]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
