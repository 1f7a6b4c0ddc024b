"""`canvit-eval demo` without a browser: image intake, clicks, sessions, policies, pictures, the command line.
(The page itself, driven in Chromium, is test_demo_browser.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from canvit_eval import demo
from canvit_eval.demo import DemoConfig, Engine, UserError, click_viewpoint, load_image
from canvit_eval.policies import make_policy
from canvit_eval.visualize import apply_pca, fit_pca, pca_rgb
from canvit_model import CanViTForPretraining, SegmentationProbe, fuse_probe

CFG = DemoConfig(scene_size=64, canvas_grid=4, glimpse_px=32, amp=False)


def _engine(*, seg: bool = False, in1k: bool = False) -> Engine:
    torch.manual_seed(0)
    model = CanViTForPretraining.from_preset("test-tiny")
    head = None
    if in1k:
        model.teacher_cls_standardizer.fitted.fill_(True)
        head = fuse_probe(model.teacher_cls_readout, model.teacher_cls_standardizer,
                          (torch.randn(7, 768), torch.randn(7)))
    probe = SegmentationProbe(model.canvit.canvas_dim, num_classes=5).eval() if seg else None
    return Engine(model, CFG, device=torch.device("cpu"), seg_probe=probe, in1k_head=head,
                  class_names=[f"thing {i}" for i in range(7)] if in1k else None)


def _scene(seed: int = 0, size: tuple[int, int] = (80, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# -- images in ---------------------------------------------------------------------------------------


def test_load_image_notes_and_refusals(tmp_path):
    rgb = tmp_path / "rgb.jpg"
    _scene().save(rgb)
    image, notes = load_image(rgb)
    assert image.mode == "RGB" and image.size == (80, 60) and notes == []

    grey = tmp_path / "grey.png"
    _scene().convert("L").save(grey)
    image, notes = load_image(grey)
    assert image.mode == "RGB" and "greyscale" in notes[0]
    a = np.asarray(image)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()

    rgba = tmp_path / "rgba.png"
    arr = np.zeros((10, 10, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red where opaque, and fully transparent on the right half
    arr[:, :5, 3] = 255
    Image.fromarray(arr).save(rgba)
    image, notes = load_image(rgba)
    a = np.asarray(image)
    assert "transparency" in notes[0] and (a[:, :5] == [200, 0, 0]).all() and (a[:, 5:] == 255).all()

    huge = tmp_path / "wide.png"
    Image.new("RGB", (demo.MAX_SIDE * 2, 20), (10, 20, 30)).save(huge)
    image, notes = load_image(huge)
    assert max(image.size) == demo.MAX_SIDE and "downscaled" in notes[0] and f"{demo.MAX_SIDE * 2} x 20" in notes[0]

    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(UserError, match="notes.txt: not an image"):
        load_image(text)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(rgba.read_bytes()[:40])
    with pytest.raises(UserError, match="cut.png"):
        load_image(truncated)


def test_click_viewpoint_maps_pixels_and_keeps_the_box_inside():
    vp, note = click_viewpoint((127, 127), 0.25, 256)  # the centre pixel of a 256 px panel (x, y)
    assert note is None and torch.allclose(vp.centers, torch.tensor([[-1 / 256, -1 / 256]]))
    vp, note = click_viewpoint((250, 3), 0.5, 256)  # top-right corner: the box would leave the scene
    assert "moved inside" in note and bool(vp.in_scene().all())
    assert torch.allclose(vp.centers, torch.tensor([[-0.5, 0.5]])) and float(vp.scales[0]) == 0.5
    for bad in ((-1, 10), (10, 256), (float("nan"), 3), None, ("a", 1)):
        with pytest.raises(UserError):
            click_viewpoint(bad, 0.25, 256)


# -- sessions ------------------------------------------------------------------------------------------


def test_sessions_are_independent_and_policies_match_make_policy():
    eng = _engine(in1k=True)
    a = eng.new_session(_scene(0), "a")
    b = eng.new_session(_scene(1), "b")
    vp, _ = click_viewpoint((10, 20), 0.3, CFG.panel_px)
    g = eng.glimpse(a, vp, "click")
    assert g.latency_ms > 0 and g.change > 0 and 0 < g.top1 <= 1
    assert len(a.top5) == 5 and all(k.startswith("thing ") for k in a.top5)
    assert list(a.top5.values()) == sorted(a.top5.values(), reverse=True)
    assert len(b.glimpses) == 0 and b.top5 is None  # b untouched
    fresh = eng._grid(eng._init_state().canvas)
    assert torch.equal(b.canvas, fresh) and not torch.equal(a.canvas, fresh)

    # policy steps: the same viewpoints as the policy itself, and a new policy when T or the name changes
    ref = make_policy("c2f", batch_size=1, num_glimpses=5, generator=torch.Generator().manual_seed(3))
    for t in range(5):
        vp = eng.policy_viewpoint(b, "c2f", 5, 3)
        assert torch.equal(vp.centers, ref.next(t).centers)
        eng.glimpse(b, vp, "c2f")
    assert b.policy_t == 5 and len(b.glimpses) == 5 and len(a.glimpses) == 1
    eng.policy_viewpoint(b, "c2f", 5, 3)
    assert b.policy_t == 1  # used up -> a fresh one
    assert torch.equal(eng.policy_viewpoint(b, "rfs", 5, 3).scales, torch.ones(1)) and b.policy_t == 1

    eng.reset(b)
    assert b.glimpses == [] and torch.equal(b.canvas, fresh) and b.policy is None
    r = eng.render(a)
    assert r["status"].endswith("glimpses: 1") and "glimpse 1:" in r["latency"] and r["top5"] == a.top5
    assert r["scene"].size == (CFG.panel_px, CFG.panel_px) and r["plot"] is not None and r["segmentation"] is None
    assert eng.render(None)["scene"] is None


def test_eg_c2f_needs_the_ade20k_probe_and_runs_with_it():
    with pytest.raises(UserError, match="--ade20k-probe"):
        _engine().policy_viewpoint(_engine().new_session(_scene(), "x"), "eg-c2f", 5, 0)
    eng = _engine(seg=True)
    s = eng.new_session(_scene(), "x")
    for _ in range(3):
        eng.glimpse(s, eng.policy_viewpoint(s, "eg-c2f", 5, 0), "eg-c2f")
    assert s.seg_logits.shape == (1, 5, 4, 4) and [g.scale for g in s.glimpses] == [1.0, 0.5, 0.5]
    seg = eng.render(s)["segmentation"]
    assert seg.size == (CFG.panel_px, CFG.panel_px)


def test_canvas_colours_use_one_basis_per_scene():
    """The demo's PCA is visualize's: fit + apply == pca_rgb, and a fixed basis gives a cell the same colour
    whatever else is on the canvas."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 4, 8)
    assert np.array_equal(apply_pca(fit_pca(x), x), pca_rgb(x))
    basis = fit_pca(x[0])
    y = x[1].clone()
    y[0, 0] = x[0, 0, 0]
    assert np.array_equal(apply_pca(basis, y)[0, 0], apply_pca(basis, x[0])[0, 0])

    eng = _engine()
    s = eng.new_session(_scene(), "x")
    before = eng.render(s)["canvas"]
    eng.glimpse(s, click_viewpoint((5, 5), 0.2, CFG.panel_px)[0], "click")
    assert np.asarray(eng.render(s)["canvas"]).tolist() != np.asarray(before).tolist()


# -- command line --------------------------------------------------------------------------------------


def test_help_and_usage_errors(capsys, tmp_path):
    from canvit_eval.cli import main as cli_main
    from canvit_model.releases import FLAGSHIP

    with pytest.raises(SystemExit) as e:
        demo.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "example" in out and "canvit-eval demo --random-init canvitb16" in out
    flat = re.sub(r"\s+", "", out)  # argparse wraps lines, also at hyphens
    for default in (FLAGSHIP, "default 127.0.0.1", "default 7860", "default 512", "default 128", "scene size / 16",
                    "default none"):
        assert re.sub(r"\s+", "", default) in flat, default
    assert cli_main(["--help"]) == 0 and "demo" in capsys.readouterr().out

    cases = [
        (["--port", "70000"], "--port"),
        (["--glimpse-px", "24"], "--glimpse-px"),
        (["--glimpse-px", "1024"], "--glimpse-px"),
        (["--scene-size", "x"], "--scene-size"),
        (["--random-init", "nosuch"], "--random-init"),
        (["--random-init", "test-tiny", "--model", "a/b"], "--model"),
        (["--model", str(tmp_path / "missing")], "--model"),
        (["--random-init", "test-tiny", "--in1k-probe", str(tmp_path / "nope")], "--in1k-probe"),
        (["--random-init", "test-tiny", "--in1k-probe", str(tmp_path)], "--in1k-probe"),  # a dir, no probe in it
        (["--random-init", "test-tiny", "--in1k-labels", str(tmp_path / "x.txt")], "--in1k-labels"),
        (["--random-init", "test-tiny", "--device", "nosuch"], "--device"),
        (["--bogus"], "--bogus"),
    ]
    for argv, flag in cases:
        with pytest.raises(SystemExit) as e:
            demo.prepare(argv)
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert e.value.code == 2 and "Traceback" not in err and flag in last, (argv, err)


def test_offline_without_a_local_model_says_what_to_do(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-m", "canvit_eval.cli", "demo"], capture_output=True, text=True, env=env,
                       timeout=120)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert last.startswith("canvit-eval demo: error: --model") and "--model DIR" in last and "--random-init" in last


def test_concurrent_glimpses_on_one_session_lose_nothing():
    """A click arriving while a run of the same session is going: every glimpse lands on the canvas left by
    the previous one (one lock around the read-modify-write)."""
    import threading

    eng = _engine()
    s = eng.new_session(_scene(), "x")
    vp, _ = click_viewpoint((10, 20), 0.3, CFG.panel_px)
    threads = [threading.Thread(target=lambda: [eng.glimpse(s, vp, "click") for _ in range(4)]) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ref = eng.new_session(_scene(), "ref")
    for _ in range(12):
        eng.glimpse(ref, vp, "click")
    assert len(s.glimpses) == 12 and torch.equal(s.canvas, ref.canvas)
