"""The dashboard in a real headless Chromium, on a live run: a 6-agent ring shows six agents; an
agent killed with kill -9 shows `dead` within seconds, and `rejoined` once --restart-failed has
brought it back.

DRIMA_DASHBOARD_SHOTS=DIR keeps the page's screenshots at those moments (docs/dashboard.md's)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chromium import Chromium, agent_states, chromium_path, wait_for_states
from helpers import pid_of, wait_for_env_rows

pytestmark = pytest.mark.slow

DEAD_WITHIN_S = 30.0
"""generous on a busy machine: the launcher sees the exit within 0.1 s and the page polls every second"""


def _dashboard_url(log: Path, launcher: subprocess.Popen, timeout_s: float = 120) -> str:
    """The URL the launcher logs once its dashboard serves (--dashboard 0: any free port)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and launcher.poll() is None:
        found = re.search(r"dashboard: (http://\S+)", log.read_text() if log.exists() else "")
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no dashboard URL in the launcher's log: {log.read_text()[-2000:]}")


def _keep(shot: Path, name: str) -> None:
    if os.environ.get("DRIMA_DASHBOARD_SHOTS"):
        shutil.copy(shot, Path(os.environ["DRIMA_DASHBOARD_SHOTS"]) / name)


@pytest.mark.skipif(chromium_path() is None,
                    reason="no chromium on PATH and it could not be installed here (.ci/run: apt-get install chromium)")
def test_live_ring_page_shows_a_killed_agent_dead_then_rejoined(tmp_path):
    run_dir, log = tmp_path / "ring6", tmp_path / "launcher.log"
    with open(log, "w") as log_file:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet", "--env", "pd",
             "--topology", "ring", "--n", "6", "--steps", "1000000", "--checkpoint-every", "100",
             "--restart-failed", "--restart-delay", "6", "--dashboard", "0"],
            stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = _dashboard_url(log, launcher)
        assert url.startswith("http://127.0.0.1:")  # loopback unless --dashboard-bind says otherwise
        with Chromium() as browser:
            page = browser.open(url)
            states, _ = wait_for_states(page, lambda s: len(s) == 6, timeout_s=120)
            assert states == {str(i): "alive" for i in range(6)}
            wait_for_env_rows(run_dir, 5, timeout=180)  # under way, past agent 2's first checkpoint
            t_kill = time.monotonic()
            os.kill(pid_of(run_dir, "agent 2"), signal.SIGKILL)
            states, _ = wait_for_states(page, lambda s: s.get("2") == "dead", timeout_s=DEAD_WITHIN_S)
            print(f"agent 2 shown dead {time.monotonic() - t_kill:.1f} s after kill -9")
            assert all(states[str(i)] == "alive" for i in (0, 1, 3, 4, 5)), states
            _keep(page.screenshot(tmp_path / "dead.png"), "dashboard_dead.png")
            states, _ = wait_for_states(page, lambda s: s.get("2") == "rejoined", timeout_s=180)
            print(f"agent 2 shown rejoined {time.monotonic() - t_kill:.1f} s after kill -9")
            assert len(states) == 6 and all(states[str(i)] == "alive" for i in (0, 1, 3, 4, 5)), states
            timeline = page.evaluate("document.getElementById('events').textContent")
            assert "agent 2 killed by SIGKILL; restarting it" in timeline and "agent 2 rejoined" in timeline
            time.sleep(3)  # a few polls more: the curves show the comeback
            _keep(page.screenshot(tmp_path / "rejoined.png"), "dashboard_rejoined.png")
            assert agent_states(page)["2"] == "rejoined"
    finally:
        launcher.send_signal(signal.SIGTERM)  # the run is long on purpose: stop it cleanly
        code = launcher.wait(timeout=120)
    assert code == 130, log.read_text()[-3000:]
