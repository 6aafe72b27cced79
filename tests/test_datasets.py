"""Dataset loaders on tiny fake datasets in each layout, built from skimage.data photos."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from editmetrics.data import datasets
from editmetrics.plugins.registry import get_registry
from editmetrics.engine.runner import read_results, score_file


def photo(name: str, size=(48, 32)) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.BICUBIC)


def cli():
    from editmetrics.cli.app import _add_plugin_commands, cli as group

    _add_plugin_commands()
    return group


def test_registered():
    ids = set(get_registry().items["datasets"])
    assert {"magicbrush", "piebench", "ip2p", "folder"} <= ids
    for cls in datasets.LOADERS:
        assert cls.layout.strip() and cls.description


# --- MagicBrush ------------------------------------------------------------


@pytest.fixture
def magicbrush(tmp_path):
    root = tmp_path / "MagicBrush" / "test"
    sessions = {"101": [], "7": []}
    folder = root / "images" / "101"
    folder.mkdir(parents=True)
    photo("astronaut").save(folder / "101-input.png")
    for turn, name in ((1, "chelsea"), (2, "coffee")):
        photo(name).save(folder / f"101-output{turn}.png")
        # DALL-E 2 style mask: the source with the edit region transparent
        rgba = np.asarray(photo("astronaut").convert("RGBA")).copy()
        rgba[4:12, 10:30, 3] = 0
        Image.fromarray(rgba).save(folder / f"101-mask{turn}.png")
        previous = "101-input.png" if turn == 1 else "101-output1.png"
        sessions["101"].append({"input": previous, "mask": f"101-mask{turn}.png",
                                "output": f"101-output{turn}.png", "instruction": f"edit {turn}"})
    folder = root / "images" / "7"
    folder.mkdir(parents=True)
    photo("rocket").save(folder / "7-input.png")
    photo("camera").save(folder / "7-output1.png")
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), ((2, 22), (3, 37)))).save(folder / "7-mask1.png")  # L mask
    sessions["7"].append({"input": "7-input.png", "mask": "7-mask1.png", "output": "7-output1.png",
                          "instruction": "make it <b>bold</b>"})
    (root / "edit_sessions.json").write_text(json.dumps(sessions))
    return root


def test_magicbrush(magicbrush, tmp_path):
    loader = datasets.MagicBrush()
    loader.work_dir = str(tmp_path / "work")
    recs = list(loader.records(str(magicbrush)))
    assert [r["id"] for r in recs] == ["101-1", "101-2", "7-1"]
    first, second, single = recs
    assert first["source"] == str(magicbrush / "images" / "101" / "101-input.png")
    assert second["source"] == first["target"]  # turn 2 starts from turn 1's ground truth
    assert (first["category"], second["category"], single["category"]) == ("multi-turn", "multi-turn", "single-turn")
    assert (second["session"], second["turn"], second["instruction"]) == ("101", 2, "edit 2")
    mask = np.asarray(Image.open(first["mask"])) > 0
    expected = np.zeros((32, 48), bool)
    expected[4:12, 10:30] = True
    assert first["mask"].startswith(str(tmp_path / "work")) and (mask == expected).all()
    assert single["mask"] == str(magicbrush / "images" / "7" / "7-mask1.png")  # no alpha: used as is
    for rec in recs:
        assert all(os.path.isabs(rec[k]) and os.path.exists(rec[k]) for k in ("source", "target", "mask"))


def test_magicbrush_wrong_folder(tmp_path):
    with pytest.raises(datasets.DatasetError, match="edit_sessions.json"):
        list(datasets.MagicBrush().records(str(tmp_path)))


# --- PIE-Bench -------------------------------------------------------------


def test_pie_mask_decode_matches_definition():
    h, w = 6, 5
    encoded = [7, 3, 20, 100]  # a run past the end is cut at the image
    mask = pie_mask = datasets.pie_mask_decode(encoded, h, w, border=False)
    flat = np.zeros(h * w, bool)
    flat[7:10] = True
    flat[20:] = True
    assert (pie_mask.ravel() == flat).all()
    bordered = datasets.pie_mask_decode(encoded, h, w)
    assert bordered[0].all() and bordered[-1].all() and bordered[:, 0].all() and bordered[:, -1].all()
    assert (bordered[1:-1, 1:-1] == mask[1:-1, 1:-1]).all()


def test_piebench(tmp_path):
    root = tmp_path / "PIE-Bench"
    img_dir = root / "annotation_images" / "1_change_object_80"
    img_dir.mkdir(parents=True)
    photo("chelsea", (40, 30)).save(img_dir / "111000000000.jpg")
    photo("coffee", (40, 30)).save(img_dir / "111000000001.jpg")
    mapping = {
        "111000000001": {"image_path": "1_change_object_80/111000000001.jpg", "original_prompt": "a cup of [coffee]",
                         "editing_prompt": "a cup of [tea]", "editing_instruction": "turn the coffee into tea",
                         "editing_type_id": "1", "blended_word": "coffee tea", "mask": [41 + 40 * 5, 10]},
        "111000000000": {"image_path": "1_change_object_80/111000000000.jpg", "original_prompt": "a [cat]",
                         "editing_prompt": "a [dog]", "editing_type_id": "9", "blended_word": "cat dog",
                         "mask": [0, 0]},
    }
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    out = tmp_path / "pie.jsonl"
    res = CliRunner().invoke(cli(), ["dataset", "export", "piebench", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == ["111000000000", "111000000001"]
    cat, cup = recs
    assert cat["category"] == "change style" and cat["instruction"] == ""
    assert (cup["source_caption"], cup["target_caption"]) == ("a cup of coffee", "a cup of tea")
    assert cup["category"] == "change object" and cup["instruction"] == "turn the coffee into tea"
    assert "target" not in cup
    mask = np.asarray(Image.open(cup["mask"])) > 0
    assert mask.shape == (30, 40)
    assert mask[6, 1:11].all() and not mask[6, 11] and not mask[5, 5] and mask[0].all()
    assert cup["mask"].startswith(str(tmp_path / "pie-files"))
    # a second export refuses to overwrite, --force replaces
    res = CliRunner().invoke(cli(), ["dataset", "export", "piebench", str(root), "--out", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    res = CliRunner().invoke(cli(), ["dataset", "export", "piebench", str(root), "--out", str(out), "--force",
                                     "--limit", "1"])
    assert res.exit_code == 0 and len(out.read_text().splitlines()) == 1


# --- InstructPix2Pix -------------------------------------------------------


def _ip2p(root, with_seeds: bool):
    names = {"shard-0/0001": ("astronaut", "chelsea", [11, 12]), "shard-0/0002": ("rocket", "coffee", [5])}
    for name, (a, b, seeds) in names.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "prompt.json").write_text(json.dumps({"input": f"photo of {a}", "edit": f"turn {a} into {b}",
                                                        "output": f"photo of {b}"}))
        for seed in seeds:
            photo(a).save(folder / f"{seed}_0.jpg")
            photo(b).save(folder / f"{seed}_1.jpg")
    if with_seeds:
        (root / "seeds.json").write_text(json.dumps([[n, s[2]] for n, s in names.items()]))


@pytest.mark.parametrize("with_seeds", [True, False])
def test_ip2p(tmp_path, with_seeds):
    _ip2p(tmp_path, with_seeds)
    recs = list(datasets.InstructPix2Pix().records(str(tmp_path)))
    assert [r["id"] for r in recs] == ["shard-0/0001/11", "shard-0/0001/12", "shard-0/0002/5"]
    r = recs[2]
    assert r["source"] == str(tmp_path / "shard-0" / "0002" / "5_0.jpg")
    assert r["target"] == str(tmp_path / "shard-0" / "0002" / "5_1.jpg")
    assert (r["instruction"], r["source_caption"], r["target_caption"]) == \
        ("turn rocket into coffee", "photo of rocket", "photo of coffee")


# --- folder + CSV ----------------------------------------------------------


def test_folder_csv_export_and_score(tmp_path):
    root = tmp_path / "mine"
    (root / "out").mkdir(parents=True)
    photo("astronaut").save(root / "a.png")
    photo("astronaut").save(root / "out" / "a.png")
    photo("chelsea").save(root / "c.png")
    Image.fromarray(np.asarray(photo("chelsea")) // 2).save(root / "out" / "c.png")
    (root / "edits.csv").write_text(
        "image,output,prompt,category,source_bbox\n"
        'a.png,out/a.png,"nothing, really",keep,\n'
        'c.png,out/c.png,<script>x</script>,dark,"[1, 2, 30, 20]"\n', encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert datasets.export_dataset("folder", str(root), str(out)) == 2
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs[0] == {"source": str(root / "a.png"), "edited": str(root / "out" / "a.png"),
                       "instruction": "nothing, really", "category": "keep", "id": 1}
    assert recs[1]["source_bbox"] == [1, 2, 30, 20] and recs[1]["instruction"] == "<script>x</script>"
    # the exported file scores as is: identical pair -> +inf PSNR, halved image -> finite
    results = tmp_path / "r.jsonl"
    score_file(str(out), ["psnr"], str(results), progress=False)
    rows = list(read_results(str(results)))
    assert rows[0]["scores"]["psnr"] == float("inf") and 0 < rows[1]["scores"]["psnr"] < 20


def test_folder_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(datasets.DatasetError, match="no image column"):
        list(datasets.FolderCSV().records(str(tmp_path)))
    (tmp_path / "b.csv").write_text("source\na.png\n")
    with pytest.raises(datasets.DatasetError, match="expected one CSV"):
        list(datasets.FolderCSV().records(str(tmp_path)))


def test_cli_list_and_unknown(tmp_path):
    res = CliRunner().invoke(cli(), ["dataset", "list", "--layout"])
    assert res.exit_code == 0
    assert "magicbrush" in res.output and "mapping_file.json" in res.output
    res = CliRunner().invoke(cli(), ["dataset", "export", "magicbruhs", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "did you mean 'magicbrush'" in res.output
    res = CliRunner().invoke(cli(), ["dataset", "export", "magicbrush", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "edit_sessions.json" in res.output
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.part").exists()
