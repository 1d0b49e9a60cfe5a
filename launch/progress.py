"""The live progress line of a run, read from the metrics files the processes write."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from drima.metrics import last_row

from .plan import LaunchConfig


class Progress:
    """One status line: step, env steps/s, team reward, conflict rate, ETA."""

    def __init__(self, cfg: LaunchConfig, quiet: bool):
        self.cfg = cfg
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0
        self.t0 = time.monotonic()

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self.last_print < (0.5 if self.tty else 10.0)):
            return
        self.last_print = now
        run_dir = Path(self.cfg.run_dir)
        env_row = last_row(run_dir / "env_server" / "metrics.csv")
        if env_row is None:
            line = f"[{self._tag()}] starting {self.cfg.n} agents ... {now - self.t0:.0f}s"
        else:
            step = int(env_row["step"])
            conflicts = [float(r["conflict_rate"]) for i in range(self.cfg.n)
                         if (r := last_row(run_dir / f"agent_{i}" / "metrics.csv")) and r.get("conflict_rate")]
            rate = float(env_row["env_steps_per_s"])
            eta = (self.cfg.steps - step) * self.cfg.envs / rate if rate > 0 else float("nan")
            episode = env_row.get("episode_team_return")  # episodic (MPE) envs: the paper's group reward
            reward = (f"episode return {float(episode):.1f}" if episode else
                      f"team reward {float(env_row['team_reward']):.2f}")
            line = (f"[{self._tag()}] step {step}/{self.cfg.steps} ({100 * step / self.cfg.steps:3.0f}%) | "
                    f"{rate:,.0f} env steps/s | {reward} | "
                    f"conflict {np.mean(conflicts) if conflicts else 0:.2f} | eta {eta:.0f}s")
        print(("\r" + line.ljust(110)) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def done(self) -> None:
        if not self.quiet and self.tty:
            print()

    def _tag(self) -> str:
        critics = "+state" if self.cfg.global_state and self.cfg.mode != "ctde" else ""  # centralised critics
        return f"{self.cfg.env} {self.cfg.algo}-{self.cfg.mode}{critics} {self.cfg.topology} n={self.cfg.n}"
