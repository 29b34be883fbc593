"""The fourth stage: measures the others (latency per backend/precision/batch, end-to-end fps, accuracy per
format). Nothing imports it."""

from .pipeline import benchmark
from .options import BenchOptions
from .report import BenchReport, write_report

__all__ = ["BenchOptions", "BenchReport", "benchmark", "write_report"]
