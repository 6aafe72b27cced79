"""Scale-out on Ray: the same scoring loop, batches spread over Ray actors.

``--executor ray`` (``score`` and ``run``) hands the run's batches to a pool of
Ray actors, on a local Ray started for the run or on a cluster
(``--ray-address``). What changes and what does not:

- Each actor builds its own ``Scorer`` (or model) from picklable inputs, a
  *worker factory*: metric specs, settings, device; the registry is loaded in
  the actor. Models load once per actor, never in the driver.
- The driver cuts the records into the very batches an in-process run uses
  (``batch_size``, in order), keeps at most ``ray_batches_in_flight`` batches
  per actor in flight (driver memory stays flat), and yields rows in input
  order. The caller writes them with the same writer as in-process runs, so
  the lock, provenance and ``--resume`` apply unchanged; the executor is not
  part of what makes two runs "the same run".
- An actor that dies (killed, out of memory, segfault in plugin code) is
  replaced; the batch it was running is retried up to ``ray_max_retries``
  times, the batches queued behind it are resubmitted without counting
  against theirs. A batch that keeps failing becomes one error row per record
  (every metric null with the reason). No record is lost or duplicated.
- Ctrl-C (or any exception in the consumer) kills the actors and shuts a
  Ray started here down.

Settings (not score-changing): ``ray_actors``, ``ray_num_cpus``,
``ray_num_gpus``, ``ray_max_retries``, ``ray_batches_in_flight``,
``ray_local_cpus``, ``ray_object_store_mb``; see ``SETTINGS`` and docs/scale.md.
``ray`` is imported only when a Ray run starts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import click

from editmetrics.data.records import EditRecord
from editmetrics.engine.runner import UsageError

INSTALL_HINT = "pip install 'editmetrics[ray]'"
EXECUTORS = ("inprocess", "ray")

# name -> (type, default, help); none of them changes a score.
SETTINGS: dict[str, tuple[type, Any, str]] = {
    "ray_actors": (int, 0, "Ray actors (workers) to start; 0 = as many as the cluster's CPUs/GPUs allow"),
    "ray_num_cpus": (float, 1.0, "CPUs reserved per Ray actor (also its decode threads)"),
    "ray_num_gpus": (float, None, "GPUs per Ray actor (fractions share a GPU); default 1 with --device cuda, else 0"),
    "ray_max_retries": (int, 2, "times a batch is retried after its actor died; then its records get errors"),
    "ray_batches_in_flight": (int, 2, "batches queued per Ray actor (bounds driver and object-store memory)"),
    "ray_local_cpus": (int, None, "CPUs of a Ray started locally by the run (default: all of this machine's)"),
    "ray_object_store_mb": (int, 200, "object store size (MiB) of a Ray started locally by the run"),
}


def setting(settings: dict, name: str):
    kind, default, _ = SETTINGS[name]
    value = settings.get(name)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"setting {name}={value!r} is not a valid {kind.__name__}") from None


# ---------------------------------------------------------------------------
# Worker factories: what an actor builds, from picklable inputs
# ---------------------------------------------------------------------------


@dataclass
class ScorerFactory:
    """Builds a run's ``Scorer`` inside a worker (``score``)."""

    metrics: tuple[str, ...]
    device: str = "cpu"
    batch_size: int = 8
    size_policy: str = "resize"
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_context(cls, metrics: Iterable[str], ctx) -> "ScorerFactory":
        from editmetrics.plugins.registry import get_registry

        if ctx.registry is not None and ctx.registry is not get_registry():
            raise UsageError("a custom registry cannot be sent to Ray actors (they load the installed plugins); "
                             "register the metrics through a plugin, or use the in-process executor")
        return cls(tuple(metrics), ctx.device, ctx.batch_size, ctx.size_policy.mode, dict(ctx.settings))

    def build(self, device: str | None = None):
        from editmetrics.data.images import SizePolicy
        from editmetrics.plugins.registry import get_registry
        from editmetrics.engine.runner import RunContext, Scorer, resolve_metrics

        registry = get_registry()
        ctx = RunContext(device=device or self.device, batch_size=self.batch_size,
                         size_policy=SizePolicy(self.size_policy), settings=dict(self.settings),
                         registry=registry)
        scorer = Scorer(resolve_metrics(self.metrics, registry), ctx)
        return scorer.load, scorer.score

    def failed_rows(self, records: list[EditRecord], reason: str) -> list[dict]:
        """Rows for records whose batch could not be scored: every metric null, with the reason."""
        from editmetrics.contract.metric import MetricSpec

        keys = [MetricSpec.parse(text).key for text in self.metrics]
        rows = []
        for record in records:
            errors: dict[str, str] = {}
            if record.error:
                errors["record"] = record.error
            errors.update({key: reason for key in keys})
            rows.append({"id": record.id, **record.output_fields(), "scores": {k: None for k in keys},
                         "errors": errors, "warnings": {}, "details": {}})
        return rows


@dataclass
class ModelFactory:
    """Loads a model inside a worker (``run``); ``model`` is configured, not loaded."""

    model: Any
    device: str
    out_dir: str
    seed: int
    meta: dict

    def build(self, device: str | None = None):
        from editmetrics.engine.model_runs import _Producer

        self.model.load(device or self.device)
        producer = _Producer(self.model, self.out_dir, self.seed, self.meta)
        return producer.load, producer.produce

    def failed_rows(self, records: list[EditRecord], reason: str) -> list[dict]:
        from editmetrics.engine.model_runs import _Job, _Producer

        producer = _Producer(self.model, self.out_dir, self.seed, self.meta)  # not loaded: writes no image
        return [producer._row(_Job(record, {}, error=reason)) for record in records]


@dataclass
class _LiveFactory:
    """``Executor.run`` compatibility: ships live callables (fine for light scorers)."""

    load: Callable
    score: Callable

    def build(self, device: str | None = None):
        return self.load, self.score

    def failed_rows(self, records, reason):
        return [{"id": r.id, **r.output_fields(), "scores": {}, "errors": {"batch": reason}, "warnings": {},
                 "details": {}} for r in records]


# ---------------------------------------------------------------------------
# The actor
# ---------------------------------------------------------------------------


class _Worker:
    """One Ray actor: builds its scorer once, then scores whole batches."""

    def __init__(self, factory, device: str | None, threads: int):
        self.error: Exception | None = None
        try:
            self.load, self.score = factory.build(device)
        except Exception as exc:  # noqa: BLE001 - reported by pid(), so the driver sees the real exception
            self.error = exc
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="editmetrics-decode")

    def pid(self) -> int:
        """Ready check: the process id once built, or the exception that stopped the build."""
        if self.error is not None:
            raise self.error
        return os.getpid()

    def run(self, batch: list[EditRecord]) -> list[dict]:
        # decode in threads (PIL/OpenCV release the GIL), score the batch at once
        return self.score(list(self.pool.map(self.load, batch)))


def _require_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------


@dataclass
class _Batch:
    index: int
    records: list[EditRecord]
    attempts: int = 0
    ref: Any = None
    actor: int | None = None  # slot in the pool
    rows: list[dict] | None = None


class RayExecutor:
    """Runs batches on Ray actors; yields rows in input order (see the module docstring).

    ``address``: None starts a local Ray for the run (stopped at the end);
    ``"auto"`` or ``HOST:PORT`` joins a running cluster. When Ray is already
    initialised in this process (a notebook, the tests) that instance is used
    and left running.
    """

    def __init__(self, address: str | None = None, settings: dict | None = None):
        self.ray = _require_ray()
        self.address = address
        self.settings = dict(settings or {})
        for name in SETTINGS:
            setting(self.settings, name)  # bad values fail before any work
        self.max_retries = max(0, setting(self.settings, "ray_max_retries"))
        self.in_flight = max(1, setting(self.settings, "ray_batches_in_flight"))
        # observed by tests and benchmarks
        self.worker_pids: list[int] = []
        self.stats = {"actors_started": 0, "actor_deaths": 0, "retried_batches": 0, "failed_batches": 0}

    # -- Executor protocol ------------------------------------------------
    def run(self, load, score, records, batch_size, parallel_score=False) -> Iterator[dict]:
        """``runner.Executor``: ships ``load``/``score`` themselves (pickled) to
        each actor. ``score_file`` and ``run_model`` use ``run_factory`` instead,
        so models are built in the actors, not in the driver."""
        yield from self.run_factory(_LiveFactory(load, score), records, batch_size)

    # -- the loop ---------------------------------------------------------
    def run_factory(self, factory, records: Iterable[EditRecord], batch_size: int,
                    device: str = "cpu") -> Iterator[dict]:
        ray = self.ray
        batches = _numbered_batches(records, batch_size)
        first = next(batches, None)
        if first is None:
            return  # nothing to do: no cluster started
        batches = itertools.chain([first], batches)
        started_here = self._connect()
        actors: list[Any] = []
        try:
            remote = ray.remote(_Worker)
            num_cpus = setting(self.settings, "ray_num_cpus")
            num_gpus = setting(self.settings, "ray_num_gpus")
            if num_gpus is None:
                num_gpus = 1.0 if str(device).startswith("cuda") else 0.0
            # Ray gives each actor its own CUDA_VISIBLE_DEVICES: "cuda" is its GPU
            actor_device = "cuda" if num_gpus > 0 and str(device).startswith("cuda") else None
            n_actors = self._n_actors(num_cpus, num_gpus)
            options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": 0, "max_concurrency": 1}
            env = {k: os.environ[k] for k in ("EDITMETRICS_LOAD_PLUGINS", "EDITMETRICS_STRICT_PLUGINS")
                   if k in os.environ}
            if env and self.address:
                options["runtime_env"] = {"env_vars": env}
            threads = max(1, int(num_cpus))

            def start() -> Any:
                self.stats["actors_started"] += 1
                return remote.options(**options).remote(factory, actor_device, threads)

            actors = [start() for _ in range(n_actors)]
            self.worker_pids = self._ready(actors)
            yield from self._schedule(factory, batches, actors, start)
        finally:
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            if started_here:
                ray.shutdown()

    def _schedule(self, factory, batches, actors, start) -> Iterator[dict]:
        ray = self.ray
        from ray.exceptions import RayActorError, RayError

        exhausted = False
        order: deque[_Batch] = deque()  # submitted, not yet yielded, input order
        on_actor: list[deque[_Batch]] = [deque() for _ in actors]  # per slot, submission order
        by_ref: dict[Any, _Batch] = {}

        def submit(batch: _Batch) -> None:
            slot = min(range(len(actors)), key=lambda i: len(on_actor[i]))
            batch.actor, batch.rows = slot, None
            batch.ref = actors[slot].run.remote(batch.records)
            on_actor[slot].append(batch)
            by_ref[batch.ref] = batch

        def give_up_or_retry(batch: _Batch, reason: str) -> None:
            batch.attempts += 1
            if batch.attempts > self.max_retries:
                self.stats["failed_batches"] += 1
                batch.rows = factory.failed_rows(
                    batch.records, f"Ray worker failed {batch.attempts} time(s) on this batch: {reason}")
            else:
                self.stats["retried_batches"] += 1
                submit(batch)

        while True:
            while not exhausted and len(order) < len(actors) * self.in_flight:
                try:
                    index, records_ = next(batches)
                except StopIteration:
                    exhausted = True
                    break
                batch = _Batch(index, records_)
                order.append(batch)
                submit(batch)
            while order and order[0].rows is not None:
                yield from order.popleft().rows
            if not order:
                if exhausted:
                    return
                continue
            ready, _ = ray.wait(list(by_ref), num_returns=1)
            batch = by_ref.pop(ready[0])
            queue = on_actor[batch.actor]
            try:
                rows = ray.get(batch.ref)
            except RayActorError as exc:
                # The actor is gone: the oldest batch on it was running (actor
                # tasks run in submission order); it alone counts an attempt.
                self.stats["actor_deaths"] += 1
                slot = batch.actor
                victims = list(queue)
                queue.clear()
                for other in victims:
                    by_ref.pop(other.ref, None)
                try:
                    ray.kill(actors[slot])  # unreachable is as good as dead: never two copies at work
                except Exception:  # noqa: BLE001
                    pass
                actors[slot] = start()
                self.worker_pids[slot:slot + 1] = self._ready([actors[slot]])
                reason = _short(exc)
                # Every task on a dead actor resolves (a value sent before the
                # death, or an error): wait for all of them, so a batch whose
                # reply was still in transit is not taken for the one running.
                ray.wait([v.ref for v in victims], num_returns=len(victims), timeout=_SETTLE_S)
                charged = False
                for other in victims:
                    if other is not batch and _finished(ray, other):
                        continue  # it completed before the actor died: keep its rows
                    if not charged:  # the oldest unfinished batch was the one running
                        charged = True
                        give_up_or_retry(other, reason)
                    else:
                        submit(other)
                continue
            except RayError as exc:  # an exception escaped the scorer: retry, then errors
                queue.remove(batch)
                give_up_or_retry(batch, _short(exc))
                continue
            queue.remove(batch)
            if len(rows) != len(batch.records):  # never write a batch that lost or gained rows
                give_up_or_retry(batch, f"worker returned {len(rows)} rows for {len(batch.records)} records")
                continue
            batch.rows = rows

    # -- cluster ----------------------------------------------------------
    def _connect(self) -> bool:
        """Connect (or start a local Ray); True when this call started it."""
        ray = self.ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
        if self.address:
            ray.init(address=self.address, **kwargs)
        else:
            cpus = setting(self.settings, "ray_local_cpus") or os.cpu_count() or 1
            ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                     object_store_memory=setting(self.settings, "ray_object_store_mb") * 1024 * 1024, **kwargs)
        return True

    def _n_actors(self, num_cpus: float, num_gpus: float) -> int:
        resources = self.ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if num_gpus > gpus:
            raise UsageError(f"each Ray actor asks for {num_gpus:g} GPU(s) (ray_num_gpus) but the cluster has "
                             f"{gpus:g}; use --device cpu or join a cluster with GPUs (--ray-address)")
        if num_cpus > cpus:
            raise UsageError(f"each Ray actor asks for {num_cpus:g} CPU(s) (ray_num_cpus) but the cluster has {cpus:g}")
        wanted = setting(self.settings, "ray_actors")
        if wanted > 0:
            return wanted
        fit = math.floor(gpus / num_gpus) if num_gpus > 0 else math.floor(cpus / num_cpus) if num_cpus > 0 else 1
        return max(1, fit)

    def _ready(self, actors: list) -> list[int]:
        """Wait until the actors have built their scorers; a worker that cannot
        even start stops the run (what was written stays resumable)."""
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get([actor.pid.remote() for actor in actors])
        except RayTaskError as exc:  # the build raised (e.g. ModelError): the same exception as in-process
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise RuntimeError(f"a Ray worker could not start: {_short(exc)}") from None
        except RayError as exc:
            raise RuntimeError(f"a Ray worker could not start: {_short(exc)}") from None


_SETTLE_S = 30.0  # bound on waiting for a dead actor's tasks to resolve


def _finished(ray, batch: _Batch) -> bool:
    """Take the rows of a batch whose task ended before its actor died."""
    ready, _ = ray.wait([batch.ref], timeout=0)
    if not ready:
        return False
    try:
        rows = ray.get(batch.ref)
    except Exception:  # noqa: BLE001 - died with the actor
        return False
    if len(rows) != len(batch.records):
        return False
    batch.rows = rows
    return True


def _numbered_batches(records: Iterable[EditRecord], size: int) -> Iterator[tuple[int, list[EditRecord]]]:
    from editmetrics.engine.runner import _batches

    yield from enumerate(_batches(records, size))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# ---------------------------------------------------------------------------
# Command-line glue (``score`` and ``run``)
# ---------------------------------------------------------------------------


def executor_options(command):
    """``--executor`` and ``--ray-address`` for a command."""
    command = click.option("--ray-address", default=None, metavar="ADDRESS",
                           help="Join this Ray cluster ('auto' or HOST:PORT) instead of starting a local Ray.")(command)
    command = click.option("--executor", type=click.Choice(EXECUTORS), default="inprocess", show_default=True,
                           help="Where records are scored: this process, or Ray actors (docs/scale.md).")(command)
    return command


def make_executor(name: str, address: str | None, settings: dict):
    """The executor object for ``--executor``; None = in-process (the default)."""
    if name == "ray":
        return RayExecutor(address=address, settings=settings)
    if address:
        raise UsageError("--ray-address needs --executor ray")
    return None
