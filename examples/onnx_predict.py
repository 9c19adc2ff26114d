"""Classify images with a model from `cnnlab export`: onnxruntime, Pillow and NumPy only.

    python examples/onnx_predict.py runs/cnn2/model.onnx shirt.png boot.jpg

Everything comes from the model's metadata (cnnlab.* keys): the same steps cnnlab's training
took (EXIF orientation, 16-bit grey scaled, transparency on the run's background, grey or
colour, resize rule, normalisation), so the scores are the ones `cnnlab predict` gives.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load_pixels(path, meta):
    """One image file -> uint8 (C, H, W), as the model's training data was decoded."""
    size, fit = int(meta["cnnlab.input_size"]), meta["cnnlab.fit"]
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey -> 8 bits
            im = Image.fromarray(np.rint(np.asarray(im) / 257).clip(0, 255).astype(np.uint8))
        if "A" in im.getbands() or im.mode in ("RGBa", "La") or "transparency" in im.info:
            rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
            c, a, bg = rgba[..., :3], rgba[..., 3:], int(meta["cnnlab.background"])
            im = Image.fromarray(((c * a + bg * (255 - a) + 127) // 255).astype(np.uint8))
        im = im.convert(meta["cnnlab.mode"])
        w, h = im.size
        if fit == "center_crop" and w != h:
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        x = np.asarray(im, dtype=np.uint8)
    return x[None] if x.ndim == 2 else x.transpose(2, 0, 1)


def classify(model_path, image_paths, top_k=3):
    """[(path, [(label, probability), ...best first]), ...]"""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["cnnlab.classes"])
    std = np.array(json.loads(meta["cnnlab.std"]), np.float32).reshape(1, -1, 1, 1)
    mean = np.array(json.loads(meta["cnnlab.mean"]), np.float32).reshape(1, -1, 1, 1)
    x = np.stack([load_pixels(p, meta) for p in image_paths]).astype(np.float32)
    x = x * (np.float32(1) / (np.float32(255) * std)) + (-mean / std)  # (x/255 - mean) / std
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return [
        (path, [(classes[j], float(p[j])) for j in row])
        for path, p, row in zip(image_paths, probs, best, strict=True)
    ]


if __name__ == "__main__":
    for path, top in classify(sys.argv[1], sys.argv[2:]):
        print(path, "  ".join(f"{label} {p:.1%}" for label, p in top))
