"""Score keys: ``name(params)@field.component``, parsed and printed in one place.

A score key names one column of a results file: a metric spec (``psnr``,
``ssim(convention=rgb)``, ``lpips@target``) optionally followed by
``.component`` for a component the metric reported (``bpm.region``). Metric
ids are ``[a-z0-9_]`` (no '.'), so the first '.' after the spec always starts
the component. Every module that reads score keys (stats, tables, BPM, SPPE)
uses ``ScoreKey.parse``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ID_PATTERN = r"[a-z][a-z0-9_]*"
_KEY = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)"
    r"(?:\((?P<params>[^()]*)\))?"
    r"(?:@(?P<field>[A-Za-z_][A-Za-z0-9_]*))?"
    r"(?:\.(?P<component>\S+))?$"
)


class ScoreKeyError(ValueError):
    """Text that is not a score key."""


@dataclass(frozen=True)
class ScoreKey:
    name: str
    params: tuple[tuple[str, str], ...] = ()
    field: str | None = None
    component: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ScoreKey":
        key = re.sub(r"\s+", "", text)
        match = _KEY.match(key)
        if not match:
            raise ScoreKeyError(f"bad score key {text!r}: expected NAME(k=v,...)@FIELD.COMPONENT")
        pairs = []
        if match.group("params"):
            for item in match.group("params").split(","):
                if "=" not in item:
                    raise ScoreKeyError(f"bad parameter {item!r} in {text!r}: expected k=v")
                k, v = item.split("=", 1)
                pairs.append((k, v))
        return cls(match.group("name").lower(), tuple(pairs), match.group("field"), match.group("component"))

    @property
    def spec(self) -> str:
        """The metric spec part (no component): ``name(params)@field``."""
        text = self.name
        if self.params:
            text += "(" + ",".join(f"{k}={v}" for k, v in self.params) + ")"
        if self.field:
            text += "@" + self.field
        return text

    def __str__(self) -> str:
        return self.spec + (f".{self.component}" if self.component else "")


def metric_name(key: str) -> str | None:
    """The metric id of a score key, or None when ``key`` is not one."""
    try:
        return ScoreKey.parse(key).name
    except ScoreKeyError:
        return None


def metric_class(key: str, registry):
    """The registered metric class a score key belongs to, or None."""
    name = metric_name(key)
    if name is None:
        return None
    return registry.items["metrics"].get(name)
