"""Dataset-level (global) mIoU from a confusion matrix (the standard ADE20K metric, paper App. F.2.1).

Intersections and unions are accumulated over the whole evaluation set, then IoU_c = I_c / (U_c + 1e-8)
and mIoU = the mean over classes with U_c > 0 (classes absent from both predictions and labels do not
count). Averaging per-image mIoUs instead scores ~5% lower and is not what the paper reports.
"""

from __future__ import annotations

import torch

from canvit_model.segmentation import IGNORE_INDEX


class ConfusionMatrix:
    """counts[k, target, pred] (int64) for K parallel streams (e.g. one per timestep)."""

    def __init__(self, num_classes: int, streams: int = 1, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(streams, num_classes, num_classes, dtype=torch.int64, device=device)

    def check_labels(self, target: torch.Tensor) -> None:
        """Raise unless every label is in [0, C) or 255 (one host sync; call once per batch)."""
        c = self.num_classes
        bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= c))
        if bool(bad.any()):
            v = target[bad]
            raise ValueError(f"labels must be in [0, {c}) or {IGNORE_INDEX} (ignored); got values in "
                             f"[{int(v.min())}, {int(v.max())}]: is --num-classes right?")

    def update(self, pred: torch.Tensor, target: torch.Tensor, stream: int = 0, *, check: bool = True) -> None:
        """pred, target: integer tensors of the same shape; target == 255 is ignored."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} must have the same shape")
        c = self.num_classes
        t = target.reshape(-1).to(self.counts.device).long()
        p = pred.reshape(-1).to(self.counts.device).long()
        if check:
            self.check_labels(t)
        idx = torch.where(t == IGNORE_INDEX, c * c, t * c + p)  # ignored pixels go to a spare bin
        self.counts[stream] += torch.bincount(idx, minlength=c * c + 1)[: c * c].view(c, c)

    def iou(self, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(IoU per class [C] float64, mask of classes with a non-empty union [C])."""
        m = self.counts[stream].double().cpu()
        inter = m.diagonal()
        union = m.sum(0) + m.sum(1) - inter
        return inter / (union + 1e-8), union > 0

    def miou(self, stream: int = 0) -> float:
        iou, present = self.iou(stream)
        return float(iou[present].mean()) if bool(present.any()) else float("nan")

    def mious(self) -> list[float]:
        return [self.miou(k) for k in range(self.counts.shape[0])]
