"""A real headless Chromium, driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
JSON messages separated by NUL bytes on fds 3 and 4): the standard library only, no websocket,
no selenium. For the dashboard's tests and its benchmark.

    with Chromium() as browser:
        page = browser.open("http://127.0.0.1:8765/")
        page.evaluate("document.title")
        page.screenshot("shot.png")

Debian's package is `chromium` (`.ci/run` installs it); CHROMIUM=/path picks another binary.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class BrowserError(RuntimeError):
    pass


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser process with its own throwaway profile."""

    def __init__(self, timeout_s: float = 60.0, width: int = 1280, height: int = 860):
        path = chromium_path()
        if path is None:
            raise BrowserError("no chromium on PATH (Debian: apt-get install chromium)")
        self.timeout_s, self.width, self.height = timeout_s, width, height
        self.profile = tempfile.mkdtemp(prefix="drima-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # the browser reads commands on fd 3 and writes answers on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]  # 3, 4 may be ours
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire_fds,  # kept open past the fork's close_fds
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._buf = b""

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its answer (events in between are skipped)."""
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params or {}} | ({"sessionId": session} if session else {})
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + self.timeout_s
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == msg_id:
                    if "error" in answer:
                        raise BrowserError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"{method}: no answer within {self.timeout_s:.0f} s")
            data = os.read(self._from_browser, 1 << 20)
            if not data:
                raise BrowserError(f"{method}: the browser closed the pipe (exit status {self.proc.poll()})")
            self._buf += data

    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False}, session)
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=15)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str):
        """The value of a JS expression in the page (JSON-serialisable values)."""
        out = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in out:
            raise BrowserError(f"{expression[:60]}: {out['exceptionDetails'].get('text')}")
        return out["result"].get("value")

    def screenshot(self, path: str | Path) -> Path:
        data = self.browser.call("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


AGENT_STATES_JS = ("JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-agent]')]"
                   ".map(e => [e.dataset.agent, e.dataset.state])))")
"""the page contract as {agent id: state}, as the browser shows it"""


def agent_states(page: Page) -> dict[str, str]:
    return json.loads(page.evaluate(AGENT_STATES_JS))


def wait_for_states(page: Page, accept, timeout_s: float, poll_s: float = 0.25) -> tuple[dict[str, str], float]:
    """Poll the page until `accept(states)`; (the states, seconds waited). Raises AssertionError
    with the last states seen on timeout."""
    t0 = time.monotonic()
    states: dict[str, str] = {}
    while time.monotonic() - t0 < timeout_s:
        states = agent_states(page)
        if accept(states):
            return states, time.monotonic() - t0
        time.sleep(poll_s)
    raise AssertionError(f"page never showed the expected states in {timeout_s:.0f} s; last: {states}")
