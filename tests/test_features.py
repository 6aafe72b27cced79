"""Feature store: agreement with direct open_clip, de-duplication, regions, disk cache."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from editmetrics.engine.features import FeatureStore, content_hash
from editmetrics.contract.metric import MetricError
from editmetrics.testing.tiny import load_open_clip, write_open_clip

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny open_clip model saved as config JSON + safetensors (editmetrics.testing.tiny),
    and the same files loaded back with plain open_clip for direct comparisons."""
    root = tmp_path_factory.mktemp("tinyclip")
    spec = write_open_clip(str(root), name="tinyclip_feat", seed=0)
    model, preprocess, tokenizer = load_open_clip(spec)
    return {"spec": spec, "model": model, "preprocess": preprocess, "tokenizer": tokenizer, "root": root}


def _direct_image(tiny, uint8):
    with torch.no_grad():
        v = tiny["model"].encode_image(tiny["preprocess"](Image.fromarray(uint8)).unsqueeze(0))[0].numpy()
    return v / np.linalg.norm(v)


def test_matches_direct_open_clip_and_crops(tiny):
    store = FeatureStore({"clip": tiny["spec"]})
    astro = data.astronaut()[::4, ::4].copy()  # 128x128 uint8
    img = astro.astype(np.float32) / 255
    got = store.encode_images("clip", [img])[0]
    assert np.abs(got - _direct_image(tiny, astro)).max() < 1e-5
    crop = store.encode_images("clip", [img], box=(10.2, 20, 90, 100.5))[0]
    assert np.abs(crop - _direct_image(tiny, astro[20:101, 10:90])).max() < 1e-5
    with torch.no_grad():
        t = tiny["model"].encode_text(tiny["tokenizer"](["a photo of an astronaut"]))[0].numpy()
    assert np.abs(store.encode_texts("clip", ["a photo of an astronaut"])[0] - t / np.linalg.norm(t)).max() < 1e-5


def test_each_embedding_computed_once_and_batched(tiny):
    store = FeatureStore({"clip": tiny["spec"]}, chunk=4)
    a = data.coffee()[::8, ::8].astype(np.float32) / 255
    b = data.chelsea()[::8, ::8].astype(np.float32) / 255
    keys = [store.request_image("clip", im) for im in (a, b, a, a.copy(), b)]
    assert keys[0] == keys[2] == keys[3] and keys[1] == keys[4] and keys[0] != keys[1]
    store.flush()
    assert store.stats["images_encoded"] == 2 and store.stats["batches"] == 1
    # erase with an all-False mask changes no pixel: same content, same key
    assert store.request_image("clip", a, erase=np.zeros(a.shape[:2], bool)) == keys[0]
    k = store.request_image("clip", a, mask=np.zeros(a.shape[:2], bool))  # all filled
    assert k != keys[0]
    store.flush()
    assert store.stats["images_encoded"] == 3


def test_disk_cache_reused_by_a_new_store(tiny, tmp_path):
    img = data.rocket()[::8, ::8].astype(np.float32) / 255
    first = FeatureStore({"clip": tiny["spec"], "feature_cache": str(tmp_path)})
    v1 = first.encode_images("clip", [img])
    second = FeatureStore({"clip": tiny["spec"], "feature_cache": str(tmp_path)})
    v2 = second.encode_images("clip", [img])
    assert second.stats["images_encoded"] == 0 and second.stats["disk_hits"] == 1
    np.testing.assert_array_equal(v1, v2)


def test_missing_weights_error_is_clear_and_cached(tmp_path):
    store = FeatureStore({"clip": "ViT-B-32:openai", "weights_dir": str(tmp_path)})
    for _ in range(2):
        with pytest.raises(MetricError) as err:
            store.backbone("clip")
        text = str(err.value)
        assert "ViT-B-32" in text and str(tmp_path) in text and "allow_download" in text


def test_content_hash_depends_on_values_shape_dtype():
    a = np.zeros((4, 6, 3), np.float32)
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(a.reshape(6, 4, 3))
    assert content_hash(a) != content_hash(a.astype(np.float64))
    b = a.copy()
    b[0, 0, 0] = 1e-7
    assert content_hash(a) != content_hash(b)


def test_memory_is_bounded_and_evicted_vectors_are_recomputed_identically(tiny):
    store = FeatureStore({"clip": tiny["spec"], "feature_memory": 2})
    imgs = [im[::8, ::8].astype(np.float32) / 255 for im in (data.coffee(), data.chelsea(), data.rocket())]
    first = store.encode_images("clip", imgs)  # one request set: all kept until read
    assert len(store._vectors) == 3 and store.stats["images_encoded"] == 3
    store.encode_images("clip", [imgs[2]])  # a memory hit; the two oldest are dropped
    assert len(store._vectors) == 2 and store.stats["images_encoded"] == 3
    again = store.encode_images("clip", imgs[:1])  # dropped: encoded again, same vector
    assert store.stats["images_encoded"] == 4
    np.testing.assert_allclose(again[0], first[0], atol=1e-6)
