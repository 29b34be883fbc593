"""Images as a real "predict": for an image, a folder or a glob, one printed line per image (its file, the
top classes with probabilities, its faces), annotated copies under the images' own names, and every file
that cannot be read named with the reason while the run goes on.

`run_pipeline` uses `ImageOutputs` for image sources (each image is classified on its own there, see
`classify.INDEPENDENT_KINDS`); video and live sources keep their video output.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import CatmoodError
from ..fileio import KIND_OF_SUFFIX, atomic_path, check_output, with_article
from .classify import INDEPENDENT_KINDS, FrameResult
from .options import RuntimeOptions
from .sources import FrameSource, ImageListSource, open_source, unreadable_reason


def open_images(sources: str | list[str]) -> FrameSource:
    """Images, folders or globs (a shell may have expanded a glob into many files), for `catmood predict`;
    a video, camera or stream is refused before anything is opened (the capture factory that would open
    it refuses instead)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    opened = []
    for source in sources:
        def refuse(target, source=source):
            raise CatmoodError(f"{source}: catmood predict classifies images (an image, a folder or a glob); "
                               "use catmood run for videos, cameras and streams")

        images = open_source(source, capture_factory=refuse)
        if images.kind not in INDEPENDENT_KINDS:  # a camera or stream (nothing was opened yet)
            refuse(source)
        opened.append(images)
    if len(opened) == 1:
        return opened[0]
    return ImageListSource([path for source in opened for path in source.paths], f"{len(sources)} sources")


def image_outputs(source: FrameSource, options: RuntimeOptions, class_names, inputs=()) -> "ImageOutputs | None":
    """Per-image outputs for an image source; None for a video or live one, whose --out (a video) is checked
    here, before any frame. `inputs`: files no output may replace (the model and its sidecar)."""
    if source.kind not in INDEPENDENT_KINDS:
        if options.out:
            check_output(options.out, "--out", "video", inputs=[*inputs, source.name])
        return None
    return ImageOutputs(source, options, class_names, inputs)


class ImageOutputs:
    def __init__(self, source: FrameSource, options: RuntimeOptions, class_names, inputs=()):
        self.source, self.options, self.class_names = source, options, list(class_names)
        self.paths: list[Path] = list(source.paths)
        self.targets = annotated_targets(options.out, source, inputs) if options.out else None
        self.named = 0      # unreadable files named so far
        self.next = 0       # the index after the last image seen
        self.written = 0

    def file(self, result: FrameResult) -> str:
        return str(self.paths[result.frame.index])

    def skipped_before(self, index: int | None = None) -> list[tuple[str, str, str]]:
        """(file, reason, printed line) of the files the source could not read before image `index`; None:
        those it could not read after the last image (the source counts them in `dropped`)."""
        end = self.next + self.source.dropped - self.named if index is None else index
        found = []
        for i in range(self.next, end):
            reason = unreadable_reason(self.paths[i])
            found.append((str(self.paths[i]), reason, f"{self.head(i)} skipped: {reason}"))
        self.named += len(found)
        self.next = end if index is None else index + 1
        return found

    def head(self, index: int) -> str:
        return f"[{index + 1}/{len(self.paths)}] {self.paths[index]}:"

    def line(self, result: FrameResult) -> str:
        head = self.head(result.frame.index)
        if not result.faces:
            return f"{head} no cat face"
        if result.faces[0].box is None:
            face = result.faces[0]
            return f"{head} {face.decision.label} | {self.top(face.probs)}"
        parts = [f"face {f.track_id} at {tuple(map(int, f.box))}: {f.decision.label} | {self.top(f.probs)}"
                 for f in result.faces]
        return f"{head} {len(parts)} face{'s' if len(parts) > 1 else ''}; " + "; ".join(parts)

    def top(self, probs: np.ndarray) -> str:
        order = np.argsort(-np.asarray(probs))[: self.options.top_k]
        return "  ".join(f"{self.class_names[i]} {float(probs[i]):.2f}" for i in order)

    def save(self, image: np.ndarray, result: FrameResult) -> Path:
        target = self.targets[result.frame.index]
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), image):
                raise CatmoodError(f"{target}: OpenCV could not write the annotated image there")
        self.written += 1
        return target


def annotated_targets(out: str | os.PathLike, source: FrameSource, inputs=()) -> list[Path]:
    """Where each image's annotated copy goes: `out` itself when it is an image's name and the source one
    image; else out/<the image's path below the source's folder>. Refused, with one line, where a copy
    would replace an input or land inside the folder being read."""
    out, paths = Path(out), list(source.paths)
    kind = KIND_OF_SUFFIX.get(out.suffix.lower())
    if kind == "image":
        if len(paths) != 1:
            raise CatmoodError(f"{out}: --out names one image, and {source.name} holds {len(paths)} images; "
                               "give a folder for their annotated copies")
        return [check_output(out, "--out", "image", inputs=[*inputs, *paths])]
    if kind is not None:
        raise CatmoodError(f"{out}: --out for images is a folder (or, for one image, an image's name), and "
                           f"this name is {with_article(kind)}'s")
    folder = Path(source.name)
    root = folder if folder.is_dir() else Path(os.path.commonpath([str(p.parent) for p in paths]))
    if folder.is_dir() and (out.resolve() == root.resolve() or root.resolve() in out.resolve().parents):
        raise CatmoodError(f"{out}: --out is inside the folder being read ({root}); its annotated copies would "
                           "be read as photos next time: choose a folder outside it")
    check_output(out, "--out", "folder", inputs=inputs)
    targets = [_writable(out / p.relative_to(root)) for p in paths]
    for target, path in zip(targets, paths):
        if target.exists() and os.path.samefile(target, path):
            raise CatmoodError(f"{target}: --out would overwrite this command's input; choose another folder")
    return targets


def _writable(target: Path) -> Path:
    """OpenCV writes no GIF (nor some rarer formats): such a copy is written as PNG beside the name."""
    return target if cv2.haveImageWriter(str(target)) else target.with_name(target.name + ".png")
