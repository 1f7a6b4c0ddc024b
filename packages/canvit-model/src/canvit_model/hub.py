"""Publishing: `push_to_hub` for every model class, and the model card written beside CanViT checkpoints.

Reading and writing checkpoint files is `io.py`; their layouts are `convert.py`.
"""

from __future__ import annotations

from typing import Any


class PushToHubMixin:
    """`push_to_hub` for every model class that has `save_pretrained` (one implementation)."""

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """`save_pretrained` into a temporary directory, then upload it to hub repo `repo_id` (created if
        needed) in one commit. Returns huggingface_hub's CommitInfo."""
        import tempfile

        from huggingface_hub import HfApi

        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
            raise ValueError(f"repo_id must be a hub repo id 'owner/name', got {repo_id!r}")
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory(prefix="canvit-push-") as tmp:
            self.save_pretrained(tmp)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                repo_type="model",
                revision=revision,
                commit_message=commit_message or f"Upload {type(self).__name__} (canvit-model)",
                create_pr=create_pr,
            )


MODEL_CARD = """---
library_name: canvit-model
license: mit
tags:
- canvit
- active-vision
---

A CanViT checkpoint (canvit-pytorch 0.2 layout: config.json + model.safetensors), written by `canvit-model`.
Load it with `canvit_model.CanViTForPretraining.from_pretrained(path_or_repo)` or with canvit-pytorch.
"""
