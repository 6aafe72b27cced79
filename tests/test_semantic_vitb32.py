"""Must-show: a random-weight ViT-B-32 saved to a local .pt file and passed as
``--clip ViT-B-32:/path/file.pt`` gives clip_i, clip_i@target, dir_i, dir_s and
editability_label equal to a direct open_clip computation within 1e-4.

One test, one module-scoped model (151M parameters: slow on a CPU), small images.
"""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

METRICS = "clip_i,clip_i@target,dir_i,dir_s,editability_label"


@pytest.fixture(scope="module")
def vitb32(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("vitb32")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = root / "vitb32_random.pt"
    torch.save(model.state_dict(), path)  # a plain state dict: loads with weights_only=True
    # the direct computation uses this in-memory model and open_clip's standard eval transform
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    return root, path, model.eval(), preprocess


def test_vitb32_file_agrees_with_open_clip(vitb32, tmp_path):
    from editmetrics.cli.app import cli

    _, path, model, preprocess = vitb32
    size = (64, 48)
    imgs = {
        "source": data.astronaut(), "target": data.chelsea(), "edited": data.coffee(),
        "surrogate": data.rocket(), "edited_surrogate": data.immunohistochemistry(),
    }
    rec = {"id": "one"}
    for name, arr in imgs.items():
        Image.fromarray(arr).resize(size, Image.BICUBIC).save(tmp_path / f"{name}.png")
        rec[name] = f"{name}.png"
    (tmp_path / "pairs.jsonl").write_text(json.dumps(rec) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, [
        "score", "--pairs", str(tmp_path / "pairs.jsonl"), "--metrics", METRICS, "--out", str(out),
        "--clip", f"ViT-B-32:{path}", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text().splitlines()[1])  # line 1 is the run header
    assert row["errors"] == {}

    def emb(name):
        with torch.no_grad():
            x = preprocess(Image.open(tmp_path / f"{name}.png")).unsqueeze(0)
            v = model.encode_image(x)[0].double().numpy()
        return v / np.linalg.norm(v)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    S, T, E, G, GE = (emb(k) for k in ("source", "target", "edited", "surrogate", "edited_surrogate"))
    expected = {
        "clip_i": float(E @ S),
        "clip_i@target": float(E @ T),
        "dir_i": cos(E - S, T - S),
        "dir_s": cos(E - S, GE - G),
        "editability_label": (1 + cos(GE - G, T - S)) / 2,
    }
    for key, value in expected.items():
        assert abs(row["scores"][key] - value) < 1e-4, (key, row["scores"][key], value)
