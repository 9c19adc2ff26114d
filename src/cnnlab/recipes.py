"""Recipes and presets shipped with cnnlab (``src/cnnlab/configs/``, linked as ``configs/``).

A *recipe* is a YAML run config for one model. A *preset* is a directory of recipes plus a
``preset.yaml`` naming the models in order, a description, and (for the case study) the claims
the original study made, so a comparison can say where its numbers differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnlab.config import ConfigError, read_yaml


def configs_root() -> Path:
    return Path(str(resources.files("cnnlab") / "configs"))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    models: tuple[str, ...]
    directory: Path
    claims: dict[str, Any] = field(default_factory=dict)  # model -> {"test_acc": .., "source": ..}

    def recipe_path(self, model: str) -> Path | None:
        path = self.directory / f"{model}.yaml"
        return path if path.is_file() else None


def list_presets() -> list[str]:
    root = configs_root()
    return sorted(p.name for p in root.iterdir() if (p / "preset.yaml").is_file())


def load_preset(name: str) -> Preset:
    directory = configs_root() / name
    meta_path = directory / "preset.yaml"
    if not meta_path.is_file():
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}")
    meta = read_yaml(meta_path)
    models = tuple(meta.get("models") or ())
    if not models:
        raise ConfigError(f"{meta_path}: 'models' must list at least one model")
    missing = [m for m in models if not (directory / f"{m}.yaml").is_file()]
    if missing:
        raise ConfigError(f"{meta_path}: no recipe file for {', '.join(missing)}")
    return Preset(
        name=name,
        description=str(meta.get("description", "")).strip(),
        models=models,
        directory=directory,
        claims=dict(meta.get("claims") or {}),
    )
