"""Each loss against a value computed by hand on a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.losses.bce import bce_loss
from recsys.losses.bpr import bpr_loss
from recsys.losses.full_softmax import full_softmax_loss
from recsys.losses.graded import relevance_labels
from recsys.losses.infonce import infonce_loss
from recsys.losses.listwise import listwise_softmax_loss
from recsys.losses.margin import margin_loss
from recsys.losses.mse import mse_loss
from recsys.losses.sampled_softmax import sampled_softmax_loss

E = math.e
T = torch.tensor


def test_infonce_in_batch():
    eye = T([[1.0, 0.0], [0.0, 1.0]])
    # logits [[1, 0], [0, 1]]: each row -log(e / (e + 1))
    assert infonce_loss(eye, eye, temperature=1.0).item() == pytest.approx(math.log(1 + 1 / E), abs=1e-6)


def test_infonce_hard_negatives_and_temperature():
    q = p = T([[1.0, 0.0], [0.0, 1.0]])
    n = T([[0.0, 1.0], [1.0, 0.0]])
    # row 0 logits [1, 0, 0, 1] -> -log(e / (2e + 2)); same for row 1
    assert infonce_loss(q, p, n, temperature=1.0).item() == pytest.approx(math.log(2 + 2 / E), abs=1e-6)
    # temperature 0.5 doubles the logits: -log(e^2 / (e^2 + 1))
    assert infonce_loss(q, p, temperature=0.5).item() == pytest.approx(math.log(1 + E**-2), abs=1e-6)


def test_bce():
    # log(2) for (0, 1); log(1 + e^2) for (2, 0)
    assert bce_loss(T([0.0, 2.0]), T([1.0, 0.0])).item() == pytest.approx(
        (math.log(2) + math.log(1 + E**2)) / 2, abs=1e-6
    )
    # pos_weight 3 triples the positive term
    assert bce_loss(T([0.0]), T([1.0]), pos_weight=3.0).item() == pytest.approx(3 * math.log(2), abs=1e-6)


def test_mse():
    assert mse_loss(T([1.0, 2.0]), T([0.0, 4.0])).item() == pytest.approx(2.5)


def test_bpr_and_margin():
    assert bpr_loss(T([1.0]), T([0.0])).item() == pytest.approx(math.log(1 + 1 / E), abs=1e-6)
    # K negatives per positive: mean over [B, K]
    assert bpr_loss(T([1.0]), T([[0.0, 1.0]])).item() == pytest.approx(
        (math.log(1 + 1 / E) + math.log(2)) / 2, abs=1e-6
    )
    # max(0, .2 - .5 + .4) = .1 ; max(0, .2 - .1 + .5) = .6
    assert margin_loss(T([0.5, 0.1]), T([0.4, 0.5]), margin=0.2).item() == pytest.approx(0.35, abs=1e-6)


def test_listwise_softmax():
    target = [E / (E + 1), 1 / (E + 1)]  # softmax of labels [1, 0]
    got = listwise_softmax_loss(T([[math.log(3), 0.0]]), T([[1.0, 0.0]])).item()
    assert got == pytest.approx(-(target[0] * math.log(0.75) + target[1] * math.log(0.25)), abs=1e-6)
    # a padded slot is ignored: equals the 2-item list
    padded = listwise_softmax_loss(T([[math.log(3), 0.0, 9.0]]), T([[1.0, 0.0, 5.0]]), T([[1, 1, 0]]))
    assert padded.item() == pytest.approx(got, abs=1e-6)
    # a group with equal labels carries no signal -> skipped
    both = listwise_softmax_loss(T([[math.log(3), 0.0], [1.0, 2.0]]), T([[1.0, 0.0], [1.0, 1.0]]))
    assert both.item() == pytest.approx(got, abs=1e-6)


def test_full_softmax():
    hidden = T([[[1.0, 0.0], [0.0, 1.0]]])  # [1, 2, 2]
    table = T([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]])  # row 0 = padding, never predicted
    targets = torch.tensor([[1, 0]])  # second position ignored
    # logits of position 0 over items 1, 2: [1, 0]
    assert full_softmax_loss(hidden, table, targets).item() == pytest.approx(math.log(1 + 1 / E), abs=1e-6)


def test_sampled_softmax_and_accidental_hits():
    hidden = T([[[1.0, 0.0]]])
    pos = T([[[1.0, 0.0]]])
    neg = T([[0.0, 0.0]])
    targets = torch.tensor([[3]])
    assert sampled_softmax_loss(hidden, pos, neg, targets, torch.tensor([5])).item() == pytest.approx(
        math.log(1 + 1 / E), abs=1e-6
    )
    # the sampled negative is the target itself: masked out, loss ~ 0
    assert sampled_softmax_loss(hidden, pos, neg, targets, torch.tensor([3])).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_graded_relevance():
    assert relevance_labels(["view", "buy", "click", "cart"]).tolist() == [1.0, 4.0, 2.0, 3.0]
    assert relevance_labels(["view", "buy"], scale=True).tolist() == [0.25, 1.0]
    assert relevance_labels(["a"], gains={"a": 2.0, "b": 4.0}, scale=True).tolist() == [0.5]
    with pytest.raises(ValueError, match="relevance_gains"):
        relevance_labels(["teleport"])
