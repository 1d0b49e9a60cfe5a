"""Metrics as CSV files: one row per logging interval, flushed at once so that a crash
loses nothing already reported. The launcher tails these files for its progress line and
reads them back for plots. Each row can also go to extra sinks (`--logger tensorboard`,
drima/loggers.py); the CSV is always written."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from typing import Protocol

AXES = ("step", "env_steps", "wall_s")
"""row keys that say when a row was written, not what was measured: not sent to sinks as values"""


class MetricsSink(Protocol):
    """Somewhere besides the CSV that every metrics row goes to (e.g. a TensorBoard event file)."""

    def write(self, env_steps: int, values: dict[str, float]) -> None:
        """Record one row's values at x = env_steps, on disk before returning (a crash loses
        nothing written). `values` holds only the keys that had samples in the interval."""

    def close(self) -> None:
        ...


class MetricsWriter:
    def __init__(self, path: str | Path, fields: list[str], append: bool = False,
                 sinks: Sequence[MetricsSink] = ()):
        self.path = Path(path)
        self.fields = fields
        self.sinks = list(sinks)
        exists = append and self.path.exists() and self.path.stat().st_size > 0
        self._file = open(self.path, "a" if exists else "w", newline="", buffering=1)
        self._writer = csv.DictWriter(self._file, fieldnames=fields, extrasaction="ignore")
        if not exists:
            self._writer.writeheader()
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # per key: episode metrics and losses do not come every step

    def accumulate(self, values: dict[str, float]) -> None:
        """Add one sample of each value to the running means of this interval."""
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
            self._counts[k] = self._counts.get(k, 0) + 1

    def write(self, row: dict[str, float | int | str]) -> None:
        """Write one row: `row` plus the interval means accumulated so far (each over its own
        samples; a key with none stays empty), then reset them. With sinks, `row` must carry
        env_steps: each sink gets the row's numeric CSV fields, less AXES and empty ones."""
        full = {k: round(v / self._counts[k], 6) for k, v in self._sums.items()} | row
        self._writer.writerow(full)
        self._file.flush()
        if self.sinks:
            values = {k: float(full[k]) for k in self.fields
                      if k not in AXES and isinstance(full.get(k), Real)}
            for sink in self.sinks:
                sink.write(int(full["env_steps"]), values)
        self._sums, self._counts = {}, {}

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """All complete rows of a metrics CSV (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if None not in r.values() and None not in r]


def last_row(path: str | Path) -> dict[str, str] | None:
    """The last complete row, reading only the header and the file's tail (cheap to poll)."""
    rows = tail_rows(path, 1)
    return rows[-1] if rows else None


def tail_rows(path: str | Path, n: int, row_bytes: int = 400) -> list[dict[str, str]]:
    """Up to the last `n` complete rows, reading only the header and about n * row_bytes bytes of
    the file's tail (cheap to poll however long the run)."""
    try:
        with open(path, "rb") as f:
            header = f.readline().decode()
            f.seek(0, io.SEEK_END)
            start = max(len(header), f.tell() - max(4096, n * row_bytes))
            f.seek(start)
            tail = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    lines = [ln for ln in tail.split("\n")[:-1] if ln]  # the part after the last newline may be torn
    if start > len(header):
        lines = lines[1:]  # the first line read may be the end of a row
    if not header or not lines:
        return []
    rows = csv.DictReader([header, *lines[-n:]])
    return [r for r in rows if None not in r.values() and None not in r]


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write JSON to a temporary file, then rename it over `path`: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
