"""Metrics rows: every value is the mean over its own samples in the interval."""

import csv

from drima.metrics import MetricsWriter


def test_values_that_come_at_different_rates_are_averaged_over_their_own_samples(tmp_path):
    w = MetricsWriter(tmp_path / "m.csv", ["step", "team_reward", "won"])
    for t in range(10):  # a reward every step, an episode result twice
        w.accumulate({"team_reward": 1.0})
        if t in (3, 7):
            w.accumulate({"won": float(t == 7)})
    w.write({"step": 10})
    w.accumulate({"team_reward": 3.0})  # an interval without any episode: its cell stays empty
    w.write({"step": 11})
    w.close()
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [(r["team_reward"], r["won"]) for r in rows] == [("1.0", "0.5"), ("3.0", "")]
