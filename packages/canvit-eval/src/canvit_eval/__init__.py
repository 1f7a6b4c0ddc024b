"""CanViT evaluation: viewing policies, ADE20K/IN1k probes, FLOP and latency tables."""
