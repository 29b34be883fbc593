"""The runtime: `run_pipeline(model, sources, RuntimeOptions(...))` classifies the frames of one or many
sources through `classify_streams` (one batch of every camera's newest frame per model call) and hands each
result to the outputs (`sinks.Sinks`): overlay, videos or annotated images, events, CSV, windows, live view.
Ctrl-C, q and the end of every source flush every output; the summary has a row per source.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from ..backends import Classifier, select_classifier
from .classify import classify_streams, open_detector
from .faces import FaceDetector
from .options import RuntimeOptions
from .predict import image_outputs
from .scheduler import Feed, Scheduler
from .sinks import Sinks
from .sourcelist import display
from .sourceset import SourceSet
from .summary import RunSummary, SourceSummary, StageTimes


def run_pipeline(model, source, options: RuntimeOptions | None = None, *, backend: str = "auto",
                 device: str = "auto", detector: FaceDetector | None = None, on_result=None, echo=print,
                 sources_file: Path | None = None) -> RunSummary:
    """Classify every frame the model gets to of `source` (one source as --source takes it, a list of them,
    {name: FrameSource}, or a FrameSource) and of the `sources_file`'s lines (followed while running), with
    `model` (a path or a Classifier); write what `options` asks for; return the summary.
    `on_result(FrameResult)`: called for every frame, for callers that want the results themselves."""
    options = options or RuntimeOptions()
    classifier: Classifier = model if isinstance(model, Classifier) else select_classifier(model, backend, device)
    spec = classifier.spec
    sources = SourceSet.open(source, options, echo, sources_file)
    try:  # refused before any frame, and before an output file exists
        detector = detector or open_detector(options)
        sinks = _outputs(options, spec.class_names, sources, _model_files(model), echo)
    except BaseException:
        sources.close()
        raise
    first = next(iter(sources.opened.values()))
    kinds = sorted({s.kind for s in sources.opened.values()})
    echo(f"running {spec.architecture} ({', '.join(spec.class_names)}) with {classifier.describe()} on "
         + (f"{first.kind} {first.name}" if not sources.several else f"{len(sources.opened)} sources "
            f"({', '.join(kinds)}): {sources.names()}") + (" | cat faces" if options.faces else " | whole frame"))
    for note in classifier.notes:
        echo(f"note: {note}")
    scheduler, live = Scheduler.of(sources.opened, options, echo), sinks.live
    if live is not None:
        live.sources = lambda: [_source_status(feed) for feed in list(scheduler.feeds.values())]
    following = sources.follow(scheduler) if sources_file is not None else None
    summary = RunSummary(source=first.name if not sources.several else sources.names(),
                         backend=classifier.describe(), kind=first.kind if len(kinds) == 1 else "mixed")
    times, batches = StageTimes(detector is not None), Counter()
    results = classify_streams(classifier, scheduler, options, detector, echo)
    started = time.perf_counter()
    try:
        for result in results:
            t0 = time.perf_counter()
            if not sinks.write(result):
                summary.end_reason = "q pressed"
                break
            result.latency_ms["postprocess"] += (time.perf_counter() - t0) * 1000
            times.add(result.source, result.latency_ms, result.label)
            batches[result.batch] += 1
            if on_result is not None:
                on_result(result)
    except KeyboardInterrupt:
        summary.interrupted, summary.end_reason = True, "interrupted (Ctrl-C)"
    finally:
        summary.seconds = time.perf_counter() - started
        if following is not None:
            following.set()
        results.close()
        scheduler.close()  # every source stops and is released (also when no frame ever came)
        summary.events, written, summary.csv = sinks.close()
    _fill(summary, scheduler, sources, times, written, batches)
    echo(summary.table())
    return summary


def _fill(summary: RunSummary, scheduler: Scheduler, sources: SourceSet, times: StageTimes, written: dict,
          batches: Counter) -> None:
    """The summary's totals and its row per source (sources removed while running too)."""
    feeds = [*scheduler.retired, *scheduler.feeds.values()]
    for feed in feeds:
        summary.sources.append(SourceSummary(
            feed.name, sources.shown(feed.name), feed.source.kind, feed.taken, _dropped(feed),
            feed.source.reconnects + feed.restarts, feed.state, display(feed.end_reason), summary.seconds,
            times.of(feed.name), times.labels.get(feed.name, {}), written.get(feed.name)))
    summary.frames = sum(s.frames for s in summary.sources)
    summary.dropped = sum(s.dropped for s in summary.sources)
    summary.stages, summary.labels = times.total(), times.all_labels()
    summary.batches = {size: round(count / size) for size, count in sorted(batches.items())}
    summary.out = written.get("images") or (next(iter(written.values()), None) if not sources.several
                                            else (str(sources.options.out) if written else None))
    if not summary.end_reason:
        reasons = {feed.end_reason for feed in feeds}
        summary.end_reason = reasons.pop() if len(reasons) == 1 else "every source ended"


def _dropped(feed: Feed) -> int:
    return feed.dropped + feed.source.dropped


def _source_status(feed: Feed) -> dict:
    """A source as the live view shows it (never with a password)."""
    return dict(name=feed.name, source=display(feed.source.name), kind=feed.source.kind, state=feed.state,
                frames=feed.taken, dropped=_dropped(feed), reconnects=feed.source.reconnects + feed.restarts,
                end_reason=display(feed.end_reason), problem=display(feed.source.problem))


def _outputs(options: RuntimeOptions, class_names, sources: SourceSet, inputs: list[Path], echo) -> Sinks:
    """Every output, checked before any frame: images' copies or videos (none may replace an input), the
    live view (first: a port already in use stops the run before any file is opened), events, CSV."""
    first = next(iter(sources.opened.values()))
    images = None if sources.several else image_outputs(first, options, class_names, inputs=inputs)
    if sources.several:
        sources.check_out(inputs)
    live = None
    if options.serve is not None:
        from .serve import LiveView  # prometheus_client and the HTTP server only when serving

        live = LiveView(options.serve, class_names, token=options.serve_token, fps=options.serve_fps,
                        hosts=options.serve_hosts, echo=echo)
    try:
        return Sinks(options, class_names, echo, sources, images, live)
    except BaseException:
        if live is not None:
            live.close()
        raise


def _model_files(model) -> list[Path]:
    """The model's files (an engine's sidecar too), which no output may replace."""
    return [] if isinstance(model, Classifier) else [Path(model), Path(str(model) + ".json")]
