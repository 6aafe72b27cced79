"""Full-reference IQA as the authors' MATLAB reference scripts compute it.

Written from the papers and the scripts' documented behaviour (no code taken
from them); checked against values the scripts themselves gave in GNU Octave
(``tests/data/iqa_reference.json``, docs/conventions.md):

- ``ms_ssim``: Wang's ``msssim.m`` (with ``ssim_index_new.m``);
- ``gmsd``: Xue's ``GMSD.m``;
- ``vif``: Sheikh and Bovik's ``vifvec.m`` (wavelet domain, steerable pyramid
  ``sp5Filters`` of matlabPyrTools' ``buildSpyr``);
- ``vifp``: Sheikh and Bovik's ``vifp_mscale.m`` (pixel domain);
- ``fsim``: Zhang's ``FeatureSIM.m`` (FSIMc; ``fsim_gray`` is its FSIM).

All functions take float64 arrays on the 0-255 scale: gray (H, W) or, for
FSIM, RGB (H, W, 3). MATLAB's border rules are reproduced exactly:
``filter2(..., 'valid')``, ``conv2(..., 'same')`` (zero padding, the window
of an even kernel starting at the pixel itself), ``imfilter(..., 'symmetric')``
and matlabPyrTools' ``reflect1`` (reflection about the edge pixel).
"""

from __future__ import annotations

import functools
import json
import math
import os

import numpy as np

from editmetrics.contract.metric import MetricError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _cv2():
    import cv2

    return cv2


def matlab_round(x: float) -> int:
    """MATLAB round(): half away from zero (Python's round() is half to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def fspecial_gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of fspecial('gaussian', size, sigma) (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def filter2_valid(stack: np.ndarray, w: np.ndarray) -> np.ndarray:
    """filter2(w*w', x, 'valid') of each channel of an (H, W[, C]) float64 array."""
    cv2 = _cv2()
    h = len(w) // 2
    out = cv2.sepFilter2D(stack, cv2.CV_64F, w, w, borderType=cv2.BORDER_CONSTANT)
    return out[h : stack.shape[0] - h, h : stack.shape[1] - h]


# --- MS-SSIM (msssim.m) --------------------------------------------------------------


def ssim_and_cs(x: np.ndarray, y: np.ndarray, k1: float = 0.01, k2: float = 0.03, size: int = 11,
                sigma: float = 1.5) -> tuple[float, float]:
    """Means of ssim_index_new.m's SSIM map and contrast-structure map (valid region, L = 255)."""
    cv2 = _cv2()
    w = fspecial_gaussian_1d(size, sigma)
    moments = filter2_valid(cv2.merge([x, y, x * x, y * y, x * y]), w)
    mu_x, mu_y, xx, yy, xy = (moments[..., i] for i in range(5))
    c1, c2 = (k1 * 255.0) ** 2, (k2 * 255.0) ** 2
    mu_xy = mu_x * mu_y
    mu_x2, mu_y2 = mu_x * mu_x, mu_y * mu_y
    cs = (2 * (xy - mu_xy) + c2) / ((xx - mu_x2) + (yy - mu_y2) + c2)
    ssim = (2 * mu_xy + c1) / (mu_x2 + mu_y2 + c1) * cs
    return float(ssim.mean()), float(cs.mean())


def halve_symmetric(x: np.ndarray) -> np.ndarray:
    """imfilter(x, ones(2)/4, 'symmetric', 'same') then x(1:2:end, 1:2:end):
    means of 2x2 blocks, an odd last row/column averaged with itself."""
    if x.shape[0] % 2:
        x = np.concatenate([x, x[-1:]], axis=0)
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def ms_ssim(x: np.ndarray, y: np.ndarray, weights=MS_SSIM_WEIGHTS) -> float:
    """Wang's msssim.m with its defaults on 8-bit gray images (0-255 floats)."""
    levels = len(weights)
    need = 11 * 2 ** (levels - 1)
    if min(x.shape) < need:
        raise MetricError(f"ms_ssim needs images of at least {need} px per side (msssim.m returns -Inf), "
                          f"got {x.shape[1]}x{x.shape[0]}")
    cs_values = []
    for level in range(levels):
        ssim, cs = ssim_and_cs(x, y)
        if level < levels - 1:
            cs_values.append(cs)
            x, y = halve_symmetric(x), halve_symmetric(y)
    terms = cs_values + [ssim]
    if min(terms) < 0:
        # MATLAB raises a negative base to a fractional power as a complex number
        raise MetricError(f"ms_ssim: a negative term at some scale ({min(terms):.4g}); msssim.m gives a complex number")
    return float(np.prod([t**w for t, w in zip(terms, weights)]))


# --- GMSD (GMSD.m) --------------------------------------------------------------------


def box_downsample(x: np.ndarray, f: int) -> np.ndarray:
    """conv2(x, ones(f)/f^2, 'same') sampled as x(1:f:end, 1:f:end) (GMSD.m, FeatureSIM.m).

    conv2 'same' puts the window of output i on samples i-lo .. i+hi with
    hi = ceil((f-1)/2), lo = f-1-hi, and pads with zeros. The sampled windows
    tile the zero-padded image, so this is a plain block mean."""
    hi = f // 2  # ceil((f - 1) / 2)
    lo = f - 1 - hi
    rows, cols = -(-x.shape[0] // f), -(-x.shape[1] // f)
    p = np.zeros((rows * f, cols * f))
    p[lo : lo + x.shape[0], lo : lo + x.shape[1]] = x[: rows * f - lo, : cols * f - lo]
    return p.reshape(rows, f, cols, f).mean(axis=(1, 3))


def gmsd(x: np.ndarray, y: np.ndarray, t: float = 170.0) -> float:
    """Xue's GMSD.m on 8-bit gray images (0-255 floats)."""
    cv2 = _cv2()
    x, y = box_downsample(x, 2), box_downsample(y, 2)
    dx = np.array([[1, 0, -1]] * 3, np.float64) / 3.0  # Prewitt / 3; sign is irrelevant for magnitudes

    def magnitude(img):
        gx = cv2.filter2D(img, cv2.CV_64F, dx, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.filter2D(img, cv2.CV_64F, dx.T, borderType=cv2.BORDER_CONSTANT)
        return np.sqrt(gx * gx + gy * gy)

    g1, g2 = magnitude(x), magnitude(y)
    gms = (2 * g1 * g2 + t) / (g1 * g1 + g2 * g2 + t)
    return float(gms.std(ddof=1))  # std2: normalised by N - 1


# --- VIFp (vifp_mscale.m) ------------------------------------------------------------


def vifp(x: np.ndarray, y: np.ndarray, sigma_nsq: float = 2.0) -> float:
    """Sheikh and Bovik's vifp_mscale.m on gray images (0-255 floats)."""
    cv2 = _cv2()
    if min(x.shape) < 41:
        raise MetricError(f"vifp needs images of at least 41 px per side, got {x.shape[1]}x{x.shape[0]}")
    num = den = 0.0
    eps = 1e-10
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        w = fspecial_gaussian_1d(n, n / 5.0)
        if scale > 1:
            both = filter2_valid(cv2.merge([x, y]), w)
            x, y = both[::2, ::2, 0].copy(), both[::2, ::2, 1].copy()
        m = filter2_valid(cv2.merge([x, y, x * x, y * y, x * y]), w)
        mu1, mu2 = m[..., 0], m[..., 1]
        s1 = m[..., 2] - mu1 * mu1
        s2 = m[..., 3] - mu2 * mu2
        s12 = m[..., 4] - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        low1 = s1 < eps
        g[low1] = 0
        sv[low1] = s2[low1]
        s1[low1] = 0
        low2 = s2 < eps
        g[low2] = 0
        sv[low2] = 0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0
        sv[sv <= eps] = eps
        num += float(np.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum())
        den += float(np.log10(1 + s1 / sigma_nsq).sum())
    return num / den


# --- VIF (vifvec.m) -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def sp5_filters() -> dict[str, np.ndarray]:
    """matlabPyrTools' sp5Filters taps (data file next to this module, see its _source)."""
    with open(os.path.join(os.path.dirname(__file__), "sp5_filters.json"), encoding="utf-8") as fh:
        raw = json.load(fh)
    return {k: np.asarray(v, np.float64) for k, v in raw.items() if not k.startswith("_")}


def corr_reflect1(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """matlabPyrTools corrDn(img, kernel, 'reflect1') with step 1: correlation,
    odd kernel centred, image reflected about its edge pixels (OpenCV's REFLECT_101)."""
    cv2 = _cv2()
    return cv2.filter2D(img, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT_101)


# Subbands vifvec.m uses: orientations 1 and 4 (of 6) at each of the 4 levels.
VIF_BANDS = (0, 3)


def vif_subbands(img: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(level, subband) pairs of buildSpyr(img, 4, 'sp5Filters', 'reflect1') that
    vifvec.m uses; level 1 is the finest. Bands vifvec.m ignores are not computed."""
    f = sp5_filters()
    lo = corr_reflect1(img, f["lo0filt"])
    out = []
    for level in range(1, 5):
        for b in VIF_BANDS:
            out.append((level, corr_reflect1(lo, f["bfilts"][b])))
        if level < 4:
            lo = corr_reflect1(lo, f["lofilt"])[::2, ::2]
    return out


def _block_vectors(y: np.ndarray, m: int, step: int) -> np.ndarray:
    """(m*m, N) matrix of the m x m blocks of y whose top-left corners lie on a
    grid of ``step`` (step 1: all overlapping blocks; step m: the tiling)."""
    h, w = y.shape
    rows = [y[i : h - m + 1 + i : step, j : w - m + 1 + j : step].ravel() for j in range(m) for i in range(m)]
    return np.stack(rows)


def vif(x: np.ndarray, y: np.ndarray, sigma_nsq: float = 0.4, m: int = 3) -> float:
    """Sheikh and Bovik's vifvec.m on gray images (0-255 floats)."""
    cv2 = _cv2()
    if min(x.shape) < 72:
        raise MetricError(f"vif needs images of at least 72 px per side (a 4-level steerable pyramid), "
                          f"got {x.shape[1]}x{x.shape[0]}")
    tol = 1e-15
    num = den = 0.0
    for (level, s_ref), (_, s_dist) in zip(vif_subbands(x), vif_subbands(y)):
        hh, ww = (s_ref.shape[0] // m) * m, (s_ref.shape[1] // m) * m
        a, b = s_ref[:hh, :ww], s_dist[:hh, :ww]
        # distortion channel (vifsub_est_M.m): window sums at the centres of the m x m tiles
        win = 2 ** (5 - level) + 1
        n = float(win * win)

        def box(v):
            s = cv2.boxFilter(v, cv2.CV_64F, (win, win), normalize=False, borderType=cv2.BORDER_REFLECT_101)
            return s[m // 2 :: m, m // 2 :: m]

        mean_x, mean_y = box(a) / n, box(b) / n
        cov = box(a * b) - n * mean_x * mean_y
        ss_x = box(a * a) - n * mean_x * mean_x
        ss_y = box(b * b) - n * mean_y * mean_y
        ss_x[ss_x < 0] = 0
        ss_y[ss_y < 0] = 0
        g = cov / (ss_x + tol)
        vv = (ss_y - g * cov) / n
        low = ss_x < tol
        g[low] = 0
        vv[low] = ss_y[low]
        ss_x[low] = 0
        low = ss_y < tol
        g[low] = 0
        vv[low] = 0
        neg = g < 0
        vv[neg] = ss_y[neg]
        g[neg] = 0
        vv[vv <= tol] = tol
        # reference GSM parameters (refparams_vecgsm.m)
        allb = _block_vectors(a, m, 1)
        centred = allb - allb.mean(axis=1, keepdims=True)
        cu = centred @ centred.T / allb.shape[1]
        tiles = _block_vectors(a, m, m)
        s = (np.linalg.solve(cu, tiles) * tiles).sum(axis=0) / (m * m)
        s = s.reshape(hh // m, ww // m)
        lam = np.linalg.eigvalsh(cu)
        # drop the border tiles the window reaches past the subband (vifvec.m)
        off = -(-(2 ** (4 - level)) // m)  # ceil(((win - 1) / 2) / m)
        inner = (slice(off, -off), slice(off, -off))
        g, vv, s = g[inner], vv[inner], s[inner]
        g2s = (g * g * s)[None]
        lam = lam[:, None, None]
        num += float(np.log2(1 + g2s * lam / (vv + sigma_nsq)[None]).sum())
        den += float(np.log2(1 + s[None] * lam / sigma_nsq).sum())
    return num / den


# --- FSIM (FeatureSIM.m) ------------------------------------------------------------


def _centred_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """FeatureSIM.m's normalised frequency grid (odd sizes divide by n - 1)."""

    def axis(n):
        if n % 2:
            return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
        return np.arange(-n / 2, n / 2) / n

    return np.meshgrid(axis(cols), axis(rows))


@functools.lru_cache(maxsize=8)
def _log_gabor_bank(rows: int, cols: int) -> tuple:
    """phasecong2's filters for one image size: (filters[o, s], EM_n[o], noise sums[o]); cached
    because an edit and its source share one size across a data set."""
    nscale, norient, min_wl, mult, sigma_onf, d_theta = 4, 4, 6, 2, 0.55, 1.2
    theta_sigma = math.pi / norient / d_theta
    x, y = _centred_grid(rows, cols)
    radius = np.fft.ifftshift(np.sqrt(x * x + y * y))
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    lp = np.fft.ifftshift(1.0 / (1.0 + (np.sqrt(x * x + y * y) / 0.45) ** 30))
    radius[0, 0] = 1.0
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    radial = []
    for s in range(nscale):
        fo = 1.0 / (min_wl * mult**s)
        lg = np.exp(-(np.log(radius / fo) ** 2) / (2 * math.log(sigma_onf) ** 2)) * lp
        lg[0, 0] = 0.0
        radial.append(lg)
    bank, em, noise_sums = [], [], []
    for o in range(norient):
        ang = o * math.pi / norient
        ds = sin_t * math.cos(ang) - cos_t * math.sin(ang)
        dc = cos_t * math.cos(ang) + sin_t * math.sin(ang)
        spread = np.exp(-(np.abs(np.arctan2(ds, dc)) ** 2) / (2 * theta_sigma**2))
        filters = [r * spread for r in radial]
        spatial = [np.fft.ifft2(f).real * math.sqrt(rows * cols) for f in filters]
        sum_an2 = sum(float((sf * sf).sum()) for sf in spatial)
        sum_aiaj = sum(float((spatial[i] * spatial[j]).sum()) for i in range(nscale) for j in range(i + 1, nscale))
        bank.append(np.stack(filters))
        em.append(float((filters[0] ** 2).sum()))
        noise_sums.append((sum_an2, sum_aiaj))
    return np.stack(bank), em, noise_sums


def phase_congruency(im: np.ndarray) -> np.ndarray:
    """phasecong2 of FeatureSIM.m (Kovesi's PC_2 with FSIM's parameters)."""
    rows, cols = im.shape
    bank, em, noise_sums = _log_gabor_bank(rows, cols)
    from scipy import fft

    spectrum = fft.fft2(im)
    energy_all = np.zeros((rows, cols))
    an_all = np.zeros((rows, cols))
    k, epsilon = 2.0, 1e-4
    for o, filters in enumerate(bank):
        eo = fft.ifft2(spectrum * filters, axes=(1, 2))
        even, odd = eo.real, eo.imag
        an = np.abs(eo)
        sum_e, sum_o = even.sum(axis=0), odd.sum(axis=0)
        x_energy = np.sqrt(sum_e * sum_e + sum_o * sum_o) + epsilon
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = (even * mean_e + odd * mean_o - np.abs(even * mean_o - odd * mean_e)).sum(axis=0)
        median_e2n = float(np.median(an[0] ** 2))
        noise_power = (-median_e2n / math.log(0.5)) / em[o]
        sum_an2, sum_aiaj = noise_sums[o]
        est_noise_energy2 = 2 * noise_power * sum_an2 + 4 * noise_power * sum_aiaj
        tau = math.sqrt(est_noise_energy2 / 2)
        threshold = (tau * math.sqrt(math.pi / 2) + k * math.sqrt((2 - math.pi / 2) * tau * tau)) / 1.7
        energy_all += np.maximum(energy - threshold, 0)
        an_all += an.sum(axis=0)
    return energy_all / an_all


def fsim(ref: np.ndarray, dist: np.ndarray) -> tuple[float, float]:
    """Zhang's FeatureSIM.m on RGB images (0-255 floats): (FSIM, FSIMc)."""
    cv2 = _cv2()
    rows, cols = ref.shape[:2]
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    f = max(1, matlab_round(min(rows, cols) / 256))

    def channels(img):
        out = []
        for row in yiq:
            c = img[..., 0] * row[0] + img[..., 1] * row[1] + img[..., 2] * row[2]
            out.append(box_downsample(c, f) if f > 1 else c)
        return out

    y1, i1, q1 = channels(ref)
    y2, i2, q2 = channels(dist)
    pc1, pc2 = phase_congruency(y1), phase_congruency(y2)
    dx = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float64) / 16.0

    def magnitude(img):
        gx = cv2.filter2D(img, cv2.CV_64F, dx, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.filter2D(img, cv2.CV_64F, dx.T, borderType=cv2.BORDER_CONSTANT)
        return np.sqrt(gx * gx + gy * gy)

    g1, g2 = magnitude(y1), magnitude(y2)
    s_pc = (2 * pc1 * pc2 + 0.85) / (pc1 * pc1 + pc2 * pc2 + 0.85)
    s_g = (2 * g1 * g2 + 160) / (g1 * g1 + g2 * g2 + 160)
    pcm = np.maximum(pc1, pc2)
    weight = float(pcm.sum())
    s_l = s_g * s_pc * pcm
    s_i = (2 * i1 * i2 + 200) / (i1 * i1 + i2 * i2 + 200)
    s_q = (2 * q1 * q2 + 200) / (q1 * q1 + q2 * q2 + 200)
    iq = s_i * s_q
    # real((I*Q)^0.03): a negative base gives |b|^0.03 * cos(0.03 pi), as in MATLAB
    chroma = np.abs(iq) ** 0.03 * np.where(iq < 0, math.cos(0.03 * math.pi), 1.0)
    return float(s_l.sum() / weight), float((s_l * chroma).sum() / weight)
