"""Models: save_pretrained -> load_model gives identical scores; inference APIs; pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.losses.full_softmax import full_softmax_loss
from recsys.models import load_model
from recsys.models.bi_encoder import BiEncoder
from recsys.models.cross_encoder import CrossEncoder
from recsys.models.pooling import pool
from recsys.models.sequential import SequentialRecommender

TEXTS = ["wireless gaming mouse", "ps4 controller dualshock black", ""]
PAIRS = [("ps4 controller", "DualShock 4 wireless controller"), ("mouse", "usb cable 2m")]


def test_pooling_by_hand():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # last token is padding
    m = torch.tensor([[1, 1, 0]])
    assert pool(h, m, "mean").tolist() == [[2.0, 3.0]]
    assert pool(h, m, "cls").tolist() == [[1.0, 2.0]]
    assert pool(h, m, "max").tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize("shared", [True, False])
def test_bi_encoder_roundtrip(tiny_bert_dir, tmp_path, shared):
    model = BiEncoder.from_encoder(str(tiny_bert_dir), shared=shared, projection_dim=16)
    q, v = model.encode(TEXTS, batch_size=2), model.encode(TEXTS, tower="item")
    assert q.shape == (3, 16) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, BiEncoder) and (loaded.item_encoder is None) == shared
    np.testing.assert_allclose(loaded.encode(TEXTS, tower="query"), q, atol=1e-6)
    np.testing.assert_allclose(loaded.encode(TEXTS, tower="item"), v, atol=1e-6)
    # batch order does not change results (length-sorted batching restores input order)
    np.testing.assert_allclose(loaded.encode(TEXTS[::-1], batch_size=1), q[::-1], atol=1e-5)


def test_cross_encoder_roundtrip(tiny_bert_dir, tmp_path):
    model = CrossEncoder.from_encoder(str(tiny_bert_dir))
    s = model.score(PAIRS)
    assert s.shape == (2,)
    model.save_pretrained(tmp_path / "c")
    loaded = load_model(tmp_path / "c")
    np.testing.assert_allclose(loaded.score(PAIRS), s, atol=1e-6)
    np.testing.assert_allclose(loaded.score(PAIRS, activation="sigmoid"), 1 / (1 + np.exp(-s)), atol=1e-6)
    with pytest.raises(ValueError, match="not 'bi_encoder'|bi_encoder"):
        BiEncoder.from_pretrained(tmp_path / "c")


def test_sequential_scores_and_roundtrip(tmp_path):
    torch.manual_seed(0)
    items = [f"i{i}" for i in range(12)]
    model = SequentialRecommender(
        items,
        hidden_size=16,
        max_len=5,
        text_dim=4,
        text_embeddings=np.random.rand(12, 4),
        user_features={"country": ["DE", "UK"]},
    )
    hist = [["i1", "i2", "unknown"], ["i3"]]
    feats = [{"country": "DE"}, {"country": "FR"}]  # FR: the unknown-value embedding
    cand = model.score(hist, candidates=[["i4", "i5", "zz"], ["i1", "i2", "i3"]], user_features=feats)
    assert cand.shape == (2, 3) and np.isneginf(cand[0, 2]) and np.isfinite(cand[1]).all()
    full = model.score(hist, user_features=feats)
    assert full.shape == (2, 12)
    np.testing.assert_allclose(full[0, [4, 5]], cand[0, :2], atol=1e-5)  # same numbers either way
    top = model.recommend(["i1", "i2"], k=3, user_features={"country": "UK"})
    assert len(top) == 3 and not {"i1", "i2"} & {i for i, _ in top}
    model.save_pretrained(tmp_path / "s")
    loaded = load_model(tmp_path / "s")
    np.testing.assert_allclose(loaded.score(hist, user_features=feats), full, atol=1e-5)
    assert loaded.item_ids == items and loaded.user_features == {"country": ["DE", "UK"]}


def test_sequential_pure_id_mode_is_causal():
    torch.manual_seed(0)
    model = SequentialRecommender([f"i{i}" for i in range(8)], hidden_size=8, num_heads=2, max_len=4).eval()
    x = torch.tensor([[0, 1, 2, 3]])
    y = torch.tensor([[0, 1, 2, 7]])  # only the last item differs
    hx, hy = model(x), model(y)
    torch.testing.assert_close(hx[:, :3], hy[:, :3])  # earlier positions cannot see the future
    assert not torch.allclose(hx[:, 3], hy[:, 3])


def test_sequential_trimmed_padding_changes_nothing():
    """Dropping the all-padding columns of a left-padded batch (what training, validation and
    ``score`` do) gives the same hidden states and the same loss as the full window."""
    from recsys.kinds.sequential import SequentialTask

    torch.manual_seed(0)
    model = SequentialRecommender(
        [f"i{i}" for i in range(9)], hidden_size=8, num_heads=2, max_len=6, user_features={"country": ["DE"]}
    ).eval()
    full = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 4, 5]])
    assert model.trim_padding(full) == 3 and model.trim_padding(full, keep_last=4) == 1
    assert model.trim_padding(torch.zeros(2, 6, dtype=torch.long)) == 5  # one column always stays
    user = torch.tensor([[1], [0]])
    torch.testing.assert_close(model(full, user)[:, 3:], model(full[:, 3:], user))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 7, dtype=torch.long))
    window = torch.tensor([[0, 0, 0, 1, 2, 3, 6], [0, 0, 0, 0, 4, 5, 7]])  # [B, max_len + 1]
    task = SequentialTask(model, "full_softmax").eval()
    inputs, targets = window[:, :-1], window[:, 1:].masked_fill(window[:, :-1] == 0, 0)
    untrimmed = full_softmax_loss(model(inputs, user).float(), model.all_item_repr().float(), targets)
    torch.testing.assert_close(task({"items": window, "user": user}), untrimmed)


def test_load_model_rejects_other_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        load_model(tmp_path)
