"""The cost of CurveZMQ: the same tcp run with CURVE (the default) and with --insecure, side by
side, interleaved (on, off, on, off, ...) so that a machine whose load drifts hurts both alike.

    python benchmarks/curve_cost.py                       # pd, a2c-dri, ring of 6, K in {1, 8}
    python benchmarks/curve_cost.py --ks 1 --repeats 5 --steps 2000

Prints one row per K: env steps/s (summary.json) of each run, their medians and the ratio
curve / plain. Results: benchmarks/results/curve_cost.{md,csv}. Before that, the cost per message
alone: round trips of a 256-byte frame between a DEALER and a ROUTER over tcp loopback in one
process, with and without CURVE (less at the mercy of a busy machine than whole runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from common import markdown_table, write_csv
from drima import security


def round_trip_us(curve: bool, trips: int, size: int = 256) -> float:
    """Median microseconds of one DEALER -> ROUTER -> DEALER round trip over tcp loopback."""
    ctx = zmq.Context()
    server, client = security.new_keypair(), security.new_keypair()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    if curve:
        security.serve(router, server, {"0": client.public}, "bench")
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.setsockopt(zmq.IDENTITY, b"0")
    security.connect(dealer, client if curve else None, server.public, f"tcp://127.0.0.1:{port}")
    frame, times = b"x" * size, []
    for i in range(trips + 100):  # the first 100 warm up (and wait out the handshake)
        t0 = time.perf_counter()
        dealer.send(frame)
        ident, got = router.recv_multipart()
        router.send_multipart([ident, got])
        dealer.recv()
        if i >= 100:
            times.append(time.perf_counter() - t0)
    router.close(0)
    dealer.close(0)
    security.term(ctx)
    return float(np.median(times) * 1e6)


def one_run(curve: bool, n: int, k: int, steps: int, seed: int) -> float:
    """Env steps/s of one tcp run."""
    with tempfile.TemporaryDirectory(prefix="drima-curve-") as tmp:
        cmd = [sys.executable, "-m", "drima.launch", "--env", "pd", "--topology", "ring", "--n", str(n),
               "--envs", str(k), "--steps", str(steps), "--seed", str(seed), "--transport", "tcp", "--quiet",
               "--run-dir", tmp, "--log-every", str(max(50, steps // 20))] + ([] if curve else ["--insecure"])
        subprocess.run(cmd, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, stderr=subprocess.DEVNULL)
        return float(json.loads((Path(tmp) / "summary.json").read_text())["env_steps_per_s"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--ks", default="1,8", help="environment copies per step")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="runs of each kind per K, interleaved")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/curve_cost")
    p.add_argument("--trips", type=int, default=5000, help="round trips per message-cost measurement")
    a = p.parse_args()
    trip = {True: [], False: []}
    for _ in range(3):
        for curve in (True, False):
            trip[curve].append(round_trip_us(curve, a.trips))
    trip_on, trip_off = float(np.median(trip[True])), float(np.median(trip[False]))
    print(f"round trip of a 256-byte frame: {trip_on:.1f} us with CURVE, {trip_off:.1f} us without", flush=True)
    rows = []
    for k in (int(x) for x in a.ks.split(",")):
        rates: dict[bool, list[float]] = {True: [], False: []}
        for r in range(a.repeats):
            for curve in (True, False):
                rate = one_run(curve, a.n, k, a.steps, a.seed)
                rates[curve].append(rate)
                print(f"K={k} repeat {r} {'curve' if curve else 'plain'}: {rate:.0f} env steps/s", flush=True)
        on, off = float(np.median(rates[True])), float(np.median(rates[False]))
        rows.append({"n": a.n, "K": k, "steps": a.steps, "curve_env_steps_per_s": round(on),
                     "plain_env_steps_per_s": round(off), "ratio": round(on / off, 3),
                     "curve_runs": " ".join(f"{x:.0f}" for x in rates[True]),
                     "plain_runs": " ".join(f"{x:.0f}" for x in rates[False])})
        print(rows[-1], flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    write_csv(out.with_suffix(".csv"), cols, rows)
    lines = [f"pd, a2c-dri, ring of {a.n}, tcp on one host; medians of {a.repeats} interleaved runs each; "
             f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
             f"command: python benchmarks/curve_cost.py {' '.join(sys.argv[1:])}".rstrip(), "",
             f"One DEALER-ROUTER round trip of a 256-byte frame over tcp loopback (median of 3 x {a.trips}): "
             f"{trip_on:.1f} us with CURVE, {trip_off:.1f} us without.", "", *markdown_table(cols, rows)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
