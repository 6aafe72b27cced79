"""LPIPS / DISTS baselines: local weights only, agreement with independent
computations on random weights of the real architectures, failure isolation."""

import os

import numpy as np
import pytest
import torch
import torchvision
from skimage import data

from editmetrics.metrics.iqa import TORCHVISION_FILES
from editmetrics.engine.runner import score_records


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iqa-weights")
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None).features
    torch.save({f"features.{k}": v for k, v in alex.state_dict().items()}, folder / TORCHVISION_FILES["alex"])
    vgg = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, folder / TORCHVISION_FILES["vgg"])
    alpha, beta = torch.rand(1, 1475, 1, 1), torch.rand(1, 1475, 1, 1)
    total = alpha.sum() + beta.sum()
    torch.save({"alpha": alpha / total, "beta": beta / total}, folder / "dists_weights.pt")
    return folder, alex, vgg


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("iqa-images")
    src = data.astronaut()[::8, ::8]  # 64x64 photograph
    noisy = np.clip(src + np.random.default_rng(0).normal(0, 25, src.shape), 0, 255).astype(np.uint8)
    Image.fromarray(src).save(folder / "src.png")
    Image.fromarray(noisy).save(folder / "noisy.png")
    return folder


def _load(path):
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def _lpips_by_hand(alex, x, y):
    """LPIPS v0.1 written out: scaling layer, unit-normalised ReLU features,
    squared difference, the package's calibrated 1x1 heads, spatial mean."""
    import lpips

    heads = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/alex.pth"), map_location="cpu",
                       weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    taps = [1, 4, 7, 9, 11]
    total = 0.0
    fx, fy = (2 * x - 1 - shift) / scale, (2 * y - 1 - shift) / scale
    layer = 0
    with torch.no_grad():
        for i, module in enumerate(alex):
            fx, fy = module(fx), module(fy)
            if i in taps:
                nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                w = heads[f"lin{layer}.model.1.weight"]
                total = total + torch.nn.functional.conv2d((nx - ny) ** 2, w).mean()
                layer += 1
    return float(total)


def test_lpips_matches_formula_on_loaded_weights(weights, images):
    folder, alex, _ = weights
    rows = score_records(
        [{"id": "n", "source": str(images / "src.png"), "edited": str(images / "noisy.png")},
         {"id": "same", "source": str(images / "src.png"), "edited": str(images / "src.png")}],
        ["lpips", "lpips(image=source)@edited"], settings={"iqa_weights": str(folder)})
    expect = _lpips_by_hand(alex, _load(images / "noisy.png"), _load(images / "src.png"))
    assert rows[0]["errors"] == {}
    assert abs(rows[0]["scores"]["lpips"] - expect) < 1e-5
    assert rows[1]["scores"]["lpips"] == 0.0
    # image/reference swapped through the `image` parameter: LPIPS is symmetric up to float error
    assert abs(rows[0]["scores"]["lpips(image=source)@edited"] - expect) < 1e-5


def test_dists_matches_piq_own_construction(weights, images, monkeypatch):
    import piq
    import piq.perceptual as pp

    folder, _, vgg = weights
    rows = score_records([{"id": "n", "source": str(images / "src.png"), "edited": str(images / "noisy.png")},
                          {"id": "same", "source": str(images / "src.png"), "edited": str(images / "src.png")}],
                         ["dists"], settings={"iqa_weights": str(folder)})
    # piq's own __init__, with its two URL fetches answered from the same local tensors
    ab = torch.load(folder / "dists_weights.pt", weights_only=True)

    class _VGG:
        features = vgg

    monkeypatch.setattr(pp, "vgg16", lambda **kw: _VGG)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: ab)
    with torch.no_grad():
        ref = float(piq.DISTS(reduction="none")(_load(images / "noisy.png"), _load(images / "src.png")))
    assert abs(rows[0]["scores"]["dists"] - ref) < 1e-6
    assert abs(rows[1]["scores"]["dists"]) < 1e-6


def test_missing_weights_name_file_and_folder_and_others_still_score(images, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    rows = score_records([{"id": 1, "source": str(images / "src.png"), "edited": str(images / "noisy.png")}],
                         ["lpips", "dists", "psnr"], settings={"iqa_weights": str(empty)})
    row = rows[0]
    assert row["scores"]["psnr"] > 0 and row["scores"]["lpips"] is None and row["scores"]["dists"] is None
    assert "alexnet-owt-7be5be79.pth" in row["errors"]["lpips"] and str(empty) in row["errors"]["lpips"]
    assert "vgg16-397923af.pth" in row["errors"]["dists"] and str(empty) in row["errors"]["dists"]


def test_default_folder_is_torch_hub_checkpoints(images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    rows = score_records([{"id": 1, "source": str(images / "src.png"), "edited": str(images / "noisy.png")}],
                         ["lpips"])
    assert str(tmp_path / "th" / "hub" / "checkpoints") in rows[0]["errors"]["lpips"]


def test_too_small_images_are_a_per_record_error(weights, tmp_path):
    from PIL import Image

    Image.fromarray(data.astronaut()[:16, :16]).save(tmp_path / "tiny.png")
    rows = score_records([{"id": 1, "source": str(tmp_path / "tiny.png"), "edited": str(tmp_path / "tiny.png")}],
                         ["lpips"], settings={"iqa_weights": str(weights[0])})
    assert "at least 32 px" in rows[0]["errors"]["lpips"]
