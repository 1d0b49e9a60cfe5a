"""How fast could ANY one-process-per-agent design go on this machine? A bare lower bound for
the runtime benchmark's `ratio` (runtime / the same learners in one process).

Issue 17 asks the runtime to beat its one-process reference (`drima.reference`) by 1.5x on two
cores. This script builds the least a design with one OS process per agent can do, and times
it beside the reference and the real runtime in one run:

- `reference`: drima.reference.run_reference, every learner and the env in one process;
- `bare`: one env process and n agent processes with the same learners (the same AgentCore),
  wired with the fewest messages the design allows and nothing else: per step, the env process
  sends each agent its obs and reward (raw numpy bytes on ipc://, ROUTER to DEALER), the agent
  publishes (r, mu) to its ring neighbours (PUB/SUB), acts and sends its action, collects its
  neighbours' scalars and learns (the runtime's act-ahead order). No heartbeats, validation,
  metrics, checkpoints, process titles, logging or security;
- `runtime`: `drima-launch` with the same settings (--quiet, act ahead as by default).

Rounds alternate the order (reference, bare, runtime, then reversed) so that the machine's drift
is shared. Printed and written to OUT: every run's env steps/s, and each design's ratio to the
reference of the same round with the median of those ratios (this machine's speed drifts by up
to 2x within minutes: a ratio within a round is steadier than medians taken apart). `bare` over
the reference bounds what the runtime's ratio can reach without changing the design (one OS
process per agent, scalars over ZeroMQ); the runtime over bare is what the runtime's own
features cost.

    python benchmarks/ablations/bare_processes.py --env collection --n 6 --k 8 --rounds 4
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy is imported, as drima-launch gives every process it
# starts (launch/zygote.py CHILD_ENV): the one-process reference runs here, and with two OpenBLAS
# threads its numpy matmuls would use the second core (or, at hidden 256, run 9x slower on this VM).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def env_process(address: str, env: str, algo: str, n: int, k: int, steps: int, seed: int, out: mp.Queue) -> None:
    """Steps the env for `steps` steps once every agent said hello; puts env steps/s on `out`."""
    import zmq

    from drima.env_server.envs import default_action_type, make_env

    venv = make_env(env, n, k, seed, default_action_type(env, algo))
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(address)
    idents = [str(i).encode() for i in range(n)]  # each agent's DEALER identity is its id
    greeted: set[bytes] = set()
    while len(greeted) < n:  # hello: [identity, agent id]
        greeted.add(router.recv_multipart()[0])
    obs = venv.reset()
    rewards = np.zeros((n, k), np.float32)
    dones = np.zeros(k, np.uint8)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for t in range(steps + 1):
        last = b"1" if t == steps else b"0"
        for i in range(n):
            router.send_multipart([idents[i], last, obs[i].tobytes(), rewards[i].tobytes(), dones.tobytes()])
        if t == steps:
            break
        actions: list[np.ndarray | None] = [None] * n
        for _ in range(n):
            ident, raw = router.recv_multipart()
            actions[int(ident)] = np.frombuffer(raw, np.int32)
        obs, rewards, done = venv.step(actions)
        dones = done.astype(np.uint8)
    out.put(("env", steps * k / (time.perf_counter() - t0), time.thread_time() - cpu0))
    router.close(linger=5000)  # the last results must reach the agents: linger 0 would drop them
    ctx.term()


class BareAgent:
    """Agent i: the same AgentCore as the runtime's, on the fewest messages."""

    def __init__(self, i: int, address: str, pub_addresses: list[str], env: str, algo: str, n: int, k: int,
                 seed: int, learner: dict):
        import zmq

        from drima.agent.learners import ActsAhead
        from drima.env_server.envs import default_action_type, make_env
        from drima.reference import _make_agent

        spec_env = make_env(env, n, k, seed, default_action_type(env, algo))  # only for the learner's spec
        self.core = _make_agent(spec_env, i, algo, "dri", seed, learner, 0.05, False)
        self.i, self.k, self.obs_dim = i, k, spec_env.agent_spec(i)["obs_dim"]
        # as the runtime: act on t+1 before learning from t where the learner allows it (a2c; not PPO)
        self.acts_ahead = isinstance(self.core.learner, ActsAhead) and self.core.learner.acts_ahead
        self.nbrs = [(i - 1) % n, (i + 1) % n]
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.bind(pub_addresses[i])
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        for j in self.nbrs:
            self.sub.connect(pub_addresses[j])
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, str(i).encode())  # the env process knows the agent by it
        self.dealer.connect(address)
        self.heard: set[int] = set()
        self.buffered: dict[int, dict[int, tuple[np.ndarray, float]]] = {}  # step -> neighbour -> (r, mu)

    def drain(self, block: bool) -> None:
        import zmq

        frames = self.sub.recv_multipart(0 if block else zmq.NOBLOCK)
        step, j = int(frames[0]), int(frames[1])
        self.heard.add(j)
        if step >= 0:  # not a hello
            self.buffered.setdefault(step, {})[j] = (np.frombuffer(frames[2], np.float32), float(frames[3]))

    def link_up(self) -> None:
        """Hellos until the first result, so every neighbour's SUB is connected before step 0; the
        env process hears this agent once it has heard its neighbours."""
        import zmq

        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.dealer, zmq.POLLIN)
        said_hello = False
        while True:
            self.pub.send_multipart([b"-1", str(self.i).encode(), b"", b"0"])
            if not said_hello and self.heard >= set(self.nbrs):
                self.dealer.send(str(self.i).encode())
                said_hello = True
            events = dict(poller.poll(20))
            while self.sub in events and self.sub.poll(0):
                self.drain(False)
            if self.dealer in events:
                return

    def neighbours(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The neighbours' (rewards (2, K), mus (2,)) for `step`, waiting for them."""
        while len(self.buffered.get(step, {})) < len(self.nbrs):
            self.drain(True)
        got = self.buffered.pop(step)
        return np.stack([got[j][0] for j in self.nbrs]), np.array([got[j][1] for j in self.nbrs])

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = self.core.act(obs)
        self.dealer.send(np.ascontiguousarray(actions, np.int32).tobytes())
        return actions

    def run(self) -> float:
        """The step loop (publish, act ahead, collect, learn); its main-thread CPU seconds."""
        taken = None
        t = 0
        cpu0 = time.thread_time()
        while True:
            last, o, r, d = self.dealer.recv_multipart()
            obs = np.frombuffer(o, np.float32).reshape(self.k, self.obs_dim).copy()  # writable, as the runtime's
            if taken is not None:
                self.pub.send_multipart([str(t - 1).encode(), str(self.i).encode(), r, repr(self.core.mu).encode()])
            if last == b"0" and self.acts_ahead:
                actions = self.act(obs)
            if taken is not None:
                nbr_r, nbr_mu = self.neighbours(t - 1)
                self.core.learn(taken[0], taken[1], np.frombuffer(r, np.float32), obs,
                                np.frombuffer(d, np.uint8).astype(bool), nbr_r, nbr_mu)
            if last == b"0" and not self.acts_ahead:
                actions = self.act(obs)
            if last == b"1":
                return time.thread_time() - cpu0
            taken = (obs, actions)
            t += 1

    def close(self) -> None:
        for sock in (self.pub, self.sub, self.dealer):
            sock.close(linger=0)
        self.ctx.term()


def agent_process(i: int, address: str, pub_addresses: list[str], env: str, algo: str, n: int, k: int,
                  seed: int, learner: dict, out: mp.Queue) -> None:
    import torch

    torch.set_num_threads(1)
    agent = BareAgent(i, address, pub_addresses, env, algo, n, k, seed, learner)
    agent.link_up()
    out.put(("agent", i, agent.run()))
    agent.close()


BARE_CPU: list[tuple[float, float]] = []  # per bare run: main-thread CPU ms per step, (env, one agent)


def bare_rate(env: str, algo: str, n: int, k: int, steps: int, seed: int, learner: dict) -> float:
    """Env steps/s of the bare design (the env process's clock, first result to last)."""
    mp_ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="drima-bare-") as tmp:
        address = f"ipc://{tmp}/env"
        pubs = [f"ipc://{tmp}/agent-{i}" for i in range(n)]
        out = mp_ctx.Queue()
        procs = [mp_ctx.Process(target=env_process, args=(address, env, algo, n, k, steps, seed, out))]
        procs += [mp_ctx.Process(target=agent_process, args=(i, address, pubs, env, algo, n, k, seed, learner, out))
                  for i in range(n)]
        for p in procs:
            p.start()
        reports = []
        while len(reports) < len(procs):
            try:
                reports.append(out.get(timeout=1))
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed:  # its traceback is on stderr already
                    for p in procs:
                        p.kill()
                    raise RuntimeError(f"a bare process failed (exit status {failed[0]})") from None
        for p in procs:
            p.join(timeout=60)
            if p.exitcode != 0:
                raise RuntimeError(f"a bare process exited with {p.exitcode}")
    rate, env_cpu = next((r[1], r[2]) for r in reports if r[0] == "env")
    agents_cpu = [r[2] for r in reports if r[0] == "agent"]
    BARE_CPU.append((1000 * env_cpu / steps, 1000 * sum(agents_cpu) / steps / n))
    return rate


def runtime_rate(env: str, algo: str, n: int, k: int, steps: int, seed: int, learner: dict) -> float:
    with tempfile.TemporaryDirectory(prefix="drima-bare-runtime-") as tmp:
        subprocess.run([sys.executable, "-m", "drima.launch", "--env", env, "--algo", algo, "--topology", "ring",
                        "--n", str(n), "--envs", str(k), "--steps", str(steps), "--seed", str(seed), "--quiet",
                        "--run-dir", tmp, "--log-every", str(max(50, steps // 20)), "--learner", json.dumps(learner)],
                       check=True)
        return float(json.loads((Path(tmp) / "summary.json").read_text())["env_steps_per_s"])


def reference_rate(env: str, algo: str, n: int, k: int, steps: int, seed: int, learner: dict) -> float:
    from drima.reference import run_reference

    return run_reference(env, algo, "dri", "ring", n, steps, seed, n_envs=k,
                         learner_overrides=learner)["env_steps_per_s"]


KINDS = {"reference": reference_rate, "bare": bare_rate, "runtime": runtime_rate}


def table(args: argparse.Namespace, rates: dict[str, list[float]]) -> list[str]:
    """The markdown table: each design's rates, and its ratio to the reference of the same round (the
    machine's speed drifts between rounds: a ratio within a round is steadier than medians apart)."""
    within = {kind: [x / ref for x, ref in zip(v, rates["reference"], strict=True)] for kind, v in rates.items()}
    within["runtime over bare"] = [rt / bare for rt, bare in zip(rates["runtime"], rates["bare"], strict=True)]
    lines = [f"Command: `python benchmarks/ablations/bare_processes.py --env {args.env} --algo {args.algo} "
             f"--n {args.n} --k {args.k} --steps {args.steps} --rounds {args.rounds}"
             f"{f' --learner {json.dumps(args.learner)!r}' if args.learner else ''}` "
             f"(ring; rounds alternate the order)", "",
             "| design | env steps/s, each round | over the reference, each round | median ratio |",
             "|---|---|---|---|"]
    for kind, ratios in within.items():
        shown = ", ".join(f"{x:.0f}" for x in rates[kind]) if kind in rates else ""
        lines.append(f"| {kind} | {shown} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                     f"{statistics.median(ratios):.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="collection")
    ap.add_argument("--algo", default="a2c")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=4, help="an even number: each order as often as the other")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learner", type=json.loads, default={},
                    help='learner options as JSON, as drima-launch --learner, e.g. \'{"hidden": 256}\'')
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ablations/bare_processes.md"))
    args = ap.parse_args()
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(args.rounds):
        for kind in KINDS if r % 2 == 0 else reversed(KINDS):
            rate = KINDS[kind](args.env, args.algo, args.n, args.k, args.steps, args.seed, args.learner)
            rates[kind].append(rate)
            print(f"round {r + 1}: {kind:9s} {rate:8.0f} env steps/s", flush=True)
    lines = table(args, rates)
    env_ms = statistics.median(c[0] for c in BARE_CPU)
    agent_ms = statistics.median(c[1] for c in BARE_CPU)
    lines += ["", f"Bare's main threads, CPU per step "
              f"(medians): env process {env_ms:.2f} ms, each agent {agent_ms:.2f} ms."]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
