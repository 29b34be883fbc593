"""Images as a real "predict": per-image lines, CSV and JSON-lines rows that name every file and hold the
classifier's own output for it, unreadable files named with the reason, annotated copies under their own
names, no state carried between unrelated photos; and the CSV of a video, one row per frame."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from catmood import cli
from catmood.backends import select_classifier
from catmood.preprocess import preprocess
from catmood.runtime.decisions import UNCERTAIN
from catmood.runtime.faces import iou
from catmood.runtime.options import RuntimeOptions
from catmood.runtime.pipeline import run_pipeline

from conftest import natural_image, write_video

DATA = Path(__file__).parent / "data"
QUIET = dict(echo=lambda *a: None)


def photo_folder(root: Path, shapes_data: Path) -> tuple[Path, list[Path], dict[Path, str]]:
    """Photos of every class in nested folders, an unreadable one in the middle and an empty one last;
    (folder, every file in the order the source reads them, the unreadable ones with their reason's words)."""
    folder = root / "photos"
    for k, name in enumerate(("circle", "square", "stripes", "circle", "stripes", "square")):
        image = cv2.imread(str(sorted((shapes_data / "test" / name).glob("*.png"))[k]))
        big = cv2.resize(image, (60 + 20 * k, 50 + 10 * k))  # other sizes than the model's input
        sub = folder / ("a" if k < 3 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{k}_{name}{'.jpg' if k == 4 else '.png'}"), big)
    (folder / "a" / "2_zbroken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "b" / "zz_empty.png").write_bytes(b"")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return folder, files, {folder / "a" / "2_zbroken.jpg": "truncated image", folder / "b" / "zz_empty.png": "empty file"}


def own_probs(classifier, path: Path) -> np.ndarray:
    return classifier.predict(preprocess(cv2.imread(str(path)), classifier.spec))[0]


def test_predict_a_folder_names_every_file_with_the_classifiers_own_output(models, shapes_data, tmp_path, capsys):
    _, onnx_model, _ = models
    folder, files, broken = photo_folder(tmp_path, shapes_data)
    out = tmp_path / "annotated"
    code = cli.main(["predict", str(onnx_model), str(folder), "--csv", str(tmp_path / "p.csv"), "--events",
                     str(tmp_path / "p.jsonl"), "--out", str(out), "--top-k", "2", "--threshold", "0.4"])
    assert code == 0
    printed = capsys.readouterr().out
    classifier = select_classifier(onnx_model)
    names = list(classifier.spec.class_names)
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    events = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == [e["file"] for e in events] == [str(f) for f in files]  # every file, in order
    labels = set()
    for row, event, path in zip(rows, events, files):
        if path in broken:
            assert broken[path] in row["error"] and broken[path] in event["error"] and row["label"] == ""
            line = next(line for line in printed.splitlines() if f" {path}: " in line)
            assert line.startswith(f"[{files.index(path) + 1}/8] {path}: skipped: ") and broken[path] in line
            continue
        own = own_probs(classifier, path)
        np.testing.assert_allclose([float(row[f"p_{n}"]) for n in names], own, atol=1e-4)
        np.testing.assert_allclose([event["probs"][n] for n in names], own, atol=1e-4)
        expected = names[int(own.argmax())] if own.max() >= 0.4 else UNCERTAIN
        assert row["label"] == event["label"] == expected and row["error"] == ""
        labels.add(expected)
        top = [names[i] for i in np.argsort(-own)[:2]]
        line = next(line for line in printed.splitlines() if f" {path}: " in line)
        assert line.endswith(f"{expected} | {top[0]} {own.max():.2f}  {top[1]} {np.sort(own)[-2]:.2f}"), line
        copy = cv2.imread(str(out / path.relative_to(folder)))  # the annotated copy, under its own name
        assert copy.shape == cv2.imread(str(path)).shape and np.abs(copy.astype(int) - cv2.imread(str(path))).mean() > 1
    assert len(labels) >= 2  # the photos really differ, so carrying state between them would show
    assert sorted(p.relative_to(out) for p in out.rglob("*.*")) == sorted(
        p.relative_to(folder) for p in files if p not in broken)
    assert "6 images in" in printed and "unreadable 2" in printed


def test_unrelated_photos_share_no_smoothing_hold_or_face_ids(models, shapes_data, tmp_path):
    """Default smoothing (alpha 0.4) and hold (0.5 s) would carry a label from one photo into the next; a
    folder's photos are each classified on their own, the same images as a video are not."""
    _, onnx_model, _ = models
    folder, files, broken = photo_folder(tmp_path, shapes_data)
    results = []
    run_pipeline(onnx_model, str(folder), RuntimeOptions(threshold=0.0), on_result=results.append, **QUIET)
    assert len(results) == 6
    names = select_classifier(onnx_model).spec.class_names
    for r in results:
        (face,) = r.faces
        np.testing.assert_allclose(face.decision.probs, face.probs, atol=1e-6)  # no moving average
        assert r.label == face.decision.label == names[int(face.probs.argmax())]  # no hold
    assert len({r.label for r in results}) >= 2

    faces = []
    photos = tmp_path / "cats"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"{i}.png"), cv2.imread(str(DATA / "chelsea.png")))
    run_pipeline(onnx_model, str(photos), RuntimeOptions(faces=True), on_result=faces.append, **QUIET)
    assert [[f.track_id for f in r.faces] for r in faces] == [[1], [1], [1]]  # a fresh tracker per photo


def test_out_and_source_rules_are_one_line_before_anything_is_written(models, tmp_path, capsys):
    _, onnx_model, _ = models
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), natural_image(60, 80, seed=i))
    video = write_video(tmp_path / "v.mp4", 3)
    csv_out = tmp_path / "rows.csv"
    cases = [(["predict", str(folder), "--out", str(tmp_path / "x.png")], "--out names one image, and"),
             (["predict", str(folder), "--out", str(tmp_path / "x.mp4")], "--out for images is a folder"),
             (["predict", str(folder), "--out", str(folder)], "inside the folder being read"),
             (["predict", str(folder), "--out", str(folder / "annotated")], "inside the folder being read"),
             (["predict", str(folder / "0.png"), "--out", str(folder / "0.png")], "would overwrite this command's input"),
             (["predict", str(video)], "catmood predict classifies images"),
             (["predict", "0"], "catmood predict classifies images"),
             (["run", "--source", str(video), "--out", str(tmp_path / "frames")], "must be a file name"),
             (["run", "--source", str(folder), "--csv", str(folder / "0.png")], "writes a CSV file, and this name is an image's")]
    for args, words in cases:
        command = [args[0], str(onnx_model), *args[1:]]
        if "--csv" not in command:
            command += ["--csv", str(csv_out)]
        (tmp_path / "frames").mkdir(exist_ok=True)
        assert cli.main(command) == 2, command
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and err.startswith("catmood: error: "), (command, err)
        assert not csv_out.exists() and not (tmp_path / "x.png").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png"]

    assert cli.main(["predict", str(onnx_model), str(folder / "1.png"), "--out", str(tmp_path / "one.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "one.jpg")).shape == (60, 80, 3)
    # a glob the shell expanded: many sources, one run
    assert cli.main(["predict", str(onnx_model), str(folder / "0.png"), str(folder / "1.png"), "--csv", str(csv_out)]) == 0
    assert [r["file"] for r in csv.DictReader(csv_out.open())] == [str(folder / "0.png"), str(folder / "1.png")]


def test_a_video_gets_one_csv_row_per_frame_and_its_video(models, tmp_path):
    _, onnx_model, _ = models
    video = write_video(tmp_path / "v.mp4", 7)
    assert cli.main(["run", str(onnx_model), "--source", str(video), "--csv", str(tmp_path / "v.csv"),
                     "--out", str(tmp_path / "out.mp4"), "--smooth", "1", "--hold", "0"]) == 0
    rows = list(csv.DictReader((tmp_path / "v.csv").open()))
    classifier = select_classifier(onnx_model)
    capture = cv2.VideoCapture(str(video))
    for i, row in enumerate(rows):
        frame = capture.read()[1]
        own = classifier.predict(preprocess(frame, classifier.spec))[0]
        assert row["file"] == str(video) and int(row["frame"]) == i and float(row["time"]) == pytest.approx(i / 12, abs=1e-4)
        np.testing.assert_allclose([float(row[f"p_{n}"]) for n in classifier.spec.class_names], own, atol=1e-4)
    assert len(rows) == 7 and not capture.read()[0]
    assert (tmp_path / "out.mp4").stat().st_size > 1000


def test_predict_with_faces_says_which_photo_has_none_and_times_detection(models, tmp_path, capsys):
    _, onnx_model, _ = models
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_cat.png"), cv2.imread(str(DATA / "chelsea.png")))
    cv2.imwrite(str(folder / "b_wall.png"), np.full((120, 160, 3), 128, np.uint8))
    assert cli.main(["predict", str(onnx_model), str(folder), "--faces", "--csv", str(tmp_path / "f.csv"),
                     "--events", str(tmp_path / "f.jsonl"), "--summary", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    cat, wall = list(csv.DictReader((tmp_path / "f.csv").open()))
    face = tuple(json.loads((DATA / "chelsea.json").read_text())["face_box"])
    assert cat["face"] == "1" and iou(tuple(int(cat[k]) for k in "xywh"), face) >= 0.6
    assert wall["label"] == "no face" and wall["x"] == "" and wall["error"] == ""
    assert f"{folder / 'b_wall.png'}: no cat face" in printed
    assert f"{folder / 'a_cat.png'}: 1 face; face 1 at (" in printed
    events = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert all(list(e["latency_ms"]) == ["capture", "detect", "preprocess", "inference", "postprocess"] for e in events)
    stages = json.loads((tmp_path / "s.json").read_text())["stages_ms"]
    assert list(stages) == ["capture", "detect", "preprocess", "inference", "postprocess"]
    assert stages["detect"]["mean"] > stages["preprocess"]["mean"]  # the cascades, not the crop, cost time


def test_predict_with_a_users_onnx_detector(models, tmp_path, capsys):
    from test_faces import constant_yolo, yolo_table

    _, onnx_model, _ = models
    detector = constant_yolo(tmp_path / "yolo.onnx", yolo_table([(32, 32, 20, 16, 15, 0.9), (10, 20, 8, 8, 16, 0.95)]))
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), natural_image(96, 128, seed=i))
    rows_csv = tmp_path / "d.csv"
    assert cli.main(["predict", str(onnx_model), str(folder), "--detector", str(detector), "--detector-class", "16",
                     "--csv", str(rows_csv)]) == 0
    rows = list(csv.DictReader(rows_csv.open()))
    assert [tuple(int(r[k]) for k in "xywh") for r in rows] == [(12, 16, 16, 16)] * 2  # the class asked for, mapped back
    classifier = select_classifier(onnx_model)
    crop = cv2.imread(str(folder / "0.png"))[12:36, 8:32]  # the box padded by a quarter on every side
    own = classifier.predict(preprocess(crop, classifier.spec))[0]
    np.testing.assert_allclose([float(rows[0][f"p_{n}"]) for n in classifier.spec.class_names], own, atol=1e-4)
    capsys.readouterr()
    rows_csv.unlink()
    assert cli.main(["predict", str(onnx_model), str(folder), "--detector", str(detector), "--detector-class", "80",
                     "--csv", str(rows_csv)]) == 2
    assert "--detector-class 80 is not one of its 80 classes" in capsys.readouterr().err and not rows_csv.exists()
