"""Built-in plugin: dataset loaders (local paths only) and ``editmetrics dataset``.

A loader is a class registered through the ``register_datasets`` hook with

- ``id``, ``description``: registry name and one line;
- ``layout``: text describing the files it expects under PATH (shown by
  ``editmetrics dataset list --layout`` and in ``docs/datasets.md``);
- ``records(self, path) -> Iterator[dict]``: pairs-file records (the fields of
  ``editmetrics.data.records``) with absolute image paths.

A loader that must write files (e.g. masks stored run-length encoded) writes
them under ``self.work_dir`` (``dataset export`` sets it next to ``--out``;
otherwise a per-dataset folder under ``$XDG_CACHE_HOME/editmetrics``).

``editmetrics dataset export NAME PATH --out pairs.jsonl`` writes the records
as a pairs file ready for ``editmetrics run`` / ``editmetrics score``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from typing import ClassVar, Iterator

import numpy as np
from PIL import Image

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.data.records import IMAGE_FIELDS, MASK_FIELDS, _clean


class DatasetError(Exception):
    """PATH does not have the layout the loader expects (a usage error)."""


class DatasetLoader:
    id: ClassVar[str]
    description: ClassVar[str]
    layout: ClassVar[str]
    work_dir: str | None = None

    def records(self, path: str) -> Iterator[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def work_path(self, path: str, *parts: str) -> str:
        """A file path for derived data (decoded masks) of the dataset at ``path``."""
        base = self.work_dir
        if base is None:
            cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
            base = os.path.join(cache, "editmetrics", "datasets", f"{self.id}-{digest}")
        full = os.path.join(base, *parts)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full


def _need(path: str, what: str, loader: str) -> str:
    if not os.path.exists(path):
        raise DatasetError(f"{loader}: expected {what} at {path} (see `editmetrics dataset list --layout`)")
    return path


def _load_json(path: str, loader: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{loader}: cannot read {path}: {exc}") from None


def _write_mask(mask: np.ndarray, path: str) -> str:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


# ---------------------------------------------------------------------------
# MagicBrush
# ---------------------------------------------------------------------------


class MagicBrush(DatasetLoader):
    id = "magicbrush"
    description = "MagicBrush (Zhang et al., NeurIPS 2023) release folders: edit sessions with masks"
    layout = """PATH is one split folder of the MagicBrush release (e.g. test/):
  PATH/edit_sessions.json   {"<img_id>": [{"input": "<img_id>-input.png", "mask": "<img_id>-mask1.png",
                                           "output": "<img_id>-output1.png", "instruction": "..."}, ...turns]}
  PATH/images/<img_id>/     the files named in edit_sessions.json
One record per turn: id "<img_id>-<turn>" (turn from 1), source = input, target = output
(the annotated ground truth), instruction, mask, session = img_id, turn, category
"single-turn" or "multi-turn". Turn t > 1 takes the ground-truth output of turn t-1 as
its input, as the release does. The released masks are RGBA "masked images" (transparent =
region to edit, DALL-E 2's convention; MagicBrush issue #10): they are converted to a binary
PNG (white = region) at the mask's own size under the work folder; masks without alpha are
used as they are (non-zero = region)."""

    def records(self, path):
        sessions = _load_json(_need(os.path.join(path, "edit_sessions.json"), "edit_sessions.json", self.id), self.id)
        if not isinstance(sessions, dict):
            raise DatasetError(f"{self.id}: edit_sessions.json must map image ids to lists of turns")
        images = _need(os.path.join(path, "images"), "an images/ folder", self.id)
        for img_id in sorted(sessions, key=str):
            turns = sessions[img_id]
            for turn, item in enumerate(turns, start=1):
                folder = os.path.join(images, str(img_id))
                rec = {
                    "id": f"{img_id}-{turn}",
                    "source": os.path.abspath(os.path.join(folder, item["input"])),
                    "target": os.path.abspath(os.path.join(folder, item["output"])),
                    "instruction": item.get("instruction", ""),
                    "category": "single-turn" if len(turns) == 1 else "multi-turn",
                    "session": str(img_id),
                    "turn": turn,
                }
                if item.get("mask"):
                    rec["mask"] = self._mask(path, os.path.join(folder, item["mask"]), f"{img_id}-{turn}")
                yield rec

    def _mask(self, path: str, mask_path: str, key: str) -> str:
        mask_path = os.path.abspath(mask_path)
        try:
            with Image.open(mask_path) as img:
                if "A" not in img.getbands():
                    return mask_path
                alpha = np.asarray(img.getchannel("A"))
        except (OSError, ValueError):
            return mask_path  # unreadable: the scorer records the decode error per record
        return _write_mask(alpha == 0, self.work_path(path, "masks", f"{key}.png"))


# ---------------------------------------------------------------------------
# PIE-Bench
# ---------------------------------------------------------------------------

PIE_TYPES = {
    "0": "random", "1": "change object", "2": "add object", "3": "delete object",
    "4": "change attribute content", "5": "change attribute pose", "6": "change attribute color",
    "7": "change attribute material", "8": "change background", "9": "change style",
}


def pie_mask_decode(encoded: list[int], height: int, width: int, border: bool = True) -> np.ndarray:
    """PIE-Bench's run-length masks: pairs (start, length) over the row-major
    flattened image. The authors' evaluation also sets the one-pixel image
    border to 1 "to avoid annotation errors in boundary"; ``border`` keeps that."""
    length = height * width
    flat = np.zeros(length, dtype=bool)
    for start, run in zip(encoded[0::2], encoded[1::2]):
        start = int(start)
        flat[start:min(start + int(run), length)] = True
    mask = flat.reshape(height, width)
    if border:
        mask[0, :] = mask[-1, :] = True
        mask[:, 0] = mask[:, -1] = True
    return mask


class PIEBench(DatasetLoader):
    id = "piebench"
    description = "PIE-Bench (Ju et al., 2024: PnPInversion) 700 images, 10 editing types, RLE masks"
    layout = """PATH is the PIE-Bench data folder:
  PATH/mapping_file.json    {"<key>": {"image_path": "0_random_140/000000000000.jpg",
                              "original_prompt": "a [cat] sitting ...", "editing_prompt": "a [dog] sitting ...",
                              "editing_instruction": "...", "editing_type_id": "1",
                              "blended_word": "cat dog", "mask": [start, length, ...]}, ...}
  PATH/annotation_images/<image_path>
One record per key: id = key, source, source_caption / target_caption (the prompts without
the [ ] word markers), instruction (editing_instruction; empty when absent), category =
editing type name (0 random ... 9 change style), editing_type_id, blended_word, and mask:
the run-length mask decoded at the image's size (with the authors' one-pixel border set)
and written as a PNG under the work folder. PIE-Bench has no ground-truth edited image:
no target field."""

    def records(self, path):
        mapping = _load_json(_need(os.path.join(path, "mapping_file.json"), "mapping_file.json", self.id), self.id)
        images = _need(os.path.join(path, "annotation_images"), "an annotation_images/ folder", self.id)
        for key in sorted(mapping, key=str):
            item = mapping[key]
            source = os.path.abspath(os.path.join(images, item["image_path"]))
            type_id = str(item.get("editing_type_id", ""))
            rec = {
                "id": str(key),
                "source": source,
                "instruction": item.get("editing_instruction", ""),
                "source_caption": _unmark(item.get("original_prompt", "")),
                "target_caption": _unmark(item.get("editing_prompt", "")),
                "category": PIE_TYPES.get(type_id, type_id or "unknown"),
                "editing_type_id": type_id,
                "blended_word": item.get("blended_word", ""),
            }
            if item.get("mask"):
                rec["mask"] = self._mask(path, source, str(key), item["mask"])
            yield rec

    def _mask(self, path: str, source: str, key: str, encoded: list[int]) -> str:
        try:
            with Image.open(source) as img:
                width, height = img.size
        except OSError:
            width = height = 512  # the benchmark's size; the missing source is reported when scoring
        out = self.work_path(path, "masks", key.replace(os.sep, "_") + ".png")
        return _write_mask(pie_mask_decode(encoded, height, width), out)


def _unmark(prompt: str) -> str:
    return prompt.replace("[", "").replace("]", "")


# ---------------------------------------------------------------------------
# InstructPix2Pix generated pairs
# ---------------------------------------------------------------------------


class InstructPix2Pix(DatasetLoader):
    id = "ip2p"
    description = "InstructPix2Pix generated pairs (Brooks et al., 2023): prompt.json + <seed>_0/_1 images"
    layout = """PATH is a folder of the InstructPix2Pix generated dataset (e.g. clip-filtered-dataset/):
  PATH/seeds.json                 [["<name>", [seed, ...]], ...]   (optional: without it every
                                  sub-folder holding a prompt.json is used, with all its seeds)
  PATH/<name>/prompt.json         {"input": "<input caption>", "edit": "<instruction>", "output": "<output caption>"}
  PATH/<name>/<seed>_0.jpg        the input image; <seed>_1.jpg the edited image
One record per (name, seed): id "<name>/<seed>", source = _0, target = _1 (the pair's
generated edit), instruction = edit, source_caption = input, target_caption = output."""

    def records(self, path):
        seeds_file = os.path.join(path, "seeds.json")
        if os.path.exists(seeds_file):
            entries = [(str(name), [str(s) for s in seeds]) for name, seeds in _load_json(seeds_file, self.id)]
        else:
            entries = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                if "prompt.json" in files:
                    seeds = sorted(f[:-6] for f in files if f.endswith("_0.jpg") or f.endswith("_0.png"))
                    entries.append((os.path.relpath(root, path), seeds))
            if not entries:
                raise DatasetError(f"{self.id}: no seeds.json and no */prompt.json under {path}")
        for name, seeds in entries:
            folder = os.path.join(path, name)
            prompt = _load_json(os.path.join(folder, "prompt.json"), self.id)
            for seed in seeds:
                yield {
                    "id": f"{name}/{seed}",
                    "source": os.path.abspath(_image(folder, f"{seed}_0")),
                    "target": os.path.abspath(_image(folder, f"{seed}_1")),
                    "instruction": prompt.get("edit", ""),
                    "source_caption": prompt.get("input", ""),
                    "target_caption": prompt.get("output", ""),
                }


def _image(folder: str, stem: str) -> str:
    for ext in (".jpg", ".png", ".jpeg", ".webp"):
        if os.path.exists(os.path.join(folder, stem + ext)):
            return os.path.join(folder, stem + ext)
    return os.path.join(folder, stem + ".jpg")  # missing: reported per record when scoring


# ---------------------------------------------------------------------------
# A plain folder of images with a CSV
# ---------------------------------------------------------------------------

COLUMN_ALIASES = {
    "input": "source", "image": "source", "original": "source", "src": "source",
    "output": "edited", "result": "edited", "edit_image": "edited",
    "gt": "target", "ground_truth": "target",
    "prompt": "instruction", "edit": "instruction", "edit_prompt": "instruction",
}
CSV_NAMES = ("pairs.csv", "metadata.csv", "index.csv")


class FolderCSV(DatasetLoader):
    id = "folder"
    description = "A plain folder of images with a CSV naming them (one row per edit)"
    layout = """PATH is a CSV file, or a folder holding pairs.csv, metadata.csv, index.csv or a single *.csv:
  id,source,edited,target,mask,instruction,category      (header; any subset, other columns kept)
  cat,cat.png,out/cat.png,,masks/cat.png,make the cat blue,local
Image paths are relative to the CSV's folder (absolute paths work too). Column aliases:
input/image/original/src -> source, output/result/edit_image -> edited, gt/ground_truth ->
target, prompt/edit/edit_prompt -> instruction. Empty cells are absent fields; cells that
look like JSON lists/objects (boxes such as [10, 20, 80, 90]) are decoded. id defaults to
the row number."""

    def records(self, path):
        csv_path = self._csv(path)
        base = os.path.dirname(os.path.abspath(csv_path))
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise DatasetError(f"{self.id}: {csv_path} has no header row")
            names = [COLUMN_ALIASES.get(n.strip().lower(), n.strip()) for n in reader.fieldnames if n]
            if not {"source", "edited", "target"} & set(names):
                raise DatasetError(f"{self.id}: {csv_path} has no image column (source, edited or target)")
            for number, row in enumerate(reader, start=1):
                rec = {}
                for key, value in _clean(row).items():
                    rec[COLUMN_ALIASES.get(key.lower(), key)] = value
                rec.setdefault("id", number)
                for name in IMAGE_FIELDS + MASK_FIELDS:
                    if isinstance(rec.get(name), str):
                        rec[name] = os.path.normpath(os.path.join(base, os.path.expanduser(rec[name])))
                yield rec

    def _csv(self, path: str) -> str:
        if os.path.isfile(path):
            return path
        if not os.path.isdir(path):
            raise DatasetError(f"{self.id}: {path} is neither a CSV file nor a folder")
        for name in CSV_NAMES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        found = sorted(f for f in os.listdir(path) if f.lower().endswith(".csv"))
        if len(found) == 1:
            return os.path.join(path, found[0])
        raise DatasetError(f"{self.id}: expected one CSV in {path} (or one named {', '.join(CSV_NAMES)}), "
                           f"found {found or 'none'}")


LOADERS = (MagicBrush, PIEBench, InstructPix2Pix, FolderCSV)


@hookimpl
def register_datasets(register):
    for cls in LOADERS:
        register(cls)


# ---------------------------------------------------------------------------
# Export and the command
# ---------------------------------------------------------------------------


def export_dataset(name: str, path: str, out: str, *, limit: int | None = None, work_dir: str | None = None,
                   registry=None) -> int:
    """Write the records of dataset ``name`` at ``path`` as a JSONL pairs file;
    returns the number of records."""
    from editmetrics.plugins.registry import get_registry

    registry = registry or get_registry()
    loader = registry.get("datasets", name)()
    if not os.path.exists(path):
        raise DatasetError(f"{name}: dataset path not found: {path}")
    loader.work_dir = work_dir or os.path.splitext(os.path.abspath(out))[0] + "-files"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    n = 0
    seen: set[str] = set()
    tmp = out + ".part"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in loader.records(path):
                if limit is not None and n >= limit:
                    break
                key = str(rec.get("id"))
                if key in seen:
                    raise DatasetError(f"{name}: duplicate record id {key!r}")
                seen.add(key)
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    except BaseException:
        os.remove(tmp)  # a failed export leaves no half-written pairs file
        raise
    os.replace(tmp, out)
    return n
