"""Dataset loaders for SPPE-style data and InstructPix2Pix-style pairs.

Each loader turns a folder on local disk into pairs-file records (dicts with
absolute image paths) through ``records(path)``; ``editmetrics dataset export``
writes them as a pairs file.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Iterator

from editmetrics.data.records import PairsFileError
from editmetrics.sppe.privacy import GROUP_FIELD, privacy_group

SPPE_INDEX = "sppe.json"
# SPPE 7-tuple (section 3.2) -> editmetrics record fields
SPPE_FIELDS = {"source": "source", "surrogate": "surrogate", "mask": "mask", "edited_source": "target",
               "edited_surrogate": "edited_surrogate"}


def _abs(root: str, value: str | None) -> str | None:
    if not value:
        return None
    return os.path.normpath(os.path.join(root, os.path.expanduser(value)))


class SppeLoader:
    id = "sppe"
    description = "SPPE-style surrogate editing set (sppe.json index + image folders)"
    layout = """\
ROOT/sppe.json            index: {"instances": [INSTANCE, ...]} (or a bare list)
ROOT/<any sub-folders>/   images and masks, paths in the index relative to ROOT

INSTANCE (SPPE 7-tuple, section 3.2, plus bookkeeping):
  id                unique id (string or number)                        required
  category          privacy category, e.g. "faces", "plate"             required
  instruction       editing instruction                                 required
  source            source image X                                      required
  surrogate         surrogate image S (private region replaced)         required
  mask              private region M (non-zero = private)               optional
  edited_source     MLLM edit of X: the recovery target (-> `target`)   optional
  edited_surrogate  MLLM edit of S                                      optional
  split             "train" / "test" ...                                optional
  editability_label precomputed label in [0, 1]                         optional
  privacy_group     one of the 11 privacy groups (Table 2)              optional
Any other key is carried through unchanged. `privacy_group` is written from
`category` with SPPE's Table 2 (36 categories -> 11 groups, e.g. "faces" ->
"Face", "plate" -> "License Plate") unless the instance sets it; a category
outside the paper's 36 gets no group (a warning names it). PATH may be ROOT or ROOT/sppe.json
(or another index file with this schema, e.g. ROOT/test.json)."""

    def records(self, path: str) -> Iterator[dict]:
        index = os.path.join(path, SPPE_INDEX) if os.path.isdir(path) else path
        if not os.path.isfile(index):
            raise PairsFileError(f"sppe: no index file {SPPE_INDEX} in {path} (see `layout`)")
        root = os.path.dirname(os.path.abspath(index))
        with open(index, encoding="utf-8") as fh:
            data = json.load(fh)
        items = data.get("instances") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise PairsFileError(f"sppe: {index} must hold a list of instances or {{\"instances\": [...]}}")
        seen = set()
        unknown: set[str] = set()
        for number, item in enumerate(items, start=1):
            missing = [k for k in ("id", "category", "instruction", "source", "surrogate") if not item.get(k)]
            if missing:
                raise PairsFileError(f"sppe: {index}: instance {number} lacks {', '.join(missing)}")
            if str(item["id"]) in seen:
                raise PairsFileError(f"sppe: {index}: duplicate id {item['id']!r}")
            seen.add(str(item["id"]))
            rec = {k: v for k, v in item.items() if k not in SPPE_FIELDS}
            for key, name in SPPE_FIELDS.items():
                if item.get(key):
                    rec[name] = _abs(root, item[key])
            if not rec.get(GROUP_FIELD):
                group = privacy_group(item["category"])
                if group is None:
                    unknown.add(str(item["category"]))
                else:
                    rec[GROUP_FIELD] = group
            yield rec
        if unknown:
            warnings.warn(f"sppe: {index}: categories outside SPPE's 36 (Table 2) get no privacy_group: "
                          f"{', '.join(sorted(unknown))}", stacklevel=2)


class InstructPix2PixLoader:
    id = "instructpix2pix"
    description = "InstructPix2Pix-style pairs with full-image surrogates (SPPE's generalisation set)"
    layout = """\
ROOT/<sample>/prompt.json     {"edit": INSTRUCTION, "input": caption, "output": caption}
ROOT/<sample>/<seed>_0.jpg    source image (any of .jpg/.jpeg/.png/.webp)
ROOT/<sample>/<seed>_1.jpg    its edit (-> `target`)
ROOT/<sample>/<seed>_s.jpg    full-image surrogate of <seed>_0                 optional
ROOT/<sample>/<seed>_s1.jpg   the same edit applied to the surrogate            optional
One record per <seed> found in a sample folder: id "<sample>/<seed>",
category "instructpix2pix", no mask (the surrogate replaces the whole image).
`source_caption` / `target_caption` come from prompt.json. Samples without
a surrogate are still listed (ERMA and the baselines then report the missing
field per record)."""

    EXTS = (".jpg", ".jpeg", ".png", ".webp")

    def records(self, path: str) -> Iterator[dict]:
        if not os.path.isdir(path):
            raise PairsFileError(f"instructpix2pix: {path} is not a folder")
        for sample in sorted(os.listdir(path)):
            folder = os.path.join(path, sample)
            prompt_file = os.path.join(folder, "prompt.json")
            if not os.path.isfile(prompt_file):
                continue
            with open(prompt_file, encoding="utf-8") as fh:
                prompt = json.load(fh)
            files = {os.path.splitext(n)[0]: os.path.join(os.path.abspath(folder), n)
                     for n in os.listdir(folder) if n.lower().endswith(self.EXTS)}
            for seed in sorted(k[:-2] for k in files if k.endswith("_0")):
                if f"{seed}_1" not in files:
                    continue
                rec = {"id": f"{sample}/{seed}", "category": "instructpix2pix", "instruction": prompt.get("edit", ""),
                       "source": files[f"{seed}_0"], "target": files[f"{seed}_1"]}
                if prompt.get("input"):
                    rec["source_caption"] = prompt["input"]
                if prompt.get("output"):
                    rec["target_caption"] = prompt["output"]
                if f"{seed}_s" in files:
                    rec["surrogate"] = files[f"{seed}_s"]
                if f"{seed}_s1" in files:
                    rec["edited_surrogate"] = files[f"{seed}_s1"]
                yield rec


def write_pairs(records, path: str) -> int:
    """Write records as a JSON Lines pairs file; returns the count."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            count += 1
    return count
