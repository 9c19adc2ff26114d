"""What a trained run knows about its data: the ``DataSpec`` stored in every checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """The data set a run trained on and how its images reached the network.

    ``classes`` are the label names in output order; ``in_chans``/``input_size`` the image shape
    the network takes; ``mean``/``std`` the per-channel normalisation fitted on the training
    split; ``params`` the data set's builder options (for an image folder: ``mode``, ``fit``,
    ``image_size``, ...). ``mode`` and ``fit`` are the decoding rules a new image must follow.
    """

    dataset: str
    classes: tuple[str, ...]
    in_chans: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    source: str | None = None

    @property
    def mode(self) -> str:
        """Pillow mode the network sees: ``"L"`` (one channel) or ``"RGB"``."""
        return "L" if self.in_chans == 1 else "RGB"

    @property
    def fit(self) -> str:
        """How an image of another size is brought to ``input_size`` (image-folder rule)."""
        return str(self.params.get("fit", "stretch"))

    @property
    def background(self) -> str | int:
        """What transparent pixels are composited on (image-folder rule; ``black`` default)."""
        return self.params.get("background", "black")

    @classmethod
    def from_meta(cls, data: Mapping[str, Any], model: Mapping[str, Any]) -> DataSpec:
        """From a checkpoint's ``data`` and ``model`` metadata (the keys named in errors)."""
        missing = [k for k in ("dataset", "classes", "mean", "std") if k not in data]
        if missing:
            raise KeyError(f"data metadata lacks {', '.join(missing)}")
        return cls(
            dataset=str(data["dataset"]),
            classes=tuple(str(c) for c in data["classes"]),
            in_chans=int(model["in_chans"]),
            input_size=int(model["input_size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            params=dict(data.get("params") or {}),
            data_dir=data.get("data_dir"),
            source=data.get("source"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "params": dict(self.params),
            "data_dir": self.data_dir,
            "source": self.source,
            "mode": self.mode,
            "fit": self.fit,
            "background": self.background,
        }
