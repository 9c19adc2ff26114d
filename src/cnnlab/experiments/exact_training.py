"""Exact checks of Handbook chapters 10-13 and the appendices (Part D.1): dropout, BN, Adam,
imbalance, label shuffling, cost matrices, cyclic cosine restarts, voting, matrix norms,
gradient descent and the chain rule."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import ScheduleConfig
from cnnlab.data.imbalance import cost_matrix_from_confusion, cost_matrix_from_counts
from cnnlab.data.samplers import build_sampler
from cnnlab.ensembles import ABSTAIN, majority, plurality
from cnnlab.evaluation.metrics import balanced_accuracy, confusion_matrix
from cnnlab.experiments.base import Check, ExactExperiment, register
from cnnlab.nn.dropout import Dropout
from cnnlab.optim.schedules import build_scheduler
from cnnlab.registry import OPTIMIZERS


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@register
class DropoutSubnetworks(ExactExperiment):
    name = "dropout_subnetworks"
    section = "10.4"
    title = "Nine dropout sub-networks"
    claim = (
        "Two layers of three neurons, dropping exactly one neuron per layer, give "
        "C(3,1) x C(3,1) = 9 different sub-networks."
    )
    runs = (
        "Enumeration of the masks; 20,000 masks drawn with cnnlab's Dropout(p = 1/3) on a "
        "2 x 3 layout, keeping those with one drop per layer."
    )
    measurement = "Number of distinct sub-networks (enumerated and observed) against 9."

    def checks(self) -> list[Check]:
        layer = [m for m in itertools.product((0, 1), repeat=3) if sum(m) == 2]
        enumerated = len(list(itertools.product(layer, layer)))
        torch.manual_seed(0)
        drop = Dropout(1 / 3).train()
        masks = (drop(torch.ones(20_000, 2, 3)) != 0).to(torch.int64)  # (S, layers, neurons)
        one_each = masks[(masks.sum(2) == 2).all(1)]
        observed = len({tuple(m.flatten().tolist()) for m in one_each})
        return [
            Check("enumerated sub-networks", enumerated, 9),
            Check("distinct sub-networks drawn by Dropout", observed, 9),
            Check("all masks of 6 neurons", 2**6, 64),
        ]


@register
class InvertedDropoutExpectation(ExactExperiment):
    name = "inverted_dropout_expectation"
    section = "10.4"
    title = "Inverted dropout matches classic dropout"
    claim = (
        "Inverted dropout (scale survivors by 1/(1 - p) in training) has the same "
        "expectation as classic dropout (scale by 1 - p at test time)."
    )
    runs = (
        "cnnlab.nn.dropout.Dropout(p = 0.5) in training mode over 40,000 draws of a "
        "10-value input, against its eval output; classic dropout from the same masks."
    )
    measurement = "Monte-Carlo means against the eval outputs (tolerance 0.03, about 4 s.e.)."

    def checks(self) -> list[Check]:
        torch.manual_seed(1)
        x = torch.linspace(1.0, 2.0, 10)
        drop = Dropout(0.5)
        train_out = drop.train()(x.expand(40_000, 10))
        eval_out = drop.eval()(x)
        kept = (train_out != 0).float()
        classic_train_mean = (kept * x).mean(0)  # no scaling in training ...
        return [
            Check("eval output = input", bool(torch.equal(eval_out, x)), True),
            Check(
                "max |E[inverted] - eval|",
                (train_out.mean(0) - eval_out).abs().max().item(),
                0.0,
                0.03,
            ),
            Check(
                "max |E[classic] - (1 - p) x|",
                (classic_train_mean - 0.5 * x).abs().max().item(),
                0.0,
                0.03,
            ),  # ... and x (1 - p) at test time
        ]


BOOK_V = [0.0066, 0.0004, 0.0085, 0.0093, 0.0068, 0.0076, 0.0074, 0.0039, 0.0066, 0.0017]
BOOK_V_PRINTED = [0.3190, 0.0174, 0.4131, 0.4544, 0.3302, 0.3687, 0.3616, 0.1908, 0.3189, 0.0833]
DERIVED_V = [0.3209, 0.0195, 0.4133, 0.4522, 0.3307, 0.3696, 0.3599, 0.1897, 0.3209, 0.0827]


@register
class L2NormStretches(ExactExperiment):
    name = "l2_normalisation_stretches"
    section = "11.2.3"
    title = "l2 normalisation stretches small values"
    claim = "Normalising v to unit l2 norm 'stretches' its small values (the book's example)."
    runs = "F.normalize on the book's 10-value vector v."
    measurement = (
        "v/||v|| against the recomputed values (Part D.1: the printed v' differs "
        "slightly, a rounding artefact of the book) and the stretch factor."
    )

    def checks(self) -> list[Check]:
        v = torch.tensor(BOOK_V, dtype=torch.float64)
        out = F.normalize(v, dim=0)
        printed = torch.tensor(BOOK_V_PRINTED, dtype=torch.float64)
        return [
            Check("v / ||v|| (recomputed values)", out.tolist(), DERIVED_V, 5e-5),
            Check("||v||", round(v.norm().item(), 5), 0.02056, 5e-6),
            Check("stretch factor > 40", (out / v).min().item() > 40, True),
            Check(
                "printed v' within 0.003 of v / ||v||",
                (out - printed).abs().max().item() < 3e-3,
                True,
            ),
        ]


@register
class BnRecoversInput(ExactExperiment):
    name = "bn_recovers_input"
    section = "11.2.3"
    title = "BN can undo itself"
    claim = "Batch normalisation recovers its input when gamma = sigma_B and beta = mu_B."
    runs = (
        "nn.BatchNorm1d / BatchNorm2d (the layers cnnlab's models use) in training mode, "
        "gamma = sqrt(var_B + eps) and beta = mu_B set from the batch."
    )
    measurement = "Largest |BN(x) - x| (float64)."

    def checks(self) -> list[Check]:
        out = []
        for dims, shape in ((1, (64, 5)), (2, (8, 3, 4, 4))):
            x = 3 * torch.randn(*shape, generator=_gen(), dtype=torch.float64) + 1.5
            bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(shape[1]).double().train()
            red = (0,) if dims == 1 else (0, 2, 3)
            mu, var = x.mean(red), x.var(red, unbiased=False)
            with torch.no_grad():
                bn.weight.copy_((var + bn.eps).sqrt())
                bn.bias.copy_(mu)
                diff = (bn(x) - x).abs().max().item()
            out.append(Check(f"BatchNorm{dims}d max |BN(x) - x|", diff, 0.0, 1e-10))
        return out


@register
class AdamFirstStep(ExactExperiment):
    name = "adam_first_step"
    section = "11.2.4"
    title = "Adam's first step is about eta"
    claim = "Adam's bias correction keeps the step bounded: the first step has size about eta."
    runs = (
        "cnnlab's adam optimiser (eta = 1e-3, book defaults) for one step on parameters "
        "with gradients of size 1e-6, 1, 1e6."
    )
    measurement = (
        "|w_1 - w_0| / eta for each gradient size (within 2%: eps = 1e-8 matters at 1e-6)."
    )

    def checks(self) -> list[Check]:
        steps = []
        for g in (1e-6, 1.0, 1e6):
            w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
            opt = OPTIMIZERS.build("adam", params=[w], lr=1e-3, weight_decay=0.0)
            w.grad = torch.tensor([g, -g, 3 * g], dtype=torch.float64)
            opt.step()
            steps.append((w.detach().abs() / 1e-3).tolist())
        return [
            Check(f"gradient {g:g}: |step| / eta", s, [1.0, 1.0, 1.0], 0.02)
            for g, s in zip((1e-6, 1.0, 1e6), steps, strict=True)
        ]


@register
class ImbalanceToy(ExactExperiment):
    name = "imbalance_accuracy_toy"
    section = "12"
    title = "99% accuracy from a useless classifier"
    claim = (
        "On a 99:1 training set an all-positive classifier scores 99% training accuracy, "
        "and 1% on a reversed (1:99) test set."
    )
    runs = "cnnlab.evaluation.metrics on the predictions of a constant 'positive' classifier."
    measurement = "Accuracy and balanced accuracy on both sets."

    def checks(self) -> list[Check]:
        def scores(pos: int, neg: int) -> tuple[float, float]:
            y = torch.tensor([1] * pos + [0] * neg)
            cm = confusion_matrix(torch.ones_like(y), y, 2)
            return int(cm.diag().sum()) / int(cm.sum()), balanced_accuracy(cm)

        (tr_acc, tr_bal), (te_acc, te_bal) = scores(99, 1), scores(1, 99)
        return [
            Check("training accuracy", tr_acc, 0.99, 1e-12),
            Check("reversed test accuracy", te_acc, 0.01, 1e-12),
            Check("balanced accuracy (both)", [tr_bal, te_bal], [0.5, 0.5], 1e-12),
        ]


@register
class LabelShufflingCounts(ExactExperiment):
    name = "label_shuffling_counts"
    section = "12.1.2"
    title = "Label shuffling balances the epoch"
    claim = "Label shuffling gives every class the same number of entries per epoch."
    runs = (
        "cnnlab's class_balanced sampler (label shuffling) on class counts 30, 7, 12, 3 for "
        "three epochs."
    )
    measurement = "Entries per class per epoch (all n_max = 30); every sample drawn at least once."

    def checks(self) -> list[Check]:
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate((30, 7, 12, 3))])
        sampler = build_sampler("class_balanced", labels, seed=0)
        out = []
        for epoch in range(3):
            idx = sampler(epoch)
            out.append(
                Check(
                    f"epoch {epoch}: entries per class",
                    torch.bincount(labels[idx]).tolist(),
                    [30] * 4,
                )
            )
            out.append(
                Check(
                    f"epoch {epoch}: every sample appears",
                    int(torch.unique(idx).numel()),
                    labels.numel(),
                )
            )
        return out


@register
class CostMatrices(ExactExperiment):
    name = "cost_matrices"
    section = "12.2.2"
    title = "The book's cost matrices"
    claim = (
        "Class ratios 3:2:1 give the cost matrix of eq. 12.2 (x 6: eq. 12.3); the book's "
        "confusion matrix gives eqs. 12.4 and 12.5."
    )
    runs = (
        "cnnlab.data.imbalance.cost_matrix_from_counts and cost_matrix_from_confusion "
        "(error rates rounded to whole percents, as the book does)."
    )
    measurement = (
        "Matrices against the printed ones; eq. 12.5 rounds to nearest, except entry "
        "(a, b), which the book truncates (36.76 -> 36, the rounding quirk)."
    )

    def checks(self) -> list[Check]:
        cm = [[4, 1, 3], [2, 3, 4], [3, 2, 21]]
        r125 = cost_matrix_from_confusion(cm, rate_decimals=0, rounding="nearest")
        raw = cost_matrix_from_confusion(cm, rate_decimals=0)
        quirk = r125.clone()
        quirk[0, 1] = math.floor(raw[0, 1].item())
        return [
            Check(
                "eq. 12.2",
                cost_matrix_from_counts([3, 2, 1]).tolist(),
                [[0, 2 / 3, 1 / 3], [1.5, 0, 0.5], [3, 2, 0]],
                1e-12,
            ),
            Check(
                "eq. 12.3",
                cost_matrix_from_counts([3, 2, 1], scale_to_int=True).tolist(),
                [[0, 4, 2], [9, 0, 3], [18, 12, 0]],
            ),
            Check(
                "eq. 12.4",
                cost_matrix_from_confusion(cm, mode="counts").tolist(),
                [[0, 1, 3], [2, 0, 4], [3, 2, 0]],
            ),
            Check(
                "eq. 12.5 (entry (a, b) truncated)",
                quirk.tolist(),
                [[0, 36, 110], [99, 0, 197], [42, 28, 0]],
            ),
        ]


@register
class CosineRestartValues(ExactExperiment):
    name = "cosine_restarts_values"
    section = "13.2.1"
    title = "Cyclic cosine annealing (eq. 13.1)"
    claim = (
        "The snapshot-ensemble schedule restarts every ceil(T/M) iterations and decays "
        "from eta_0 towards 0 within each cycle."
    )
    runs = (
        "cnnlab's cosine_restarts schedule through build_scheduler (eta_0 = 0.1, T = 300, "
        "M = 6) driving an SGD optimiser; the rate used at iteration t is recorded."
    )
    measurement = (
        "eta(t) at t = 1, 2, 25, 50, 51 against eq. 13.1: 0.1, 0.0999, 0.0531, 9.9e-5, 0.1."
    )

    def checks(self) -> list[Check]:
        w = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([w], lr=0.1)
        sched = build_scheduler(
            opt,
            ScheduleConfig("cosine_restarts", params={"cycles": 6}),
            total_steps=300,
            steps_per_epoch=50,
        )
        lrs = []
        for _ in range(300):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()

        def eq131(t: int) -> float:
            return 0.05 * (math.cos(math.pi * ((t - 1) % 50) / 50) + 1)

        ts = (1, 2, 25, 50, 51, 101, 300)
        return [
            Check(
                "eta(t) at t = " + ", ".join(map(str, ts)),
                [lrs[t - 1] for t in ts],
                [eq131(t) for t in ts],
                1e-12,
            ),
            Check(
                "book's rounded values",
                [round(lrs[1], 5), round(lrs[24], 4), float(f"{lrs[49]:.2g}")],
                [0.0999, 0.0531, 9.9e-5],
            ),
            Check(
                "restarts (eta = 0.1) at t",
                [t + 1 for t, v in enumerate(lrs) if abs(v - 0.1) < 1e-12],
                [1, 51, 101, 151, 201, 251],
            ),
        ]


@register
class VotingRules(ExactExperiment):
    name = "voting_rules"
    section = "13.2.2"
    title = "Majority and plurality voting"
    claim = (
        "Majority voting refuses to answer when no class has more than half of the votes; "
        "plurality voting always answers."
    )
    runs = "cnnlab.ensembles.majority and plurality on three members' crafted log-probabilities."
    measurement = "Answers for votes (A, B, C), (A, A, B), (A, B, B, A) against the rules."

    def checks(self) -> list[Check]:
        def logp(votes: list[int]) -> torch.Tensor:
            p = torch.full((len(votes), 1, 3), 0.1)
            for i, v in enumerate(votes):
                p[i, 0, v] = 0.8
            return p.log()  # (members, 1 sample, 3 classes)

        return [
            Check("votes A, B, C: majority abstains", majority(logp([0, 1, 2])).item(), ABSTAIN),
            Check("votes A, B, C: plurality answers", plurality(logp([0, 1, 2])).item() >= 0, True),
            Check(
                "votes A, A, B: both answer A",
                [majority(logp([0, 0, 1])).item(), plurality(logp([0, 0, 1])).item()],
                [0, 0],
            ),
            Check(
                "votes A, B, B, A (tie, 2 of 4): majority abstains",
                majority(logp([0, 1, 1, 0])).item(),
                ABSTAIN,
            ),
        ]


@register
class MatrixNorms(ExactExperiment):
    name = "matrix_norms"
    section = "A.2"
    title = "The appendix's matrix example"
    claim = (
        "For the example matrix A, A_{4,2} = 16; its column, row and Frobenius norms are "
        "39, 26 and sqrt(683); vec(A) stacks the columns."
    )
    runs = "torch.linalg.matrix_norm on the 4 x 3 example; vec as column-major flattening."
    measurement = "Values against 16, 39, 26, sqrt(683) = 26.13, the spectral norm 24.84 (derived)."

    def checks(self) -> list[Check]:
        a = torch.tensor([[8.0, 9, 1], [3, 10, 3], [5, 4, 8], [7, 16, 3]], dtype=torch.float64)
        norm = torch.linalg.matrix_norm
        return [
            Check("A_{4,2} (1-based)", a[3, 1].item(), 16),
            Check("column norm ||A||_1", norm(a, ord=1).item(), 39, 1e-12),
            Check("row norm ||A||_inf", norm(a, ord=math.inf).item(), 26, 1e-12),
            Check("Frobenius norm", norm(a).item(), math.sqrt(683), 1e-12),
            Check("spectral norm", round(norm(a, ord=2).item(), 2), 24.84),
            Check(
                "vec(A), column-major",
                a.t().reshape(-1).tolist(),
                [8, 3, 5, 7, 9, 10, 4, 16, 1, 3, 8, 3],
            ),
        ]


@register
class GradientDescentMonotone(ExactExperiment):
    name = "gradient_descent_monotone"
    section = "B"
    title = "Gradient descent decreases f"
    claim = "Gradient descent with a small enough step gamma decreases f monotonically."
    runs = (
        "cnnlab's sgd optimiser on f(x) = x^T Q x / 2 with Q = diag(1, 10), 100 steps from "
        "(3, 2), with gamma = 0.05 (< 2/10) and gamma = 0.25 (too large)."
    )
    measurement = "Whether f(x_0) >= f(x_1) >= ... holds; the final f for both steps."

    def checks(self) -> list[Check]:
        q = torch.tensor([1.0, 10.0], dtype=torch.float64)

        def run(gamma: float) -> list[float]:
            x = nn.Parameter(torch.tensor([3.0, 2.0], dtype=torch.float64))
            opt = OPTIMIZERS.build("sgd", params=[x], lr=gamma, weight_decay=0.0)
            fs = []
            for _ in range(100):
                f = 0.5 * (q * x * x).sum()
                fs.append(f.item())
                opt.zero_grad()
                f.backward()
                opt.step()
            return fs

        small, large = run(0.05), run(0.25)
        mono = lambda fs: all(b <= a for a, b in itertools.pairwise(fs))  # noqa: E731
        return [
            Check("gamma = 0.05: monotone decrease", mono(small), True),
            Check("gamma = 0.05: f after 100 steps < 1e-2", small[-1] < 1e-2, True),
            Check("gamma = 0.25 (> 2/L): not monotone", mono(large), False),
        ]


@register
class ChainRuleExample(ExactExperiment):
    name = "chain_rule_example"
    section = "C"
    title = "The chain-rule example"
    claim = "d/dx (a + bx)^2 = 2b^2 x + 2ab."
    runs = (
        "torch autograd, the analytic formula and a central difference at 5 points (a=1.5, b=-2)."
    )
    measurement = "Largest differences between the three derivatives."

    def checks(self) -> list[Check]:
        a, b = 1.5, -2.0
        x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
        ((a + b * x) ** 2).sum().backward()
        xd = x.detach()
        analytic = 2 * b * b * xd + 2 * a * b
        h = 1e-6
        numeric = (((a + b * (xd + h)) ** 2) - ((a + b * (xd - h)) ** 2)) / (2 * h)
        return [
            Check("max |autograd - analytic|", (x.grad - analytic).abs().max().item(), 0.0, 1e-12),
            Check("max |numeric - analytic|", (numeric - analytic).abs().max().item(), 0.0, 1e-6),
        ]
