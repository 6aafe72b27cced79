"""Pairs files (JSON Lines or CSV) -> validated edit records.

One record per line (JSONL) or row (CSV). Known fields are listed in
``FIELDS``; any other field is carried through to the output unchanged. Image
paths are relative to the pairs file's folder. A line that cannot be read
becomes a record with a load error, so it still appears in the output once.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator

# Fields holding image paths, decoded by editmetrics.data.images.
IMAGE_FIELDS = ("source", "edited", "target", "surrogate", "edited_surrogate")
MASK_FIELDS = ("mask", "source_mask", "target_mask")
TEXT_FIELDS = ("instruction", "category", "source_caption", "target_caption")
FIELDS = ("id",) + IMAGE_FIELDS + MASK_FIELDS + TEXT_FIELDS
# The core schema's field kinds; a metric declares others (``Metric.field_kinds``).
FIELD_KINDS = {**{f: "image" for f in IMAGE_FIELDS}, **{f: "mask" for f in MASK_FIELDS},
               **{f: "text" for f in TEXT_FIELDS}}


def field_kind(name: str) -> str:
    """``image``, ``mask`` or ``text`` (any field outside the core schema is text
    unless a metric declares it)."""
    return FIELD_KINDS.get(name, "text")
RESERVED = ("scores", "errors", "warnings", "details")


class PairsFileError(Exception):
    """The pairs file as a whole cannot be used (exit status 2)."""


@dataclass
class EditRecord:
    id: Any
    fields: dict[str, Any]
    base_dir: str
    line: int
    error: str | None = None  # the line itself could not be read

    @property
    def key(self) -> str:
        """The id as a string: what --resume matches on."""
        return str(self.id)

    def path(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None or not isinstance(value, (str, os.PathLike)) or value == "":
            return None  # nothing, or an in-memory image (Python API) that has no path
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(str(value))))

    def output_fields(self) -> dict[str, Any]:
        """Input fields for the output line, image paths made absolute."""
        out = {}
        for name, value in self.fields.items():
            if name == "id":
                continue
            if name in IMAGE_FIELDS + MASK_FIELDS and isinstance(value, str) and value:
                out[name] = self.path(name)
            elif name in IMAGE_FIELDS + MASK_FIELDS and value is not None and not isinstance(value, (str, list)):
                from editmetrics.data.arrays import describe  # an in-memory image (Python API): not copied into the row

                out[name] = describe(value)
            else:
                out[name] = value
        return out


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings: an empty cell is an absent field; JSON-looking
    cells (boxes such as "[1, 2, 3, 4]") are decoded."""
    out = {}
    for k, v in row.items():
        if k is None:
            continue
        k = k.strip()
        if isinstance(v, str):
            v = v.strip()
            if v == "":
                continue
            if v[:1] in "[{":
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    pass
        out[k] = v
    return out


def read_pairs(path: str) -> Iterator[EditRecord]:
    """Stream the records of a pairs file. Raises ``PairsFileError`` when the
    file is unreadable, of an unknown format, or has duplicate ids."""
    if not os.path.isfile(path):
        raise PairsFileError(f"pairs file not found: {path}")
    base = os.path.dirname(os.path.abspath(path))
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(path)
    elif ext in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if ext == ".tsv" else ",")
    else:
        raise PairsFileError(f"{path}: unknown pairs file type {ext!r} (use .jsonl or .csv)")
    seen: set[str] = set()
    for number, row, error in rows:
        if error is None:
            bad = [k for k in RESERVED if k in row]
            if bad:
                error = f"line {number}: field name {bad[0]!r} is reserved for the output"
        rid = row.get("id", number) if error is None else number
        if isinstance(rid, float) and rid.is_integer():
            rid = int(rid)
        record = EditRecord(id=rid, fields=row if error is None else {}, base_dir=base, line=number, error=error)
        if record.key in seen:
            raise PairsFileError(f"{path}: line {number}: duplicate id {record.key!r}")
        seen.add(record.key)
        yield record


def _jsonl_rows(path: str):
    with open(path, encoding="utf-8") as fh:
        number = 0
        for text in fh:
            if not text.strip():
                continue
            number += 1
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, {}, f"line {number}: invalid JSON: {exc}"
                continue
            if not isinstance(row, dict):
                yield number, {}, f"line {number}: expected a JSON object, got {type(row).__name__}"
                continue
            yield number, row, None


def _csv_rows(path: str, delimiter: str):
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise PairsFileError(f"{path}: empty CSV file (no header)")
        for number, row in enumerate(reader, start=1):
            yield number, _clean(row), None


def count_records(path: str) -> int | None:
    """Cheap record count for the progress bar (None when unknown)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = sum(1 for line in fh if line.strip())
    except OSError:
        return None
    return lines - 1 if path.lower().endswith((".csv", ".tsv")) else lines
