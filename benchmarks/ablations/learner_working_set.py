"""Does a DQN update cost more when many learners take turns on one core? (issue 17: at n=64 on
collection each agent's dqn update costs 1.15-1.6x what it costs at n=8; its larger observation,
421 floats against 85, is one part of that.)

In one process, M DQN learners (collection's observation size at n agents, full 4,096-transition
replay buffers of random data) update in turn, one update each per round, as M agent processes
on a core do; the CPU time of an update (time.thread_time) is printed for each M. If the cost
grows with M while the arithmetic stays the same, the learners' memory, not their maths, is what
gets dearer: each learner's buffers, weights and Adam state are evicted from the CPU caches by
the others' between two of its updates.

    python benchmarks/ablations/learner_working_set.py --obs-dims 85 421 --ms 1 8 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from drima.agent.learners import Learner, make_learner
from drima.types import Transition

K = 8  # env copies per update, as in the scale benchmark


def full_dqn_learner(obs_dim: int, seed: int, rng: np.random.Generator) -> tuple[Learner, Transition]:
    """A DQN learner whose replay buffer is full of random data (as after the first 512 steps of
    a run), and a batch of K transitions to update it with."""
    learner = make_learner("dqn", obs_dim, {"type": "discrete", "n": 5}, {"gamma": 0.95}, seed)
    for _ in range(learner.buffer.capacity // K):
        o = rng.standard_normal((K, obs_dim)).astype(np.float32)
        learner.buffer.add_batch(o, rng.integers(0, 5, K), rng.standard_normal(K).astype(np.float32), o, np.zeros(K))
    o = rng.standard_normal((K, obs_dim)).astype(np.float32)
    batch = Transition(obs=o, actions=learner.act(o), signal=np.ones(K, np.float32), next_obs=o,
                       terminated=np.zeros(K, bool), truncated=np.zeros(K, bool), active=np.ones(K, bool))
    return learner, batch


def update_us(m: int, obs_dim: int, rounds: int, seed: int = 0) -> tuple[float, float]:
    """(median over rounds of the mean CPU µs of one update, M learners updating in turn;
    the MB their replay buffers' observations take)."""
    rng = np.random.default_rng(seed)
    learners, batches = zip(*(full_dqn_learner(obs_dim, seed + i, rng) for i in range(m)), strict=True)
    per_round = []
    for r in range(rounds + 2):  # two warm-up rounds
        t0 = time.thread_time()
        for learner, batch in zip(learners, batches, strict=True):
            learner.update(batch)
        if r >= 2:
            per_round.append((time.thread_time() - t0) / m * 1e6)
    mb = sum(learner.buffer.obs.nbytes + learner.buffer.next_obs.nbytes for learner in learners) / 1e6
    return float(np.median(per_round)), mb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obs-dims", nargs="+", type=int, default=[85, 421], help="collection: 85 at n=8, 421 at n=64")
    p.add_argument("--ms", nargs="+", type=int, default=[1, 8, 64], help="learners taking turns")
    p.add_argument("--rounds", type=int, default=0, help="rounds per M (default: about 1,000 updates)")
    a = p.parse_args()
    torch.set_num_threads(1)  # as in an agent process
    print("| obs_dim | learners taking turns | replay buffers, MB | update, CPU µs | against 1 learner |")
    print("|---|---|---|---|---|")
    for obs_dim in a.obs_dims:
        alone = None
        for m in a.ms:
            us, mb = update_us(m, obs_dim, a.rounds or max(5, 1000 // m))
            alone = alone or us
            print(f"| {obs_dim} | {m} | {mb:.0f} | {us:.0f} | {us / alone:.2f} |", flush=True)


if __name__ == "__main__":
    main()
