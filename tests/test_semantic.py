"""Semantic metrics on a tiny random open_clip model: identities, regions,
agreement with a direct open_clip computation, per-metric errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from editmetrics import score_records
from editmetrics.metrics.regions import box_in
from editmetrics.metrics.semantic import COCO_CLASSES, RC_TEMPLATE
from editmetrics.testing.tiny import load_open_clip, write_open_clip

METRICS = ["clip_i", "clip_i@target", "dir_i", "dir_s", "editability_label", "clip_dir", "clip_t",
           "clip_t(scale=clipscore)", "clip_gc", "clip_rc"]


def _save(path, arr):
    Image.fromarray(arr).save(path)
    return path.name


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random CLIP (config JSON + safetensors) and a folder of small edits."""
    root = tmp_path_factory.mktemp("semantic")
    spec = write_open_clip(str(root / "clip"), name="tinyclip_sem", seed=1)
    model, preprocess, tokenizer = load_open_clip(spec)

    src = np.asarray(Image.fromarray(data.astronaut()).resize((96, 96), Image.BICUBIC))
    other = np.asarray(Image.fromarray(data.coffee()).resize((96, 96), Image.BICUBIC))
    mask = np.zeros((96, 96), bool)
    mask[20:60, 30:70] = True
    target = src.copy()
    target[mask] = (255 - target[mask]) // 2  # the "edit": inside the region only
    outside = src.copy()
    outside[~mask] = other[~mask]  # an edit that touches only the background
    surrogate = src.copy()
    surrogate[mask] = other[mask]
    edited_surrogate = surrogate.copy()
    edited_surrogate[mask] = (255 - edited_surrogate[mask]) // 2
    names = {k: _save(root / f"{k}.png", v) for k, v in {
        "source": src, "target": target, "outside": outside, "other": other,
        "surrogate": surrogate, "edited_surrogate": edited_surrogate}.items()}
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "mask.png")
    return {"root": root, "spec": spec, "model": model, "preprocess": preprocess, "tokenizer": tokenizer, "n": names,
            "arrays": {"source": src, "target": target, "other": other, "surrogate": surrogate,
                       "edited_surrogate": edited_surrogate, "outside": outside}, "mask": mask}


def _score(world, records, metrics=METRICS, **settings):
    return score_records(records, metrics, base_dir=str(world["root"]),
                         settings={"clip": world["spec"], **settings})


def _rec(world, **kw):
    n = world["n"]
    rec = {"id": "r", "source": n["source"], "target": n["target"], "edited": n["target"],
           "surrogate": n["surrogate"], "edited_surrogate": n["edited_surrogate"], "mask": "mask.png",
           "source_caption": "an astronaut", "target_caption": "an astronaut in a purple suit",
           "target_bbox": [30, 20, 70, 60], "target_class": "person", "source_class": "person"}
    rec.update(kw)
    return rec


def test_identities(world):
    n = world["n"]
    rows = _score(world, [
        _rec(world),  # edited == target
        _rec(world, id="sur=src", surrogate=n["source"], edited_surrogate=n["target"], edited=n["outside"]),
    ])
    a, b = rows[0]["scores"], rows[1]["scores"]
    assert not rows[0]["errors"] and not rows[1]["errors"], (rows[0]["errors"], rows[1]["errors"])
    assert a["clip_i@target"] == pytest.approx(1.0, abs=1e-6)  # an image with itself
    assert a["dir_i"] == pytest.approx(1.0, abs=1e-6)  # edited = target
    assert a["clip_i"] < 1.0
    # surrogate pair == source pair: DirS is DirI, the editability label is 1
    assert b["dir_s"] == pytest.approx(b["dir_i"], abs=1e-9)
    assert b["editability_label"] == pytest.approx(1.0, abs=1e-6)
    # CLIPScore scale: 2.5 * max(cos, 0) of the prefixed caption
    assert 0.0 <= a["clip_t(scale=clipscore)"] <= 2.5
    for row in rows:
        for key in ("dir_i", "dir_s", "clip_dir", "clip_i"):
            assert -1.0 <= row["scores"][key] <= 1.0


def test_agreement_with_direct_open_clip(world):
    """Every score recomputed from open_clip's model, preprocess and tokenizer."""
    n = world["n"]
    rec = _rec(world, edited=n["outside"])
    row = _score(world, [rec])[0]["scores"]
    model, pre, tok = world["model"], world["preprocess"], world["tokenizer"]

    def img(arr):
        with torch.no_grad():
            v = model.encode_image(pre(Image.fromarray(arr)).unsqueeze(0))[0].double().numpy()
        return v / np.linalg.norm(v)

    def txt(texts):
        with torch.no_grad():
            v = model.encode_text(tok(texts)).double().numpy()
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def cos(u, v):
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    A = world["arrays"]
    E, S, T = img(A["outside"]), img(A["source"]), img(A["target"])
    G, GE = img(A["surrogate"]), img(A["edited_surrogate"])
    ts, tt = txt(["an astronaut", "an astronaut in a purple suit"])
    assert row["clip_i"] == pytest.approx(E @ S, abs=1e-5)
    assert row["clip_i@target"] == pytest.approx(E @ T, abs=1e-5)
    assert row["dir_i"] == pytest.approx(cos(E - S, T - S), abs=1e-4)
    assert row["dir_s"] == pytest.approx(cos(E - S, GE - G), abs=1e-4)
    assert row["editability_label"] == pytest.approx((1 + cos(GE - G, T - S)) / 2, abs=1e-4)
    assert row["clip_dir"] == pytest.approx(cos(E - S, tt - ts), abs=1e-4)
    assert row["clip_t"] == pytest.approx(E @ tt, abs=1e-5)
    hessel = txt(["A photo depicts an astronaut in a purple suit"])[0]
    assert row["clip_t(scale=clipscore)"] == pytest.approx(2.5 * max(E @ hessel, 0), abs=1e-5)

    # CLIP-RC: zero-shot over COCO's classes on the crop of target_bbox
    crop = img(A["outside"][20:60, 30:70])
    vocab = txt([RC_TEMPLATE.format(c) for c in COCO_CLASSES])
    logits = model.logit_scale.exp().item() * (vocab @ crop)
    p = np.exp(logits - logits.max())
    assert row["clip_rc"] == pytest.approx(100 * p[COCO_CLASSES.index("person")] / p.sum(), abs=1e-3)

    # CLIP-GC: mask and target_bbox (the same square here) filled with CLIP's mean colour
    fill = np.rint(np.array(pre.transforms[-1].mean) * 255).astype(np.uint8)
    e_bg, s_bg = A["outside"].copy(), A["source"].copy()
    e_bg[world["mask"]] = fill
    s_bg[world["mask"]] = fill
    assert row["clip_gc"] == pytest.approx(100 * img(e_bg) @ img(s_bg), abs=1e-3)


def test_regions_change_what_counts(world):
    """An edit inside the region leaves CLIP-GC at 100; one outside lowers it."""
    n = world["n"]
    rows = _score(world, [_rec(world, id="inside", edited=n["target"]),
                          _rec(world, id="outside", edited=n["outside"])], ["clip_gc", "clip_i"])
    inside, outside = rows[0]["scores"], rows[1]["scores"]
    assert inside["clip_gc"] == pytest.approx(100.0, abs=1e-4)
    assert inside["clip_i"] < 1.0  # the whole-image score does see the edit
    assert outside["clip_gc"] < inside["clip_gc"]
    assert rows[0]["details"]["clip_gc"]["regions"] == ["target_bbox", "mask"]


def test_rc_delete_uses_source_class_and_region(world):
    rows = _score(world, [
        _rec(world, id="rep", operation="replace", target_class="zebra", source_class="person"),
        _rec(world, id="del", operation="delete", target_class="zebra", source_class="person",
             target_bbox=None, source_bbox=[0, 0, 40, 40]),
        _rec(world, id="new", target_class="space suit"),  # a class outside COCO joins the vocabulary
        _rec(world, id="nobox", target_bbox=None, mask=None),
        # BPM's field names: edit_type=remove, source_object
        _rec(world, id="bpm", edit_type="remove", source_object="cat", source_class=None, target_class=None,
             target_bbox=None, source_bbox=[8, 8, 50, 50]),
    ], ["clip_rc"])
    assert rows[0]["details"]["clip_rc"]["class"] == "zebra"
    d = rows[1]["details"]["clip_rc"]
    assert d["class"] == "person" and d["region"] == "source_bbox" and d["lower_is_better"] is True
    assert rows[2]["details"]["clip_rc"]["vocabulary"] == len(COCO_CLASSES) + 1
    assert rows[3]["scores"]["clip_rc"] is None and "needs a region" in rows[3]["errors"]["clip_rc"]
    d = rows[4]["details"]["clip_rc"]
    assert d["class"] == "cat" and d["operation"] == "remove" and d["region"] == "source_bbox"


def test_box_is_scaled_to_the_image_it_is_applied_to(world):
    from editmetrics.data.records import EditRecord
    from editmetrics.engine.runner import LoadedRecord, RecordView, RunContext

    src = np.zeros((50, 100, 3), np.float32)
    big = np.zeros((100, 200, 3), np.float32)
    rec = RecordView(LoadedRecord(EditRecord("x", {"bbox": [10, 5, 30, 25]}, ".", 1), images={"source": src}),
                     RunContext())
    assert box_in(rec, "bbox", big) == (20.0, 10.0, 60.0, 50.0)
    assert box_in(rec, "bbox", src) == (10.0, 5.0, 30.0, 25.0)


def test_zero_direction_is_an_error_not_a_score(world):
    n = world["n"]
    row = _score(world, [_rec(world, edited=n["source"])], ["dir_i", "clip_i"])[0]
    assert row["scores"]["dir_i"] is None and "zero" in row["errors"]["dir_i"]
    assert row["scores"]["clip_i"] == pytest.approx(1.0, abs=1e-6)


def test_missing_fields_are_per_metric(world):
    rec = _rec(world)
    for key in ("surrogate", "edited_surrogate", "source_caption"):
        rec.pop(key)
    row = _score(world, [rec], ["clip_i", "dir_s", "editability_label", "clip_dir"])[0]
    assert row["scores"]["clip_i"] is not None
    assert "surrogate" in row["errors"]["dir_s"] and "surrogate" in row["errors"]["editability_label"]
    assert "source_caption" in row["errors"]["clip_dir"]


def test_disk_cache_serves_a_rerun_without_encoding(world, tmp_path, monkeypatch):
    """A second run (e.g. --resume, or other metrics on the same data) reads the
    embeddings from feature_cache: with encoding made impossible it still scores."""
    from editmetrics.weights.backbones import OpenClipEncoder

    n = world["n"]
    recs = [_rec(world, edited=n["outside"])]
    first = _score(world, recs, ["clip_i", "dir_i", "clip_t"], feature_cache=str(tmp_path))
    assert len(list(tmp_path.rglob("*.npy"))) == 4  # source, target, edited, one text

    def refuse(self, items):
        raise AssertionError("encoded although cached")

    monkeypatch.setattr(OpenClipEncoder, "encode_images", refuse)
    monkeypatch.setattr(OpenClipEncoder, "encode_texts", refuse)
    second = _score(world, recs, ["clip_i@target", "dir_i", "clip_t"], feature_cache=str(tmp_path))
    assert second[0]["errors"] == {}
    assert second[0]["scores"]["dir_i"] == first[0]["scores"]["dir_i"]
    assert second[0]["scores"]["clip_t"] == first[0]["scores"]["clip_t"]
