"""In-memory images for the Python API: numpy arrays, PIL images, torch tensors.

A record field may hold, instead of a path, an image already in memory. It is
converted here to what ``images.load_image`` / ``load_mask`` return for a file
with the same pixels, so a metric scores it exactly as the CLI scores the file:

- numpy ``uint8`` (H, W, 3) or (H, W): divided by 255 (float32), grayscale
  replicated to three channels; ``uint16``: divided by 65535;
- numpy float (H, W, 3) or (H, W) with values in [0, 1]: used as float32;
- a PIL image: decoded with ``images.to_float_rgb`` (the file decoder's rules);
- a torch tensor (3, H, W), (H, W, 3) or (H, W) (float in [0, 1] or uint8),
  with or without a leading batch dimension of 1: as the numpy array;
- masks: True where the value is non-zero (any channel), like mask files.

torch is never imported here: a tensor is recognised by its type's module.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class ArrayError(ValueError):
    """A value that is neither a path nor an image this module understands."""


def is_in_memory(value: Any) -> bool:
    """True for an image object (array, PIL image, tensor); False for a path or nothing."""
    return value is not None and not isinstance(value, (str, bytes, os.PathLike))


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "getbands")


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _numpy(value: Any, name: str) -> np.ndarray:
    if _is_torch(value):
        arr = value.detach().cpu().numpy()
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
            arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        return arr
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise ArrayError(f"field {name!r}: cannot use a {type(value).__name__} as an image ({exc})") from None
    if arr.dtype == object:
        raise ArrayError(f"field {name!r}: a {type(value).__name__} is not an image (give a path, a numpy "
                         "array, a PIL image or a torch tensor)")
    return arr


def _hw3(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    raise ArrayError(f"field {name!r}: expected an image of shape (H, W, 3), (3, H, W) or (H, W), got {arr.shape}")


def to_image(value: Any, name: str = "image") -> np.ndarray:
    """An in-memory image as float32 RGB (H, W, 3) in [0, 1] (rules above)."""
    if _is_pil(value):
        from editmetrics.data.images import to_float_rgb

        return to_float_rgb(value)
    arr = _hw3(_numpy(value, name), name)
    if arr.dtype == np.uint8:
        return np.divide(arr, np.float32(255.0), dtype=np.float32)
    if arr.dtype == np.uint16:
        return np.divide(arr, np.float32(65535.0), dtype=np.float32)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ArrayError(f"field {name!r}: integer images must be uint8 or uint16, got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ArrayError(f"field {name!r}: float images must hold values in [0, 1] "
                         f"(got [{float(np.nanmin(arr)):.3g}, {float(np.nanmax(arr)):.3g}]); for 8-bit values "
                         "pass a uint8 array")
    return arr


def to_mask(value: Any, name: str = "mask") -> np.ndarray:
    """An in-memory mask as bool (H, W): True where any channel is non-zero."""
    if _is_pil(value):
        value = np.asarray(value.convert("RGB") if value.mode in ("P", "RGBA", "RGBa", "PA") else value)
    arr = _numpy(value, name)
    if arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[2] != 1:
        arr = arr[0]
    if arr.ndim == 3:
        return np.any(arr != 0, axis=2)
    if arr.ndim == 2:
        return arr != 0
    raise ArrayError(f"field {name!r}: expected a mask of shape (H, W), got {arr.shape}")


def describe(value: Any) -> str:
    """A short JSON-safe stand-in for an in-memory image in output rows."""
    shape = getattr(value, "shape", None)
    if shape is None and _is_pil(value):
        return f"<PIL image {value.size[0]}x{value.size[1]} {value.mode}>"
    return f"<{type(value).__name__} {'x'.join(str(s) for s in shape or ())}>"
