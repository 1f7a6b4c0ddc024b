"""ADE20K semantic segmentation with a frozen CanViT (paper §6, Appendix F.2.1; Tables 5-6, Figure 4B).

- `data`: the ADEChallengeData2016 folder or a Hugging Face `datasets` dataset (image + annotation),
  the evaluation squish (image bilinear, mask PIL-nearest) and the training augmentation.
- `metrics`: the dataset-level (global) mIoU from a bincount confusion matrix.
- `train_probe`: `canvit-eval train-probe` (App. F.2.1 recipe; CanViT canvas or DINOv3 baseline probes).
- `evaluate`: `canvit-eval ade20k` (mIoU per timestep under a viewing policy, into the results store).
The probe itself (`SegmentationProbe`, `CanViTForSemanticSegmentation`) lives in `canvit_model`.
"""
