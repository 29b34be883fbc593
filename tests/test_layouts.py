"""Layouts detected, classes and counts right, every bad input reported with its file."""

import io
import shutil

import pytest
from PIL import Image

from catmood.data.checks import ERROR, FATAL, WARNING
from catmood.data.layouts import discover_dataset, stratified_split
from catmood.errors import DatasetError

from conftest import make_csv_split, make_folder_dataset, natural_image, write_image

FOUR = {"alarmed": 3, "angry": 3, "calm": 2, "pleased": 2}


def reasons(index, severity=None):
    return [p.describe(index.root) for p in index.problems if severity is None or p.severity == severity]


def test_roboflow_folder_export(tmp_path):
    make_folder_dataset(tmp_path, {"train": FOUR, "valid": {k: 1 for k in FOUR}, "test": {k: 1 for k in FOUR}})
    (tmp_path / "README.roboflow.txt").write_text("exported from roboflow")
    index = discover_dataset(tmp_path)
    assert index.layout == "roboflow-folders"
    assert index.class_names == ("alarmed", "angry", "calm", "pleased")
    assert index.counts() == {"train": [3, 3, 2, 2], "valid": [1, 1, 1, 1], "test": [1, 1, 1, 1]}
    assert index.problems == [] and index.is_trainable() and index.images_checked
    assert index.splits["train"][0].path.name == "alarmed_0.jpg" and index.splits["train"][0].label == 0


def test_val_alias_and_nested_class_folders(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    write_image(tmp_path / "train" / "a" / "deeper" / "x.png", seed=99)
    index = discover_dataset(tmp_path)
    assert list(index.splits) == ["train", "valid"]
    assert index.counts() == {"train": [3, 2], "valid": [1, 1]}
    assert index.is_trainable()


def test_roboflow_csv_export_with_spaced_columns(tmp_path):
    header = ["filename", " angry", " alarmed", " calm"]  # Roboflow: spaces, its own column order
    make_csv_split(tmp_path / "train", header, [["t0.jpg", " 1", " 0", " 0"], ["t1.jpg", "0", "1", "0"],
                                                ["t2.jpg", "0", "0", "1"], ["t3.jpg", "1", "0", "0"]])
    make_csv_split(tmp_path / "valid", header, [["v0.jpg", "1", "0", "0"], ["v1.jpg", "0", "1", "0"],
                                                ["v2.jpg", "0", "0", "1"]])
    index = discover_dataset(tmp_path)
    assert index.layout == "roboflow-csv"
    assert index.class_names == ("alarmed", "angry", "calm")  # stripped and sorted, not column order
    assert index.counts() == {"train": [1, 2, 1], "valid": [1, 1, 1]}
    labels = {s.path.name: index.class_names[s.label] for s in index.splits["train"]}
    assert labels == {"t0.jpg": "angry", "t1.jpg": "alarmed", "t2.jpg": "calm", "t3.jpg": "angry"}
    assert index.problems == []


def test_plain_class_folders_are_split_stratified_and_seeded(tmp_path):
    make_folder_dataset(tmp_path, {".": {"cat_a": 20, "cat_b": 10}})
    first = discover_dataset(tmp_path, seed=3, check_images=False)
    assert first.layout == "class-folders"
    assert first.counts() == {"train": [14, 7], "valid": [4, 2], "test": [2, 1]}
    assert "stratified, seed 3" in first.notes[0]
    again = discover_dataset(tmp_path, seed=3, check_images=False)
    assert again.splits == first.splits
    other = discover_dataset(tmp_path, seed=4, check_images=False)
    assert other.counts() == first.counts() and other.splits != first.splits
    every = [s.path for split in first.splits.values() for s in split]
    assert len(every) == len(set(every)) == 30  # a partition: nothing lost, nothing twice


def test_split_is_stable_per_class_when_a_class_is_added():
    files = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(10)]}
    before = stratified_split(files, {"valid": 0.2, "test": 0.1}, seed=0)
    after = stratified_split({**files, "c": [f"c{i}" for i in range(10)]}, {"valid": 0.2, "test": 0.1}, seed=0)
    for split in before:
        assert before[split]["a"] == after[split]["a"] and before[split]["b"] == after[split]["b"]


def test_missing_valid_split_is_carved_from_train(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 10, "b": 10}, "test": {"a": 2, "b": 2}})
    index = discover_dataset(tmp_path, check_images=False)
    assert index.counts() == {"train": [8, 8], "valid": [2, 2], "test": [2, 2]}
    assert any("no valid/ split on disk" in n for n in index.notes)


def test_single_csv_folder_is_split(tmp_path):
    rows = [[f"i{i}.jpg", "1" if i % 2 else "0", "0" if i % 2 else "1"] for i in range(20)]
    make_csv_split(tmp_path, ["filename", " x", " y"], rows)
    index = discover_dataset(tmp_path)
    assert index.layout == "roboflow-csv" and index.class_names == ("x", "y")
    assert sum(sum(c) for c in index.counts().values()) == 20 and set(index.splits) == {"train", "valid", "test"}


def test_corrupt_truncated_empty_and_non_image_files_are_named(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 3, "b": 3}, "valid": {"a": 1, "b": 1}})
    buffer = io.BytesIO()
    Image.fromarray(natural_image(100, 100)).save(buffer, format="JPEG")
    (tmp_path / "train/a/truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (tmp_path / "train/a/zero.jpg").write_bytes(b"")
    (tmp_path / "train/b/garbage.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "train/b/notes.txt").write_text("stray")
    (tmp_path / "train/b/.DS_Store").write_bytes(b"\0")  # hidden: ignored without complaint
    index = discover_dataset(tmp_path)
    found = reasons(index, ERROR)
    assert any(r.startswith("train/a/truncated.jpg: ") and "truncated" in r for r in found)
    assert "train/a/zero.jpg: empty file (0 bytes)" in found
    assert any(r.startswith("train/b/garbage.png: ") for r in found)
    assert "train/b/notes.txt: not an image file (extension '.txt')" in found
    assert len(found) == 4 and not any(".DS_Store" in r for r in reasons(index))
    assert index.counts()["train"] == [3, 3]  # bad files left out, good ones kept
    assert not index.is_trainable() and index.is_trainable(skip_bad=True)
    with pytest.raises(DatasetError, match="--skip-bad") as err:
        index.require_trainable()
    assert "train/a/zero.jpg" in str(err.value)
    index.require_trainable(skip_bad=True)


def test_csv_row_problems_name_file_and_line(tmp_path):
    header = ["filename", " a", " b"]
    rows = [["ok0.jpg", "1", "0"], ["ok1.jpg", "0", "1"], ["multi.jpg", "1", "1"], ["none.jpg", "0", "0"],
            ["weird.jpg", "2", "0"], ["ok2.jpg", "1", "0"], ["ok2.jpg", "1", "0"], ["short.jpg", "1"]]
    make_csv_split(tmp_path / "train", header, rows)
    (tmp_path / "train/_classes.csv").write_text(
        (tmp_path / "train/_classes.csv").read_text() + "ghost.jpg,0,1\n")
    write_image(tmp_path / "train" / "unlisted.jpg", seed=5)
    make_csv_split(tmp_path / "valid", header, [["v0.jpg", "1", "0"], ["v1.jpg", "0", "1"]])
    index = discover_dataset(tmp_path)
    found = reasons(index, ERROR)
    assert "train/multi.jpg: _classes.csv line 4: several classes marked (a, b); only single-label " \
           "(multi-class) data is supported" in found
    assert "train/none.jpg: _classes.csv line 5: no class marked (all-zero row)" in found
    assert "train/weird.jpg: _classes.csv line 6: values must be 0 or 1, got a='2'" in found
    assert "train/ok2.jpg: listed twice in _classes.csv (lines 7 and 8)" in found
    assert "train/_classes.csv: _classes.csv line 9: 2 fields, the header has 3" in found
    assert "train/ghost.jpg: _classes.csv line 10 names this file, but it does not exist" in found
    assert "train/unlisted.jpg: image not listed in _classes.csv: its class is unknown" in found
    assert index.counts()["train"] == [2, 1]
    assert index.is_trainable(skip_bad=True)


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe\x00garbage\x00\x81", "cannot read the CSV"),
    (b"", "the CSV is empty"),
    (b"name,a,b\nx.jpg,1,0\n", "no 'filename' column"),
    (b"filename, a, a\nx.jpg,1,0\n", "class column(s) ['a'] appear twice"),
])
def test_unreadable_csv_is_fatal_and_named(tmp_path, content, words):
    (tmp_path / "train").mkdir()
    (tmp_path / "train/_classes.csv").write_bytes(content)
    index = discover_dataset(tmp_path)
    fatal = reasons(index, FATAL)
    assert any(r.startswith("train/_classes.csv: ") and words in r for r in fatal), fatal
    assert not index.is_trainable(skip_bad=True)


def test_empty_splits_and_classes(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "train" / "c").mkdir()
    index = discover_dataset(tmp_path)
    fatal = reasons(index, FATAL)
    assert "test: the test split has no usable images" in fatal
    assert ". : class 'c' has no usable images in any split".replace(". : ", ".: ") in fatal
    assert "train/c: class folder 'c' holds no images" in reasons(index, WARNING)
    assert not index.is_trainable(skip_bad=True)


def test_class_in_one_split_only(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "c": 1}})
    index = discover_dataset(tmp_path)
    assert "train: class 'c' has images in valid but none in train: the model cannot learn it" \
        in reasons(index, FATAL)
    assert "valid: class 'b' has no images in valid: its valid metrics will be undefined" \
        in reasons(index, WARNING)


def test_warnings_alone_keep_a_dataset_trainable(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1}})
    index = discover_dataset(tmp_path)
    assert reasons(index, WARNING) and not reasons(index, FATAL) and not reasons(index, ERROR)
    assert index.is_trainable()


def test_same_image_in_two_splits_is_flagged(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    shutil.copy(tmp_path / "train/a/a_0.jpg", tmp_path / "valid/a/copy.jpg")
    index = discover_dataset(tmp_path)
    assert "valid/a/copy.jpg: identical to train image a_0.jpg: the same image in two splits inflates " \
           "metrics" in reasons(index, WARNING)


def test_structure_problems(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        discover_dataset(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is a file, not a dataset folder"):
        discover_dataset(tmp_path / "file.txt")
    loose = tmp_path / "loose"
    write_image(loose / "a.jpg")
    with pytest.raises(DatasetError, match=r"no dataset layout found \(1 loose image"):
        discover_dataset(loose)

    both = tmp_path / "both"
    make_folder_dataset(both, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}, "valid": {"a": 1, "b": 1}})
    assert any("both val/ and valid/" in r for r in reasons(discover_dataset(both), FATAL))

    no_train = tmp_path / "no_train"
    make_folder_dataset(no_train, {"valid": {"a": 1, "b": 1}})
    assert any("no train/ split" in r for r in reasons(discover_dataset(no_train), FATAL))

    one_class = tmp_path / "one"
    make_folder_dataset(one_class, {"train": {"a": 2}})
    assert any("a classifier needs at least 2" in r for r in reasons(discover_dataset(one_class), FATAL))

    loose_in_split = tmp_path / "loose_in_split"
    make_folder_dataset(loose_in_split, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    write_image(loose_in_split / "train" / "stray.jpg")
    assert "train/stray.jpg: image outside any class folder: its class is unknown" in \
        reasons(discover_dataset(loose_in_split), ERROR)


def test_phone_formats_ask_for_conversion(tmp_path):
    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "valid": {"a": 1, "b": 1}})
    (tmp_path / "train/a/IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    index = discover_dataset(tmp_path)
    assert "train/a/IMG_0001.HEIC: .heic images are not supported here: convert them to JPEG or PNG" \
        in reasons(index, ERROR)


def test_torch_dataset_feeds_the_eval_transform(tmp_path, small_spec):
    import torch

    from catmood.data.torch_dataset import ImageDataset
    from catmood.data.transforms import EvalTransform
    from catmood.errors import ImageError

    make_folder_dataset(tmp_path, {"train": {"a": 2, "b": 1}, "valid": {"a": 1, "b": 1}})
    index = discover_dataset(tmp_path)
    dataset = ImageDataset(index.splits["train"], EvalTransform(small_spec))
    assert len(dataset) == 3 and dataset.labels == [0, 0, 1]
    x, y = dataset[2]
    assert tuple(x.shape) == (3, 224, 224) and x.dtype == torch.float32 and y == 1
    batch, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert tuple(batch.shape) == (3, 3, 224, 224) and labels.tolist() == [0, 0, 1]
    index.splits["train"][0].path.write_bytes(b"")  # broken after inspection
    with pytest.raises(ImageError, match="a_0.jpg: empty file"):
        dataset[0]
