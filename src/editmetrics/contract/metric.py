"""The metric contract: metadata declared on the class, computation per record.

A metric never decodes images or loads a model itself: it receives a
``RecordView`` whose images were decoded by ``editmetrics.data.images`` and reaches
embeddings through the shared feature store in the run context.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar


class MetricError(Exception):
    """A metric cannot score this record; the message is recorded as the reason."""


class SpecError(ValueError):
    """A metric spec string or parameter value is invalid (a usage error)."""


@dataclass(frozen=True)
class Param:
    """A metric or model parameter: its default decides the type of values."""

    default: Any
    help: str = ""
    choices: tuple | None = None

    def parse(self, name: str, text: str) -> Any:
        kind = type(self.default)
        try:
            if kind is bool:
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value = low in ("true", "1", "yes")
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise SpecError(f"parameter {name!r}: {text!r} is not a valid {kind.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise SpecError(f"parameter {name!r}: {value!r} is not one of {list(self.choices)}")
        return value

    def describe(self) -> dict:
        out = {"default": self.default, "type": type(self.default).__name__, "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


@dataclass
class Score:
    """A metric result richer than one number.

    ``components`` become extra output keys ``SPEC.NAME``; ``details`` (JSON
    values) are kept under the record's ``details[SPEC]``. With ``value``
    ``None``, ``reason`` is recorded as the error (the components computed so
    far are still kept).
    """

    value: float | None
    components: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


class Metric:
    """Base class of every metric. Subclasses set the class attributes below.

    - ``id``: registry name, lower case (``psnr``, ``clip_i``).
    - ``description``: one line.
    - ``higher_is_better``: direction, used by summaries and correlations.
    - ``range``: (low, high) of the value; ``None`` for an open end.
    - ``fields``: record fields the metric needs besides its reference image.
    - ``optional_fields``: fields used when present.
    - ``reference``: the default reference field (``@FIELD`` overrides it), or
      ``None`` for metrics that compare nothing.
    - ``params``: name -> ``Param``.
    - ``thread_safe``: compute() is pure (no state, no shared service).
    - ``citation``: optional; the paper (and reference script) the metric follows.
    - ``backbones``: settings naming the feature backbones it uses (``clip``,
      ``dino``): `editmetrics weights` lists and verifies them.
    - ``weights``: ``editmetrics.Weight`` files it needs (like a model's).
    - ``field_kinds``: field -> ``image``, ``mask`` or ``text`` for fields
      not in the core record schema (``records.FIELD_KINDS``): a plugin can
      read new image fields this way. A metric keeps per-record state keyed
      by ``rec.uid`` (unique in a run), never by ``rec.id`` (ids may repeat).
    """

    id: ClassVar[str]
    description: ClassVar[str]
    higher_is_better: ClassVar[bool]
    range: ClassVar[tuple[float | None, float | None]]
    fields: ClassVar[tuple[str, ...]] = ("edited",)
    optional_fields: ClassVar[tuple[str, ...]] = ()
    reference: ClassVar[str | None] = "source"
    params: ClassVar[dict[str, Param]] = {}
    # True when compute() keeps no state and calls no shared service, so the
    # runner may score several batches at once in threads (pure numpy/OpenCV).
    thread_safe: ClassVar[bool] = False
    citation: ClassVar[str] = ""
    backbones: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[tuple] = ()
    field_kinds: ClassVar[dict[str, str]] = {}

    def __init__(self, reference: str | None = None, **params: Any):
        self.ref = reference if reference is not None else type(self).reference
        values = {name: p.default for name, p in type(self).params.items()}
        for name, value in params.items():
            if name not in values:
                raise SpecError(f"metric {self.id!r} has no parameter {name!r}; it has {sorted(values) or 'none'}")
            values[name] = value
        self.options = values

    def required_fields(self) -> tuple[str, ...]:
        extra = (self.ref,) if self.ref else ()
        return tuple(dict.fromkeys(self.fields + extra))

    def kind_of(self, name: str) -> str:
        """``image``, ``mask`` or ``text``: what the runner decodes for field ``name``."""
        from editmetrics.data.records import field_kind

        return type(self).field_kinds.get(name) or field_kind(name)

    def setup(self, ctx) -> None:
        """Called once per run before any record: take services from ``ctx``."""

    def prepare(self, rec) -> None:
        """Called for every record of a batch before any ``compute`` of that
        batch: queue feature requests here so they are computed in batches."""

    def compute(self, rec) -> float | Score:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict:
        low, high = cls.range
        return {
            "id": cls.id,
            "description": cls.description,
            "higher_is_better": cls.higher_is_better,
            "range": [_json_bound(low), _json_bound(high)],
            "fields": list(cls.fields),
            "optional_fields": list(cls.optional_fields),
            "reference": cls.reference,
            "params": {name: p.describe() for name, p in cls.params.items()},
            "backbones": list(cls.backbones),
        } | ({"citation": cls.citation} if cls.citation else {})


def _json_bound(value):
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return None
    return value


REQUIRED_ATTRS = ("id", "description", "higher_is_better", "range")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")  # no '.': it separates a score key's component


def validate_metric_class(cls) -> None:
    """Raise ``TypeError`` when a class does not declare the metadata a metric needs."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise TypeError(f"{cls!r} is not a subclass of editmetrics.Metric")
    missing = [a for a in REQUIRED_ATTRS if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"metric class {cls.__name__} does not declare {', '.join(missing)}")
    if not _ID.match(cls.id):
        raise TypeError(f"metric id {cls.id!r} must be lower case letters, digits and '_' ([a-z][a-z0-9_]*)")
    bad = {f: k for f, k in cls.field_kinds.items() if k not in ("image", "mask", "text")}
    if bad:
        raise TypeError(f"metric {cls.id!r}: field_kinds must be image, mask or text, got {bad}")
    if not isinstance(cls.higher_is_better, bool):
        raise TypeError(f"metric {cls.id!r}: higher_is_better must be True or False")
    if len(cls.range) != 2:
        raise TypeError(f"metric {cls.id!r}: range must be (low, high)")
    if "compute" not in _defined_names(cls):
        raise TypeError(f"metric {cls.id!r} does not implement compute()")


def _defined_names(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Metric:
            break
        names.update(vars(klass))
    return names


# ---------------------------------------------------------------------------
# Spec strings: NAME[(k=v,...)][@FIELD]
# ---------------------------------------------------------------------------

_SPEC = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)"
    r"(?:\((?P<params>[^()]*)\))?"
    r"(?:@(?P<ref>[A-Za-z_][A-Za-z0-9_]*))?$"
)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric spec such as ``psnr@target`` or ``ssim(convention=skimage)``."""

    key: str
    name: str
    params: tuple[tuple[str, str], ...]
    reference: str | None

    @classmethod
    def parse(cls, text: str) -> "MetricSpec":
        key = re.sub(r"\s+", "", text)
        match = _SPEC.match(key)
        if not match:
            raise SpecError(
                f"bad metric spec {text!r}: expected NAME, NAME@FIELD or NAME(k=v,...)@FIELD"
            )
        pairs = []
        if match.group("params"):
            for item in match.group("params").split(","):
                if "=" not in item:
                    raise SpecError(f"bad parameter {item!r} in {text!r}: expected k=v")
                k, v = item.split("=", 1)
                pairs.append((k, v))
        return cls(key=key, name=match.group("name").lower(), params=tuple(pairs), reference=match.group("ref"))


def split_specs(text: str) -> list[str]:
    """Split a comma-separated metric list, keeping commas inside parentheses."""
    out, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            if current.strip():
                out.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current.strip())
    return out
