"""Click options shared by every command that takes settings (``--config``, ``--set``)."""

from __future__ import annotations

from typing import Any

import click


def settings_options(fn):
    """Add ``--config FILE`` and ``--set KEY=VALUE`` (repeatable) as ``config_path`` and ``assignments``."""
    fn = click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
                      help="Set any setting (repeatable; see `editmetrics settings`).")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help="TOML settings file (default ./editmetrics.toml).")(fn)
    return fn


def load_cli_settings(config_path: str | None, assignments: tuple[str, ...] | dict, **explicit: Any) -> dict:
    """Validated settings from the config file, the environment, ``--set`` and
    dedicated options such as ``--clip`` (``explicit``; ``None`` = not given)."""
    from editmetrics.engine.config import load_settings, parse_assignments

    pairs = assignments if isinstance(assignments, dict) else parse_assignments(assignments)
    # an option not given (None) leaves --set's value alone
    return load_settings(config_path, {**pairs, **{k: v for k, v in explicit.items() if v is not None}})
