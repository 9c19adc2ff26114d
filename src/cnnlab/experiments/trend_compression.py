"""Trend claims of Handbook chapter 4 (Part D.2): low-rank FC layers, magnitude pruning,
k-means weight sharing and BinaryConnect, run with cnnlab's compression steps on
a small Alex-Net trained on a Fashion-MNIST subset."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from cnnlab.compression import CompressContext, CompressState, build_step
from cnnlab.compression.arch import set_submodule
from cnnlab.compression.context import finetune_config
from cnnlab.compression.lowrank import svd_linear
from cnnlab.experiments.base import Context, Metric, TrendExperiment, register
from cnnlab.experiments.common import data_for, tree
from cnnlab.experiments.training import Trial, train
from cnnlab.experiments.verdict import Part, compare, non_inferior, threshold
from cnnlab.training.assemble import model_spec_of, silent

# alexnet: 392k params, 84% in the FC layers; torch init (the paper's N(0, 0.01) starts slowly)
BASE_PARAMS = {"stem": "small", "width": 0.125, "init": "torch"}
FC_LAYERS = ("classifier.fc6", "classifier.fc7")


def base_trial(
    ctx: Context, seed: int, arm: str = "float", width: float = 0.125, epochs: int | None = None
) -> Trial:
    """The float model every compression arm of a seed starts from."""
    ds = data_for(ctx, seed)
    t = tree(ctx, "alexnet")
    if epochs is not None:
        t["train"]["epochs"] = epochs
    t["model"]["params"] = {**BASE_PARAMS, "width": width, **ctx.settings.get("model_params", {})}
    return train(ctx, arm, seed, t, ds)


def start(trial: Trial) -> tuple[CompressState, CompressContext]:
    """A fresh copy of the trained model and the compression context of its run."""
    model = copy.deepcopy(trial.model).cpu().to(memory_format=torch.contiguous_format)
    state = CompressState(model, model_spec_of(trial.cfg, trial.data.dataset))
    return state, CompressContext(trial.cfg, finetune_config(trial.cfg), trial.data, silent)


def finetune(state: CompressState, cctx: CompressContext, epochs: int) -> None:
    """cnnlab's finetune step: keeps masks, codebooks and binary weights as they are."""
    if epochs > 0:
        build_step({"name": "finetune", "epochs": epochs}).run(state, cctx)


def per_seed(m, arms: list[str], metric: str) -> list[list[float]]:
    """Rows of the metric per seed across ``arms`` (seed-aligned)."""
    return [list(row) for row in zip(*(m.values(a, metric) for a in arms), strict=True)]


class CompressionExperiment(TrendExperiment):
    """Arms share one trained float model per seed.

    The reference ("float") is that model trained for as many extra epochs, with the same
    recipe, as the compressed arms get for fine-tuning (``extra_epochs``), so a drop measures
    the compression, not the extra training a small, not fully converged model profits from.
    """

    levels_key = ""
    prefix = ""
    extra_recipe = "finetune"  # the recipe of the arms' extra training: finetune | train

    def levels(self, ctx: Context) -> list[Any]:
        return list(ctx.settings[self.levels_key])

    def arms_for(self, ctx: Context) -> list[str]:
        return ["float", *(f"{self.prefix}{v}" for v in self.levels(ctx))]

    def extra_epochs(self, ctx: Context) -> int:
        return int(ctx.settings.get("ft_epochs", 0))

    def compress(self, ctx: Context, trial: Trial, level: Any) -> dict[str, Any]:
        raise NotImplementedError

    def reference(self, ctx: Context, trial: Trial) -> dict[str, Any]:
        state, cctx = start(trial)
        before = cctx.accuracy(state.model)
        epochs = self.extra_epochs(ctx)
        if epochs and self.extra_recipe == "train":
            cctx.train(state.model, epochs)
        else:
            finetune(state, cctx, epochs)
        return {
            "test_acc": cctx.accuracy(state.model),
            "acc_before_extra": before,
            "extra_epochs": float(epochs),
        }

    def run_seed(self, ctx: Context, seed: int) -> dict[str, dict[str, Any]]:
        trial = base_trial(ctx, seed)
        ref = self.reference(ctx, trial)
        out = {"float": {**ref, "drop": 0.0}}
        for level in self.levels(ctx):
            ctx.log(f"{self.name}: {self.prefix}{level}, seed {seed}")
            row = self.compress(ctx, trial, level)
            row["drop"] = ref["test_acc"] - row["test_acc"]
            out[f"{self.prefix}{level}"] = row
        return out


@register
class SvdFcCompression(CompressionExperiment):
    name = "svd_fc_compression"
    section = "4.1"
    title = "Low-rank (SVD) compression of FC layers"
    claim = "Truncated SVD compresses fully-connected layers 5-13x with less than 1% accuracy loss."
    runs = (
        "A small Alex-Net (zoo alexnet, small stem, width 0.125; FC layers 128-512-512-10) "
        "trained with adam on a Fashion-MNIST subset; fc6 and fc7 replaced by rank-k SVD "
        "factor pairs (cnnlab.compression.lowrank.svd_linear), then one epoch of cnnlab's "
        "fine-tuning step."
    )
    measurement = (
        "FC compression (original / factorised parameters of fc6 + fc7) and the "
        "accuracy drop after fine-tuning (against the float model fine-tuned as long). "
        "Verdict: on every seed some rank reaches "
        ">= 5x with a drop below 1 point."
    )
    minutes = (1, 8)
    arms = ("float", "rank8", "rank16", "rank32")
    metrics: ClassVar[dict[str, Metric]] = {
        "drop": Metric("accuracy drop (points x 0.01)", higher_is_better=False),
        "test_acc": Metric("test accuracy after fine-tuning"),
        "acc_no_finetune": Metric("test accuracy before fine-tuning"),
        "fc_compression": Metric("FC compression (x)"),
    }
    levels_key, prefix = "ranks", "rank"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "ranks": [4], "ft_epochs": 1},
        "quick": {
            "seeds": 1,
            "epochs": 5,
            "per_class": 500,
            "test_per_class": 200,
            "ranks": [8, 32],
            "ft_epochs": 1,
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "ranks": [4, 8, 16, 32, 64],
            "ft_epochs": 1,
        },
    }

    def compress(self, ctx: Context, trial: Trial, rank: int) -> dict[str, Any]:
        state, cctx = start(trial)
        before = after = 0
        for name in FC_LAYERS:
            layer = state.model.get_submodule(name)
            k = min(rank, layer.in_features, layer.out_features)
            new = svd_linear(layer, k)
            before += sum(p.numel() for p in layer.parameters())
            after += sum(p.numel() for p in new.parameters())
            set_submodule(state.model, name, new)
        acc0 = cctx.accuracy(state.model)
        finetune(state, cctx, ctx.settings["ft_epochs"])
        return {
            "test_acc": cctx.accuracy(state.model),
            "acc_no_finetune": acc0,
            "fc_compression": before / after,
        }

    def judge(self, m) -> list[Part]:
        arms = [a for a in m.per_seed if a != "float"]
        drops, ratios = per_seed(m, arms, "drop"), per_seed(m, arms, "fc_compression")
        best = [
            max([r for r, d in zip(rs, ds, strict=True) if d < 0.01], default=0.0)
            for rs, ds in zip(ratios, drops, strict=True)
        ]
        return [
            threshold(
                "FC layers compress >= 5x with < 1 point loss",
                best,
                above=4.999,
                what="best FC compression with drop < 1 point",
            )
        ]


@register
class MagnitudePruning(CompressionExperiment):
    name = "magnitude_pruning"
    section = "4.2"
    title = "Magnitude pruning keeps accuracy"
    claim = (
        "Pruning small-magnitude weights with fine-tuning removes 9-11x of the parameters "
        "without accuracy loss."
    )
    runs = (
        "The small Alex-Net of svd_fc_compression; cnnlab's prune_magnitude step (global "
        "l1 ranking, prune -> fine-tune iterations) to sparsity 0.5 ... 0.95 from the same "
        "trained model."
    )
    measurement = (
        "Accuracy drop at each sparsity (against the float model fine-tuned as long). "
        "Verdict: at sparsity 0.9 (10x fewer weights) "
        "the drop is below 1 point on every seed."
    )
    minutes = (1.5, 10)
    arms = ("float", "sparsity0.5", "sparsity0.9")
    metrics: ClassVar[dict[str, Metric]] = {
        "drop": Metric("accuracy drop", higher_is_better=False),
        "test_acc": Metric("test accuracy"),
        "sparsity": Metric("measured sparsity"),
    }
    levels_key, prefix = "sparsities", "sparsity"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "sparsities": [0.9], "iterations": 1, "ft_epochs": 1},
        "quick": {
            "seeds": 1,
            "epochs": 5,
            "per_class": 500,
            "test_per_class": 200,
            "sparsities": [0.5, 0.9],
            "iterations": 3,
            "ft_epochs": 1,
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "sparsities": [0.5, 0.8, 0.9],
            "iterations": 3,
            "ft_epochs": 1,
        },
    }

    def extra_epochs(self, ctx: Context) -> int:
        return int(ctx.settings["iterations"] * ctx.settings["ft_epochs"])

    def compress(self, ctx: Context, trial: Trial, sparsity: float) -> dict[str, Any]:
        state, cctx = start(trial)
        step = build_step(
            {
                "name": "prune_magnitude",
                "sparsity": sparsity,
                "iterations": ctx.settings["iterations"],
                "finetune_epochs": ctx.settings["ft_epochs"],
            }
        )
        report = step.run(state, cctx)
        return {"test_acc": cctx.accuracy(state.finalized()), "sparsity": report["sparsity"]}

    def judge(self, m) -> list[Part]:
        arm = "sparsity0.9" if m.has("sparsity0.9") else list(m.per_seed)[-1]
        return [
            threshold(
                "10x fewer weights without accuracy loss",
                m.values(arm, "drop"),
                below=0.01,
                what=f"accuracy drop at {arm}",
            )
        ]


@register
class KmeansQuantisation(CompressionExperiment):
    name = "kmeans_quantisation"
    section = "4.3"
    title = "k-means weight sharing"
    claim = (
        "Scalar (k-means) quantisation shrinks the weights 8-16x with little loss, "
        "accuracy drops sharply at higher compression, and codebook fine-tuning only "
        "partly recovers it."
    )
    runs = (
        "The small Alex-Net of svd_fc_compression; cnnlab's kmeans step on the FC layers "
        "(as Gong et al.) with 1 ... 8 bits per weight (k = 2 ... 256), then cnnlab's "
        "finetune step, which trains the codebooks."
    )
    measurement = (
        "Accuracy drop before/after codebook fine-tuning per bit width (against the float "
        "model fine-tuned as long); compression "
        "= 32 / bits. Verdict: drop < 1 point at 4 bits (8x) and 2 bits (16x) after "
        "fine-tuning; drop at 1 bit (32x) larger than at 4 bits by > 2 points; "
        "fine-tuning raises the 1-bit accuracy."
    )
    minutes = (1, 8)
    arms = ("float", "bits1", "bits2", "bits4")
    metrics: ClassVar[dict[str, Metric]] = {
        "drop": Metric("accuracy drop after fine-tuning", higher_is_better=False),
        "test_acc": Metric("test accuracy after fine-tuning"),
        "acc_no_finetune": Metric("test accuracy before fine-tuning"),
        "compression": Metric("FC weight compression (x)"),
    }
    levels_key, prefix = "bits", "bits"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seeds": 1, "epochs": 1, "bits": [1, 2, 4], "ft_epochs": 1},
        "quick": {
            "seeds": 1,
            "epochs": 5,
            "per_class": 500,
            "test_per_class": 200,
            "bits": [1, 2, 4],
            "ft_epochs": 1,
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "bits": [1, 2, 3, 4, 8],
            "ft_epochs": 1,
        },
    }

    def compress(self, ctx: Context, trial: Trial, bits: int) -> dict[str, Any]:
        state, cctx = start(trial)
        report = build_step(
            {"name": "kmeans", "bits": bits, "layers": "linear", "finetune_epochs": 0}
        ).run(state, cctx)
        acc0 = cctx.accuracy(state.model)
        finetune(state, cctx, ctx.settings["ft_epochs"])
        layers = report.get("layers", report.get("details", []))
        stored = sum(d["storage_bits"] for d in layers) if layers else None
        full = sum(d["float32_bits"] for d in layers) if layers else None
        return {
            "test_acc": cctx.accuracy(state.model),
            "acc_no_finetune": acc0,
            "compression": 32 / bits,
            "storage_ratio": full / stored if stored else float("nan"),
        }

    def judge(self, m) -> list[Part]:
        parts = [
            threshold(
                f"little loss at {32 // b}x ({b} bits)",
                m.values(f"bits{b}", "drop"),
                below=0.01,
                what=f"drop at {b} bits",
            )
            for b in (4, 2)
        ]
        parts.append(
            compare(
                "accuracy drops sharply at 32x (1 bit)",
                m.values("bits1", "drop"),
                m.values("bits4", "drop"),
                min_effect=0.02,
                names=("bits1", "bits4"),
            )
        )
        parts.append(
            compare(
                "codebook fine-tuning recovers some 1-bit accuracy",
                m.values("bits1", "test_acc"),
                m.values("bits1", "acc_no_finetune"),
                names=("fine-tuned", "not fine-tuned"),
            )
        )
        return parts


@register
class BinaryConnectVsFloat(CompressionExperiment):
    name = "binaryconnect_vs_float"
    section = "4.4"
    title = "BinaryConnect against full precision"
    claim = (
        "BinaryConnect (binary weights, real-valued updates) is comparable to full "
        "precision; binarising the activations too (BNN) costs more accuracy."
    )
    runs = (
        "The small Alex-Net of svd_fc_compression with batch norm; cnnlab's binarize step "
        "(first and last layers kept real, as in the papers) in binaryconnect and bnn modes, "
        "trained from the float weights with the run's recipe."
    )
    measurement = (
        "Test accuracy; the float reference is trained as many extra epochs with the same "
        "recipe. Verdict: BinaryConnect within 2 points of float (non-inferiority); "
        "BinaryConnect above BNN (seed rule)."
    )
    minutes = (1.5, 10)
    arms = ("float", "binaryconnect", "bnn")
    metrics: ClassVar[dict[str, Metric]] = {
        "test_acc": Metric("test accuracy"),
        "drop": Metric("accuracy drop", higher_is_better=False),
    }
    levels_key, prefix = "modes", ""
    # Batch norm after every conv/FC layer, as in the BinaryConnect and BNN papers: +-1 weights
    # have no scale of their own, and without BN the activations grow with every layer's fan-in
    # (our first full run, without BN, left BinaryConnect near chance).
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "seeds": 1,
            "epochs": 1,
            "modes": ["binaryconnect", "bnn"],
            "bin_epochs": 1,
            "model_params": {"norm": "bn"},
        },
        "quick": {
            "seeds": 1,
            "epochs": 5,
            "per_class": 500,
            "test_per_class": 200,
            "modes": ["binaryconnect", "bnn"],
            "bin_epochs": 2,
            "model_params": {"norm": "bn"},
        },
        "full": {
            "seeds": 3,
            "epochs": 8,
            "per_class": 1000,
            "test_per_class": 500,
            "modes": ["binaryconnect", "bnn"],
            "bin_epochs": 4,
            "model_params": {"norm": "bn"},
        },
    }

    extra_recipe = "train"

    def extra_epochs(self, ctx: Context) -> int:
        return int(ctx.settings["bin_epochs"])

    def compress(self, ctx: Context, trial: Trial, mode: str) -> dict[str, Any]:
        state, cctx = start(trial)
        build_step({"name": "binarize", "mode": mode, "epochs": ctx.settings["bin_epochs"]}).run(
            state, cctx
        )
        return {"test_acc": cctx.accuracy(state.finalized())}

    def judge(self, m) -> list[Part]:
        acc = lambda a: m.values(a, "test_acc")  # noqa: E731
        return [
            non_inferior(
                "BinaryConnect is comparable to float",
                acc("binaryconnect"),
                acc("float"),
                margin=0.02,
                names=("binaryconnect", "float"),
            ),
            compare(
                "binary activations (BNN) cost more",
                acc("binaryconnect"),
                acc("bnn"),
                names=("binaryconnect", "bnn"),
            ),
        ]
