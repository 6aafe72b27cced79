"""Run settings: command-line options > environment > config file > defaults.

Settings are plain key/value pairs that metrics and services read from
``RunContext.settings`` (e.g. ``clip`` = a backbone spec). Sources:

- ``--config FILE`` (TOML; default ``./editmetrics.toml`` when present), keys at
  top level or under ``[settings]``;
- environment variables ``EDITMETRICS_<KEY>`` (upper case), e.g. ``EDITMETRICS_CLIP``;
- explicit options (``--clip``, ``--set key=value``).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

DEFAULT_CONFIG = "editmetrics.toml"
# Keys read from the environment; plugins document their own keys.
ENV_PREFIX = "EDITMETRICS_"
# EDITMETRICS_* variables that are not settings: plugin loading, and switches
# of the test suite and the benchmarks (tests/test_architecture.py checks that
# every EDITMETRICS_* name the repository reads is a setting or listed here).
NOT_SETTINGS = {"LOAD_PLUGINS", "STRICT_PLUGINS", "BENCH_THREADS", "CHROMIUM", "SCREENSHOTS", "FAULT_TABLE"}


class ConfigError(ValueError):
    pass


def load_settings(config_path: str | None = None, overrides: dict[str, Any] | None = None,
                  registry=None, validate: bool = True) -> dict[str, Any]:
    """Merged settings, each value checked against its declaration
    (``editmetrics.engine.settings``): an unknown key or a bad value raises
    ``SettingError`` (a ``ConfigError``) naming where it came from."""
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_path or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        from_file = {k: v for k, v in data.items() if not isinstance(v, dict)}
        from_file.update(data.get("settings", {}))
        for key, value in from_file.items():
            settings[key] = value
            sources[key] = f"config file {path}"
    for name, value in os.environ.items():
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):] not in NOT_SETTINGS:
            settings[name[len(ENV_PREFIX):].lower()] = value
            sources[name[len(ENV_PREFIX):].lower()] = f"environment variable {name}"
    for key, value in (overrides or {}).items():
        if value is not None:
            settings[key] = value
            sources[key] = f"--set {key}=..."
    if validate:
        from editmetrics.engine.settings import validate as check

        settings = check(settings, sources, registry)
    return settings


def parse_assignments(items: tuple[str, ...]) -> dict[str, str]:
    """``--set key=value`` pairs."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().lower()] = value
    return out
