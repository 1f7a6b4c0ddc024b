"""canvit-model stands alone: small dependency set, no training/eval imports, README quickstart runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

PKG = Path(__file__).resolve().parents[1]
ROOT = PKG.parents[1]
HUB_ID = "canvit/canvitb16-add-vpe-pretrain-g128px-s512px-in21k-dv3b16-2026-02-02"


def test_dependencies_are_the_small_set():
    deps = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[;]", d)[0].lower().replace("_", "-") for d in deps}
    assert names == {"torch", "safetensors", "huggingface-hub", "numpy"}, names


def test_onnx_is_an_optional_extra_that_the_workspace_tests():
    """`canvit-export onnx` needs onnx / onnxruntime / onnxscript: the `onnx` extra, never a hard
    dependency; the workspace dev group installs the extra so CI runs the ONNX tests."""
    meta = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=!~ \[;]", d)[0].lower() for d in meta["optional-dependencies"]["onnx"]}
    assert extra == {"onnx", "onnxruntime", "onnxscript"}
    assert meta["scripts"]["canvit-export"] == "canvit_model.export:main"
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert "canvit-model[onnx]" in dev


def test_import_pulls_in_no_heavy_or_workspace_packages():
    code = (
        "import sys, canvit_model\n"
        "from canvit_model import DINOv3, CanViTForPretraining\n"
        "import canvit_model.export\n"
        "bad = [m for m in ('transformers', 'torchvision', 'matplotlib', 'canvit_train', 'canvit_eval',"
        " 'dinov3_probes', 'timm', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules]\n"
        "print('BAD', bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "BAD []" in r.stdout, r.stdout + r.stderr


def _quickstart(readme: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    code = [b for b in blocks if "CanViTForPretraining.from_pretrained" in b]
    assert code, f"no quickstart in {readme}"
    return code[0]


@pytest.mark.parametrize("readme", [ROOT / "README.md", PKG / "README.md"], ids=["root", "canvit-model"])
def test_readme_quickstart_runs_against_a_local_checkpoint(readme, tmp_path, capsys):
    from canvit_model import CanViTForPretraining

    code = _quickstart(readme)
    assert HUB_ID in code
    torch.manual_seed(0)
    CanViTForPretraining().save_pretrained(tmp_path / "ckpt")  # CanViT-B layout, random weights
    ns: dict = {}
    with torch.no_grad():
        exec(compile(code.replace(HUB_ID, str(tmp_path / "ckpt")), str(readme), "exec"), ns)
    out = ns["out"]
    assert out.state.canvas.shape == (1, 16 + 32 * 32, 1024)
    assert out.state.recurrent_cls.shape == (1, 1, 768)


def test_py_typed_marker_ships_in_the_package():
    assert (PKG / "src" / "canvit_model" / "py.typed").is_file()


def _scripts() -> set[str]:
    names: set[str] = set()
    for pp in (ROOT / "packages").glob("*/pyproject.toml"):
        names |= set(tomllib.loads(pp.read_text()).get("project", {}).get("scripts", {}))
    return names


def _package_names() -> set[str]:
    names = {"canvit-pytorch", "canvit-data"}  # the authors' package; canvit-data (a library, no command)
    for pp in (ROOT / "packages").glob("*/pyproject.toml"):
        names.add(tomllib.loads(pp.read_text())["project"]["name"])
    return names


@pytest.mark.parametrize("readme", [ROOT / "README.md", PKG / "README.md"], ids=["root", "canvit-model"])
def test_readme_claims_hold(readme):
    text = readme.read_text()
    assert "einops" not in text  # not a dependency
    assert "/work/" not in text
    # every console command a README names in backticks is declared by some package
    named = set(re.findall(r"`((?:canvit-[a-z]+|dinov3-probes|pretrain))(?: [^`]*)?`", text))
    commands = {n for n in named if n not in _package_names() - _scripts()}
    assert commands <= _scripts(), commands - _scripts()
    if "pip install" in text:
        assert "pip install packages/canvit-model" in text
        assert "https://download.pytorch.org/whl/cpu" in text


def test_results_doc_speaks_to_outside_readers():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert "/work/" not in text and "engineer" not in text.lower() and "issue" not in text.lower()
