"""The scoring loop: records -> images -> features -> metrics -> result rows.

Records stream through in batches; images of the next batches are decoded in
worker threads while the current batch is scored. Each finished record becomes
one JSON line, written and flushed at once (append-only) by
``results.ResultsWriter``: the file starts with the run's provenance header,
is locked while written, and ``--resume`` continues only the same run (ids
already there are skipped, a last line cut short by a crash is dropped).

Plugin code is fenced: any exception (``SystemExit`` included) in a metric's
``setup``, ``prepare`` or ``compute``, and any result that is not a number,
becomes an error of that metric for the records concerned.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from editmetrics.contract.metric import Metric, MetricError, MetricSpec, Score, SpecError
from editmetrics.data.arrays import ArrayError, is_in_memory, to_image, to_mask
from editmetrics.data.images import (DEFAULT_MAX_PIXELS, ImageLoadError, SizeMismatch, SizePolicy, align,
                                     load_image, load_mask)
from editmetrics.data.records import IMAGE_FIELDS, MASK_FIELDS, EditRecord, read_pairs, scan_pairs
from editmetrics.engine.results import (ResultsFileError, ResultsWriter, UsageError, check_paths,  # noqa: F401
                                        make_header, read_results, read_run, score_affecting_settings,
                                        weight_fingerprints)
from editmetrics.plugins.registry import Registry, get_registry

# Exceptions plugin code may raise that stay inside one metric (not KeyboardInterrupt).
PLUGIN_FAULTS = (Exception, SystemExit)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the command line's handler."""


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run; what was written stays resumable."""

    def __init__(self, out: str, written: int, status: int):
        super().__init__(f"interrupted: {written} record(s) written to {out} in this run; "
                         "run the same command with --resume to continue")
        self.out, self.written, self.status = out, written, status


def max_pixels_setting(settings: dict | None) -> int:
    """The ``max_pixels`` setting (images above it are refused per record)."""
    value = (settings or {}).get("max_pixels", DEFAULT_MAX_PIXELS)
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"setting max_pixels must be a number of pixels, not {value!r}") from None
    if number <= 0:
        raise UsageError(f"setting max_pixels must be positive, not {value!r}")
    return number


# ---------------------------------------------------------------------------
# Per-record view handed to metrics
# ---------------------------------------------------------------------------


@dataclass
class LoadedRecord:
    record: EditRecord
    images: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field -> load error


class RecordView:
    """What a metric sees of one record: fields, decoded images, notes."""

    def __init__(self, loaded: LoadedRecord, ctx: "RunContext", uid: int = 0):
        self._loaded = loaded
        self.ctx = ctx
        self.record = loaded.record
        self.id = loaded.record.id
        # unique within the run (ids may repeat): the key of any per-record state a metric keeps
        self.uid = uid
        self.warnings: dict[str, str] = {}

    def get(self, name: str, default: Any = None) -> Any:
        value = self.record.fields.get(name, default)
        return default if isinstance(value, str) and value == "" else value

    def has(self, name: str) -> bool:
        value = self.record.fields.get(name)
        return value is not None and (not isinstance(value, str) or value.strip() != "")

    def image(self, name: str) -> np.ndarray:
        """A decoded image (float32 HxWx3 in [0, 1]) or mask (bool HxW)."""
        if name in self._loaded.errors:
            raise MetricError(f"field {name!r} could not be loaded: {self._loaded.errors[name]}")
        if name not in self._loaded.images:
            raise MetricError(f"field {name!r} was not loaded (not declared by the metric)")
        return self._loaded.images[name]

    def pair(self, name: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
        """``name`` and ``reference`` at the reference's size (size policy)."""
        image, ref = self.image(name), self.image(reference)
        try:
            aligned, note = align(image, ref, self.ctx.size_policy)
        except SizeMismatch as exc:
            raise MetricError(f"{name} vs {reference}: {exc}") from None
        if note:
            self.warnings[name if reference == "source" else f"{name}@{reference}"] = f"{name}: {note}"
        return aligned, ref

    def mask(self, name: str, like: str | None = None) -> np.ndarray:
        """A mask, resized (nearest) to the size of image field ``like`` when given."""
        from editmetrics.data.images import resize_mask, size_of

        mask = self.image(name)
        if like is not None:
            target = self.image(like)
            if mask.shape != target.shape[:2]:
                mask = resize_mask(mask, size_of(target))
                self.warnings[name] = f"{name}: resized to {size_of(target)[0]}x{size_of(target)[1]} (nearest)"
        return mask


class Service(Protocol):
    """What ``RunContext.service`` holds (feature store, IQA networks, parse
    and grounding services): metrics queue work during ``prepare`` and get a
    ticket back (keyed by ``rec.uid``, never ``rec.id``), the runner calls
    ``flush()`` once per batch to do the queued work batched, and ``compute``
    reads the result by its ticket. ``flush`` is the one method the runner calls."""

    def flush(self) -> None: ...


@dataclass
class RunContext:
    """Run-wide settings and shared services (feature store, parsers...)."""

    device: str = "cpu"
    batch_size: int = 8
    size_policy: SizePolicy = field(default_factory=SizePolicy)
    settings: dict[str, Any] = field(default_factory=dict)
    registry: Registry | None = None
    services: dict[str, Any] = field(default_factory=dict)

    def service(self, name: str, factory: Callable[["RunContext"], Any]) -> Any:
        """A shared service, built once per run (e.g. the feature store)."""
        if name not in self.services:
            self.services[name] = factory(self)
        return self.services[name]

    def flush(self) -> None:
        """Let services do batched work queued during ``prepare``."""
        for service in list(self.services.values()):
            flush = getattr(service, "flush", None)
            if flush is not None:
                flush()


# ---------------------------------------------------------------------------
# Resolving metric specs
# ---------------------------------------------------------------------------


@dataclass
class BoundMetric:
    spec: MetricSpec
    metric: Metric
    setup_error: str | None = None

    @property
    def key(self) -> str:
        return self.spec.key


def resolve_metrics(specs: Iterable[str], registry: Registry) -> list[BoundMetric]:
    """Parse spec strings and instantiate metrics; raises SpecError/UnknownNameError."""
    bound, seen = [], set()
    for text in specs:
        spec = MetricSpec.parse(text)
        if spec.key in seen:
            raise SpecError(f"metric {spec.key!r} is listed twice")
        seen.add(spec.key)
        cls = registry.get("metrics", spec.name)
        params = {}
        for name, value in spec.params:
            if name not in cls.params:
                raise SpecError(f"metric {cls.id!r} has no parameter {name!r}; it has {sorted(cls.params) or 'none'}")
            params[name] = cls.params[name].parse(name, value)
        if spec.reference is not None and cls.reference is None:
            raise SpecError(f"metric {cls.id!r} takes no reference field ({spec.key!r})")
        bound.append(BoundMetric(spec, cls(reference=spec.reference, **params)))
    if not bound:
        raise SpecError("no metrics given")
    return bound


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


class Scorer:
    """Scores batches of records with a fixed list of metrics."""

    def __init__(self, metrics: list[BoundMetric], ctx: RunContext):
        self.metrics = metrics
        self.ctx = ctx
        for bm in metrics:
            try:
                bm.metric.setup(ctx)
            except PLUGIN_FAULTS as exc:
                # e.g. weights missing: every record gets this reason, the run goes on
                bm.setup_error = _reason(exc)
        self.image_fields, self.mask_fields = self._fields_to_load()
        self._uids = itertools.count(1)
        self.max_pixels = max_pixels_setting(ctx.settings)
        # several batches may be scored at once only when no metric shares state
        self.thread_safe = all(bm.metric.thread_safe for bm in metrics) and not ctx.services

    def _fields_to_load(self) -> tuple[list[str], list[str]]:
        wanted: list[str] = []
        for bm in self.metrics:
            if bm.setup_error is None:
                wanted += list(bm.metric.required_fields()) + list(bm.metric.optional_fields)
        kinds: dict[str, str] = {}
        for bm in self.metrics:  # the kind a metric declares for a field (core schema by default)
            for name in list(bm.metric.required_fields()) + list(bm.metric.optional_fields):
                kinds.setdefault(name, bm.metric.kind_of(name))
        wanted = list(dict.fromkeys(wanted))
        return [f for f in wanted if kinds[f] == "image"], [f for f in wanted if kinds[f] == "mask"]

    def load(self, record: EditRecord) -> LoadedRecord:
        """Decode every image this run needs from one record (thread-safe)."""
        loaded = LoadedRecord(record)
        if record.error:
            return loaded
        for name in self.image_fields + self.mask_fields:
            value = record.fields.get(name)
            if is_in_memory(value):  # an array, PIL image or tensor (Python API)
                try:
                    loaded.images[name] = to_mask(value, name) if name in self.mask_fields else to_image(value, name)
                except ArrayError as exc:
                    loaded.errors[name] = str(exc)
                continue
            path = record.path(name)
            if path is None:
                continue
            try:
                if name in self.mask_fields:
                    loaded.images[name] = load_mask(path, self.max_pixels)
                else:
                    loaded.images[name] = load_image(path, self.max_pixels)
            except ImageLoadError as exc:
                loaded.errors[name] = str(exc)
            except Exception as exc:  # noqa: BLE001 - e.g. an image mode PIL cannot convert: one record's problem
                loaded.errors[name] = f"cannot decode image {path}: {type(exc).__name__}: {exc}"[:2000]
        return loaded

    def score(self, batch: list[LoadedRecord]) -> list[dict]:
        views = [RecordView(item, self.ctx, next(self._uids)) for item in batch]
        states: list[dict[str, str]] = []  # per record: spec -> error so far
        for view in views:
            errors: dict[str, str] = {}
            for bm in self.metrics:
                problem = self._check(bm, view)
                if problem is None:
                    try:
                        bm.metric.prepare(view)
                    except PLUGIN_FAULTS as exc:  # a metric failure is per record
                        problem = _reason(exc)
                if problem is not None:
                    errors[bm.key] = problem
            states.append(errors)
        flush_error = None
        try:
            self.ctx.flush()
        except PLUGIN_FAULTS as exc:
            flush_error = f"batched feature computation failed: {_reason(exc)}"
        rows = []
        for view, errors in zip(views, states):
            rows.append(self._row(view, errors, flush_error))
        return rows

    def _check(self, bm: BoundMetric, view: RecordView) -> str | None:
        if view.record.error:
            return f"record unreadable: {view.record.error}"
        if bm.setup_error:
            return bm.setup_error
        for name in bm.metric.required_fields():
            if not view.has(name):
                present = name in view.record.fields
                return f"field {name!r} is {'empty' if present else 'missing'} in this record"
            if name in view._loaded.errors:
                return f"field {name!r} could not be loaded (see errors[{name!r}])"
        return None

    def _row(self, view: RecordView, errors: dict[str, str], flush_error: str | None) -> dict:
        record = view.record
        scores: dict[str, Any] = {}
        details: dict[str, Any] = {}
        out_errors: dict[str, str] = dict(view._loaded.errors)
        if record.error:
            out_errors["record"] = record.error
        for bm in self.metrics:
            key = bm.key
            if key not in errors and flush_error is None:
                try:
                    result = bm.metric.compute(view)
                    self._store(key, result, scores, details, errors)
                except PLUGIN_FAULTS as exc:  # exceptions and non-number results alike
                    errors[key] = _reason(exc)
                    details.pop(key, None)
            elif key not in errors:
                errors[key] = flush_error
            if key in errors:
                scores[key] = None
                out_errors[key] = errors[key]
        row: dict[str, Any] = {"id": record.id}
        row.update(record.output_fields())
        row["scores"] = scores
        row["errors"] = out_errors
        row["warnings"] = view.warnings  # always present, possibly empty (docs/records.md)
        row["details"] = details
        return row

    @staticmethod
    def _store(key, result, scores, details, errors) -> None:
        reason = None
        if isinstance(result, Score):
            value = result.value
            reason = result.reason
            for name, comp in (result.components or {}).items():
                scores[f"{key}.{name}"] = _number(comp)
            if result.details:
                details[key] = result.details
        else:
            value = result
        value = _number(value)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            errors[key] = reason or "metric returned no value (NaN)"
        else:
            scores[key] = value


def _number(value):
    if value is None:
        return None
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricError(f"metric returned {type(value).__name__}, not a number")
    try:
        return float(value)
    except OverflowError:
        raise MetricError("metric returned an integer too large for a float") from None


def _reason(exc: BaseException) -> str:
    try:
        text = str(exc) if isinstance(exc, MetricError) else f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        text = type(exc).__name__
    return text if len(text) <= 4000 else text[:3997] + "..."  # a reason, not a dump


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


class Executor(Protocol):
    """Runs ``load`` on each record and ``score`` on batches; yields rows in order.

    The in-process executor is the default. A distributed one (e.g. on Ray)
    implements the same method: both callables are picklable bound methods of
    a ``Scorer``, so nothing in the metrics changes. ``parallel_score`` says
    that ``score`` may run on several batches at once (every metric of the run
    is thread-safe and uses no shared service).
    """

    def run(
        self,
        load: Callable[[EditRecord], LoadedRecord],
        score: Callable[[list[LoadedRecord]], list[dict]],
        records: Iterable[EditRecord],
        batch_size: int,
        parallel_score: bool = False,
    ) -> Iterator[dict]: ...


class InProcessExecutor:
    """Decodes in a thread pool (PIL and OpenCV release the GIL).

    Default: decoding runs ahead in the pool while this thread scores. With
    ``parallel_score``, whole batches (decode + score) run in the pool, so
    pixel-only runs use every core. Either way at most
    ``workers * lookahead_batches`` batches are in flight: memory stays flat.
    """

    def __init__(self, workers: int | None = None, lookahead_batches: int = 2):
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.lookahead_batches = lookahead_batches

    def run(self, load, score, records, batch_size, parallel_score=False) -> Iterator[dict]:
        if parallel_score:
            yield from self._run_batches_in_pool(load, score, records, batch_size)
            return
        window = max(1, batch_size * self.lookahead_batches)
        with _pool(self.workers, "editmetrics-decode") as pool:
            pending: deque = deque()
            batch: list[LoadedRecord] = []
            iterator = iter(records)
            exhausted = False
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        pending.append(pool.submit(load, next(iterator)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                batch.append(pending.popleft().result())
                if len(batch) == batch_size or (exhausted and not pending):
                    yield from score(batch)
                    batch = []
            if batch:
                yield from score(batch)

    def _run_batches_in_pool(self, load, score, records, batch_size) -> Iterator[dict]:
        def work(batch: list[EditRecord]) -> list[dict]:
            # thread-safe metrics use no shared service, so batch composition changes nothing:
            # one record decoded at a time keeps memory at one record per worker
            return [row for record in batch for row in score([load(record)])]

        limit = self.workers * self.lookahead_batches
        with _pool(self.workers, "editmetrics-score") as pool:
            pending: deque = deque()
            for batch in _batches(records, batch_size):
                pending.append(pool.submit(work, batch))
                if len(pending) >= limit:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


@contextmanager
def _pool(workers: int, prefix: str) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when the run stops early (Ctrl-C, a write error),
    drops the queued work instead of finishing it."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _batches(records: Iterable[EditRecord], size: int) -> Iterator[list[EditRecord]]:
    batch: list[EditRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


@dataclass
class RunResult:
    out: str | None
    written: int
    skipped: int
    failed_records: int
    notes: list[str] = field(default_factory=list)


def checked_settings(settings: dict | None, registry: Registry) -> dict:
    """Settings given in Python, validated like --set values: typed, and an
    unknown key (a typo) is a ``SettingError``, never silently ignored."""
    from editmetrics.engine.settings import validate

    return validate(dict(settings or {}), {k: "settings=" for k in settings or {}}, registry)


def score_file(
    pairs: str,
    metrics: list[str],
    out: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    size_policy: str = "resize",
    settings: dict | None = None,
    executor: Executor | None = None,
    registry: Registry | None = None,
    progress: bool | None = None,
    on_row: Callable[[dict], None] | None = None,
    other_outputs: dict[str, str | None] | None = None,
) -> RunResult:
    """Score a pairs file into ``out`` (JSON lines); see the module docstring.

    Before any work: outputs are checked against the inputs and each other
    (``other_outputs``: e.g. ``{"--csv": path}``), the pairs file is read once
    (content hash, duplicate ids), and ``out`` is locked and checked (a new
    file, ``--overwrite``, or ``--resume`` of the same run). Records then
    stream through: memory does not grow with their number.
    """
    registry = registry or get_registry()
    bound = resolve_metrics(metrics, registry)
    keys = [bm.key for bm in bound]
    outputs = {"--out": out, **(other_outputs or {})}
    check_paths({"--pairs": pairs}, outputs)
    settings = checked_settings(settings, registry)
    effective = {**settings, "device": device, "size_policy": size_policy,
                 "max_pixels": max_pixels_setting(settings)}
    scan = scan_pairs(pairs, check=_no_output_among_images(outputs))
    header = make_header(
        "score", pairs, scan.sha256, scan.records,
        metrics=keys,
        metric_plugins={bm.key: _plugin_entry(registry, bm) for bm in bound},
        settings=score_affecting_settings(effective),
        weights=weight_fingerprints(effective),
        plugins={name: info.version for name, info in sorted(registry.plugins.items())},
    )
    ctx = RunContext(device=device, batch_size=batch_size, size_policy=SizePolicy(size_policy),
                     settings=settings, registry=registry)
    executor = executor or InProcessExecutor()
    with ResultsWriter(out, header, resume=resume, overwrite=overwrite) as writer:
        done = writer.done
        skipped = [0]

        def todo() -> Iterator[EditRecord]:
            for record in read_pairs(pairs):
                if record.key in done:
                    skipped[0] += 1
                else:
                    yield record

        if hasattr(executor, "run_factory"):  # e.g. Ray: each worker builds its own Scorer (models load there)
            from editmetrics.engine.ray_executor import ScorerFactory

            rows = executor.run_factory(ScorerFactory.from_context(metrics, ctx), todo(), batch_size, device=device)
        else:
            scorer = Scorer(bound, ctx)
            rows = executor.run(scorer.load, scorer.score, todo(), batch_size, parallel_score=scorer.thread_safe)
        total = max(0, scan.records - len(done))
        failed = write_rows(writer, rows, total, lambda row: bool(row["errors"]), progress, on_row)
    return RunResult(out=out, written=writer.written, skipped=skipped[0], failed_records=failed,
                     notes=writer.notes)


def write_rows(writer: ResultsWriter, rows: Iterable[dict], total: int, is_failure: Callable[[dict], bool],
               progress: bool | None = None, on_row: Callable[[dict], None] | None = None,
               desc: str = "scoring") -> int:
    """Append each row through ``writer`` (one line, flushed); returns the
    number of failed rows. Ctrl-C / SIGTERM become ``RunInterrupted``."""
    failed = 0
    bar = _progress(total, progress, desc)
    try:
        for row in rows:
            writer.write(row)
            failed += is_failure(row)
            if on_row:
                on_row(row)
            if bar:
                bar.update(1)
    except KeyboardInterrupt as exc:
        raise RunInterrupted(writer.path, writer.written, 143 if isinstance(exc, Terminated) else 130) from None
    finally:
        if bar:
            bar.close()
    return failed


def _plugin_entry(registry: Registry, bm: BoundMetric) -> dict:
    metric_id = type(bm.metric).id
    try:
        plugin = registry.plugin_of("metrics", metric_id)
    except KeyError:
        return {"metric": metric_id, "plugin": None, "version": None}
    info = registry.plugins.get(plugin)
    return {"metric": metric_id, "plugin": plugin, "version": info.version if info else None}


def _no_output_among_images(outputs: dict[str, str | None]) -> Callable[[EditRecord], None]:
    """A scan check: no image or mask of a record is one of the output files
    (compared by file identity; paths are only stat-ed when the names match)."""
    wanted = {}
    for label, path in outputs.items():
        if path:
            for name in {os.path.basename(path), os.path.basename(os.path.realpath(path))}:
                wanted.setdefault(name, []).append((label, path))

    def check(record: EditRecord) -> None:
        if record.error:
            return
        for name in IMAGE_FIELDS + MASK_FIELDS:
            try:
                path = record.path(name)
            except (TypeError, ValueError):
                continue
            if path is None or os.path.basename(path) not in wanted:
                continue
            for label, out in wanted[os.path.basename(path)]:
                try:
                    same = os.path.exists(out) and os.path.samefile(path, out)
                except (OSError, ValueError):
                    same = False
                if same or os.path.realpath(path) == os.path.realpath(out):
                    raise UsageError(f"{label} {out} is the {name!r} image of record {record.key!r}; "
                                     f"choose another {label}")

    return check


def score_records(
    records: Iterable[dict],
    metrics: list[str],
    *,
    base_dir: str = ".",
    batch_size: int = 8,
    device: str = "cpu",
    size_policy: str = "resize",
    settings: dict | None = None,
    registry: Registry | None = None,
) -> list[dict]:
    """Score in-memory records (dicts with the pairs-file fields); returns rows."""
    registry = registry or get_registry()
    bound = resolve_metrics(metrics, registry)
    ctx = RunContext(device=device, batch_size=batch_size, size_policy=SizePolicy(size_policy),
                     settings=checked_settings(settings, registry), registry=registry)
    scorer = Scorer(bound, ctx)
    items = [
        EditRecord(id=r.get("id", i), fields=dict(r), base_dir=os.path.abspath(base_dir), line=i)
        for i, r in enumerate(records, start=1)
    ]
    return list(InProcessExecutor().run(scorer.load, scorer.score, items, batch_size,
                                        parallel_score=scorer.thread_safe))


def _progress(total: int, enabled: bool | None, desc: str = "scoring"):
    if enabled is False or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc=desc, disable=None if enabled is None else not enabled)
