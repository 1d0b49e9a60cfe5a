"""--logger tensorboard: every metrics row also goes to a TensorBoard event file in the process's
own folder, read back here with TensorBoard's own reader; the CSV is always written."""

import csv
import shutil
import subprocess
import sys

import pytest

from drima.launch.plan import LaunchConfig, plan_run
from drima.loggers import make_sinks, parse_loggers
from drima.metrics import AXES, MetricsWriter
from helpers import run_launch, without_package


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every event file in `folder`, as TensorBoard reads them."""
    reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = reader.EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def csv_series(path) -> dict[str, list[tuple[int, float]]]:
    """column -> [(env_steps, value)] of a metrics.csv, skipping empty cells and the axes."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k not in AXES and v != "":
                    series.setdefault(k, []).append((int(row["env_steps"]), float(v)))
    return series


def assert_same_series(tb: dict, table: dict) -> None:
    assert sorted(tb) == sorted(table)
    for tag, points in table.items():
        assert [s for s, _ in tb[tag]] == [s for s, _ in points], tag
        # event files hold float32, the CSV six decimals
        assert [v for _, v in tb[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-6), tag


def test_rows_reach_the_event_file_at_env_steps_and_before_close(tmp_path):
    pytest.importorskip("tensorboard")
    w = MetricsWriter(tmp_path / "metrics.csv", ["step", "env_steps", "wall_s", "reward", "actor_loss", "won"],
                      sinks=make_sinks("tensorboard", tmp_path))
    for t in range(1, 31):
        w.accumulate({"reward": t / 3, "actor_loss": -0.5 * t})
        if t % 20 == 0:  # an episode result in the second interval only
            w.accumulate({"won": 1.0})
        if t % 10 == 0:
            w.write({"step": t, "env_steps": t * 8, "wall_s": 0.1 * t, "not_a_field": 7})
    tb = read_scalars(tmp_path)  # the writer is still open: every row is on disk already
    assert tb["won"] == [(160, 1.0)]  # empty cells are no points
    assert tb["reward"][0] == (80, pytest.approx(5.5 / 3))
    assert_same_series(tb, csv_series(tmp_path / "metrics.csv"))
    w.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_csv_alone_makes_no_sink_and_unknown_loggers_are_refused(tmp_path):
    assert make_sinks("csv", tmp_path) == [] and not list(tmp_path.iterdir())
    assert parse_loggers(" csv,tensorboard,csv ") == ["csv", "tensorboard"]
    with pytest.raises(ValueError, match="unknown logger 'tensorbored'"):
        parse_loggers("csv,tensorbored")


def test_the_launch_config_logger_reaches_every_process(tmp_path):
    plan = plan_run(LaunchConfig(n=3, logger="csv,tensorboard", run_dir=str(tmp_path)))
    shutil.rmtree(plan.socket_dir)
    assert [c.logger for c in [plan.env_server, *plan.agents]] == ["csv,tensorboard"] * 4


def test_missing_tensorboard_is_one_line_and_exit_2(tmp_path):
    env = without_package(tmp_path, "tensorboard")
    res = subprocess.run([sys.executable, "-m", "drima.launch", "--run-dir", str(tmp_path / "r"), "--quiet", "--env",
                          "pd", "--steps", "20", "--logger", "tensorboard"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == ('drima-launch: error: --logger tensorboard needs the tensorboard '
                                                   'package: pip install -e ".[tensorboard]"')
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_launch_writes_event_files_that_match_each_process_csv(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    res = run_launch(run, "--env", "pd", "--n", "2", "--steps", "200", "--logger", "tensorboard")
    assert res.returncode == 0, res.stderr
    tags = {}
    for proc in ("agent_0", "agent_1", "env_server"):
        assert len(list((run / proc).glob("events.out.tfevents.*"))) == 1, proc
        tb = read_scalars(run / proc)
        assert_same_series(tb, csv_series(run / proc / "metrics.csv"))
        assert tb and all(len(points) == 4 for points in tb.values()), proc  # 200 steps, a row every 50
        tags[proc] = set(tb)
    assert tags["agent_0"] == tags["agent_1"] >= {"reward", "mu", "conflict_rate", "actor_loss"}
    assert tags["env_server"] >= {"team_reward", "env_steps_per_s"}
    assert read_scalars(run / "env_server")["team_reward"][-1][0] == 200 * 8  # x = env steps (K = 8)
