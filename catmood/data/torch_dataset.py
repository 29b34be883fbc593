"""A torch Dataset over the samples `discover_dataset` found."""

from __future__ import annotations

import signal
import threading
from typing import Callable, Sequence

import torch

from .images import load_rgb
from .layouts import Sample


class ImageDataset(torch.utils.data.Dataset):
    """(image tensor, label) pairs. A file that fails to decode raises ImageError naming it."""

    def __init__(self, samples: Sequence[Sample], transform: Callable):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        return self.transform(load_rgb(sample.path)), sample.label

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: workers leave it to the main process, which stops them
    cleanly, instead of dying and turning the interrupt into 'DataLoader worker exited unexpectedly'."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent across fork


class InterruptSafeLoader(torch.utils.data.DataLoader):
    """With worker processes, a Ctrl-C reaches the main process only between batches.

    Blocks SIGINT while the workers are forked, so none can be hit before it learns to ignore it; a Ctrl-C in
    that moment waits in the main process and arrives as soon as the workers are up. Afterwards a Ctrl-C is
    noted and raised when the next batch is asked for: raised where it struck, it could leave one of the
    workers' queue locks taken (inside multiprocessing's Queue.put), and the loader's own clean-up then waited
    on that lock forever. A second Ctrl-C before then is raised at once."""

    def __iter__(self):
        if not self.num_workers:
            return super().__iter__()
        if threading.current_thread() is not threading.main_thread():
            return self._start()  # Python runs signal handlers in the main thread only: nothing to defer here
        return self._between_batches()

    def _start(self):
        if not hasattr(signal, "pthread_sigmask"):
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _between_batches(self):
        pressed = []

        def note(signum, frame):
            if pressed:
                raise KeyboardInterrupt
            pressed.append(signum)

        previous = signal.signal(signal.SIGINT, note)
        try:
            for batch in self._start():
                if pressed:
                    raise KeyboardInterrupt
                yield batch
                if pressed:
                    raise KeyboardInterrupt
        finally:
            signal.signal(signal.SIGINT, previous)


def make_loader(dataset, batch_size: int, workers: int = 0, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader whose worker processes survive Ctrl-C; other arguments as torch's."""
    return InterruptSafeLoader(dataset, batch_size=batch_size, num_workers=workers,
                               worker_init_fn=_ignore_sigint if workers else None, **kwargs)
