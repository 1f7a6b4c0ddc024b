"""`canvit-eval matrix`: the plan, sharding, and skipping complete runs while redoing incomplete ones."""

import pandas as pd
import pytest
from canvit_data.synthetic import write_ade20k, write_image_folder
from canvit_eval import harness, matrix
from canvit_eval.tasks import in1k as in1k_task
from canvit_results import is_complete, list_runs, run_paths


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network in CI: hub ids stay unresolved (status "unknown") instead of asking the hub."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    matrix._cached_identity.cache_clear()
    harness._hub_revision.cache_clear()


def _checkpoint(path, weights=b"w"):
    """A checkpoint directory in the published layout (planning digests its files; nothing is loaded)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """--ade20k / --imagenet arguments naming tiny sets in the real layouts (the matrix checks its data)."""
    root = tmp_path_factory.mktemp("data")
    ade = write_ade20k(root, 0, 1, size=(32, 32))
    write_image_folder(root / "imagenet" / "val", 2, num_classes=2, size=(32, 32))
    return ["--ade20k", str(ade), "--imagenet", str(root / "imagenet")]


def _complete(root, job, store_complete):
    return store_complete(in1k_task, list(job.argv[1:]), pd.DataFrame({"t": [0], "top1": [0.5], "top5": [0.9]}), root)


def test_plan_covers_the_paper_matrix_breadth_first():
    jobs = matrix.plan(matrix.MatrixConfig())
    by_kind = {k: [j for j in jobs if j.kind == k] for k in matrix.KINDS}
    # ADE20K: 3 configs x (4 stochastic policies x 10 seeds + 2 deterministic x 1)
    assert len(by_kind["ade20k"]) == 3 * (4 * 10 + 2)
    assert len(by_kind["ade20k-dinov3"]) == 2 * len(matrix.DINOV3_INPUT_PX)
    assert len(by_kind["in1k"]) == 2 * (4 * 5 + 1)  # frozen + fine-tuned; rfs is deterministic
    ft = [j for j in by_kind["in1k"] if j.key.startswith("canvitb16-add-vpe-finetune")]
    assert len(ft) == 21 and all("--probe" not in j.argv for j in ft)
    assert len(by_kind["reconstruction"]) == 12 * 5  # CanViT-B + the 11 ablations of Table 3
    assert len({(j.kind, j.key) for j in jobs}) == len(jobs)
    rounds = [j.round for j in jobs]
    assert rounds == sorted(rounds)  # every configuration's first run before any second run
    k = next(j for j in jobs if j.kind == "in1k" and j.key.endswith("-c2f-s512-c32-seed3"))
    assert k.argv[:1] == ("in1k",) and "--probe" in k.argv and matrix.IN1K_PROBE in k.argv
    assert any(j.key == "no-reads-seed4" for j in by_kind["reconstruction"])
    assert any(j.key == "dinov3-vitb16-160px" for j in by_kind["ade20k-dinov3"])
    assert all(j.gpu_s > matrix.STARTUP_S for j in jobs)
    # a c64 ADE20K run costs more than a c32 one; an IN1k run more than an ADE20K one
    c32 = next(j for j in by_kind["ade20k"] if "-s512-c32-" in j.key).gpu_s
    c64 = next(j for j in by_kind["ade20k"] if "-s512-c64-" in j.key).gpu_s
    assert c32 < c64 < by_kind["in1k"][0].gpu_s


def test_shards_partition_the_plan():
    jobs = matrix.plan(matrix.MatrixConfig())
    shards = [matrix.shard(jobs, i, 7) for i in range(7)]
    assert sorted(j.key for s in shards for j in s) == sorted(j.key for j in jobs)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_skips_complete_runs_and_redoes_incomplete_ones(tmp_path, monkeypatch, capsys, data, store_complete):
    root = str(tmp_path / "res")
    model, probe = _checkpoint(tmp_path / "run" / "final"), _checkpoint(tmp_path / "probe")
    cfg = matrix.MatrixConfig(model=model, in1k_probe=probe, imagenet=data[3], results=root, kinds=("in1k",),
                              in1k_policies=("c2f", "rfs"), in1k_seeds=2, finetuned=None)
    jobs = matrix.plan(cfg)
    assert [j.key for j in jobs] == ["final-c2f-s512-c32-seed0", "final-rfs-s512-c32-seed0", "final-c2f-s512-c32-seed1"]
    done, killed, fresh = jobs
    done_key = _complete(root, done, store_complete)
    # a killed job: its table was written under its identity key, but not its sidecar
    ident = matrix.job_identity(killed)
    run_paths(root, "in1k", ident.key).table_path.write_text("t,top1,top5\n0,0.1,0.2\n")
    assert not is_complete(root, "in1k", ident.key)
    assert [matrix.job_status(root, j)[0] for j in jobs] == ["done", "to run", "to run"]

    ran = []

    def fake_run(job, in_process=False):
        ran.append(job.key)
        assert "--results" in job.argv and root in job.argv
        _complete(root, job, store_complete)
        return 0

    monkeypatch.setattr(matrix, "run_job", fake_run)
    argv = ["--only", "in1k", "--in1k-policies", "c2f,rfs", "--in1k-seeds", "2", "--results", root, "--finetuned", "",
            "--model", model, "--in1k-probe", probe, *data]
    assert matrix.main(argv) == 0
    assert ran == [killed.key, fresh.key]
    out = capsys.readouterr().out
    assert f"skip in1k/{done_key}" in out and "1 done, 2 to run, 0 conflicting" in out
    ran.clear()
    assert matrix.main(argv) == 0 and ran == []  # everything done: nothing reruns
    # the same model copied elsewhere plans as done; retrained weights in a folder also named final conflict
    import shutil

    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    assert matrix.main([*argv[:-6], "--model", str(tmp_path / "copy" / "final"), "--in1k-probe", probe, *data]) == 0
    assert ran == []
    other = _checkpoint(tmp_path / "run2" / "final", weights=b"other weights")
    cfg2 = matrix.MatrixConfig(model=other, in1k_probe=probe, imagenet=data[3], results=root, kinds=("in1k",),
                               in1k_policies=("c2f", "rfs"), in1k_seeds=2, finetuned=None)
    status = [matrix.job_status(root, j) for j in matrix.plan(cfg2)]
    assert [s for s, _ in status] == ["conflicting"] * 3
    assert f"goes beside {done_key}" in status[0][1]
    text = matrix.describe(matrix.plan(cfg2), root)
    assert "0 done, 0 to run, 3 conflicting" in text
    capsys.readouterr()
    assert matrix.main([*argv[:-6], "--model", other, "--in1k-probe", probe, *data]) == 0 and len(ran) == 3
    assert len(list_runs(root, "in1k")) == 6  # both models' results, side by side


def test_failed_job_stops_unless_keep_going(tmp_path, monkeypatch, data):
    root = str(tmp_path / "res")
    ran = []

    def failing(job, in_process=False):
        ran.append(job.key)
        return 3

    monkeypatch.setattr(matrix, "run_job", failing)
    argv = ["--only", "in1k", "--in1k-seeds", "1", "--results", root, "--finetuned", "", *data]
    assert matrix.main(argv) == 1 and len(ran) == 1
    ran.clear()
    assert matrix.main([*argv, "--keep-going"]) == 1 and len(ran) == 5


def test_dry_run_runs_nothing_and_prints_estimates(tmp_path, monkeypatch, capsys, data):
    monkeypatch.setattr(matrix, "run_job", lambda *a, **k: pytest.fail("dry run ran a job"))
    assert matrix.main(["--dry-run", "--results", str(tmp_path), "--worker-index", "1", "--num-workers", "4", *data]) == 0
    out = capsys.readouterr().out
    assert "worker 1 of 4" in out and "estimated GPU time" in out and "canvit-eval in1k --model" in out


def test_bad_worker_index(capsys):
    with pytest.raises(SystemExit):
        matrix.main(["--worker-index", "4", "--num-workers", "4", "--dry-run"])
    assert "--worker-index must be in [0, 4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        matrix.main(["--only", "nope", "--dry-run"])
    assert "--only" in capsys.readouterr().err


def _usage_error(argv, capsys):
    """Exit 2 with nothing on stdout (no plan printed); the stderr's last line."""
    with pytest.raises(SystemExit) as e:
        matrix.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_dry_run_checks_the_data_paths(tmp_path, monkeypatch, capsys, data):
    """A dry run reports a missing or malformed --ade20k / --imagenet as the real run does (exit 2, the flag
    named), before printing any plan; a kind that is not planned does not need its data."""
    monkeypatch.setattr(matrix, "run_job", lambda *a, **k: pytest.fail("ran a job"))
    ade, imagenet = data[1], data[3]
    base = ["--results", str(tmp_path / "res")]
    missing = str(tmp_path / "no-such-dir")
    for run in (["--dry-run"], []):  # dry run and real run alike
        line = _usage_error([*run, *base, "--ade20k", missing, "--imagenet", imagenet], capsys)
        assert line.startswith(f"canvit-eval matrix: error: --ade20k '{missing}': ") and "no such" in line
    # the default (a relative folder that is not here, nor an owner/name hub id) is not taken on trust
    assert "error: --imagenet 'imagenet'" in _usage_error(["--dry-run", *base, "--only", "in1k"], capsys)
    # a folder that exists but is not in the layout: an ImageNet root without the split, ADE20K without images/
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _usage_error(["--dry-run", *base, "--only", "in1k", "--imagenet", str(empty)], capsys)
    assert line.startswith(f"canvit-eval matrix: error: --imagenet '{empty}': ")
    line = _usage_error(["--dry-run", *base, "--only", "ade20k", "--ade20k", str(empty)], capsys)
    assert line.startswith(f"canvit-eval matrix: error: --ade20k '{empty}': ")
    line = _usage_error(["--dry-run", *base, "--only", "reconstruction", "--ade20k", missing], capsys)
    assert "--ade20k" in line
    # only what the planned kinds read is needed; a hub dataset id is left to the jobs (nothing downloaded)
    assert matrix.main(["--dry-run", *base, "--only", "in1k", "--imagenet", imagenet, "--ade20k", missing]) == 0
    assert matrix.main(["--dry-run", *base, "--only", "ade20k", "--ade20k", ade]) == 0
    assert matrix.main(["--dry-run", *base, "--only", "in1k", "--imagenet", "ILSVRC/imagenet-1k",
                        "--imagenet-split", "validation"]) == 0
    assert "estimated GPU time" in capsys.readouterr().out


def test_bad_extra_quoting_is_a_usage_error(capsys, data):
    line = _usage_error(["--dry-run", "--extra", '--batch-size "16', *data], capsys)
    assert line.startswith("canvit-eval matrix: error: --extra ") and "No closing quotation" in line
