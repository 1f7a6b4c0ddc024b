"""Optuna-tuned ImageNet-1k linear probes for DINOv3 ViTs. Not implemented yet."""
