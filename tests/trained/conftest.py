"""Tiny trained runs for prediction tests (trained once per session, fp32: exact comparisons)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.config import build_config
from cnnlab.training.spine import run_training


def train(out: Path, data: dict, model: str = "cnn1") -> Path:
    cfg = build_config(
        {
            "data": {"batch_size": 32, "eval_batch_size": 64, **data},
            "model": {"name": model},
            "train": {"epochs": 2, "progress": False, "precision": "fp32"},
        }
    )
    run_training(cfg, out, log=lambda m: None)
    return out


def synthetic(in_chans: int) -> dict:
    params = {"train_size": 256, "test_size": 64, "image_size": 12, "num_classes": 4}
    return {"dataset": "synthetic", "params": {**params, "in_chans": in_chans}}


def colour_folder(root: Path) -> Path:
    """root/{train,test}/<class>/: wide and tall colour pictures, some with transparency."""
    rng = np.random.default_rng(0)
    colours = {"red": (210, 40, 30), "green": (30, 190, 60), "blue": (40, 50, 200)}
    for split, n in (("train", 12), ("test", 4)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = (18, 30) if i % 2 else (26, 16)
                base = np.array(colour) * rng.uniform(0.6, 1.0) + rng.normal(0, 20, (h, w, 3))
                rgb = base.clip(0, 255).astype(np.uint8)
                if i % 3 == 0:  # transparent border: composited on the run's background
                    alpha = np.full((h, w, 1), 255, np.uint8)
                    alpha[:3] = 0
                    Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(
                        root / split / name / f"{i}.png"
                    )
                else:
                    Image.fromarray(rgb).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``grey`` and ``rgb`` synthetic runs (12x12) and a ``folder`` run trained on colour
    files of mixed sizes (centre crop, white background, mode auto); about 4 s."""
    root = tmp_path_factory.mktemp("predict_runs")
    folder = colour_folder(root / "pictures")
    folder_data = {
        "dataset": "image_folder", "data_dir": str(folder),
        "params": {"image_size": 12, "fit": "center_crop", "background": "white",
                   "cache": False},
    }  # fmt: skip
    return {
        "grey": train(root / "grey", synthetic(1)),
        "rgb": train(root / "rgb", synthetic(3)),
        "folder": train(root / "folder", folder_data),
        "pictures": folder,
    }
