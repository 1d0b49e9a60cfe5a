"""What an agent receives on its neighbour links under a range topology: bytes and scalar
messages per agent and step, against the mean number of neighbours in range. With targeted
publishing these grow with the neighbours in range; before, every agent received n-1 frames a step.

    python benchmarks/range_bytes.py --n 24 --radius 0.5 --steps 300

It runs `python -m drima.launch` (whichever drima the interpreter imports, so the same script
measures an older checkout too) and prints one table row.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="collection")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--radius", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--envs", type=int, default=8)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="drima-range-") as tmp:
        subprocess.run([sys.executable, "-m", "drima.launch", "--env", a.env, "--n", str(a.n), "--topology",
                        f"range:{a.radius}", "--steps", str(a.steps), "--envs", str(a.envs), "--run-dir", tmp,
                        "--quiet", "--log-every", "10"], check=True, stdout=subprocess.DEVNULL)
        links = [json.loads((Path(tmp) / f"agent_{i}" / "stats.json").read_text())["link"] for i in range(a.n)]
        peers = [float(r["n_peers"]) for i in range(a.n) for r in csv.DictReader(open(Path(tmp) / f"agent_{i}" /
                                                                                      "metrics.csv")) if r["n_peers"]]
    keys = ("recv_bytes", "recv_msgs", "recv_scalars") if "recv_scalars" in links[0] else ("recv_bytes", "recv_msgs")
    per_step = {key: np.mean([link[key] for link in links]) / a.steps for key in keys}
    scalars = f"{per_step['recv_scalars']:.1f}" if "recv_scalars" in per_step else "(not counted)"
    print("| env | n | range | K | steps | mean neighbours in range | scalar frames received / agent / step "
          "| all frames (hellos too) / agent / step | bytes received / agent / step |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.env} | {a.n} | {a.radius} | {a.envs} | {a.steps} | {np.mean(peers):.2f} | {scalars} | "
          f"{per_step['recv_msgs']:.1f} | {per_step['recv_bytes']:.0f} |")


if __name__ == "__main__":
    main()
