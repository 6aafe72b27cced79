"""The released parse's field-by-field prompting (gemma.py of joyli-x/BPM) for
the LLM parser: prompt files whose sections start with ``### <field>``
(``prompts/gemma_v1.txt``: our wording of the released prompts, their few-shot
examples).

One chat call per field, as the release: ``parts`` (``Original image: X.
Edited image: Y.``), ``edit_type``, ``being_added`` and ``added_object`` (adds
only), ``size``, ``position``. Each answer is constrained by a llama.cpp GBNF
grammar: object phrases must be word spans of the instruction (or None / all),
the other fields one of the words the prompts list, so a small model cannot
invent objects. Post-processing as the release (lower case, split on
"Original image:" / "Edited image:", strip) and then the trailing period is
dropped and the fields are mapped onto the schema (docs/bpm.md).
"""

from __future__ import annotations

import re

from editmetrics.bpm.schema import ParseFailure, validate_parse

FIELDS = ("parts", "edit_type", "being_added", "added_object", "size", "position")
EDIT_TYPES = ("add", "remove", "replace", "change color", "change texture", "change size", "other")
SIZE_WORDS = {"bigger": "larger", "larger": "larger", "taller": "larger", "longer": "larger", "wider": "larger",
              "higher": "larger", "thicker": "larger", "smaller": "smaller", "shorter": "smaller",
              "thinner": "smaller", "narrower": "smaller", "lower": "smaller", "unchanged": "unchanged"}
POSITION_WORDS = {"left": "left", "right": "right", "above": "up", "below": "down", "inside": "inside",
                  "unchanged": "unchanged"}
MAX_SPAN = 5  # words in an object phrase


def sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        out[name.strip()] = body
    missing = [f for f in FIELDS if f not in out]
    if missing:
        raise ValueError(f"field prompt file lacks sections: {', '.join(missing)}")
    return out


def words(instruction: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'\-]*", instruction.lower())


def spans(instruction: str, longest: int = MAX_SPAN) -> list[str]:
    w = words(instruction)
    found = {" ".join(w[i:j]) for i in range(len(w)) for j in range(i + 1, min(len(w), i + longest) + 1)}
    return sorted(found)


def _alt(options) -> str:
    return "(" + " | ".join('"' + o.replace("\\", "\\\\").replace('"', '\\"') + '"' for o in options) + ")"


def grammars(instruction: str) -> dict[str, str]:
    """GBNF per field; object phrases are word spans of ``instruction``."""
    span = _alt(spans(instruction) or ["none"])
    return {
        "parts": f'root ::= "Original image: " side ". Edited image: " side "."\nside ::= "None" | "all" | span\n'
                 f"span ::= {span}\n",
        "edit_type": f"root ::= {_alt(EDIT_TYPES)} \".\"\n",
        "being_added": f'root ::= ("None" | span) "."\nspan ::= {span}\n',
        "added_object": f'root ::= span "."\nspan ::= {span}\n',
        "size": f"root ::= {_alt(['None', *SIZE_WORDS])} \".\"\n",
        "position": f"root ::= {_alt(['None', *POSITION_WORDS])} \".\"\n",
    }


def split_parts(answer: str) -> tuple[str, str]:
    """The release's extraction of the two parts (lower-cased, stripped)."""
    if "Original image:" not in answer or "Edited image:" not in answer:
        raise ParseFailure(f"answer has no 'Original image:' / 'Edited image:' parts: {answer!r}")
    original = answer.split("Original image:")[1].split("Edited image:")[0].strip()
    edited = answer.split("Edited image:")[1].strip()
    return original.lower(), edited.lower()


def _clean(value: str) -> str:
    return value.strip().rstrip(".").strip().lower()


def to_schema(fields: dict[str, str]) -> dict:
    """The released fields (original_part, edited_part, edit_type, being_added,
    added_object, size, position) -> the schema; whole values, not substrings."""
    o, e = _clean(fields["original_part"]), _clean(fields["edited_part"])
    kind = _clean(fields.get("edit_type", ""))
    size = SIZE_WORDS.get(_clean(fields.get("size", "")), "unchanged")
    position = POSITION_WORDS.get(_clean(fields.get("position", "")), "unchanged")
    ref = _clean(fields.get("being_added", "") or "")
    added = _clean(fields.get("added_object", "") or "")
    none = ("none", "")
    if o == "all" or e == "all":
        out = {"source_object": None, "target_object": None, "edit_type": "global", "size_change": "unchanged",
               "position_change": "unchanged", "reference_object": None}
    elif o in none:
        out = {"source_object": None, "target_object": added if added not in none else (e or None),
               "edit_type": "add", "size_change": size, "position_change": position,
               "reference_object": ref if ref not in none else None}
    elif e in none:
        out = {"source_object": o, "target_object": None, "edit_type": "remove", "size_change": "unchanged",
               "position_change": "unchanged", "reference_object": None}
    else:
        if kind == "change size":
            edit_type = "size"
        elif kind in ("change color", "change texture"):
            edit_type = "attribute"
        elif kind == "replace":
            edit_type = "replace"
        elif position in ("left", "right", "up", "down"):
            edit_type = "position"
        else:
            edit_type = "replace" if o != e else "attribute"
        out = {"source_object": o, "target_object": e, "edit_type": edit_type, "size_change": size,
               "position_change": position if edit_type == "position" else "unchanged", "reference_object": None}
    return validate_parse(out)
