import csv
import subprocess
import sys
from pathlib import Path

import pytest

from paper import make_tables, tablelib

PAPER = Path(make_tables.__file__).parent


def test_make_tables_writes_csv_and_markdown(tmp_path):
    r = subprocess.run(
        [sys.executable, str(PAPER / "make_tables.py"), "--only", "1", "3", "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "table03.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert rows[0]["Params"] == "95.2M"
    assert rows[0]["GFLOPs"] == "15.5" and rows[0]["GFLOPs (paper)"] == "15.5"
    assert rows[1]["Δ Sp. Cos (paper)"] == "-12.0%"
    assert {r["Row"] for r in rows} == set("abcdefghijk") | {""}
    t1 = (tmp_path / "table01.csv").read_text()
    assert "Canvas embedding dim,1024" in t1 and "Canvas Attention R/W stride,2" in t1
    assert (tmp_path / "table01.md").read_text().startswith("### Table 1")


@pytest.mark.slow
def test_make_tables_full_run_writes_flop_tables_and_figure(tmp_path):
    (tmp_path / "empty-results").mkdir()
    r = subprocess.run(
        [sys.executable, str(PAPER / "make_tables.py"), "--out", str(tmp_path), "--quiet", "--results",
         str(tmp_path / "empty-results")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    for n in (1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19):
        assert (tmp_path / f"table{n:02d}.csv").exists() and (tmp_path / f"table{n:02d}.md").exists()
    assert (tmp_path / "figure07.png").read_bytes()[:4] == b"\x89PNG"
    t5 = (tmp_path / "table05.md").read_text()
    assert "215.21" in t5 and "pending [P1]" in t5 and "canvit-eval ade20k --dinov3 vits16 --input-px 128" in t5
    assert "a GPU, ADE20K" in t5
    for n in (4, 6):
        assert (tmp_path / f"figure{n:02d}.png").read_bytes()[:4] == b"\x89PNG"


def test_make_tables_no_figures(tmp_path):
    r = subprocess.run(
        [sys.executable, str(PAPER / "make_tables.py"), "--only", "10", "--out", str(tmp_path), "--quiet",
         "--no-figures"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "figure07.png").exists()
    with open(tmp_path / "table10.csv") as f:
        rows = {r["Component"]: r for r in csv.DictReader(f)}
    assert rows["Per-glimpse total"]["Total (G)"] == "15.9"


def test_make_tables_missing_results_dir_is_a_usage_error(tmp_path):
    """A mistyped --results is exit status 2 with one argparse error line naming it, not an empty store."""
    missing, out = tmp_path / "no-such-store", tmp_path / "out"
    r = subprocess.run([sys.executable, str(PAPER / "make_tables.py"), "--results", str(missing), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1] == f"make_tables.py: error: --results {missing}: no such directory"
    assert "Traceback" not in r.stderr and not out.exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        make_tables.main(["--results", str(tmp_path / "file"), "--out", str(out)])
    assert e.value.code == 2 and not out.exists()


@pytest.mark.parametrize("via", ["repo", "env"])
def test_make_tables_default_store_not_there_yet_renders_pending(tmp_path, monkeypatch, via):
    """Without --results, a default store that does not exist yet (a fresh clone: no results/, or
    $CANVIT_RESULTS not created yet) is an empty store: every results cell pending."""
    monkeypatch.delenv("CANVIT_RESULTS", raising=False)
    if via == "repo":
        monkeypatch.setattr(tablelib, "REPO", tmp_path / "clone")
    else:
        monkeypatch.setenv("CANVIT_RESULTS", str(tmp_path / "store"))
    default = tablelib.default_results()
    assert not default.exists()
    out = tmp_path / "out"
    assert make_tables.main(["--out", str(out), "--quiet", "--no-figures", "--only", "6", "7"]) == 0
    md = (out / "tables.md").read_text()
    assert "| 6       | ADE20K mIoU (%) by policy and timestep (T = 21)       | 0          | 96        | pending  |" in md
    assert "pending [P1]" in (out / "table07.md").read_text() and not default.exists()


def test_make_tables_env_store_missing_is_noted_and_unknown_table_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CANVIT_RESULTS", str(tmp_path / "typo"))
    assert make_tables.main(["--out", str(tmp_path / "out"), "--quiet", "--no-figures", "--only", "4"]) == 0
    assert f"$CANVIT_RESULTS={tmp_path / 'typo'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        make_tables.main(["--out", str(tmp_path / "out2"), "--only", "4", "99"])
    assert e.value.code == 2 and "--only 99: no such table" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_every_table_3_to_19_has_a_script():
    assert set(range(3, 20)) <= set(make_tables.table_modules())
    assert make_tables.table_modules()[9] == "paper.tables.table09"
