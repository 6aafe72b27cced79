"""Deterministic rule-based instruction parser (BPM's default: no weights).

It recognises the common phrasings of MagicBrush-style instructions with
regular expressions over whole words only: the authors' code tests substrings
(``"all" in text``), which takes "ball", "wall" or "tall" for a global edit;
here every keyword is matched between word boundaries, and a global edit needs
a global subject ("it", "the image", "the whole picture") or a global noun
("season", "weather", "style").

Conventions of the output (see docs/bpm.md):
- replace: source = old object, target = new object;
- attribute: source = object, target = "<attribute> <object>" ("blue cat");
  multi-word attributes follow the object ("table made of wood");
- size / position: source = target = the object;
- add: source = None; remove: target = None;
- global: source = None, target = the style/scene phrase.
Size words ("bigger", "smaller") are removed from object phrases and set
``size_change``.
"""

from __future__ import annotations

import re
from typing import Any

from editmetrics.bpm.schema import ParseFailure, ParseResult, validate_parse

_DET = r"(?:the|a|an|some|this|that|these|those|his|her|its|their|my|your|all(?: of)? the|all|every|each)"
_POLITE = re.compile(
    r"^(?:(?:please|kindly|ok|okay|now|then|and|so|just|can you|could you|would you|will you|can we|could we|"
    r"can i|could i|i want to|"
    r"i'd like to|i would like to|i want you to|let's|lets|let us|you should|try to|go ahead and)\s+)+"
)
_TRAILING = re.compile(r"(?:\s+(?:please|in the (?:image|picture|photo|photograph|scene)|"
                       r"from the (?:image|picture|photo|photograph|scene)|instead|too|as well))+$")

LARGER = ("bigger", "larger", "taller", "huge", "giant", "enormous", "wider", "longer", "higher",
          "thicker", "fatter", "enlarged")
SMALLER = ("smaller", "tinier", "tiny", "shorter", "narrower", "thinner", "little", "shrunken", "miniature")
_SIZE_MOD = r"(?:much|a lot|a bit|a little|slightly|way|even|far|twice as|two times)"

COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "gray", "grey",
           "brown", "golden", "gold", "silver", "beige", "cyan", "magenta", "violet", "turquoise", "navy",
           "maroon", "teal")
ADJECTIVES = COLOURS + (
    "transparent", "rainbow", "striped", "spotted", "colorful", "colourful", "dark", "bright", "light",
    "shiny", "wooden", "metal", "metallic", "glass", "stone", "marble", "plastic", "rusty", "old", "new",
    "wet", "dry", "frozen", "burning", "happy", "sad", "angry", "smiling", "sleeping", "broken", "clean",
    "dirty", "glowing", "furry", "fluffy", "checkered", "plaid", "polka-dotted", "floral", "empty", "full",
    "open", "closed", "ripe", "rotten", "young", "bald", "curly", "blond", "blonde", "snowy", "muddy",
    "neon", "pastel", "vintage", "sunny", "cloudy", "crying", "laughing", "running", "standing", "sitting",
)
# Base verb -> participle for action changes ("make the woman smile").
ACTIONS = {
    "smile": "smiling", "sit": "sitting", "stand": "standing", "run": "running", "jump": "jumping",
    "sleep": "sleeping", "dance": "dancing", "fly": "flying", "swim": "swimming", "laugh": "laughing",
    "cry": "crying", "walk": "walking", "eat": "eating", "lie": "lying", "wave": "waving", "sing": "singing",
}
_GLOBAL_SUBJECT = (r"(?:it|this|everything|the (?:whole |entire |full )?(?:[a-z]+ )?(?:image|photo|photograph|"
                   r"picture|scene|painting|thing|view|landscape)|the whole thing|whole (?:image|picture|photo|scene))")
_GLOBAL_NOUNS = r"(?:season|weather|time of day|time|lighting|style|mood|atmosphere|art style)"

# Spatial prepositions -> position_change (longest first so "on top of" wins over "on").
_PREPS = [
    ("to the left side of", "left"), ("to the right side of", "right"), ("on the left side of", "left"),
    ("on the right side of", "right"), ("to the left of", "left"), ("to the right of", "right"),
    ("on the left of", "left"), ("on the right of", "right"), ("left of", "left"), ("right of", "right"),
    ("on top of", "up"), ("on the top of", "up"), ("at the top of", "up"), ("above", "up"), ("over", "up"),
    ("underneath", "down"), ("beneath", "down"), ("below", "down"), ("under", "down"),
    ("at the bottom of", "down"), ("next to", "near"), ("close to", "near"), ("closer to", "near"),
    ("beside", "near"), ("near", "near"), ("by", "near"), ("in front of", "near"), ("behind", "near"),
    ("around", "near"), ("at", "near"), ("inside", "inside"), ("into", "inside"), ("onto", "inside"),
    ("in", "inside"), ("on", "inside"), ("within", "inside"), ("to", "inside"),
]
_PREP_RE = "|".join(re.escape(p) for p, _ in _PREPS)
_PREP_MAP = dict(_PREPS)
_WHOLE_FRAME = re.compile(r"^(?:the )?(?:image|picture|photo|photograph|scene|background|foreground|frame)$")
_DIRECTIONS = [
    (r"(?:to the |towards the |toward the |to its )?left(?: side)?", "left"),
    (r"(?:to the |towards the |toward the |to its )?right(?: side)?", "right"),
    (r"up(?:ward|wards)?|higher|to the top", "up"),
    (r"down(?:ward|wards)?|lower|to the bottom", "down"),
]


def _w(words) -> str:
    return r"(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")"


def _has_word(text: str, words) -> bool:
    return re.search(r"\b" + _w(words) + r"\b", text) is not None


def clean_object(text: str | None) -> str | None:
    """Strip determiners, politeness and size words from a noun phrase."""
    if text is None:
        return None
    t = text.strip(" .,!?;:\"'")
    t = _TRAILING.sub("", t)
    t = re.sub(r"\b" + _SIZE_MOD + r"\s+(?=" + _w(LARGER + SMALLER) + r"\b)", "", t)
    t = re.sub(r"\b" + _w(LARGER + SMALLER) + r"\b", "", t)
    t = re.sub(r"^(?:" + _DET + r"\s+)+", "", t.strip())
    t = " ".join(t.split())
    return t or None


def _size_change(text: str) -> str:
    if re.search(r"\b(?:enlarge|grow|expand|magnify|scale up|increase the size|double the size|zoom in on)\b"
                 r"|\b" + _w(LARGER) + r"\b", text):
        return "larger"
    if re.search(r"\b(?:shrink|reduce the size|decrease the size|scale down|halve the size|make .* less big)\b"
                 r"|\b" + _w(SMALLER) + r"\b", text):
        return "smaller"
    return "unchanged"


def _split_prep(phrase: str) -> tuple[str, str | None, str]:
    """'a bird on top of the tower' -> ('a bird', 'tower', 'up')."""
    match = re.match(r"^(?P<obj>.+?)\s+(?P<prep>" + _PREP_RE + r")\s+(?P<ref>.+)$", phrase)
    if not match:
        return phrase, None, "unchanged"
    ref = clean_object(match.group("ref"))
    if ref is None or _WHOLE_FRAME.match(ref):
        return match.group("obj"), None, "unchanged"
    return match.group("obj"), ref, _PREP_MAP[match.group("prep")]


def _direction(text: str) -> tuple[str | None, str | None]:
    """Position change and reference in a move phrase ('to the left of the table')."""
    for prep, pos in _PREPS:
        match = re.search(r"\b" + re.escape(prep) + r"\s+(?P<ref>.+)$", text)
        if match:
            ref = clean_object(match.group("ref"))
            if ref and not _WHOLE_FRAME.match(ref) and ref not in ("left", "right", "top", "bottom"):
                return pos, ref
    for pattern, pos in _DIRECTIONS:
        if re.search(r"\b(?:" + pattern + r")\b", text):
            return pos, None
    return None, None


_MODIFIERS = ("bright", "dark", "light", "pale", "deep", "pastel", "neon", "and")


def _attribute_target(obj: str, attr: str) -> str:
    """'blue' + 'cat' -> 'blue cat'; 'orange and pink' + 'sky' -> 'orange and pink sky';
    other multi-word attributes follow the object ('table made of wood')."""
    attr = clean_object(attr) or attr
    attr = ACTIONS.get(attr, attr)
    words = obj.split()
    if attr in COLOURS and len(words) > 1 and words[0] in COLOURS:
        obj = " ".join(words[1:])  # "make the red car blue" -> "blue car"
    adjectival = all(w in ADJECTIVES + _MODIFIERS for w in attr.split())
    return f"{attr} {obj}" if len(attr.split()) == 1 or adjectival else f"{obj} {attr}"


def _result(source, target, edit_type, size, position="unchanged", reference=None) -> dict[str, Any]:
    return {
        "source_object": clean_object(source),
        "target_object": clean_object(target) if edit_type != "global" else (target or None),
        "edit_type": edit_type,
        "size_change": size,
        "position_change": position,
        "reference_object": clean_object(reference),
    }


def normalise(text: str) -> str:
    t = " ".join(text.lower().replace("’", "'").split())
    t = t.strip(" .!?;:\"'")
    t = _POLITE.sub("", t)
    t = re.sub(r",?\s*please$", "", t)
    return t.strip(" .!?,")


def parse_rules(text: str) -> dict[str, Any]:
    """Parse one instruction; raises ``ParseFailure`` when no rule applies."""
    t = normalise(text)
    if not t:
        raise ParseFailure("empty instruction")
    size = _size_change(t)

    # -- global edits: a global subject or a global noun, never a substring
    m = re.match(r"^(?:make|turn|convert|transform|render|change|give|apply|set|paint|redo|edit)\s+"
                 + _GLOBAL_SUBJECT + r"\s+(?:to\s+)?(?:look\s+)?(?:like\s+|into\s+|as\s+|in\s+|to\s+)?(?P<t>.+)$", t)
    if m and not re.match(r"^(?:bigger|larger|smaller)\b", m.group("t")):
        return _result(None, clean_object(m.group("t")), "global", "unchanged")
    m = re.match(r"^(?:change|set|make|turn)\s+the\s+" + _GLOBAL_NOUNS + r"\s+(?:to|into|as)\s+(?P<t>.+)$", t)
    if m:
        return _result(None, clean_object(m.group("t")), "global", "unchanged")
    m = re.match(r"^(?:it should be|let it be|make it be|it is now|it's now|it's)\s+(?P<t>.+)$", t)
    if m:
        return _result(None, clean_object(m.group("t")), "global", "unchanged")
    m = re.match(r"^apply (?:a |an )?(?P<t>.+?)\s+(?:filter|effect|style)\b", t)
    if m:
        return _result(None, clean_object(m.group("t")) + " " + re.search(r"filter|effect|style", t).group(0),
                       "global", "unchanged")

    # -- remove
    m = re.match(r"^(?:remove|delete|erase|eliminate|get rid of|take away|take out|cut out|clear away|"
                 r"clear)\s+(?P<s>.+?)(?:\s+from\s+.+)?$", t)
    if m:
        return _result(m.group("s"), None, "remove", "unchanged")
    m = re.match(r"^(?:there should be no|let there be no|there is no|there are no|no more|"
                 r"(?:what if|imagine if) there (?:was|were|is|are) no)\s+(?P<s>.+?)(?:\s+(?:in|on|from)\s+.+)?$", t)
    if m:
        return _result(m.group("s"), None, "remove", "unchanged")
    m = re.match(r"^make\s+(?P<s>.+?)\s+(?:disappear|vanish|go away|be gone|gone)$", t)
    if m:
        return _result(m.group("s"), None, "remove", "unchanged")

    # -- replace / attribute through "change the colour of X to Y"
    m = re.match(r"^(?:change|make|turn|set|switch)\s+the\s+(?:colou?r|material|texture|pattern)s?\s+of\s+"
                 r"(?P<s>.+?)\s+(?:to|into|as)\s+(?P<a>.+)$", t)
    if m:
        obj = clean_object(m.group("s"))
        return _result(obj, _attribute_target(obj, m.group("a")), "attribute", "unchanged")
    m = re.match(r"^(?:change|make|turn|set|switch)\s+(?P<s>.+?)(?:'s)?\s+(?:colou?r|material|texture|pattern)s?\s+"
                 r"(?:to|into|as)\s+(?P<a>.+)$", t)
    if m:
        obj = clean_object(m.group("s"))
        return _result(obj, _attribute_target(obj, m.group("a")), "attribute", "unchanged")
    m = re.match(r"^(?:replace|swap|switch|substitute|exchange|trade)(?:\s+out)?\s+(?P<s>.+?)\s+(?:with|for|by|to|into)\s+(?P<t>.+)$", t)
    if m:
        return _result(m.group("s"), m.group("t"), "replace", size)
    m = re.match(r"^(?:make it |put |use |have |show )?(?P<t>.+?)\s+instead of\s+(?P<s>.+)$", t)
    if m:
        return _result(m.group("s"), m.group("t"), "replace", size)

    # -- size: "make the X bigger", "enlarge the X", "give the bear bigger claws"
    m = re.match(r"^(?:make|let|have|get)\s+(?P<s>.+?)\s+(?:be\s+|look\s+|become\s+)?(?:" + _SIZE_MOD + r"\s+)?"
                 + _w(LARGER + SMALLER) + r"\b(?P<rest>.*)$", t)
    if m and size != "unchanged":
        pos, ref = _direction(m.group("rest"))
        return _result(m.group("s"), m.group("s"), "size", size, pos or "unchanged", ref)
    m = re.match(r"^(?:enlarge|shrink|grow|expand|magnify|scale up|scale down|"
                 r"(?:increase|reduce|decrease|double|halve) the size of)\s+(?P<s>.+)$", t)
    if m:
        return _result(m.group("s"), m.group("s"), "size", size)
    m = re.match(r"^give\s+(?P<r>.+?)\s+(?:" + _SIZE_MOD + r"\s+)?" + _w(LARGER + SMALLER) + r"\s+(?P<s>.+)$", t)
    if m:
        return _result(m.group("s"), m.group("s"), "size", size, "unchanged", m.group("r"))

    # -- position: "move the X to the left", "move the X next to the Y"
    m = re.match(r"^(?:move|shift|slide|relocate|drag|push|pull|reposition)\s+(?P<s>.+?)\s+(?P<rest>(?:"
                 + _PREP_RE + r"|up|down|upward|upwards|downward|downwards|higher|lower|left|right)\b.*)$", t)
    if m:
        pos, ref = _direction(m.group("rest"))
        if pos is not None:
            return _result(m.group("s"), m.group("s"), "position", size, pos, ref)

    # -- what if / imagine: "what if the dog were a cat", "... was holding an umbrella"
    m = re.match(r"^(?:what if|imagine if|imagine|suppose|pretend)\s+(?P<s>.+?)\s+(?:was|were|is|are|became|"
                 r"had been)\s+(?P<rest>.+)$", t)
    if m:
        rest = m.group("rest")
        w = re.match(r"^(?:wearing|holding|carrying|eating|riding|with|having|drinking|reading)\s+(?P<t>.+)$", rest)
        if w:
            return _result(None, w.group("t"), "add", size, "near", m.group("s"))
        if re.match(r"^(?:a|an|some)\s+", rest):
            return _result(m.group("s"), rest, "replace", size)
        obj = clean_object(m.group("s"))
        return _result(obj, _attribute_target(obj, rest), "attribute", size)

    # -- add with a holder: "let the man wear a hat", "have the woman hold a cup"
    m = re.match(r"^(?:let|have|make|get)\s+(?P<r>.+?)\s+(?:wear|wearing|hold|holding|carry|carrying|have|has|"
                 r"put on|eat|eating|ride|riding|drink|drinking|read|reading)\s+(?P<t>.+)$", t)
    if m:
        return _result(None, m.group("t"), "add", size, "near", m.group("r"))
    m = re.match(r"^give\s+(?P<r>.+?)\s+(?P<t>(?:a|an|some|two|three|many)\s+.+)$", t) or \
        re.match(r"^give\s+(?P<r>(?:the\s+)?\w+)\s+(?P<t>.+)$", t)
    if m:
        return _result(None, m.group("t"), "add", size, "near", m.group("r"))

    # -- "let the bus be red", "let the dog be a cat"
    m = re.match(r"^(?:let|have|make)\s+(?!there\b)(?P<s>.+?)\s+be\s+(?P<t>.+)$", t)
    if m:
        target = m.group("t")
        if re.match(r"^(?:a|an)\s+", target) and not _is_attribute(target):
            return _result(m.group("s"), target, "replace", size)
        obj = clean_object(m.group("s"))
        return _result(obj, _attribute_target(obj, target), "attribute", size)
    # -- "have a plane fly in the sky": a new subject doing something somewhere
    m = re.match(r"^(?:have|let|make)\s+(?P<t>(?:a|an|some|two|three|many)\s+\S+)\s+(?P<rest>\S+.*)$", t)
    if m:
        _, ref, pos = _split_prep("x " + m.group("rest"))
        return _result(None, m.group("t"), "add", size, pos, ref)

    # -- add
    m = re.match(r"^(?:add|put|place|insert|include|draw|attach|bring in|bring|plant|hang|show|create|"
                 r"generate|introduce|paste|stick)\s+(?P<rest>.+)$", t)
    if m:
        obj, ref, pos = _split_prep(m.group("rest"))
        return _result(None, obj, "add", size, pos, ref)
    m = re.match(r"^(?:there should be|let there be|there is|there are|have there be|make there be)\s+(?P<rest>.+)$", t)
    if m:
        obj, ref, pos = _split_prep(m.group("rest"))
        return _result(None, obj, "add", size, pos, ref)

    # -- replace through a verb: "turn the horse into a zebra", "make the sandwich a burger"
    m = re.match(r"^(?:change|turn|transform|convert|make|morph)\s+(?P<s>.+?)\s+(?:into|to become|to|become)\s+"
                 r"(?P<t>.+)$", t)
    if m:
        target = m.group("t")
        if _is_attribute(target):
            obj = clean_object(m.group("s"))
            return _result(obj, _attribute_target(obj, target), "attribute", size)
        return _result(m.group("s"), target, "replace", size)
    m = re.match(r"^(?:let|have|make)\s+(?P<s>.+?)\s+(?:be\s+)?(?P<t>(?:a|an)\s+.+)$", t)
    if m:
        return _result(m.group("s"), m.group("t"), "replace", size)
    m = re.match(r"^(?P<s>.+?)\s+(?:should|must|could|will|would)\s+(?:have|get|wear|hold|carry)\s+(?P<t>.+)$", t)
    if m:
        return _result(None, m.group("t"), "add", size, "near", m.group("s"))
    m = re.match(r"^(?P<s>.+?)\s+(?:should|must|could|will|would)\s+(?:be|become|look|turn)\s+(?P<t>.+)$", t)
    if m:
        target = m.group("t")
        w = re.match(r"^(?:wearing|holding|carrying|eating|riding|drinking|reading|with)\s+(?P<t>.+)$", target)
        if w:
            return _result(None, w.group("t"), "add", size, "near", m.group("s"))
        if re.match(r"^(?:a|an)\s+", target) and not _is_attribute(target):
            return _result(m.group("s"), target, "replace", size)
        obj = clean_object(m.group("s"))
        return _result(obj, _attribute_target(obj, target), "attribute", size)

    # -- attribute: "make the cat blue", "paint the rocket red", "make the woman smile"
    m = re.match(r"^(?:make|turn|paint|colou?r|dye|render|let|have|get|recolou?r|tint)\s+(?P<s>.+)\s+"
                 r"(?:be\s+|look\s+|appear\s+|become\s+)?(?P<a>(?:made\s+)?(?:out\s+)?of\s+.+|"
                 + _w(ADJECTIVES + tuple(ACTIONS)) + r"(?:\s+and\s+" + _w(ADJECTIVES) + r")?)$", t)
    if m:
        obj, attr = m.group("s"), m.group("a")
        # keep modifiers such as "bright" with the attribute, not with the object
        while True:  # "the sky orange and" + "pink", "the dog look" + "happy"
            mm = re.match(r"^(?P<o>.+)\s+(?P<w>" + _w(_MODIFIERS + COLOURS) + r")$", obj)
            if mm:
                obj, attr = mm.group("o"), f"{mm.group('w')} {attr}"
                continue
            mm = re.match(r"^(?P<o>.+)\s+(?:look|be|appear|become|seem|look like)$", obj)
            if not mm:
                break
            obj = mm.group("o")
        obj = clean_object(obj)
        return _result(obj, _attribute_target(obj, attr), "attribute", size)
    raise ParseFailure("no rule matches this instruction")


def _is_attribute(text: str) -> bool:
    t = text.strip()
    if re.match(r"^(?:a|an|some)\s+", t):
        return False
    words = t.split()
    return bool(words) and (words[-1] in ADJECTIVES or t.startswith(("made of", "out of")) or
                            all(w in ADJECTIVES + ("and",) for w in words))


class RuleParser:
    """Register-able parser: ``parse(text) -> ParseResult``."""

    id = "rules"
    description = "Deterministic whole-word rules for MagicBrush-style instructions (no weights)"

    def __init__(self, settings: dict | None = None):
        self.settings = settings or {}

    def cache_key(self) -> str:
        return "rules-v1"

    def parse(self, text: str) -> ParseResult:
        try:
            data = validate_parse(parse_rules(text))
        except ParseFailure as exc:
            return ParseResult(parser=self.id, status="failed", error=str(exc))
        return ParseResult(parser=self.id, status="ok", parse=data)
