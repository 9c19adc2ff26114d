"""PNG bytes and data URIs: from matplotlib figures or straight from uint8 arrays.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never through pyplot,
so nothing is registered in pyplot's global figure list and no backend is switched: a figure
is freed like any other object once the caller drops it.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def new_figure(width: float, height: float) -> Any:
    """A pyplot-free matplotlib ``Figure`` of ``width x height`` inches with an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Any, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg renderer (white background)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding ``png`` in a self-contained page."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("png_data_uri: the bytes are not a PNG image")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB array as PNG (no matplotlib needed).

    Rows use the "Sub" filter (each byte minus its left neighbour), which turns the runs of equal
    pixels of upscaled images into zeros that deflate compresses well (PNG spec, section 9).
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"encode_png: expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        colour, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] == 3:
        colour, channels = 2, 3
    else:
        raise ValueError(f"encode_png: expected (H, W) or (H, W, 3), got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"encode_png: empty image of shape {arr.shape}")
    rows = arr.reshape(h, w * channels).astype(np.int16)  # (H, W*C) bytes per row
    sub = rows.copy()
    sub[:, channels:] -= rows[:, :-channels]
    raw = np.empty((h, w * channels + 1), dtype=np.uint8)
    raw[:, 0] = 1  # filter type 1 = Sub
    raw[:, 1:] = (sub % 256).astype(np.uint8)
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer ``factor`` (keeps pixels crisp in print)."""
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def scale_for(side: int, target: int = 64, limit: int = 8) -> int:
    """The integer zoom that brings ``side`` pixels to at least ``target`` (at most ``limit``)."""
    return max(1, min(limit, -(-target // max(side, 1))))
