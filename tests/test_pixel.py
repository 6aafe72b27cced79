"""Pixel metrics: identities, and agreement with scikit-image and torchmetrics."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from editmetrics import score_records
from editmetrics.metrics.pixel import RGB2GRAY, rgb2gray_uint8

from helpers import photo, save


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    """A real photo, a noisy-and-shifted edit of it, and a mask of the left half."""
    d = tmp_path_factory.mktemp("pixel")
    src = photo("astronaut", (192, 176))
    rng = np.random.default_rng(0)
    edited = np.clip(src.astype(np.int16) + rng.integers(-25, 26, src.shape) + 10, 0, 255).astype(np.uint8)
    mask = np.zeros(src.shape[:2], np.uint8)
    mask[:, :96] = 255
    save(src, d / "src.png")
    save(edited, d / "edited.png")
    save(mask, d / "mask.png")
    return d, src.astype(np.float64) / 255.0, edited.astype(np.float64) / 255.0, mask > 0


def scores(d, metrics, **record):
    base = {"source": "src.png", "edited": "edited.png"}
    base.update(record)
    rows = score_records([base], metrics, base_dir=str(d))
    assert rows[0]["errors"] == {}, rows[0]["errors"]
    return rows[0]["scores"]


def test_identical_images(pair_dir):
    d, *_ = pair_dir
    s = scores(d, ["psnr", "ssim", "ssim(convention=rgb)", "l1", "l2", "ms_ssim", "fsim"], edited="src.png")
    assert s["psnr"] == math.inf
    assert s["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert s["ssim(convention=rgb)"] == pytest.approx(1.0, abs=1e-6)
    assert s["l1"] == 0.0 and s["l2"] == 0.0
    assert s["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert s["fsim"] == pytest.approx(1.0, abs=1e-5)


def test_psnr_l1_l2_match_independent_implementations(pair_dir):
    d, src, edited, _ = pair_dir
    # Tolerances: images are float32 in [0, 1] inside editmetrics (1e-8 relative
    # rounding of k/255), the references compute in float64.
    s = scores(d, ["psnr", "l1", "l2"])
    assert s["psnr"] == pytest.approx(peak_signal_noise_ratio(src, edited, data_range=1.0), abs=1e-6)
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1))[None]  # noqa: E731
    assert s["psnr"] == pytest.approx(float(tm_psnr(t(edited), t(src), data_range=1.0)), abs=1e-5)  # torchmetrics sums in float32
    assert s["l1"] == pytest.approx(np.abs(src - edited).mean(), rel=1e-6)
    assert s["l2"] == pytest.approx(((src - edited) ** 2).mean(), rel=1e-6)


def test_ssim_wang_convention_matches_scikit_image(pair_dir):
    """Wang et al.'s script: 8-bit rgb2gray luma, Gaussian 11/1.5, valid region.

    scikit-image with gaussian_weights, sigma 1.5, population covariance and
    data_range 255 computes the same statistic (its border crop equals the
    valid region)."""
    d, src, edited, _ = pair_dir
    s = scores(d, ["ssim"])
    gray = lambda a: rgb2gray_uint8(a.astype(np.float32))  # noqa: E731
    expected = structural_similarity(gray(src), gray(edited), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    assert s["ssim"] == pytest.approx(expected, abs=1e-6)


def test_rgb2gray_matches_matlab_rounding():
    # MATLAB: rgb2gray(uint8([255 0 0])) == 76; ([0 255 0]) == 150; ([0 0 255]) == 29
    px = np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]]], np.float32)
    assert rgb2gray_uint8(px).tolist() == [[76.0, 150.0, 29.0, 128.0]]
    assert RGB2GRAY.sum() == pytest.approx(1.0, abs=1e-12)


def test_ssim_rgb_convention_matches_scikit_image_and_torchmetrics_interior(pair_dir):
    """convention=rgb equals scikit-image's channel_axis SSIM. torchmetrics 1.9
    averages its map over the whole reflect-padded image; over the valid
    interior its map must agree with ours."""
    d, src, edited, _ = pair_dir
    s = scores(d, ["ssim(convention=rgb)"])
    expected = structural_similarity(src, edited, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
    assert s["ssim(convention=rgb)"] == pytest.approx(expected, abs=1e-6)
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
    _, full = tm_ssim(t(edited), t(src), data_range=1.0, return_full_image=True)
    interior = float(full[..., 5:-5, 5:-5].mean())
    assert s["ssim(convention=rgb)"] == pytest.approx(interior, abs=1e-5)


def test_region_restricts_pixels(pair_dir, tmp_path):
    d, src, edited, mask = pair_dir
    # Edit only inside the mask: outside must score as identical.
    inside_only = np.where(mask[..., None], edited, src)
    save(np.round(inside_only * 255).astype(np.uint8), d / "inside_only.png")
    s = scores(d, ["psnr(region=outside)", "psnr(region=inside)", "l1(region=outside)", "ssim(region=outside)"],
               edited="inside_only.png", mask="mask.png")
    assert s["psnr(region=outside)"] == math.inf
    assert s["l1(region=outside)"] == 0.0
    expected_inside = 10 * math.log10(1.0 / ((inside_only - src) ** 2)[mask].mean())
    assert s["psnr(region=inside)"] == pytest.approx(expected_inside, abs=1e-6)
    assert s["ssim(region=outside)"] < 1.0  # windows straddling the mask border see the edit
    assert s["ssim(region=outside)"] > scores(d, ["ssim"], edited="inside_only.png")["ssim"]


def test_region_without_mask_is_a_recorded_error(pair_dir):
    d, *_ = pair_dir
    rows = score_records([{"source": "src.png", "edited": "edited.png"}], ["psnr(region=outside)", "psnr"],
                         base_dir=str(d))
    assert rows[0]["scores"]["psnr(region=outside)"] is None
    assert "mask" in rows[0]["errors"]["psnr(region=outside)"]
    assert rows[0]["scores"]["psnr"] is not None


def test_more_noise_scores_worse(pair_dir):
    d, src, *_ = pair_dir
    rng = np.random.default_rng(1)
    for i, sigma in enumerate((0.02, 0.1)):
        noisy = np.clip(src + rng.normal(0, sigma, src.shape), 0, 1)
        save(np.round(noisy * 255).astype(np.uint8), d / f"noisy{i}.png")
    metrics = ["psnr", "ssim", "ms_ssim", "fsim", "vif", "gmsd", "haarpsi", "l2"]
    low, high = (scores(d, metrics, edited=f"noisy{i}.png") for i in range(2))
    from editmetrics import get_metric

    for m in metrics:
        better, worse = (low[m], high[m]) if get_metric(m).higher_is_better else (-low[m], -high[m])
        assert better > worse, m
