"""Ensemble as an nn.Module: identities, evaluate(), weights, votes, loading from runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.engine.checkpoint import save_checkpoint
from cnnlab.ensembles import ABSTAIN, Ensemble, EnsembleError
from cnnlab.evaluation.evaluate import evaluate
from cnnlab.models.spec import build_model

SPEC = {"name": "cnn1", "params": {}, "num_classes": 4, "in_chans": 1, "input_size": 12}


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(SPEC).eval()


def batches(n_batches: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 1, 12, 12, generator=gen), torch.randint(0, 4, (8,), generator=gen))
        for _ in range(n_batches)
    ]


class Fixed(nn.Module):
    """A 'model' returning fixed logits for a batch of len(logits)."""

    def __init__(self, logits) -> None:
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[: x.shape[0]]


def test_ensemble_of_identical_models_equals_the_model():
    model = make_model(0)
    x, _ = batches()[0]
    for rule, w in (("mean", None), ("weighted", [0.2, 0.3, 0.5])):
        ens = Ensemble([copy.deepcopy(model) for _ in range(3)], rule=rule, weights=w).eval()
        with torch.no_grad():
            assert torch.allclose(ens(x), F.log_softmax(model(x), 1), atol=1e-6)
    ens = Ensemble([copy.deepcopy(model) for _ in range(3)]).eval()
    data = batches()
    a = evaluate(model, data, num_classes=4, keep_outputs=True)
    b = evaluate(ens, data, num_classes=4, keep_outputs=True)
    assert b.loss == pytest.approx(a.loss, abs=1e-6)
    assert b.accuracy == a.accuracy and torch.equal(b.confusion, a.confusion)
    assert torch.allclose(b.probs, a.probs, atol=1e-6)
    voters = Ensemble([copy.deepcopy(model) for _ in range(3)], rule="majority").eval()
    with torch.no_grad():
        assert torch.equal(voters.predict(x), model(x).argmax(1))


def test_evaluate_loss_is_the_ensembles_nll():
    members = [make_model(s) for s in range(3)]
    ens = Ensemble(members).eval()
    data = batches()
    with torch.no_grad():
        nll = torch.cat(
            [
                -torch.stack([F.softmax(m(x), 1) for m in members])
                .mean(0)
                .log()
                .gather(1, y[:, None])
                for x, y in data
            ]
        ).mean()
    assert evaluate(ens, data, num_classes=4).loss == pytest.approx(nll.item(), abs=1e-5)


def test_one_hot_weights_give_that_member():
    members = [make_model(s) for s in range(3)]
    x, _ = batches()[0]
    ens = Ensemble(members, rule="weighted", weights=[0, 1, 0]).eval()
    with torch.no_grad():
        assert torch.allclose(ens(x), F.log_softmax(members[1](x), 1), atol=1e-6)


def test_fit_weights_on_a_validation_loader():
    ens = Ensemble([make_model(s) for s in range(3)]).eval()
    w = ens.fit_weights(batches(seed=1))
    assert ens.rule == "weighted" and w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    w_acc = ens.fit_weights(batches(seed=1), method="accuracy")
    assert w_acc.sum().item() == pytest.approx(1.0)
    with pytest.raises(EnsembleError, match="'nll' or 'accuracy'"):
        ens.fit_weights(batches(), method="best")


def test_votes_and_abstentions():
    # 3 members, 2 samples: sample 0 votes 0,0,1; sample 1 votes 0,1,2 (no majority)
    members = [Fixed([[2, 0, 0], [2, 0, 0]]), Fixed([[2, 0, 0], [0, 2, 0]]),
               Fixed([[0, 2, 0], [0, 0, 2]])]  # fmt: skip
    ens = Ensemble(members, rule="majority")
    x = torch.zeros(2, 1, 4, 4)
    v = ens.votes(x)
    assert v.counts.tolist() == [[2, 1, 0], [1, 1, 1]]
    assert v.majority.tolist() == [0, ABSTAIN] and v.abstentions == 1
    assert v.plurality.tolist() == [0, 0]  # equal summed probabilities -> lowest index
    assert ens.predict(x).tolist() == [0, ABSTAIN]
    assert ens.with_rule("plurality").predict(x).tolist() == [0, 0]


def test_rules_are_checked():
    with pytest.raises(EnsembleError, match="at least one member"):
        Ensemble([])
    with pytest.raises(EnsembleError, match="needs weights"):
        Ensemble([make_model(0)], rule="weighted")
    with pytest.raises(EnsembleError, match="unknown combination rule"):
        Ensemble([make_model(0)], rule="vote")


def _save_run(path, model, spec=SPEC, mean=(0.2,), std=(0.5,), classes=("a", "b", "c", "d")):
    data = {"dataset": "synthetic", "classes": list(classes), "mean": list(mean), "std": list(std)}
    meta = {"model": spec, "data": data, "config": {"data": {"preprocess": []}}}
    save_checkpoint(path / "checkpoint.safetensors", model=model, meta=meta, rng=False)
    return path


def test_from_runs_averages_members_and_renormalises_inputs(tmp_path):
    m1, m2 = make_model(1), make_model(2)
    r1 = _save_run(tmp_path / "r1", m1)
    r2 = _save_run(tmp_path / "r2", m2, mean=(0.5,), std=(0.25,))
    ens = Ensemble.from_runs([r1, r2])
    assert ens.names == ["r1", "r2"]
    raw = torch.rand(5, 1, 12, 12)
    x = (raw - 0.2) / 0.5  # normalised like the first member's training split
    with torch.no_grad():
        p1 = F.softmax(m1(x), 1)
        p2 = F.softmax(m2((raw - 0.5) / 0.25), 1)  # what member 2 saw in training
        assert torch.allclose(ens(x).exp(), (p1 + p2) / 2, atol=1e-5)


def test_from_runs_refuses_incompatible_members(tmp_path):
    r1 = _save_run(tmp_path / "r1", make_model(1))
    spec3 = dict(SPEC, num_classes=3)
    torch.manual_seed(0)
    r2 = _save_run(tmp_path / "r2", build_model(spec3), spec=spec3, classes="abc")
    with pytest.raises(EnsembleError, match="num_classes is 3.*must share classes"):
        Ensemble.from_runs([r1, r2])
    r3 = _save_run(tmp_path / "r3", make_model(2), classes="abce")
    with pytest.raises(EnsembleError, match="classes"):
        Ensemble.from_runs([r1, r3])
    with pytest.raises(EnsembleError, match="no run directories"):
        Ensemble.from_runs([])
