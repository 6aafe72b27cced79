"""Human-judgement sets in their released file formats.

Each loader returns a ``HumanSet``: the candidates (edited images, each with
the id its record must carry in the pairs/results files) and the judgements
over them, pairwise or per candidate. ``pairs_records`` turns the candidates
into a pairs file so the metric under test scores exactly these ids.

Formats (see docs/judges.md for where each comes from):
- ``genai-bench``: GenAI-Bench image editing rows (JSON list or JSONL) with
  ``vote_type`` in leftvote/rightvote/tievote/bothbad_vote (``human_vote`` in
  the released per-model outputs), or EditReward's processed pairs with
  ``model1_dim1_score``/``model2_dim1_score``; ties = tievote, bothbad_vote,
  equal scores.
- ``editreward-bench``: TIGER-Lab/EditReward-Bench JSON (``prompt``,
  ``path_src``, ``paths_generated``, ``human_vote.ranking`` like "A>B",
  "A=B=Good", "C>A>B").
- ``imagenhub``: ImagenHub/VIEScore rater TSVs (``uid`` + one column per model,
  cells "[SC, PQ]"), one file per rater.
- ``pointwise``: EditReward's processed ImagenHub / AURORA pointwise JSON
  (one human ``score`` per edited image and ``model``).
- ``mos``: CSV or JSONL with an id column and a MOS column.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from itertools import combinations


class HumanSetError(ValueError):
    """The human-judgement file cannot be read in the given format."""


@dataclass
class Candidate:
    id: str
    fields: dict = field(default_factory=dict)  # pairs-file fields: source, edited, instruction, model...


@dataclass
class HumanSet:
    kind: str  # "pairwise" | "per_model" | "mos"
    candidates: dict[str, Candidate] = field(default_factory=dict)
    # pairwise: (first id, second id, human label 1/-1/0, group name)
    pairs: list[tuple[str, str, int, str]] = field(default_factory=list)
    # per_model / mos: id -> {"model": ..., "labels": {name: value}, "raters": [...]}
    items: dict[str, dict] = field(default_factory=dict)
    # editreward-bench: per item, the candidate ids and the human ranking string
    rankings: list[tuple[list[str], str, str]] = field(default_factory=list)
    source: str = ""


def _read_json_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise HumanSetError(f"{path}: neither JSON nor JSON Lines ({exc})") from None
    if isinstance(data, dict):
        data = list(data.values()) if all(isinstance(v, dict) for v in data.values()) else [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HumanSetError(f"{path}: expected a list of objects")
    return data


_VOTES = {"leftvote": 1, "rightvote": -1, "tievote": 0, "bothbad_vote": 0}


def _rel(base: str, value):
    if not value or not isinstance(value, str):
        return value
    return value if os.path.isabs(value) or "://" in value else os.path.join(base, value)


def load_genai_bench(path: str) -> HumanSet:
    rows = _read_json_rows(path)
    base = os.path.dirname(os.path.abspath(path))
    out = HumanSet(kind="pairwise", source=path)
    for i, row in enumerate(rows):
        item = str(row.get("idx", row.get("id", i)))
        if "model1_dim1_score" in row:  # EditReward's processed pairs
            s1, s2 = row["model1_dim1_score"], row["model2_dim1_score"]
            label = 0 if s1 == s2 else (1 if s1 > s2 else -1)
            instr, src = row.get("prompt"), row.get("path_src")
            paths = (row.get("path1"), row.get("path2"))
            models = (row.get("model1"), row.get("model2"))
        else:
            vote = row.get("vote_type", row.get("human_vote"))
            if vote not in _VOTES:
                raise HumanSetError(f"{path}: row {i}: unknown vote {vote!r} (expected {sorted(_VOTES)})")
            label = _VOTES[vote]
            instr, src = row.get("instruct_prompt", row.get("prompt")), row.get("source_image")
            paths = (row.get("left_output_image", row.get("left_image")),
                     row.get("right_output_image", row.get("right_image")))
            models = (row.get("left_model"), row.get("right_model"))
        ids = (f"{item}/A", f"{item}/B")
        for cid, p, model in zip(ids, paths, models):
            fields = {"instruction": instr, "model": model}
            if isinstance(src, str):
                fields["source"] = _rel(base, src)
            if isinstance(p, str):
                fields["edited"] = _rel(base, p)
            out.candidates[cid] = Candidate(cid, {k: v for k, v in fields.items() if v is not None})
        out.pairs.append((ids[0], ids[1], label, "all"))
    return out


def pairwise_label(ranking: str, i: int, j: int) -> int:
    """EditReward-Bench's human label for images i < j (0-based) from its ranking string."""
    if ranking == "A>B":
        return 1
    if ranking in ("B>A", "A<B"):
        return -1
    if ranking in ("A=B=Good", "A=B=Bad"):
        return 0
    pi, pj = ranking.find(chr(ord("A") + i)), ranking.find(chr(ord("A") + j))
    if pi == -1 or pj == -1:
        return 0
    return 1 if pi < pj else -1


def load_editreward_bench(path: str) -> HumanSet:
    rows = _read_json_rows(path)
    base = os.path.dirname(os.path.abspath(path))
    out = HumanSet(kind="pairwise", source=path)
    for i, row in enumerate(rows):
        paths = row.get("paths_generated") or []
        vote = row.get("human_vote") or {}
        ranking = vote.get("ranking") if isinstance(vote, dict) else None
        if not paths or ranking is None:
            raise HumanSetError(f"{path}: row {i}: needs paths_generated and human_vote.ranking")
        if not row.get("path_src") or not all(paths):
            continue  # the released scorer skips these rows too
        group = f"{len(paths)}-Pair"
        ids = [f"{i}/{chr(ord('A') + k)}" for k in range(len(paths))]
        for cid, p in zip(ids, paths):
            out.candidates[cid] = Candidate(cid, {"source": _rel(base, row["path_src"]), "edited": _rel(base, p),
                                                  "instruction": row.get("prompt")})
        for a, b in combinations(range(len(paths)), 2):
            out.pairs.append((ids[a], ids[b], pairwise_label(ranking, a, b), group))
        out.rankings.append((ids, ranking, group))
    return out


def _cell(text: str, where: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).strip().strip("[]").split(",")]
    except ValueError:
        raise HumanSetError(f"{where}: rating {text!r} is not '[SC, PQ]'") from None
    if len(values) != 2:
        raise HumanSetError(f"{where}: rating {text!r} is not '[SC, PQ]'")
    return values


def load_imagenhub(paths: list[str]) -> HumanSet:
    """Rater TSVs of one ImagenHub task (one file per rater, same uids and models)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".tsv"))
        else:
            files.append(p)
    if not files:
        raise HumanSetError("no rater .tsv files given")
    ratings: dict[str, list] = {}
    out = HumanSet(kind="per_model", source=", ".join(files))
    for path in files:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            if not reader.fieldnames or reader.fieldnames[0] != "uid":
                raise HumanSetError(f"{path}: expected a 'uid' column first")
            models = reader.fieldnames[1:]
            for r, row in enumerate(reader, start=2):
                for model in models:
                    cid = f"{model}/{row['uid']}"
                    ratings.setdefault(cid, []).append(_cell(row[model], f"{path}:{r}:{model}"))
    n = len(files)
    for cid, rs in ratings.items():
        if len(rs) != n:
            raise HumanSetError(f"{cid}: rated by {len(rs)} of {n} raters")
        model, uid = cid.split("/", 1)
        # fsum: the mean does not depend on the raters' file order, so equal
        # ratings in another order stay exact ties (plain float sums break them
        # at random, which moves O's Spearman by up to 6e-4 on the released data)
        labels = {"SC": math.fsum(r[0] for r in rs) / n, "PQ": math.fsum(r[1] for r in rs) / n,
                  "O": math.fsum(math.sqrt(r[0] * r[1]) for r in rs) / n}
        out.items[cid] = {"model": model, "labels": labels, "raters": rs}
        out.candidates[cid] = Candidate(cid, {"model": model, "uid": uid})
    return out


def load_mos(path: str, id_column: str = "id", mos_column: str = "mos") -> HumanSet:
    if path.endswith((".jsonl", ".json")):
        rows = _read_json_rows(path)
    else:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    out = HumanSet(kind="mos", source=path)
    for i, row in enumerate(rows):
        if id_column not in row or mos_column not in row:
            raise HumanSetError(f"{path}: row {i + 1} lacks {id_column!r} or {mos_column!r}")
        try:
            mos = float(row[mos_column])
        except (TypeError, ValueError):
            raise HumanSetError(f"{path}: row {i + 1}: MOS {row[mos_column]!r} is not a number") from None
        cid = str(row[id_column])
        out.items[cid] = {"model": row.get("model"), "labels": {"MOS": mos}}
        out.candidates[cid] = Candidate(cid, {k: v for k, v in row.items() if k not in (id_column, mos_column)})
    return out


def load_pointwise(path: str) -> HumanSet:
    """EditReward's processed pointwise files: ImagenHub (``instruction``,
    ``input_path``, ``output_path``, ``score``, ``model``) and AURORA
    (``prompt``, ``input``, ``gen``, ``score``, ``model``): one human score per
    edited image, evaluated per model (label ``score``)."""
    rows = _read_json_rows(path)
    base = os.path.dirname(os.path.abspath(path))
    out = HumanSet(kind="per_model", source=path)
    for i, row in enumerate(rows):
        if "score" not in row:
            raise HumanSetError(f"{path}: row {i}: no 'score'")
        model = str(row.get("model", "unknown"))  # the released scorer's default
        cid = f"{model}/{row.get('filename', i)}"
        if cid in out.items:
            cid = f"{cid}#{i}"
        fields = {"model": model, "instruction": row.get("instruction", row.get("prompt")),
                  "source": _rel(base, row.get("input_path", row.get("input"))),
                  "edited": _rel(base, row.get("output_path", row.get("gen")))}
        out.items[cid] = {"model": model, "labels": {"score": float(row["score"])}}
        out.candidates[cid] = Candidate(cid, {k: v for k, v in fields.items() if v is not None})
    return out


FORMATS = ("genai-bench", "editreward-bench", "imagenhub", "pointwise", "mos")


def load(fmt: str, paths: list[str], **options) -> HumanSet:
    if fmt == "genai-bench":
        return load_genai_bench(paths[0])
    if fmt == "editreward-bench":
        sets = [load_editreward_bench(p) for p in paths]
        merged = HumanSet(kind="pairwise", source=", ".join(paths))
        for k, s in enumerate(sets):  # several files (2/3/4-pair): keep ids apart
            prefix = f"{k}:" if len(sets) > 1 else ""
            for cid, cand in s.candidates.items():
                merged.candidates[prefix + cid] = Candidate(prefix + cid, cand.fields)
            merged.pairs += [(prefix + a, prefix + b, h, g) for a, b, h, g in s.pairs]
            merged.rankings += [([prefix + i for i in ids], r, g) for ids, r, g in s.rankings]
        return merged
    if fmt == "imagenhub":
        return load_imagenhub(paths)
    if fmt == "pointwise":
        return load_pointwise(paths[0])
    if fmt == "mos":
        return load_mos(paths[0], options.get("id_column", "id"), options.get("mos_column", "mos"))
    raise HumanSetError(f"unknown format {fmt!r}; choose one of {FORMATS}")


def pairs_records(hs: HumanSet) -> list[dict]:
    """The candidates as pairs-file records (ids as the judgements name them)."""
    return [{"id": c.id, **c.fields} for c in hs.candidates.values()]
