"""editmetrics.testing.tiny and `editmetrics demo-weights`: seeded tiny random models of
the real architectures, and a config with which `score` runs through the CLI."""

import os
import tomllib

import numpy as np
import pytest
from PIL import Image

from editmetrics.testing.tiny import RANDOM_NOTE, write_dinov2, write_open_clip

from helpers import photo, read_jsonl, save, write_pairs


def run_cli(*args):
    """The `editmetrics` command in-process (plugin commands added from the entry
    points, as `main` does); a subprocess would re-import torch for seconds."""
    from click.testing import CliRunner

    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    # --no-ip2p: the diffusers folder is the slowest to write and test_rsie covers it
    result = run_cli("demo-weights", str(root / "w"), "--no-ip2p")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"root": root, "result": result, "config": root / "w" / "editmetrics.toml"}


def test_demo_weights_writes_a_config_that_points_at_them(demo):
    assert "RANDOM WEIGHTS" in demo["result"].stdout and "RANDOM" in demo["result"].stderr
    text = demo["config"].read_text()
    assert RANDOM_NOTE in text  # the warning travels with the config file
    settings = tomllib.loads(text)
    assert set(settings) == {"clip", "dino", "bpm_groundingdino", "bpm_sam"}
    cfg, weights = settings["clip"].split(":", 1)
    assert os.path.isfile(cfg) and os.path.isfile(weights)
    assert settings["dino"].startswith("hf:") and os.path.isfile(os.path.join(settings["dino"][3:], "config.json"))
    for key in ("bpm_groundingdino", "bpm_sam"):
        assert os.path.isfile(os.path.join(settings[key], "config.json"))
        assert f'{key} = "{settings[key]}"' in demo["result"].stdout  # printed as written


def test_score_with_demo_config_through_the_cli(demo):
    root = demo["root"]
    src = photo("astronaut", (96, 64))
    edited = src.copy()
    mask = np.zeros((64, 96), bool)
    mask[10:40, 30:60] = True
    edited[mask] = [200, 30, 30]
    save(src, str(root / "src.png"))
    save(edited, str(root / "edit.png"))
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "mask.png")
    pairs = write_pairs(str(root / "pairs.jsonl"), [
        {"id": "same", "source": "src.png", "edited": "src.png", "instruction": "make the helmet red"},
        {"id": "edit", "source": "src.png", "edited": "edit.png", "mask": "mask.png",
         "instruction": "make the helmet red"}])
    out = root / "out.jsonl"
    result = run_cli("score", "--config", str(demo["config"]), "--pairs", pairs, "--out", str(out),
                     "--metrics", "clip_i,dino_i,clip_t(text=instruction),bpm", "--no-progress")
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = {r["id"]: r for r in read_jsonl(str(out))}
    assert rows["same"]["errors"] == {} and rows["edit"]["errors"] == {}
    # an image against itself: exactly 1 whatever the (random) weights
    assert rows["same"]["scores"]["clip_i"] == pytest.approx(1.0, abs=1e-6)
    assert rows["same"]["scores"]["dino_i"] == pytest.approx(1.0, abs=1e-6)
    assert rows["edit"]["scores"]["clip_i"] < 1 - 1e-6
    # nothing changed outside the (empty) edit region: BPM's preservation term is perfect
    assert rows["same"]["scores"]["bpm.s_preserve"] == 1.0


def test_builders_are_deterministic(tmp_path):
    a = write_open_clip(str(tmp_path / "a"), name="tinyclip_det", seed=3)
    b = write_open_clip(str(tmp_path / "b"), name="tinyclip_det", seed=3)
    assert open(a.split(":", 1)[1], "rb").read() == open(b.split(":", 1)[1], "rb").read()
    dino = [write_dinov2(str(tmp_path / f"d{i}"), seed=seed)[3:] for i, seed in enumerate((0, 0, 1))]
    weights = [open(os.path.join(d, "model.safetensors"), "rb").read() for d in dino]
    assert weights[0] == weights[1] != weights[2]
