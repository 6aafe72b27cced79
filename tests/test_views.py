"""CLIP/DINO views (crop, pad, squash): the centre crop's blind spot, the
feature store's keys, agreement with a direct computation."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from editmetrics import score_records
from editmetrics.engine.features import FeatureStore
from editmetrics.contract.metric import MetricError, SpecError
from editmetrics.testing.tiny import load_open_clip, write_open_clip
from editmetrics.weights.views import square_view

STRIP = 0.11  # the inverted strip: left 11% of the width


def border_edit(photo: np.ndarray, fraction: float = STRIP) -> np.ndarray:
    out = photo.copy()
    w = int(round(photo.shape[1] * fraction))
    out[:, :w] = 255 - out[:, :w]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random CLIP with CLIP's 224 px input (so its crop geometry is the
    real one) and a 4:3 photograph with a border edit."""
    root = tmp_path_factory.mktemp("views")
    spec = write_open_clip(str(root / "clip"), name="tinyclip_views224", seed=3, image_size=224)
    src = np.asarray(Image.fromarray(data.chelsea()).resize((320, 240), Image.BICUBIC))
    Image.fromarray(src).save(root / "source.png")
    Image.fromarray(border_edit(src)).save(root / "border.png")
    middle = src.copy()
    middle[:, 160 - 18:160 + 17] = 255 - middle[:, 160 - 18:160 + 17]  # the same strip width, in the middle
    Image.fromarray(middle).save(root / "middle.png")
    return {"root": root, "spec": spec, "source": src}


def _scores(world, edited, metrics):
    rec = {"id": "r", "source": "source.png", "edited": edited, "target": edited,
           "bbox": [180, 60, 260, 180]}  # clip_gc's edit region: elsewhere, the strip is "background"
    (row,) = score_records([rec], metrics, base_dir=str(world["root"]), settings={"clip": world["spec"]})
    assert not row["errors"], row["errors"]
    return row["scores"]


def test_border_edit_is_invisible_under_crop_and_seen_under_pad(world):
    metrics = ["clip_gc", "clip_gc(view=pad)", "clip_gc(view=squash)", "clip_i", "clip_i(view=pad)"]
    border = _scores(world, "border.png", metrics)
    middle = _scores(world, "middle.png", metrics)
    # crop (the papers' preprocessing) never sees the left 12.5% of a 4:3 image
    assert border["clip_gc"] == pytest.approx(100.0, abs=1e-3)
    assert border["clip_i"] == pytest.approx(1.0, abs=1e-5)
    # pad and squash see it; the drop is far above float noise (1e-3 on this scale)
    assert border["clip_gc(view=pad)"] < 100.0 - 0.05
    assert border["clip_gc(view=squash)"] < 100.0 - 0.05
    assert border["clip_i(view=pad)"] < 1.0 - 5e-4
    # the same strip in the middle is seen by every view
    assert middle["clip_gc"] < 100.0 - 0.05 and middle["clip_gc(view=pad)"] < 100.0 - 0.05


def test_pad_and_squash_agree_with_a_direct_open_clip_computation(world):
    model, preprocess, _ = load_open_clip(world["spec"])
    store = FeatureStore({"clip": world["spec"]})
    img = world["source"]

    def direct(pil):
        with torch.no_grad():
            v = model.encode_image(preprocess(pil).unsqueeze(0))[0].double().numpy()
        return v / np.linalg.norm(v)

    # letterbox by hand: 320x240 -> 224x168, centred on a 224x224 canvas of CLIP's mean colour
    mean = tuple(round(255 * m) for m in (0.48145466, 0.4578275, 0.40821073))
    canvas = Image.new("RGB", (224, 224), mean)
    canvas.paste(Image.fromarray(img).resize((224, 168), Image.BICUBIC), (0, 28))
    squashed = Image.fromarray(img).resize((224, 224), Image.BICUBIC)
    got = store.encode_images("clip", [img.astype(np.float32) / 255], view="pad")[0]
    assert got @ direct(canvas) == pytest.approx(1.0, abs=1e-5)
    got = store.encode_images("clip", [img.astype(np.float32) / 255], view="squash")[0]
    assert got @ direct(squashed) == pytest.approx(1.0, abs=1e-5)
    got = store.encode_images("clip", [img.astype(np.float32) / 255])[0]
    assert got @ direct(Image.fromarray(img)) == pytest.approx(1.0, abs=1e-5)


def test_views_have_their_own_cache_entries(world, tmp_path):
    store = FeatureStore({"clip": world["spec"], "feature_cache": str(tmp_path)})
    square = np.ascontiguousarray(world["source"][:, 40:280]).astype(np.float32) / 255  # 240x240
    keys = {v: store.request_image("clip", square, view=v) for v in ("crop", "pad", "squash")}
    assert len(set(keys.values())) == 3  # one image, three views: three keys
    store.flush()
    assert store.stats["images_encoded"] == 3
    vecs = {v: store.get(k) for v, k in keys.items()}
    # a square image looks the same under every view: the encoder's own resize/crop are no-ops on the square
    assert vecs["pad"] @ vecs["crop"] == pytest.approx(1.0, abs=1e-5)
    again = FeatureStore({"clip": world["spec"], "feature_cache": str(tmp_path)})
    assert again.request_image("clip", square, view="pad") == keys["pad"]
    again.flush()
    assert again.stats["disk_hits"] == 1 and again.stats["images_encoded"] == 0


def test_square_view_geometry():
    img = Image.fromarray(np.full((30, 60, 3), 200, np.uint8))  # 60 wide, 30 high
    padded = np.asarray(square_view(img, "pad", 40, fill=(0.0, 0.5, 1.0)))
    assert padded.shape == (40, 40, 3)
    assert (padded[:10] == (0, 128, 255)).all() and (padded[30:] == (0, 128, 255)).all()
    assert (padded[10:30] == 200).all()
    assert np.asarray(square_view(img, "squash", 40)).shape == (40, 40, 3)
    with pytest.raises(ValueError):
        square_view(img, "crop", 40)


def test_bad_view_and_encoder_without_views(world):
    with pytest.raises(SpecError, match="view"):
        score_records([{"id": "r", "source": "source.png", "edited": "border.png"}], ["clip_i(view=letterbox)"],
                      base_dir=str(world["root"]), settings={"clip": world["spec"]})
    store = FeatureStore({"clip": world["spec"]})
    store.backbone("clip").views = ("crop",)  # as a plugin encoder without the view argument
    with pytest.raises(MetricError, match="does not support view=pad"):
        store.request_image("clip", world["source"].astype(np.float32) / 255, view="pad")


def test_transformers_dinov2_pad_skips_its_resize_and_crop(world, tmp_path):
    """DINOv2 resizes to 36 and crops 32 (as 256 -> 224 for the real model): even
    a square image loses its border under crop; pad hands it the 32x32 square."""
    import transformers as tf

    from editmetrics.testing.tiny import write_dinov2

    spec = write_dinov2(str(tmp_path / "dino"), seed=0)
    folder = spec.split(":", 1)[1]
    model = tf.Dinov2Model.from_pretrained(folder).eval()
    proc = tf.AutoImageProcessor.from_pretrained(folder)
    img = world["source"]
    mean = tuple(round(255 * m) for m in proc.image_mean)
    canvas = Image.new("RGB", (32, 32), mean)
    canvas.paste(Image.fromarray(img).resize((32, 24), Image.BICUBIC), (0, 4))
    with torch.no_grad():
        pixels = proc(images=[canvas], return_tensors="pt", do_resize=False, do_center_crop=False)["pixel_values"]
        want = model(pixel_values=pixels).last_hidden_state[0, 0].double().numpy()
    store = FeatureStore({"dino": spec})
    got = store.encode_images("dino", [img.astype(np.float32) / 255], view="pad")[0]
    assert got @ (want / np.linalg.norm(want)) == pytest.approx(1.0, abs=1e-5)
    rows = score_records([{"id": "r", "source": "source.png", "edited": "border.png"}],
                         ["dino_i", "dino_i(view=pad)"], base_dir=str(world["root"]), settings={"dino": spec})
    scores = rows[0]["scores"]
    assert scores["dino_i"] == pytest.approx(1.0, abs=1e-5) and scores["dino_i(view=pad)"] < 1.0 - 1e-4
