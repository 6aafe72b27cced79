"""Missing weights, no downloads, safe checkpoint loading, `editmetrics weights`."""

import json
import os

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data

from editmetrics.contract.metric import MetricError
from editmetrics.weights.resolver import UnsafeCheckpoint, downloads_allowed, load_state_dict


@pytest.fixture()
def pairs(tmp_path):
    for name, arr in (("s", data.astronaut()), ("e", data.chelsea())):
        Image.fromarray(arr).resize((40, 32)).save(tmp_path / f"{name}.png")
    rows = [{"id": i, "source": "s.png", "edited": "e.png", "target": "s.png"} for i in range(3)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _cli():
    from editmetrics.cli.app import _add_plugin_commands, cli

    _add_plugin_commands()
    return cli


def test_missing_weights_one_clear_error_per_metric(pairs, monkeypatch):
    """Weights absent, hub offline, downloads even 'allowed': no hang, no network;
    each CLIP/DINO metric carries one message naming model, file and place;
    the pixel metric is still scored."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wdir = pairs / "weights"
    out = pairs / "out.jsonl"
    result = CliRunner().invoke(_cli(), [
        "score", "--pairs", str(pairs / "pairs.jsonl"), "--metrics", "psnr,clip_i,dir_i,dino_i",
        "--out", str(out), "--set", f"weights_dir={wdir}", "--set", "allow_download=true", "--no-progress",
    ])
    assert result.exit_code == 1, result.output  # some scores missing
    rows = [json.loads(line) for line in out.read_text().splitlines()][1:]  # line 1: the run header
    assert len(rows) == 3
    for row in rows:
        assert row["scores"]["psnr"] is not None
        for key in ("clip_i", "dir_i"):
            msg = row["errors"][key]
            assert row["scores"][key] is None
            assert "ViT-L-14:openai" in msg and "open_clip_model.safetensors" in msg
            assert str(wdir / "open_clip" / "ViT-L-14" / "openai") in msg and "allow_download" in msg
        assert "dinov2" in row["errors"]["dino_i"] and str(wdir / "hf") in row["errors"]["dino_i"]
    assert not wdir.exists()  # nothing was fetched or created


def test_download_switch_and_hub_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not downloads_allowed({})
    assert not downloads_allowed({"allow_download": "false"})
    assert downloads_allowed({"allow_download": "true"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not downloads_allowed({"allow_download": "true"})


class Evil:
    """Unpickling this would create a file: weights_only must refuse it."""

    marker = None

    def __reduce__(self):
        return (open, (Evil.marker, "w"))


def test_checkpoints_never_unpickle_objects(tmp_path):
    Evil.marker = str(tmp_path / "pwned")
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(2), "x": Evil()}, bad)
    with pytest.raises(UnsafeCheckpoint, match="weights_only"):
        load_state_dict(str(bad))
    assert not os.path.exists(Evil.marker)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"module.w": torch.ones(3)}}, good)
    state = load_state_dict(str(good))
    assert list(state) == ["w"] and torch.equal(state["w"], torch.ones(3))
    script = tmp_path / "script.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(script))
    with pytest.raises(UnsafeCheckpoint, match="TorchScript"):  # not a published OpenAI file
        load_state_dict(str(script))


def test_weights_list_path_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cli, run = _cli(), CliRunner()
    wdir = tmp_path / "w"
    res = run.invoke(cli, ["weights", "list", "--json", "--set", f"weights_dir={wdir}"])
    assert res.exit_code == 0, res.output
    rows = {r["spec"]: r for r in json.loads(res.output)}
    assert rows["ViT-L-14:openai"]["present"] is False
    assert {"clip_i", "clip_rc", "dir_s", "editability_label"} <= set(rows["ViT-L-14:openai"]["metrics"])
    assert rows["hf:facebook/dinov2-base"]["metrics"] == ["dino_i"]

    res = run.invoke(cli, ["weights", "path", "clip", "--set", f"weights_dir={wdir}"])
    assert res.exit_code == 1 and str(wdir / "open_clip" / "ViT-L-14" / "openai") in res.output

    # a file in the right place but not OpenAI's published bytes: sha256 mismatch
    home = wdir / "open_clip" / "ViT-B-32" / "openai"
    home.mkdir(parents=True)
    (home / "ViT-B-32.pt").write_bytes(b"not the real weights")
    res = run.invoke(cli, ["weights", "verify", "--clip", "ViT-B-32:openai", "--dino", str(tmp_path),
                           "--set", f"weights_dir={wdir}"])
    assert res.exit_code == 1
    assert "MISMATCH" in res.output and "40d365715913c9da" in res.output
    assert f"PRESENT   {tmp_path}" in res.output  # a bare folder is a transformers backbone


def test_unknown_arch_and_missing_file_are_metric_errors(tmp_path):
    from editmetrics.engine.features import FeatureStore

    store = FeatureStore({"clip": "ViT-Nope:openai"})
    with pytest.raises(MetricError, match="unknown open_clip architecture"):
        store.backbone("clip")
    with pytest.raises(MetricError, match="not found"):
        FeatureStore({"clip": f"ViT-B-32:{tmp_path}/none.safetensors"}).backbone("clip")


def test_a_missing_local_hf_folder_names_the_folder_and_no_download_source(tmp_path):
    from editmetrics.weights.resolver import locate_hf, missing_message

    folder = str(tmp_path / "dinov2-base")
    text = missing_message("dino", locate_hf(folder, {}), "dino")
    assert f"in {folder}" in text and "huggingface.co" not in text
    assert "(from huggingface.co/facebook/dinov2-base)" in missing_message(
        "dino", locate_hf("facebook/dinov2-base", {"weights_dir": str(tmp_path)}), "dino")
