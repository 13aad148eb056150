"""Fast checks without Ray: config validation messages, FGM/PGD, freezing, LoRA merge, data encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config.loader import ConfigError, load_config
from recsys.training.config import TrainConfig

BASE = {"model": {"kind": "cross_encoder", "name_or_path": "random-bert-tiny"},
        "data": {"train": {"path": "/tmp", "table": "pairs"}}}


def _cfg(**over):
    data = {**BASE, **over}
    return load_config(TrainConfig, None, data=data)


@pytest.mark.parametrize("over, fix", [
    ({"loss": {"name": "full_softmax"}}, "does not fit model.kind"),
    ({"strategy": {"name": "deepspeed"}, "adversarial": {"method": "pgd"}}, "pgd needs strategy.name: ddp"),
    ({"strategy": {"precision": "fp16"}}, "fp16 needs GPUs"),
    ({"loss": {"name": "listwise", "list_size": 3}, "train": {"batch_size": 8}}, "multiple of loss.list_size"),
    ({"data": {"train": {"path": "/tmp"}, "hard_negatives": True}}, "bi_encoder only"),
])
def test_config_errors_name_the_fix(over, fix):
    with pytest.raises(ConfigError, match=fix):
        _cfg(**over)


def test_sequential_text_needs_items_and_unknown_keys_are_reported():
    with pytest.raises(ConfigError, match="needs data.items"):
        load_config(TrainConfig, None, data={"model": {"kind": "sequential", "sequential": {"use_text": True}},
                                             "data": {"train": {"path": "/tmp"}}})
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        _cfg(train={"batchsize": 3})


def test_defaults_follow_the_kind():
    cfg = _cfg()
    assert (cfg.loss_name, cfg.metric_name) == ("bce", "f1")


def test_fgm_and_pgd_perturb_within_epsilon_and_restore():
    from recsys.training.adversarial import EmbeddingAttack

    emb = torch.nn.Module()
    emb.word_embeddings = torch.nn.Embedding(4, 3)
    before = emb.word_embeddings.weight.detach().clone()
    grad = [torch.ones(4, 3)]
    fgm = EmbeddingAttack(emb, "fgm", epsilon=0.5)
    fgm.run(grad, lambda: None)
    delta = emb.word_embeddings.weight.detach() - before
    assert torch.norm(delta).item() == pytest.approx(0.5, abs=1e-5)  # exactly epsilon along the gradient
    fgm.restore()
    torch.testing.assert_close(emb.word_embeddings.weight.detach(), before)
    pgd = EmbeddingAttack(emb, "pgd", epsilon=0.4, alpha=0.3, steps=3)
    pgd.run(grad, lambda: (emb.word_embeddings.weight ** 2).sum())
    assert torch.norm(emb.word_embeddings.weight.detach() - before).item() <= 0.4 + 1e-5  # projected to the ball
    pgd.restore()
    torch.testing.assert_close(emb.word_embeddings.weight.detach(), before)
    with pytest.raises(ValueError, match="emb_name"):
        EmbeddingAttack(emb, "fgm", emb_name="nope")


def test_freeze_layers_and_lora_merge(tiny_bert_dir, tmp_path):
    from recsys.models import load_model
    from recsys.models.bi_encoder import BiEncoder
    from recsys.models.builders import prepare_encoder
    from recsys.training.lora import apply_lora, has_lora, merged_copy

    model = BiEncoder.from_encoder(str(tiny_bert_dir))
    prepare_encoder(model.encoder, freeze_layers=1)
    frozen = {n for n, p in model.encoder.named_parameters() if not p.requires_grad}
    assert any(n.startswith("embeddings.") for n in frozen) and any(n.startswith("encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("encoder.layer.1.") for n in frozen) and any(n.startswith("pooler.") for n in frozen)
    apply_lora(model, r=2, alpha=4, dropout=0.0, target_modules=["query", "value"])
    assert has_lora(model)
    with torch.no_grad():  # make the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    texts = ["usb cable", "gaming mouse"]
    want = model.encode(texts)
    merged = merged_copy(model, tmp_path / "adapter")
    assert not has_lora(merged) and (tmp_path / "adapter" / "encoder" / "adapter_config.json").is_file()
    merged.save_pretrained(tmp_path / "m")
    np.testing.assert_allclose(load_model(tmp_path / "m").encode(texts), want, atol=1e-5)


def test_encode_sequences_windows_and_holdout():
    from recsys.training.data import encode_sequences

    batch = pd.DataFrame({"items": [["a", "b", "c", "d"], ["a"], ["x", "b", "c"]], "country": ["DE", "UK", "FR"]})
    index = {"a": 1, "b": 2, "c": 3, "d": 4}
    feats = {"country": {"DE": 1, "UK": 2}}
    train = encode_sequences(batch, index, feats, max_len=3, holdout=1, mode="train")
    # user 1: a b c (d held out) -> [0, 1, 2, 3]; user 2 too short; user 3: unknown x dropped -> b (c held out) too short
    assert train["items"].tolist() == [[0, 1, 2, 3]] and train["user"].tolist() == [[1]]
    valid = encode_sequences(batch, index, feats, max_len=3, holdout=1, mode="valid")
    assert valid["history"].tolist() == [[1, 2, 3], [0, 0, 2]] and valid["target"].tolist() == [4, 3]
    assert valid["user"].tolist() == [[1], [0]]  # FR is unknown -> 0
