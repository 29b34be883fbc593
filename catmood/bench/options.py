"""What `catmood bench` measures and how long: light to import, so the CLI reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CatmoodError


@dataclass(frozen=True)
class BenchOptions:
    batches: tuple[int, ...] = (1,)
    warmup: int = 5                # untimed runs first (lazy initialisation, caches, clocks)
    iterations: int = 50           # timed runs per measurement, at most ...
    max_seconds: float = 10.0      # ... and at most this long
    device: str = "auto"           # auto: every device this machine has; cpu: the CPU only
    max_frames: int | None = 300   # frames of the video for the end-to-end measurement
    compile_cuda: bool = False     # on CUDA also time torch.compile (minutes to start)

    def __post_init__(self):
        if self.warmup < 0 or self.iterations < 1 or not self.max_seconds > 0:
            raise CatmoodError(f"bench needs --warmup >= 0, --iterations >= 1 and --max-seconds > 0, got "
                               f"{self.warmup}, {self.iterations}, {self.max_seconds}")
        if self.device not in ("auto", "cpu"):
            raise CatmoodError(f"bench --device must be auto or cpu, got {self.device!r}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise CatmoodError(f"bench batch sizes must be positive, got {self.batches}")
