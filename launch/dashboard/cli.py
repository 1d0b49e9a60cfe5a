"""`drima-dashboard RUN_DIR`: the live view of a run, running or finished, from any machine that
can read its folder.

    drima-dashboard runs/latest                # http://127.0.0.1:8765/
    drima-dashboard runs/latest --port 9000 --bind 0.0.0.0
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from .server import DEFAULT_BIND, DEFAULT_PORT, DashboardServer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drima-dashboard", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's folder (drima-launch --run-dir)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to serve on (0: any free port)")
    p.add_argument("--bind", default=DEFAULT_BIND,
                   help="address to serve on; the page shows the run to whoever reaches it (0.0.0.0: everyone)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="drima-dashboard: %(levelname)s %(message)s")
    parser = build_parser()
    a = parser.parse_args(argv)
    if not Path(a.run_dir).is_dir():
        parser.error(f"{a.run_dir}: no such folder")
    if not 0 <= a.port <= 65535:
        parser.error(f"--port {a.port}: a port is 0..65535")
    try:
        server = DashboardServer(a.run_dir, a.port, a.bind)
    except OSError as exc:
        parser.error(f"cannot serve on {a.bind}:{a.port}: {exc.strerror or exc}")
    print(f"drima-dashboard: {a.run_dir} on {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.start()
        threading.Event().wait()  # the server thread serves; this one waits for Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
