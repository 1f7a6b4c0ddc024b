"""The release registry says what the paper released (tests/test_hub_ids.py: it is the only place a hub id is
written). The exact ids below are the regression oracle (the published repos' names): a change to the registry
that renames a release fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from canvit_model import PRESETS, releases
from canvit_model.dinov3 import HUB_REPOS


def test_the_released_ids():
    assert releases.TEACHER == "facebook/dinov3-vitb16-pretrain-lvd1689m"
    assert releases.FLAGSHIP == "canvit/canvitb16-add-vpe-pretrain-g128px-s512px-in21k-dv3b16-2026-02-02"
    assert releases.FINETUNED_IN1K == "canvit/canvitb16-add-vpe-finetune-g128px-s512px-in1k-2026-04-06"
    assert releases.IN1K_PROBE == "canvit/dinov3-vitb16-lvd1689m-in1k-512x512-linear-clf-probe"
    assert releases.ade20k_probe(512, 32) == "canvit/probe-ade20k-40k-s512-c32-in21k"
    assert releases.ade20k_probe(1024, 64) == "canvit/probe-ade20k-40k-s1024-c64-in21k"
    assert releases.dinov3_ade20k_probe("vitb16", 160) == "canvit/probe-ade20k-40k-dv3b-160px"
    assert releases.dinov3_ade20k_probe("vits16", 512) == "canvit/probe-ade20k-40k-dv3s-512px"
    assert releases.dinov3("vith16plus") == "facebook/dinov3-vith16plus-pretrain-lvd1689m"
    assert releases.ABLATION_BASELINE == "canvit/canvitb16-abl-baseline-2026-03-02"
    dates = {"baseline": "03-02", "a": "03-02", "b": "03-02", "c": "03-02", "d": "03-02", "e": "03-03",
             "f": "03-02", "g": "03-02", "h": "03-06", "i": "03-06", "j": "03-03", "k": "03-02"}
    assert {r.row: r.hub_id[-5:] for r in releases.TABLE3} == dates
    assert releases.table3_row("no-bptt").hub_id == "canvit/canvitb16-abl-no-bptt-2026-03-06"
    assert HUB_REPOS == {b: releases.dinov3(b) for b in ("vits16", "vits16plus", "vitb16", "vitl16", "vith16plus")}


def test_table3_rows_match_the_model_presets():
    assert [r.model_preset for r in releases.TABLE3] == list(PRESETS)
    for r in releases.TABLE3:
        p = PRESETS[r.model_preset]
        assert p.table3_row == r.row
        assert r.recipe == "abl-" + (r.model_preset if r.row != "baseline" else "baseline")
        # each ablation preset names its Table 3 checkpoint; canvitb16 names the flagship, not the short-run baseline
        assert p.hub_repo == (releases.FLAGSHIP if r.row == "baseline" else r.hub_id)
    assert releases.table3_row("canvitb16").recipe == "abl-baseline"  # not the flagship's recipe
    assert releases.FLAGSHIP_RECIPE == "canvit-b"


def test_bad_names_are_one_line_errors():
    with pytest.raises(ValueError, match="valid:.*vitb16"):
        releases.dinov3("vitb14")
    with pytest.raises(ValueError, match="no released ADE20K probe for DINOv3 'vitl16'"):
        releases.dinov3_ade20k_probe("vitl16", 160)
    with pytest.raises(ValueError, match="in no Table 3 row"):
        releases.table3_row("smoke")


def test_the_registry_imports_nothing_of_ours():
    tree = ast.parse(Path(releases.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "dataclasses"} and not any(
        isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), imported
