"""Built-in plugin: ``editmetrics pairs from-folders``: a pairs file from image folders.

Files are matched by name stem (``cat.png`` in ``--source`` and ``cat.jpg``
in ``--edited`` make record ``cat``), whatever the image extension. An
instructions file (CSV or JSONL) keyed by ``id`` = stem adds its other columns
(instruction, category, ...) to the records. Paths are written relative to the
output file, so the pairs file and the folders can move together.

Everything that does not match (a source without an edit, an edit without a
source, a mask or target for no record, a record without its mask or target
when those folders are given, an instruction for no record, a record without
an instruction) is listed in one message. By default that message is an error
and nothing is written; ``--allow-unmatched`` makes it a warning and writes the
records that have both a source and an edit.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

from editmetrics.data.records import RESERVED, _clean

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
FOLDER_FIELDS = ("source", "edited", "target", "mask")  # output order of the image fields


class FolderPairsError(ValueError):
    """The folders or the instructions file cannot make a pairs file."""


def scan_folder(folder: str, what: str) -> tuple[dict[str, str], list[str]]:
    """stem -> path of the images directly in ``folder``, and the names of the
    other (non-image) files. Two images with one stem (``a.png``, ``a.jpg``)
    are an error: which one is meant cannot be known."""
    if not os.path.isdir(folder):
        raise FolderPairsError(f"--{what} {folder!r} is not a folder")
    images: dict[str, str] = {}
    others: list[str] = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            others.append(name)
            continue
        if stem in images:
            raise FolderPairsError(f"--{what} {folder!r}: two images named {stem!r} "
                                   f"({os.path.basename(images[stem])}, {name}); keep one")
        images[stem] = path
    return images, others


def read_instructions(path: str) -> dict[str, dict]:
    """id -> the other columns of a CSV/TSV or JSONL instructions file."""
    ext = os.path.splitext(path)[1].lower()
    rows: list[dict] = []
    if ext in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if ext == ".tsv" else ",")
            rows = [_clean(r) for r in reader]
    elif ext in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise FolderPairsError(f"{path}: line {number}: invalid JSON: {exc}") from None
                if not isinstance(row, dict):
                    raise FolderPairsError(f"{path}: line {number}: expected a JSON object")
                rows.append(row)
    else:
        raise FolderPairsError(f"{path}: unknown instructions file type {ext!r} (use .csv or .jsonl)")
    out: dict[str, dict] = {}
    for number, row in enumerate(rows, start=1):
        if row.get("id") in (None, ""):
            raise FolderPairsError(f"{path}: row {number} has no 'id' (the image name stem)")
        rid = str(row["id"])
        clash = [k for k in row if k in FOLDER_FIELDS or k in RESERVED]
        if clash:
            raise FolderPairsError(f"{path}: column {clash[0]!r} would overwrite a field this command "
                                   "writes; rename or drop it")
        if rid in out:
            raise FolderPairsError(f"{path}: id {rid!r} appears twice")
        out[rid] = {k: v for k, v in row.items() if k != "id"}
    return out


@dataclass
class FolderPairs:
    records: list[dict]
    unmatched: list[tuple[str, list[str]]] = field(default_factory=list)  # (what, names)
    ignored: list[tuple[str, list[str]]] = field(default_factory=list)  # (folder, non-image files)

    def message(self) -> str:
        lines = ["unmatched files (matched by name stem):"]
        for what, names in self.unmatched:
            shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
            lines.append(f"  {what} ({len(names)}): {shown}")
        return "\n".join(lines)


def build_pairs(source: str, edited: str, out: str, mask: str | None = None, target: str | None = None,
                instructions: str | None = None) -> FolderPairs:
    """Match the folders' images by stem; paths relative to ``out``'s folder."""
    folders = {"source": source, "edited": edited, "target": target, "mask": mask}
    scanned = {k: scan_folder(v, k) for k, v in folders.items() if v}
    images = {k: v[0] for k, v in scanned.items()}
    extra = read_instructions(instructions) if instructions else None
    src, edt = images["source"], images["edited"]
    result = FolderPairs(records=[])
    result.ignored = [(folders[k], v[1]) for k, v in scanned.items() if v[1]]

    def note(what: str, names) -> None:
        names = sorted(names)
        if names:
            result.unmatched.append((what, names))

    note(f"source images without an edited image in {edited}", (os.path.basename(src[s]) for s in src if s not in edt))
    note(f"edited images without a source image in {source}", (os.path.basename(edt[s]) for s in edt if s not in src))
    stems = sorted(s for s in src if s in edt)
    for kind in ("target", "mask"):
        if kind in images:
            found = images[kind]
            note(f"{kind} images for no record", (os.path.basename(found[s]) for s in found if s not in stems))
            note(f"records without a {kind} image in {folders[kind]}", (s for s in stems if s not in found))
    if extra is not None:
        note(f"ids in {instructions} for no record", (i for i in extra if i not in stems))
        note(f"records without a row in {instructions}", (s for s in stems if s not in extra))
    base = os.path.dirname(os.path.abspath(out))
    for stem in stems:
        record: dict = {"id": stem}
        for kind in FOLDER_FIELDS:
            path = images.get(kind, {}).get(stem)
            if path is not None:
                record[kind] = os.path.relpath(os.path.abspath(path), base).replace(os.sep, "/")
        if extra is not None and stem in extra:
            record.update(extra[stem])
        result.records.append(record)
    return result


def write_pairs(records: list[dict], out: str) -> None:
    """JSONL, or CSV when ``out`` ends in .csv (lists and objects as JSON cells)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.lower().endswith(".csv"):
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(out, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for r in records:
                writer.writerow([_csv_cell(r.get(c)) for c in columns])
        return
    with open(out, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n")


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
