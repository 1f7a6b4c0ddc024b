"""Across processes: SIGKILL + --resume is bit-exact; 2 gloo ranks (torchrun) == 1 process on the global batch."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from canvit_train.pretrain import checkpoint as ckpt
from canvit_train.pretrain.cli import build_parser
from canvit_train.pretrain.config import PRESETS
from canvit_train.pretrain.data import synthetic_setup
from canvit_train.pretrain.trainer import RunOptions, train
from safetensors.torch import load_file

ARGS = ["--preset", "smoke", "--synthetic", "8", "--scene-size", "64", "--glimpse-size", "32", "--canvas-grid", "4",
        "--standardizer-samples", "8", "--validate-every", "0", "--no-progress", "--no-results", "--device", "cpu",
        "--threads", "1"]


def cfg_of(args):
    """The PretrainConfig the CLI builds from `args` (for the in-process reference run)."""
    from canvit_train.pretrain.cli import overrides

    return PRESETS["smoke"].replace(**overrides(build_parser().parse_args(args)))


def env():
    e = dict(os.environ)
    e.pop("WORLD_SIZE", None)
    e["OMP_NUM_THREADS"] = "1"
    return e


def cli(*args):
    return [sys.executable, "-m", "canvit_train.pretrain.cli", *args]


def reference(tmp_path: Path, args: list[str]) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    cfg = cfg_of(args)
    train(cfg, synthetic_setup(cfg, dim=8, seed=cfg.seed),
          RunOptions(run_dir=tmp_path / "ref", device="cpu", progress=False, write_results=False, preset="smoke"))
    return load_file(str(tmp_path / "ref/final/model.safetensors"))


def test_sigkill_at_a_random_moment_then_resume_is_bit_exact(tmp_path):
    # ~0.07 s a step here: 40 steps keep the whole 0-1.5 s kill window inside the training
    args = [*ARGS, "--batch-size", "2", "--steps", "40", "--checkpoint-every", "3", "--log-every", "1"]
    run = tmp_path / "run"
    proc = subprocess.Popen(cli(*args, "--run-dir", str(run)), env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "metrics.csv").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    # a random moment of the training: mid-step, mid-checkpoint, between steps
    time.sleep(random.uniform(0.0, 1.5))
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL) if killed else None
    proc.wait()
    assert killed, "the run finished before the kill; make it longer"
    assert proc.returncode == -signal.SIGKILL
    before = ckpt.latest_checkpoint(run)
    assert not (run / "final").exists()
    out = subprocess.run(cli(*args, "--run-dir", str(run), "--resume"), env=env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if before is not None:
        assert f"resumed from {before.path}" in out.stderr
    resumed = load_file(str(run / "final/model.safetensors"))
    ref = reference(tmp_path, args)
    assert resumed.keys() == ref.keys()
    different = [k for k in ref if not torch.equal(ref[k], resumed[k])]
    assert not different, different[:5]


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path):
    args = [*ARGS, "--batch-size", "4", "--steps", "3", "--checkpoint-every", "3", "--log-every", "1",
            "--lr-peak", "0.01", "--warmup-steps", "0"]
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "canvit_train.pretrain.cli", *args, "--run-dir", str(run)]
    out = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert ckpt.latest_checkpoint(run).state["world_size"] == 2
    ddp = load_file(str(run / "final/model.safetensors"))
    single = reference(tmp_path, args)

    cfg = cfg_of(args)
    from canvit_train.pretrain.trainer import build_model

    init = build_model(cfg, 8, 4).state_dict()

    def rel_update_diff(a, b):
        keys = [k for k in init if init[k].is_floating_point() and "standardizer" not in k]
        da = torch.cat([(a[k] - init[k]).reshape(-1) for k in keys])
        db = torch.cat([(b[k] - init[k]).reshape(-1) for k in keys])
        return float((da - db).norm() / db.norm())

    assert rel_update_diff(ddp, single) < 1e-3
    # the check can fail: training on rank 0's half of the batch alone (= gradients not all-reduced) is far off
    half = cfg.replace(batch_size=2)
    torch.set_num_threads(1)
    train(half, synthetic_setup(half, dim=8, seed=half.seed),
          RunOptions(run_dir=tmp_path / "half", device="cpu", progress=False, write_results=False))
    assert rel_update_diff(load_file(str(tmp_path / "half/final/model.safetensors")), single) > 1e-2
