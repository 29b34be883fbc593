"""Bad inputs through the real CLI: exit code 2, one `catmood: error:` line naming the file and the problem,
no traceback, and every input file byte-identical afterwards. Nothing a user has is ever destroyed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from catmood import cli

from conftest import natural_image, write_image, write_video


def digests(*paths: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def refused(capsys, argv: list[str], names: str, *inputs: Path) -> str:
    """Run `catmood ARGV`; assert the one-line refusal mentioning `names` and that `inputs` are untouched."""
    before = digests(*inputs)
    code = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("catmood: error: "), captured.err
    assert names in lines[0] and "Traceback" not in captured.err, lines[0]
    assert digests(*inputs) == before, "an input file was changed"
    return lines[0]


@pytest.fixture
def files(models, tmp_path):
    checkpoint, onnx_model, _ = models
    return dict(checkpoint=checkpoint, onnx=onnx_model, video=write_video(tmp_path / "v.mp4", 4),
                image=write_image(tmp_path / "ds" / "train" / "calm" / "x.jpg"), tmp=tmp_path)


@pytest.mark.parametrize("option", ["--out", "--summary", "--events"])
def test_run_never_writes_over_its_source(files, capsys, option):
    video, onnx = files["video"], files["onnx"]
    message = refused(capsys, ["run", str(onnx), "--source", str(video), option, str(video)], str(video), video, onnx)
    assert f"{option} would overwrite this command's input" in message


def test_run_never_writes_events_over_the_model(files, capsys):
    onnx, video = files["onnx"], files["video"]
    refused(capsys, ["run", str(onnx), "--source", str(video), "--events", str(onnx)], str(onnx), onnx, video)
    other = files["tmp"] / "other.onnx"
    other.write_bytes(onnx.read_bytes())
    message = refused(capsys, ["run", str(onnx), "--source", str(video), "--events", str(other)], str(other), other)
    assert "--events writes a JSON lines file, and this name is a model's" in message


def test_outputs_of_another_kind_are_not_replaced(files, capsys):
    image, video, onnx = files["image"], files["video"], files["onnx"]
    dataset = image.parents[2]
    message = refused(capsys, ["data", "inspect", str(dataset), "--json", str(image)], str(image), image)
    assert "--json writes a JSON file, and this name is an image's" in message
    refused(capsys, ["run", str(onnx), "--source", str(image), "--summary", str(video)], str(video), video, image)
    named = files["tmp"] / "clip"  # a video without a suffix is still a video
    named.write_bytes(video.read_bytes())
    refused(capsys, ["run", str(onnx), "--source", str(image), "--events", str(named)], str(named), named)
    refused(capsys, ["eval", str(files["checkpoint"]), "--json", str(files["checkpoint"])],
            str(files["checkpoint"]), files["checkpoint"])


def test_outputs_in_impossible_places_are_refused_before_any_work(files, capsys):
    onnx, video, tmp = files["onnx"], files["video"], files["tmp"]
    run = ["run", str(onnx), "--source", str(video)]
    assert "must be a file name, and this is a folder" in refused(capsys, [*run, "--events", str(tmp)], str(tmp))
    inside = video / "e.jsonl"
    assert f"{video} is a file, not a folder" in refused(capsys, [*run, "--events", str(inside)], str(inside), video)
    assert "cannot be written there" in refused(capsys, [*run, "--events", "/proc/catmood.jsonl"], "/proc/catmood")
    for argv, option in ((["bench", str(onnx), "--out", str(video)], "--out"),
                         (["export", str(files["checkpoint"]), "--triton", str(video)], "--triton"),
                         (["export", str(files["checkpoint"]), "--out", str(video)], "--out")):
        assert f"{option} must be a folder, and this is a file" in refused(capsys, argv, str(video), video)
    assert not list(tmp.glob("*.jsonl")) and not (tmp / "export_report.md").exists()


def test_an_existing_output_of_the_same_kind_is_replaced(files, capsys):
    events = files["tmp"] / "events.jsonl"
    events.write_text('{"old": true}\n')
    assert cli.main(["run", str(files["onnx"]), "--source", str(files["video"]), "--events", str(events)]) == 0
    assert '"old"' not in events.read_text() and len(events.read_text().splitlines()) == 4


def with_spec(onnx_model: Path, out: Path, **changes) -> Path:
    """A copy of `onnx_model` whose metadata spec says something else than its graph."""
    import onnx

    from catmood.metadata import SPEC_KEY
    from catmood.spec import ModelSpec

    model = onnx.load(str(onnx_model))
    prop = next(p for p in model.metadata_props if p.key == SPEC_KEY)
    prop.value = ModelSpec.from_json(prop.value).replace(**changes).to_json()
    onnx.save(model, str(out))
    return out


def test_a_spec_that_does_not_match_its_graph_is_refused_when_loaded(files, capsys):
    onnx_model, video, tmp = files["onnx"], files["video"], files["tmp"]
    from catmood.metadata import read_onnx_metadata

    spec = read_onnx_metadata(onnx_model)[0]
    n = spec.num_classes
    cases = ((dict(class_names=(*spec.class_names, "sleepy")), f"names {n + 1} classes", f"gives {n} logits"),
             (dict(class_names=spec.class_names[:-1]), f"names {n - 1} classes", f"gives {n} logits"),
             (dict(input_size=spec.input_size + 16, resize_size=spec.resize_size + 16),
              f"{spec.input_size + 16}x{spec.input_size + 16} per image",
              f"takes 3x{spec.input_size}x{spec.input_size}"))
    for i, (changes, says, graph) in enumerate(cases):
        bad = with_spec(onnx_model, tmp / f"bad{i}.onnx", **changes)
        message = refused(capsys, ["run", str(bad), "--source", str(video)], str(bad), bad, video)
        assert says in message and graph in message, message
    empty = tmp / "empty.onnx"
    empty.write_bytes(b"")
    assert "the file is empty (0 bytes)" in refused(capsys, ["run", str(empty), "--source", str(video)], str(empty))


def test_export_options_that_cannot_work_are_refused_before_any_work(files, capsys):
    checkpoint, onnx_model, tmp = files["checkpoint"], files["onnx"], files["tmp"]
    out = ["--out", str(tmp / "exp")]
    for argv, names, words in (
            (["export", str(checkpoint), "--opset", "5", *out], "--opset", "must be between 14 and"),
            (["export", str(checkpoint), "--max-images", "0", *out], "--max-images", "must be at least 1, got 0"),
            (["export", str(checkpoint), "--batch", "0", "--triton", str(tmp / "tr"), *out], "--batch", "positive"),
            (["export", str(checkpoint), "--fp32-agreement", "2", *out], "agreement", "between 0 and 1, got 2"),
            (["export", str(onnx_model), *out], str(onnx_model), "is an exported model, not a checkpoint")):
        assert words in refused(capsys, argv, names, checkpoint, onnx_model)
    assert not (tmp / "exp").exists() or not any((tmp / "exp").iterdir()), "work was done before the refusal"


def test_trt_alone_without_tensorrt_says_nothing_was_exported(files, capsys):
    from catmood.export.tensorrt import tensorrt_unavailable

    if tensorrt_unavailable() is None:
        pytest.skip("TensorRT and a GPU are here: --trt works")
    assert cli.main(["export", str(files["checkpoint"]), "--trt", "--out", str(files["tmp"] / "e"), "--no-latency"]) == 1
    assert "(nothing was exported)" in capsys.readouterr().out


def test_devices_and_names_that_cannot_work(files, capsys):
    onnx_model, video, image, tmp = files["onnx"], files["video"], files["image"], files["tmp"]
    run = ["run", str(onnx_model), "--source", str(video)]
    assert "--device must be auto, cpu, cuda or cuda:N, got 'tpu'" in refused(capsys, [*run, "--device", "tpu"], "tpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "ONNX Runtime here has no" in refused(capsys, [*run, "--device", "cuda"], "CUDAExecutionProvider")
    assert "writes a video" in refused(capsys, [*run, "--out", str(tmp / "x.png")], "x.png")
    assert "writes a JSON lines file" in refused(capsys, [*run, "--events", str(tmp / "e.mp4")], "e.mp4")
    dataset = image.parents[2]
    assert "writes an image" in refused(capsys, ["data", "inspect", str(dataset), "--preview", str(tmp / "p.txt")],
                                        "p.txt", image)
    assert "OUT must be a folder, and this is a file" in refused(capsys, ["data", "synth", str(video)], str(video),
                                                                 video)
    assert not (tmp / "x.png").exists() and not (tmp / "p.txt").exists()


def test_a_second_export_adds_to_the_report_instead_of_replacing_it(files, tmp_path):
    import json

    from catmood.export.pipeline import export_checkpoint

    quiet = dict(latency=False, echo=lambda *a: None, max_images=8)
    out = tmp_path / "exp"
    export_checkpoint(files["checkpoint"], out, onnx=True, fp16=True, **quiet)
    second = export_checkpoint(files["checkpoint"], out, onnx=True, fp16=False, input_dtype="uint8", **quiet)
    saved = json.loads((out / "export_report.json").read_text())
    rows = {Path(r["path"]).name: r for r in saved["formats"]}
    assert {"model.onnx", "model.fp16.onnx", "model.uint8.onnx", "best.pt"} == set(rows)
    assert rows["model.fp16.onnx"]["earlier"] and rows["model.fp16.onnx"]["agreement"] > 0.9
    assert not rows["model.uint8.onnx"].get("earlier") and [e["format"] for e in second.earlier] == ["onnx", "onnx-fp16"]
    assert "## From an earlier export of the same checkpoint" in (out / "export_report.md").read_text()
    (out / "model.fp16.onnx").unlink()  # a file that is gone is not reported any more
    export_checkpoint(files["checkpoint"], out, onnx=True, fp16=False, **quiet)
    names = {Path(r["path"]).name for r in json.loads((out / "export_report.json").read_text())["formats"]}
    assert names == {"best.pt", "model.onnx", "model.uint8.onnx"}


def test_training_and_eval_settings_that_cannot_work(files, shapes_data, capsys):
    checkpoint, video = files["checkpoint"], files["video"]
    for size in ("5000", "8"):
        message = refused(capsys, ["train", "--data", str(shapes_data), "--model", "test_resnet", "--input-size", size,
                                   "--out", str(files["tmp"] / "run")], f"got {size}")
        assert "input_size must be 16-1024 pixels" in message
    assert not (files["tmp"] / "run").exists(), "work was done before the refusal"
    assert "--batch-size must be a positive integer, got 0" in refused(
        capsys, ["eval", str(checkpoint), "--batch-size", "0"], "--batch-size", checkpoint)
    message = refused(capsys, ["data", "inspect", str(video)], str(video), video)
    assert "is a file, not a dataset folder" in message and "--data" not in message


def test_help_shows_the_defaults(capsys):
    from catmood.runtime.options import RuntimeOptions

    for argv in (["eval", "--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    text = " ".join(capsys.readouterr().out.split())
    assert "--split {train,valid,test} (default test)" in text and "--batch-size BATCH_SIZE (default 32)" in text
    for flag, field in (("--threshold", "threshold"), ("--smooth", "alpha"), ("--hold", "hold_s"),
                        ("--detect-every", "detect_every")):
        described = text.rsplit(f"{flag} {flag.strip('-').upper().replace('-', '_')}", 1)[1].split(" --")[0]
        assert f"(default {RuntimeOptions.default(field)})" in described, flag


def test_a_truncated_video_and_unreadable_images_are_named(files, capsys):
    import cv2

    video, onnx, tmp = files["video"], files["onnx"], files["tmp"]
    avi = tmp / "clip.avi"  # AVI: its header keeps the frame count, and a cut file still opens
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 12, (80, 60))
    for i in range(20):
        writer.write(natural_image(60, 80, seed=i))
    writer.release()
    cut = tmp / "cut.avi"
    cut.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    assert cli.main(["run", str(onnx), "--source", str(avi)]) == 0
    whole = capsys.readouterr().out
    assert "20 frames in" in whole and "| end of source\n" in whole, whole
    assert cli.main(["run", str(onnx), "--source", str(cut)]) == 0
    out = capsys.readouterr().out
    assert "the file ended early: " in out and " of the 20 frames its header announces could be decoded" in out
    folder = files["image"].parent
    (folder / "broken.jpg").write_bytes(b"nope")
    (folder / "empty.png").write_bytes(b"")
    assert cli.main(["run", str(onnx), "--source", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"skipped 2 unreadable image(s): {folder / 'broken.jpg'} [not a readable image" in out
    assert f"{folder / 'empty.png'} [empty file (0 bytes)]" in out


def test_confusion_matrix_text_shows_whole_class_names():
    from catmood.training.evaluate import classification_metrics, format_metrics

    names = ["alarmed", "pleased", "a-very-long-mood-name"]
    text = format_metrics(classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], names), "test")
    header = text.splitlines()[text.splitlines().index("confusion matrix (rows: true, columns: predicted)") + 1]
    assert header.split() == names
    rows = text.splitlines()[-3:]
    assert [row.split()[1:] for row in rows] == [["1", "0", "0"], ["0", "1", "0"], ["0", "1", "1"]]
    assert all(len(row) == len(header) for row in rows)  # the counts sit under their names


def test_read_only_images_are_copied_and_only_they():
    """torch warns (once per process) about a tensor on read-only memory, as a PIL image's array is."""
    import numpy as np
    from PIL import Image

    from catmood.data.transforms import _ToImageTensor

    to_tensor = _ToImageTensor()
    read_only = np.asarray(Image.fromarray(np.full((4, 5, 3), 200, np.uint8)))
    assert not read_only.flags.writeable
    assert not np.shares_memory(to_tensor(read_only).numpy(), read_only)
    writable = np.full((4, 5, 3), 7, np.uint8)
    tensor = to_tensor(writable)
    assert np.shares_memory(tensor.numpy(), writable) and tensor.shape == (3, 4, 5)  # no needless copy
