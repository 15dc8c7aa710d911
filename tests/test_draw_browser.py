"""The `draw` HTML page in a real browser: Debian's headless Chromium, driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: no port, no extra packages). It must lay the network out (a screenshot that is not blank),
show exactly the boxes the scene has at the page's depth, and open a cluster on a mouse click.

Chromium is part of the test setup (`make test` installs it); without it this test fails rather than skips."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from PIL import Image

from netdsl import load
from netdsl.analysis.draw import draw
from netdsl.analysis.draw.scene import build_scene

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1000,1400",
]
COUNT = "JSON.stringify({layer: document.querySelectorAll('.box.layer').length, block: document.querySelectorAll('.box.block').length})"


class DevTools:
    """A minimal Chrome DevTools Protocol client over the pipe pair Chromium reads (fd 3) and writes (fd 4)."""

    def __init__(self, page: Path, profile: Path) -> None:
        to_child, self._to = os.pipe()
        self._from, from_child = os.pipe()

        def wire() -> None:  # in the child: the two pipe ends become fds 3 and 4
            a, b = os.dup(to_child), os.dup(from_child)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", page.as_uri()],
            preexec_fn=wire,
            close_fds=False,  # the pipes are close-on-exec; only fds 3 and 4, made by dup2, reach Chromium
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0
        self.session = ""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, reply
                    return reply["result"]
            chunk = os.read(self._from, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self._to)
        os.close(self._from)


def test_html_page_renders_in_chromium_with_the_scene_boxes_and_opens_a_cluster_on_click(tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: the test setup installs Debian's chromium (make test, or apt-get install chromium)"
    graph = load(ROOT / "specs/resnet18.yaml")
    page = tmp_path / "resnet18.html"
    page.write_bytes(draw(graph, "html", depth=2))
    scene = build_scene(graph, 2)
    expected = {"layer": sum(b.kind == "layer" for b in scene.boxes), "block": sum(b.kind == "block" for b in scene.boxes)}
    assert expected == {"layer": 6, "block": 8}  # conv1 bn1 relu maxpool avgpool fc; layer1.0 ... layer4.1

    browser = DevTools(page, tmp_path / "profile")
    try:
        target = next(t for t in browser.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        browser.session = browser.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        deadline = time.monotonic() + 30
        while browser.evaluate("document.querySelectorAll('.box').length") in (None, 0):
            assert time.monotonic() < deadline, "the page drew no boxes"
            time.sleep(0.1)
        assert json.loads(browser.evaluate(COUNT)) == expected

        shot = Image.open(io.BytesIO(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))).convert("RGB")
        inked = sum(shot.convert("L").histogram()[:235])  # pixels darker than the white page
        assert inked > 0.02 * shot.width * shot.height, f"blank screenshot: {inked} non-white pixels of {shot.width * shot.height}"
        left, middle = _inside_left_edge(browser, ".box.layer[data-name='conv1'] rect")
        assert shot.getpixel((left, middle)) == (0xDB, 0xE9, 0xF7)  # svg.py's fill for convolutions, in the box's padding

        x, y = _centre(browser, ".box.block[data-name='layer1.0'] rect")
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        after = json.loads(browser.evaluate(COUNT))
        assert after == {"layer": expected["layer"] + 7, "block": expected["block"] - 1}  # layer1.0: conv1 bn1 relu conv2 bn2, add, relu
    finally:
        browser.close()


def _rect(browser: DevTools, selector: str) -> dict[str, float]:
    return json.loads(browser.evaluate(f"JSON.stringify(document.querySelector({json.dumps(selector)}).getBoundingClientRect())"))


def _centre(browser: DevTools, selector: str) -> tuple[int, int]:
    box = _rect(browser, selector)
    return int(box["x"] + box["width"] / 2), int(box["y"] + box["height"] / 2)


def _inside_left_edge(browser: DevTools, selector: str) -> tuple[int, int]:
    box = _rect(browser, selector)
    return int(box["x"] + 4), int(box["y"] + box["height"] / 2)
