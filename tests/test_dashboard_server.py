"""The dashboard's web server and its two entry points: bad requests and folders that are not run
folders get a one-line JSON error and the server goes on serving; bad flags stop the CLIs with
one line."""

import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from drima.launch.dashboard.server import DashboardServer, page


@pytest.fixture
def server(tmp_path):
    srv = DashboardServer(tmp_path / "run", port=0).start()
    yield srv
    srv.close()


def _get(srv: DashboardServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.request(method, path)
    r = conn.getresponse()
    out = r.status, r.getheader("Content-Type"), r.read()
    conn.close()
    return out


def _raw(srv: DashboardServer, data: bytes) -> bytes:
    with socket.create_connection(srv.server_address[:2], timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _one_line_error(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert "\n" not in error
    return error


def test_bad_requests_and_missing_run_get_one_line_and_the_server_survives(server, tmp_path):
    code, kind, body = _get(server, "/status.json")
    assert (code, kind) == (404, "application/json")
    assert _one_line_error(body) == f"{tmp_path / 'run'}: no such folder (yet)"
    (tmp_path / "run").mkdir()
    assert "no launch.json" in _one_line_error(_get(server, "/status.json")[2])
    code, _, body = _get(server, "/../../etc/passwd")
    assert code == 404 and "the dashboard serves / and /status.json" in _one_line_error(body)
    code, _, body = _get(server, "/status.json", method="POST")
    assert code == 501 and _one_line_error(body) == "Unsupported method ('POST')"
    assert b"Bad request" in _raw(server, b"GARBAGE\r\n\r\n")
    assert b" 414 " in _raw(server, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")  # a request line too long
    # a launch.json in a shape no launcher writes: a 500 with the reason, not a dead server
    (tmp_path / "run" / "launch.json").write_text(json.dumps({"n": 2, "topology": 5, "seed": "x"}))
    code, _, body = _get(server, "/status.json")
    assert code == 500 and _one_line_error(body).startswith(f"reading {tmp_path / 'run'}: ")
    # ... and once the folder is a run's, the same server answers
    (tmp_path / "run" / "launch.json").write_text(json.dumps({"n": 2, "topology": "full", "env": "pd"}))
    code, _, body = _get(server, "/status.json?ignored=1")
    status = json.loads(body)
    assert code == 200 and status["run"]["status"] == "starting"
    assert [a["state"] for a in status["agents"]] == ["alive", "alive"]
    assert [(x["a"], x["b"]) for x in status["links"]] == [(0, 1)]
    code, kind, body = _get(server, "/")
    assert (code, kind) == (200, "text/html; charset=utf-8") and body == page()


def test_page_fetches_nothing_from_elsewhere():
    html = page().decode()
    assert not re.search(r"\b(src|href)\s*=", html)  # no script, style sheet or font from anywhere
    assert re.findall(r"fetch\(([^,)]*)", html) == ['"/status.json"']
    assert re.findall(r"https?://[^\s\"'`]+", html) == ["http://www.w3.org/2000/svg"]  # the SVG namespace, a name
    assert "data-agent" in html and "data-state" in html


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def test_drima_dashboard_cli_errors(tmp_path):
    out = _cli("-m", "drima.launch.dashboard.cli", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and out.stderr.splitlines()[-1] == \
        f"drima-dashboard: error: {tmp_path / 'nowhere'}: no such folder"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _cli("-m", "drima.launch.dashboard.cli", str(tmp_path), "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == \
        f"drima-dashboard: error: cannot serve on 127.0.0.1:{port}: Address already in use"


@pytest.mark.slow
def test_drima_launch_dashboard_flag_errors(tmp_path):
    out = _cli("-m", "drima.launch", "--dashboard", "70000", "--run-dir", str(tmp_path / "a"), "--quiet")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == \
        "drima-launch: error: --dashboard 70000: a port is 0..65535 (0: any free port)"
    out = _cli("-m", "drima.launch", "--dashboard-bind", "0.0.0.0", "--run-dir", str(tmp_path / "b"), "--quiet")
    assert out.returncode == 2 and "--dashboard-bind is an option of --dashboard" in out.stderr.splitlines()[-1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _cli("-m", "drima.launch", "--dashboard", str(port), "--run-dir", str(tmp_path / "c"), "--quiet")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (f"drima-launch: error: --dashboard {port}: cannot serve on "
                                           f"127.0.0.1:{port} (Address already in use)")
    assert not (tmp_path / "c").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_a_wheel_ships_the_page(tmp_path):
    root, src = Path(__file__).resolve().parents[1], tmp_path / "src"  # a copy: the build leaves build/ behind
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(exist_ok=True)
        shutil.copy(root / name, src / name)
    for folder in ("drima", "agent", "env_server", "topology", "launch"):
        shutil.copytree(root / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = _cli("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src),
               timeout=280)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("drima-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "drima/launch/dashboard/index.html" in names and "drima/launch/dashboard/status.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "drima-dashboard = drima.launch.dashboard.cli:main" in entry_points
