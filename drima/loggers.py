"""Extra metrics sinks beside the CSV, chosen with `--logger` (a comma list; the CSV is always
written, so `csv` is the default and `tensorboard` means CSV and TensorBoard).

Every process writes its sinks' files into its own folder (RUN_DIR/agent_3/, RUN_DIR/env_server/),
so `tensorboard --logdir RUN_DIR` shows one run per process, with the same tags for every agent.
Nothing here imports torch: the env server and the launcher log without it.
"""

from __future__ import annotations

import time
from pathlib import Path

from drima.metrics import MetricsSink

LOGGERS = ("csv", "tensorboard")


class LoggerUnavailable(ValueError):
    """A logger's package is not installed; the message says what to install."""


def parse_loggers(spec: str) -> list[str]:
    """'csv' | 'tensorboard' | 'csv,tensorboard' -> the names, each once; ValueError on an unknown one."""
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    bad = [n for n in names if n not in LOGGERS]
    if bad or not names:
        raise ValueError(f"{f'unknown logger {bad[0]!r}' if bad else 'no logger'} in {spec!r}: "
                         f"use {' | '.join(LOGGERS)}, or several joined by commas")
    return names


def check_loggers(spec: str) -> None:
    """Fail in the launcher, before any process starts, if a logger's package is missing."""
    if "tensorboard" in parse_loggers(spec):
        try:
            _tensorboard()
        except ImportError as exc:
            cause = "" if (exc.name or "").split(".")[0] == "tensorboard" else f" ({exc})"
            raise LoggerUnavailable('--logger tensorboard needs the tensorboard package: '
                                    f'pip install -e ".[tensorboard]"{cause}') from None


def make_sinks(spec: str, folder: str | Path) -> list[MetricsSink]:
    """The sinks of a --logger spec, writing into `folder` (csv is MetricsWriter's own file)."""
    return [TensorBoardSink(folder) for name in parse_loggers(spec) if name == "tensorboard"]


def _tensorboard():
    # TensorBoard's own event-file writer, without TensorFlow or torch (torch's SummaryWriter wraps it)
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return EventFileWriter, event_pb2, summary_pb2


class TensorBoardSink:
    """Scalars into a new TensorBoard event file in `folder` (a resumed or restarted process adds
    its own file beside the old ones). One event per row, at step = env steps, flushed at once."""

    def __init__(self, folder: str | Path):
        EventFileWriter, self._event_pb2, self._summary_pb2 = _tensorboard()
        self._writer = EventFileWriter(str(folder))

    def write(self, env_steps: int, values: dict[str, float]) -> None:
        if not values:
            return
        Value = self._summary_pb2.Summary.Value
        summary = self._summary_pb2.Summary(value=[Value(tag=k, simple_value=v) for k, v in values.items()])
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=env_steps, summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
