"""Judge backends: one chat turn (text + images) in, the answer text out.

A backend is built from the run's settings and exposes:
- ``identity()``: what produced the answer (backend, model, url or path) -
  part of the cache key and of every record's details;
- ``complete(text, images, decoding) -> Answer``: one request; raises
  ``JudgeError`` (transient=True for what is worth retrying).

``openai`` talks to any OpenAI-compatible ``{judge_url}/chat/completions``
(vLLM, the llama.cpp server, ...) with the standard library only; images go as
base64 PNG data URLs in ``image_url`` parts after the text part (VIEScore's
order: text, then the images).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


class JudgeError(RuntimeError):
    """A request failed; ``transient`` errors (429, 5xx, timeouts) are retried."""

    def __init__(self, message: str, transient: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


@dataclass
class Answer:
    text: str | None
    finish_reason: str | None = None
    usage: dict | None = None


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG of a float [0, 1] HxWx3 image (8-bit, as decoded). zlib
    level 1: the pixels are the same, encoding is several times faster."""
    from PIL import Image

    from editmetrics.data.images import to_uint8

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


_URLS: "OrderedDict[bytes, str]" = OrderedDict()
_URLS_LOCK = threading.Lock()
_URLS_MAX = 64


def data_url(image: np.ndarray) -> str:
    """base64 PNG data URL; the last few are memoised by content (a source
    image shared by many records, the edited image sent in both SC and PQ)."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.data)
    key = digest.digest()
    with _URLS_LOCK:
        if key in _URLS:
            _URLS.move_to_end(key)
            return _URLS[key]
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
    with _URLS_LOCK:
        _URLS[key] = url
        while len(_URLS) > _URLS_MAX:
            _URLS.popitem(last=False)
    return url


# decoding keys sent to an OpenAI-compatible server (images_first is layout, not a field)
SENT_DECODING = ("temperature", "max_tokens", "seed", "top_p", "top_k")


def content_parts(text: str, images: list[np.ndarray], images_first: bool = False) -> list[dict]:
    """OpenAI chat content: the text then the images (VIEScore's order), or the
    images first (GEdit-Bench's local Qwen2.5-VL path) with ``judge_images_first``."""
    parts = [{"type": "image_url", "image_url": {"url": data_url(im)}} for im in images]
    text_part = [{"type": "text", "text": text}]
    return parts + text_part if images_first else text_part + parts


class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: dict):
        url = settings.get("judge_url")
        model = settings.get("judge_model")
        if not url:
            raise ValueError("judge backend 'openai' needs judge_url (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise ValueError("judge backend 'openai' needs judge_model (the served model name)")
        self.url = str(url).rstrip("/")
        self.model = str(model)
        self.timeout = float(settings.get("judge_timeout", 120.0))
        self._api_key = settings.get("judge_api_key")  # never recorded

    def identity(self) -> dict:
        return {"backend": self.name, "model": self.model, "url": self.url}

    def payload(self, text: str, images: list[np.ndarray], decoding: dict) -> dict:
        content = content_parts(text, images, decoding.get("images_first", False))
        body = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        body.update({k: v for k, v in decoding.items() if v is not None and k in SENT_DECODING})
        return body

    def complete(self, text: str, images: list[np.ndarray], decoding: dict) -> Answer:
        data = json.dumps(self.payload(text, images, decoding)).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.url}/chat/completions", data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            transient = exc.code in (408, 429) or exc.code >= 500
            raise JudgeError(f"HTTP {exc.code} from {self.url}: {detail}", transient, retry_after) from None
        except (socket.timeout, TimeoutError):
            raise JudgeError(f"timeout after {self.timeout:g} s ({self.url})", transient=True) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise JudgeError(f"timeout after {self.timeout:g} s ({self.url})", transient=True) from None
            raise JudgeError(f"cannot reach {self.url}: {exc.reason}", transient=True) from None
        except (ConnectionError, OSError) as exc:
            raise JudgeError(f"connection to {self.url} failed: {exc}", transient=True) from None
        try:
            obj = json.loads(body)
            choice = obj["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"malformed response from {self.url}: {body[:200]!r}") from None
        refusal = message.get("refusal")
        content = message.get("content")
        if refusal and not content:
            content = None
        return Answer(text=content if content is None else str(content),
                      finish_reason=choice.get("finish_reason") or ("refusal" if refusal else None),
                      usage=obj.get("usage"))


def _retry_after(value) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _transformers(settings):
    from editmetrics.judges.local_backends import TransformersBackend

    return TransformersBackend(settings)


def _llama_cpp(settings):
    from editmetrics.judges.local_backends import LlamaCppBackend

    return LlamaCppBackend(settings)


# name -> factory(settings)
BACKENDS = {"openai": OpenAIBackend, "transformers": _transformers, "llama_cpp": _llama_cpp}


def make_backend(settings: dict):
    name = str(settings.get("judge_backend", "openai"))
    if name not in BACKENDS:
        raise ValueError(f"unknown judge_backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](settings)
