"""The atomic writers: `canvit_model.io` (model checkpoints) and `canvit_results.atomic` (everything else).

Files they create get the umask's mode (0o644 under umask 022, not mkstemp's 0o600), and a process killed
between writing and renaming leaves the previous file or directory intact.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))}


def test_every_writer_creates_files_with_the_umask_mode(tmp_path, umask022):
    import pandas as pd
    from canvit_model.io import save_atomic
    from canvit_results import atomic_dir, atomic_path, atomic_write_text, provenance, write_run
    from canvit_train.pretrain import checkpoint as ckpt

    save_atomic(tmp_path / "model", {"a": 1}, {"w": torch.zeros(2)}, readme="card")
    atomic_write_text(tmp_path / "text" / "a.txt", "x")
    with atomic_path(tmp_path / "text" / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    with atomic_dir(tmp_path / "dir") as tmp:
        (tmp / "f").write_text("z")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "g").write_text("w")
    write_run(tmp_path / "results", "demo", "key", pd.DataFrame({"t": [0]}), provenance(config={}))
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters())
    ckpt.save_checkpoint(tmp_path / "run", 1, model, opt, {"data_position": 0})

    modes = _modes(tmp_path)
    files = {k: m for k, m in modes.items() if (tmp_path / k).is_file()}
    dirs = {k: m for k, m in modes.items() if (tmp_path / k).is_dir()}
    assert len(files) >= 11 and {"model/model.safetensors", "model/config.json", "dir/sub/g",
                                 "run/checkpoints/step-000000001/state.json"} <= set(files)
    assert files == dict.fromkeys(files, 0o644), files
    assert dirs == dict.fromkeys(dirs, 0o755), dirs
    assert not [k for k in modes if Path(k).name.startswith(".")]  # no temp file left behind


def test_the_mode_follows_the_umask(tmp_path):
    from canvit_model.io import save_atomic
    from canvit_results import atomic_write_text

    old = os.umask(0o027)
    try:
        save_atomic(tmp_path / "m", {}, {"w": torch.zeros(1)})
        atomic_write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m" / "config.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o640


def _write(which: str, target: Path, text: str) -> None:
    if which == "model":
        from canvit_model.io import save_atomic

        save_atomic(target, {"v": text}, {"w": torch.zeros(1)})
    elif which == "file":
        from canvit_results import atomic_write_text

        atomic_write_text(target / "f.txt", text)
    else:
        from canvit_results import atomic_dir

        with atomic_dir(target) as tmp:
            (tmp / "f.txt").write_text(text)


def _killed_after_writing(fn) -> int:
    """Run `fn` in a forked child that dies (os._exit, no clean-up) where it would rename; its exit code."""
    pid = os.fork()
    if pid == 0:  # the child
        try:
            import canvit_results.atomic

            die = lambda *a, **k: os._exit(3)  # noqa: E731
            os.replace = os.rename = canvit_results.atomic.exchange = die
            fn()
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("which", ["model", "file", "dir"])
def test_a_crash_between_write_and_rename_keeps_the_previous_version(tmp_path, which):
    target = tmp_path / "out"
    _write(which, target, "old")
    assert _killed_after_writing(lambda: _write(which, target, "new")) == 3
    if which == "model":
        import json

        assert json.loads((target / "config.json").read_text()) == {"v": "old"}
    else:
        assert (target / "f.txt").read_text() == "old"
    leftovers = [p.name for p in (target if which != "dir" else tmp_path).iterdir() if p.name.startswith(".")]
    assert leftovers  # the killed writer's temp file / directory is what is left, beside the intact target


def test_directory_swap_replaces_with_and_without_exchange(tmp_path, monkeypatch):
    import canvit_results.atomic as atomic

    target = tmp_path / "d"
    for text in ("one", "two"):
        with atomic.atomic_dir(target) as tmp:
            (tmp / text).write_text(text)
        assert [p.name for p in target.iterdir()] == [text]
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)  # the documented fallback
    with atomic.atomic_dir(target) as tmp:
        (tmp / "three").write_text("3")
    assert [p.name for p in target.iterdir()] == ["three"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_exchange_swaps_two_directories_on_linux(tmp_path):
    from canvit_results.atomic import exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(); b.mkdir()
    (a / "x").write_text("a"); (b / "y").write_text("b")
    if not sys.platform.startswith("linux"):
        assert exchange(a, b) is False
        return
    assert exchange(a, b) is True
    assert [p.name for p in a.iterdir()] == ["y"] and [p.name for p in b.iterdir()] == ["x"]


def test_a_failing_writer_leaves_the_old_directory(tmp_path):
    from canvit_results import atomic_dir

    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "old").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "new").write_text("2")
        raise RuntimeError("writer failed")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
