"""`canvit-eval in1k` on a generated ImageFolder with a tiny CanViT and tiny probes (CPU, offline)."""

import json

import pandas as pd
import pytest
import torch
from canvit_data.synthetic import write_image_folder
from canvit_eval.tasks import in1k
from canvit_eval.policies import make_policy
from canvit_model import (
    CanViTForImageClassification,
    center_crop_transform,
    sample_at_viewpoint,
    save_linear_probe,
)
from canvit_results import is_complete, load_runs, read_meta


N_IMAGES, N_LABELS, TEACHER_DIM, N_CLASSES = 10, 4, 16, 12
COMMON = ["--scene-size", "64", "--canvas-grid", "4", "--glimpse-px", "32", "--glimpses", "3",
          "--num-workers", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture
def setup(tmp_path, monkeypatch, make_tiny_canvit):
    m = make_tiny_canvit(monkeypatch, TEACHER_DIM)
    with torch.no_grad():
        m.teacher_cls_standardizer.mean.normal_()
        m.teacher_cls_standardizer.var.uniform_(0.5, 2)
        m.teacher_cls_standardizer.fitted.fill_(True)
    m.save_pretrained(tmp_path / "model")
    write_image_folder(tmp_path / "in1k" / "val", N_IMAGES, num_classes=N_LABELS, seed=3)
    return tmp_path


def _run(setup, probe, *extra):
    argv = ["--model", str(setup / "model"), "--probe", str(setup / probe), "--data", str(setup / "in1k"),
            "--results", str(setup / "results"), *COMMON, *extra]
    assert in1k.main(argv) == 0
    return load_runs(setup / "results", "in1k")


def test_topk_correct_unit():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0], [5.0, 1.0, 0.0, 4.0]])
    hit = in1k.topk_correct(logits, torch.tensor([2, 2]), ks=(1, 2, 5))
    assert hit[1].tolist() == [False, False]
    assert hit[2].tolist() == [True, False]
    assert hit[5].tolist() == [True, True]  # k > C: every class is in the top k


def test_rigged_probe_gives_known_topk(setup, only_key):
    """A probe that ignores its input and ranks classes 2, 9, 1, 10, 11 first: top-1 = share of label 2,
    top-5 = share of labels {1, 2} (labels are the sorted class-folder indices, 0..3)."""
    bias = torch.full((N_CLASSES,), -10.0)
    for rank, c in enumerate([2, 9, 1, 10, 11]):
        bias[c] = 10.0 - rank
    save_linear_probe(setup / "rigged", torch.zeros(N_CLASSES, TEACHER_DIM), bias)
    df = _run(setup, "rigged", "--policy", "c2f", "--seed", "0", "--batch-size", "4", "--save-predictions")
    labels = [i % N_LABELS for i in range(N_IMAGES)]  # write_image_folder: image i is class i % K
    key = only_key(setup / "results", "in1k", "model-c2f-s64-c4-seed0")
    assert list(pd.read_csv(setup / "results" / "in1k" / f"{key}.csv").columns) == ["t", "top1", "top5"]
    assert df.t.tolist() == [0, 1, 2]
    assert df.top1.tolist() == pytest.approx([labels.count(2) / N_IMAGES] * 3)
    assert df.top5.tolist() == pytest.approx([(labels.count(1) + labels.count(2)) / N_IMAGES] * 3)
    assert is_complete(setup / "results", "in1k", key)
    meta = read_meta(setup / "results" / "in1k" / f"{key}.json")
    assert meta["extra"]["policy"] == "c2f" and meta["extra"]["num_glimpses"] == 3
    assert meta["extra"]["canvas_grid"] == 4 and meta["extra"]["num_images"] == N_IMAGES
    assert not (setup / "results" / ".partial" / "in1k" / f"{key}.safetensors").exists()
    from safetensors.torch import load_file

    pr = load_file(str(setup / "results" / "in1k" / f"{key}.predictions.safetensors"))  # 3 batches joined
    assert pr["positions"].tolist() == list(range(N_IMAGES)) and pr["labels"].tolist() == sorted(labels)  # path order
    assert (pr["top5"][:, :, :5] == torch.tensor([2, 9, 1, 10, 11], dtype=torch.int16)).all()


def test_topk_matches_a_per_timestep_hand_loop(setup, only_key):
    """A random probe; the reference is a plain loop over the fused classifier with the same viewpoints."""
    g = torch.Generator().manual_seed(5)
    save_linear_probe(setup / "probe", torch.randn(N_CLASSES, TEACHER_DIM, generator=g),
                      torch.randn(N_CLASSES, generator=g) * 0.1)
    df = _run(setup, "probe", "--policy", "r-iid", "--seed", "7", "--batch-size", str(N_IMAGES), "--save-predictions")

    clf = CanViTForImageClassification.from_pretrained_with_probe(setup / "model", setup / "probe")
    files = sorted((setup / "in1k" / "val").rglob("*.png"))
    from PIL import Image

    scenes = torch.stack([center_crop_transform(Image.open(f), 64) for f in files])
    labels = torch.tensor([int(f.parent.name.split("_")[1]) for f in files])
    pol = make_policy("r-iid", batch_size=N_IMAGES, num_glimpses=3, generator=in1k.batch_generator(7, 0))
    with torch.inference_mode():
        state = clf.init_state(N_IMAGES, 4)
        top1, top5 = [], []
        for t in range(3):
            vp = pol.next(t)
            out = clf(sample_at_viewpoint(scenes, vp, 32), state, vp)
            state = out.state
            rank = out.logits.argsort(-1, descending=True)
            top1.append((rank[:, 0] == labels).float().mean().item())
            top5.append((rank[:, :5] == labels[:, None]).any(-1).float().mean().item())
    assert df.top1.tolist() == pytest.approx(top1)
    assert df.top5.tolist() == pytest.approx(top5)
    # per-image predictions: top-1 recomputed from them equals the table, and labels / order are kept
    from safetensors.torch import load_file

    key = only_key(setup / "results", "in1k", "model-r-iid-s64-c4-seed7")
    pr = load_file(str(setup / "results" / "in1k" / f"{key}.predictions.safetensors"))
    assert pr["top5"].shape == (N_IMAGES, 3, 5) and pr["top5"].dtype == torch.int16
    assert pr["positions"].tolist() == list(range(N_IMAGES)) and torch.equal(pr["labels"], labels)
    hits = (pr["top5"].long() == labels[:, None, None])
    assert df.top1.tolist() == pytest.approx(hits[:, :, 0].float().mean(0).tolist())
    assert df.top5.tolist() == pytest.approx(hits.any(-1).float().mean(0).tolist())
    assert read_meta(setup / "results" / "in1k" / f"{key}.json")["extra"]["predictions"] == f"{key}.predictions.safetensors"
    assert not (setup / "results" / ".partial" / "in1k" / f"{key}.predictions").exists()
    assert len(set(top5)) > 1 or len(set(top1)) > 1 or 0 < top5[0] < 1  # the metric is not degenerate

    # the same loop through canvit_model.cpu_inference "bf16": top-1 moves by at most one image in ten
    from canvit_model import cpu_inference

    def loop_top1(mode: str) -> tuple[list[float], torch.Tensor]:
        pol = make_policy("r-iid", batch_size=N_IMAGES, num_glimpses=3, generator=in1k.batch_generator(7, 0))
        with cpu_inference(mode), torch.inference_mode():
            state, acc = clf.init_state(N_IMAGES, 4), []
            for t in range(3):
                vp = pol.next(t)
                out = clf(sample_at_viewpoint(scenes, vp, 32), state, vp)
                state = out.state
                acc.append((out.logits.argmax(-1) == labels).float().mean().item())
        return acc, state.canvas

    (fast, canvas32), (bf16, canvas16) = loop_top1("fp32"), loop_top1("bf16")
    assert fast == pytest.approx(top1)
    assert canvas16.dtype == torch.float32 and not torch.equal(canvas16, canvas32)  # bf16 really ran
    print(f"IN1k tiny fixture top-1 per glimpse: fp32 {fast}, bf16 {bf16}")
    assert max(abs(a - b) for a, b in zip(bf16, fast)) <= 0.1 + 1e-9


def test_resumes_from_partial_sums_and_skips_complete(setup, capsys, only_key):
    save_linear_probe(setup / "probe", torch.randn(N_CLASSES, TEACHER_DIM), torch.zeros(N_CLASSES))
    args = ["--policy", "f-iid", "--batch-size", "3"]
    full = _run(setup, "probe", *args, "--key", "full")
    seen = []
    orig = in1k.in1k_step

    def spy(clf, batch, **kw):
        seen.append(batch.index)
        return orig(clf, batch, **kw)

    parts = setup / "results" / ".partial" / "in1k"
    # A job killed in batch 2 after checkpointing every batch, then restarted.
    calls = []

    def crash(clf, batch, **kw):
        calls.append(batch.index)
        if batch.index == 2:
            raise KeyboardInterrupt
        return orig(clf, batch, **kw)

    in1k.in1k_step = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(setup, "probe", *args, "--key", "resumed", "--checkpoint-every", "1")
        (part,) = parts.glob("resumed-*.safetensors")
        from safetensors import safe_open

        with safe_open(str(part), "pt") as f:
            assert f.metadata()["next_batch"] == "2"
        seen.clear()
        in1k.in1k_step = spy
        resumed = _run(setup, "probe", *args, "--key", "resumed")
        assert seen == [2, 3]  # only the batches after the checkpoint ran
    finally:
        in1k.in1k_step = orig
    a = full[full.run_key == only_key(setup / "results", "in1k", "full")].reset_index(drop=True)
    b = resumed[resumed.run_key == only_key(setup / "results", "in1k", "resumed")].reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["t", "top1", "top5"]], b[["t", "top1", "top5"]])
    # complete run: skipped
    assert in1k.main(["--model", str(setup / "model"), "--probe", str(setup / "probe"), "--data",
                      str(setup / "in1k"), "--split", "val", "--results", str(setup / "results"), *COMMON,
                      *args, "--key", "full"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_bad_arguments_name_the_flag(setup, capsys):
    base = ["--model", str(setup / "model"), "--data", str(setup / "in1k"), "--results", str(setup / "r")]
    with pytest.raises(SystemExit):
        in1k.main([*base, "--policy", "c2f", "--glimpse-px", "30"])
    assert "--glimpse-px must be a multiple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        in1k.main([*base, "--policy", "c2f", "--glimpses", "0"])
    assert "--glimpses must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        in1k.main([*base, "--policy", "nope"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        in1k.main(["--model", str(setup / "model"), "--data", str(setup / "missing"), "--policy", "c2f"])
    assert "--data" in capsys.readouterr().err
    save_linear_probe(setup / "p3", torch.zeros(3, TEACHER_DIM), torch.zeros(3))  # 3 classes < 4 folders
    with pytest.raises(SystemExit):
        in1k.main([*base, "--probe", str(setup / "p3"), "--split", "val", "--policy", "c2f"])
    assert "has 4 classes but the probe predicts 3" in capsys.readouterr().err


def test_hf_dataset_with_classlabel(setup):
    """A `datasets` DatasetDict on disk (ClassLabel labels) instead of an ImageFolder."""
    from canvit_data.synthetic import write_dataset

    write_dataset(setup / "hf", 6, num_classes=3, splits=("validation",), with_labels=True, seed=2)
    bias = torch.full((N_CLASSES,), -10.0)
    bias[1] = 10.0
    save_linear_probe(setup / "rigged1", torch.zeros(N_CLASSES, TEACHER_DIM), bias)
    argv = ["--model", str(setup / "model"), "--probe", str(setup / "rigged1"), "--data", str(setup / "hf"),
            "--split", "validation", "--results", str(setup / "res-hf"), "--policy", "rfs", "--batch-size", "4",
            *COMMON]
    assert in1k.main(argv) == 0
    df = load_runs(setup / "res-hf", "in1k")
    assert df.top1.tolist() == pytest.approx([2 / 6] * 3)  # labels i % 3: two of six are class 1


def test_paths_are_checked_before_a_complete_key_is_skipped(tmp_path, capsys, expect_usage_errors, store_complete):
    """A complete key does not hide a typo in --data / --model / --probe (exit 2 naming the flag); a bad
    --key or --device is a usage error too, not a traceback (exit 1)."""
    write_image_folder(tmp_path / "in1k" / "val", 2, num_classes=2, size=(32, 32))
    for name in ("model", "probe"):  # the published layout (only the files' presence is checked before a skip)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    res = tmp_path / "res"
    good = {"--model": str(tmp_path / "model"), "--probe": str(tmp_path / "probe"), "--data": str(tmp_path / "in1k"),
            "--split": "val", "--key": "done"}
    store_complete(in1k, ["--policy", "c2f", "--device", "cpu", *[x for kv in good.items() for x in kv]],
                   pd.DataFrame({"t": [0], "top1": [0.5], "top5": [0.9]}), res)

    def main(**bad):
        return in1k.main(["--policy", "c2f", "--results", str(res), "--device", "cpu"] +
                         [x for k, v in {**good, **bad}.items() for x in (k, v)])

    assert main() == 0 and "nothing to do" in capsys.readouterr().out  # the control
    expect_usage_errors(main, "canvit-eval in1k", [
        ("--data", tmp_path / "imagenet", "no such file"),
        ("--data", tmp_path / "empty", "no images"),
        ("--model", tmp_path / "mdl", "no such file"),
        ("--probe", tmp_path / "in1k", "is missing ['config.json', 'model.safetensors']"),
        ("--key", "a/b", "not a valid results name"),
        ("--device", "banana", "not a torch device")])
