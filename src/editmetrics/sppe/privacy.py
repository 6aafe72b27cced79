"""SPPE's privacy taxonomy: 36 fine-grained categories in 11 privacy groups.

Source: the SPPE paper (shared/papers/sppe-erma-c2e-s2ser.txt), section 3.3
"Privacy Attribute Taxonomy", Table 2 (privacy modality | privacy group |
privacy category (count)). The per-group results (Tables 5-6, and Fig. 10
with its "SRCC std = 0.092") use these 11 groups; their column headers
shorten four Table-2 names ("Biometric Info" -> "Biometric", "Contact Info"
-> "Contact", "Identity Info" -> "Identity", "Financial Info" ->
"Financial"). The ``privacy_group`` field holds the Tables 5-6 name.

Category names are compared after ``normalise`` (lower case, ``_``/``-``
as spaces), so ``human_face`` and ``Human Face`` are the paper's ``human face``.
"""

from __future__ import annotations

import re
from typing import Iterable

# (Tables 5-6 name, Table 2 name, modality, {category: instance count in Table 2}), in Table 2's order
TAXONOMY = (
    ("Face", "Face", "Visual", {"human face": 276, "faces": 9366}),
    ("Body", "Body", "Visual", {"person": 434}),
    ("Biometric", "Biometric Info", "Visual", {"fingerprint": 92, "signature": 664, "handwriting": 1150}),
    ("Document", "Document", "Textual", {"passport cover": 28, "drivers license": 130, "student id": 134,
                                         "ausweis": 80, "education history": 152, "passport": 506}),
    ("Contact", "Contact Info", "Textual", {"email": 136, "home address": 280, "phone": 372,
                                            "current address": 2786}),
    ("Identity", "Identity Info", "Textual", {"name all": 2508, "birth date": 260, "username": 146}),
    ("Time", "Time", "Textual", {"date time": 3020}),
    ("Monitor", "Monitor", "Multimodal", {"laptop": 28, "tablet computer": 8, "television": 26, "monitor": 108,
                                          "computer monitor": 46, "laptop computer": 118}),
    ("Financial", "Financial Info", "Multimodal", {"credit card": 180, "receipt": 436}),
    ("License Plate", "License Plate", "Multimodal", {"vehicle registration plate": 96, "plate": 110,
                                                      "multi-vehicle plates": 858}),
    ("Others", "Others", "Multimodal", {"picture frame": 60, "ticket": 1074, "medicine": 136, "mail": 314,
                                        "landmark": 1730}),
)

# Column order of Tables 5-6 (differs from Table 2: Financial and Monitor before License Plate and Time)
TABLE_ORDER = ("Face", "Body", "Biometric", "Document", "Contact", "Identity", "Financial", "Monitor",
               "License Plate", "Time", "Others")
GROUP_FIELD = "privacy_group"


def normalise(name) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name))).strip().lower()


_BY_CATEGORY = {normalise(cat): group for group, _, _, cats in TAXONOMY for cat in cats}
_BY_GROUP_NAME = {normalise(n): group for group, t2, _, _ in TAXONOMY for n in (group, t2)}


def privacy_group(category) -> str | None:
    """The Tables 5-6 group name of an SPPE category, or None when the
    category is not one of the paper's 36."""
    if category in (None, ""):
        return None
    return _BY_CATEGORY.get(normalise(category))


def canonical_group(name) -> str | None:
    """A group name as given (Table 2 or Tables 5-6 spelling, any case) -> the Tables 5-6 name."""
    return None if name in (None, "") else _BY_GROUP_NAME.get(normalise(name))


def group_of(row: dict) -> str | None:
    """A record's privacy group: its own ``privacy_group`` field when set (one
    of the 11 in either spelling -> the Tables 5-6 name; another name as
    given), else the group of its ``category``."""
    own = row.get(GROUP_FIELD)
    if own not in (None, ""):
        return canonical_group(own) or str(own)
    return privacy_group(row.get("category"))


def order_key(name: str) -> tuple[int, str]:
    """Sort key: Tables 5-6 column order (any spelling), then other names alphabetically."""
    canon = canonical_group(name)
    return (TABLE_ORDER.index(canon), "") if canon else (len(TABLE_ORDER), str(name))


def with_privacy_groups(rows: Iterable[dict]) -> tuple[list[dict], list[str]]:
    """Rows with ``privacy_group`` as ``group_of`` reads it (filled from
    ``category`` where missing, the 11 names spelled as in Tables 5-6; changed
    rows are copies, the input is not modified), and the sorted categories
    that map to no group (those rows keep no group)."""
    out, unknown = [], set()
    for row in rows:
        group = group_of(row)
        if group is None:
            if row.get("category") not in (None, ""):
                unknown.add(str(row["category"]))
        elif group != row.get(GROUP_FIELD):
            row = {**row, GROUP_FIELD: group}
        out.append(row)
    return out, sorted(unknown)
