"""Knowledge distillation (Handbook §4.5; Hinton, Vinyals & Dean 2015).

``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(y, s)``
(Part E item 25): the student's softened distribution follows the teacher's at temperature T,
the T^2 factor keeps the soft term's gradients on the scale of the hard one as T grows, and the
hard term is the ordinary cross-entropy at T = 1. With T = 1 and alpha = 0 it *is* the
cross-entropy. The teacher may return logits or log-probabilities (e.g. an ``Ensemble``):
``log_softmax(z / T)`` is the same for both up to the per-sample constant softmax ignores.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.compression.state import CompressionError, CompressState
from cnnlab.compression.steps import COMPRESSION, Step, check_int, check_positive
from cnnlab.engine.tasks import Task
from cnnlab.models.spec import build_model
from cnnlab.registry import MODELS
from cnnlab.training.assemble import seed_everything


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
    temperature: float = 4.0, alpha: float = 0.9,
) -> torch.Tensor:  # fmt: skip
    """Hinton et al.'s soft/hard mix for (B, C) student and teacher outputs."""
    t = temperature
    s32, t32 = student.float(), teacher.float()
    soft = F.kl_div(F.log_softmax(s32 / t, dim=1), F.log_softmax(t32 / t, dim=1),
                    log_target=True, reduction="batchmean")  # fmt: skip
    hard = F.cross_entropy(s32, labels)
    return alpha * t * t * soft + (1 - alpha) * hard


class DistillationTask(Task):
    """Train a student on ``distillation_loss`` against a frozen teacher (any nn.Module)."""

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(f"need temperature > 0 and 0 <= alpha <= 1, got "
                             f"T={temperature}, alpha={alpha}")  # fmt: skip
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha

    def train(self, mode: bool = True) -> DistillationTask:
        super().train(mode)
        self.teacher.eval()  # BN statistics and dropout of the teacher stay fixed
        return self

    def training_step(self, model, x, y):
        with torch.no_grad():
            t = self.teacher(x)
        s = model(x)
        return distillation_loss(s, t, y, self.temperature, self.alpha), s


def student_spec(
    teacher_spec: dict[str, Any], student: dict[str, Any] | None, width: float = 0.5
) -> dict[str, Any]:
    """The student's model spec: ``student`` ({name, params}) or the teacher's architecture
    with its width multiplied by ``width`` (for builders that take ``width``)."""
    if student is None:
        name = teacher_spec["name"]
        if "width" not in MODELS.parameters(name):
            raise CompressionError(
                f"distill: model {name!r} has no width option, so there is no default student; "
                "give student: {name: ..., params: {...}}"
            )
        params = {**teacher_spec["params"],
                  "width": width * teacher_spec["params"].get("width", 1)}  # fmt: skip
        return {**teacher_spec, "params": params}
    if not isinstance(student, dict) or "name" not in student:
        raise CompressionError(
            f"distill: student must be {{name: ..., params: ...}}, got {student!r}"
        )
    MODELS.get(student["name"])  # unknown names fail here with close matches
    return {**teacher_spec, "name": student["name"], "params": dict(student.get("params", {}))}


def load_teacher(teacher: str | list[str] | None, state: CompressState, ctx: Any) -> nn.Module:
    """The current model (None), another run (a path) or an ensemble of runs (a list)."""
    if teacher is None:
        return state.model
    try:
        from cnnlab.ensembles.ensemble import Ensemble
    except ImportError:
        raise CompressionError("distill: teacher runs need cnnlab.ensembles") from None
    ens = Ensemble.from_runs([teacher] if isinstance(teacher, str) else list(teacher))
    mean = list(ens.meta["data"].get("mean", []))
    if [round(v, 6) for v in mean] != [round(v, 6) for v in ctx.data.normalizer.mean]:
        raise CompressionError(
            "distill: the teacher runs normalise inputs differently from this run"
        )
    return ens


@COMPRESSION.register("distill")
def distill(
    *, student: dict | None = None, temperature: float = 4.0, alpha: float = 0.9,
    epochs: int | None = None, teacher: str | list | None = None, width: float = 0.5,
) -> Step:  # fmt: skip
    """Knowledge distillation into a smaller student (Hinton et al.; temperature T, mix alpha)."""
    check_positive("temperature", temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if epochs is not None:
        check_int("epochs", epochs, 1)
    check_positive("width", width)
    options = {"student": student, "temperature": temperature, "alpha": alpha, "epochs": epochs,
               "teacher": teacher, "width": width}  # fmt: skip

    def apply(state: CompressState, ctx: Any) -> dict[str, Any]:
        spec = student_spec(state.spec, student, width)
        teacher_model = load_teacher(teacher, state, ctx)
        seed_everything(ctx.train_cfg.seed)
        model = build_model(spec)
        n_epochs = epochs or ctx.train_cfg.train.epochs
        ctx.log(f"distill: training {spec['name']} {spec['params']} for {n_epochs} epochs")
        history = ctx.train(model, n_epochs, DistillationTask(teacher_model, temperature, alpha))
        n_teacher = sum(p.numel() for p in teacher_model.parameters())
        state.model, state.spec, state.encodings = model.cpu(), spec, {}
        return {"student": spec, "teacher_params": n_teacher,
                "student_params": sum(p.numel() for p in model.parameters()),
                "test_acc": [r.get("test_acc") for r in history]}  # fmt: skip

    return Step("distill", options, apply)
