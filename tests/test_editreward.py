"""editreward on a tiny random Qwen2.5-VL with random reward heads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from editmetrics.engine.runner import score_records
from helpers import photo, save

pytest.importorskip("transformers")

PIXELS = 28 * 28 * 4  # 4 merged image tokens per image: fast


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from editmetrics.judges.tiny_vlm import write_tiny_editreward, write_tiny_qwen2_5_vl

    root = tmp_path_factory.mktemp("editreward")
    base = write_tiny_qwen2_5_vl(str(root / "base"))
    return base, write_tiny_editreward(base, str(root / "ckpt"))


def settings(folders, **extra):
    return {"editreward_base": folders[0], "editreward_checkpoint": folders[1], "editreward_pixels": PIXELS, **extra}


@pytest.fixture
def records(tmp_path):
    src = save(photo("astronaut"), tmp_path / "s.png")
    return tmp_path, [
        {"id": "a", "source": src, "edited": save(photo("coffee"), tmp_path / "e1.png"), "instruction": "make it coffee"},
        {"id": "b", "source": src, "edited": save(photo("chelsea"), tmp_path / "e2.png"), "instruction": "make it coffee"},
        {"id": "c", "source": src, "edited": save(photo("coffee"), tmp_path / "e3.png"), "instruction": "make it coffee"},
    ]


def test_scores_are_finite_deterministic_and_depend_on_the_image(records, folders):
    base, recs = records
    rows = score_records(recs, ["editreward"], base_dir=str(base), settings=settings(folders))
    values = [r["scores"]["editreward"] for r in rows]
    assert all(np.isfinite(values)), rows[0]["errors"]
    assert values[0] == values[2]  # same pixels, same score
    assert values[0] != values[1]
    s = rows[0]["scores"]
    assert s["editreward"] == pytest.approx((s["editreward.following"] + s["editreward.quality"]) / 2)
    d = rows[0]["details"]["editreward"]
    assert d["prompts"]["following"]["name"] == "editreward_following_v1" and len(d["heads"]["quality"]) == 2


def test_matches_transformers_own_multimodal_forward(folders):
    """Our scatter + pooling equals transformers' Qwen2_5_VLModel forward given
    the released positions (plain 0..L-1 on every rope axis)."""
    import torch

    from editmetrics.judges.editreward import EditRewardScorer

    scorer = EditRewardScorer(*folders, pixels=PIXELS)
    src, out = photo("astronaut") / 255.0, photo("coffee") / 255.0
    images = [scorer._image(src), scorer._image(out)]
    prompt = scorer.prompts[0][1].text.replace("{text_prompt}", "make it coffee")
    batch = scorer.inputs(prompt, images)
    assert batch["image_grid_thw"].shape[0] == 2  # source and edited
    merged = int(batch["image_grid_thw"].prod(dim=1).sum()) // 4
    assert int((batch["input_ids"] == scorer.model.config.image_token_id).sum()) == merged
    head = scorer.model.rm_heads["head_0"]
    with torch.inference_mode():
        ours = scorer.head_output(batch, head)
    n = batch["input_ids"].shape[1]
    with torch.inference_mode():
        hidden = scorer.model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                                    position_ids=torch.arange(n).view(1, 1, -1).expand(3, 1, -1)).last_hidden_state
    pos = int((batch["input_ids"][0] == scorer.reward_id).nonzero()[0, 0])
    with torch.inference_mode():
        expected = head(hidden[0, pos].float()).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    full = scorer.score(src, out, "make it coffee")
    assert full["heads"]["following"][0] == pytest.approx(float(ours[0]), rel=1e-6)


def test_old_key_layout_loads_to_the_same_scores(records, folders, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(os.path.join(folders[1], "model.safetensors"))
    old = {}
    for k, v in state.items():  # transformers < 4.52 names
        if k.startswith("model.visual."):
            k = k[len("model."):]
        elif k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        old[k] = v
    os.makedirs(tmp_path / "old")
    save_file(old, str(tmp_path / "old" / "model.safetensors"))
    base, recs = records
    new_rows = score_records(recs[:1], ["editreward"], base_dir=str(base), settings=settings(folders))
    old_rows = score_records(recs[:1], ["editreward"], base_dir=str(base),
                             settings=settings((folders[0], str(tmp_path / "old"))))
    assert old_rows[0]["scores"]["editreward"] == new_rows[0]["scores"]["editreward"]


def test_missing_or_mismatched_checkpoint_is_a_reason(records, folders, tmp_path):
    base, recs = records
    (row, *_) = score_records(recs, ["editreward"], base_dir=str(base), settings={"editreward_base": folders[0]})
    assert row["scores"]["editreward"] is None and "editreward_checkpoint" in row["errors"]["editreward"]
    os.makedirs(tmp_path / "empty")
    (row, *_) = score_records(recs, ["editreward"], base_dir=str(base),
                              settings=settings((folders[0], str(tmp_path / "empty"))))
    assert "no model.safetensors" in row["errors"]["editreward"]


def test_smart_resize_rule():
    from editmetrics.judges.editreward import smart_resize

    h, w = smart_resize(480, 640)  # 256*28*28 pixels: 448 x 588 keeps 4:3 and fits
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 256 * 28 * 28
    assert smart_resize(28, 28, min_pixels=4 * 784, max_pixels=4 * 784) == (56, 56)
