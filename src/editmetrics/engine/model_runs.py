"""`editmetrics run` and `editmetrics models`: models turn pairs files into pairs files.

``run_model`` streams the records of a pairs file through one registered model
(editor, recoverer or assessor) and writes ``OUT_DIR/pairs.jsonl``: each input
record once, in input order, with

- the model's image outputs written as 8-bit RGB PNG under ``OUT_DIR/images/``
  and their fields (``edited`` for editors and recoverers) set to paths
  relative to ``OUT_DIR``; the other image and mask fields rewritten relative
  to ``OUT_DIR`` too, so the file is ready for ``editmetrics score``;
- ``model_run``: model id, kind, plugin, parameters, weights (path and
  fingerprint), the run seed and the record's own seed, and any ``info`` the
  model returned (e.g. R-SIE's fitted alpha);
- ``error``: why the model produced nothing for this record (and no output
  field), when that happened. The run goes on.

The output file is append-only, locked and resumable exactly like ``score``'s
(``results.ResultsWriter``: a run header first; ``--resume`` continues only
the same model, parameters, seed, settings and pairs file; ids already there
are skipped, a torn last line is dropped). Images are decoded by ``editmetrics.data.images`` in worker threads
ahead of the model (``runner.InProcessExecutor``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from editmetrics.contract.model import Model, ModelError
from editmetrics.data.images import ImageLoadError, load_image, load_mask, to_pil
from editmetrics.data.records import IMAGE_FIELDS, MASK_FIELDS, EditRecord, read_pairs
from editmetrics.engine.results import ResultsWriter, check_paths, make_header, score_affecting_settings
from editmetrics.engine.runner import InProcessExecutor, UsageError, max_pixels_setting, write_rows
from editmetrics.plugins.registry import Registry, get_registry

OUT_NAME = "pairs.jsonl"
IMAGE_DIR = "images"
RUN_FIELDS = ("model_run", "error")  # written by a run: never carried over from the input


@dataclass
class ModelRunResult:
    out: str
    written: int
    skipped: int
    failed_records: int


# ---------------------------------------------------------------------------
# Building a model from the command line
# ---------------------------------------------------------------------------


def build_model(model_id: str, assignments: dict[str, Any] | None, settings: dict[str, Any] | None,
                registry: Registry) -> Model:
    """Instantiate ``model_id``. ``assignments`` (``--set k=v``) naming one of
    the model's parameters set that parameter; the others are settings (e.g.
    weight paths)."""
    cls = registry.get("models", model_id)
    params, extra = {}, {}
    for key, value in (assignments or {}).items():
        if key in cls.params:
            params[key] = cls.params[key].parse(key, value) if isinstance(value, str) else value
        else:
            extra[key] = value
    return cls(**params).configure({**(settings or {}), **extra})


def record_seed(seed: int, key: str) -> int:
    """The seed a record gets: a hash of the run seed and the record id, so a
    record's output does not depend on its position, on the other records or
    on --resume."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def fingerprint(path: str, chunk: int = 1 << 20) -> str:
    """A cheap content id of a weights file or folder: SHA-256 over every
    file's relative name, size, first and last MiB. Two fine-tunes of one
    architecture (same names and sizes) still differ in their bytes."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    else:
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [(os.path.relpath(os.path.join(root, n), path), os.path.join(root, n))
                      for n in sorted(names) if not n.startswith(".")]
    for rel, full in files:
        size = os.path.getsize(full)
        digest.update(f"{rel}\0{size}\0".encode())
        with open(full, "rb") as fh:
            digest.update(fh.read(chunk))
            if size > chunk:
                fh.seek(max(chunk, size - chunk))
                digest.update(fh.read(chunk))
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------
# The run loop
# ---------------------------------------------------------------------------


@dataclass
class _Job:
    record: EditRecord
    inputs: dict[str, Any]
    error: str | None = None


class _Producer:
    """Decodes a record's inputs (``load``, thread-safe) and runs the model on
    them (``produce``, in the caller's thread); builds the output rows."""

    def __init__(self, model: Model, out_dir: str, seed: int, meta: dict[str, Any], max_pixels: int | None = None):
        self.model = model
        self.max_pixels = max_pixels
        self.out_dir = out_dir
        self.seed = seed
        self.meta = meta
        os.makedirs(os.path.join(out_dir, IMAGE_DIR), exist_ok=True)

    def load(self, record: EditRecord) -> _Job:
        job = _Job(record, {})
        if record.error:
            job.error = f"record unreadable: {record.error}"
            return job
        model = self.model
        for name in tuple(model.inputs) + tuple(model.optional_inputs):
            required = name in model.inputs
            if name in IMAGE_FIELDS or name in MASK_FIELDS:
                path = record.path(name)
                if path is None:
                    if required:
                        job.error = f"field {name!r} is missing in this record (model {model.id!r} needs it)"
                        return job
                    continue
                try:
                    if name in MASK_FIELDS:
                        job.inputs[name] = load_mask(path, self.max_pixels)
                    else:
                        job.inputs[name] = load_image(path, self.max_pixels)
                except ImageLoadError as exc:
                    job.error = f"field {name!r} could not be loaded: {exc}"
                    return job
                except Exception as exc:  # noqa: BLE001 - one record's problem
                    job.error = f"field {name!r} could not be loaded: {type(exc).__name__}: {exc}"[:2000]
                    return job
            else:
                value = record.fields.get(name)
                if value is None or value == "":
                    if required:
                        job.error = f"field {name!r} is missing in this record (model {model.id!r} needs it)"
                        return job
                    continue
                job.inputs[name] = value
        return job

    def produce(self, batch: list[_Job]) -> list[dict]:
        return [self._row(job) for job in batch]

    def _row(self, job: _Job) -> dict:
        record = job.record
        seed = record_seed(self.seed, record.key)
        row: dict[str, Any] = {"id": record.id}
        for name, value in record.fields.items():
            if name == "id" or name in RUN_FIELDS or name in self.model.outputs:
                continue  # an input's old output must never pass for this model's
            if (name in IMAGE_FIELDS or name in MASK_FIELDS) and isinstance(value, str) and value:
                row[name] = os.path.relpath(record.path(name), self.out_dir)
            else:
                row[name] = value
        run = dict(self.meta, record_seed=seed)
        error = job.error
        if error is None:
            try:
                result = self.model.predict(job.inputs, seed=seed)
                outputs = self._write_outputs(record, result)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a model failure is per record
                error = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
            else:
                row.update(outputs)
                if result.get("info"):
                    run["info"] = _jsonable(result["info"])
        row["model_run"] = run
        if error is not None:
            row["error"] = error
        return row

    def _write_outputs(self, record: EditRecord, result: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stem = _safe_stem(record.key)
        for name in self.model.outputs:
            if name not in result:
                raise ModelError(f"model {self.model.id!r} returned no {name!r}")
            value = result[name]
            if name in IMAGE_FIELDS or name in MASK_FIELDS:
                rel = os.path.join(IMAGE_DIR, stem + (".png" if name == "edited" else f".{name}.png"))
                _write_png(np.asarray(value), os.path.join(self.out_dir, rel))
                out[name] = rel
            else:
                out[name] = _jsonable(value)
        return out


def _safe_stem(key: str) -> str:
    """A file name for a record id; ids changed by the cleaning get a hash
    suffix so that two ids never share a file."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:80] or "record"
    if stem != key:
        stem += "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return stem


def _write_png(array: np.ndarray, path: str) -> None:
    """8-bit PNG (lossless): a float value v in [0, 1] becomes round(255 v),
    so an image decoded from an 8-bit file is written back byte for byte."""
    if array.dtype == bool:
        img = Image.fromarray(array.astype(np.uint8) * 255, mode="L")
    else:
        if array.ndim != 3 or array.shape[2] != 3:
            raise ModelError(f"expected an HxWx3 image, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ModelError("the model returned an image with NaN or infinite values")
        img = to_pil(array)
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png.tmp")
    os.close(fd)
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)  # never a half-written image under the final name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def run_model(
    model: str | Model,
    pairs: str,
    out_dir: str,
    *,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    assignments: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    device: str = "cpu",
    registry: Registry | None = None,
    progress: bool | None = None,
    on_row: Callable[[dict], None] | None = None,
    executor: Any = None,
) -> ModelRunResult:
    """Run a model over a pairs file into ``out_dir/pairs.jsonl`` (see the module docstring)."""
    from editmetrics.data.records import scan_pairs

    registry = registry or get_registry()
    if isinstance(model, str):
        model = build_model(model, assignments, settings, registry)
    elif settings:
        model.configure(settings)
    out = os.path.join(out_dir, OUT_NAME)
    check_paths({"--pairs": pairs}, {"--out-dir pairs file": out})
    images_dir = os.path.join(os.path.realpath(os.path.abspath(out_dir)), IMAGE_DIR) + os.sep

    def no_input_in_images_dir(record: EditRecord) -> None:
        for name in IMAGE_FIELDS + MASK_FIELDS:
            path = record.path(name) if not record.error else None
            if path and os.path.realpath(path).startswith(images_dir):
                raise UsageError(f"record {record.key!r}: its {name!r} image {path} lies in {images_dir}, where "
                                 "this run writes its images; choose another --out-dir")

    scan = scan_pairs(pairs, check=no_input_in_images_dir)
    meta = {
        "model": model.id,
        "kind": model.kind,
        "plugin": _plugin_of(registry, model.id),
        "params": _jsonable(dict(model.options)),
        "seed": seed,
        "device": device,
    }
    header = make_header("model_run", pairs, scan.sha256, scan.records, model=model.id,
                         params=meta["params"], seed=seed,
                         settings=score_affecting_settings({**(settings or {}), "device": device}),
                         plugins={name: info.version for name, info in sorted(registry.plugins.items())})
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out-dir {out_dir}: {exc.strerror or exc}") from None
    with ResultsWriter(out, header, resume=resume, overwrite=overwrite, option="--out-dir") as writer:
        done = writer.done
        todo = max(0, scan.records - len(done))
        skipped = [0]

        def records():
            for record in read_pairs(pairs):
                if record.key in done:
                    skipped[0] += 1
                else:
                    yield record

        failed = 0
        if todo:
            weights = model.require_weights() if model.weights else {}
            if model.weights_present() is False:  # weights the model locates itself (e.g. from a parameter)
                missing = [w for w in model.weights if w.name not in weights]
                raise ModelError(f"model {model.id!r}: weights missing: "
                                 + "; ".join(f"{w.name!r} ({w.hint})" for w in missing))
            meta["weights"] = {name: {"path": os.path.abspath(path), "fingerprint": fingerprint(path)}
                               for name, path in weights.items()}
            if executor is not None:  # e.g. Ray: each worker loads its own copy of the model
                from editmetrics.engine.ray_executor import ModelFactory

                factory = ModelFactory(model, device, os.path.abspath(out_dir), seed, meta)
                rows = executor.run_factory(factory, records(), 1, device=device)
            else:
                model.load(device)
                producer = _Producer(model, os.path.abspath(out_dir), seed, meta,
                                     max_pixels_setting(settings))
                rows = InProcessExecutor().run(producer.load, producer.produce, records(), 1)
            failed = write_rows(writer, rows, todo, lambda row: "error" in row, progress, on_row, "running")
        else:
            skipped[0] = scan.records
        writer_written = writer.written
    return ModelRunResult(out=out, written=writer_written, skipped=skipped[0], failed_records=failed)


def _plugin_of(registry: Registry, model_id: str) -> str | None:
    try:
        return registry.plugin_of("models", model_id)
    except KeyError:
        return None  # a model object built outside the registry


# ---------------------------------------------------------------------------
# The `models` command's table (editmetrics.cli.models)
# ---------------------------------------------------------------------------


def model_table(registry: Registry, settings: dict[str, Any]) -> list[dict]:
    """``Registry.model_rows`` with weight presence resolved under ``settings``."""
    return registry.model_rows(settings)
