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
from editmetrics.backbones import check_tokenizer
from editmetrics.metric import MetricError


def _write_clip_vocab(folder):
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    (folder / "vocab.json").write_text(json.dumps(tok.encoder))
    merges = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m, _ in merges) + "\n")


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    import transformers as tf

    root = tmp_path_factory.mktemp("hf")
    clip_dir, broken_dir, dino_dir = root / "clip", root / "broken", root / "dino"
    for d in (clip_dir, broken_dir, dino_dir):
        d.mkdir()
    _write_clip_vocab(clip_dir)
    tok = tf.CLIPTokenizer(str(clip_dir / "vocab.json"), str(clip_dir / "merges.txt"))
    torch.manual_seed(0)
    cfg = tf.CLIPConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 77,
                         "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    clip = tf.CLIPModel(cfg).eval()
    proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    for d in (clip_dir, broken_dir):
        clip.save_pretrained(d)
        proc.save_pretrained(d)
    tok.save_pretrained(clip_dir)
    # the trap: a tokenizer that knows two tokens maps every word to one id
    (root / "v2.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (root / "m2.txt").write_text("#version: 0.2\n")
    broken = tf.CLIPTokenizer(str(root / "v2.json"), str(root / "m2.txt"))
    broken.save_pretrained(broken_dir)

    dcfg = tf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    dino = tf.Dinov2Model(dcfg).eval()
    dproc = tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                 do_convert_rgb=True)
    dino.save_pretrained(dino_dir)
    dproc.save_pretrained(dino_dir)

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
