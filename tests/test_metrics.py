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


class ListSink:
    """A MetricsSink that keeps what it is given."""

    def __init__(self):
        self.rows, self.closed = [], False

    def write(self, env_steps, values):
        self.rows.append((env_steps, values))

    def close(self):
        self.closed = True


def test_sinks_get_each_row_at_env_steps_without_axes_or_empty_values(tmp_path):
    sink = ListSink()
    w = MetricsWriter(tmp_path / "m.csv", ["step", "env_steps", "wall_s", "reward", "won"], sinks=[sink])
    w.accumulate({"reward": 1.0})
    w.accumulate({"reward": 2.0})
    w.write({"step": 50, "env_steps": 400, "wall_s": 1.5, "extra": 3.0})  # not a CSV field: not sent either
    w.accumulate({"won": 1.0})
    w.write({"step": 100, "env_steps": 800, "wall_s": 3.0})
    assert sink.rows == [(400, {"reward": 1.5}), (800, {"won": 1.0})] and not sink.closed
    w.close()
    assert sink.closed
