"""`drima-agent --config PATH`: run one agent process (the launcher starts these)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from drima.config import load_config
from drima.logs import setup_logging
from drima.procinfo import set_process_title

from .config import EXIT_ENV_LOST, AgentConfig
from .process import main_with_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drima-agent", description=__doc__)
    parser.add_argument("--config", required=True, help="agent config JSON written by drima-launch")
    parser.add_argument("--agent-id", type=int, help="for ps/pkill only; must match the config")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(AgentConfig, args.config)
    except ValueError as exc:
        parser.exit(2, f"drima-agent: error: {exc}\n")
    if args.agent_id is not None and args.agent_id != cfg.agent_id:
        parser.exit(2, f"drima-agent: error: --agent-id {args.agent_id} but the config is agent {cfg.agent_id}\n")
    setup_logging(f"agent {cfg.agent_id}")
    set_process_title(f"agent {cfg.agent_id}", Path(cfg.run_dir).parent)  # the run's folder, not agent_<i>
    code = main_with_config(cfg)
    if code == EXIT_ENV_LOST:  # checkpoint fsynced, metrics closed: skip torch's slow teardown (0.2-1 s)
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
