"""The reconstruction metric: how well a CanViT's readouts reconstruct its teacher (paper §5.2, Table 4).

After a glimpse the readouts predict the teacher's patch tokens (from the canvas) and CLS token (from the
recurrent CLS), in the standardized space. Four cosines per image:

- `cos_patch_raw`, `cos_cls_raw`: the **destandardized** prediction (x * sqrt(var + eps) + mean, the
  model's teacher statistics) against the raw teacher features;
- `cos_patch_std`, `cos_cls_std`: the prediction as the readout emits it against the **standardized**
  teacher features.

Patch cosines are taken per position and averaged over the positions of the image. Pretraining logs,
training-time validation and `canvit-eval reconstruction` all compute it here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

RECONSTRUCTION_METRICS = ("cos_patch_raw", "cos_cls_raw", "cos_patch_std", "cos_cls_std")


def reconstruction_cosines(
    pred_patches: torch.Tensor,
    pred_cls: torch.Tensor,
    teacher_patches: torch.Tensor,
    teacher_cls: torch.Tensor,
    patch_standardizer: Any,
    cls_standardizer: Any,
    *,
    per_position: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-image cosines {name: [B]} (float32), names as in RECONSTRUCTION_METRICS; with `per_position`
    the patch cosines are left per position, [B, N] (pretraining logs their mean over the whole batch).

    pred_patches [B, N, D] and pred_cls [B, D]: readout outputs (standardized space);
    teacher_patches [B, N, D] and teacher_cls [B, D]: raw teacher features (after DINOv3's final LN).
    raw = cos(destandardize(pred), teacher); std = cos(pred, standardize(teacher)).
    """
    pp, pc = pred_patches.float(), pred_cls.float()
    tp, tc = teacher_patches.float(), teacher_cls.float()
    if pp.shape != tp.shape:
        raise ValueError(f"predicted patches {list(pp.shape)} and teacher patches {list(tp.shape)} differ in shape")
    if pc.shape != tc.shape:
        raise ValueError(f"predicted CLS {list(pc.shape)} and teacher CLS {list(tc.shape)} differ in shape")
    pc1, tc1 = pc[:, None], tc[:, None]  # [B, 1, D]: the CLS standardizer has one position
    patch_raw = F.cosine_similarity(patch_standardizer.destandardize(pp), tp, dim=-1)  # [B, N]
    patch_std = F.cosine_similarity(pp, patch_standardizer.standardize(tp), dim=-1)  # [B, N]
    return {
        "cos_patch_raw": patch_raw if per_position else patch_raw.mean(-1),
        "cos_cls_raw": F.cosine_similarity(cls_standardizer.destandardize(pc1), tc1, dim=-1)[:, 0],
        "cos_patch_std": patch_std if per_position else patch_std.mean(-1),
        "cos_cls_std": F.cosine_similarity(pc1, cls_standardizer.standardize(tc1), dim=-1)[:, 0],
    }


def model_reconstruction_cosines(
    model: Any, canvas: torch.Tensor, recurrent_cls: torch.Tensor, teacher_patches: torch.Tensor,
    teacher_cls: torch.Tensor, *, per_position: bool = False,
) -> dict[str, torch.Tensor]:
    """`reconstruction_cosines` of a `CanViTForPretraining`'s readouts on a state (canvas [B, R + G*G, D_can],
    recurrent CLS [B, 1, D]), in float32 with autocast off (paper D.3)."""
    with torch.autocast(device_type=canvas.device.type, enabled=False):
        pred_patches = model.predict_teacher_patches(canvas.float())  # [B, G*G, D_t]
        pred_cls = model.predict_teacher_cls(recurrent_cls.float())  # [B, D_t]
        return reconstruction_cosines(pred_patches, pred_cls, teacher_patches, teacher_cls,
                                      model.teacher_patch_standardizer, model.teacher_cls_standardizer,
                                      per_position=per_position)
