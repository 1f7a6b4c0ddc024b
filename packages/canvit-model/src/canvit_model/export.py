"""The recurrent glimpse step as an ONNX graph, to run CanViT outside PyTorch (`canvit-export onnx`).

    canvit-export onnx --model CHECKPOINT --canvas-grid 32 --glimpse-px 128 --out canvit-onnx/

writes canvit-onnx/canvit_step.onnx, one glimpse step (batch dynamic; canvas grid G and glimpse size P
fixed at export), and canvit-onnx/init_state.safetensors, the state before any glimpse (batch 1):

    inputs   glimpse [B, 3, P, P] float32   normalized, as `sample_at_viewpoint` returns it
             canvas [B, R + G*G, D_can]      recurrent_cls [B, 1, D]        the state
             center [B, 2] (y, x)            scale [B]                      the Viewpoint
    outputs  next_canvas, next_recurrent_cls (the next state)
             teacher_patches [B, G*G, T], teacher_cls [B, T] (with --teacher-predictions: standardized
             teacher-space predictions, `predict_teacher_patches` / `predict_teacher_cls`)

Python API: `GlimpseStep(model)` (the tensor-only step) and `export_onnx(model, out_dir, ...)`.
Needs the optional extra: pip install 'canvit-model[onnx]' (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .canvit import CanViT, CanViTForPretraining, RecurrentState
from .geometry import Viewpoint
from .io import atomic_file, write_safetensors

ONNX_NAME = "canvit_step.onnx"
INIT_STATE_NAME = "init_state.safetensors"
INPUT_NAMES = ("glimpse", "canvas", "recurrent_cls", "center", "scale")
OUTPUT_NAMES = ("next_canvas", "next_recurrent_cls")
TEACHER_OUTPUT_NAMES = ("teacher_patches", "teacher_cls")
DEFAULT_OPSET = 18
MAX_CANVAS_GRID = 256  # 65,536 canvas tokens: far beyond any trained grid (the paper uses 8..64)


class GlimpseStep(nn.Module):
    """One CanViT glimpse step on plain tensors (what an exported graph can take):
    (glimpse, canvas, recurrent_cls, center, scale) -> (next_canvas, next_recurrent_cls[, teacher_patches,
    teacher_cls]). The same computation as `model(glimpse, RecurrentState(...), Viewpoint(...))`."""

    def __init__(self, model: CanViT | CanViTForPretraining, teacher_predictions: bool = False) -> None:
        super().__init__()
        if teacher_predictions and not isinstance(model, CanViTForPretraining):
            raise TypeError("teacher_predictions needs a CanViTForPretraining (it has the teacher readouts)")
        self.model = model
        self.canvit = model.canvit if isinstance(model, CanViTForPretraining) else model
        self.teacher_predictions = teacher_predictions

    def forward(
        self,
        glimpse: torch.Tensor,  # [B, 3, P, P]
        canvas: torch.Tensor,  # [B, R + G*G, D_can]
        recurrent_cls: torch.Tensor,  # [B, 1, D]
        center: torch.Tensor,  # [B, 2]
        scale: torch.Tensor,  # [B]
    ) -> tuple[torch.Tensor, ...]:
        # the viewpoint is checked where the caller builds it; a traced one holds symbolic tensors
        viewpoint = Viewpoint._unchecked(centers=center, scales=scale)
        state = self.canvit(glimpse, RecurrentState(canvas=canvas, recurrent_cls=recurrent_cls), viewpoint).state
        if not self.teacher_predictions:
            return state.canvas, state.recurrent_cls
        model = self.model
        return (state.canvas, state.recurrent_cls, model.predict_teacher_patches(state.canvas),
                model.predict_teacher_cls(state.recurrent_cls))


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript") if _find(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'canvit-model[onnx]'")


def _find(module: str):  # noqa: ANN202
    import importlib.util

    return importlib.util.find_spec(module)


@torch.no_grad()
def export_onnx(
    model: CanViT | CanViTForPretraining,
    out_dir: str | os.PathLike[str],
    *,
    canvas_grid: int,
    glimpse_px: int,
    teacher_predictions: bool = False,
    force: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write out_dir/canvit_step.onnx (one glimpse step, batch dynamic) and out_dir/init_state.safetensors
    (`canvas`, `recurrent_cls` of `init_state(batch_size=1, canvas_grid_size=canvas_grid)`).

    The model is put in eval mode, float32, on the CPU. The canvas grid and glimpse size are fixed in the graph. Refuses to overwrite an existing
    canvit_step.onnx unless `force`; both files land by atomic rename (the .onnx last). Returns out_dir.
    """
    _require_onnx()
    base = model.canvit if isinstance(model, CanViTForPretraining) else model
    p = base.patch_size
    for name, value, lo in (("canvas_grid", canvas_grid, 1), ("glimpse_px", glimpse_px, p)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if glimpse_px % p:
        raise ValueError(f"glimpse_px must be a multiple of the patch size {p}, got {glimpse_px}")
    out = Path(os.fspath(out_dir))
    target = out / ONNX_NAME
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True (--force) to overwrite it")
    out.mkdir(parents=True, exist_ok=True)

    model = model.eval().float().cpu()
    step = GlimpseStep(model, teacher_predictions=teacher_predictions).eval()
    batch = 2  # traced at 2 (a size-1 dimension would be specialized), exported dynamic
    init = base.init_state(batch_size=1, canvas_grid_size=canvas_grid)
    g = torch.Generator().manual_seed(0)
    args = (
        torch.randn(batch, 3, glimpse_px, glimpse_px, generator=g),
        init.canvas.expand(batch, -1, -1).contiguous(),
        init.recurrent_cls.expand(batch, -1, -1).contiguous(),
        torch.zeros(batch, 2),
        torch.ones(batch),
    )
    b = torch.export.Dim("batch", min=1, max=65536)
    outputs = OUTPUT_NAMES + (TEACHER_OUTPUT_NAMES if teacher_predictions else ())
    with atomic_file(out / INIT_STATE_NAME) as tmp:
        write_safetensors({"canvas": init.canvas, "recurrent_cls": init.recurrent_cls}, tmp, metadata={
            "canvas_grid": str(canvas_grid)})
    with atomic_file(target) as tmp:
        torch.onnx.export(
            step, args, str(tmp), dynamo=True, external_data=False, opset_version=opset,
            input_names=list(INPUT_NAMES), output_names=list(outputs),
            dynamic_shapes=tuple({0: b} for _ in INPUT_NAMES), verbose=False,
        )
    return out


# -- command line ---------------------------------------------------------------------------------


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(the program's parser, its `onnx` subcommand's parser)."""
    parser = argparse.ArgumentParser(
        prog="canvit-export",
        description="Export CanViT for running outside PyTorch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{onnx}")
    onnx = sub.add_parser(
        "onnx",
        help="the recurrent glimpse step as ONNX (+ the initial state)",
        description=(
            "Write OUT/canvit_step.onnx (one glimpse step: inputs glimpse, canvas, recurrent_cls, center, "
            "scale; outputs next_canvas, next_recurrent_cls; batch dynamic, canvas grid and glimpse size "
            "fixed) and OUT/init_state.safetensors (canvas, recurrent_cls for batch 1). "
            "Needs pip install 'canvit-model[onnx]'."
        ),
        epilog=(
            "example:\n"
            "  canvit-export onnx --model OWNER/CHECKPOINT --canvas-grid 32 --glimpse-px 128 --out canvit-onnx/\n"
            "  canvit-export onnx --random-init canvitb16 --canvas-grid 8 --glimpse-px 128 --out /tmp/canvit-onnx"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = onnx.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="M",
                     help="a CanViTForPretraining checkpoint: hub repo id (owner/name) or local directory")
    src.add_argument("--random-init", metavar="PRESET",
                     help="random weights of a named preset instead (canvit_model.PRESETS, e.g. canvitb16); "
                          "for trying the export offline")
    onnx.add_argument("--canvas-grid", type=int, required=True, metavar="G",
                      help=f"canvas grid size G (G x G spatial tokens), 1..{MAX_CANVAS_GRID}; fixed in the graph")
    onnx.add_argument("--glimpse-px", type=int, required=True, metavar="P",
                      help="glimpse side in pixels, a positive multiple of the patch size (16); fixed in the graph")
    onnx.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    onnx.add_argument("--teacher-predictions", action="store_true",
                      help="also output teacher_patches and teacher_cls (standardized teacher space) (default: off)")
    onnx.add_argument("--force", action="store_true",
                      help="overwrite an existing DIR/canvit_step.onnx (default: refuse)")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                      help=f"ONNX opset version, 18 or newer (default: {DEFAULT_OPSET})")
    onnx.add_argument("--revision", default=None, help="hub revision of --model (default: the main branch)")
    onnx.add_argument("--local-files-only", action="store_true",
                      help="never download --model, use the hub cache only (default: off)")
    return parser, onnx


def main(argv: Sequence[str] | None = None) -> int:
    parser, onnx_parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.canvas_grid <= MAX_CANVAS_GRID:
        onnx_parser.error(f"--canvas-grid must be in 1..{MAX_CANVAS_GRID}, got {args.canvas_grid}")
    if args.glimpse_px < 1:
        onnx_parser.error(f"--glimpse-px must be a positive multiple of the patch size, got {args.glimpse_px}")
    if args.opset < 18:
        onnx_parser.error(f"--opset must be 18 or newer (the torch.export-based exporter), got {args.opset}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        onnx_parser.error(f"--out must be a directory, but {out} is a file")
    if (out / ONNX_NAME).exists() and not args.force:
        onnx_parser.error(f"--out {out} already holds {ONNX_NAME}; pass --force to overwrite it")
    try:
        _require_onnx()
    except ImportError as e:
        onnx_parser.error(str(e))
    if args.random_init is not None:
        from .presets import PRESETS

        if args.random_init not in PRESETS:
            onnx_parser.error(f"--random-init must be one of {', '.join(PRESETS)}, got {args.random_init!r}")
        torch.manual_seed(0)
        model = CanViTForPretraining.from_preset(args.random_init)
    else:
        try:
            model = CanViTForPretraining.from_pretrained(
                args.model, revision=args.revision, local_files_only=args.local_files_only)
        except (OSError, ValueError) as e:
            onnx_parser.error(f"--model {args.model}: {str(e).splitlines()[0]}")
    p = model.canvit.patch_size
    if args.glimpse_px % p:
        onnx_parser.error(f"--glimpse-px must be a positive multiple of the patch size {p}, got {args.glimpse_px}")
    print(f"exporting the glimpse step (canvas grid {args.canvas_grid}, glimpse {args.glimpse_px} px) ...",
          file=sys.stderr)
    export_onnx(model, out, canvas_grid=args.canvas_grid, glimpse_px=args.glimpse_px,
                teacher_predictions=args.teacher_predictions, force=args.force, opset=args.opset)
    print(f"wrote {out / ONNX_NAME} and {out / INIT_STATE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
