"""`drima-env-server --config PATH`: run the environment server (the launcher starts it)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from drima.config import load_config
from drima.logs import setup_logging
from drima.procinfo import set_process_title

from .server import EnvServer, EnvServerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drima-env-server", description=__doc__)
    parser.add_argument("--config", required=True, help="env server config JSON written by drima-launch")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(EnvServerConfig, args.config)
    except ValueError as exc:
        parser.exit(2, f"drima-env-server: error: {exc}\n")
    setup_logging("env-server")
    set_process_title("env-server", Path(cfg.run_dir).parent)
    try:
        server = EnvServer(cfg)
    except ValueError as exc:  # an env or mode it cannot serve (e.g. ctde without a global state): one line
        parser.exit(2, f"drima-env-server: error: {exc}\n")

    def on_term(signum, frame):  # the launcher owns shutdown: stop the loop, tell agents, write stats
        server.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
