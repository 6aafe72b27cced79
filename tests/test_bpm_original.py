"""The gdino-sam-original grounder (plugins/editmetrics-grounding-original):
groundingdino-py + segment-anything models built from their real classes with
tiny sizes and random weights, saved in the released formats, loaded by path.

Checks: the transformers-5 BERT shim against transformers' own BertModel and
against separate runs of each sub-sentence; preprocessing equal to
groundingdino-py's own transforms; boxes/scores equal to a direct model call;
thresholds; SAM masks against a direct SamPredictor call; batched = one by one;
missing-file messages; a BPM run on examples/ end to end.
"""

import os
from functools import partial

import numpy as np
import pytest
import torch

pytest.importorskip("groundingdino")
pytest.importorskip("segment_anything")
plugin = pytest.importorskip("editmetrics_grounding_original")

from editmetrics.contract.metric import MetricError  # noqa: E402
from editmetrics.engine.runner import score_records  # noqa: E402
from editmetrics.testing.tiny import write_open_clip  # noqa: E402
from editmetrics_grounding_original import OriginalGroundingDinoSam, bert_compat  # noqa: E402

from helpers import REPO, photo, read_jsonl  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "a", "the", "astronaut", "cat", "helmet",
         "rocket", "coffee", "cup", "blue", "red", "person"]
SAM_TYPE = "tiny_test"
QUERIES = 12
# the real Swin-T backbone runs at 800 px in about 5 s per image here; tests use a smaller input
TEST_SIZE = "160,320"


def tiny_sam(checkpoint=None):
    """segment-anything's own classes at tiny sizes (64 px input, 32 channels)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    assert checkpoint is None
    dim, img, patch = 32, 64, 8
    return Sam(
        image_encoder=ImageEncoderViT(depth=1, embed_dim=dim, img_size=img, mlp_ratio=2, num_heads=2,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), patch_size=patch,
                                      qkv_bias=True, use_rel_pos=True, global_attn_indexes=[0], window_size=4,
                                      out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img // patch, img // patch),
                                     input_image_size=(img, img), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=3,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2)),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


@pytest.fixture(scope="module")
def sam_registry():
    from segment_anything import sam_model_registry

    sam_model_registry[SAM_TYPE] = tiny_sam  # the registry is a plain dict of builders
    yield sam_model_registry
    del sam_model_registry[SAM_TYPE]


@pytest.fixture(scope="module")
def files(tmp_path_factory, sam_registry):
    """Released formats: the model's .py config (groundingdino-py's own Swin-T
    OGC config with fewer layers/queries), {"model": state_dict} .pth, a BERT
    folder with a WordPiece vocab, a SAM state_dict .pth."""
    import groundingdino
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("gdino-original")
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(str(bert))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(str(bert))

    with open(os.path.join(os.path.dirname(groundingdino.__file__), "config", "GroundingDINO_SwinT_OGC.py")) as fh:
        config = fh.read()
    # hidden_dim stays 256: the text enhancer's position embedding is 256 wide
    for old, new in [("enc_layers = 6", "enc_layers = 1"), ("dec_layers = 6", "dec_layers = 2"),
                     ("dim_feedforward = 2048", "dim_feedforward = 64"), ("nheads = 8", "nheads = 2"),
                     ("num_queries = 900", f"num_queries = {QUERIES}")]:
        assert old in config
        config = config.replace(old, new)
    (root / "gdino.py").write_text(config)
    args = SLConfig.fromfile(str(root / "gdino.py"))
    args.text_encoder_type = str(bert)
    torch.manual_seed(0)
    with bert_compat.patched_build():
        model = build_model(args)
    with torch.no_grad():  # shrink the text projection so random scores spread over (0, 1)
        model.feat_map.weight.mul_(0.002)
    torch.save({"model": model.state_dict()}, root / "gdino.pth")
    torch.manual_seed(3)  # a seed whose random masks cover about 40% of an image (not all, not nothing)
    torch.save(tiny_sam().state_dict(), root / "sam.pth")
    return {"bpm_groundingdino_config": str(root / "gdino.py"), "bpm_groundingdino_checkpoint": str(root / "gdino.pth"),
            "bpm_groundingdino_text_encoder": str(bert), "bpm_sam_checkpoint": str(root / "sam.pth"),
            "bpm_sam_type": SAM_TYPE, "bpm_groundingdino_size": TEST_SIZE}


@pytest.fixture(scope="module")
def grounder(files):
    return OriginalGroundingDinoSam(files, box_threshold=0.0, text_threshold=0.0)


@pytest.fixture(scope="module")
def images():
    a = photo("astronaut", (128, 96)).astype(np.float32) / 255
    c = photo("chelsea", (96, 80)).astype(np.float32) / 255
    return a, c


def _thresholds(g, box, text):
    g.box_threshold, g.text_threshold = box, text


# -- the transformers-5 shim ---------------------------------------------------

def test_shim_matches_bert_and_isolates_sub_sentences(files):
    from transformers import BertModel

    bert = BertModel.from_pretrained(files["bpm_groundingdino_text_encoder"]).eval()
    warper = bert_compat.BertWarper4(bert)
    ids = torch.tensor([[2, 9, 5, 10, 11, 5, 3], [2, 12, 5, 3, 0, 0, 0]])
    pad = (ids != 0).long()
    with torch.no_grad():
        ours = warper(input_ids=ids, attention_mask=pad)["last_hidden_state"]
        ref = bert(input_ids=ids, attention_mask=pad).last_hidden_state
        assert torch.allclose(ours[pad.bool()], ref[pad.bool()], atol=1e-5)
        # a 3-D block mask (GroundingDINO's sub-sentences, position ids restarting):
        # each block equals that block run on its own
        blocks = [(0, 3), (3, 6), (6, 7)]
        mask = torch.zeros(1, 7, 7)
        pos = torch.zeros(1, 7, dtype=torch.long)
        for s, e in blocks:
            mask[0, s:e, s:e] = 1
            pos[0, s:e] = torch.arange(e - s)
        out = warper(input_ids=ids[:1], attention_mask=mask, position_ids=pos)["last_hidden_state"]
        for s, e in blocks:
            alone = bert(input_ids=ids[:1, s:e], position_ids=pos[:, s:e]).last_hidden_state
            assert torch.allclose(out[0, s:e], alone[0], atol=1e-5)


# -- detection -------------------------------------------------------------------

@pytest.mark.parametrize("wh", [(128, 96), (96, 128), (500, 100), (800, 600), (2000, 1000)])
def test_preprocess_equals_groundingdino_transforms(grounder, wh):
    import groundingdino.datasets.transforms as T
    from PIL import Image

    rng = np.random.default_rng(wh[0])
    image = rng.integers(0, 256, (wh[1], wh[0], 3)).astype(np.float32) / 255
    size, max_size = grounder.size, grounder.max_size
    try:
        for grounder.size, grounder.max_size in [(800, 1333), (size, max_size)]:
            theirs, _ = T.Compose([T.RandomResize([grounder.size], max_size=grounder.max_size), T.ToTensor(),
                                   T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(
                Image.fromarray(np.rint(image * 255).astype(np.uint8)), None)
            ours = grounder.preprocess(image)
            assert ours.shape == theirs.shape and torch.equal(ours, theirs)
    finally:
        grounder.size, grounder.max_size = size, max_size


def test_detections_equal_a_direct_model_call(grounder, images):
    from torchvision.ops import box_convert

    a, _ = images
    _thresholds(grounder, 0.3, 0.25)
    (dets,) = grounder.ground([(a, "the Astronaut")])
    with torch.no_grad():
        out = grounder.detector(grounder.preprocess(a)[None], captions=["the astronaut."])
    probs = out["pred_logits"].sigmoid()[0]
    keep = probs.max(dim=1).values > 0.3
    assert 0 < keep.sum() < QUERIES  # the threshold splits the random model's queries
    xyxy = box_convert(out["pred_boxes"][0][keep] * torch.tensor([128, 96, 128, 96]), "cxcywh", "xyxy")
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, 128)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, 96)
    scores = probs.max(dim=1).values[keep]
    order = torch.argsort(scores, descending=True)
    assert len(dets) == int(keep.sum())
    for d, i in zip(dets, order.tolist()):
        assert np.allclose(d.box, xyxy[i].numpy(), atol=1e-3) and d.score == pytest.approx(float(scores[i]), abs=1e-6)


def test_boxes_sorted_inside_and_masks_image_sized(grounder, images):
    a, c = images
    _thresholds(grounder, 0.0, 0.0)
    for image, dets in zip((a, c), grounder.ground([(a, "astronaut"), (c, "a cat")])):
        h, w = image.shape[:2]
        assert len(dets) == QUERIES  # threshold 0: every query box (none degenerate here)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:
            assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
            assert d.mask.shape == (h, w) and d.mask.dtype == bool


def test_thresholds(grounder, images):
    a, _ = images
    _thresholds(grounder, 0.0, 0.0)
    (everything,) = grounder.ground([(a, "blue helmet")])
    scores = sorted(d.score for d in everything)
    assert scores[0] < 0.5 < scores[-1]  # the random model spreads its scores
    _thresholds(grounder, 0.5, 0.0)
    (some,) = grounder.ground([(a, "blue helmet")])
    assert [d.box for d in some] == [d.box for d in everything if d.score > 0.5]
    assert all(d.label == "blue helmet" for d in some)  # text threshold 0: every token of the caption
    _thresholds(grounder, 0.0, 1.0)
    (no_text,) = grounder.ground([(a, "blue helmet")])
    assert len(no_text) == len(everything) and all(d.label == "" for d in no_text)
    _thresholds(grounder, 1.0, 0.25)
    assert grounder.ground([(a, "blue helmet")]) == [[]]
    # bpm_max_detections keeps the highest-scoring boxes
    _thresholds(grounder, 0.0, 0.0)
    grounder.max_detections = 3
    try:
        (capped,) = grounder.ground([(a, "blue helmet")])
    finally:
        grounder.max_detections = 0
    assert [d.box for d in capped] == [d.box for d in everything[:3]]


def test_batched_equals_one_by_one(grounder, images):
    a, c = images
    _thresholds(grounder, 0.3, 0.25)
    items = [(a, "astronaut"), (c, "cat"), (a[::-1].copy(), "blue helmet"), (c, "a red cat.")]
    batched = grounder.ground(items)
    for item, dets in zip(items, batched):
        (single,) = grounder.ground([item])
        assert len(dets) == len(single)
        for d, s in zip(dets, single):
            assert np.allclose(d.box, s.box, atol=1e-3) and abs(d.score - s.score) < 1e-5 and d.label == s.label
            assert (d.mask != s.mask).mean() < 1e-3


# -- segmentation ---------------------------------------------------------------

def test_sam_masks_equal_sampredictor(grounder, images):
    from segment_anything import SamPredictor

    a, c = images
    _thresholds(grounder, 0.0, 0.0)
    predictor = SamPredictor(grounder.sam)
    for image, dets in zip((a, c), grounder.ground([(a, "astronaut"), (c, "cat")])):
        predictor.set_image(np.rint(image * 255).astype(np.uint8))
        for d in dets[:4]:
            masks, _, _ = predictor.predict(box=np.array(d.box), multimask_output=False)
            assert masks.shape == (1,) + image.shape[:2]
            assert (masks[0] != d.mask).mean() < 1e-3
        assert any(0 < d.mask.mean() < 1 for d in dets)  # not all empty or full


# -- loading ----------------------------------------------------------------------

def test_missing_files_name_the_setting(files, tmp_path):
    for key in ("bpm_groundingdino_config", "bpm_groundingdino_checkpoint", "bpm_sam_checkpoint"):
        with pytest.raises(MetricError, match=f"{tmp_path}/nothing.*{key}"):
            OriginalGroundingDinoSam({**files, key: str(tmp_path / "nothing")})
    with pytest.raises(MetricError, match=f"{tmp_path}/nothing/config.json.*bpm_groundingdino_text_encoder"):
        OriginalGroundingDinoSam({**files, "bpm_groundingdino_text_encoder": str(tmp_path / "nothing")})
    missing = {k: v for k, v in files.items() if k != "bpm_sam_checkpoint"}
    with pytest.raises(MetricError, match="set bpm_sam_checkpoint=PATH"):
        OriginalGroundingDinoSam(missing)
    with pytest.raises(MetricError, match="bpm_groundingdino_size='big'"):
        OriginalGroundingDinoSam({**files, "bpm_groundingdino_size": "big"})
    with pytest.raises(MetricError, match="does not match bpm_sam_type=vit_b"):
        OriginalGroundingDinoSam({**files, "bpm_sam_type": "vit_b"})


# -- BPM end to end ------------------------------------------------------------------

def test_bpm_on_examples_end_to_end(files, tmp_path):
    """examples/ records without their masks, so every region comes from the grounder."""
    from PIL import Image

    clip = write_open_clip(str(tmp_path / "clip"), name="tinyclip_bpm_original", seed=0)
    recs = [{k: v for k, v in r.items() if k != "mask"} for r in read_jsonl(os.path.join(REPO, "examples", "pairs.jsonl"))]
    # thresholds 0: a random detector's scores are arbitrary; every query box is kept
    spec = "bpm(grounder=gdino-sam-original,box_threshold=0.0,text_threshold=0.0)"
    rows = score_records(recs, [spec], base_dir=os.path.join(REPO, "examples"),
                         settings={"clip": clip, "bpm_mask_dir": str(tmp_path / "masks"), **files})
    assert len(rows) == 5
    for rec, row in zip(recs, rows):
        assert row["errors"] == {}, row["errors"]
        assert row["scores"][spec] is not None
        d = row["details"][spec]
        if d["edit"]["edit_type"] == "global":
            continue
        assert set(d["regions"].values()) == {"grounding"}
        assert d["detection_scores"] and all(len(v) == QUERIES for v in d["detection_scores"].values())
        from editmetrics.bpm import released

        src = np.asarray(Image.open(os.path.join(REPO, "examples", rec["source"])).convert("RGB"))
        edited = np.asarray(Image.open(os.path.join(REPO, "examples", rec["edited"])).convert("RGB"))
        # the masks SAM gave on the 500x500 images (released arithmetic: uint8 L2 outside them)
        region = np.asarray(Image.open(d["mask_file"])) > 0 if d["branch"] == "normal" else None
        expected = 1.0 - released.l2(released.frame(src), released.frame(edited), region)
        assert row["scores"][f"{spec}.s_preserve"] == pytest.approx(expected, abs=1e-12)
    assert sum(d["details"][spec]["edit"]["edit_type"] != "global" for d in rows) == 4
    # a missing checkpoint: the record says which setting and file
    row = score_records(recs[:1], [spec], base_dir=os.path.join(REPO, "examples"),
                        settings={"clip": clip, **files, "bpm_sam_checkpoint": "/nonexistent/sam.pth"})[0]
    assert "/nonexistent/sam.pth" in row["errors"][spec] and "bpm_sam_checkpoint" in row["errors"][spec]
