"""The scoring loop: records -> images -> features -> metrics -> result rows.

Records stream through in batches; images of the next batches are decoded in
worker threads while the current batch is scored. Each finished record becomes
one JSON line, written and flushed at once (append-only). ``--resume`` skips ids
already in the output and drops a last line cut short by a crash.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from editmetrics.data.arrays import ArrayError, is_in_memory, to_image, to_mask
from editmetrics.data.images import ImageLoadError, SizeMismatch, SizePolicy, align, load_image, load_mask
from editmetrics.contract.metric import Metric, MetricError, MetricSpec, Score, SpecError
from editmetrics.plugins.registry import Registry, get_registry
from editmetrics.data.records import EditRecord, read_pairs


class UsageError(Exception):
    """Bad command-line use: exit status 2."""


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
            except (MetricError, ImportError, OSError, RuntimeError, ValueError) as exc:
                # e.g. weights missing: every record gets this reason, the run goes on
                bm.setup_error = _reason(exc)
        self.image_fields, self.mask_fields = self._fields_to_load()
        self._uids = itertools.count(1)
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
                loaded.images[name] = load_mask(path) if name in self.mask_fields else load_image(path)
            except ImageLoadError as exc:
                loaded.errors[name] = str(exc)
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
                    except Exception as exc:  # noqa: BLE001 - a metric failure is per record
                        problem = _reason(exc)
                if problem is not None:
                    errors[bm.key] = problem
            states.append(errors)
        flush_error = None
        try:
            self.ctx.flush()
        except Exception as exc:  # noqa: BLE001
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
                except Exception as exc:  # noqa: BLE001
                    errors[key] = _reason(exc)
                else:
                    self._store(key, result, scores, details, errors)
            elif key not in errors:
                errors[key] = flush_error
            if key in errors:
                scores[key] = None
                out_errors[key] = errors[key]
        row: dict[str, Any] = {"id": record.id}
        row.update(record.output_fields())
        row["scores"] = scores
        row["errors"] = out_errors
        if view.warnings:
            row["warnings"] = view.warnings
        if details:
            row["details"] = details
        return row

    @staticmethod
    def _store(key, result, scores, details, errors) -> None:
        reason = None
        if isinstance(result, Score):
            value = result.value
            reason = result.reason
            for name, comp in result.components.items():
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
    return float(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MetricError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


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
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="editmetrics-decode") as pool:
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
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="editmetrics-score") as pool:
            pending: deque = deque()
            for batch in _batches(records, batch_size):
                pending.append(pool.submit(work, batch))
                if len(pending) >= limit:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


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
# Output file: append-only JSON lines, resumable
# ---------------------------------------------------------------------------


def read_results(path: str) -> Iterator[dict]:
    """Rows of a results file; a last line without newline (a crash) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            if line.strip():
                yield json.loads(line)


def prepare_output(path: str, resume: bool, keys: list[str]) -> set[str]:
    """Return the ids already done. Without ``resume`` an existing file is an
    error (nothing computed is ever overwritten)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set()
    if not resume:
        raise UsageError(f"{path} exists: pass --resume to continue it, or choose another --out")
    done: set[str] = set()
    good_bytes = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                break  # a torn write in the middle: keep what precedes it
            missing = [k for k in keys if k not in row.get("scores", {})]
            if missing:
                raise UsageError(
                    f"{path} was written with other metrics (no {missing[0]!r} in id {row.get('id')!r}); "
                    "use a new --out for a different metric list"
                )
            done.add(str(row["id"]))
            good_bytes += len(raw)
    if good_bytes != os.path.getsize(path):
        with open(path, "r+b") as fh:  # drop the torn tail so the file stays valid JSONL
            fh.truncate(good_bytes)
    return done


def _dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, allow_nan=True)


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


@dataclass
class RunResult:
    out: str | None
    written: int
    skipped: int
    failed_records: int


def score_file(
    pairs: str,
    metrics: list[str],
    out: str,
    *,
    resume: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    size_policy: str = "resize",
    settings: dict | None = None,
    executor: Executor | None = None,
    registry: Registry | None = None,
    progress: bool | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> RunResult:
    """Score a pairs file into ``out`` (JSON lines); see the module docstring."""
    registry = registry or get_registry()
    bound = resolve_metrics(metrics, registry)
    keys = [bm.key for bm in bound]
    records = list(read_pairs(pairs))  # validates ids and format before any work
    done = prepare_output(out, resume, keys)
    todo = [r for r in records if r.key not in done]
    ctx = RunContext(device=device, batch_size=batch_size, size_policy=SizePolicy(size_policy),
                     settings=settings or {}, registry=registry)
    executor = executor or InProcessExecutor()
    if hasattr(executor, "run_factory"):  # e.g. Ray: each worker builds its own Scorer (models load there)
        from editmetrics.engine.ray_executor import ScorerFactory

        rows = executor.run_factory(ScorerFactory.from_context(metrics, ctx), todo, batch_size, device=device)
    else:
        scorer = Scorer(bound, ctx)
        rows = executor.run(scorer.load, scorer.score, todo, batch_size, parallel_score=scorer.thread_safe)
    written, failed = append_rows(out, rows, len(todo), lambda row: bool(row["errors"]), progress, on_row)
    return RunResult(out=out, written=written, skipped=len(records) - len(todo), failed_records=failed)


def append_rows(out: str, rows: Iterable[dict], total: int, is_failure: Callable[[dict], bool],
                progress: bool | None = None, on_row: Callable[[dict], None] | None = None,
                desc: str = "scoring") -> tuple[int, int]:
    """Append each row as one JSON line, flushed at once; returns (written, failed)."""
    written = failed = 0
    bar = _progress(total, progress, desc)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(_dumps(row) + "\n")
            fh.flush()
            written += 1
            failed += is_failure(row)
            if on_row:
                on_row(row)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return written, failed


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
                     settings=settings or {}, registry=registry)
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
