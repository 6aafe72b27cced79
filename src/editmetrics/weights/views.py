"""How an image of any shape is fitted to a backbone's square input (the ``view``).

- ``crop`` (default): the backbone's own evaluation preprocessing. For CLIP
  and DINO that resizes the shortest side and centre-crops, so on a 4:3 image
  the outer 12.5% on the left and on the right are never seen.
- ``pad``: letterbox: resize the longest side to the input size (aspect kept)
  and fill the rest of the square with the model's mean colour (the same fill
  as erased regions: about zero after normalisation). Every pixel is seen.
- ``squash``: resize to the square input, ignoring the aspect ratio. Every
  pixel is seen, shapes are stretched.

For ``pad`` and ``squash`` the encoder receives an image of exactly its input
size, so its own resize and crop leave it unchanged and only its
normalisation applies (docs/semantic.md, "Views").
"""

from __future__ import annotations

VIEWS = ("crop", "pad", "squash")
VIEW_HELP = ("how the image meets the model's square input: crop (its standard preprocessing: shortest side, "
             "centre crop; hides the borders of non-square images), pad (letterbox with the model's mean colour; "
             "sees everything), squash (resize to square)")


def square_view(image, view: str, size: int, fill=(0.5, 0.5, 0.5), resample=None):
    """A PIL image fitted to ``size`` x ``size`` by ``view`` (``pad`` or ``squash``).

    ``fill``: RGB in [0, 1]; ``resample``: a PIL filter (default bicubic, CLIP's)."""
    from PIL import Image

    if view not in ("pad", "squash"):
        raise ValueError(f"square_view: view must be 'pad' or 'squash', not {view!r}")
    resample = Image.BICUBIC if resample is None else resample
    image = image.convert("RGB")
    if view == "squash":
        return image.resize((size, size), resample)
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), tuple(int(round(255 * c)) for c in fill))
    canvas.paste(image.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def square_side(size) -> int | None:
    """An input size (int, (h, w), or a dict / transformers ``SizeDict`` with
    height and width or shortest_edge) -> the side of a square input, or None
    when the input is not square."""
    if size is not None and not isinstance(size, (int, tuple, list)):
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        size = (get("height"), get("width")) if get("height") and get("width") else get("shortest_edge")
    if isinstance(size, (tuple, list)):
        return int(size[0]) if len(size) == 2 and size[0] == size[1] else None
    return int(size) if size else None
