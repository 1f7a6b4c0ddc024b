"""`canvit-eval matrix`: the plan, sharding, and skipping complete runs while redoing incomplete ones."""

import pandas as pd
import pytest
from canvit_data.synthetic import write_ade20k, write_image_folder
from canvit_eval import matrix
from canvit_results import is_complete, provenance, run_paths, write_run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """--ade20k / --imagenet arguments naming tiny sets in the real layouts (the matrix checks its data)."""
    root = tmp_path_factory.mktemp("data")
    ade = write_ade20k(root, 0, 1, size=(32, 32))
    write_image_folder(root / "imagenet" / "val", 2, num_classes=2, size=(32, 32))
    return ["--ade20k", str(ade), "--imagenet", str(root / "imagenet")]


def _complete(root, kind, key):
    write_run(root, kind, key, pd.DataFrame({"t": [0], "top1": [0.5], "top5": [0.9]}), provenance(config={}))


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


def test_skips_complete_runs_and_redoes_incomplete_ones(tmp_path, monkeypatch, capsys, data):
    root = str(tmp_path / "res")
    cfg = matrix.MatrixConfig(results=root, kinds=("in1k",), in1k_policies=("c2f", "rfs"), in1k_seeds=2, finetuned=None)
    keys = [j.key for j in matrix.plan(cfg)]
    assert len(keys) == 3
    done, killed, fresh = keys
    _complete(root, "in1k", done)
    # a killed job: its table was written but not its sidecar
    ref = run_paths(root, "in1k", killed)
    ref.table_path.write_text("t,top1,top5\n0,0.1,0.2\n")
    assert not is_complete(root, "in1k", killed)

    ran = []

    def fake_run(job, in_process=False):
        ran.append(job.key)
        assert "--results" in job.argv and root in job.argv
        _complete(root, job.kind, job.key)
        return 0

    monkeypatch.setattr(matrix, "run_job", fake_run)
    argv = ["--only", "in1k", "--in1k-policies", "c2f,rfs", "--in1k-seeds", "2", "--results", root, "--finetuned", "",
            *data]
    assert matrix.main(argv) == 0
    assert ran == [killed, fresh]
    assert all(is_complete(root, "in1k", k) for k in keys)
    out = capsys.readouterr().out
    assert f"skip in1k/{done}" in out
    ran.clear()
    assert matrix.main(argv) == 0 and ran == []  # everything done: nothing reruns


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


def test_a_key_holding_another_models_run_is_not_done(tmp_path, monkeypatch, capsys, data):
    """A smoke model evaluated with `--preset canvitb16` writes key canvitb16-seed0: the plan must not count
    the released baseline's job as done (nor run it into a RunExistsError), but say which run is in the way."""
    root = str(tmp_path / "res")
    cfg = matrix.MatrixConfig(results=root, kinds=("reconstruction",), reconstruction_seeds=1)
    jobs = {j.key: j for j in matrix.plan(cfg)}
    t = pd.DataFrame({"t": [0], "cos_patch_raw": [0.5], "cos_cls_raw": [0.5], "cos_patch_std": [0.5],
                      "cos_cls_std": [0.5]})
    write_run(root, "reconstruction", "canvitb16-seed0", t, provenance(config={}),
              extra={"model": "runs/smoke/final", "preset": "canvitb16"})
    write_run(root, "reconstruction", "no-reads-seed0", t, provenance(config={}),
              extra={"model": matrix.job_model(jobs["no-reads-seed0"]), "preset": "no-reads"})
    assert matrix.job_model(jobs["canvitb16-seed0"]) == "canvit/canvitb16-abl-baseline-2026-03-02"
    assert matrix.job_status(root, jobs["canvitb16-seed0"]) == "taken"
    assert matrix.job_status(root, jobs["no-reads-seed0"]) == "done"
    assert matrix.job_status(root, jobs["dcan256-seed0"]) == "todo"
    text = matrix.describe(list(jobs.values()), root)
    assert "1 done" in text and "reconstruction/canvitb16-seed0 (holds runs/smoke/final)" in text
    ran = []
    monkeypatch.setattr(matrix, "run_job", lambda job, in_process=False: ran.append(job.key) or 1)
    assert matrix.main(["--only", "reconstruction", "--reconstruction-seeds", "1", "--results", root, *data]) == 1
    assert ran == [] and "holds a run of runs/smoke/final" in capsys.readouterr().err


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
