"""`canvit-eval demo` in a real browser: Debian's headless Chromium driven by Playwright (Python).

The demo runs in this process on a free loopback port (a tiny random CanViT, a tiny random IN1k probe with
class names and a tiny random ADE20K probe); every request that leaves the loopback is refused, so the page
must render without internet. Screenshots land in the test's temp dir. Missing Chromium / Playwright / Gradio:
a skip naming what is missing, or a failure when CI is set (`.ci/run` installs chromium).
"""

from __future__ import annotations

import importlib.util
import io
import os
import threading
import time
from pathlib import Path

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
STEP_TIMEOUT_MS = 30_000


def _missing() -> list[str]:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (uv sync installs it with the dev group)")
    if importlib.util.find_spec("gradio") is None:
        missing.append("gradio (canvit-eval[demo]; uv sync installs it with the dev group)")
    if not Path(CHROMIUM).exists():
        missing.append(f"Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    return missing


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    missing = _missing()
    if missing:
        msg = "the browser test needs " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from canvit_data.synthetic import draw_scene  # noqa: F401  (the demo's sample scenes come from here)
    from canvit_eval import demo
    from canvit_model import SegmentationProbe, save_linear_probe

    root = tmp_path_factory.mktemp("demo")
    g = torch.Generator().manual_seed(0)
    names = [f"tiny class {i}" for i in range(8)]
    save_linear_probe(root / "in1k", torch.randn(8, 768, generator=g), torch.randn(8, generator=g),
                      {"class_names": names})
    seg = SegmentationProbe(64, num_classes=6)  # test-tiny's canvas: 2 heads x 32
    torch.nn.init.normal_(seg.conv.weight, std=1.0, generator=g)
    seg.save_pretrained(root / "ade20k")
    before = set(threading.enumerate())
    app, launch = demo.prepare(["--random-init", "test-tiny", "--in1k-probe", str(root / "in1k"),
                                "--ade20k-probe", str(root / "ade20k"), "--scene-size", "128", "--glimpse-px", "32",
                                "--host", "127.0.0.1", "--port", "0", "--device", "cpu"])
    assert launch["server_name"] == "127.0.0.1"
    app.queue(default_concurrency_limit=4).launch(**launch, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{launch['server_port']}/", names
    finally:
        app.close()
        deadline = time.time() + 10
        while time.time() < deadline and set(threading.enumerate()) - before:
            time.sleep(0.1)
        left = [t.name for t in set(threading.enumerate()) - before]
        assert not left, f"the demo left threads running after close(): {left}"


def _children() -> list[str]:
    """Live processes whose parent is this one (Linux /proc; [] elsewhere): "pid name"."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":  # fields[0]: state, fields[1]: ppid
            out.append(f"{stat.parent.name} {name}")
    return out


RECORDER = """() => {
  window.__log = [];
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.innerText : null; };
  const src = (sel) => { const e = document.querySelector(sel); return e ? e.getAttribute('src') : null; };
  const record = () => {
    const rec = {status: text('#status'), latency: text('#latency'), top5: text('#top5'),
                 scene: src('#scene img'), canvas: src('#canvas img'), glimpse: src('#glimpse img')};
    const last = window.__log[window.__log.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(rec)) window.__log.push(rec);
  };
  new MutationObserver(record).observe(document.body,
      {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def _wait_status(page, text: str) -> None:
    page.wait_for_function("(t) => (document.querySelector('#status')?.innerText || '').includes(t)", arg=text,
                           timeout=STEP_TIMEOUT_MS)


def _distinct(page, key: str) -> list:
    """The successive distinct values the page showed for `key` (consecutive repeats dropped)."""
    out: list = []
    for rec in page.evaluate("window.__log"):
        if rec[key] and (not out or out[-1] != rec[key]):
            out.append(rec[key])
    return out


def test_demo_in_chromium(demo_url, tmp_path):
    import numpy as np
    from canvit_data.synthetic import draw_scene
    from PIL import Image
    from playwright.sync_api import sync_playwright

    url, names = demo_url
    image = tmp_path / "scene.png"
    draw_scene(np.random.default_rng(7), 150, 200, num_classes=4, num_shapes=4).image.save(image)
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    outside: list[str] = []

    def loopback_only(route):
        if route.request.url.startswith("http://127.0.0.1"):
            route.continue_()
        else:  # no internet: fonts, CDNs, analytics must not be needed
            outside.append(route.request.url)
            route.abort()

    children = set(_children())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            one = browser.new_context(viewport={"width": 1300, "height": 1100})
            one.route("**/*", loopback_only)
            page = one.new_page()
            page.goto(url)
            page.wait_for_selector("#status")
            assert "no scene" in page.inner_text("#status")
            page.evaluate(RECORDER)

            page.set_input_files("#upload input[type=file]", str(image))
            _wait_status(page, "scene: scene.png · glimpses: 0")
            page.wait_for_selector("#scene img")
            box = page.locator("#scene img").bounding_box()
            for n, (fx, fy) in enumerate([(0.3, 0.3), (0.75, 0.6)], start=1):
                page.locator("#scene img").click(position={"x": box["width"] * fx, "y": box["height"] * fy})
                _wait_status(page, f"glimpses: {n}")
                page.wait_for_function("(n) => document.querySelector('#latency').innerText.includes(`glimpse ${n}:`)",
                                       arg=n, timeout=STEP_TIMEOUT_MS)
            assert "at your click" in page.inner_text("#message")
            page.screenshot(path=tmp_path / "01-two-clicks.png", full_page=True)

            # bad input: a message in the page, the session and the UI live on
            page.set_input_files("#upload input[type=file]", str(not_an_image))
            page.wait_for_function("document.querySelector('#message').innerText.includes('not an image')",
                                   timeout=STEP_TIMEOUT_MS)
            assert "glimpses: 2" in page.inner_text("#status") and "Traceback" not in page.content()

            # a policy for 3 glimpses, streamed step by step
            page.locator("#horizon input[type=number]").fill("3")
            page.locator("#horizon input[type=number]").press("Enter")
            page.click("#run")
            _wait_status(page, "glimpses: 5")
            page.wait_for_function("document.querySelector('#message').innerText.includes('glimpse 3 of 3 (done)')",
                                   timeout=STEP_TIMEOUT_MS)
            page.screenshot(path=tmp_path / "02-policy-run.png", full_page=True)

            # every one of the 5 glimpses reached the page: a new scene (its boxes), canvas, glimpse, top-5, latency
            assert len(_distinct(page, "scene")) == 6 and len(_distinct(page, "canvas")) == 6  # 0 (loaded) + 5
            assert len(_distinct(page, "glimpse")) == 5
            top5 = _distinct(page, "top5")
            latency = _distinct(page, "latency")
            for n in range(1, 6):
                assert any(f"after glimpse {n}" in t and any(name in t for name in names) for t in top5), (n, top5)
                assert any(t.startswith(f"glimpse {n}:") and " ms" in t for t in latency), (n, latency)
            # the scene shows the latest box in red
            scene = Image.open(io.BytesIO(page.request.get(_distinct(page, "scene")[-1]).body())).convert("RGB")
            assert (np.asarray(scene) == [255, 40, 40]).all(-1).sum() > 50

            # a second browser context: its own session
            two = browser.new_context(viewport={"width": 1300, "height": 1100})
            two.route("**/*", loopback_only)
            other = two.new_page()
            other.goto(url)
            other.wait_for_selector("#status")
            assert "no scene" in other.inner_text("#status")
            other.click("#load-sample")
            _wait_status(other, "scene: sample scene 1 · glimpses: 0")
            other.click("#step")
            _wait_status(other, "glimpses: 1")
            other.screenshot(path=tmp_path / "03-second-context.png", full_page=True)
            assert "scene: scene.png · glimpses: 5" in page.inner_text("#status")
            page.click("#step")
            _wait_status(page, "glimpses: 6")
            assert "scene: sample scene 1 · glimpses: 1" in other.inner_text("#status")
            page.click("#reset")
            _wait_status(page, "glimpses: 0")
            assert "glimpses: 1" in other.inner_text("#status")
        finally:
            browser.close()
    assert not outside, f"the page asked for resources outside the loopback: {outside}"
    deadline = time.time() + 10
    while time.time() < deadline and set(_children()) - children:
        time.sleep(0.1)
    assert not set(_children()) - children, f"left running: {set(_children()) - children}"  # chromium, driver
    print(f"screenshots: {tmp_path}")
