"""The root README's "Tiny end to end" block, run exactly as written, one command at a time, in a temporary
folder (so the walkthrough cannot rot). A failure names the README command and shows its stderr."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- walkthrough:"
# the pipeline the walkthrough must cover, in this order (issue 20)
STAGES = ["canvit-train synthetic-data", "canvit-train export-teacher-features", "canvit-train verify-features",
          "canvit-train compute-standardizers", "pretrain --preset smoke", "canvit-eval train-probe",
          "canvit-eval ade20k", "dinov3-probes extract", "dinov3-probes tune", "dinov3-probes export",
          "dinov3-probes evaluate", "canvit-eval in1k", "canvit-eval reconstruction", "canvit-eval visualize",
          "paper/make_tables.py"]


def walkthrough_commands(readme: Path = REPO / "README.md") -> list[str]:
    """The shell commands of the fenced block after the walkthrough marker (continuations joined, comments and
    blank lines dropped)."""
    text = readme.read_text(encoding="utf-8")
    at = text.find(MARKER)
    assert at >= 0, f"{readme}: no '{MARKER}' marker before the walkthrough block"
    m = re.search(r"```bash\n(.*?)```", text[at:], re.S)
    assert m, f"{readme}: no ```bash block after the walkthrough marker"
    joined = m.group(1).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_walkthrough_covers_the_whole_pipeline_in_order():
    cmds = walkthrough_commands()
    where = [next((i for i, c in enumerate(cmds) if stage in c), None) for stage in STAGES]
    missing = [s for s, i in zip(STAGES, where, strict=True) if i is None]
    assert not missing, f"README walkthrough lacks: {missing}"
    assert where == sorted(where), list(zip(STAGES, where, strict=True))
    for c in cmds:
        shlex.split(c)  # every line is one well-formed command


def test_the_walkthrough_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CANVIT_RESULTS", "CANVIT_TRACEBACK")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["REPO"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    timings = []
    for i, cmd in enumerate(walkthrough_commands(), 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, shell=True, executable="/bin/bash", cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=900)
        timings.append((round(time.perf_counter() - t0, 1), cmd.split(" --")[0]))
        if r.returncode != 0:
            pytest.fail(f"README walkthrough command {i} failed with exit status {r.returncode}:\n  {cmd}\n"
                        f"--- its stderr (last 4000 characters) ---\n{r.stderr[-4000:]}\n"
                        f"--- its stdout (last 1000) ---\n{r.stdout[-1000:]}", pytrace=False)
    from canvit_results import load_runs

    for kind in ("teacher-export", "pretrain", "ade20k", "dinov3-probes", "in1k", "reconstruction"):
        assert not load_runs(tmp_path / "results", kind).empty, kind
    assert (tmp_path / "viz" / "strip.png").is_file() and (tmp_path / "runs/smoke/final/model.safetensors").is_file()
    assert (tmp_path / "tables" / "tables.md").stat().st_size > 0
    print("walkthrough timings (s):", timings)
