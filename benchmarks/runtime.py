"""Measure the runtime itself (not learning): throughput, bytes on each link, exchange latency,
memory, and the ratio to the same learners run in one process with no sockets.

    python benchmarks/runtime.py                      # n in {2, 6, 12} x K in {1, 8}, pd, a2c-dri, ring
    python benchmarks/runtime.py --ns 6 --ks 8 --steps 2000
    python benchmarks/runtime.py --env collection --ns 6 --ks 8 --out benchmarks/results/runtime_mpe
    python benchmarks/runtime.py --env pettingzoo:mpe2.simple_spread_v3 --env-options '{"N": 6}' --ns 6 --ks 8,32 \
        --out benchmarks/results/runtime_simple_spread        # any PettingZoo env, through the adapter

For each (n, K) it runs `drima-launch` for real (one env server + n agent processes) and then
`drima.reference.run_reference` (the same learners, env and DRI rule in one process) with the
same settings, and the environment alone (random actions, no learners), and prints one table
row. Results: benchmarks/results/runtime.{md,csv}.

`two_cores_ceiling`: the same reference, two copies at once in two processes, against one alone:
2 x (their mean rate) / (the rate alone). It is what this machine gives for the same work split
over two processes with no messages at all (2.0 on two real cores that share nothing; less where
they share caches, memory bandwidth or a physical core), so `ratio` can at best reach it.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy is imported, as drima-launch gives every process it
# starts (launch/zygote.py CHILD_ENV): the one-process reference runs here, and with two OpenBLAS
# threads its numpy matmuls would use the second core (or, at hidden 256, run 9x slower on this VM).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import markdown_table, write_csv
from drima.env_server.envs import make_env
from drima.reference import run_reference


def env_alone_rate(env: str, n: int, k: int, steps: int, seed: int, options: dict) -> float:
    """Env steps/s of the environment by itself: K copies, random discrete actions, no learning."""
    venv = make_env(env, n, k, seed, options=options)
    rng = np.random.default_rng(seed)
    sizes = [venv.agent_spec(i)["action"]["n"] for i in range(n)]
    venv.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step([rng.integers(0, size, k).astype(np.int32) for size in sizes])
    return steps * k / (time.perf_counter() - t0)

COLUMNS = ["n", "K", "env_workers", "act_ahead", "env_steps_per_s", "reference_env_steps_per_s", "ratio",
           "two_cores_ceiling",
           "env_alone_env_steps_per_s", "fraction_of_env_alone", "nbr_bytes_per_peer_env_step",
           "nbr_bytes_per_msg", "env_link_bytes_per_agent_step", "exchange_p50_ms", "exchange_p99_ms",
           "agent_rss_mb", "agent_pss_mb", "env_server_rss_mb", "total_pss_mb"]


def two_cores_ceiling(env: str, algo: str, mode: str, topology: str, n: int, k: int, steps: int, seed: int,
                      options: dict, alone: float) -> float:
    """2 x the mean env steps/s of two reference processes run at once, over `alone` (one by itself)."""
    code = ("import json, sys; from drima.reference import run_reference; a = json.loads(sys.argv[1]); "
            "print(run_reference(*a[:7], n_envs=a[7], env_options=a[8])['env_steps_per_s'])")
    args = [json.dumps([env, algo, mode, topology, n, steps, seed, k, options])]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"a reference process for two_cores_ceiling failed: {err.strip()[-500:]}")
    rates = [float(out.strip().splitlines()[-1]) for out, _ in outputs]
    return 2 * float(np.mean(rates)) / alone


def measure(env: str, algo: str, mode: str, topology: str, n: int, k: int, steps: int, seed: int,
            options: dict, env_workers: int | None = None, act_ahead: bool = False,
            baselines: dict | None = None) -> dict:
    """One row; `baselines` caches the reference and env-alone rates per (n, K) across rows.
    env_workers None: drima-launch's default (the row gives the number it chose)."""
    with tempfile.TemporaryDirectory(prefix="drima-bench-") as tmp:
        run_dir = Path(tmp)
        cmd = [sys.executable, "-m", "drima.launch", "--env", env, "--algo", algo, "--mode", mode, "--topology",
               topology, "--n", str(n), "--envs", str(k), "--steps", str(steps), "--seed", str(seed),
               "--run-dir", str(run_dir), "--quiet", "--log-every", str(max(50, steps // 20)),
               "--env-options", json.dumps(options)]
        cmd += [] if env_workers is None else ["--env-workers", str(env_workers)]
        cmd += ["--act-ahead" if act_ahead else "--no-act-ahead"]
        subprocess.run(cmd, check=True)
        summary = json.loads((run_dir / "summary.json").read_text())
        server = json.loads((run_dir / "env_server" / "stats.json").read_text())
        agents = [json.loads((run_dir / f"agent_{i}" / "stats.json").read_text()) for i in range(n)]
        env_workers = json.loads((run_dir / "launch.json").read_text())["env_workers"]
    baselines = {} if baselines is None else baselines
    if (n, k) not in baselines:
        ref = run_reference(env, algo, mode, topology, n, steps, seed, n_envs=k, env_options=options)
        ceiling = two_cores_ceiling(env, algo, mode, topology, n, k, steps, seed, options, ref["env_steps_per_s"])
        baselines[n, k] = ref["env_steps_per_s"], env_alone_rate(env, n, k, steps, seed, options), ceiling
    ref_rate, env_alone, ceiling = baselines[n, k]
    sent = np.array([a["link"]["sent_bytes"] for a in agents], float)
    msgs = np.array([a["link"]["sent_msgs"] for a in agents], float)
    env_link = (np.array(server["env_link_bytes_sent_per_agent_step"])
                + np.array(server["env_link_bytes_recv_per_agent_step"]))
    agent_rss = np.array([a["memory"]["rss_peak_mb"] for a in agents])
    agent_pss = np.array([a["memory"]["pss_mb"] for a in agents])
    rate = summary["env_steps_per_s"]
    return {
        "n": n, "K": k, "env_workers": env_workers, "act_ahead": int(act_ahead), "env_steps_per_s": round(rate),
        "reference_env_steps_per_s": round(ref_rate),
        "ratio": round(rate / ref_rate, 2),
        "two_cores_ceiling": round(ceiling, 2),
        "env_alone_env_steps_per_s": round(env_alone),
        "fraction_of_env_alone": round(rate / env_alone, 2),
        # PUB sends each frame once; ZeroMQ delivers one copy to each subscribed neighbour.
        "nbr_bytes_per_peer_env_step": round(float((sent / (steps * k)).mean()), 2),
        "nbr_bytes_per_msg": round(float((sent / msgs).mean()), 1),
        "env_link_bytes_per_agent_step": round(float(env_link.mean()), 1),
        "exchange_p50_ms": round(float(np.median([a["exchange_ms"]["p50"] for a in agents])), 3),
        "exchange_p99_ms": round(float(np.max([a["exchange_ms"]["p99"] for a in agents])), 3),
        "agent_rss_mb": round(float(agent_rss.mean()), 1), "agent_pss_mb": round(float(agent_pss.mean()), 1),
        "env_server_rss_mb": server["memory"]["rss_peak_mb"],
        "total_pss_mb": round(float(agent_pss.sum() + server["memory"]["pss_mb"]), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pd")
    p.add_argument("--env-options", default="{}", help="the env's options as JSON (--env-options of drima-launch)")
    p.add_argument("--algo", default="a2c")
    p.add_argument("--mode", default="dri")
    p.add_argument("--topology", default="ring")
    p.add_argument("--ns", default="2,6,12", help="agent counts")
    p.add_argument("--env-workers", default="auto",
                   help="pettingzoo envs: env worker processes to try, e.g. 1,2; auto: drima-launch's default")
    p.add_argument("--ks", default="1,8", help="environment copies per step")
    p.add_argument("--act-ahead", default="1", help="1: agents act before they learn (drima-launch's default); "
                   "0: --no-act-ahead; 0,1 runs both, side by side")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/runtime")
    a = p.parse_args()
    rows, baselines = [], {}
    t0 = time.monotonic()
    print(" | ".join(COLUMNS))
    for n in map(int, a.ns.split(",")):
        for k in map(int, a.ks.split(",")):
            for w in (None if w == "auto" else int(w) for w in a.env_workers.split(",")):
                for ahead in map(int, a.act_ahead.split(",")):
                    row = measure(a.env, a.algo, a.mode, a.topology if n > 2 else "full", n, k, a.steps, a.seed,
                                  json.loads(a.env_options), w, bool(ahead), baselines)
                    rows.append(row)
                    print(" | ".join(str(row[c]) for c in COLUMNS), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out.with_suffix(".csv"), COLUMNS, rows)
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    lines = [f"Command: `{cmd}` ({a.env}, {a.algo}-{a.mode}, {a.topology} for n > 2, {a.steps} steps per run; "
             f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; "
             f"total {time.monotonic() - t0:.0f} s)", "", *markdown_table(COLUMNS, rows)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
