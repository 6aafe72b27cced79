"""Built-in plugin: pixel and weight-free full-reference metrics.

Conventions (``docs/conventions.md``):
- Images arrive as float32 RGB in [0, 1]; 8-bit range means data range 1.0 here.
- ``psnr``: over all RGB values, 10*log10(1 / MSE); identical images give +inf.
- ``ssim`` default ``convention=wang``: Wang et al.'s reference script as used
  in published IQA tables: MATLAB ``rgb2gray`` luma rounded to 8 bits, 11x11
  Gaussian window (sigma 1.5), K1=0.01, K2=0.03, L=255, valid region only, no
  downsampling. ``convention=rgb``: the same window per RGB channel on [0, 1]
  values, averaged over channels (torchmetrics' and scikit-image's
  ``channel_axis`` result).
- ``l1`` / ``l2``: MagicBrush's mean absolute / mean squared difference on [0, 1].
- ``ms_ssim``, ``gmsd``, ``vif``, ``vifp``, ``fsim``: as the authors' MATLAB
  scripts compute them (``fr_reference``: msssim.m, GMSD.m, vifvec.m,
  vifp_mscale.m, FeatureSIM.m), checked against the scripts run in GNU Octave;
  ``convention=piq`` keeps piq's RGB implementations (not for ``vif``).
- ``region=inside|outside`` restricts psnr/ssim/l1/l2 to the record's ``mask``
  (inside = mask non-zero) -- e.g. ``psnr(region=outside)`` measures how well
  the background was preserved. SSIM averages its map over the region's pixels
  within the valid area.
"""

from __future__ import annotations

import math

import numpy as np

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.contract.metric import Metric, MetricError, Param
from editmetrics.metrics import fr_reference

# MATLAB rgb2gray coefficients (inverse of the NTSC YIQ transform row).
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103], dtype=np.float64)

REGION = Param("all", "pixels compared: all, or inside/outside the record's mask", ("all", "inside", "outside"))


def region_mask(rec, metric: Metric, like: str) -> np.ndarray | None:
    region = metric.options.get("region", "all")
    if region == "all":
        return None
    if not rec.has("mask"):
        raise MetricError(f"region={region} needs a 'mask' field in the record")
    mask = rec.mask("mask", like=like)
    selected = mask if region == "inside" else ~mask
    if not selected.any():
        raise MetricError(f"region={region} selects no pixels (mask is {'empty' if region == 'inside' else 'full'})")
    return selected


def mean_squared(a: np.ndarray, b: np.ndarray, region: np.ndarray | None) -> float:
    """Mean of squared differences: float32 differences and squares (relative
    error ~1e-7, i.e. ~1e-6 dB of PSNR), summed pairwise in float64. Not np.dot:
    BLAS threads stall on a busy machine (32 ms instead of microseconds)."""
    diff = np.subtract(a, b)
    if region is not None:
        diff = diff[region]
    np.square(diff, out=diff)
    return float(diff.sum(dtype=np.float64) / diff.size)


class _PairMetric(Metric):
    fields = ("edited",)
    optional_fields = ("mask",)
    reference = "source"
    thread_safe = True  # numpy/OpenCV on the record's own arrays

    def images(self, rec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Edited and reference at the reference's size, and the selected region (or None)."""
        a, b = rec.pair("edited", self.ref)
        return a, b, region_mask(rec, self, self.ref)


class PSNR(_PairMetric):
    id = "psnr"
    description = "Peak signal-to-noise ratio over RGB, 8-bit range, in dB (+inf for identical images)"
    higher_is_better = True
    range = (0.0, math.inf)
    params = {"region": REGION}

    def compute(self, rec):
        a, b, region = self.images(rec)
        mse = mean_squared(a, b, region)
        return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


class L1(_PairMetric):
    id = "l1"
    description = "Mean absolute difference on [0, 1] (MagicBrush L1)"
    higher_is_better = False
    range = (0.0, 1.0)
    params = {"region": REGION}

    def compute(self, rec):
        a, b, region = self.images(rec)
        diff = np.abs(a.astype(np.float64) - b)
        return float(diff[region].mean() if region is not None else diff.mean())


class L2(_PairMetric):
    id = "l2"
    description = "Mean squared difference on [0, 1] (MagicBrush L2)"
    higher_is_better = False
    range = (0.0, 1.0)
    params = {"region": REGION}

    def compute(self, rec):
        a, b, region = self.images(rec)
        return mean_squared(a, b, region)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float, size: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """SSIM map of two 2-D arrays over the valid region, separable Gaussian window.

    Float64 throughout (E[x^2] - E[x]^2 cancels badly in float32). OpenCV's
    separable filter does the five moment images (x, y, x^2, y^2, xy) in two
    calls; it is about 3x faster than scipy.ndimage here and equal to 1e-11.
    """
    if min(x.shape) < size:
        raise MetricError(f"image side {min(x.shape)} px is smaller than the {size}px SSIM window")
    import cv2

    x = x.astype(np.float64, copy=False)
    y = y.astype(np.float64, copy=False)
    w = gaussian_window(size, sigma)
    half = size // 2
    inner = (slice(half, x.shape[0] - half), slice(half, x.shape[1] - half))

    def blur(img):
        return cv2.sepFilter2D(img, cv2.CV_64F, w, w, borderType=cv2.BORDER_CONSTANT)[inner]

    moments = blur(cv2.merge([x, y, x * x, y * y]))
    mu_x, mu_y, xx, yy = (moments[..., i] for i in range(4))
    xy = blur(x * y)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_x2, mu_y2 = mu_x * mu_x, mu_y * mu_y
    num = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
    den = (mu_x2 + mu_y2 + c1) * ((xx - mu_x2) + (yy - mu_y2) + c2)
    return num / den


def rgb2gray_uint8(image: np.ndarray) -> np.ndarray:
    """MATLAB's rgb2gray on 8-bit values: weighted sum, rounded half away from zero.

    Inputs are first rounded to 8-bit integers (exact for 8-bit files), so
    float32 noise cannot move a value across a rounding boundary."""
    c = image.astype(np.float64) * 255.0
    np.rint(c, out=c)
    gray = c[..., 0] * RGB2GRAY[0] + c[..., 1] * RGB2GRAY[1] + c[..., 2] * RGB2GRAY[2]
    gray += 0.5
    return np.floor(gray, out=gray)


class SSIM(_PairMetric):
    id = "ssim"
    description = "Structural similarity (Wang et al. reference convention by default)"
    citation = ("Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, \"Image quality assessment: from error "
                "visibility to structural similarity\", IEEE Trans. Image Processing 13(4), 2004 (ssim_index.m)")
    higher_is_better = True
    range = (-1.0, 1.0)
    params = {
        "convention": Param("wang", "wang: 8-bit luma as MATLAB rgb2gray; rgb: mean over RGB channels on [0, 1]",
                            ("wang", "rgb")),
        "region": REGION,
    }

    def compute(self, rec):
        a, b, region = self.images(rec)
        if self.options["convention"] == "wang":
            maps = [ssim_map(rgb2gray_uint8(a), rgb2gray_uint8(b), 255.0)]
        else:
            maps = [ssim_map(a[..., c], b[..., c], 1.0) for c in range(3)]
        if region is not None:
            half = 5
            inner = region[half : region.shape[0] - half, half : region.shape[1] - half]
            if not inner.any():
                raise MetricError("the mask region lies entirely in the SSIM border")
            return float(np.mean([m[inner].mean() for m in maps]))
        return float(np.mean([m.mean() for m in maps]))


# --- piq: weight-free metrics on torch tensors --------------------------------------


class _PiqMetric(_PairMetric):
    """Runs one of piq's weight-free full-reference metrics on (1, 3, H, W) tensors."""

    thread_safe = False  # torch already uses every core inside one call

    piq_function: str
    min_side = 1

    def setup(self, ctx):
        import piq  # imported here so listing metrics stays fast

        self._fn = getattr(piq, self.piq_function)
        self._device = ctx.device

    def compute(self, rec):
        import torch

        a, b, _ = self.images(rec)
        if min(a.shape[:2]) < self.min_side:
            raise MetricError(f"{self.id} needs images of at least {self.min_side} px per side, got {a.shape[1]}x{a.shape[0]}")
        ta = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self._device)
        tb = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[None].to(self._device)
        with torch.no_grad():
            value = self._fn(ta.clamp(0, 1), tb.clamp(0, 1), data_range=1.0, **self.extra_args())
        return float(value)

    def extra_args(self) -> dict:
        return {}


def _uint8_values(image: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> float64 on 0-255, rounded to the 8-bit values (exact for 8-bit files)."""
    out = image.astype(np.float64) * 255.0
    return np.rint(out, out=out)


class _ReferenceScript(_PiqMetric):
    """A metric computed as its authors' MATLAB script does (``fr_reference``),
    with piq's RGB implementation kept as ``convention=piq``."""

    thread_safe = True  # the reference convention is numpy/OpenCV; piq switches this off

    def __init__(self, reference=None, **params):
        super().__init__(reference, **params)
        self.thread_safe = self.options["convention"] != "piq"

    def setup(self, ctx):
        if self.options["convention"] == "piq":
            super().setup(ctx)

    def compute(self, rec):
        if self.options["convention"] == "piq":
            return super().compute(rec)
        a, b, _ = self.images(rec)
        return self.reference_value(a, b)

    def reference_value(self, edited: np.ndarray, reference: np.ndarray) -> float:  # pragma: no cover
        raise NotImplementedError


def _convention(script: str, default: str) -> Param:
    return Param(default, f"{default}: the authors' {script} on 8-bit luma (docs/conventions.md); "
                 "piq: piq's implementation on RGB in [0, 1]", (default, "piq"))


class MSSSIM(_ReferenceScript):
    id = "ms_ssim"
    description = ("Multi-scale SSIM as Wang's msssim.m (8-bit rgb2gray luma, 5 scales, images of at least "
                   "176 px); convention=piq: piq on RGB")
    citation = ("Z. Wang, E. P. Simoncelli, A. C. Bovik, \"Multi-scale structural similarity for image quality "
                "assessment\", Asilomar Conference on Signals, Systems and Computers, 2003")
    higher_is_better = True
    range = (0.0, 1.0)
    params = {"convention": _convention("msssim.m", "wang")}
    piq_function = "multi_scale_ssim"
    min_side = 161

    def reference_value(self, edited, reference):
        return fr_reference.ms_ssim(rgb2gray_uint8(reference), rgb2gray_uint8(edited))


class FSIM(_ReferenceScript):
    id = "fsim"
    description = "Feature similarity FSIMc as Zhang's FeatureSIM.m (color=false: FSIM on luma); convention=piq: piq"
    citation = ("L. Zhang, L. Zhang, X. Mou, D. Zhang, \"FSIM: a feature similarity index for image quality "
                "assessment\", IEEE Trans. Image Processing 20(8), 2011")
    higher_is_better = True
    range = (0.0, 1.0)
    params = {
        "convention": Param("zhang", "zhang: the authors' FeatureSIM.m on 8-bit RGB (docs/conventions.md); "
                            "piq: piq's implementation on RGB in [0, 1]", ("zhang", "piq")),
        "color": Param(True, "true: FSIMc (luma and chroma); false: FSIM (luma only)"),
    }
    piq_function = "fsim"

    def extra_args(self):
        return {"chromatic": self.options["color"]}

    def reference_value(self, edited, reference):
        gray, color = fr_reference.fsim(_uint8_values(reference), _uint8_values(edited))
        return color if self.options["color"] else gray


class VIF(_PairMetric):
    id = "vif"
    description = ("Visual information fidelity in the wavelet domain as Sheikh and Bovik's vifvec.m "
                   "(8-bit luma, steerable pyramid; images of at least 72 px)")
    citation = ("H. R. Sheikh, A. C. Bovik, \"Image information and visual quality\", IEEE Trans. Image "
                "Processing 15(2), 2006")
    higher_is_better = True
    range = (0.0, math.inf)

    def compute(self, rec):
        a, b, _ = self.images(rec)
        return fr_reference.vif(rgb2gray_uint8(b), rgb2gray_uint8(a))


class VIFP(_ReferenceScript):
    id = "vifp"
    description = "Pixel-domain VIF as Sheikh and Bovik's vifp_mscale.m (8-bit luma); convention=piq: piq vif_p on RGB"
    citation = VIF.citation
    higher_is_better = True
    range = (0.0, math.inf)
    params = {"convention": _convention("vifp_mscale.m", "sheikh")}
    piq_function = "vif_p"
    min_side = 41

    def reference_value(self, edited, reference):
        return fr_reference.vifp(rgb2gray_uint8(reference), rgb2gray_uint8(edited))


class GMSD(_ReferenceScript):
    id = "gmsd"
    description = "Gradient magnitude similarity deviation as Xue's GMSD.m (8-bit luma); convention=piq: piq on RGB"
    citation = ("W. Xue, L. Zhang, X. Mou, A. C. Bovik, \"Gradient magnitude similarity deviation: a highly "
                "efficient perceptual image quality index\", IEEE Trans. Image Processing 23(2), 2014")
    higher_is_better = False
    range = (0.0, math.inf)
    params = {"convention": _convention("GMSD.m", "xue")}
    piq_function = "gmsd"

    def reference_value(self, edited, reference):
        return fr_reference.gmsd(rgb2gray_uint8(reference), rgb2gray_uint8(edited))


class HaarPSI(_PiqMetric):
    id = "haarpsi"
    description = "Haar wavelet perceptual similarity index (piq)"
    higher_is_better = True
    range = (0.0, 1.0)
    piq_function = "haarpsi"


@hookimpl
def register_metrics(register):
    for cls in (PSNR, SSIM, L1, L2, MSSSIM, FSIM, VIF, VIFP, GMSD, HaarPSI):
        register(cls)
