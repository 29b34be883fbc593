"""Errors a user can act on. The CLI prints each as one line, never a traceback."""

from __future__ import annotations


class CatmoodError(Exception):
    """Base class: the message alone tells the user what is wrong and, where possible, what to do."""


class SpecError(CatmoodError):
    """A model spec is missing, malformed, or from a newer catmood."""


class ImageError(CatmoodError):
    """An image file cannot be decoded. `path` and `reason` are kept for problem reports."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DatasetError(CatmoodError):
    """A dataset cannot be read or trained on."""
