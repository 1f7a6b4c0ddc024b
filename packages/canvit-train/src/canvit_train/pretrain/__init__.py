"""Passive-to-active dense latent distillation (paper §5, Appendices D-E)."""
