"""What a periodic checkpoint costs the step loop: written in the loop, or on the agent's
background writer (agent/background_writer.py). Issue 17: a py-spy profile of an agent beside
other runs found checkpoint and links.json writes blocking its loop.

P processes (agents) each run the same loop: DQN updates with full replay buffers (collection's
observation at n agents), a checkpoint every U updates, C checkpoints. The P processes start
together, as agents reach step 1000 together. Three ways, taken in turn R times:
  none        no checkpoint (the loop's own cost)
  inline      save_checkpoint in the loop (serialize, write, fsync, rename: what agents did)
  background  serialized in the loop, written on the writer thread (what agents do now)
Printed: per way, how long the loop was held by each checkpoint (wall ms from the call to its
return: median and the largest, over every checkpoint of every process and round), and the
loop's wall time per process (median over rounds) from the common start to everything on disk.
The loop's wall time moves by more than the checkpoints cost on a busy machine; the held time
is the figure to read.

    python benchmarks/ablations/checkpoint_stall.py --obs-dims 85 421 --procs 1 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

WAYS = ("none", "inline", "background")


def agent_loop(way: str, obs_dim: int, updates_per_checkpoint: int, checkpoints: int, folder: str,
               start: mp.Barrier) -> tuple[float, list[float], float]:
    """One process's loop: its wall seconds from the common start to everything on disk, the
    seconds each checkpoint held the loop, and the checkpoint's MB (0 without one)."""
    import torch
    from learner_working_set import full_dqn_learner  # this folder

    from drima.agent.background_writer import BackgroundWriter
    from drima.agent.checkpoint import checkpoint_bytes, save_checkpoint, write_atomic
    from drima.agent.core import AgentCore

    torch.set_num_threads(1)
    learner, batch = full_dqn_learner(obs_dim, 0, np.random.default_rng(0))
    core = AgentCore(learner, "dri", 0.05)
    path = Path(tempfile.mkdtemp(dir=folder)) / "checkpoint.pt"
    writer = BackgroundWriter()
    start.wait()
    held: list[float] = []
    t0 = time.perf_counter()
    for c in range(checkpoints):
        for _ in range(updates_per_checkpoint):
            learner.update(batch)
        t = time.perf_counter()
        if way == "inline":
            save_checkpoint(path, core, c)
        elif way == "background":
            writer.submit(path, partial(write_atomic, path, checkpoint_bytes(core, c)))
        held.append(time.perf_counter() - t)
    for _ in range(updates_per_checkpoint):  # the loop goes on after the last one (the writer works meanwhile)
        learner.update(batch)
    writer.flush()
    wall = time.perf_counter() - t0
    writer.close()
    assert writer.failures == 0, "a background write failed: its time would look free"
    mb = path.stat().st_size / 1e6 if path.exists() else 0.0
    path.unlink(missing_ok=True)
    return wall, held, mb


def one_round(way: str, procs: int, obs_dim: int, updates: int, checkpoints: int,
              folder: str) -> tuple[float, list[float], float]:
    """Mean wall seconds per process, P processes started together; every checkpoint's held
    seconds; the largest checkpoint's MB."""
    ctx = mp.get_context("spawn")
    start = ctx.Manager().Barrier(procs)
    with ctx.Pool(procs) as pool:
        out = pool.starmap(agent_loop, [(way, obs_dim, updates, checkpoints, folder, start)] * procs)
    return (float(np.mean([wall for wall, _, _ in out])), [h for _, held, _ in out for h in held],
            max(mb for _, _, mb in out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--obs-dims", type=int, nargs="+", default=[85, 421],
                   help="observation sizes (collection: 85 at n=8, 421 at n=64)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 4], help="agent processes at once")
    p.add_argument("--updates", type=int, default=50, help="updates between two checkpoints")
    p.add_argument("--checkpoints", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary folder; the disk matters)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as folder:
        print(f"{a.updates} dqn updates between checkpoints, {a.checkpoints} checkpoints, median of {a.rounds} rounds")
        print("| obs | checkpoint MB | processes | loop held, inline: median / max ms | background: median / max ms "
              "| loop wall s: none / inline / background |")
        print("|---|---|---|---|---|---|")
        for obs_dim in a.obs_dims:
            for procs in a.procs:
                walls: dict[str, list[float]] = {w: [] for w in WAYS}
                held: dict[str, list[float]] = {w: [] for w in WAYS}
                mb = 0.0
                for _ in range(a.rounds):
                    for way in WAYS:  # taken in turn: this machine's speed drifts within minutes
                        wall, h, size = one_round(way, procs, obs_dim, a.updates, a.checkpoints, folder)
                        mb = max(mb, size)
                        walls[way].append(wall)
                        held[way] += h
                ms = {w: f"{statistics.median(held[w]) * 1000:.1f} / {max(held[w]) * 1000:.0f}"
                      for w in ("inline", "background")}
                wall = " / ".join(f"{statistics.median(walls[w]):.2f}" for w in WAYS)
                print(f"| {obs_dim} | {mb:.0f} | {procs} | {ms['inline']} | {ms['background']} | {wall} |", flush=True)


if __name__ == "__main__":
    main()
