"""Stacking with out-of-fold predictions: folds never see their own rows; no leakage."""

from __future__ import annotations

import pytest
import torch

from cnnlab.ensembles import EnsembleError, Stacker, fold_assignment


def noise_outputs(m: int, n: int, c: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(3 * torch.randn(m, n, c, generator=gen), dim=2)
    return logp, torch.randint(0, c, (n,), generator=gen)


def informative_outputs(m: int = 3, n: int = 150, c: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=gen)
    scores = torch.randn(m, n, c, generator=gen)
    scores[:, torch.arange(n), y] += 2.5
    return torch.log_softmax(scores, dim=2), y


def test_fold_assignment_is_a_stratified_partition():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 3)
    fold = fold_assignment(y, 3, seed=1)
    assert fold.shape == (20,) and set(fold.tolist()) == {0, 1, 2}
    for c in range(3):
        per_fold = torch.bincount(fold[y == c], minlength=3)
        assert int(per_fold.max() - per_fold.min()) <= 1
    with pytest.raises(EnsembleError, match="folds must be in"):
        fold_assignment(y, 1)


def test_no_meta_model_predicts_a_row_it_was_fitted_on(monkeypatch):
    logp, y = informative_outputs()
    seen: list[int] = []
    original = Stacker._fit_one

    def spy(self, x, yy, c):
        seen.append(x.shape[0])
        return original(self, x, yy, c)

    monkeypatch.setattr(Stacker, "_fit_one", spy)
    st = Stacker(folds=5, epochs=50).fit(logp, y)
    n = y.numel()
    held_all = torch.cat([held for _, held in st.fold_log])
    assert sorted(held_all.tolist()) == list(range(n))  # every row predicted exactly once
    for fit_rows, held in st.fold_log:
        assert not set(fit_rows.tolist()) & set(held.tolist())  # disjoint
        assert len(fit_rows) + len(held) == n
    assert seen == [len(f) for f, _ in st.fold_log] + [n]  # K fold models, then the final one


def test_leakage_out_of_fold_is_at_chance_while_in_sample_overfits():
    logp, y = noise_outputs(m=20, n=200, c=4)  # 80 pure-noise features
    st = Stacker(folds=5, l2=1e-6, epochs=100).fit(logp, y)
    oof = st.oof_scores(y)["oof_acc"]
    in_sample = (st.predict_log_proba(logp).argmax(1) == y).double().mean().item()
    assert oof < 0.40  # chance is 0.25
    assert in_sample > 0.70  # the same meta-model, scored on the rows it saw


def test_stacking_learns_from_informative_members():
    logp, y = informative_outputs()
    for meta in ("logistic", "mlp"):
        st = Stacker(meta=meta, folds=4, epochs=100).fit(logp, y)
        assert st.oof_scores(y)["oof_acc"] > 0.85
        test_logp, test_y = informative_outputs(seed=1)
        out = st.predict_log_proba(test_logp)
        assert torch.allclose(out.exp().sum(1), torch.ones(len(test_y)), atol=1e-5)
        assert (out.argmax(1) == test_y).double().mean() > 0.85


def test_bad_options_and_order():
    with pytest.raises(EnsembleError, match="stacking meta"):
        Stacker(meta="forest")
    with pytest.raises(EnsembleError, match="features"):
        Stacker(features="logits")
    with pytest.raises(EnsembleError, match="call fit"):
        Stacker().predict_log_proba(informative_outputs()[0])
