"""editmetrics pairs from-folders: stems across extensions, instructions merged, relative paths, unmatched files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from editmetrics.data.pairs_from_folders import FolderPairsError, build_pairs, scan_folder
from editmetrics.data.records import read_pairs
from helpers import photo


@pytest.fixture
def folders(tmp_path):
    """source/{cat.png, rocket.jpg, coffee.webp, notes.txt}, edited/{cat.jpg, rocket.png, coffee.PNG},
    masks/{cat.png}, targets/{cat.png, rocket.png, coffee.png}."""
    src, edt, msk, tgt = (tmp_path / d for d in ("source", "edited", "masks", "targets"))
    for d in (src, edt, msk, tgt):
        d.mkdir()
    for name, s_ext, e_ext, pic in (("cat", ".png", ".jpg", "chelsea"), ("rocket", ".jpg", ".png", "rocket"),
                                    ("coffee", ".webp", ".PNG", "coffee")):
        img = photo(pic, (64, 48))
        Image.fromarray(img).save(src / f"{name}{s_ext}")
        Image.fromarray((img * 0.8).astype(np.uint8)).save(edt / f"{name}{e_ext}")
        Image.fromarray(img[:, ::-1].copy()).save(tgt / f"{name}.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(msk / "cat.png")
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"")
    return {"source": str(src), "edited": str(edt), "mask": str(msk), "target": str(tgt), "root": tmp_path}


def _cli(*args):
    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    return CliRunner().invoke(cli, ["pairs", "from-folders", *args])


def test_scan_matches_stems_whatever_the_extension(folders):
    images, others = scan_folder(folders["source"], "source")
    assert sorted(images) == ["cat", "coffee", "rocket"] and others == ["notes.txt"]
    Image.new("RGB", (4, 4)).save(os.path.join(folders["source"], "cat.bmp"))
    with pytest.raises(FolderPairsError, match="two images named 'cat'"):
        scan_folder(folders["source"], "source")


def test_build_with_instructions_csv_relative_paths(folders):
    root = folders["root"]
    (root / "instr.csv").write_text("id,instruction,category,source_bbox\n"
                                    'cat,make the cat blue,local,"[1, 2, 30, 40]"\n'
                                    "rocket,paint the rocket red,local,\n"
                                    "coffee,make it darker,global,\n", encoding="utf-8")
    out = root / "out" / "pairs.jsonl"
    result = build_pairs(folders["source"], folders["edited"], str(out), target=folders["target"],
                         instructions=str(root / "instr.csv"))
    assert result.unmatched == []
    by_id = {r["id"]: r for r in result.records}
    assert list(by_id) == ["cat", "coffee", "rocket"]
    assert by_id["cat"] == {"id": "cat", "source": "../source/cat.png", "edited": "../edited/cat.jpg",
                            "target": "../targets/cat.png", "instruction": "make the cat blue", "category": "local",
                            "source_bbox": [1, 2, 30, 40]}
    assert by_id["coffee"]["edited"] == "../edited/coffee.PNG" and "source_bbox" not in by_id["coffee"]


def test_cli_end_to_end_jsonl_instructions_then_score(folders, tmp_path):
    root = folders["root"]
    (root / "instr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "cat", "instruction": "make the cat blue", "category": "local"},
        {"id": "rocket", "instruction": "paint the rocket red", "category": "local"},
        {"id": "coffee", "instruction": "make it darker", "category": "global"}]), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    res = _cli("--source", folders["source"], "--edited", folders["edited"], "--target", folders["target"],
               "--instructions", str(root / "instr.jsonl"), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "wrote" in res.stdout and "(3 records)" in res.stdout
    assert "1 non-image file(s)" in res.stderr and "notes.txt" in res.stderr
    records = list(read_pairs(str(out)))
    assert [r.id for r in records] == ["cat", "coffee", "rocket"]
    assert all(os.path.isfile(r.path(f)) for r in records for f in ("source", "edited", "target"))
    # the pairs file scores as it is
    from editmetrics.engine.runner import read_results, score_file

    score_file(str(out), ["psnr", "ssim@target"], str(tmp_path / "r.jsonl"), progress=False)
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert all(r["errors"] == {} and r["scores"]["psnr"] > 0 for r in rows)
    assert rows[0]["instruction"] == "make the cat blue"
    # an existing file is not overwritten without --force
    res = _cli("--source", folders["source"], "--edited", folders["edited"], "--out", str(out))
    assert res.exit_code == 2 and "--force" in res.output


def test_unmatched_files_error_or_warning(folders, tmp_path):
    os.remove(os.path.join(folders["edited"], "rocket.png"))
    Image.new("RGB", (8, 8)).save(os.path.join(folders["edited"], "stray.png"))
    instr = tmp_path / "i.csv"
    instr.write_text("id,instruction\ncat,a\nghost,b\nrocket,c\n", encoding="utf-8")
    args = ["--source", folders["source"], "--edited", folders["edited"], "--mask", folders["mask"],
            "--instructions", str(instr)]
    out = tmp_path / "p.jsonl"
    res = _cli(*args, "--out", str(out))
    assert res.exit_code == 2 and not out.exists()
    message = res.output
    assert "unmatched files (matched by name stem):" in message
    assert "source images without an edited image" in message and "rocket.jpg" in message
    assert "edited images without a source image" in message and "stray.png" in message
    assert "records without a mask image" in message and "coffee" in message
    assert f"ids in {instr} for no record (2): ghost, rocket" in message
    assert f"records without a row in {instr} (1): coffee" in message
    assert "--allow-unmatched" in message
    res = _cli(*args, "--out", str(out), "--allow-unmatched")
    assert res.exit_code == 0, res.output
    assert "warning: unmatched files" in res.stderr and "stray.png" in res.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["cat", "coffee"]
    assert records[0]["mask"].endswith("masks/cat.png") and "mask" not in records[1]
    assert "instruction" not in records[1]


def test_instruction_file_problems(folders, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,source\ncat,x.png\n", encoding="utf-8")
    with pytest.raises(FolderPairsError, match="column 'source' would overwrite"):
        build_pairs(folders["source"], folders["edited"], str(tmp_path / "o.jsonl"), instructions=str(bad))
    bad.write_text("instruction\nx\n", encoding="utf-8")
    with pytest.raises(FolderPairsError, match="has no 'id'"):
        build_pairs(folders["source"], folders["edited"], str(tmp_path / "o.jsonl"), instructions=str(bad))
    res = _cli("--source", str(tmp_path / "nope"), "--edited", folders["edited"], "--out", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 2 and "is not a folder" in res.output


def test_csv_output(folders, tmp_path):
    out = tmp_path / "pairs.csv"
    res = _cli("--source", folders["source"], "--edited", folders["edited"], "--out", str(out))
    assert res.exit_code == 0, res.output
    records = list(read_pairs(str(out)))
    assert [r.id for r in records] == ["cat", "coffee", "rocket"]
    assert os.path.isfile(records[0].path("edited"))
