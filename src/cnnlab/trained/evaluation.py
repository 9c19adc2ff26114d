"""Evaluate a trained run again (``cnnlab eval``): the loader's network on its test (or
training) split, in the precision and memory layout it trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.evaluation.evaluate import evaluate
from cnnlab.evaluation.tta import TTA
from cnnlab.trained.run import TrainedRun, load

SPLITS = ("test", "train")


def evaluate_run(
    run: str | Path | TrainedRun,
    *,
    data_dir: str | None = None,
    log: Any = print,
    batch_size: int = 1000,
    split: str = "test",
    tta: str | None = None,
) -> dict[str, Any]:
    """Load ``run`` (``cnnlab.load``: the weights its metrics.json reports) and evaluate it.

    ``split="train"`` evaluates on the data set's whole training set instead (in eval mode: no
    dropout, batch-norm running statistics, no augmentation), for comparing with claims that
    were most likely training accuracy (case-study issue). The keys are then ``train_acc`` and
    ``train_loss`` (``test_acc``/``test_loss`` otherwise).

    ``tta`` names a test-time augmentation preset (``flip``, ``shift``, ``flip_shift``; handbook
    §13.1.1, ``cnnlab.evaluation.tta``): the model's class probabilities are averaged over those
    views of each image. It only helps a model that trained with the same transformations
    (a model never shown mirrored shoes scores far lower on them: benchmarks/ensembles)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected 'test' or 'train', found {split!r}")
    trained = run if isinstance(run, TrainedRun) else load(run, data_dir=data_dir)
    dataset = trained.dataset(data_dir, log=log)
    images, labels = (
        (dataset.test_images, dataset.test_labels)
        if split == "test"
        else (dataset.train_images, dataset.train_labels)
    )
    model = trained.model if tta is None else TTA(trained.model, tta)
    loader = trained.loader(images, labels, batch_size=batch_size)
    res = evaluate(model, loader, num_classes=dataset.num_classes,
                   autocast=trained.runtime.autocast)  # fmt: skip
    state = trained.meta.get("state", {})
    return {
        "model": trained.spec["name"],
        "dataset": trained.data.dataset,
        "data_source": dataset.source,
        "split": split,
        "tta": tta,
        f"{split}_acc": res.accuracy,
        f"{split}_loss": res.loss,
        "num_images": int(labels.numel()),
        "params": sum(p.numel() for p in trained.model.parameters()),
        "train_seconds": state.get("train_seconds"),
        "infer_images_per_s": res.images_per_second,
        "precision": trained.runtime.precision,
        "weights": trained.weights.name,
        split: res.report(),
    }
