import json

import numpy as np
import pandas as pd
import pytest

from canvit_results import (
    RunExistsError, bootstrap_ci, is_complete, list_runs, load_runs, provenance, summarize, write_run,
)


def _table(miou):
    return pd.DataFrame({"t": [0, 1, 2], "miou": miou})


def test_write_then_read_with_provenance(tmp_path):
    prov = provenance(config={"policy": "c2f"}, seed=3, checkpoint="hub/x", argv=["canvit-eval", "ade20k"])
    ref = write_run(tmp_path, "ade20k", "c2f-seed3", _table([0.1, 0.2, 0.3]), prov, extra={"policy": "c2f"})
    meta = json.loads(ref.meta_path.read_text())
    assert meta["complete"] is True and meta["rows"] == 3
    assert meta["provenance"]["seed"] == 3 and meta["provenance"]["command"] == ["canvit-eval", "ade20k"]
    assert {"git_commit", "git_dirty"} <= set(meta["provenance"]["code"])
    assert meta["provenance"]["packages"]["pandas"] == pd.__version__
    df = load_runs(tmp_path, "ade20k", with_meta=["extra.policy", "provenance.seed"])
    assert list(df["run_key"].unique()) == ["c2f-seed3"]
    assert df["extra.policy"].tolist() == ["c2f"] * 3 and df["provenance.seed"].tolist() == [3] * 3
    assert df["miou"].tolist() == [0.1, 0.2, 0.3]


def test_finished_run_is_never_overwritten(tmp_path):
    write_run(tmp_path, "in1k", "r1", _table([1, 2, 3]), {})
    with pytest.raises(RunExistsError):
        write_run(tmp_path, "in1k", "r1", _table([9, 9, 9]), {})
    assert load_runs(tmp_path, "in1k")["miou"].tolist() == [1, 2, 3]


def test_incomplete_and_tampered_runs_are_skipped(tmp_path):
    write_run(tmp_path, "ade20k", "good", _table([1, 2, 3]), {})
    ref = write_run(tmp_path, "ade20k", "tampered", _table([1, 2, 3]), {})
    ref.table_path.write_text("t,miou\n0,0.5\n")  # truncated after the fact
    (tmp_path / "ade20k" / "killed.csv").write_text("t,miou\n0,0.5\n")  # no sidecar: killed before finishing
    (tmp_path / "ade20k" / ".x.csv.123.tmp").write_text("t,miou\n")
    (tmp_path / "ade20k" / "halfmeta.csv").write_text("t,miou\n0,1\n")
    (tmp_path / "ade20k" / "halfmeta.json").write_text('{"complete": tr')
    assert [r.key for r in list_runs(tmp_path, "ade20k")] == ["good"]
    assert not is_complete(tmp_path, "ade20k", "tampered") and not is_complete(tmp_path, "ade20k", "killed")
    # an incomplete run can be redone under its key
    write_run(tmp_path, "ade20k", "killed", _table([4, 5, 6]), {})
    assert is_complete(tmp_path, "ade20k", "killed")


def test_bad_names_and_tables_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        write_run(tmp_path, "../x", "k", _table([1, 2, 3]), {})
    with pytest.raises(ValueError, match="key"):
        write_run(tmp_path, "ade20k", "a b", _table([1, 2, 3]), {})
    with pytest.raises(ValueError, match="empty"):
        write_run(tmp_path, "ade20k", "k", pd.DataFrame({"t": []}), {})
    with pytest.raises(ValueError, match="reserved"):
        write_run(tmp_path, "ade20k", "k", pd.DataFrame({"run_key": [1]}), {})


def test_empty_store_reads_empty(tmp_path):
    assert load_runs(tmp_path, "ade20k").empty
    assert summarize(load_runs(tmp_path, "ade20k"), ["t"], ["miou"]).empty is True


def test_bootstrap_ci_matches_hand_computation():
    x = [0.40, 0.42, 0.45, 0.41]
    mean, lo, hi = bootstrap_ci(x, n_boot=2000, seed=7)
    rng = np.random.default_rng(7)
    means = np.asarray(x)[rng.integers(0, 4, size=(2000, 4))].mean(axis=1)
    assert mean == pytest.approx(np.mean(x))
    assert (lo, hi) == (pytest.approx(np.percentile(means, 2.5)), pytest.approx(np.percentile(means, 97.5)))
    assert lo < mean < hi
    assert bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)


def test_summarize_groups_runs(tmp_path):
    for seed, base in enumerate([0.40, 0.42, 0.44]):
        write_run(tmp_path, "ade20k", f"c2f-seed{seed}", _table([base, base + 0.1, base + 0.2]), {},
                  extra={"policy": "c2f"})
    write_run(tmp_path, "ade20k", "rfs", _table([0.3, 0.3, 0.3]), {}, extra={"policy": "rfs"})
    df = load_runs(tmp_path, "ade20k", with_meta=["extra.policy"]).rename(columns={"extra.policy": "policy"})
    s = summarize(df, ["policy", "t"], ["miou"], n_boot=500, seed=0)
    c2f_t0 = s[(s.policy == "c2f") & (s.t == 0)].iloc[0]
    assert c2f_t0["n"] == 3 and c2f_t0["miou"] == pytest.approx(0.42)
    assert c2f_t0["miou_lo"] >= 0.40 and c2f_t0["miou_hi"] <= 0.44 and c2f_t0["miou_lo"] < c2f_t0["miou_hi"]
    rfs = s[s.policy == "rfs"]
    assert (rfs["n"] == 1).all() and (rfs["miou_lo"] == rfs["miou_hi"]).all()
    with pytest.raises(KeyError, match="top1"):
        summarize(df, ["policy"], ["top1"])


def test_load_runs_meta_fields_holding_dicts_and_lists(tmp_path):
    params = {"lr": 2.8e-4, "loss": "softmax"}
    write_run(tmp_path, "dinov3-probes", "vitb16-s", pd.DataFrame({"epoch": [1, 2], "top1": [0.8, 0.85]}), {},
              extra={"trial_params": params, "rollouts": ["f-iid", "r-iid"]})
    df = load_runs(tmp_path, "dinov3-probes", with_meta=["extra.trial_params", "extra.rollouts", "extra.missing"])
    assert df["extra.trial_params"].tolist() == [params, params]
    assert df["extra.rollouts"].tolist() == [["f-iid", "r-iid"]] * 2
    assert df["extra.missing"].isna().all()


def test_atomic_write_leaves_no_temp_and_replaces_whole(tmp_path):
    from canvit_results import atomic_write_bytes, atomic_write_text

    target = tmp_path / "deep" / "state.json"
    atomic_write_text(target, '{"a": 1}')
    atomic_write_bytes(target, b'{"a": 2}')
    assert target.read_text() == '{"a": 2}'
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no .tmp left behind


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    import pytest
    from canvit_results import atomic_path

    target = tmp_path / "probe.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_bytes(b"half a ne")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["probe.safetensors"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["probe.safetensors"]

