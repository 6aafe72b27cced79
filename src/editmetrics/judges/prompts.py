"""Versioned judge prompts: text files in ``prompts/``, identified by name and hash.

A prompt file is never edited once released: a changed prompt is a new file
(``..._v2.txt``), so a recorded version and hash always name one text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    name: str  # file stem, e.g. "viescore_tie_sc_v1"
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def fill(self, **values: str) -> str:
        """Replace ``<key>`` placeholders (VIEScore's convention)."""
        text = self.text
        for key, value in values.items():
            text = text.replace(f"<{key}>", value)
        return text


def load_prompt(name: str) -> Prompt:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad prompt name {name!r}")
    try:
        text = resources.files("editmetrics.judges").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"unknown judge prompt {name!r}: no prompts/{name}.txt") from None
    return Prompt(name, text)
