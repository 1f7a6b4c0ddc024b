import csv
import subprocess
import sys
from pathlib import Path

PAPER = Path(__file__).resolve().parents[1]


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
    assert {r["Row"] for r in rows} == set("abcdefghijk") | {""}
    t1 = (tmp_path / "table01.csv").read_text()
    assert "Canvas embedding dim,1024" in t1 and "Canvas Attention R/W stride,2" in t1
    assert (tmp_path / "table01.md").read_text().startswith("### Table 1")
