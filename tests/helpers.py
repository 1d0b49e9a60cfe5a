import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_launch(run_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the real `drima-launch` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def wait_for_env_rows(run_dir: Path, rows: int, timeout: float = 90) -> Path:
    """Wait until the env server's metrics.csv has `rows` lines (the run is under way); its path."""
    metrics = Path(run_dir) / "env_server" / "metrics.csv"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < rows):
        time.sleep(0.1)
    return metrics


def _cmdlines():
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        yield int(pid), raw.replace(b"\0", b" ").decode(errors="replace").strip()


def drima_processes_for(run_dir) -> list[str]:
    """'pid: title' of the live processes of one run, found by their titles
    (`drima-agent 3 <run_dir>`, `drima-env-server <run_dir>`, `drima-launch <run_dir>`)."""
    suffix = f" {Path(run_dir).resolve()}"
    return [f"{pid}: {cmd}" for pid, cmd in _cmdlines() if cmd.startswith("drima-") and cmd.endswith(suffix)]


def pid_of(run_dir, role: str) -> int:
    """The pid of the one live process titled `drima-<role> <run_dir>`, e.g. role="agent 2"."""
    title = f"drima-{role} {Path(run_dir).resolve()}"
    pids = [pid for pid, cmd in _cmdlines() if cmd == title]
    assert len(pids) == 1, f"{len(pids)} processes titled {title!r}"
    return pids[0]


def load_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())



def hand_driven_agents(ctx, addr: str, n: int) -> tuple[list, list[dict]]:
    """n DEALER sockets that join an env server as agents 0..n-1 (HELLO, SPEC, READY), for tests
    that drive the protocol by hand; returns the sockets and the specs they were sent."""
    import zmq

    from drima import protocol

    socks, specs = [], []
    for i in range(n):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, str(i).encode())
        s.setsockopt(zmq.RCVTIMEO, 10000)
        s.connect(addr)
        s.send(protocol.encode(protocol.HELLO, i, 0, {}))
        specs.append(protocol.decode(s.recv()).body)
        s.send(protocol.encode(protocol.READY, i, 0, {}))
        socks.append(s)
    return socks, specs


def without_package(tmp_path: Path, name: str) -> dict[str, str]:
    """An environment in which every process of a run (the launcher, the zygote that validates
    for it, the agents) finds a package `name` whose import fails as if it were not installed."""
    stub = Path(tmp_path) / f"no_{name}" / name
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(f'raise ModuleNotFoundError("no {name} here", name="{name}")\n')
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")])}
