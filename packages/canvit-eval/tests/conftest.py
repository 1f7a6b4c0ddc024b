"""Fixtures shared by the canvit-eval tests (pytest runs with --import-mode=importlib: share through here,
never by importing one test file from another)."""

from __future__ import annotations

import pytest
import torch

from canvit_model import BACKBONES, CanViTConfig, CanViTForPretraining, ViTConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the CI box has 2 shared cores, and oversubscribed torch threads crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _make_tiny_canvit(mp: pytest.MonkeyPatch, teacher_dim: int = 16, *, backbone: str = "test-tiny",
                      patch_size: int = 16, seed: int = 0, **cfg_fields) -> CanViTForPretraining:
    """A seeded tiny CanViT for pretraining: a 2-block dim-32 backbone (registered as `backbone` through `mp`,
    so saved checkpoints load while `mp` is active), 2 canvas heads of 16 dims, 2 canvas registers, a 4 x 4
    teacher grid. `cfg_fields` override further CanViTConfig fields."""
    mp.setitem(BACKBONES, backbone, ViTConfig(dim=32, num_heads=2, depth=2, patch_size=patch_size))
    cfg = CanViTConfig(backbone_name=backbone, canvas_num_heads=2, canvas_head_dim=16, num_canvas_registers=2,
                       **cfg_fields)
    torch.manual_seed(seed)
    return CanViTForPretraining(cfg, teacher_dim=teacher_dim, teacher_patch_grid=4)


@pytest.fixture(scope="session")
def make_tiny_canvit():
    """The tiny-CanViT builder: `make_tiny_canvit(monkeypatch, teacher_dim=16, backbone=..., patch_size=..., **cfg)`.
    Takes the caller's MonkeyPatch so function- and module-scoped fixtures can both use it."""
    return _make_tiny_canvit


@pytest.fixture
def tiny_canvit(monkeypatch, make_tiny_canvit) -> CanViTForPretraining:
    """The default tiny CanViT (backbone "test-tiny" overridden to dim 32 for this test, teacher_dim 16)."""
    return make_tiny_canvit(monkeypatch)


@pytest.fixture
def expect_usage_errors(capsys):
    """`check(main, prog, cases)`: for each (flag, value, why), `main(**{flag: str(value)})` exits 2 without a
    traceback, and its last stderr line is "PROG: error: FLAG ..." containing `why`."""

    def check(main, prog: str, cases) -> None:
        for flag, value, why in cases:
            with pytest.raises(SystemExit) as e:
                main(**{flag: str(value)})
            err = capsys.readouterr().err
            assert e.value.code == 2 and "Traceback" not in err, (flag, err)
            last = err.strip().splitlines()[-1]
            assert last.startswith(f"{prog}: error: {flag} ") and why in last, last

    return check


def _store_complete(task, argv, table, results):
    """Write `table` into `results` as the complete run the task would write for `argv` (its own `plan()`
    computes the identity key): what a finished earlier run leaves behind. Returns the key."""
    import argparse

    from canvit_results import provenance, write_run

    parser = task.build_parser()
    args = parser.parse_args([*argv, "--results", str(results)])
    ident = task.plan(parser, args, torch.device("cpu"))[0]
    write_run(results, ident.kind, ident.key, table, provenance(config={}), extra={"identity": ident.record()})
    return ident.key


def _only_key(results, kind, prefix):
    """The one complete run of `kind` whose key starts with `prefix` + "-" (prefix + identity digest)."""
    from canvit_results import list_runs

    keys = [r.key for r in list_runs(results, kind) if r.key.startswith(prefix + "-")]
    assert len(keys) == 1, keys
    return keys[0]


@pytest.fixture(scope="session")
def store_complete():
    """`store_complete(task_module, argv, table, results) -> key`: a finished earlier run of that identity."""
    return _store_complete


@pytest.fixture(scope="session")
def only_key():
    """`only_key(results, kind, prefix) -> key`: the one complete run under a readable prefix."""
    return _only_key
