"""Cheap baseline models that run anywhere (no weights, no GPU).

- ``identity`` (editor): returns the source unchanged. Every "preserve the
  source" score is at its best and every "apply the edit" score at its worst.
- ``noise`` (editor): the source plus seeded Gaussian noise, BPM's "excessively
  preserved" case: nothing edited, yet not a copy either.
- ``paste_back`` (recoverer, SPPE task 2): the edited surrogate's pixels inside
  the mask, the source's pixels outside it, copied bit for bit.
- ``color_transfer`` (recoverer): fits a global colour map from the surrogate
  S to the edited surrogate S' and applies it to the source X (see
  ``ColorTransfer``).

Inputs arrive decoded (float32 HxWx3 in [0, 1], masks bool HxW): models never
read record files.
"""

from __future__ import annotations

import numpy as np

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.data.images import SizePolicy, align, resize_mask
from editmetrics.contract.metric import Param
from editmetrics.contract.model import Model, ModelError


class Identity(Model):
    id = "identity"
    kind = "editor"
    description = "Returns the source unchanged (upper bound of preservation, no edit)"
    inputs = ("source",)

    def predict(self, inputs, seed=None):
        return {"edited": inputs["source"]}


class Noise(Model):
    id = "noise"
    kind = "editor"
    description = "Source plus seeded Gaussian noise (BPM's 'excessively preserved' case)"
    inputs = ("source",)
    params = {"sigma": Param(0.05, "standard deviation of the noise, in [0, 1] image units")}

    def predict(self, inputs, seed=None):
        source = inputs["source"]
        rng = np.random.default_rng(seed)
        noisy = source + rng.normal(0.0, self.options["sigma"], size=source.shape)
        return {"edited": np.clip(noisy, 0.0, 1.0).astype(np.float32)}


def _like_source(image: np.ndarray, source: np.ndarray, name: str) -> np.ndarray:
    """``image`` at the source's size (bicubic), since recovery outputs live on X's grid."""
    aligned, _ = align(image, source, SizePolicy("resize"))
    return aligned


def _mask_like(mask: np.ndarray, source: np.ndarray) -> np.ndarray:
    if mask.shape != source.shape[:2]:
        mask = resize_mask(mask, (source.shape[1], source.shape[0]))
    return mask


class PasteBack(Model):
    id = "paste_back"
    kind = "recoverer"
    description = "Edited surrogate inside the mask, source outside it (bit-exact outside)"
    inputs = ("source", "edited_surrogate", "mask")

    def predict(self, inputs, seed=None):
        source = inputs["source"]
        edited = _like_source(inputs["edited_surrogate"], source, "edited_surrogate")
        mask = _mask_like(inputs["mask"], source)
        # np.where copies the source's float values untouched outside the mask:
        # written as 8-bit PNG they round back to the source's exact bytes.
        return {"edited": np.where(mask[..., None], edited, source).astype(np.float32)}


class ColorTransfer(Model):
    """Global colour/tone transfer of the surrogate edit S -> S' onto X.

    ``method=affine`` (default) fits a 3x4 affine colour map A by least
    squares, S' ~ A [S; 1] over pixels, and returns clip(A [X; 1]).
    ``method=meanstd`` matches per-channel mean and standard deviation
    (x - mean_S) / std_S * std_S' + mean_S'. Both work on the decoded
    (gamma-encoded sRGB) values.

    The map is fitted on the pixels outside the mask when the record has one
    and at least ``min_fit_fraction`` of the image lies outside it: there the
    surrogate equals the source, so the map learnt on S is the one to apply to
    X, and the substituted (private) region cannot bias it. Otherwise all
    pixels are used.
    """

    id = "color_transfer"
    kind = "recoverer"
    description = "Global colour map fitted on surrogate -> edited surrogate, applied to the source"
    inputs = ("source", "surrogate", "edited_surrogate")
    optional_inputs = ("mask",)
    params = {
        "method": Param("affine", "affine (3x4 least-squares colour map) or meanstd (per channel)",
                        choices=("affine", "meanstd")),
        "min_fit_fraction": Param(0.05, "fit outside the mask only when at least this fraction remains"),
        "ridge": Param(1e-6, "ridge regularisation of the affine fit (per pixel)"),
    }

    def predict(self, inputs, seed=None):
        source = inputs["source"]
        surrogate = _like_source(inputs["surrogate"], source, "surrogate")
        edited = _like_source(inputs["edited_surrogate"], source, "edited_surrogate")
        select = np.ones(source.shape[:2], dtype=bool)
        if inputs.get("mask") is not None:
            outside = ~_mask_like(inputs["mask"], source)
            if outside.mean() >= self.options["min_fit_fraction"]:
                select = outside
        s = surrogate[select].reshape(-1, 3).astype(np.float64)
        t = edited[select].reshape(-1, 3).astype(np.float64)
        x = source.reshape(-1, 3).astype(np.float64)
        if len(s) < 4:
            raise ModelError("too few pixels to fit a colour map")
        if self.options["method"] == "meanstd":
            std_s = np.maximum(s.std(axis=0), 1e-6)  # a flat channel maps to the target mean
            out = (x - s.mean(axis=0)) / std_s * t.std(axis=0) + t.mean(axis=0)
            info = {"mean_s": s.mean(axis=0).tolist(), "std_s": s.std(axis=0).tolist(),
                    "mean_t": t.mean(axis=0).tolist(), "std_t": t.std(axis=0).tolist()}
        else:
            a = np.hstack([s, np.ones((len(s), 1))])
            # normal equations with a small ridge: stable when S has few colours
            gram = a.T @ a + self.options["ridge"] * len(s) * np.diag([1.0, 1.0, 1.0, 0.0])
            coef = np.linalg.solve(gram, a.T @ t)  # 4x3
            out = np.hstack([x, np.ones((len(x), 1))]) @ coef
            info = {"color_map": coef.T.round(6).tolist()}  # 3x4: rows R', G', B'
        out = np.clip(out, 0.0, 1.0).reshape(source.shape).astype(np.float32)
        info["fit_pixels"] = int(select.sum())
        return {"edited": out, "info": info}


@hookimpl
def register_models(register):
    for cls in (Identity, Noise, PasteBack, ColorTransfer):
        register(cls)
