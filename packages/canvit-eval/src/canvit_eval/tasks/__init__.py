"""The evaluation tasks, side by side on `canvit_eval.harness`: each defines only its data, model wrapper and
metric (no task imports another).

- `ade20k`: `canvit-eval ade20k` (mIoU per timestep; Tables 5-6, Figure 4).
- `train_probe`: `canvit-eval train-probe` (the ADE20K linear probe, App. F.2.1).
- `in1k`: `canvit-eval in1k` (top-1 / top-5 per timestep through the DINOv3 probe; Table 7).
- `reconstruction`: `canvit-eval reconstruction` (canvas-vs-teacher cosine; Tables 3-4).
"""
