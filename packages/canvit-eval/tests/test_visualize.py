"""`canvit-eval visualize` on a tiny model: the PNG strip and GIF have the expected sizes and contents."""

import json

import numpy as np
import pytest
import torch
from canvit_eval import visualize as viz
from canvit_model import SegmentationProbe
from PIL import Image


@pytest.fixture
def tiny(tmp_path, tiny_canvit):
    tiny_canvit.save_pretrained(tmp_path / "model")
    SegmentationProbe(embed_dim=32, num_classes=5).save_pretrained(tmp_path / "probe")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    return tmp_path


@pytest.mark.parametrize("policy,probe", [("c2f", False), ("eg-c2f", True)])
def test_writes_strip_and_gif_of_the_expected_sizes(tiny, policy, probe):
    out = tiny / f"viz-{policy}"
    argv = ["--model", str(tiny / "model"), "--image", str(tiny / "scene.png"), "--policy", policy, "--glimpses", "5",
            "--scene-size", "64", "--glimpse-px", "32", "--panel-px", "48", "--out", str(out), "--device", "cpu"]
    if probe:
        argv += ["--probe", str(tiny / "probe")]
    assert viz.main(argv) == 0
    rows = 5 if probe else 4
    strip = Image.open(out / "strip.png")
    assert strip.size == (5 * 48, rows * 48)
    gif = Image.open(out / "rollout.gif")
    assert gif.n_frames == 5 and gif.size == (rows * 48, 48)
    meta = json.loads((out / "visualize.json").read_text())
    assert len(meta["viewpoints"]) == 5 and meta["viewpoints"][0]["scale"] == pytest.approx(1.0)  # C2F / EG-C2F: full scene first
    assert meta["rows"][-1] == ("segmentation" if probe else "change")
    # the glimpse box is drawn: the scene panel at t=0 (full-scene box) has red on its border
    a = np.asarray(strip.convert("RGB"))
    assert (a[0:48, 0:48][..., 0] > 200).any() and (a[0:2, 0:48] == [255, 40, 40]).all(-1).any()
    # the canvas changes over time: PCA panels differ between t = 0 and t = 4
    assert not np.array_equal(a[96:144, 0:48], a[96:144, 192:240])


def test_pca_and_change_maps_on_known_tensors():
    g = torch.Generator().manual_seed(0)
    canv = torch.randn(3, 4, 4, 8, generator=g)
    rgb = viz.pca_rgb(canv)
    assert rgb.shape == (3, 4, 4, 3) and rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255
    init = canv[0].clone()
    ch = viz.change_maps(canv, init)
    assert ch.shape == (3, 4, 4)
    assert torch.allclose(ch[0], torch.zeros(4, 4), atol=1e-6)  # canvas 0 equals the initial canvas
    ref = 1 - (canv[2] * canv[1]).sum(-1) / (canv[2].norm(dim=-1) * canv[1].norm(dim=-1))
    assert torch.allclose(ch[2], ref, atol=1e-6)
    assert viz.box_px((0.0, 0.0), 1.0, 100) == (0.0, 0.0, 100.0, 100.0)
    assert viz.box_px((-0.5, 0.5), 0.5, 100) == (50.0, 0.0, 100.0, 50.0)  # top-right quadrant


def test_eg_c2f_without_probe_is_a_clear_error(tiny, capsys):
    with pytest.raises(SystemExit):
        viz.main(["--model", str(tiny / "model"), "--image", str(tiny / "scene.png"), "--policy", "eg-c2f",
                  "--out", str(tiny / "x")])
    assert "--policy eg-c2f needs --probe" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--device", "banana"], "--device banana: not a torch device"),
    (["--canvas-grid", "0"], "--canvas-grid must be an integer >= 1, got 0"),
    (["--out", "FILE"], "--out: 'FILE' is a file"),
])
def test_argument_errors_exit_2_before_any_work(tmp_path, capsys, extra, message):
    """A bad --device / --canvas-grid / --out is a usage error (exit 2) before the model is loaded; an --out
    that is a file used to crash at the end, after the rollout."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    (tmp_path / "f").write_text("")
    argv = ["--model", "m", "--image", str(tmp_path / "scene.png"), "--out", str(tmp_path / "viz")]
    argv += [str(tmp_path / "f") if a == "FILE" else a for a in extra]
    with pytest.raises(SystemExit) as e:
        viz.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("canvit-eval visualize: error: ")
    assert message.replace("FILE", str(tmp_path / "f")) in line
    assert not (tmp_path / "viz").exists()
