"""Runtime stage: frame sources, cat-face detection and tracking, the real-time pipeline, benchmarks."""
