"""How well the Haar cat-face detector finds a real cat's face, at every size and place in the frame.

Reproduce:  .venv/bin/python benchmarks/cat_faces.py     (writes results/cat_faces.{json,md})

The one real cat photo the project ships, `tests/data/chelsea.png` (its face box read off by eye, in
`tests/data/chelsea.json`), pasted into a grey 640x480 frame at 20-100% of the frame's width, at four
places; a face counts as found when a box overlaps the true face by IoU >= 0.5, and every box overlapping it
by less than 0.3 is a false one. Also: the photo alone (the face fills the frame), and false boxes on
cat-free clutter (the synthetic backgrounds). Each detector is timed per 640x480 frame: wall time, and
the process's CPU time (all threads), which other work on a shared machine disturbs less.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from catmood.data.synth import render_background
from catmood.fileio import atomic_write_json, atomic_write_text
from catmood.runtime.faces import HaarCatFaceDetector, iou
from catmood.tables import format_table

DATA = Path(__file__).parent.parent / "tests" / "data"
WIDTHS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PLACES = ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.2, 0.8))


def paste(photo: np.ndarray, face, width_share: float, place, frame=(480, 640)):
    """The photo scaled to `width_share` of a grey frame, at `place` (0..1 of the free room in x and y);
    (frame, the face's box in it)."""
    height, width = frame
    w = int(round(width_share * width))
    scale = w / photo.shape[1]
    h = int(round(photo.shape[0] * scale))
    out = np.full((max(height, h), width, 3), 128, np.uint8)
    x, y = int(place[0] * (width - w)), int(place[1] * (out.shape[0] - h))
    out[y:y + h, x:x + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    return out, tuple(int(round(v)) for v in (x + face[0] * scale, y + face[1] * scale, face[2] * scale,
                                              face[3] * scale))


def measure(detector, photo, face, clutter: list[np.ndarray]) -> dict:
    found, ious, false, times, cpu = {}, [], 0, [], []
    for share in WIDTHS:
        for place in PLACES:
            frame, truth = paste(photo, face, share, place)
            t0, c0 = time.perf_counter(), time.process_time()
            boxes = detector.detect(frame)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            best = max((iou(b, truth) for b in boxes), default=0.0)
            found[share] = found.get(share, 0) + (best >= 0.5)
            ious += [best] if best >= 0.5 else []
            false += sum(iou(b, truth) < 0.3 for b in boxes)
    alone = max((iou(b, face) for b in detector.detect(photo)), default=0.0)
    clutter_boxes = [len(detector.detect(image)) for image in clutter]
    return dict(found=sum(found.values()), frames=len(WIDTHS) * len(PLACES),
                found_by_width={f"{s:.0%}": n for s, n in found.items()},
                mean_iou=float(np.mean(ious)) if ious else 0.0, false_boxes=int(false), photo_alone_iou=alone,
                clutter_frames_with_boxes=sum(n > 0 for n in clutter_boxes), clutter_frames=len(clutter),
                ms_p50=float(np.percentile(times, 50)), cpu_ms_p50=float(np.percentile(cpu, 50)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clutter", type=int, default=40, help="cat-free clutter frames")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    photo = cv2.imread(str(DATA / "chelsea.png"))
    face = tuple(json.loads((DATA / "chelsea.json").read_text())["face_box"])
    rng = np.random.default_rng(0)
    clutter = [render_background(rng, 640, 480) for _ in range(args.clutter)]
    detectors = {"Haar, frame only": HaarCatFaceDetector(copies=()),
                 "Haar + shrunk copies (default)": HaarCatFaceDetector()}
    results = {name: measure(d, photo, face, clutter) for name, d in tqdm(detectors.items(), desc="detectors")}
    rows = [[name, f"{r['found']}/{r['frames']}", " ".join(f"{n}" for n in r["found_by_width"].values()),
             f"{r['mean_iou']:.2f}", r["false_boxes"], f"{r['photo_alone_iou']:.2f}",
             f"{r['clutter_frames_with_boxes']}/{r['clutter_frames']}", f"{r['ms_p50']:.0f}",
             f"{r['cpu_ms_p50']:.0f}"]
            for name, r in results.items()]
    table = format_table(["detector", "faces found (IoU>=0.5)", f"found per width {WIDTHS[0]:.0%}..100%",
                          "mean IoU", "false boxes", "photo alone IoU", "clutter frames with a box",
                          "ms/frame p50", "CPU ms/frame p50"], rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "cat_faces.json", dict(machine=platform.processor() or platform.machine(),
                                                        opencv=cv2.__version__, results=results))
    atomic_write_text(args.out / "cat_faces.md", table + "\n")


if __name__ == "__main__":
    main()
