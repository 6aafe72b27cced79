"""transformers backbones from local folders: a tiny CLIP (with a real CLIP BPE
vocabulary written from open_clip's shipped files) and a tiny DINOv2; the
broken-offline-tokenizer trap is refused loudly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from editmetrics import score_records
from editmetrics.weights.backbones import check_tokenizer
from editmetrics.contract.metric import MetricError


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Tiny transformers CLIP and DINOv2 folders (editmetrics.testing.tiny), loaded back
    with plain transformers for direct comparisons, and a CLIP folder whose
    tokenizer is the broken 2-token one."""
    import shutil

    import transformers as tf

    from editmetrics.testing.tiny import write_dinov2, write_hf_clip

    root = tmp_path_factory.mktemp("hf")
    clip_dir, broken_dir, dino_dir = root / "clip", root / "broken", root / "dino"
    write_hf_clip(str(clip_dir), seed=0)
    write_dinov2(str(dino_dir), seed=0)
    clip = tf.CLIPModel.from_pretrained(str(clip_dir)).eval()
    proc = tf.CLIPImageProcessor.from_pretrained(str(clip_dir))
    tok = tf.CLIPTokenizer.from_pretrained(str(clip_dir))
    dino = tf.Dinov2Model.from_pretrained(str(dino_dir)).eval()
    dproc = tf.BitImageProcessor.from_pretrained(str(dino_dir))
    # the trap: the same model with a tokenizer that knows two tokens maps every word to one id
    shutil.copytree(clip_dir, broken_dir, ignore=shutil.ignore_patterns("vocab.json", "merges.txt", "tokenizer*",
                                                                          "special_tokens_map.json"))
    (root / "v2.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (root / "m2.txt").write_text("#version: 0.2\n")
    broken = tf.CLIPTokenizer(str(root / "v2.json"), str(root / "m2.txt"))
    broken.save_pretrained(broken_dir)

    imgs = root / "img"
    imgs.mkdir()
    for name, arr in (("a", data.astronaut()), ("b", data.chelsea())):
        Image.fromarray(arr).resize((48, 40), Image.BICUBIC).save(imgs / f"{name}.png")
    return {"root": root, "clip": clip, "proc": proc, "tok": tok, "dino": dino, "dproc": dproc, "imgs": imgs,
            "clip_dir": clip_dir, "broken_dir": broken_dir, "dino_dir": dino_dir, "broken_tok": broken}


def _unit(t):
    v = (t if torch.is_tensor(t) else t.pooler_output)[0].double().numpy()
    return v / np.linalg.norm(v)


def test_transformers_clip_and_dinov2_agree_with_direct(hf):
    rec = {"id": 1, "source": "a.png", "edited": "b.png", "target_caption": "a cat on a chair"}
    row = score_records([rec], ["clip_i", "clip_t", "dino_i", "dino_i@edited"], base_dir=str(hf["imgs"]),
                        settings={"clip": f"hf:{hf['clip_dir']}", "dino": f"hf:{hf['dino_dir']}"})[0]
    assert row["errors"] == {}
    a, b = (Image.open(hf["imgs"] / f"{n}.png").convert("RGB") for n in "ab")
    with torch.no_grad():
        pa = hf["proc"](images=a, return_tensors="pt")["pixel_values"]
        pb = hf["proc"](images=b, return_tensors="pt")["pixel_values"]
        ea, eb = _unit(hf["clip"].get_image_features(pixel_values=pa)), _unit(hf["clip"].get_image_features(pixel_values=pb))
        t = hf["tok"](["a cat on a chair"], return_tensors="pt", padding=True)
        et = _unit(hf["clip"].get_text_features(**t))
        da = hf["dino"](pixel_values=hf["dproc"](images=a, return_tensors="pt")["pixel_values"]).pooler_output
        db = hf["dino"](pixel_values=hf["dproc"](images=b, return_tensors="pt")["pixel_values"]).pooler_output
    assert row["scores"]["clip_i"] == pytest.approx(ea @ eb, abs=1e-5)
    assert row["scores"]["clip_t"] == pytest.approx(eb @ et, abs=1e-5)
    assert row["scores"]["dino_i"] == pytest.approx(_unit(da) @ _unit(db), abs=1e-5)
    assert row["scores"]["dino_i@edited"] == pytest.approx(1.0, abs=1e-6)


def test_broken_tokenizer_fails_loudly(hf):
    with pytest.raises(MetricError, match="broken"):
        check_tokenizer(hf["broken_tok"], "here")
    check_tokenizer(hf["tok"], "here")  # the real vocabulary passes
    rec = {"id": 1, "source": "a.png", "edited": "b.png", "target_caption": "a cat"}
    row = score_records([rec], ["psnr", "clip_i", "clip_t"], base_dir=str(hf["imgs"]),
                        settings={"clip": f"hf:{hf['broken_dir']}"})[0]
    assert row["scores"]["psnr"] is not None
    for key in ("clip_i", "clip_t"):
        assert row["scores"][key] is None and "tokenizer" in row["errors"][key] and "broken" in row["errors"][key]
