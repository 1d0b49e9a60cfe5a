"""The one logging path: every process logs to stderr with its role in each line; the
launcher points each child's stderr at that process's log file."""

from __future__ import annotations

import logging
import os


def setup_logging(role: str, level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("DRIMA_LOG_LEVEL", "INFO")).upper(),
        format=f"%(asctime)s.%(msecs)03d {role} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
