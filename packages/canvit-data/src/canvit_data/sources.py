"""Indexable image sources with stable keys: a folder (recursive), an ImageFolder class layout, or a
Hugging Face `datasets` dataset (hub id, `save_to_disk` directory, or a local data directory).

Every source answers `len(src)`, `src.key(i)` (a stable identity: relative POSIX path or `row:<i>`),
`src.label(i)` (int or None) and `src.load(i)` (a PIL RGB image). Images are decoded by us, never by
`datasets`, so a broken file raises `ImageDecodeError` naming its key and the reason: callers record
and skip it without shifting the alignment between positions and images.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".jfif")
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_DATA_FILE_SUFFIXES = (".parquet", ".arrow", ".csv", ".jsonl", ".json")
_IMAGE_COLUMN_NAMES = ("image", "img", "jpg", "jpeg", "png", "pixel_values")
_LABEL_COLUMN_NAMES = ("label", "labels", "class", "cls", "target")


class ImageDecodeError(ValueError):
    """An image could not be read; `key` names it and `reason` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"cannot decode image {key!r}: {reason}")
        self.key = key
        self.reason = reason


def decode_image(data: bytes | str | os.PathLike[str], key: str) -> Any:
    """Bytes or a path -> a fully loaded PIL RGB image (ImageDecodeError on any failure)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(key, f"{type(e).__name__}: {e}") from None


class ImageSource:
    """Base class: an indexable collection of images with stable keys and optional labels."""

    name: str = ""
    classes: list[str] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def key(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self, index: int) -> int | None:
        return None

    def load(self, index: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise IndexError(f"index {index!r} out of range for {self.name} ({n} images)")
        return index

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} images)"


class FolderSource(ImageSource):
    """Every image file under `root` (recursive, sorted by relative path). With `labels="folder"`, the
    ImageFolder convention: the first directory level names the class, classes sorted, index = label."""

    def __init__(self, root: str | os.PathLike[str], *, labels: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist or is not a directory")
        if labels not in (None, "folder"):
            raise ValueError(f"labels={labels!r}; valid values: None, 'folder'")
        self.name = str(self.root)
        files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if labels == "folder":
            files = [f for f in files if "/" in f]
            self.classes = sorted({f.split("/", 1)[0] for f in files})
            index = {c: i for i, c in enumerate(self.classes)}
            self._labels = [index[f.split("/", 1)[0]] for f in files]
        else:
            self._labels = None
        if not files:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.root)!r}"
                + (" in class sub-folders (ImageFolder layout: ROOT/<class>/<image>)" if labels else "")
            )
        self._files = files

    def __len__(self) -> int:
        return len(self._files)

    def key(self, index: int) -> str:
        return self._files[self._check_index(index)]

    def label(self, index: int) -> int | None:
        return None if self._labels is None else self._labels[self._check_index(index)]

    def path(self, index: int) -> Path:
        return self.root / self.key(index)

    def load(self, index: int) -> Any:
        return decode_image(self.path(index), self.key(index))


class DatasetSource(ImageSource):
    """A Hugging Face `datasets.Dataset` (map-style). The image column is read undecoded and decoded
    by `decode_image`, so a broken row raises ImageDecodeError instead of crashing inside `datasets`."""

    def __init__(self, dataset: Any, *, name: str, image_column: str | None = None,
                 label_column: str | None = None) -> None:
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise TypeError(f"expected a datasets.Dataset (one split), got {type(dataset).__name__}")
        self.name = name
        features = dataset.features
        self.image_column = image_column or _find_image_column(features, name)
        if self.image_column not in features:
            raise ValueError(
                f"image_column={self.image_column!r} is not a column of {name}; columns: {list(features)}"
            )
        if isinstance(features[self.image_column], datasets.Image):
            dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
        self.label_column = label_column if label_column is not None else _find_label_column(features)
        if self.label_column is not None and self.label_column not in features:
            raise ValueError(
                f"label_column={self.label_column!r} is not a column of {name}; columns: {list(features)}"
            )
        if self.label_column is not None and isinstance(features[self.label_column], datasets.ClassLabel):
            self.classes = list(features[self.label_column].names)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def key(self, index: int) -> str:
        return f"row:{self._check_index(index)}"

    def label(self, index: int) -> int | None:
        if self.label_column is None:
            return None
        value = self.dataset[self._check_index(index)][self.label_column]
        return None if value is None else int(value)

    def row(self, index: int) -> dict[str, Any]:
        return self.dataset[self._check_index(index)]

    def load(self, index: int) -> Any:
        return self.load_value(self.row(index)[self.image_column], self.key(index))

    @staticmethod
    def load_value(value: Any, key: str) -> Any:
        """Decode a stored image value: {"bytes", "path"} dict, raw bytes, a path, or a PIL image."""
        if value is None:
            raise ImageDecodeError(key, "the image cell is empty")
        if isinstance(value, dict):
            if value.get("bytes"):
                return decode_image(value["bytes"], key)
            if value.get("path"):
                return decode_image(value["path"], key)
            raise ImageDecodeError(key, "the image cell has neither bytes nor a path")
        if isinstance(value, (bytes, bytearray, str, os.PathLike)):
            return decode_image(value, key)
        if hasattr(value, "convert"):  # already a PIL image
            return value.convert("RGB")
        raise ImageDecodeError(key, f"unsupported image cell of type {type(value).__name__}")


def _find_image_column(features: Any, name: str) -> str:
    import datasets

    for col, feat in features.items():
        if isinstance(feat, datasets.Image):
            return col
    for col in _IMAGE_COLUMN_NAMES:
        if col in features:
            return col
    raise ValueError(f"cannot find the image column of {name}; columns: {list(features)}; pass image_column=...")


def _find_label_column(features: Any) -> str | None:
    import datasets

    for col, feat in features.items():
        if isinstance(feat, datasets.ClassLabel):
            return col
    for col in _LABEL_COLUMN_NAMES:
        if col in features:
            return col
    return None


def _looks_like_dataset_dir(path: Path) -> bool:
    """A `save_to_disk` directory, or data files (parquet, arrow, ...) and no image file.

    One walk that stops at the first image: an image folder of millions of files is not listed twice
    (FolderSource lists it once more anyway)."""
    if any((path / m).exists() for m in _DATASET_MARKERS):
        return True
    has_data = False
    for p in path.rglob("*"):
        suffix = p.suffix.lower()
        if suffix in IMAGE_EXTENSIONS and p.is_file():
            return False
        has_data = has_data or (p.suffix in _DATA_FILE_SUFFIXES and p.is_file())
    return has_data


def open_images(
    spec: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    labels: str | None = None,
    revision: str | None = None,
) -> ImageSource:
    """Open `spec` as an image source.

    - an existing directory of image files -> FolderSource (`labels="folder"`: ImageFolder classes);
    - a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or holding parquet /
      arrow data files -> DatasetSource (`split` picks the split of a DatasetDict);
    - anything else is taken as a Hugging Face hub dataset id (`datasets.load_dataset(spec, split=...)`).
    """
    path = Path(spec)
    if path.is_dir() and not _looks_like_dataset_dir(path):
        if split is not None and (path / split).is_dir():
            path = path / split
        return FolderSource(path, labels=labels)
    import datasets

    if path.is_dir() and any((path / m).exists() for m in _DATASET_MARKERS):
        ds = datasets.load_from_disk(str(path))
    elif path.is_dir():
        ds = datasets.load_dataset(str(path), split=split)
    elif path.exists():
        raise ValueError(f"{str(path)!r} is a file; expected an image folder, a dataset directory or a hub id")
    else:
        try:
            ds = datasets.load_dataset(str(spec), split=split, revision=revision)
        except Exception as e:  # network, auth, missing split: one clear message
            raise ValueError(
                f"cannot open {str(spec)!r}: not a local directory, and loading it as a Hugging Face dataset "
                f"failed ({type(e).__name__}: {e}). Offline? Set HF_DATASETS_OFFLINE=1 with a cached copy, "
                "or pass a local folder."
            ) from e
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise ValueError(f"{str(spec)!r} has splits {list(ds)}; pass split=... (--split)")
            split = next(iter(ds))
        if split not in ds:
            raise ValueError(f"split={split!r} is not in {str(spec)!r}; splits: {list(ds)}")
        ds = ds[split]
    name = f"{spec}" + (f"[{split}]" if split else "")
    return DatasetSource(ds, name=name, image_column=image_column, label_column=label_column)


class StreamingSource(ImageSource):
    """A streamed Hugging Face dataset (`datasets.IterableDataset`) behind the indexable interface.

    Nothing is downloaded up front. Reads are cheapest in increasing index order (the export and the
    training loaders read each shard's rows in order): `load(i)` advances one cursor over the stream,
    skipping forward when `i` is ahead and restarting at `dataset.skip(i)` when it is behind. The row
    count must be known (dataset info, or `num_rows`); keys are `row:<i>` like DatasetSource's.
    """

    def __init__(self, dataset: Any, *, name: str, num_rows: int | None = None, image_column: str | None = None,
                 label_column: str | None = None) -> None:
        import datasets

        if not isinstance(dataset, datasets.IterableDataset):
            raise TypeError(f"expected a datasets.IterableDataset, got {type(dataset).__name__}")
        self.name = name
        if num_rows is None:
            splits = getattr(dataset.info, "splits", None) or {}
            split = str(dataset.split) if dataset.split is not None else None
            if split in splits and splits[split].num_examples:
                num_rows = int(splits[split].num_examples)
        if num_rows is None:
            raise ValueError(f"the row count of the streamed dataset {name} is unknown (no split info); "
                             "pass num_rows=... or load it without streaming")
        self.num_rows = int(num_rows)
        features = dataset.features
        if features is not None:
            self.image_column = image_column or _find_image_column(features, name)
            if isinstance(features.get(self.image_column), datasets.Image):
                dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
            self.label_column = label_column if label_column is not None else _find_label_column(features)
        else:
            self.image_column, self.label_column = image_column or "image", label_column
        self.dataset = dataset
        self._it: Any = None
        self._next = 0
        self._row: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own cursor
        return {**self.__dict__, "_it": None, "_next": 0, "_row": None}

    def __len__(self) -> int:
        return self.num_rows

    def key(self, index: int) -> str:
        return f"row:{self._check_index(index)}"

    def row(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        if self._row is not None and self._next == index + 1:
            return self._row
        if self._it is None or index < self._next:
            self._it, self._next = iter(self.dataset.skip(index) if index else self.dataset), index
        while self._next <= index:
            try:
                self._row = next(self._it)
            except StopIteration:
                raise IndexError(
                    f"{self.name} ended at row {self._next}, before the expected {self.num_rows} rows"
                ) from None
            self._next += 1
        assert self._row is not None
        return self._row

    def label(self, index: int) -> int | None:
        if self.label_column is None:
            return None
        value = self.row(index).get(self.label_column)
        return None if value is None else int(value)

    def load(self, index: int) -> Any:
        return DatasetSource.load_value(self.row(index).get(self.image_column), self.key(index))


def open_streaming_images(
    spec: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    revision: str | None = None,
) -> StreamingSource:
    """Open a hub dataset (or a local data directory / `save_to_disk` directory) as a stream."""
    import datasets

    path = Path(spec)
    if path.is_dir() and any((path / m).exists() for m in _DATASET_MARKERS):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split is None and len(ds) == 1:
                split = next(iter(ds))
            if split not in ds:
                raise ValueError(f"split={split!r} is not in {str(spec)!r}; splits: {list(ds)}")
            ds = ds[split]
        return StreamingSource(ds.to_iterable_dataset(), name=f"{spec}[{split}]", num_rows=len(ds),
                               image_column=image_column, label_column=label_column)
    if split is None:
        raise ValueError(f"streaming {str(spec)!r} needs a split (--split)")
    try:
        ds = datasets.load_dataset(str(spec), split=split, streaming=True, revision=revision)
    except Exception as e:
        raise ValueError(f"cannot stream {str(spec)!r} ({type(e).__name__}: {e})") from e
    return StreamingSource(ds, name=f"{spec}[{split}]", image_column=image_column, label_column=label_column)
