"""DRIMA next to RLlib on the same machine and the same envs: env steps/s and peak total PSS.

    python benchmarks/rllib_compare.py                         # collection and pd, 20,000 env steps each
    python benchmarks/rllib_compare.py --envs pd --env-steps 5000
    python benchmarks/rllib_compare.py --envs simple_spread   # mpe2's simple_spread, N=6, on both

Needs `ray[rllib]` in the interpreter that runs it (ray is not a DRIMA dependency; tested with ray 2.60.0):

    python3 -m venv --system-site-packages VENV && VENV/bin/pip install --no-deps -e . \
        && VENV/bin/pip install "ray[rllib]==2.60.0" "torch==2.13.0"
    VENV/bin/python benchmarks/rllib_compare.py

Per env, two rows, each one fresh process tree run to the same budget of env steps:

- rllib: RLlib's new API stack (RLModule/Learner, EnvRunner), PPO with one RLModule per agent
  (policy_mapping_fn: agent id -> its own module), 2x64 MLPs (actor and critic not shared). collection
  is DRIMA's own PettingZoo env (`drima.env_server.mpe.collection.parallel_env()`, 6 agents) through
  RLlib's ParallelPettingZooEnv, and so is simple_spread (mpe2's
  `simple_spread_v3.parallel_env(N=6)`; drima runs it as
  `--env pettingzoo:mpe2.simple_spread_v3 --env-options '{"N": 6}'`); pd is a two-agent MultiAgentEnv
  written here (one state, 2 actions each, the payoffs of matrix_games.py's pd preset, 25-step
  episodes). Training runs in a child process
  (`ray.init(num_cpus=...)`, `--num-env-runners` remote EnvRunners, 0 = sampling in the driver).
  env steps/s = RLlib's own `num_env_steps_sampled_lifetime` over the wall time of the train() calls
  (ray.init and the algorithm's build excluded).
- drima: `drima-launch --env ENV --n N --topology ring --algo a2c --mode ind --envs K --steps ENV_STEPS/K`
  (one process per agent, each its own A2C with 2x64 MLPs). env steps/s is summary.json's (the env
  server's steps x K over its stepping time, start-up excluded).

Peak total PSS: the child (or drima-launch) and every process below it (ray: gcs_server, raylet,
workers, dashboard agent, log monitor; drima: env server, zygote, agents), read from
/proc/PID/smaps_rollup by benchmarks/scale.py's MemorySampler (at most once a second, within 2 % of
the cores; until session 19 every second with two reads per process); the table gives the peak of
the sum. load: the 1-minute load average when the row ended (throughput needs an idle machine).

Prints the table and writes it, with the command, ray version and machine, to --out
(benchmarks/results/rllib_compare.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import MemorySampler  # noqa: E402  (benchmarks/ helper, imported by bare name like the others)

PD_EPISODE = 25
N_AGENTS = {"collection": 6, "pd": 2, "simple_spread": 6}
# drima-launch --env for each: simple_spread is mpe2's own, N=6, through the PettingZoo adapter
DRIMA_ENV = {"collection": ["--env", "collection"], "pd": ["--env", "pd"],
             "simple_spread": ["--env", "pettingzoo:mpe2.simple_spread_v3", "--env-options", '{"N": 6}']}


def ray_version() -> str | None:
    try:
        import ray
    except ImportError:
        return None
    try:
        import ray.rllib  # noqa: F401
    except ImportError:
        return None
    return ray.__version__


# --- The RLlib side (runs in a child process, so that its whole process tree can be measured) ---


def make_pd_env_class():
    """A two-agent MultiAgentEnv for pd: one state (obs is always [0.]), actions C=0 / D=1."""
    import gymnasium as gym
    import numpy as np
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    from drima.env_server.matrix_games import PRESETS

    spec = PRESETS["pd"]
    names = spec["actions"]
    payoffs = {tuple(names[i].index(a) for i, a in enumerate(k.split(","))): v for k, v in spec["payoffs"].items()}

    class PdEnv(MultiAgentEnv):
        def __init__(self, config=None):
            super().__init__()
            self.agents = self.possible_agents = ["player_0", "player_1"]
            box = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
            self.observation_spaces = {a: box for a in self.agents}
            self.action_spaces = {a: gym.spaces.Discrete(2) for a in self.agents}
            self.t = 0

        def _obs(self):
            return {a: np.zeros(1, np.float32) for a in self.agents}

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return self._obs(), {a: {} for a in self.agents}

        def step(self, actions):
            self.t += 1
            reward = payoffs[(int(actions["player_0"]), int(actions["player_1"]))]
            done = self.t >= PD_EPISODE
            rewards = {a: float(r) for a, r in zip(self.agents, reward, strict=True)}
            flags = {a: False for a in self.agents} | {"__all__": False}
            truncs = {a: done for a in self.agents} | {"__all__": done}
            return self._obs(), rewards, flags, truncs, {a: {} for a in self.agents}

    return PdEnv


def make_env_creator(env: str):
    if env == "pd":
        return make_pd_env_class()
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    if env == "simple_spread":
        from mpe2 import simple_spread_v3

        return lambda config=None: ParallelPettingZooEnv(simple_spread_v3.parallel_env(N=6))
    from drima.env_server.mpe import collection

    return lambda config=None: ParallelPettingZooEnv(collection.parallel_env())


def ppo_config(env: str, a: argparse.Namespace):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    creator = make_env_creator(env)
    register_env(f"drima_{env}", creator)
    agents = list(creator({}).possible_agents)
    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(f"drima_{env}")
        .framework("torch")
        .env_runners(num_env_runners=a.num_env_runners, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .multi_agent(policies=set(agents), policy_mapping_fn=lambda agent_id, *args, **kw: agent_id)
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={x: RLModuleSpec() for x in agents}),
            model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False),
        )
        .training(train_batch_size_per_learner=a.train_batch, minibatch_size=a.minibatch, num_epochs=a.epochs)
        .reporting(metrics_num_episodes_for_smoothing=10)
        .debugging(seed=0)
    )


def rllib_child(env: str, a: argparse.Namespace) -> None:
    """Trains until --env-steps env steps are sampled; writes {env_steps, train_s, ...} to a.child_out."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=a.ray_cpus, include_dashboard=False, log_to_driver=False)
    algo = ppo_config(env, a).build_algo()
    steps, train_s, iters = 0, 0.0, 0
    while steps < a.env_steps:
        t0 = time.perf_counter()
        result = algo.train()
        train_s += time.perf_counter() - t0
        iters += 1
        steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
    Path(a.child_out).write_text(json.dumps({"env_steps": steps, "train_s": train_s, "iterations": iters}))
    algo.stop()
    ray.shutdown()


# --- Measuring a process tree ---


def watch(cmd: list[str], timeout_s: float) -> tuple[int | None, str, float, int, float]:
    """Runs cmd; returns (exit status, stderr tail, peak total PSS MB, processes at the peak, wall s)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    memory = MemorySampler(proc.pid)  # within scale.py's CPU budget: both rows pay alike, and little
    while proc.poll() is None and time.time() - t0 < timeout_s:
        memory.maybe_sample()
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
    err = proc.communicate()[1] or ""
    procs = sum(len(ps) for ps in memory.peak_by_role.values())
    return proc.returncode, err.strip()[-300:], memory.peak_total, procs, time.time() - t0


def run_rllib(env: str, a: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="drima-rllib-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", env, "--child-out", str(out), "--env-steps", str(a.env_steps),
               "--num-env-runners", str(a.num_env_runners), "--ray-cpus", str(a.ray_cpus), "--train-batch",
               str(a.train_batch), "--minibatch", str(a.minibatch), "--epochs", str(a.epochs)]
        rc, err, peak, procs, wall = watch(cmd, a.timeout)
        res = json.loads(out.read_text()) if out.exists() else {}
    rate = res["env_steps"] / res["train_s"] if res else None
    status = "completed" if res else f"failed (exit {rc}): {err}"
    setup = (f"PPO, {a.num_env_runners} remote env runners, batch {a.train_batch}, minibatch {a.minibatch}, "
             f"{a.epochs} epochs, ray.init(num_cpus={a.ray_cpus})")
    return _row("rllib", env, res.get("env_steps"), rate, peak, procs, wall, setup, status)


def run_drima(env: str, a: argparse.Namespace) -> dict:
    n = N_AGENTS[env]
    steps = -(-a.env_steps // a.K)
    with tempfile.TemporaryDirectory(prefix="drima-cmp-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "drima.launch", *DRIMA_ENV[env], "--n", str(n), "--topology", "ring", "--algo",
               a.drima_algo, "--mode", a.drima_mode, "--envs", str(a.K), "--steps", str(steps), "--log-every",
               str(max(10, steps // 20)), "--run-dir", str(run_dir), "--quiet"]
        rc, err, peak, procs, wall = watch(cmd, a.timeout)
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {"status": f"no summary (exit {rc}): {err}"}
    setup = f"{a.drima_algo}-{a.drima_mode}, ring, K={a.K}, {steps} steps"
    return _row("drima", env, steps * a.K, summary.get("env_steps_per_s"), peak, procs, wall, setup,
                summary.get("status", ""))


def _row(system, env, env_steps, rate, peak, procs, wall, setup, status) -> dict:
    return {"system": system, "env": env, "agents": N_AGENTS[env], "env steps": env_steps or "",
            "env steps/s": round(rate) if rate else "", "peak total PSS (MB)": round(peak), "processes": procs,
            "wall (s)": round(wall, 1), "load (1 min)": round(os.getloadavg()[0], 2), "setup": setup,
            "status": status}


# --- Output ---


def table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def write_md(path: Path, rows: list[dict], command: str, version: str) -> None:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    text = (f"# DRIMA next to RLlib\n\nCommand: `{command}`\n\n"
            f"Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}; Python {platform.python_version()}, "
            f"ray {version}, torch {torch.__version__}. Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
            f"\n\n{table(rows)}\n\nenv steps/s: rllib, num_env_steps_sampled_lifetime over the wall time of "
            "train() (start-up excluded); drima, summary.json's env_steps_per_s (start-up excluded). "
            "peak total PSS: the sum over the whole process tree, sampled at most once a second, within 2 % of "
            "the cores. "
            "load: 1-minute load average when the row ended. Not a like-for-like learner comparison: rllib runs PPO "
            "(several epochs per batch) on one env copy, drima one A2C process per agent on K copies; both figures "
            "include learning time. See the script's docstring for the setups.\n")
    path.write_text(text)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["collection", "pd"], choices=list(N_AGENTS))
    p.add_argument("--systems", nargs="+", default=["rllib", "drima"], choices=["rllib", "drima"])
    p.add_argument("--env-steps", type=int, default=20000, help="budget of env steps per row")
    p.add_argument("--num-env-runners", type=int, default=1, help="rllib: remote EnvRunners (0: in the driver)")
    p.add_argument("--ray-cpus", type=int, default=2, help="rllib: ray.init(num_cpus=...)")
    p.add_argument("--train-batch", type=int, default=2000, help="rllib: train_batch_size_per_learner (env steps)")
    p.add_argument("--minibatch", type=int, default=500, help="rllib: PPO minibatch size")
    p.add_argument("--epochs", type=int, default=4, help="rllib: PPO epochs per batch")
    p.add_argument("-K", type=int, default=8, help="drima: env copies (--envs of drima-launch)")
    p.add_argument("--drima-algo", default="a2c")
    p.add_argument("--drima-mode", default="ind", choices=["ind", "dri"])
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a row is killed")
    p.add_argument("--out", default="benchmarks/results/rllib_compare.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> int:
    a = parse_args()
    version = ray_version()
    if version is None:
        print("rllib_compare: ray[rllib] is not installed in this Python (it is not a DRIMA dependency); "
              "pip install 'ray[rllib]==2.60.0' in a venv to run it")
        return 2
    if a.child:
        rllib_child(a.child, a)
        return 0
    command = " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv])
    rows = []
    for env in a.envs:
        for system in a.systems:
            row = (run_rllib if system == "rllib" else run_drima)(env, a)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            rows.append(row)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            write_md(Path(a.out), rows, command, version)
    print(table(rows))
    return 0 if all(r["status"] == "completed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
