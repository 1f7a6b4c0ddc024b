"""canvit-data: image sources (folders, ImageFolder layouts, Hugging Face datasets) for the CanViT pipelines."""

from .sources import (
    IMAGE_EXTENSIONS,
    DatasetSource,
    FolderSource,
    ImageDecodeError,
    ImageSource,
    StreamingSource,
    decode_image,
    open_images,
    open_streaming_images,
)

__all__ = [
    "IMAGE_EXTENSIONS", "DatasetSource", "FolderSource", "ImageDecodeError", "ImageSource", "decode_image",
    "open_images", "StreamingSource", "open_streaming_images",
]
