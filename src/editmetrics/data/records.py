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
                except (ValueError, RecursionError):
                    pass  # not JSON after all (or too deep): kept as text
        out[k] = v
    return out


def read_pairs(path: str) -> Iterator[EditRecord]:
    """Stream the records of a pairs file. Raises ``PairsFileError`` when the
    file as a whole is unusable (missing, not a regular file, unknown format,
    no CSV header, duplicate ids); any problem of one line becomes that
    record's ``error`` instead (bad encoding, invalid or too deeply nested
    JSON, numbers too long to convert, a CSV cell over the field limit, an id
    that is not a string or number)."""
    if not os.path.isfile(path):
        raise PairsFileError(f"pairs file not found (or not a regular file): {path}")
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
        if error is None:
            rid = row.get("id", number)
            if isinstance(rid, float) and rid.is_integer():
                rid = int(rid)
            if rid is None or isinstance(rid, (bool, list, dict)):
                error = f"line {number}: id must be a string or a number, not {json.dumps(rid)[:40]}"
        if error is not None:
            rid = f"line {number}"
        record = EditRecord(id=rid, fields=row if error is None else {}, base_dir=base, line=number, error=error)
        if record.key in seen:
            raise PairsFileError(f"{path}: line {number}: duplicate id {record.key!r}")
        seen.add(record.key)
        yield record


_BOM = b"\xef\xbb\xbf"


def _jsonl_rows(path: str):
    """(line number, row, error) per non-blank line. Lines are read as bytes
    and decoded one by one, so one bad byte spoils one record only."""
    from editmetrics.engine.results import is_header

    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, {}, f"line {number}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, {}, f"line {number}: invalid JSON: {exc}"
                continue
            except (ValueError, RecursionError) as exc:  # 5,000-digit integers, deep nesting
                yield number, {}, f"line {number}: unreadable JSON: {_short(exc)}"
                continue
            if number == 1 and is_header(row):
                continue  # the run header of a results file used as a pairs file
            if not isinstance(row, dict):
                yield number, {}, f"line {number}: expected a JSON object, got {type(row).__name__}"
                continue
            yield number, row, None


def _csv_rows(path: str, delimiter: str):
    """(row number, row, error) per CSV row. ``utf-8-sig`` drops a BOM;
    undecodable bytes become surrogate escapes, found per row."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            fieldnames = reader.fieldnames
        except csv.Error as exc:
            raise PairsFileError(f"{path}: unreadable CSV header: {exc}") from None
        if not fieldnames:
            raise PairsFileError(f"{path}: empty CSV file (no header)")
        if any(_undecodable(name) for name in fieldnames):
            raise PairsFileError(f"{path}: the CSV header is not valid UTF-8")
        number = 0
        rows = iter(reader)
        while True:
            number += 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                yield number, {}, f"row {number} (line {reader.line_num}): unreadable CSV: {exc}"
                continue
            bad = next((k for k, v in row.items() if isinstance(v, str) and _undecodable(v)), None)
            if bad is not None:
                yield number, {}, f"row {number} (line {reader.line_num}): field {bad!r} is not valid UTF-8"
                continue
            try:
                yield number, _clean(row), None
            except (ValueError, RecursionError) as exc:
                yield number, {}, f"row {number}: unreadable cell: {_short(exc)}"


def _undecodable(text: str) -> bool:
    """Bytes that were not UTF-8, as ``surrogateescape`` maps them."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 120 else text[:117] + "..."


def count_records(path: str) -> int | None:
    """Cheap record count for the progress bar (None when unknown)."""
    try:
        with open(path, "rb") as fh:
            lines = sum(1 for line in fh if line.strip())
    except OSError:
        return None
    return lines - 1 if path.lower().endswith((".csv", ".tsv")) else lines


@dataclass
class PairsScan:
    """One pass over a pairs file before any work: content hash, record count."""

    sha256: str
    records: int


def scan_pairs(path: str, check=None) -> PairsScan:
    """Hash the file and read every record once (ids checked for duplicates:
    ``PairsFileError`` before any work); ``check(record)`` sees each record.
    Nothing is kept but the ids, so memory does not grow with the records."""
    from editmetrics.weights.resolver import sha256_file as file_sha256

    if not os.path.isfile(path):
        raise PairsFileError(f"pairs file not found (or not a regular file): {path}")
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise PairsFileError(f"cannot read pairs file {path}: {exc.strerror or exc}") from None
    count = 0
    for record in read_pairs(path):
        count += 1
        if check is not None:
            check(record)
    return PairsScan(sha256=sha, records=count)
