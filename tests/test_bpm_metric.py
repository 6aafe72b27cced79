"""BPM metric: judges against direct numpy, S_modify against direct open_clip,
grounding with tiny random GroundingDINO + SAM, pool normalisation, protocols."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from editmetrics.bpm import judges, released
from editmetrics.data.images import resize_mask
from editmetrics.bpm.protocols import ProtocolError, ground_truth_test, human_alignment, pool_rows
from editmetrics.engine.runner import score_file, score_records
from editmetrics.testing.tiny import load_open_clip, write_grounding, write_open_clip

from helpers import REPO, photo, read_jsonl, run_cli, save, write_pairs

@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A random tiny open_clip model saved as config JSON + safetensors (editmetrics.testing.tiny),
    and the same files loaded back with plain open_clip for direct comparisons."""
    spec = write_open_clip(str(tmp_path_factory.mktemp("bpmclip")), name="tinyclip_bpm", seed=0)
    model, preprocess, tokenizer = load_open_clip(spec)
    return {"spec": spec, "model": model, "preprocess": preprocess, "tokenizer": tokenizer}


def _mask_png(mask, path):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return os.path.basename(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A real photograph; the edited copy repaints a grown region and adds faint
    noise elsewhere, so preservation is neither perfect nor trivial."""
    root = tmp_path_factory.mktemp("bpmscene")
    src = photo("astronaut", (96, 64))
    rng = np.random.default_rng(0)
    edited = np.clip(src.astype(int) + rng.integers(-3, 4, src.shape), 0, 255).astype(np.uint8)
    m_src = np.zeros((64, 96), bool)
    m_src[20:40, 30:50] = True  # 400 px
    m_tgt = np.zeros((64, 96), bool)
    m_tgt[15:45, 28:48] = True  # 600 px: 1.5x larger
    edited[m_tgt] = [30, 60, 200]
    save(src, str(root / "src.png"))
    save(edited, str(root / "edit.png"))
    _mask_png(m_src, root / "m_src.png")
    _mask_png(m_tgt, root / "m_tgt.png")
    return {"root": root, "src": src, "edited": edited, "m_src": m_src, "m_tgt": m_tgt}


def _rec(**fields):
    base = {"id": "r", "source": "src.png", "edited": "edit.png"}
    base.update(fields)
    return base


def _direct_preserve(src, edited, region):
    # images decode to float32 k/255 (editmetrics.data.images); the difference is taken in float64
    d = (edited.astype(np.float32) / 255.0).astype(np.float64) - (src.astype(np.float32) / 255.0).astype(np.float64)
    rms = np.sqrt(np.mean(d * d, axis=2))
    return 1.0 - rms[~region].mean()


def _frames(scene):
    return released.frame(scene["src"]), released.frame(scene["edited"])


def _m500(mask):
    return resize_mask(mask, (500, 500))


def test_s_preserve_and_s_size_equal_direct_numpy(scene, clip):
    recs = [
        _rec(id="larger", instruction="make the astronaut bigger", source_mask="m_src.png", target_mask="m_tgt.png"),
        _rec(id="smaller", instruction="make the astronaut smaller", source_mask="m_src.png", target_mask="m_tgt.png"),
        _rec(id="colour", instruction="make the astronaut blue", source_mask="m_src.png",
             target_mask="m_tgt.png"),
    ]
    src500, edi500 = _frames(scene)
    for variant in ("released", "corrected"):
        key = "bpm" if variant == "released" else "bpm(variant=corrected)"
        rows = {r["id"]: r for r in score_records(recs, [key], base_dir=str(scene["root"]),
                                                  settings={"clip": clip["spec"]})}
        # released: the source mask only (a supplied source mask stands for SAM on both images), uint8
        # arithmetic; corrected: the union of both masks, float arithmetic
        mask = _m500(scene["m_src"]) if variant == "released" else _m500(scene["m_src"]) | _m500(scene["m_tgt"])
        expected = 1 - released.l2(src500, edi500, mask, uint8=variant == "released")
        # first boxes: bbox of the masks, 20x20 -> 20x30: ratio 1.5; size judged only for size edits
        for rid, size_ok in (("larger", 1.0), ("smaller", 0.0), ("colour", 1.0)):
            s = rows[rid]["scores"]
            assert rows[rid]["errors"] == {}
            assert s[f"{key}.s_preserve"] == expected
            assert s[f"{key}.s_size"] == size_ok
            d = rows[rid]["details"][key]
            assert d["regions"] == {"source": "record:source_mask", "target": "record:target_mask"}
            assert d["branch"] == "normal" and d["variant"] == variant
            # fixed-range BPM is exactly the paper's combination of its components
            sem = (s[f"{key}.s_modify"] + 1) / 2 + s[f"{key}.s_preserve"]
            assert s[f"{key}.s_semantic"] == pytest.approx(sem, abs=1e-12)
            assert s[key] == pytest.approx(0.7 * sem + 0.3 * (s[f"{key}.s_size"] + s[f"{key}.s_position"]),
                                           abs=1e-12)


def test_position_of_moves_only_on_request_and_size_from_first_boxes(scene, clip):
    recs = [
        _rec(id="right", source_object="astronaut", target_object="astronaut", edit_type="position",
             position_change="right", source_bbox=[10, 10, 30, 30], target_bbox=[50, 12, 70, 32]),
        _rec(id="left", source_object="astronaut", target_object="astronaut", edit_type="position",
             position_change="left", source_bbox=[10, 10, 30, 30], target_bbox=[50, 12, 70, 32]),
        _rec(id="box-size", source_object="astronaut", target_object="astronaut", edit_type="size",
             size_change="larger", source_bbox=[10, 10, 30, 30], target_bbox=[10, 10, 40, 40]),
    ]
    for key, left in (("bpm", 1.0), ("bpm(position_moves=true)", 0.0)):
        rows = {r["id"]: r for r in score_records(recs, [key], base_dir=str(scene["root"]),
                                                  settings={"clip": clip["spec"]})}
        assert rows["right"]["scores"][f"{key}.s_position"] == 1.0
        assert rows["left"]["scores"][f"{key}.s_position"] == left  # released: moves are not judged
        assert rows["box-size"]["scores"][f"{key}.s_size"] == 1.0  # 900 / 400 > 1.2
    assert rows["right"]["details"][key]["parse"] == {"supplied": ["edit_type", "position_change", "source_object",
                                                                   "target_object"]}
    # released: a supplied box stands for its filled rectangle; the source's only
    src500, edi500 = _frames(scene)
    region = judges.box_mask(released.to_frame((10, 10, 30, 30), 96, 64), 500, 500)
    assert rows["right"]["scores"][f"{key}.s_preserve"] == 1 - released.l2(src500, edi500, region)


def test_l2_uint8_arithmetic_is_squared_difference_mod_256():
    src = np.full((8, 8, 3), 100, np.uint8)
    for delta, aliased in ((-1, 1), (1, 1), (15, 225), (16, 0), (17, 33), (-40, 64)):
        edited = (src.astype(int) + delta).astype(np.uint8)
        # darker by 1 is 255 after the uint8 subtraction, but 255 * 255 = 1 (mod 256): exact
        assert released.l2(src, edited, None) == pytest.approx(np.sqrt(aliased) / 255, abs=1e-12)
        assert released.l2(src, edited, None, uint8=False) == pytest.approx(abs(delta) / 255, abs=1e-12)
    worst = np.zeros((4, 4, 3), np.uint8)
    assert max(released.l2(worst, worst + d, None) for d in range(256)) <= np.sqrt(255) / 255 + 1e-12


def test_s_modify_is_the_raw_feature_direction_on_the_source_box_crop(scene, clip):
    rec = _rec(instruction="make the astronaut blue", source_mask="m_src.png", target_mask="m_tgt.png")
    row = score_records([rec], ["bpm"], base_dir=str(scene["root"]), settings={"clip": clip["spec"]})[0]
    crop = row["details"]["bpm"]["modify_crop_500"]
    # the source box (bbox of m_src, [30, 20, 50, 40] in 96x64) in the 500 frame, x1.5 about its centre
    box = released.to_frame((30, 20, 50, 40), 96, 64)
    assert crop == [round(v, 2) for v in released.crop_box([box])]
    model, pre, tok = clip["model"], clip["preprocess"], clip["tokenizer"]
    src500, edi500 = _frames(scene)

    def img(arr):
        with torch.no_grad():  # raw features: no L2 normalisation (released code)
            return model.encode_image(pre(Image.fromarray(released.crop(arr, released.crop_box([box])))
                                          ).unsqueeze(0))[0].numpy()

    def txt(t):
        with torch.no_grad():
            return model.encode_text(tok([t]))[0].numpy()

    di = img(edi500) - img(src500)
    dt = txt("blue astronaut") - txt("astronaut")
    expected = float(di @ dt / (np.linalg.norm(di) * np.linalg.norm(dt)))
    assert row["scores"]["bpm.s_modify"] == pytest.approx(expected, abs=1e-5)


def test_examples_local_recolour_beats_whole_image_change_on_preservation(tmp_path, clip):
    out = tmp_path / "ex.jsonl"
    score_file(os.path.join(REPO, "examples", "pairs.jsonl"), ["bpm"], str(out), settings={"clip": clip["spec"]},
               progress=False)
    rows = {r["id"]: r for r in read_jsonl(str(out))}
    local, whole = rows["cat-blue"]["scores"], rows["cat-blue-global"]["scores"]
    assert local["bpm.s_preserve"] > whole["bpm.s_preserve"]
    # released uint8 arithmetic: 1 - L2 never falls below 1 - sqrt(255)/255 = 0.937
    assert whole["bpm.s_preserve"] >= 1 - np.sqrt(255) / 255
    # the sepia record is a global edit: released rules (CLIP-T with the instruction, perfect
    # preservation, size = position = 1, the same 0.7 / 0.3 weights)
    sepia = rows["coffee-sepia"]
    assert sepia["details"]["bpm"]["edit"]["edit_type"] == "global"
    assert sepia["details"]["bpm"]["branch"] == "global" and sepia["scores"]["bpm.s_preserve"] == 1.0
    assert sepia["scores"]["bpm.s_region"] == 2.0
    assert sepia["scores"]["bpm"] == pytest.approx(0.7 * sepia["scores"]["bpm.s_semantic"] + 0.6, abs=1e-12)
    # the reference object ("astronaut") needs a grounder or a reference_bbox: a recorded reason
    assert "bpm_groundingdino" in rows["astronaut-noise"]["errors"]["bpm"]

    # pool normalisation after the pass: a new file, raw components kept
    pooled = tmp_path / "pooled.jsonl"
    proc = run_cli("bpm", "pool", str(out), "--out", str(pooled))
    assert proc.returncode == 0, proc.stderr
    prow = {r["id"]: r for r in read_jsonl(str(pooled))}
    mods = [r["scores"]["bpm.s_modify"] for r in prow.values() if r["scores"].get("bpm.s_modify") is not None]
    for r in prow.values():
        s = r["scores"]
        if s.get("bpm.s_modify") is None:
            assert s["bpm"] is None
            continue
        nm = (s["bpm.s_modify"] - min(mods)) / (max(mods) - min(mods))
        assert s["bpm.s_modify_norm"] == pytest.approx(nm, abs=1e-12)
        assert s["bpm.s_modify"] == rows[r["id"]]["scores"]["bpm.s_modify"]  # raw kept
        assert r["details"]["bpm"]["normalisation"]["mode"] == "pool"
    assert run_cli("bpm", "pool", str(out), "--out", str(pooled)).returncode == 2  # never overwrites


def test_missing_clip_keeps_components_and_says_why(scene):
    rec = _rec(instruction="make the astronaut blue", source_mask="m_src.png", target_mask="m_tgt.png")
    row = score_records([rec], ["bpm"], base_dir=str(scene["root"]),
                        settings={"clip": "ViT-B-32:/nonexistent/b32.safetensors"})[0]
    assert row["scores"]["bpm"] is None and row["scores"]["bpm.s_modify"] is None
    assert row["scores"]["bpm.s_preserve"] is not None
    assert "S_modify not computed" in row["errors"]["bpm"] and "b32.safetensors" in row["errors"]["bpm"]


def test_parse_failure_is_recorded(scene, clip):
    row = score_records([_rec(instruction="xyzzy plugh", mask="m_src.png")], ["bpm"], base_dir=str(scene["root"]),
                        settings={"clip": clip["spec"]})[0]
    assert row["scores"]["bpm"] is None
    assert row["errors"]["bpm"].startswith("instruction parse failed (rules)")


# ---------------------------------------------------------------------------
# judges on constructed boxes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("anchor, moved, change, ok", [
    ((100, 100, 200, 200), (300, 110, 400, 210), "right", True),
    ((100, 100, 200, 200), (300, 110, 400, 210), "left", False),
    ((100, 100, 200, 200), (120, 100, 220, 200), "right", False),  # IoU 0.67: not salient
    ((100, 100, 200, 200), (110, 300, 190, 400), "down", True),
    ((100, 300, 200, 400), (110, 0, 190, 100), "up", True),
    ((100, 100, 200, 200), (300, 0, 400, 80), "up", False),  # mostly sideways
    ((100, 100, 300, 300), (150, 150, 200, 200), "inside", True),
    ((100, 100, 300, 300), (100, 150, 200, 200), "inside", False),  # touching the edge: not strict
    ((100, 100, 200, 200), (110, 110, 210, 210), "unchanged", True),
    ((100, 100, 200, 200), (160, 100, 260, 200), "unchanged", False),
    ((100, 100, 200, 200), (230, 100, 300, 200), "near", True),
    ((100, 100, 200, 200), (300, 100, 400, 200), "near", False),
])
def test_position_pairs(anchor, moved, change, ok):
    assert judges.position_ok(anchor, moved, change) is ok


def test_position_partial_credit_and_frame():
    anchors = [(100, 100, 200, 200)]
    assert judges.f_position(anchors, [(300, 110, 400, 210), (0, 110, 90, 210)], "right", "position",
                             500, 500) == 0.5
    assert judges.f_position(anchors, [], "right", "position", 500, 500) == 0.0
    assert judges.f_position([], [], "left", "remove", 500, 500) == 1.0
    # 30 px apart in a 250-px image is 60 px in the 500 frame: not "unchanged"
    assert judges.f_position([(0, 0, 50, 50)], [(30, 0, 80, 50)], "unchanged", "attribute", 250, 250) == 0.0
    assert judges.f_position([(0, 0, 50, 50)], [(30, 0, 80, 50)], "unchanged", "attribute", 1000, 1000) == 1.0


def test_size_thresholds():
    assert judges.f_size(100, 121, "larger", "size") == 1.0
    assert judges.f_size(100, 120, "larger", "size") == 0.0
    assert judges.f_size(100, 79, "smaller", "size") == 1.0
    assert judges.f_size(100, 80, "unchanged", "attribute") == 1.0
    assert judges.f_size(0, 50, "larger", "add") == 1.0  # add: full score (appendix A.4)


def test_directional_text_sides():
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    t = np.array([0, 0.6, 0.8])
    assert judges.directional(a, b, None, t) == pytest.approx((b - a) @ t / (np.sqrt(2) * 1.0))
    assert judges.directional(a, b, t, None) == pytest.approx(-(b - a) @ t / np.sqrt(2))
    assert judges.directional(a, a, None, t) == 0.0


# ---------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------


def _results(scores):
    return [{"id": rid, "scores": {"bpm": v}} for rid, v in scores.items()]


def test_human_alignment_by_hand():
    human = [
        {"input": 1, "model": "A", "id": "1a", "human": 4}, {"input": 1, "model": "B", "id": "1b", "human": 2},
        {"input": 2, "model": "A", "id": "2a", "human": 1}, {"input": 2, "model": "B", "id": "2b", "human": 5},
        {"input": 3, "model": "A", "id": "3a", "human": 3}, {"input": 3, "model": "B", "id": "3b", "human": 3},
    ]
    results = _results({"1a": 0.9, "1b": 0.1, "2a": 0.8, "2b": 0.2, "3a": 0.1, "3b": 0.5})
    # input 1 agrees; input 2 disagrees; input 3: people tie (P_h = 0), metric prefers B (P_m = 0): agrees
    rep = human_alignment(human, results, "bpm")
    assert rep["pairs"] == {"A vs B": {"alignment": 2 / 3, "n": 3}} and rep["average"] == 2 / 3
    assert human_alignment(human, results, "bpm", ties="skip")["average"] == 0.5
    assert human_alignment(human, results, "bpm", higher_is_better=False)["average"] == 1 / 3


def test_ground_truth_test_by_hand():
    triplets = [{"input": i, "ep": f"{i}p", "em": f"{i}m", "gt": f"{i}g"} for i in range(3)]
    results = _results({"0p": 0.1, "0m": 0.2, "0g": 0.9, "1p": 0.8, "1m": 0.1, "1g": 0.3,
                        "2p": 0.5, "2m": 0.1, "2g": 0.5})
    rep = ground_truth_test(triplets, results, "bpm")
    assert rep["win_rate"] == pytest.approx({"EP": 1.5 / 3, "EM": 0.0, "GT": 1.5 / 3})
    assert sum(rep["win_rate"].values()) == pytest.approx(1.0)
    with pytest.raises(ProtocolError):
        ground_truth_test(triplets, [], "bpm")


def test_protocol_commands(tmp_path):
    results = tmp_path / "r.jsonl"
    write_pairs(str(results), _results({"1a": 0.9, "1b": 0.1, "0p": 0.1, "0m": 0.2, "0g": 0.9}))
    human = tmp_path / "h.csv"
    human.write_text("input,model,id,human\n1,A,1a,5\n1,B,1b,1\n")
    proc = run_cli("bpm", "align", "--human", str(human), "--results", str(results), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["average"] == 1.0
    trip = tmp_path / "t.jsonl"
    write_pairs(str(trip), [{"input": 0, "ep": "0p", "em": "0m", "gt": "0g"}])
    proc = run_cli("bpm", "gt-test", "--triplets", str(trip), "--results", str(results), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["win_rate"] == {"EP": 0.0, "EM": 0.0, "GT": 1.0}


def test_pool_rows_global_and_degenerate():
    rows = [{"id": "a", "scores": {"bpm.s_modify": -0.2, "bpm.s_preserve": 0.9, "bpm.s_region": 2.0},
             "details": {"bpm": {"alpha": 0.7}}},
            {"id": "b", "scores": {"bpm.s_modify": 0.6, "bpm.s_preserve": 0.7, "bpm.s_region": None},
             "details": {"bpm": {"alpha": 0.7}}},
            # exactly 1 (released preservation 0: a global edit) is left out of the range, not of the pool
            {"id": "g", "scores": {"bpm.s_modify": 0.2, "bpm.s_preserve": 1.0, "bpm.s_region": 2.0},
             "details": {"bpm": {"alpha": 0.7}}}]
    out, summary = pool_rows(rows)
    a, b, g = (r["scores"] for r in out)
    assert (a["bpm.s_modify_norm"], a["bpm.s_preserve_norm"]) == (0.0, 1.0)
    assert a["bpm"] == pytest.approx(0.7 * 1.0 + 0.3 * 2.0)
    assert b["bpm"] == b["bpm.s_semantic"] == 1.0  # no region scores: S_semantic alone
    assert g["bpm.s_preserve_norm"] == pytest.approx(1.5)  # (1 - 0.7) / (0.9 - 0.7): above 1, as released
    assert summary["n"] == 3 and summary["s_preserve_excluded"] == 1 and rows[0]["scores"].get("bpm") is None
    with pytest.raises(ProtocolError, match="single value"):
        pool_rows(rows[:1])
    # nothing left for the preservation range (the released script crashes): documented fallback
    out, summary = pool_rows([rows[2], {**rows[2], "id": "h", "scores": {**rows[2]["scores"], "bpm.s_modify": 0.5}}])
    assert summary["s_preserve_range"] is None and "fallback" in str(summary)
    assert [r["scores"]["bpm.s_preserve_norm"] for r in out] == [0.0, 0.0]


# ---------------------------------------------------------------------------
# grounding: tiny random GroundingDINO + SAM built from their real architectures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grounding_models(tmp_path_factory):
    """Random tiny transformers GroundingDINO + SAM folders (editmetrics.testing.tiny)."""
    return write_grounding(str(tmp_path_factory.mktemp("grounding")), seed=0)


def test_grounded_bpm_end_to_end(scene, clip, grounding_models, tmp_path, monkeypatch):
    from editmetrics.bpm.grounding import HFGroundingDinoSam

    calls = []
    real = HFGroundingDinoSam.ground

    def counting(self, items):
        calls.append(len(items))
        return real(self, items)

    monkeypatch.setattr(HFGroundingDinoSam, "ground", counting)
    for name in ("src.png", "edit.png"):
        shutil.copy(scene["root"] / name, tmp_path / name)
    recs = [_rec(id=f"g{i}", instruction=text) for i, text in
            enumerate(["make the astronaut blue", "replace the astronaut with a cat", "remove the helmet"])]
    settings = {"clip": clip["spec"], "bpm_mask_dir": str(tmp_path / "masks"), **grounding_models}
    # thresholds 0: a random detector's scores are arbitrary; every query box is kept
    rows = score_records(recs, ["bpm(box_threshold=0.0,text_threshold=0.0)"], base_dir=str(tmp_path),
                         settings=settings, batch_size=8)
    key = "bpm(box_threshold=0.0,text_threshold=0.0)"
    assert calls == [5]  # one batched grounding call for the 5 phrases of 3 records
    src500, edi500 = released.frame(scene["src"]), released.frame(scene["edited"])
    for row in rows:
        assert row["errors"] == {}, row["errors"]
        d = row["details"][key]
        assert set(d["regions"].values()) == {"grounding"}
        for boxes in d["boxes_500"].values():
            for box in boxes:
                assert 0 <= box[0] < box[2] <= 500 and 0 <= box[1] < box[3] <= 500
        if d["branch"] == "normal":
            mask = np.asarray(Image.open(d["mask_file"])) > 0
            assert row["scores"][f"{key}.s_preserve"] == 1 - released.l2(src500, edi500, mask)
        assert row["scores"][key] is not None
    removal = rows[2]["details"][key]
    assert "target" not in removal["boxes_500"] and removal["edit"]["edit_type"] == "remove"


def test_missing_grounding_model_message(scene, clip):
    row = score_records([_rec(instruction="make the astronaut blue")], ["bpm"], base_dir=str(scene["root"]),
                        settings={"clip": clip["spec"], "bpm_groundingdino": "/nonexistent/gdino",
                                  "bpm_sam": "/nonexistent/sam"})[0]
    assert "GroundingDINO not found" in row["errors"]["bpm"] and "/nonexistent/gdino" in row["errors"]["bpm"]


def test_csv_records_with_box_strings(scene, clip, tmp_path):
    for name in ("src.png", "edit.png"):
        shutil.copy(scene["root"] / name, tmp_path / name)
    (tmp_path / "pairs.csv").write_text(
        "id,source,edited,instruction,source_bbox,target_bbox\n"
        'a,src.png,edit.png,move the astronaut to the right,"[10, 10, 30, 30]","[50, 12, 70, 32]"\n'
        'b,src.png,edit.png,move the astronaut to the left,"[10, 10, 30, 30]","[50, 12, 70, 32]"\n')
    out = tmp_path / "out.jsonl"
    key = "bpm(position_moves=true)"
    score_file(str(tmp_path / "pairs.csv"), [key], str(out), settings={"clip": clip["spec"]}, progress=False)
    rows = {r["id"]: r for r in read_jsonl(str(out))}
    assert rows["a"]["scores"][f"{key}.s_position"] == 1.0 and rows["b"]["scores"][f"{key}.s_position"] == 0.0
    assert rows["a"]["details"][key]["boxes_500"]["target"] == [[round(v, 2) for v in
                                                                 released.to_frame((50, 12, 70, 32), 96, 64)]]


def test_batched_grounding_equals_one_by_one(grounding_models):
    from editmetrics.bpm.grounding import HFGroundingDinoSam

    g = HFGroundingDinoSam(grounding_models, box_threshold=0.0, text_threshold=0.0)
    a = photo("astronaut", (96, 64)).astype(np.float32) / 255
    c = photo("chelsea", (80, 60)).astype(np.float32) / 255
    items = [(a, "astronaut"), (c, "cat"), (a[::-1].copy(), "blue helmet"), (c, "a cat")]
    batched = g.ground(items)
    for item, dets in zip(items, batched):
        (single,) = g.ground([item])
        assert len(dets) == len(single) > 0
        for d, s in zip(dets, single):
            assert np.allclose(d.box, s.box, atol=1e-3) and abs(d.score - s.score) < 1e-5
            assert d.mask.shape == item[0].shape[:2] and (d.mask != s.mask).mean() < 1e-3


def test_max_detections_keeps_the_highest_scoring_boxes(grounding_models):
    from editmetrics.bpm.grounding import HFGroundingDinoSam

    a = photo("astronaut", (96, 64)).astype(np.float32) / 255
    (every,) = HFGroundingDinoSam(grounding_models, box_threshold=0.0, text_threshold=0.0).ground([(a, "astronaut")])
    capped_g = HFGroundingDinoSam({**grounding_models, "bpm_max_detections": 2}, box_threshold=0.0,
                                  text_threshold=0.0)
    (capped,) = capped_g.ground([(a, "astronaut")])
    assert len(every) > 2 and len(capped) == 2
    assert [d.box for d in capped] == [d.box for d in every[:2]]
    assert all(d.mask is not None for d in capped)
