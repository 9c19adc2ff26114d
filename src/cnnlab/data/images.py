"""Any picture -> the uint8 (C, H, W) pixels a run's network was trained on.

One set of rules serves training on image folders (``cnnlab.data.folder``) and prediction
(``cnnlab.trained.predict``), so a file is seen the same way by both. In order:

1. EXIF orientation applied (``ImageOps.exif_transpose``): a phone photo stored sideways with
   an orientation tag is turned upright, as every image viewer shows it.
2. 16-bit grey (PNG/TIFF ``I;16``, ``I``) scaled to 8 bits by 1/257 (Pillow would clip at 255).
3. Transparency (RGBA, LA, PA, a palette or grey/RGB image with a transparent colour)
   composited on ``background``: ``out = (c * a + bg * (255 - a)) / 255``, rounded. The default,
   black, is the background of Fashion-MNIST and MNIST (the data sets these models first meet).
4. Converted to the run's mode, ``L`` (grey: Pillow's ITU-R 601-2 luma, ``0.299 R + 0.587 G +
   0.114 B``) or ``RGB``; CMYK and palettes by Pillow's own conversions (ICC profiles are not
   applied).
5. Fitted to ``size`` x ``size`` (handbook §11.1.1: a fixed input size): ``stretch`` resizes
   the whole picture, ``center_crop`` cuts the centred square first (§5.1: no distortion);
   bilinear resampling; an image already at the size is left untouched.

Arrays (NumPy or torch) are pixels already: they are converted between grey and colour and
their alpha composited the same way, but never resized (an array of another size raises
:class:`ImageInputError` saying what the model expects).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_BACKGROUND",
    "FITS",
    "IMAGE_SUFFIXES",
    "MODES",
    "ImageInputError",
    "array_to_batch",
    "background_level",
    "background_problem",
    "decode_errors",
    "decode_file",
    "is_grey_file",
    "luma",
    "resolve_mode",
    "to_pixels",
]

# Files Pillow reads that cnnlab treats as images (folders for training, inputs to predict).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MODES = ("RGB", "L")
FITS = ("stretch", "center_crop")
BACKGROUNDS = ("black", "white")  # or a grey level 0-255
DEFAULT_BACKGROUND = "black"
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageInputError(ValueError):
    """An input that cannot be turned into the pixels the model takes (shape, dtype, range)."""


def background_level(background: Any) -> int:
    """``"black"`` -> 0, ``"white"`` -> 255, an int 0-255 -> itself; anything else raises."""
    if background == "black":
        return 0
    if background == "white":
        return 255
    if isinstance(background, int) and not isinstance(background, bool) and 0 <= background <= 255:
        return background
    raise ValueError(
        f"background must be 'black', 'white' or a grey level 0-255, got {background!r}"
    )


def background_problem(background: Any) -> str | None:
    """Why ``background`` is not a valid background, or None when it is."""
    try:
        background_level(background)
    except ValueError as err:
        return str(err)
    return None


def resolve_mode(mode: str, paths: list[Path]) -> str:
    """``auto`` -> ``L`` when every file is stored grey (headers only), else ``RGB``; files
    Pillow cannot open do not count (they are reported when decoded)."""
    if mode != "auto":
        return mode
    return "L" if all(is_grey_file(path) is not False for path in paths) else "RGB"


def decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file that is not a readable image (caught per file)."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> uint8 (...): Pillow's RGB -> L in its own fixed point, exactly."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _composite(pixels: np.ndarray, alpha: np.ndarray, level: int) -> np.ndarray:
    """``(c * a + bg * (255 - a)) / 255`` rounded, uint8; ``alpha`` broadcasts over channels."""
    a = alpha.astype(np.uint32)
    out = (pixels.astype(np.uint32) * a + level * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _to_8bit(im: Any) -> Any:
    """16-bit grey -> 8-bit L, scaled by 1/257 (Pillow's own conversion would clip at 255)."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT:
        arr = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    return im


def _flatten(im: Any, level: int) -> Any:
    """Composite any transparency on the grey ``level``; images without it pass through."""
    from PIL import Image

    has_alpha = "A" in im.getbands() or im.mode in ("RGBa", "La")
    if not has_alpha and "transparency" not in im.info:
        return im
    rgba = np.asarray(im.convert("RGBA"))  # palettes, tRNS colours, premultiplied: Pillow's
    flat = _composite(rgba[..., :3], rgba[..., 3:], level)
    return Image.fromarray(flat, mode="RGB")


def _fit(im: Any, size: int, fit: str) -> Any:
    from PIL import Image

    if fit == "center_crop":  # cut first, so resampling never reads beyond the square
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        if (w, h) != (side, side):
            im = im.crop((left, top, left + side, top + side))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return im


def to_pixels(
    im: Any, size: int, mode: str, fit: str, background: Any = DEFAULT_BACKGROUND
) -> np.ndarray:
    """A Pillow image -> uint8 (C, H, W) by the five steps of the module docstring."""
    from PIL import ImageOps

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    im = ImageOps.exif_transpose(im)
    im = _flatten(_to_8bit(im), background_level(background))
    im = _fit(im.convert(mode), size, fit)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


def decode_file(
    path: str | os.PathLike[str], size: int, mode: str, fit: str,
    background: Any = DEFAULT_BACKGROUND,
) -> np.ndarray:  # fmt: skip
    """One file -> uint8 (C, H, W). Raises one of :func:`decode_errors` for a bad file."""
    from PIL import Image

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise OSError("empty file (0 bytes)")
    with Image.open(path) as im:
        im.load()  # decode now: truncated data raises here, not later
        return to_pixels(im, size, mode, fit, background)


def is_grey_file(path: str | os.PathLike[str]) -> bool | None:
    """Whether a file is stored as a grey image (its header only: nothing is decoded);
    ``None`` when Pillow cannot open it (it is reported when decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                palette = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
                return bool((palette == palette[:, :1]).all())
            return im.mode in _GREY_MODES
    except decode_errors():
        return None


def _as_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """uint8 pixels; uint16 scaled like 16-bit files; floats in [0, 1] (torchvision's
    convention) scaled by 255; other integers when they lie in 0-255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise ImageInputError(
                f"{what}: float pixels must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]; pass "
                "uint8 pixels (0-255) or floats in [0, 1], not images that are already "
                "normalised (cnnlab normalises them with the run's mean and std)"
            )
        return np.rint(arr * 255.0).astype(np.uint8)
    found = f"[{arr.min()}, {arr.max()}]" if arr.size else "no values"
    if np.issubdtype(arr.dtype, np.integer) and (
        not arr.size or 0 <= arr.min() <= arr.max() <= 255
    ):
        return arr.astype(np.uint8)
    raise ImageInputError(
        f"{what}: expected uint8 pixels (0-255), uint16, or floats in [0, 1]; got {arr.dtype} "
        f"with values in {found}"
    )


def _channels(batch: np.ndarray, chans: int, level: int) -> np.ndarray:
    """uint8 (N, C, H, W) with C in 1-4 -> (N, chans, H, W): alpha composited, grey <-> RGB."""
    c = batch.shape[1]
    if c in (2, 4):  # LA / RGBA: composite the colour on the background
        batch = _composite(batch[:, : c - 1], batch[:, c - 1 :], level)
        c -= 1
    if c == chans:
        return batch
    if chans == 1:  # RGB -> L, exactly as Pillow converts files
        return luma(batch.transpose(0, 2, 3, 1))[:, None]
    return np.repeat(batch, 3, axis=1)  # L -> RGB: Pillow copies the grey level


def _layout(arr: np.ndarray, torch_layout: bool, what: str) -> np.ndarray:
    """Any accepted shape -> (N, C, H, W); see :func:`array_to_batch`."""
    shape = tuple(arr.shape)
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3 and torch_layout and shape[0] in (1, 2, 3, 4):
        return arr[None]  # torch (C, H, W)
    if arr.ndim == 3 and not torch_layout:
        # (H, W, C) when the last axis can be channels, else a batch of grey (N, H, W)
        return arr.transpose(2, 0, 1)[None] if shape[2] in (1, 2, 3, 4) else arr[:, None]
    if arr.ndim == 4 and shape[1] in (1, 2, 3, 4):
        return arr
    hint = ""
    if arr.ndim == 4 and shape[3] in (1, 2, 3, 4):
        hint = "; it looks like (N, H, W, C): transpose it with .transpose(0, 3, 1, 2)"
    elif arr.ndim == 3 and torch_layout:
        hint = "; for a batch of grey (N, H, W) images add the channel axis: x.unsqueeze(1)"
    accepted = (
        "(H, W), (C, H, W) or (N, C, H, W)"
        if torch_layout
        else "(H, W), (H, W, C), (N, H, W) or (N, C, H, W)"
    )
    raise ImageInputError(
        f"{what}: cannot read shape {shape} as images; expected {accepted} with C = 1 (grey), "
        f"2 (grey + alpha), 3 (RGB) or 4 (RGBA){hint}"
    )


def array_to_batch(
    x: Any, *, chans: int, size: int, background: Any = DEFAULT_BACKGROUND,
    what: str = "array",
) -> np.ndarray:  # fmt: skip
    """A NumPy array or torch tensor of pixels -> uint8 (N, chans, size, size).

    NumPy shapes: (H, W) one grey image, (H, W, C) one image, (N, H, W) grey images,
    (N, C, H, W); torch tensors follow torch's layout: (H, W), (C, H, W), (N, C, H, W).
    Values: uint8, uint16, or floats in [0, 1]. Arrays are not resized: H and W must be the
    model's ``size``.
    """
    torch_layout = type(x).__module__.startswith("torch")
    arr = x.detach().cpu().numpy() if torch_layout else np.asarray(x)
    batch = _layout(arr, torch_layout, what)
    _, _, h, w = batch.shape
    expects = f"{'grey' if chans == 1 else 'colour'} {chans}x{size}x{size} images"
    if (h, w) != (size, size):
        raise ImageInputError(
            f"{what}: the model expects {expects}; got shape {tuple(arr.shape)}, i.e. {h}x{w} "
            "pixels. Arrays are not resized: pass the image file or a PIL image to apply the "
            f"run's resize rule, or resize the array to {size}x{size} yourself"
        )
    batch = _channels(_as_uint8(batch, what), chans, background_level(background))
    return np.ascontiguousarray(batch)
