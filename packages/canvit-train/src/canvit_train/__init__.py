"""CanViT pretraining (teacher-feature export, standardization statistics, distillation). Not implemented yet."""
