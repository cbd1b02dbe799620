"""The HTML report in a real browser: headless Chromium loads it with no network.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-separated JSON on file descriptors 3 and 4), so every console message,
uncaught exception, failed load and network request is seen as a typed event
rather than fished out of a log. Each chart must have drawn with a real size,
and a screenshot of the page must be a real picture.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from splittracer.metrics import ResultsStore
from splittracer.report.html import write_html_report
from splittracer.workspace import init_workspace
from tests.unit.report_store import make_run

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,4000",
    "--remote-debugging-pipe",
]
TIMEOUT_S = 60.0

requires_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
)


@dataclass
class PageLoad:
    """What happened while a page loaded, and what it looks like."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""


class DevTools:
    """A Chromium process and the DevTools protocol over its pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # A tiny launcher moves the pipe ends to 3 and 4, where Chromium expects them
        # (no preexec_fn: it is unsafe once threads exist).
        launcher = (
            "import fcntl, os, sys; up = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]; "
        )
        launcher += "os.dup2(up[0], 3); os.dup2(up[1], 4); os.execv(sys.argv[3], sys.argv[3:])"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                launcher,
                str(to_chrome_r),
                str(from_chrome_w),
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={user_data_dir}",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            # Chromium keeps scratch folders in TMPDIR and leaves them behind: keep them in the test's.
            env={**os.environ, "TMPDIR": str(user_data_dir.parent)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already received or still to come)."""
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {TIMEOUT_S} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit status {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        loaded: dict[str, Any] = json.loads(message)
        return loaded


CHARTS_JS = """
JSON.stringify([...document.querySelectorAll('figure.chart')].map(f => {
  const svg = f.querySelector(':scope > svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {name: f.dataset.figure, svg: !!svg, width: box.width, height: box.height,
          shapes: svg ? svg.querySelectorAll('path, use, rect').length : 0};
}))
"""


def load(page: Path, user_data_dir: Path) -> PageLoad:
    """Open ``page`` in a fresh headless Chromium and report what happened."""
    chrome = DevTools(user_data_dir)
    try:
        target = chrome.call("Target.createTarget", url="about:blank")["targetId"]
        session = chrome.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            chrome.call(f"{domain}.enable", session)
        chrome.events.clear()  # what about:blank did is not the page's doing
        chrome.call("Page.navigate", session, url=page.as_uri())
        chrome.wait_for("Page.loadEventFired")
        result = chrome.call("Runtime.evaluate", session, expression=CHARTS_JS, returnByValue=True)
        shot = chrome.call("Page.captureScreenshot", session, format="png")
        out = PageLoad(
            charts=json.loads(result["result"]["value"]), screenshot=base64.b64decode(shot["data"])
        )
        for event in chrome.events:
            _classify(event.get("method", ""), event.get("params", {}), out)
        return out
    finally:
        chrome.close()


def _classify(method: str, params: dict[str, Any], out: PageLoad) -> None:
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        out.errors.append(
            "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
        )
    elif method == "Runtime.exceptionThrown":
        out.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        out.errors.append("log: " + params["entry"]["text"])
    elif method == "Network.loadingFailed":
        out.errors.append(f"load failed: {params.get('errorText')}")
    elif method == "Network.requestWillBeSent":
        out.requests.append(params["request"]["url"])


def assert_real_picture(png: bytes) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    pixels = imread(io.BytesIO(png), format="png")
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1])[::97], axis=0)
    assert len(colours) > 20, "the screenshot is (almost) one colour"


def assert_renders(report: Path, figures: int, tmp_path: Path) -> PageLoad:
    page = load(report, tmp_path / "chromium-profile")
    assert page.errors == []
    assert page.requests == [report.as_uri()]  # the page itself, and nothing else
    assert len(page.charts) == figures
    for chart in page.charts:
        assert chart["svg"] and chart["width"] > 200 and chart["height"] > 100, chart
        assert chart["shapes"] > 10, chart
    assert_real_picture(page.screenshot)
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)  # kept for a look when a test fails
    return page


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results.sqlite") as opened:
        yield opened


@requires_chromium
def test_report_with_every_section_renders_without_errors(store: ResultsStore, tmp_path: Path) -> None:
    run_id = make_run(store)
    files = write_html_report(store, run_id, tmp_path / "report" / "index.html")
    page = assert_renders(files.html, 5, tmp_path)
    assert [c["name"] for c in page.charts] == ["splits", "layers", "timeline", "system", "energy"]


@requires_chromium
def test_report_of_a_run_without_metrics_renders_without_errors(store: ResultsStore, tmp_path: Path) -> None:
    run_id = make_run(store, system=False, energy=False, single_layers=False)
    files = write_html_report(store, run_id, tmp_path / "report.html")
    assert_renders(files.html, 3, tmp_path)


@requires_chromium
def test_report_of_a_real_run_from_the_command_line(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "two.yaml").write_text(
        "name: two\nmodel: {source: torchvision:alexnet}\nparticipants:\n"
        "  phone: {role: 'splittracer.builtin:SplitHead', limits: {threads: 1}}\n"
        "  cloud: {role: 'splittracer.builtin:SplitTail', limits: {threads: 1}}\n"
        "playbook:\n  phone:\n    - task: Sweep\n"
        "      params: {splits: [0, 1, 13, 20, 21], next: [cloud], repeats: 2, warmup: 1}\n"
    )
    command = [sys.executable, "-m", "splittracer"]
    ran = subprocess.run([*command, "run", "two"], cwd=ws.root, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    made = subprocess.run(
        [*command, "report", "latest"], cwd=ws.root, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout + made.stderr
    report, *figures = [Path(line) for line in made.stdout.split()]
    assert report.suffix == ".html" and all(p.stat().st_size > 1000 for p in figures)
    assert_renders(report, len(figures) // 2, tmp_path)


@requires_chromium
def test_the_browser_check_does_see_errors_and_requests(tmp_path: Path) -> None:
    # Without this, a check that never saw anything would pass every report.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>broken</p><img src='missing.png'>"
        "<img src='http://127.0.0.1:9/remote.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    seen = load(page, tmp_path / "chromium-profile")
    assert any("boom" in e for e in seen.errors)
    assert any(e.startswith("exception:") for e in seen.errors)
    assert any("load failed" in e for e in seen.errors)
    assert "http://127.0.0.1:9/remote.png" in seen.requests
