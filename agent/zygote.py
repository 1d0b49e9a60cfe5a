"""The zygote: one process per run and node that imports torch and the learners once, then forks
every agent process of the run, so that the agents share those pages copy-on-write.

`import torch` alone is about 220 MB per process; forked from the zygote, an agent adds only
what it writes (its networks, buffers and sockets). The launcher starts the zygote (title
`drima-zygote <run_dir>`) and talks to it over a socket pair, one JSON object a line:

    launcher -> zygote   {"op": "validate", "cfg": LaunchConfig fields}
                         {"op": "spawn", "argv": drima-agent's arguments, "log": log file}
    zygote -> launcher   {"reply": "validate", "cfg": ...} or {"reply": "validate", "error": ...}
                         {"reply": "spawn", "pid": PID}
                         {"exit": PID, "status": S}   (whenever a child ends; S as Popen's returncode)

Validation runs here too (it builds a learner, and reads checkpoints), so that the launcher
never imports torch. Each child is `drima-agent`'s own `main` with its stdout and stderr on its
log file; it gets SIGTERM when the zygote ends (PR_SET_PDEATHSIG), and the zygote gets SIGTERM
when the launcher's run thread ends, so that killing the launcher leaves no agent behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import traceback

from drima.config import config_from_dict
from drima.jsonlines import Closed, JsonLines
from drima.logs import setup_logging
from drima.procinfo import die_with_parent, set_process_title

log = logging.getLogger("drima.zygote")


def preload() -> None:
    """What every agent imports, imported once here before any fork; one thread for torch."""
    import torch

    import drima.agent.__main__  # noqa: F401  (the agents' entry point and all it imports)
    import drima.agent.learners  # noqa: F401

    torch.set_num_threads(1)


def validate(fields: dict) -> dict:
    """drima.launch.validate on the launcher's config: the validated fields, or the error."""
    from drima.launch.plan import LaunchConfig
    from drima.launch.validate import ConfigError
    from drima.launch.validate import validate as check

    try:
        return {"cfg": dataclasses.asdict(check(config_from_dict(LaunchConfig, fields)))}
    except ConfigError as exc:
        return {"error": str(exc), "config_error": True}
    except Exception:  # a bug in a check: the launcher shows the traceback
        return {"error": traceback.format_exc()}
    finally:
        gc.collect()  # the envs and learners built to check them, before the next fork


class Zygote:
    def __init__(self, control: socket.socket):
        self.link = JsonLines(control)
        self.wake_r, self.wake_w = os.pipe()  # SIGCHLD wakes the select below
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd needs a handler
        signal.set_wakeup_fd(self.wake_w)
        self.children: set[int] = set()

    def serve(self) -> int:
        """Answer requests and report exits until the launcher closes its end."""
        sel = selectors.DefaultSelector()
        sel.register(self.link.sock, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in sel.select():
                    if key.fileobj == self.wake_r:
                        self._drain_wakeups()
                    else:
                        for msg in self.link.receive(0):
                            self.link.send(self.handle(msg))
                self.reap()
        except (Closed, BrokenPipeError, ConnectionResetError):  # the launcher is done, or gone
            return 0

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def handle(self, msg: dict) -> dict:
        """One request's reply; a malformed request gets an error reply, and the zygote goes on."""
        op = msg.get("op")
        try:
            if op == "validate":
                return {"reply": "validate", **validate(dict(msg["cfg"]))}
            if op == "spawn":
                argv, log_path = [str(a) for a in msg["argv"]], str(msg["log"])
                return {"reply": "spawn", "pid": self.fork(argv, log_path)}
        except (KeyError, TypeError, ValueError) as exc:
            log.error("bad %r request: %s: %s", op, type(exc).__name__, exc)
            return {"reply": op, "error": f"bad {op!r} request: {type(exc).__name__}: {exc}"}
        log.error("unknown request %r", op)
        return {"reply": op, "error": f"unknown request {op!r}"}

    def reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            self.children.discard(pid)
            self.link.send({"exit": pid, "status": os.waitstatus_to_exitcode(status)})

    def fork(self, argv: list[str], log_path: str) -> int:
        threads = len(os.listdir("/proc/self/task"))
        if threads > 1:  # forking copies only this thread: another's locks would stay held in the child
            log.warning("forking with %d threads in the zygote", threads)
        gc.collect()
        gc.freeze()  # what exists now is never scanned again: the collector does not dirty shared pages
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._child(parent, argv, log_path)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children.add(pid)
        return pid

    def _child(self, parent: int, argv: list[str], log_path: str) -> int:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        self.link.close()
        die_with_parent()
        if os.getppid() != parent:  # the zygote ended before the line above: no one will stop us
            return 1
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        from drima.agent.__main__ import main

        try:
            return main(argv)
        except SystemExit as exc:  # argparse's exit on a bad config
            return exc.code if isinstance(exc.code, int) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drima.agent.zygote", description=__doc__)
    parser.add_argument("--control-fd", type=int, required=True, help="the launcher's end of a socket pair")
    parser.add_argument("--run-dir", required=True, help="the run's folder (for the process title)")
    args = parser.parse_args(argv)
    setup_logging("zygote")
    set_process_title("zygote", args.run_dir)
    preload()
    return Zygote(socket.socket(fileno=args.control_fd)).serve()


if __name__ == "__main__":
    sys.exit(main())
