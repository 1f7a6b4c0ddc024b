"""Building blocks shared by CanViT and DINOv3."""
