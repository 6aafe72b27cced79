"""Image decoding, colour and size policy, masks and boxes.

Every image a metric sees went through ``load_image``: one rule set, written
down in ``docs/conventions.md``:

- EXIF orientation is applied first, so a rotated JPEG scores as the upright image.
- Output is float32 RGB, shape (H, W, 3), values in [0, 1].
- 8-bit modes are divided by 255; 16-bit grayscale (``I;16*``, ``I``) by 65535
  (``I`` values are clipped to [0, 65535]); float (``F``) is clipped to [0, 1].
  Grayscale is replicated to three channels. Palette images are expanded.
- Transparency (RGBA, LA, palette with transparency) is composited over
  white (``ALPHA_BACKGROUND``): what a viewer shows, and what an editing model
  saw if it flattened the image.
- Size mismatch between two compared images follows ``SizePolicy``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np
from struct import error as struct_error

from PIL import Image, ImageOps, UnidentifiedImageError

ALPHA_BACKGROUND = 1.0  # white
SIZE_POLICIES = ("resize", "error")


class ImageLoadError(Exception):
    """An image file is missing or cannot be decoded."""


DEFAULT_MAX_PIXELS = 100_000_000  # setting ``max_pixels``: 8K photographs are 33 MP


def _open(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and decode one image file. Only regular files are opened (a FIFO
    or device would block or never end), and the size is checked from the
    header before any pixel is decoded (decompression bombs cost nothing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageLoadError(f"missing file: {path}") from None
    except (OSError, ValueError) as exc:  # permission, name too long, NUL or lone surrogate in the name
        raise ImageLoadError(f"cannot access {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(f"is a directory, not an image: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(f"not a regular file (FIFO, device or socket): {path}")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageLoadError(f"cannot open {path}: {exc.strerror or exc}") from None
    fh = os.fdopen(fd, "rb")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageLoadError(f"not a regular file (FIFO, device or socket): {path}")
        img = Image.open(fh)
        width, height = img.size
        if max_pixels and width * height > max_pixels:
            raise ImageLoadError(f"image too large: {width}x{height} = {width * height:,} pixels, above the "
                                 f"max_pixels setting ({max_pixels:,}); not decoded: {path}")
        img.load()
    except ImageLoadError:
        fh.close()
        raise
    except UnidentifiedImageError:
        fh.close()
        raise ImageLoadError(f"cannot decode image {path}: not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError,
            EOFError, MemoryError, IndexError, TypeError, struct_error) as exc:
        fh.close()
        raise ImageLoadError(f"cannot decode image {path}: {type(exc).__name__}: {exc}"[:2000]) from None
    fh.close()  # load() read every pixel: the file is no longer needed
    try:
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when upright
        return img
    except Exception as exc:  # noqa: BLE001 - broken EXIF must not hide the pixels' error
        raise ImageLoadError(f"cannot apply EXIF orientation of {path}: {exc}") from None


def to_float_rgb(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image to float32 RGB in [0, 1] (rules above)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # float32 throughout: 257*v/65535 then rounds exactly like v/255, so a
        # 16-bit copy of an 8-bit image decodes to the same floats
        gray = np.clip(np.asarray(img, dtype=np.float32), 0, 65535) / np.float32(65535.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("1", "L"):
        gray = _scaled(img.convert("L"), 255.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    if mode != "RGB":
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV: PIL's conversion
    return _scaled(img, 255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> uint8, rounded to nearest (8-bit sources, whose
    values are k/255, round-trip exactly)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_pil(image: np.ndarray) -> Image.Image:
    """Float [0, 1] image -> 8-bit PIL image (RGB for HxWx3), the input model
    processors expect."""
    return Image.fromarray(to_uint8(image))


def _scaled(img: Image.Image, scale: float) -> np.ndarray:
    """float32 pixels divided by ``scale``, in place (one allocation, not two)."""
    arr = np.asarray(img, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return np.divide(arr, np.float32(scale), out=arr)


def load_image(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image file to float32 RGB (H, W, 3) in [0, 1]."""
    return to_float_rgb(_open(path, max_pixels))


def load_mask(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a mask file: True where any channel is non-zero (the edit region).

    Transparency is ignored for masks: a pixel counts as edited by its colour
    values alone, so an RGBA mask painted on a transparent layer works too.
    """
    img = _open(path, max_pixels)
    if img.mode == "P":
        img = img.convert("RGB")
    elif img.mode in ("LA", "La"):
        img = img.convert("L")  # PIL drops alpha here, it does not composite
    elif img.mode in ("RGBA", "RGBa", "PA"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    return np.any(arr != 0, axis=2) if arr.ndim == 3 else arr != 0


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float image to (width, height) with bicubic filtering, per channel."""
    width, height = size
    channels = [
        np.asarray(Image.fromarray(image[..., c], mode="F").resize((width, height), Image.BICUBIC))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return np.asarray(img) > 0


def size_of(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


@dataclass(frozen=True)
class SizePolicy:
    """What to do when a compared image's size differs from its reference.

    ``resize`` (default): the compared image is resized (bicubic) to the
    reference's size and a warning naming both sizes goes into the record's
    output. ``error``: the metric is not computed for that record.
    """

    mode: str = "resize"

    def __post_init__(self):
        if self.mode not in SIZE_POLICIES:
            raise ValueError(f"size policy must be one of {SIZE_POLICIES}, not {self.mode!r}")


class SizeMismatch(Exception):
    pass


def align(image: np.ndarray, reference: np.ndarray, policy: SizePolicy) -> tuple[np.ndarray, str | None]:
    """Return ``image`` at the size of ``reference`` and a note when it was changed."""
    if image.shape[:2] == reference.shape[:2]:
        return image, None
    src, dst = size_of(image), size_of(reference)
    text = f"{src[0]}x{src[1]} vs reference {dst[0]}x{dst[1]}"
    if policy.mode == "error":
        raise SizeMismatch(f"size mismatch: {text} (size policy 'error')")
    return resize(image, dst), f"resized {text} (size policy 'resize', bicubic)"


def validate_bbox(value, width: int, height: int) -> tuple[float, float, float, float]:
    """Check an ``[x0, y0, x1, y1]`` pixel box and clip it to the image."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"a box must be [x0, y0, x1, y1], got {value!r}")
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"a box must hold four numbers, got {value!r}") from None
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {value!r} is empty: need x1 > x0 and y1 > y0")
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {value!r} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def bbox_of_mask(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
