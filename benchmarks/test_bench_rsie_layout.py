"""R-SIE Table 2 layout (CLIP-RC, CLIP-GC, DINO-I, CLIP-I per operation) for the baseline editors.

Needs CLIP and DINO weights: set ``EDITMETRICS_CLIP`` and ``EDITMETRICS_DINO``
(or ``clip`` / ``dino`` in editmetrics.toml; docs/semantic.md); skipped
otherwise. Records: skimage.data photographs with one replace, create and
delete edit each (classes, boxes, a constructed ground-truth target), so the
table shows how the metrics treat an editor that changes nothing (identity)
or only adds noise: RC stays low for replace/create, GC and DINO-I/CLIP-I
high. With random test weights the numbers mean nothing; the layout does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from editmetrics.analysis import tables

METRICS = ["clip_rc", "clip_gc", "dino_i@target", "clip_i@target", "dino_i", "clip_i"]
BOX = [40, 24, 120, 88]
# (photo, operation, class field, class)
EDITS = (("chelsea", "replace", "target_class", "dog"), ("coffee", "create", "target_class", "donut"),
         ("rocket", "delete", "source_class", "rocket"), ("astronaut", "replace", "target_class", "teddy bear"))


@pytest.fixture(scope="module")
def rsie_pairs(tmp_path_factory, editmetrics_settings):
    missing = [k for k in ("clip", "dino") if not editmetrics_settings.get(k)]
    if missing:
        pytest.skip(f"needs weights: set {', '.join('EDITMETRICS_' + k.upper() for k in missing)} (docs/semantic.md)")
    from skimage import data

    root = tmp_path_factory.mktemp("rsie")
    lines = []
    for i, (name, op, field, cls) in enumerate(EDITS):
        src = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((160, 112), Image.BICUBIC))
        tgt = src.copy()
        x0, y0, x1, y1 = BOX
        tgt[y0:y1, x0:x1] = tgt[y0:y1, x0:x1][..., ::-1]  # constructed "ground truth": region recoloured
        Image.fromarray(src).save(root / f"{i}_src.png")
        Image.fromarray(tgt).save(root / f"{i}_gt.png")
        side = "source_bbox" if op == "delete" else "target_bbox"
        lines.append(json.dumps({"id": f"{name}-{op}", "source": f"{i}_src.png", "target": f"{i}_gt.png",
                                 "operation": op, field: cls, side: BOX, "instruction": f"{op} {cls}"}))
    pairs = root / "pairs.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    return str(pairs)


def test_rsie_layout(rsie_pairs, editmetrics_run_model, editmetrics_score, editmetrics_results):
    runs = {}
    for label, model, params in (("identity", "identity", {}), ("noise-0.05", "noise", {"sigma": 0.05})):
        rows = editmetrics_score(editmetrics_run_model(model, rsie_pairs, **params), METRICS)
        for row in rows:
            assert not row["errors"], row["errors"]
        runs[label] = rows
    table = tables.rsie_table(runs, title="Baselines, R-SIE Table 2 layout (CLIP-I/DINO-I vs ground truth)")
    editmetrics_results.add("baselines_rsie_layout", table)
    assert [g for g, _ in table.groups] == ["Replace", "Create", "Delete"]
    values = dict((tuple(labels), vals) for labels, vals, _ in table.rows)
    assert all(v is not None for v in values[("identity",)])  # every column filled
    # the paper leaves CLIP-I's reference open: the same runs with both readings side by side
    both = tables.rsie_table(runs, title="Baselines, R-SIE Table 2 layout (CLIP-I/DINO-I vs ground truth and "
                                         "vs input)", reference="both")
    editmetrics_results.add("baselines_rsie_layout_both_references", both)
    labels = [c.label for g, c in both.columns if g == "Replace"]
    assert labels == ["RC", "GC", "DINO-I@target", "CLIP-I@target", "DINO-I@source", "CLIP-I@source"]
    row = next(values for labels, values, _ in both.rows if labels == ["identity"])
    identity = dict(zip([f"{g}/{c.label}" for g, c in both.columns], row))
    assert identity["Replace/CLIP-I@source"] == pytest.approx(100.0, abs=1e-3)  # identity editor: edited == input
