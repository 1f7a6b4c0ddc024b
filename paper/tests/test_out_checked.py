"""`make_tables.py --out` is checked before anything is built (issue 20: output locations in every command)."""

import subprocess
import sys
from pathlib import Path

PAPER = Path(__file__).resolve().parents[1]


def test_an_out_folder_under_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("")
    r = subprocess.run([sys.executable, str(PAPER / "make_tables.py"), "--out", str(tmp_path / "file" / "out"),
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"argument --out: cannot create '{tmp_path / 'file' / 'out'}': {tmp_path / 'file'} is a file" in r.stderr
