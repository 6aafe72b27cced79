"""The pyiqa plugin (plugins/editmetrics-pyiqa): local weights only, agreement
with pyiqa's own loading path on random weights of the real architectures,
input constraints, failure isolation. Skipped where the optional plugin is
not installed."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

pytest.importorskip("pyiqa")
plugin = pytest.importorskip("editmetrics_pyiqa")

from editmetrics.engine.runner import score_records  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pyiqa-images")
    src = data.chelsea()[::3, ::3][:96, :128]
    blurred = np.asarray(Image.fromarray(src).resize((32, 24)).resize((128, 96), Image.BICUBIC))
    Image.fromarray(src).save(folder / "src.png")
    Image.fromarray(blurred).save(folder / "blur.png")
    return folder


def _tensor(path):
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from pyiqa.archs.stlpips_arch import STLPIPS

    folder = tmp_path_factory.mktemp("pyiqa-weights")
    torch.manual_seed(0)
    st = STLPIPS(net="alex", variant="shift_tolerant", pretrained=False)
    torch.save(st.state_dict(), folder / plugin.FILES["stlpips"]["alex"])
    return folder


def test_stlpips_matches_pyiqa_loading_its_checkpoint(weights, images):
    # (TOPIQ-FR is not run here: one ResNet-50 forward costs ~10 s on the test machine)
    from pyiqa.archs.stlpips_arch import STLPIPS

    rows = score_records([{"id": "blur", "source": str(images / "src.png"), "edited": str(images / "blur.png")},
                          {"id": "same", "source": str(images / "src.png"), "edited": str(images / "src.png")}],
                         ["stlpips"], settings={"pyiqa_weights": str(weights)})
    x, y = _tensor(images / "blur.png"), _tensor(images / "src.png")
    path = str(weights / plugin.FILES["stlpips"]["alex"])
    with torch.no_grad():
        st = STLPIPS(net="alex", variant="shift_tolerant", pretrained_model_path=path).eval()
        expect = float(st(x, y, normalize=True))
    assert rows[0]["errors"] == {}
    assert abs(rows[0]["scores"]["stlpips"] - expect) < 1e-6
    assert rows[1]["scores"]["stlpips"] == 0.0


def test_stlpips_refuses_a_checkpoint_without_the_backbone(tmp_path, images):
    from pyiqa.archs.stlpips_arch import STLPIPS

    st = STLPIPS(net="alex", variant="shift_tolerant", pretrained=False)
    torch.save({k: v for k, v in st.state_dict().items() if k.startswith("lin")}, tmp_path / plugin.FILES["stlpips"]["alex"])
    rows = score_records([{"id": 1, "source": str(images / "src.png"), "edited": str(images / "blur.png")}],
                         ["stlpips"], settings={"pyiqa_weights": str(tmp_path)})
    assert "lacks" in rows[0]["errors"]["stlpips"]


def test_missing_weights_name_file_and_folder_others_scored(images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    rows = score_records([{"id": 1, "source": str(images / "src.png"), "edited": str(images / "blur.png")}],
                         ["ahiq", "afine", "stlpips", "topiq_fr", "psnr"])
    row = rows[0]
    folder = str(tmp_path / "th" / "hub" / "pyiqa")
    assert row["scores"]["psnr"] > 0
    for key, name in (("ahiq", "AHIQ_vit_p8_epoch33-da3ea303.pth"), ("afine", "afine.pth"),
                      ("stlpips", "alex_shift_tolerant.pth"), ("topiq_fr", "cfanet_fr_kadid_res50-2c4cc61d.pth")):
        assert row["scores"][key] is None
        assert name in row["errors"][key] and folder in row["errors"][key] and "pyiqa_weights" in row["errors"][key]


def test_input_constraints():
    img = np.random.default_rng(0).random((70, 100, 3), dtype=np.float32)
    a, b = plugin.AFINE().adapt(img, img)
    assert a.shape == b.shape == (64, 96, 3)  # nearest multiples of 32
    a, _ = plugin.AFINE().adapt(img[:64, :96], img[:64, :96])
    assert a.shape == (64, 96, 3)


def test_directions_follow_the_methods():
    assert plugin.STLPIPS.higher_is_better is False and plugin.AFINE.higher_is_better is False
    assert plugin.TopiqFR.higher_is_better is True and plugin.AHIQ.higher_is_better is True


def test_no_pretrained_timm_shim_forces_local_loading():
    import timm

    calls = []

    class Fake:
        def create_model(self, *a, **kw):
            calls.append(kw)
            return "model"

    shim = plugin._NoPretrainedTimm(Fake())
    assert shim.create_model("resnet50", pretrained=True) == "model" and calls[0]["pretrained"] is False
    assert plugin._NoPretrainedTimm(timm).list_models is timm.list_models


def test_absent_pyiqa_is_a_clear_per_record_reason(images, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyiqa", None)  # import pyiqa -> ImportError
    row = score_records([{"id": 1, "source": str(images / "src.png"), "edited": str(images / "blur.png")}],
                        ["stlpips", "psnr"])[0]
    assert "needs pyiqa" in row["errors"]["stlpips"] and "LICENSE-NOTE" in row["errors"]["stlpips"]
    assert row["scores"]["psnr"] > 0
