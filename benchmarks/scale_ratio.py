"""n=64 against n=8, measured so that this machine's drift cannot decide it (issue 17's bar: 64
agents within 20 % of 8 in agent steps/s).

One pair of runs settles nothing here: between two runs minutes apart the same n=8 run went
from 4,576 to 7,215 agent steps/s. So the two sizes run in turn, R rounds, in ABBA order
(small, big, big, small, ...), so that a steady drift weighs on both alike, and each round gives
a ratio of two runs that were next to each other. Each run is one `benchmarks/scale.py`
measurement (a real `drima-launch --topology ring`); printed and written to OUT.md: every
round's agent steps/s and ratio (whole run and second half), and their medians. Memory is not
sampled unless `--memory-budget` asks for it: reading every process's smaps_rollup costs CPU,
far more at n=64 than at n=8, so it would weigh on the big run only (see scale.py).

    python benchmarks/scale_ratio.py --env collection --ns 8 64 --rounds 4 \
        --launch-args "--algo a2c --heartbeat-liveness 20"
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

from scale import measure

RATES = ("agent_steps_per_s", "steady_agent_steps_per_s")


def rounds_in_abba(small: int, big: int, rounds: int) -> list[tuple[int, int]]:
    """(round, n) in the order they run: small, big, big, small, small, big, ..."""
    order = []
    for r in range(rounds):
        order += [(r, small), (r, big)] if r % 2 == 0 else [(r, big), (r, small)]
    return order


def ratio(rows: dict[int, dict], small: int, big: int, key: str) -> float | None:
    """Per-agent throughput at `big` against `small`, minus 1 (−0.2: 20 % slower)."""
    a, b = rows[small].get(key), rows[big].get(key)
    return float(b) / float(a) - 1 if a and b else None


def pct(x: float | None) -> str:
    return f"{x:+.0%}" if x is not None else "n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="collection", choices=["pd", "collection"])
    p.add_argument("--ns", nargs=2, type=int, default=[8, 64], metavar=("SMALL", "BIG"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("-K", type=int, default=8)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--launch-args", default="--heartbeat-liveness 20", help="more drima-launch flags")
    p.add_argument("--memory-budget", type=float, default=0.0,
                   help="%% of the cores scale.py's memory sampler may take (default 0: none; the ratio is throughput)")
    p.add_argument("--out", default=None, help="OUT.md (default: benchmarks/results/scale_ratio_<env>.md)")
    a = p.parse_args()
    small, big = a.ns
    out = Path(a.out or f"benchmarks/results/scale_ratio_{a.env}.md")
    by_round: dict[int, dict[int, dict]] = {}
    for r, n in rounds_in_abba(small, big, a.rounds):
        row = measure(a.env, n, a.K, a.steps, a.timeout, shlex.split(a.launch_args), a.memory_budget)
        print(f"round {r} n={n}: agent steps/s {row['agent_steps_per_s']} "
              f"(2nd half {row['steady_agent_steps_per_s']}), other work {row['other_cpu_pct']} % of the cores, "
              f"{row['status']}", flush=True)
        by_round.setdefault(r, {})[n] = row
    lines = [f"# {a.env}: n={big} against n={small}, {a.rounds} rounds in ABBA order", "",
             "Command: `python " + " ".join(shlex.quote(x) for x in sys.argv) + "`", "",
             f"Memory sampler: {f'{a.memory_budget:g} % of the cores' if a.memory_budget > 0 else 'off'}.", "",
             f"| round | algo | agent steps/s n={small} | n={big} | n={big} against n={small} "
             f"| 2nd half: n={small} / n={big} | against n={small} | other CPU, % of cores: n={small} / n={big} "
             "| status |", "|---|---|---|---|---|---|---|---|---|"]
    ratios: dict[str, list[float]] = {key: [] for key in RATES}
    for r, rows in sorted(by_round.items()):
        got = {key: ratio(rows, small, big, key) for key in RATES}
        for key, value in got.items():
            if value is not None:
                ratios[key].append(value)
        status = "; ".join(sorted({rows[small]["status"], rows[big]["status"]}))
        a_, b_ = rows[small], rows[big]
        lines.append(f"| {r} | {a_['algo']} | {a_['agent_steps_per_s']} | {b_['agent_steps_per_s']} "
                     f"| {pct(got[RATES[0]])} | {a_['steady_agent_steps_per_s']} / {b_['steady_agent_steps_per_s']} "
                     f"| {pct(got[RATES[1]])} | {a_['other_cpu_pct']} / {b_['other_cpu_pct']} | {status} |")
    medians = {key: statistics.median(v) if v else None for key, v in ratios.items()}
    lines.append(f"| median | | | | **{pct(medians[RATES[0]])}** | | **{pct(medians[RATES[1]])}** | | |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = any(row["status"] != "completed" for rows in by_round.values() for row in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
