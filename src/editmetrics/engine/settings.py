"""Declared settings: every key a run reads is declared once, here or by a plugin.

A setting has a name, a type, a default, one line of help and whether it
changes scores (``affects_scores``: recorded in a run's provenance). Built-in
settings are the ``BUILTIN_SETTINGS`` table below (this module is the built-in
plugin ``settings``); a plugin declares its own through the hook
``register_settings(register)`` with ``register(Setting(...))``. A model's
``Weight(setting=...)`` declares a path setting by itself.

``config.load_settings`` validates every value from ``--set``, the
environment and the config file against these declarations: an unknown key or
a value of the wrong type is a usage error (exit status 2) with a
"did you mean" hint. ``editmetrics settings`` lists them.

Adding a setting is one line in ``BUILTIN_SETTINGS``::

    Setting("my_key", "int", 8, "what it does", affects_scores=False),
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from editmetrics.engine.config import ENV_PREFIX, NOT_SETTINGS, ConfigError
from editmetrics.plugins.hookspecs import hookimpl

TYPES = ("str", "int", "float", "bool", "path")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SettingError(ConfigError):
    """An unknown setting or a value of the wrong type (exit status 2)."""


@dataclass(frozen=True)
class Setting:
    """One declared setting. ``default`` ``None`` means "not set" (the code
    decides, e.g. a weights path that must be given)."""

    name: str
    type: str
    default: Any
    help: str
    affects_scores: bool
    choices: tuple | None = None

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"setting {self.name!r}: type {self.type!r} is not one of {TYPES}")
        if not self.name or not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"setting name {self.name!r}: use lower case letters, digits and '_'")

    def parse(self, value: Any, source: str = "") -> Any:
        """The typed value of ``value`` (text from --set/env, or a TOML value)."""
        where = f" (from {source})" if source else ""
        kind = self.type
        try:
            if kind == "bool":
                if isinstance(value, bool):
                    out = value
                else:
                    low = str(value).strip().lower()
                    if low not in _TRUE + _FALSE:
                        raise ValueError(value)
                    out = low in _TRUE
            elif kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                out = int(str(value).strip()) if isinstance(value, str) else int(value)
            elif kind == "float":
                if isinstance(value, bool):
                    raise ValueError(value)
                out = float(str(value).strip()) if isinstance(value, str) else float(value)
            else:
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise ValueError(value)
                out = str(value)
        except (TypeError, ValueError):
            raise SettingError(f"setting {self.name!r}: {value!r} is not a valid {kind}{where}") from None
        if self.choices is not None and out not in self.choices:
            raise SettingError(f"setting {self.name!r}: {out!r} is not one of {list(self.choices)}{where}")
        return out

    def describe(self) -> dict:
        out = {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
               "affects_scores": self.affects_scores}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


S = Setting
# One line per setting read anywhere in editmetrics (name, type, default, help, affects_scores).
BUILTIN_SETTINGS = [
    # backbones and weights (editmetrics.weights.backbones, editmetrics.weights.resolver)
    S("clip", "str", "ViT-L-14:openai", "CLIP backbone spec ARCH:WEIGHTS or hf:MODEL (docs/semantic.md)", True),
    S("dino", "str", "hf:facebook/dinov2-base", "DINO backbone spec (docs/semantic.md)", True),
    S("weights_dir", "path", "~/.cache/editmetrics/weights", "Folder searched for backbone weights", True),
    S("allow_download", "bool", False, "Allow downloading missing backbone weights (HF_HUB_OFFLINE wins)", False),
    # decoding (editmetrics.data.images; docs/reliability.md)
    S("max_pixels", "int", 100_000_000, "Images above this many pixels are refused per record before decoding", True),
    # feature store (editmetrics.engine.features)
    S("feature_cache", "path", None, "Folder of the on-disk embedding cache (off when unset)", False),
    S("feature_batch_size", "int", 32, "Images per backbone forward pass", False),
    S("feature_memory", "int", 200_000, "Embeddings kept in memory (least recently used dropped)", False),
    # IQA (editmetrics.metrics.iqa)
    S("iqa_weights", "path", None, "Folder of LPIPS/DISTS weight files (default: torch hub checkpoints)", True),
    # SPPE (editmetrics.sppe)
    S("erma", "path", None, "ERMA checkpoint folder (docs/sppe.md)", True),
    # BPM (editmetrics.bpm)
    S("bpm_parser", "str", "rules", "Instruction parser id (`rules` or `llm`)", True),
    S("bpm_grounder", "str", "gdino-sam", "Grounder id (phrase -> boxes and masks)", True),
    S("bpm_mask_dir", "path", None, "Folder where BPM writes its grounded masks (off when unset)", False),
    S("bpm_parse_cache", "path", None, "JSON Lines cache of instruction parses (off when unset)", False),
    S("bpm_llm", "path", None, "GGUF model file of the `llm` parser", True),
    S("bpm_llm_prompt", "str", "parse_v1", "Prompt version of the `llm` parser", True),
    S("bpm_llm_n_batch", "int", 1, "llama.cpp batch size of the `llm` parser", True),
    S("bpm_llm_threads", "int", None, "llama.cpp threads of the `llm` parser (default: llama.cpp's)", False),
    S("bpm_llm_max_tokens", "int", 160, "Most tokens the `llm` parser generates", True),
    S("bpm_llm_n_ctx", "int", 2048, "llama.cpp context length of the `llm` parser", True),
    S("bpm_groundingdino", "path", None, "GroundingDINO folder saved with save_pretrained (grounder gdino-sam)", True),
    S("bpm_sam", "path", None, "SAM folder saved with save_pretrained (grounder gdino-sam)", True),
    S("bpm_grounding_batch_size", "int", 8, "Images per grounding forward pass", False),
    S("bpm_max_detections", "int", 0, "Most detections kept per phrase (0: all)", True),
    # Ray executor (editmetrics.engine.ray_executor; docs/scale.md): where work runs, never what it computes
    S("ray_actors", "int", 0, "Ray actors (workers) to start; 0 = as many as the cluster's CPUs/GPUs allow", False),
    S("ray_num_cpus", "float", 1.0, "CPUs reserved per Ray actor (also its decode threads)", False),
    S("ray_num_gpus", "float", None, "GPUs per Ray actor (fractions share a GPU); default 1 with --device cuda, else 0", False),
    S("ray_max_retries", "int", 2, "Times a batch is retried after its actor died; then its records get errors", False),
    S("ray_batches_in_flight", "int", 2, "Batches queued per Ray actor (bounds driver and object-store memory)", False),
    S("ray_local_cpus", "int", None, "CPUs of a Ray started locally by the run (default: all of this machine's)", False),
    S("ray_object_store_mb", "int", 200, "Object store size (MiB) of a Ray started locally by the run", False),
]
del S


@hookimpl
def register_settings(register):
    for setting in BUILTIN_SETTINGS:
        register(setting)


# ---------------------------------------------------------------------------
# Lookup and validation
# ---------------------------------------------------------------------------


def declared(registry=None) -> dict[str, Setting]:
    """name -> Setting: every plugin's declarations plus each model weight's
    path setting (``Weight(setting=...)``) not declared otherwise."""
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    out: dict[str, Setting] = dict(registry.items.get("settings", {}))
    for kind in ("models", "metrics"):
        for item_id, cls in sorted(registry.items[kind].items()):
            for weight in getattr(cls, "weights", ()) or ():
                name = getattr(weight, "setting", None)
                if name and name not in out:
                    out[name] = Setting(name, "path", weight.path,
                                        f"weights {weight.name!r} of {kind[:-1]} {item_id}: {weight.hint}", True)
    return out


def unknown_message(name: str, known, source: str = "") -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    where = f" (from {source})" if source else ""
    return f"unknown setting {name!r}{where}{hint} (see `editmetrics settings`)"


def validate(values: dict[str, Any], sources: dict[str, str] | None = None, registry=None) -> dict[str, Any]:
    """Typed copies of ``values``; ``SettingError`` on an unknown key or a bad value."""
    table = declared(registry)
    sources = sources or {}
    out: dict[str, Any] = {}
    for name, value in values.items():
        setting = table.get(name)
        if setting is None:
            raise SettingError(unknown_message(name, table, sources.get(name, "")))
        out[name] = None if value is None else setting.parse(value, sources.get(name, ""))
    return out


def score_affecting(settings: dict[str, Any], registry=None) -> dict[str, Any]:
    """The effective value (given or default) of every setting that changes
    scores, by name: what a run's provenance records."""
    table = declared(registry)
    return {name: settings.get(name, s.default) for name, s in sorted(table.items()) if s.affects_scores}


def rows(registry=None) -> list[dict]:
    """Every declared setting with the plugin that declared it (``editmetrics settings``)."""
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    out = []
    for name, setting in sorted(declared(registry).items()):
        row = setting.describe()
        owner = registry.owner.get(("settings", name))
        row["plugin"] = owner or _weight_owner(registry, name)
        rows_env = "EDITMETRICS_" + name.upper()
        row["env"] = rows_env
        out.append(row)
    return out


def _weight_owner(registry, name: str) -> str | None:
    for kind in ("models", "metrics"):
        for item_id, cls in registry.items[kind].items():
            if any(getattr(w, "setting", None) == name for w in getattr(cls, "weights", ()) or ()):
                return registry.owner.get((kind, item_id))
    return None


def markdown(registry=None) -> str:
    """docs/settings.md: the built-in plugins' settings (`editmetrics settings --markdown`)."""
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    builtin = {n for n, p in registry.plugins.items() if p.module.startswith("editmetrics.")}
    lines = [
        "# Settings",
        "",
        "Generated by `editmetrics settings --markdown > docs/settings.md`; a test fails when this file is stale.",
        "",
        "Set a value with `--set NAME=VALUE`, the environment variable `EDITMETRICS_<NAME>` or a key of the",
        "config file (`--config FILE`, default `./editmetrics.toml`; top level or under `[settings]`).",
        "Precedence: options > environment > config file > default. An unknown name or a value of the",
        "wrong type is a usage error (exit status 2). `editmetrics settings --json` lists the settings of",
        "every loaded plugin; the settings marked *scores* change scores and are recorded with a run.",
        "Plugins declare theirs with the hook `register_settings(register)` (docs/plugins.md).",
        "These `EDITMETRICS_*` variables are not settings: "
        + ", ".join(f"`{ENV_PREFIX}{name}`" for name in sorted(NOT_SETTINGS))
        + " (plugin loading: docs/plugins.md; test and benchmark switches).",
        "",
        "| name | type | default | scores | plugin | help |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(registry):
        if row["plugin"] not in builtin:
            continue
        default = "-" if row["default"] is None else f"`{row['default']}`"
        lines.append(f"| `{row['name']}` | {row['type']} | {default} | {'yes' if row['affects_scores'] else 'no'} "
                     f"| {row['plugin']} | {row['help']} |")
    return "\n".join(lines) + "\n"
