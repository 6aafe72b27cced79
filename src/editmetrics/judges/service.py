"""The run's judge service: cached, concurrent, retried judge requests.

Metrics queue requests in ``prepare`` (``request(...) -> key``); the runner's
``ctx.flush()`` sends every queued request of the batch at once, up to
``judge_concurrency`` in flight, retrying HTTP 429/5xx, timeouts and refused
connections with exponential backoff (``Retry-After`` honoured); ``compute``
reads ``result(key)``.

Every answer the judge returned (even a refusal or an empty one) is cached,
in memory and, with ``judge_cache_dir``, on disk as ``KEY.json``; failed
requests (HTTP errors, timeouts) are not, so a rerun tries them again. The key
is a hash of (backend, model, full prompt text, image hashes, decoding
settings, pass index): the server URL is not part of it, so a model moved to
another server keeps its cache.

Settings: judge_backend, judge_model, judge_url, judge_passes,
judge_concurrency, judge_timeout, judge_max_retries, judge_backoff,
judge_cache_dir, judge_temperature, judge_max_tokens, judge_seed,
judge_images_first, judge_api_key (see docs/judges.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from editmetrics.judges.backends import JudgeError, make_backend

SERVICE = "judges"
MAX_DELAY = 60.0  # seconds: longest wait between two attempts


def judge_service(ctx) -> "JudgeService":
    return ctx.service(SERVICE, lambda c: JudgeService(c.settings))


def image_hash(image: np.ndarray) -> str:
    """sha256 of the 8-bit pixels the judge is sent (and their shape)."""
    from editmetrics.data.images import to_uint8

    arr = np.ascontiguousarray(to_uint8(image))
    digest = hashlib.sha256(f"{arr.shape}".encode())
    digest.update(arr.data)
    return digest.hexdigest()


@dataclass
class Outcome:
    """One request's fate: the answer text, or an error (never both)."""

    text: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    seconds: float = 0.0
    usage: dict | None = None


def _int(settings, key, default):
    value = settings.get(key)
    return default if value is None or value == "" else int(value)


def _bool(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes") if value is not None else False


def _float(settings, key, default):
    value = settings.get(key)
    return default if value is None or value == "" else float(value)


class JudgeService:
    def __init__(self, settings: dict | None = None, backend=None):
        self.settings = dict(settings or {})
        self._backend = backend
        self._backend_error: str | None = None
        self.passes = max(1, _int(self.settings, "judge_passes", 1))
        self.concurrency = max(1, _int(self.settings, "judge_concurrency", 4))
        self.max_retries = max(0, _int(self.settings, "judge_max_retries", 3))
        self.backoff = max(0.0, _float(self.settings, "judge_backoff", 1.0))
        cache_dir = self.settings.get("judge_cache_dir")
        self.cache_dir = os.path.expanduser(str(cache_dir)) if cache_dir else None
        seed = self.settings.get("judge_seed")
        self.decoding = {
            "temperature": _float(self.settings, "judge_temperature", 0.0),
            "max_tokens": _int(self.settings, "judge_max_tokens", 1400),
            "seed": None if seed in (None, "") else int(seed),
        }
        if _bool(self.settings.get("judge_images_first")):
            # prompt layout; kept with the decoding settings so it enters the
            # cache key and the details (absent when off: older keys stay valid)
            self.decoding["images_first"] = True
        self._pending: dict[str, tuple[str, list[np.ndarray], int]] = {}
        self._results: dict[str, Outcome] = {}
        self._hash_memo: dict[int, tuple] = {}
        self._wanted: set[str] = set()  # keys requested since the last flush
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "attempts": 0, "memory_hits": 0, "disk_hits": 0, "errors": 0,
                      "request_seconds": 0.0}

    # -- backend --------------------------------------------------------
    @property
    def backend(self):
        """The backend, built once; a build failure raises the same error each time."""
        if self._backend is None:
            if self._backend_error:
                raise ValueError(self._backend_error)
            try:
                self._backend = make_backend(self.settings)
            except (ValueError, ImportError, OSError) as exc:
                self._backend_error = str(exc)
                raise ValueError(self._backend_error) from None
        return self._backend

    def identity(self) -> dict:
        return self.backend.identity()

    # -- queueing -------------------------------------------------------
    def _image_hash(self, image: np.ndarray) -> str:
        # memo per array object until the next flush (the edited image is hashed
        # once for SC and PQ and every pass); the array is kept so its id is not reused
        entry = self._hash_memo.get(id(image))
        if entry is None or entry[0] is not image:
            entry = (image, image_hash(image))
            self._hash_memo[id(image)] = entry
        return entry[1]

    def key(self, text: str, images: list[np.ndarray], pass_index: int, decoding: dict | None = None) -> str:
        ident = self.identity()
        blob = json.dumps({
            "backend": ident.get("backend"), "model": ident.get("model"),
            "prompt_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "images": [self._image_hash(im) for im in images],
            "decoding": self.decoding if decoding is None else decoding, "pass": pass_index,
        }, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def decoding_for(self, overrides: dict | None = None) -> dict:
        """The run's decoding settings with a metric's own defaults on top."""
        out = dict(self.decoding)
        out.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return out

    def request(self, text: str, images: list[np.ndarray], pass_index: int = 0,
                decoding: dict | None = None) -> str:
        """Queue one request; ``decoding`` overrides the run's settings for it.
        With a seed, pass i is sent with seed + i (EditScore's convention)."""
        dec = self.decoding_for(decoding)
        if dec.get("seed") is not None:
            dec["seed"] = int(dec["seed"]) + pass_index
        key = self.key(text, images, pass_index, dec)
        with self._lock:
            self._wanted.add(key)
            if key in self._results:
                self.stats["memory_hits"] += 1
            elif key not in self._pending:
                cached = self._read_cache(key)
                if cached is not None:
                    self._results[key] = cached
                    self.stats["disk_hits"] += 1
                else:
                    self._pending[key] = (text, images, dec)
        return key

    def result(self, key: str) -> Outcome:
        if key not in self._results:
            raise KeyError(f"judge request {key[:12]} was not computed (flush not called?)")
        return self._results[key]

    # -- sending --------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            todo, self._pending = self._pending, {}
            self._hash_memo = {}
            # answers of earlier batches are no longer needed (their records are
            # computed): memory stays flat over long runs; the disk cache keeps them
            self._results = {k: v for k, v in self._results.items() if k in self._wanted}
            self._wanted = set()
        if not todo:
            return
        items = list(todo.items())
        if self.concurrency == 1 or len(items) == 1:
            outcomes = [self._send(*job) for _, job in items]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)),
                                    thread_name_prefix="editmetrics-judge") as pool:
                outcomes = list(pool.map(lambda item: self._send(*item[1]), items))
        for (key, _), outcome in zip(items, outcomes):
            self._results[key] = outcome
            if outcome.error is None:
                self._write_cache(key, outcome)

    def _send(self, text: str, images: list[np.ndarray], decoding: dict) -> Outcome:
        start = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self.backend.complete(text, images, decoding)
            except JudgeError as exc:
                if exc.transient and attempt <= self.max_retries:
                    delay = exc.retry_after if exc.retry_after is not None else self.backoff * 2 ** (attempt - 1)
                    delay = min(delay, MAX_DELAY)  # a server asking for an hour gets a minute
                    time.sleep(delay)
                    continue
                outcome = Outcome(error=f"{exc} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                                  attempts=attempt)
                break
            except Exception as exc:  # noqa: BLE001 - a backend bug is this request's error, not the run's
                outcome = Outcome(error=f"{type(exc).__name__}: {exc}", attempts=attempt)
                break
            outcome = Outcome(text=answer.text, finish_reason=answer.finish_reason, attempts=attempt,
                              usage=answer.usage)
            break
        outcome.seconds = time.perf_counter() - start
        with self._lock:
            self.stats["requests"] += 1
            self.stats["attempts"] += attempt
            self.stats["errors"] += outcome.error is not None
            self.stats["request_seconds"] += outcome.seconds
        return outcome

    # -- disk cache -----------------------------------------------------
    def _path(self, key: str) -> str:
        return os.path.join(self.cache_dir, key[:2], f"{key}.json")

    def _read_cache(self, key: str) -> Outcome | None:
        if not self.cache_dir:
            return None
        try:
            with open(self._path(key), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        return Outcome(text=data.get("text"), finish_reason=data.get("finish_reason"), cached=True,
                       usage=data.get("usage"))

    def _write_cache(self, key: str, outcome: Outcome) -> None:
        if not self.cache_dir:
            return
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = {k: v for k, v in asdict(outcome).items() if k in ("text", "finish_reason", "usage")}
        record["identity"] = self.identity()
        record["decoding"] = self.decoding
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, ensure_ascii=False)
        os.replace(tmp, path)
