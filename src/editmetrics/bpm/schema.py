"""The structured edit description every BPM parser returns, and its validation.

One shape for all parsers (rules, LLM, anything registered through
``register_parsers``) so the judges never depend on who parsed:

    {source_object, target_object, edit_type, size_change, position_change,
     reference_object}

Objects are short noun phrases or ``None``. ``reference_object`` is the anchor
of a spatial relation ("next to the sofa"); ``None`` means the edited object is
its own reference (paper, Sec. 3.3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EDIT_TYPES = ("add", "remove", "replace", "attribute", "size", "position", "global")
SIZE_CHANGES = ("larger", "smaller", "unchanged")
POSITION_CHANGES = ("left", "right", "up", "down", "inside", "near", "unchanged")
KEYS = ("source_object", "target_object", "edit_type", "size_change", "position_change", "reference_object")

# JSON schema handed to the LLM's grammar; kept in code (not in the prompt file)
# because it must match ``validate_parse`` exactly.
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source_object": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "target_object": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "edit_type": {"enum": list(EDIT_TYPES)},
        "size_change": {"enum": list(SIZE_CHANGES)},
        "position_change": {"enum": list(POSITION_CHANGES)},
        "reference_object": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": list(KEYS),
    "additionalProperties": False,
}


class ParseFailure(ValueError):
    """An answer that is not a valid edit description (recorded, never guessed)."""


def _object(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseFailure(f"{name} must be a string or null, got {type(value).__name__}")
    text = " ".join(value.strip().lower().split())
    # "none"/"" mean no object, as in the paper's prompt ("output None").
    return None if text in ("", "none", "null", "nothing") else text


def validate_parse(data: Any) -> dict[str, Any]:
    """Check a parser's answer against the schema; return it normalised
    (objects lower case, single spaces). Raises ``ParseFailure``."""
    if not isinstance(data, dict):
        raise ParseFailure(f"expected a JSON object, got {type(data).__name__}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ParseFailure(f"missing keys: {', '.join(missing)}")
    extra = sorted(set(data) - set(KEYS))
    if extra:
        raise ParseFailure(f"unexpected keys: {', '.join(extra)}")
    out = {k: _object(k, data[k]) for k in ("source_object", "target_object", "reference_object")}
    for key, allowed in (("edit_type", EDIT_TYPES), ("size_change", SIZE_CHANGES),
                         ("position_change", POSITION_CHANGES)):
        if data[key] not in allowed:
            raise ParseFailure(f"{key} {data[key]!r} is not one of {list(allowed)}")
        out[key] = data[key]
    if out["edit_type"] == "add" and out["target_object"] is None:
        raise ParseFailure("an 'add' edit needs a target_object")
    if out["edit_type"] == "remove" and out["source_object"] is None:
        raise ParseFailure("a 'remove' edit needs a source_object")
    if out["edit_type"] not in ("add", "remove", "global") and (
        out["source_object"] is None or out["target_object"] is None
    ):
        raise ParseFailure(f"a {out['edit_type']!r} edit needs both source_object and target_object")
    return {k: out[k] for k in KEYS}


@dataclass
class ParseResult:
    """What a parser returns for one instruction; kept in every record's output.

    ``status`` is ``ok`` or ``failed``; on failure ``parse`` is ``None`` and
    ``error`` says why. ``raw`` is the LLM's text (``None`` for rule parsers).
    """

    parser: str
    status: str
    parse: dict[str, Any] | None = None
    raw: str | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not out["meta"]:
            out.pop("meta")
        return out
