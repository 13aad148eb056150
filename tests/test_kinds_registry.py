"""The model-kind and loss registries: every kind provides every piece, every loss fits the kinds it
names, unknown names fail with the valid choices, and a new kind / loss is one self-registering module."""

from __future__ import annotations

import importlib.util
import inspect
import math

import numpy as np
import pytest
import torch

from recsys import kinds
from recsys.config.base import StrictModel
from recsys.config.loader import ConfigError, load_config
from recsys.kinds import base
from recsys.losses import registry as losses
from recsys.models import load_model
from recsys.models.base import SavableModel
from recsys.training.config import LossConfig, TrainConfig, TrainModelConfig

PIECES = ("build_model", "build_task", "prepare", "scorer", "check")


def _check_contract(kind: kinds.ModelKind) -> None:
    assert (
        issubclass(kind.options, StrictModel) and kind.options().model_dump() is not None
    )  # defaults suffice
    assert kind.default_loss in losses.for_kind(kind.name), kind.name
    assert isinstance(kind.default_metric, str) and kind.default_metric
    assert kind.table in ("pairs", "sequences")
    for piece in PIECES:
        assert callable(getattr(kind, piece)), (kind.name, piece)
    assert list(inspect.signature(kind.build_task).parameters) == ["model", "loss", "params", "model_cfg"]
    assert all(k.startswith(f"model.{kind.name}.") for k in kind.prepare_keys)
    for name in losses.for_kind(kind.name):  # the kind's task builds what each of its losses consumes
        assert losses.get(name).inputs in kind.loss_inputs, (kind.name, name)


def test_every_registered_kind_provides_every_piece():
    assert kinds.names() == ["bi_encoder", "cross_encoder", "sequential"]
    for kind in kinds.kinds():
        _check_contract(kind)
        assert kind.name in TrainModelConfig.model_fields  # its config section is composed into model.*
    assert {(k.name, k.default_loss, k.default_metric) for k in kinds.kinds()} == {
        ("bi_encoder", "infonce", "mrr"),
        ("cross_encoder", "bce", "f1"),
        ("sequential", "full_softmax", "ndcg@10"),
    }


def test_every_loss_is_declared_once_with_its_options():
    assert sorted(losses.names()) == [
        "bce",
        "bpr",
        "distil_mse",
        "dla",
        "full_softmax",
        "infonce",
        "ipw_listwise",
        "ipw_pairwise",
        "listwise",
        "margin",
        "margin_mse",
        "mse",
        "sampled_softmax",
    ]
    assert {k: losses.for_kind(k) for k in kinds.names()} == {
        "bi_encoder": ("bpr", "infonce", "margin"),
        "cross_encoder": ("bce", "bpr", "distil_mse", "listwise", "margin", "margin_mse", "mse"),
        "sequential": ("bpr", "full_softmax", "sampled_softmax"),
    }
    # the loss section is the union of the losses' options, with the defaults they declare
    assert LossConfig().model_dump() == {
        "name": None,
        "pos_weight": None,
        "temperature": 0.05,
        "list_size": 8,
        "margin": 0.2,
        "propensity_clip": 0.01,
    }
    for spec in losses.specs():
        assert set(spec.kinds) <= set(kinds.names()), spec.name


def test_unknown_kind_and_loss_name_the_field_and_the_choices():
    with pytest.raises(
        ValueError,
        match=r"model.kind 'mf' is not a model kind; choose from \['bi_encoder', "
        r"'cross_encoder', 'sequential'\]",
    ):
        kinds.get("mf")
    data = {"model": {"kind": "mf"}, "data": {"train": {"path": "/tmp"}}}
    with pytest.raises(
        ConfigError, match=r"model.kind.*choose from \['bi_encoder', 'cross_encoder', 'sequential'\]"
    ):
        load_config(TrainConfig, None, data=data, check_paths=False)
    data = {
        "model": {"kind": "cross_encoder"},
        "data": {"train": {"path": "/tmp"}},
        "loss": {"name": "focal"},
    }
    with pytest.raises(ConfigError, match=r"loss.name 'focal' is not a loss; choose from \['bce', 'bpr', "):
        load_config(TrainConfig, None, data=data, check_paths=False)
    data["loss"] = {"name": "infonce"}
    with pytest.raises(
        ConfigError,
        match=r"loss.name 'infonce' does not fit model.kind 'cross_encoder'; use one of "
        r"\('bce', 'bpr', 'distil_mse', 'listwise', 'margin', 'margin_mse', 'mse'\)",
    ):
        load_config(TrainConfig, None, data=data, check_paths=False)


TOY_MODULE = '''
"""A toy model kind (item-id embeddings, dot-product scores) and a toy loss, in one module."""
import numpy as np
import torch
from pydantic import Field
from torch import nn

from recsys.config.base import StrictModel
from recsys.kinds.base import KindData, ModelKind, RankingScores, register
from recsys.losses import registry as losses
from recsys.losses.registry import LossSpec, Pairwise, register as register_loss
from recsys.models.base import SavableModel


class ToyOptions(StrictModel):
    dim: int = Field(4, ge=1, description="Embedding width.")


class ToyModel(SavableModel):
    model_type = "toy"

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.n, self.dim = n, dim
        self.emb = nn.Embedding(n, dim)

    def config(self):
        return {"n": self.n, "dim": self.dim}

    @classmethod
    def _skeleton(cls, path, config):
        return cls(**config)


class ToyTask(nn.Module):
    prefixes = ()

    def __init__(self, model, loss, params):
        super().__init__()
        self.model, self.loss, self.params = model, losses.get(loss), params

    def forward(self, batch):
        u, p, n = (self.model.emb(batch[k]) for k in ("user", "pos", "neg"))
        return self.loss.compute(Pairwise((u * p).sum(-1), (u * n).sum(-1)), self.params)

    def validation_scores(self, batches):
        return RankingScores((), ("mrr",))


SPEC = register_loss(LossSpec(name="toy_softplus", kinds=("toy",), inputs=Pairwise,
                              compute=lambda x, p: torch.nn.functional.softplus(x.neg - x.pos).mean()))
KIND = register(ModelKind(
    name="toy", options=ToyOptions, default_loss="toy_softplus", default_metric="mrr", table="pairs",
    build_model=lambda model_cfg, inputs: ToyModel(3, 4),
    build_task=lambda model, loss, params, model_cfg: ToyTask(model, loss, params),
    prepare=lambda cfg: KindData({}, {"train_rows": 0, "valid_rows": 0}),
    scorer=lambda model, **kw: (lambda batch, item_ids: np.zeros(item_ids.shape)),
    loss_inputs=(Pairwise,), summary="toy",
))
'''


def test_a_new_kind_and_loss_register_from_one_module(tmp_path, monkeypatch):
    # the toy leaves the registries as they were
    monkeypatch.setattr(base.REGISTRY, "entries", dict(base.REGISTRY.entries))
    monkeypatch.setattr(losses.REGISTRY, "entries", dict(losses.REGISTRY.entries))
    monkeypatch.setattr(SavableModel, "registered", dict(SavableModel.registered))
    path = tmp_path / "toy_kind.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_kind", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    toy = kinds.get("toy")
    _check_contract(toy)
    assert "toy" in kinds.names() and losses.for_kind("toy") == ("toy_softplus",)
    cfg = load_config(
        TrainConfig,
        None,
        data={"model": {"kind": "toy"}, "data": {"train": {"path": "/tmp"}}},
        check_paths=False,
    )
    assert (cfg.loss_name, cfg.metric_name) == ("toy_softplus", "mrr")  # the kind's defaults
    torch.manual_seed(0)
    model = toy.build_model(cfg.model, None)
    task = toy.build_task(model, cfg.loss_name, losses.get(cfg.loss_name).params(), cfg.model)
    batch = {"user": torch.tensor([0]), "pos": torch.tensor([1]), "neg": torch.tensor([2])}
    u, p, n = model.emb.weight.detach()
    want = math.log1p(math.exp(float(u @ n - u @ p)))
    assert task(batch).item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ConfigError, match="does not fit model.kind 'cross_encoder'"):
        load_config(
            TrainConfig,
            None,
            check_paths=False,
            data={
                "model": {"kind": "cross_encoder"},
                "data": {"train": {"path": "/tmp"}},
                "loss": {"name": "toy_softplus"},
            },
        )
    assert toy.scorer(model)(None, np.zeros((2, 3))).shape == (2, 3)
    model.save_pretrained(tmp_path / "toy")  # its saved directory loads like any recsys model
    torch.testing.assert_close(load_model(tmp_path / "toy").emb.weight, model.emb.weight)


def test_kinds_pair_scorers(tiny_bert_dir):
    """``ModelKind.pair_scorer``: what matching asks a text kind for (the sequential kind does no matching)."""
    from recsys.models import BiEncoder, CrossEncoder

    lefts, rights = ["usb cable 2m", "ps4 pad"], ["usb-c cable", "dualshock 4 controller"]
    bi = BiEncoder.from_encoder(str(tiny_bert_dir), max_length=16, normalize=False)
    a, b = bi.encode(lefts, tower="query"), bi.encode(rights, tower="item")
    want = [
        float(a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i])) for i in range(2)
    ]  # cosine per pair
    np.testing.assert_allclose(kinds.get("bi_encoder").pair_scorer(bi)(lefts, rights), want, rtol=1e-5)
    ce = CrossEncoder.from_encoder(str(tiny_bert_dir), max_length=32)
    np.testing.assert_array_equal(
        kinds.get("cross_encoder").pair_scorer(ce)(lefts, rights), ce.score(list(zip(lefts, rights)))
    )
    assert kinds.get("sequential").pair_scorer is None
