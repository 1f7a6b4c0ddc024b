import pytest
from canvit_data import ImageDecodeError, StreamingSource, open_images, open_streaming_images
from canvit_data.synthetic import write_dataset


def test_streamed_dataset_matches_the_map_style_source(tmp_path):
    root = write_dataset(tmp_path / "ds", 7, seed=2, with_labels=True)
    mapped = open_images(root, split="train")
    streamed = open_streaming_images(root, split="train")
    assert isinstance(streamed, StreamingSource) and len(streamed) == 7
    order = [0, 1, 2, 5, 6, 3, 3, 0]  # forward, skip ahead, restart behind, repeat
    for i in order:
        assert streamed.key(i) == mapped.key(i) == f"row:{i}"
        assert streamed.load(i).tobytes() == mapped.load(i).tobytes()
        assert streamed.label(i) == mapped.label(i)
    with pytest.raises(IndexError):
        streamed.load(7)


def test_streamed_bad_cells_raise_decode_errors(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"image": [b"not an image", None]})
    src = StreamingSource(ds.to_iterable_dataset(), name="bad", num_rows=2, image_column="image")
    with pytest.raises(ImageDecodeError, match="row:0"):
        src.load(0)
    with pytest.raises(ImageDecodeError, match="empty"):
        src.load(1)
    with pytest.raises(ValueError, match="row count"):
        StreamingSource(ds.to_iterable_dataset(), name="x")
