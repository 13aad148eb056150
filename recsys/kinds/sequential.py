"""Model kind ``sequential``: a SASRec-style next-item recommender over users' item histories.

Trains on **sequences** (``user_id, items`` time-ordered, + user-feature columns) or **events** grouped
per user, encoded as left-padded windows ``items`` [B, max_len+1] (+ ``user`` [B, F]); validates by
ranking each held-out item among all items; evaluates with the model's own item vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from recsys.config.base import StrictModel
from recsys.data.io import head
from recsys.kinds import data as D
from recsys.kinds.base import KindData, ModelKind, RankingScores, register
from recsys.losses import registry as losses
from recsys.losses.registry import LossParams, NextItem, Pairwise
from recsys.models.bi_encoder import BiEncoder
from recsys.models.sequential import SequentialRecommender, trim_padding
from recsys.utils.items import ItemIndex, gather_scores
from recsys.utils.log import get_logger

METRICS = ("mrr", "recall@10", "hit_rate@10", "ndcg@10", "recall@20", "hit_rate@20", "ndcg@20")
log = get_logger("recsys.train")


class SequentialOptions(StrictModel):
    """Options of the SASRec-style sequential recommender."""

    hidden_size: int = Field(64, ge=8, description="Transformer width.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks.")
    num_heads: int = Field(2, ge=1, description="Attention heads (divide hidden_size).")
    max_len: int = Field(50, ge=2, description="History positions used (the most recent items).")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout of embeddings and blocks.")
    use_id_embeddings: bool = Field(
        True, description="Learn an embedding per item id (false = text-only, cold-start items)."
    )
    use_text: bool = Field(
        False, description="Add item-text embeddings precomputed by model.name_or_path (needs data.items)."
    )
    text_trainable: bool = Field(
        False, description="Fine-tune the precomputed text embedding table (false = frozen)."
    )
    text_batch_size: int = Field(128, ge=1, description="Batch size when precomputing item-text embeddings.")
    user_features: list[str] = Field(
        default_factory=list,
        description="Columns of the sequences table used as user-feature tokens (country, segment, price_band).",
    )
    num_negatives: int = Field(
        256, ge=1, description="Sampled negatives per batch (loss: sampled_softmax / bpr)."
    )

    @model_validator(mode="after")
    def _check(self) -> SequentialOptions:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; change one"
            )
        if not self.use_id_embeddings and not self.use_text:
            raise ValueError(
                "set use_id_embeddings: true or use_text: true (the model needs item representations)"
            )
        return self


@dataclass(frozen=True)
class SequentialInputs:
    """Built on the driver, handed to every worker: the item vocabulary (index = position + 1), each
    user feature's values, and the item-text embeddings [num_items, D] in the object store (or None)."""

    item_ids: tuple[str, ...]
    user_features: Mapping[str, list[str]] = field(default_factory=dict)
    text_embeddings_ref: Any = None


def build_model(model_cfg: Any, inputs: SequentialInputs | None) -> nn.Module:
    if inputs is None or not inputs.item_ids:
        raise ValueError("the sequential model needs item_ids (built from the training sequences)")
    text = None
    if inputs.text_embeddings_ref is not None:
        import ray  # lazy: only workers of a use_text run fetch the table from the object store

        text = ray.get(inputs.text_embeddings_ref)
    o = model_cfg.sequential
    return SequentialRecommender(
        list(inputs.item_ids),
        hidden_size=o.hidden_size,
        num_layers=o.num_layers,
        num_heads=o.num_heads,
        max_len=o.max_len,
        dropout=o.dropout,
        use_id_embeddings=o.use_id_embeddings,
        text_dim=0 if text is None else int(text.shape[1]),
        text_trainable=o.text_trainable,
        text_embeddings=text,
        user_features={k: list(v) for k, v in inputs.user_features.items()},
    )


class SequentialTask(nn.Module):
    """Batch: ``items`` [B, L+1] left-padded indices (+ ``user`` [B, F]); valid: ``history``, ``target``."""

    prefixes = ()

    def __init__(
        self,
        model: nn.Module,
        loss: str = "full_softmax",
        params: LossParams | None = None,
        num_negatives: int = 256,
        exclude_history: bool = True,
    ):
        super().__init__()
        self.model: Any = model  # duck-typed: the kind's model (or a test stub) with the methods used here
        self.loss = losses.get(loss)
        self.params = params if params is not None else self.loss.params()
        self.num_negatives, self.exclude_history = num_negatives, exclude_history

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]  # [B, L+1]
        items = items[:, trim_padding(items, keep_last=1) :]  # [B, L'+1]: no all-padding columns
        inputs, targets = items[:, :-1], items[:, 1:]  # [B, L'], [B, L']
        targets = targets.masked_fill(inputs == 0, 0)  # no prediction from a padded position
        hidden = self.model(inputs, batch.get("user")).float()  # [B, L, H]
        n = self.model.num_items
        if self.loss.inputs is NextItem:
            return self.loss.compute(
                NextItem(
                    hidden, targets, self.model.all_item_repr, self.model.item_repr, n, self.num_negatives
                ),
                self.params,
            )
        # pairwise: one random negative per position. The shared draw of num_negatives ids comes first
        # (unused here) so that the random stream, and so earlier runs, stay as they were
        torch.randint(1, n + 1, (self.num_negatives,), device=items.device)
        pos_repr = self.model.item_repr(targets).float()  # [B, L, H]
        valid = targets != 0
        neg_one = torch.randint(1, n + 1, targets.shape, device=items.device)  # [B, L]
        pos_s = (hidden * pos_repr).sum(-1)[valid]
        neg_s = (hidden * self.model.item_repr(neg_one).float()).sum(-1)[valid]
        return self.loss.compute(Pairwise(pos_s, neg_s), self.params)

    def validation_scores(self, batches: Iterable[dict[str, torch.Tensor]]) -> RankingScores:
        """Full ranking of the held-out item among all items, as the evaluate job's full-ranking
        protocol: the items of the user's history (the model's input window) are not ranked unless
        one is the target (``exclude_history``); ties rank the target last. Scored batch by batch."""
        return RankingScores(self._blocks(batches), METRICS)

    @torch.no_grad()
    def _blocks(self, batches: Iterable[dict[str, torch.Tensor]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        table = self.model.all_item_repr().float()  # [V+1, H]
        for b in batches:
            hist = b["history"][:, trim_padding(b["history"]) :]  # [B, L'] no all-padding columns
            h = self.model(hist, b.get("user"))[:, -1].float()  # [B, H]
            s = h @ table.T  # [B, V+1]
            target = b["target"].view(-1, 1)  # [B, 1]
            drop = torch.zeros_like(s, dtype=torch.bool)
            drop[:, 0] = True  # padding index
            if self.exclude_history:
                drop.scatter_(1, b["history"], True).scatter_(1, target, False)
            yield s.masked_fill(drop, float("-inf")).cpu().numpy(), target.cpu().numpy()


def build_task(model: nn.Module, loss: str, params: LossParams, model_cfg: Any) -> SequentialTask:
    return SequentialTask(model, loss, params, model_cfg.sequential.num_negatives)


def _text_embeddings(cfg: Any, item_ids: list[str]) -> np.ndarray:
    """Item titles encoded once by the pretrained encoder (model.name_or_path) -> [num_items, D]."""
    texts = D.item_texts(D.read_table(cfg.data.items, "items"), item_ids)
    missing = sum(1 for t in texts if not t)
    if missing:
        log.info(
            "%d of %d items have no text (their text embedding is the empty string's)", missing, len(texts)
        )
    encoder = BiEncoder.from_encoder(cfg.model.name_or_path, max_length=cfg.model.max_length)
    return encoder.encode(texts, batch_size=cfg.model.sequential.text_batch_size, tower="item")


def prepare(cfg: Any) -> KindData:
    """Sequences (or events grouped per user) -> vocabulary -> training windows and validation targets."""
    import ray  # lazy: driver-side data preparation runs on Ray Data

    d, o = cfg.data, cfg.model.sequential
    feats = list(o.user_features)
    seqs = D.load_sequences(d.train, feats, d.max_train_rows).materialize()
    extra_items = None
    if o.use_text:
        extra_items = [
            str(i) for i in D.read_table(d.items, "items").unique("item_id")
        ]  # cold items get text
    vocab = D.build_vocab(seqs, feats, extra_items)
    holdout = 0 if d.valid is not None else d.holdout_last
    kw = {
        "item_index": vocab.item_index(),
        "max_len": o.max_len,
        "feature_index": {
            c: {v: i + 1 for i, v in enumerate(vals)} for c, vals in vocab.user_features.items()
        },
    }
    train = seqs.map_batches(
        D.encode_sequences, batch_format="pandas", fn_kwargs={**kw, "holdout": holdout, "mode": "train"}
    )
    valid_src = D.load_sequences(d.valid, feats, None) if d.valid is not None else seqs
    valid = valid_src.map_batches(
        D.encode_sequences, batch_format="pandas", fn_kwargs={**kw, "holdout": holdout, "mode": "valid"}
    )
    if d.max_valid_rows:
        valid = head(valid, d.max_valid_rows)
    train = train.randomize_block_order(seed=cfg.seed)
    train, valid = (train.materialize() if d.cache else train), valid.materialize()
    text_ref = ray.put(_text_embeddings(cfg, vocab.item_ids)) if o.use_text else None
    inputs = SequentialInputs(tuple(vocab.item_ids), vocab.user_features, text_ref)
    counts = {"train_rows": train.count(), "valid_rows": valid.count(), "items": len(vocab.item_ids)}
    return KindData({"train": train, "valid": valid}, counts, inputs)


def check(cfg: Any) -> None:
    if cfg.model.sequential.use_text and cfg.data.items is None:
        raise ValueError("model.sequential.use_text needs data.items (a table with item_id, title)")


class SequentialModelScorer:
    """Next-item scores from the user's history (the model's own item vocabulary)."""

    def __init__(self, model: Any, batch_size: int = 256):
        self.model, self.batch_size = model, batch_size
        self._index = ItemIndex(model.item_ids)

    def score(self, batch: Any, item_ids: np.ndarray) -> np.ndarray:
        if item_ids.shape[0] == 1 and len(batch) != 1:  # full ranking: one pass over the vocabulary
            table = np.asarray(
                self.model.score(batch.histories, batch_size=self.batch_size), dtype=np.float64
            )  # (B, V)
            return gather_scores(table, self._index.lookup(item_ids), fill=-np.inf)
        cands = [[str(i) if i is not None else "\x00" for i in row] for row in item_ids]
        return np.asarray(
            self.model.score(batch.histories, candidates=cands, batch_size=self.batch_size), dtype=np.float64
        )


def scorer(
    model: Any,
    *,
    item_texts: dict[str, str] | None = None,
    catalog: np.ndarray | None = None,
    history_len: int = 10,
) -> SequentialModelScorer:
    return SequentialModelScorer(model)


KIND = register(
    ModelKind(
        name="sequential",
        options=SequentialOptions,
        default_loss="full_softmax",
        default_metric="ndcg@10",
        table="sequences",
        build_model=build_model,
        build_task=build_task,
        prepare=prepare,
        scorer=scorer,
        check=check,
        prepare_keys=(
            "model.sequential.max_len",
            "model.sequential.user_features",
            "model.sequential.use_text",
            "model.sequential.text_batch_size",
        ),
        text=False,
        loss_inputs=(NextItem, Pairwise),
        summary="SASRec-style next-item model over item histories",
    )
)
