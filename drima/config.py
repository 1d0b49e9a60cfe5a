"""The one config system: dataclasses, written to and read from JSON.

The launcher writes each process's config into the run directory; the process reads it back.
Unknown or missing fields are an error that names them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n")


def load_config(cls: type[T], path: str | Path) -> T:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    return config_from_dict(cls, data, str(path))


def config_from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"{source}: {exc}") from None
