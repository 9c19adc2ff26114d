"""Exact checks of Handbook chapters 4, 8 and 9 (Part D.1): storage of quantised and binary
weights, the XNOR scale, distillation temperature, activation identities and loss identities."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from cnnlab.compression.binary_layers import xnor_alpha
from cnnlab.compression.encoding import codebook_bits, decode_binary, encode_binary
from cnnlab.compression.packing import bits_for, pack_bits
from cnnlab.compression.quantization import kmeans_1d
from cnnlab.engine.tasks import build_task
from cnnlab.experiments.base import Check, ExactExperiment, register
from cnnlab.losses import LOSSES, gaussian_label_distribution, tukey_biweight
from cnnlab.losses.regression import TUKEY_C
from cnnlab.models import create_model
from cnnlab.nn import make_activation

GEN_SEED = 0


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(GEN_SEED)


@register
class KmeansStorage(ExactExperiment):
    name = "kmeans_storage"
    section = "4.3"
    title = "Storage of k-means weight sharing"
    claim = (
        "Scalar k-means quantisation stores log2(k)/32 of the float32 weights (ignoring "
        "the codebook); k = 4 needs 2-bit indices."
    )
    runs = (
        "cnnlab.compression.encoding.codebook_bits and packing.pack_bits for n = 10,000 "
        "weights and k = 2, 4, 16, 256; quantization.kmeans_1d with k = 4 on random weights."
    )
    measurement = "Index bits / (32 n) against log2(k)/32; distinct values after k-means."

    def checks(self) -> list[Check]:
        n = 10_000
        out = [
            Check(
                f"k={k}: index bits / float32 bits",
                (codebook_bits(n, k) - 32 * k) / (32 * n),
                math.log2(k) / 32,
            )
            for k in (2, 4, 16, 256)
        ]
        w = torch.randn(n, generator=_gen())
        centroids, codes = kmeans_1d(w, 4)
        packed = pack_bits(codes, bits_for(4))
        out += [
            Check("k = 4: bits per index", bits_for(4), 2),
            Check("k = 4: packed bytes", packed.numel(), n * 2 // 8),
            Check(
                "k = 4: distinct values after sharing",
                int(torch.unique(centroids[codes]).numel()),
                4,
            ),
        ]
        return out


@register
class BinaryStorage(ExactExperiment):
    name = "binary_storage"
    section = "4.4"
    title = "Binary weights take 1/32"
    claim = "Binary (+1/-1) weights cut storage to 1/32 of float32."
    runs = "cnnlab.compression.encoding.encode_binary on sign(W) for W of 64 x 1,000 weights."
    measurement = "Packed bytes / float32 bytes; the decoded weights equal sign(W)."

    def checks(self) -> list[Check]:
        w = torch.randn(64, 1000, generator=_gen())
        b = torch.where(w >= 0, 1.0, -1.0)
        tensors, meta = encode_binary("w", b)
        packed = sum(t.numel() * t.element_size() for t in tensors.values())
        back = decode_binary("w", tensors, meta)
        return [
            Check("packed / float32 bytes", packed / (w.numel() * 4), 1 / 32),
            Check("decoded = sign(W)", bool(torch.equal(back, b)), True),
        ]


@register
class XnorScale(ExactExperiment):
    name = "xnor_scale"
    section = "4.4"
    title = "The XNOR-Net scale alpha"
    claim = "With B = sign(W), alpha = ||W||_1 / n minimises ||W - alpha B||^2."
    runs = (
        "cnnlab.compression.binary_layers.xnor_alpha on a random (8, 3, 3, 3) filter bank "
        "against a dense grid search of alpha per filter."
    )
    measurement = "Largest |alpha_closed - alpha_grid| (grid step 1e-4) and the objective gap."

    def checks(self) -> list[Check]:
        w = torch.randn(8, 3, 3, 3, generator=_gen(), dtype=torch.float64)
        b = torch.sign(w)
        closed = xnor_alpha(w).flatten()
        grid = torch.arange(0.0, 2.0, 1e-4, dtype=torch.float64)  # (G,)
        # (G, F): objective of every candidate alpha for every filter
        err = ((w[None] - grid[:, None, None, None, None] * b[None]) ** 2).flatten(2).sum(2)
        best = grid[err.argmin(0)]
        obj = lambda a: ((w - a.view(-1, 1, 1, 1) * b) ** 2).flatten(1).sum(1)  # noqa: E731
        return [
            Check("max |alpha - grid argmin|", (closed - best).abs().max().item(), 0.0, 1e-4),
            Check(
                "closed form is never worse than the grid",
                bool((obj(closed) <= obj(best) + 1e-12).all()),
                True,
            ),
        ]


@register
class TemperatureSmooths(ExactExperiment):
    name = "temperature_smooths"
    section = "4.5"
    title = "Higher temperature, smoother soft labels"
    claim = "A higher distillation temperature T makes the soft labels softmax(z/T) smoother."
    runs = "Entropy of softmax(z/T) for 5 random logit vectors and T = 1, 2, 4, 8, 20."
    measurement = "Entropies must increase strictly with T for every vector."

    def checks(self) -> list[Check]:
        z = 3 * torch.randn(5, 10, generator=_gen(), dtype=torch.float64)
        temps = (1, 2, 4, 8, 20)
        ent = [(-(F.softmax(z / t, 1) * F.log_softmax(z / t, 1)).sum(1)) for t in temps]
        rising = all(bool((b > a).all()) for a, b in itertools.pairwise(ent))
        return [
            Check("entropy increases with T (all vectors)", rising, True),
            Check(
                "mean entropy at T = 1, 20",
                [
                    round(float(ent[0].mean()), 3) < math.log(10),
                    float(ent[-1].mean()) < math.log(10),
                ],
                [True, True],
            ),
        ]


@register
class TanhSigmoidIdentity(ExactExperiment):
    name = "tanh_sigmoid_identity"
    section = "8.2"
    title = "tanh is a rescaled sigmoid"
    claim = "tanh(x) = 2 sigmoid(2x) - 1."
    runs = "cnnlab's registered tanh and sigmoid activations on 2,001 points in [-10, 10]."
    measurement = "Largest |tanh(x) - (2 sigmoid(2x) - 1)| in float64."

    def checks(self) -> list[Check]:
        x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
        diff = make_activation("tanh")(x) - (2 * make_activation("sigmoid")(2 * x) - 1)
        return [Check("max |difference|", diff.abs().max().item(), 0.0, 1e-12)]


@register
class ReluIsLeakyZero(ExactExperiment):
    name = "relu_is_leaky_zero"
    section = "8.3, 8.4"
    title = "ReLU is Leaky ReLU with alpha = 0"
    claim = "ReLU is the special case alpha = 0 of Leaky ReLU."
    runs = "cnnlab's relu and leaky_relu(negative_slope=0) activations on 10,000 random values."
    measurement = "Outputs must be identical; with alpha = 0.01 they must differ for x < 0."

    def checks(self) -> list[Check]:
        x = torch.randn(10_000, generator=_gen())
        relu, leaky0 = make_activation("relu"), make_activation("leaky_relu", negative_slope=0.0)
        leaky = make_activation("leaky_relu", negative_slope=0.01)
        return [
            Check("relu == leaky_relu(0)", bool(torch.equal(relu(x), leaky0(x))), True),
            Check(
                "leaky_relu(0.01) differs for x < 0", bool((leaky(x) != relu(x))[x < 0].all()), True
            ),
        ]


@register
class RreluTestSlope(ExactExperiment):
    name = "rrelu_test_slope"
    section = "8.6"
    title = "RReLU's test-time slope"
    claim = "At test time RReLU uses the fixed slope (l + u)/2."
    runs = "cnnlab's rrelu activation (l = 1/8, u = 1/3 and l = 0.1, u = 0.5) in eval mode."
    measurement = "Output / input for negative inputs against (l + u)/2; training slopes in [l, u]."

    def checks(self) -> list[Check]:
        out = []
        x = -torch.rand(1000, generator=_gen(), dtype=torch.float64) - 0.1
        for lo, hi in ((1 / 8, 1 / 3), (0.1, 0.5)):
            act = make_activation("rrelu", lower=lo, upper=hi)
            act.eval()
            slope = act(x) / x
            out.append(
                Check(
                    f"eval slope (min, max), l={lo:.3g}, u={hi:.3g}",
                    [slope.min().item(), slope.max().item()],
                    [(lo + hi) / 2] * 2,
                    1e-12,
                )
            )
            act.train()
            s = act(x) / x
            out.append(
                Check(
                    f"train slopes within [l, u], l={lo:.3g}",
                    bool(((s >= lo - 1e-9) & (s <= hi + 1e-9)).all()),
                    True,
                )
            )
        return out


@register
class LSoftmaxM1(ExactExperiment):
    name = "lsoftmax_m1_is_softmax"
    section = "9.1.4"
    title = "L-Softmax with m = 1 is softmax"
    claim = "The large-margin softmax loss with m = 1 reduces to the ordinary softmax loss."
    runs = (
        "cnnlab's l_softmax loss task (m = 1 and m = 2) on the zoo's softmax-regression "
        "model and a random batch, against F.cross_entropy of the model's logits."
    )
    measurement = "|L-Softmax(m = 1) - CE|, which must vanish; m = 2 must give a larger loss."

    def checks(self) -> list[Check]:
        torch.manual_seed(GEN_SEED)
        model = create_model("softmax", num_classes=5, in_chans=1, input_size=6).double()
        x = torch.randn(16, 1, 6, 6, dtype=torch.float64)
        y = torch.randint(0, 5, (16,))
        ce = F.cross_entropy(model(x), y).item()
        l1 = build_task("l_softmax", num_classes=5, m=1).training_step(model, x, y)[0].item()
        l2 = build_task("l_softmax", num_classes=5, m=2).training_step(model, x, y)[0].item()
        return [
            Check("|L-Softmax(m=1) - CE|", abs(l1 - ce), 0.0, 1e-6),
            Check("L-Softmax(m=2) > CE", l2 > ce, True),
        ]


@register
class RampTruncatedHinge(ExactExperiment):
    name = "ramp_truncated_hinge"
    section = "9.1.3"
    title = "Ramp loss is a truncated hinge"
    claim = (
        "The ramp loss is the hinge loss truncated at s, so its value is capped at 1 - s; "
        "the recommended s = -1/(C - 1) is -0.5 for C = 3."
    )
    runs = (
        "cnnlab's ramp and multiclass_hinge losses (book form, z = h_y) for C = 3 on single "
        "samples with h_y from -3 to 3."
    )
    measurement = "Ramp = hinge - max(0, s - z) at every point; the cap 1 - s; the default s."

    def checks(self) -> list[Check]:
        ramp = LOSSES.build("ramp", num_classes=3, form="book")
        hinge = LOSSES.build("multiclass_hinge", num_classes=3, form="book")
        zs = torch.linspace(-3, 3, 61, dtype=torch.float64)
        y = torch.zeros(1, dtype=torch.long)
        r, h = [], []
        for z in zs:
            logits = torch.tensor([[float(z), 0.0, 0.0]], dtype=torch.float64)
            r.append(ramp(logits, y).item())
            h.append(hinge(logits, y).item())
        want = [hv - max(0.0, ramp.s - float(z)) for hv, z in zip(h, zs, strict=True)]
        return [
            Check("default s for C = 3", ramp.s, -0.5, 1e-12),
            Check("ramp = hinge - max(0, s - z)", r, want, 1e-12),
            Check("largest ramp value = 1 - s", max(r), 1 - ramp.s, 1e-12),
            Check("hinge keeps growing (at z = -3)", h[0], 4.0, 1e-12),
        ]


@register
class TukeyConstant(ExactExperiment):
    name = "tukey_constant_beyond_c"
    section = "9.2.3"
    title = "Tukey's biweight is flat beyond c"
    claim = "Tukey's biweight loss is constant (c^2/6) for residuals beyond c; c = 4.6851."
    runs = "cnnlab.losses.tukey_biweight on residuals in [-20, 20]; its autograd gradient."
    measurement = "Values beyond c against c^2/6, gradients there (zero), and the default c."

    def checks(self) -> list[Check]:
        c = TUKEY_C
        r = torch.linspace(-20, 20, 4001, dtype=torch.float64, requires_grad=True)
        rho = tukey_biweight(r, c)
        rho.sum().backward()
        beyond = r.detach().abs() > c
        return [
            Check("default c", c, 4.6851),
            Check(
                "max |rho - c^2/6| beyond c",
                (rho.detach()[beyond] - c * c / 6).abs().max().item(),
                0.0,
                1e-12,
            ),
            Check("max |gradient| beyond c", r.grad[beyond].abs().max().item(), 0.0),
            Check(
                "rho(0) = 0, rho increases inside",
                [rho[2000].item(), bool((rho.detach()[2001 : 2000 + 234].diff() > 0).all())],
                [0.0, True],
                1e-12,
            ),
        ]


@register
class KlEqualsSoftCe(ExactExperiment):
    name = "kl_equals_soft_ce"
    section = "9.3"
    title = "KL loss = soft cross-entropy - const"
    claim = (
        "The KL label-distribution loss equals the soft-target cross-entropy up to a "
        "constant: the target distribution's entropy."
    )
    runs = (
        "cnnlab's kl_label_distribution loss (Gaussian targets, sigma = 1, C = 8) on random "
        "logits, one sample at a time."
    )
    measurement = "soft CE - KL against H(q_y) for every sample."

    def checks(self) -> list[Check]:
        kl = LOSSES.build("kl_label_distribution", num_classes=8, sigma=1.0)
        h = torch.randn(6, 8, generator=_gen(), dtype=torch.float64)
        y = torch.arange(6)
        q = gaussian_label_distribution(8, 1.0).double()[y]  # (6, 8)
        diffs, ents = [], []
        for i in range(6):
            soft_ce = -(q[i] * F.log_softmax(h[i : i + 1], 1)[0]).sum().item()
            diffs.append(soft_ce - kl(h[i : i + 1], y[i : i + 1]).item())
            ents.append(-(q[i] * q[i].log()).sum().item())
        return [Check("soft CE - KL = H(q) per sample", diffs, ents, 1e-5)]
