"""DRIMA: a decentralized multi-process runtime for Differential Reward Interaction MARL.

    from drima import LaunchConfig, run

    result = run(LaunchConfig(env="pd", n=2, steps=300, run_dir="runs/pd"))

The names below load on first use, so that `import drima` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "run": "drima.launch.api",
    "RunResult": "drima.launch.api",
    "AgentResult": "drima.launch.api",
    "LaunchConfig": "drima.launch.plan",
    "validate": "drima.launch.validate",
    "ConfigError": "drima.launch.validate",
    "check_env": "drima.env_server.check",
}
__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from drima.env_server.check import check_env as check_env
    from drima.launch.api import AgentResult as AgentResult
    from drima.launch.api import RunResult as RunResult
    from drima.launch.api import run as run
    from drima.launch.plan import LaunchConfig as LaunchConfig
    from drima.launch.validate import ConfigError as ConfigError
    from drima.launch.validate import validate as validate


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'drima' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
