"""SPPE / InstructPix2Pix loaders, the synthetic set's construction, the
Table-4 Markdown table."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from editmetrics.plugins.registry import get_registry
from editmetrics.data.records import PairsFileError
from editmetrics.sppe.loader import InstructPix2PixLoader, SppeLoader
from editmetrics.sppe.synthetic import apply_edit, box_mask, make_surrogate, make_synthetic, photo
from editmetrics.sppe.table import markdown_table


def test_loaders_are_registered_with_the_contract():
    reg = get_registry()
    for name in ("sppe", "instructpix2pix"):
        cls = reg.get("datasets", name)
        assert cls.id == name and cls.description and "ROOT" in cls.layout
        assert callable(getattr(cls(), "records"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-nolabel")
    make_synthetic(str(out), photos=8, surrogates=1, instructions=2, size=48, seed=2, clip_spec="unused:spec",
                   label=False)
    return out


def test_sppe_loader_maps_fields_and_absolute_paths(synth):
    recs = list(SppeLoader().records(str(synth)))
    assert len(recs) == 16
    for rec in recs:
        for name in ("source", "surrogate", "mask", "target", "edited_surrogate"):
            assert rec[name].startswith("/") and Image.open(rec[name]).size == (48, 48)
        assert "edited_source" not in rec and rec["split"] in ("train", "test")
    assert list(SppeLoader().records(str(synth / "sppe.json"))) == recs


def test_split_is_by_photo_and_stratified(synth):
    recs = list(SppeLoader().records(str(synth)))
    train = {r["source"] for r in recs if r["split"] == "train"}
    test = {r["source"] for r in recs if r["split"] == "test"}
    assert train and test and not train & test
    cats = {r["category"] for r in recs}
    assert cats == {r["category"] for r in recs if r["split"] == "test"} == {r["category"] for r in recs if r["split"] == "train"}
    lines = (synth / "train.jsonl").read_text().splitlines() + (synth / "test.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(r["id"] for r in recs)


def test_sppe_loader_errors(tmp_path):
    with pytest.raises(PairsFileError, match="sppe.json"):
        list(SppeLoader().records(str(tmp_path)))
    (tmp_path / "sppe.json").write_text(json.dumps([{"id": 1, "category": "faces", "instruction": "x", "source": "a.png"}]))
    with pytest.raises(PairsFileError, match="surrogate"):
        list(SppeLoader().records(str(tmp_path)))
    inst = {"id": 1, "category": "faces", "instruction": "x", "source": "a.png", "surrogate": "b.png"}
    (tmp_path / "sppe.json").write_text(json.dumps({"instances": [inst, inst]}))
    with pytest.raises(PairsFileError, match="duplicate"):
        list(SppeLoader().records(str(tmp_path)))


def test_instructpix2pix_loader(tmp_path):
    sample = tmp_path / "0001"
    sample.mkdir()
    (sample / "prompt.json").write_text(json.dumps({"edit": "make it snowy", "input": "a cat", "output": "a cat in snow"}))
    img = data.chelsea()[:64, :64]
    for name in ("42_0.jpg", "42_1.jpg", "42_s.png", "7_0.jpg", "7_1.jpg", "9_0.jpg"):
        Image.fromarray(img).save(sample / name)
    (tmp_path / "not-a-sample").mkdir()
    recs = list(InstructPix2PixLoader().records(str(tmp_path)))
    assert [r["id"] for r in recs] == ["0001/42", "0001/7"]  # 9 has no edit
    first = recs[0]
    assert first["instruction"] == "make it snowy" and first["surrogate"].endswith("42_s.png")
    assert first["target"].endswith("42_1.jpg") and first["source_caption"] == "a cat"
    assert "surrogate" not in recs[1] and "mask" not in first


def test_surrogate_changes_only_the_region():
    x = photo("astronaut", 64)
    donor = photo("coffee", 64)
    mask = box_mask(64, "faces", np.random.default_rng(0))
    s = make_surrogate(x, mask, donor, strength=1.0, mix=0.5)
    from scipy import ndimage

    far = ~ndimage.binary_dilation(mask, iterations=6)  # beyond the feathered edge
    assert np.abs(s[far] - x[far]).max() < 1e-3
    assert np.abs(s[mask] - x[mask]).mean() > 0.05


def test_edits_respect_their_scope():
    x = photo("chelsea", 64)
    mask = box_mask(64, "passport", np.random.default_rng(1))
    removed = apply_edit(x, mask, "remove the object")
    assert np.array_equal(removed[~mask], x[~mask]) and not np.allclose(removed[mask], x[mask])
    night = apply_edit(x, mask, "change the background to a night scene")
    assert np.array_equal(night[mask], x[mask]) and night[~mask].mean() < x[~mask].mean()
    with pytest.raises(ValueError):
        apply_edit(x, mask, "do something else")


def test_markdown_table_orders_like_table_4_and_lists_failures():
    results = [{"metric": "erma", "n": 10, "srcc": 0.5, "plcc": 0.4, "plcc_logistic": 0.45, "krcc": 0.3,
                "srcc_std_across_groups": 0.1},
               {"metric": "dists(image=surrogate)", "n": 10, "srcc": 0.2, "plcc": 0.1, "plcc_logistic": 0.15,
                "krcc": 0.1, "srcc_std_across_groups": 0.2}]
    text = markdown_table(results, {"afine(image=surrogate)": "afine: weight file afine.pth not found in /x"})
    header = text.splitlines()[0]
    assert header.index("AFINE-FR") < header.index("DISTS") < header.index("ERMA")
    assert "| SRCC | n/a | 0.2000 | 0.5000 |" in text and "| PLCC | n/a | 0.1500 | 0.4500 |" in text
    assert "afine.pth not found" in text


def test_synthetic_instructpix2pix_layout_with_full_image_surrogates(tmp_path):
    from editmetrics.sppe.synthetic import make_synthetic_ip2p

    summary = make_synthetic_ip2p(str(tmp_path), photos=3, instructions=2, size=48, seed=0)
    recs = list(InstructPix2PixLoader().records(str(tmp_path)))
    assert len(recs) == summary["records"] == 6
    for rec in recs:
        src = np.asarray(Image.open(rec["source"]), dtype=np.float32)
        sur = np.asarray(Image.open(rec["surrogate"]), dtype=np.float32)
        changed = np.abs(src - sur).max(axis=2) > 0
        assert changed.mean() > 0.9  # the whole image is replaced, not a region
        assert rec["edited_surrogate"].endswith("0_s1.png") and "mask" not in rec
