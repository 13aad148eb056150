"""Model kind ``bi_encoder``: query/user tower <-> item tower, trained on pairs, scored by dot product.

Trains on **pairs** (``left`` query, ``right`` positive item[, mined ``negative``]), tokenized into
``q_*`` / ``p_*`` [/ ``n_*``] columns; validates as retrieval (each distinct validation query ranks every
distinct validation item); evaluates as a scorer of query texts or users' recent item titles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recsys.config.base import StrictModel
from recsys.kinds import data as D
from recsys.kinds.base import KindData, ModelKind, RankingScores, dot_blocks, register
from recsys.kinds.text import finish_encoders, query_texts, require_texts
from recsys.losses import registry as losses
from recsys.losses.registry import Contrastive, LossParams, Pairwise
from recsys.models.bi_encoder import BiEncoder
from recsys.utils.items import ItemIndex, gather_scores

if TYPE_CHECKING:
    from ray.data import Dataset

METRICS = ("mrr", "recall@1", "recall@10", "hit_rate@10", "ndcg@10")


class BiEncoderOptions(StrictModel):
    """Options of the bi-encoder (query/user tower <-> item tower)."""

    pooling: Literal["mean", "cls", "max"] = Field(
        "mean", description="Token pooling (mean for sentence-transformers models)."
    )
    projection_dim: int | None = Field(
        None, ge=8, description="Linear projection after pooling (None = encoder width)."
    )
    shared_towers: bool = Field(
        True, description="One encoder for queries and items; false = a separate item tower."
    )
    normalize: bool = Field(True, description="L2-normalize vectors (cosine similarity).")


def build_model(model_cfg: Any, inputs: Any = None) -> nn.Module:
    o = model_cfg.bi_encoder
    model = BiEncoder.from_encoder(
        model_cfg.name_or_path,
        shared=o.shared_towers,
        pooling=o.pooling,
        projection_dim=o.projection_dim,
        normalize=o.normalize,
        max_length=model_cfg.max_length,
    )
    return finish_encoders(model, model_cfg)


class BiEncoderTask(nn.Module):
    """Batch: ``q_*`` (query tokens), ``p_*`` (positive item tokens)[, ``n_*`` (hard negative)]."""

    prefixes = ("q_", "p_", "n_")

    def __init__(self, model: nn.Module, loss: str = "infonce", params: LossParams | None = None):
        super().__init__()
        self.model: Any = model  # duck-typed: the kind's model (or a test stub) with the methods used here
        self.loss = losses.get(loss)
        self.params = params if params is not None else self.loss.params()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.model.embed(D.text_inputs(batch, "q_"), "query")  # [B, D]
        p = self.model.embed(D.text_inputs(batch, "p_"), "item")  # [B, D]
        n = self.model.embed(D.text_inputs(batch, "n_"), "item") if "n_input_ids" in batch else None  # [B, D]
        if self.loss.inputs is Contrastive:
            return self.loss.compute(Contrastive(q, p, n), self.params)
        if n is None:
            raise ValueError(f"loss {self.loss.name} needs hard negatives: set data.hard_negatives: true")
        return self.loss.compute(
            Pairwise((q * p).sum(-1).float(), (q * n).sum(-1).float()), self.params
        )  # [B], [B]

    @torch.no_grad()
    def validation_scores(self, batches: Iterable[dict[str, torch.Tensor]]) -> RankingScores:
        """Retrieval as the evaluate job's retrieval protocol: each distinct validation query ranks every
        distinct validation item; its relevant items are all those it is paired with (rows with the same
        tokens are the same query / item, so duplicates are neither extra queries nor tied rivals)."""
        queries: dict[bytes, int] = {}
        items: dict[bytes, int] = {}
        q_vecs: list[np.ndarray] = []
        p_vecs: list[np.ndarray] = []
        targets: list[set[int]] = []
        rows = 0
        for b in batches:
            b = D.trim_batch(b, self.prefixes)
            q = self.model.embed(D.text_inputs(b, "q_"), "query").float().cpu().numpy()  # [B, D]
            p = self.model.embed(D.text_inputs(b, "p_"), "item").float().cpu().numpy()  # [B, D]
            for i, (qk, pk) in enumerate(zip(_row_keys(b, "q_"), _row_keys(b, "p_"), strict=True)):
                if qk not in queries:
                    queries[qk] = len(queries)
                    q_vecs.append(q[i])
                    targets.append(set())
                if pk not in items:
                    items[pk] = len(items)
                    p_vecs.append(p[i])
                targets[queries[qk]].add(items[pk])
            rows += len(q)
        if not rows:
            return RankingScores((), METRICS)
        width = max(len(t) for t in targets)
        cols = np.full((len(targets), width), -1, dtype=np.int64)  # [Q, T] relevant item rows, -1 = padding
        for i, t in enumerate(targets):
            cols[i, : len(t)] = sorted(t)
        return RankingScores(
            dot_blocks(np.stack(q_vecs), np.stack(p_vecs), cols),
            METRICS,
            {"valid_size": float(rows), "n_items": len(items)},
        )


def _row_keys(batch: dict[str, torch.Tensor], prefix: str) -> list[bytes]:
    """One hashable key per row: its real (unpadded) token ids."""
    ids = batch[f"{prefix}input_ids"].cpu().numpy()
    lens = batch[f"{prefix}attention_mask"].sum(1).cpu().numpy()
    return [ids[i, : lens[i]].tobytes() for i in range(len(ids))]


def build_task(model: nn.Module, loss: str, params: LossParams, model_cfg: Any) -> BiEncoderTask:
    return BiEncoderTask(model, loss, params)


def prepare(cfg: Any) -> KindData:
    """Pairs -> (query, positive[, mined negative]) rows, tokenized (``tokenize_bi``)."""
    d = cfg.data

    def rows(train: Dataset, valid: Dataset) -> tuple[Dataset, Dataset]:
        return D.bi_encoder_rows(train, d.hard_negatives, cfg.seed), D.bi_encoder_rows(valid, False, cfg.seed)

    return D.pairs_data(cfg, rows, D.tokenize_bi, grouped=False)


def check(cfg: Any) -> None:
    if losses.get(cfg.loss_name).inputs is Pairwise and not cfg.data.hard_negatives:
        raise ValueError(
            f"loss {cfg.loss_name} for the bi_encoder needs negatives: set data.hard_negatives: true"
        )


class BiEncoderScorer:
    """Cosine of query / item embeddings; the query is the query text (search, matching) or the user's
    recent item titles (recommendation). Item vectors are computed once."""

    def __init__(
        self,
        model: Any,
        item_texts: dict[str, str],
        catalog: np.ndarray,
        *,
        history_len: int = 10,
        batch_size: int = 128,
    ):
        self.model, self.texts, self.history_len, self.batch_size = model, item_texts, history_len, batch_size
        self._index = ItemIndex(catalog)
        self.item_vectors = model.encode(
            [item_texts.get(i, "") for i in self._index.item_ids], batch_size=batch_size, tower="item"
        )  # (N, D)

    def score(self, batch: Any, item_ids: np.ndarray) -> np.ndarray:
        q = self.model.encode(
            query_texts(batch, self.texts, self.history_len), batch_size=self.batch_size
        )  # (B, D)
        return gather_scores(q @ self.item_vectors.T, self._index.lookup(item_ids), fill=-np.inf)


def scorer(
    model: Any,
    *,
    item_texts: dict[str, str] | None = None,
    catalog: np.ndarray | None = None,
    history_len: int = 10,
) -> BiEncoderScorer:
    texts = require_texts("bi_encoder", item_texts)
    return BiEncoderScorer(
        model,
        texts,
        catalog if catalog is not None else np.array(list(texts), dtype=object),
        history_len=history_len,
    )


def pair_scorer(model: Any, batch_size: int = 64) -> Any:
    """Matching: cosine of the query-tower vector of each left text and the item-tower vector of its right."""

    def cosine(lefts: list[str], rights: list[str]) -> np.ndarray:
        a = model.encode(list(lefts), tower="query")
        b = model.encode(list(rights), tower="item")
        cos: np.ndarray = (a * b).sum(1) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
        )
        return cos

    return cosine


KIND = register(
    ModelKind(
        name="bi_encoder",
        options=BiEncoderOptions,
        default_loss="infonce",
        default_metric="mrr",
        table="pairs",
        build_model=build_model,
        build_task=build_task,
        prepare=prepare,
        scorer=scorer,
        check=check,
        pair_scorer=pair_scorer,
        hard_negatives=True,
        loss_inputs=(Contrastive, Pairwise),
        summary="two towers (query/user, item) -> vectors; retrieval",
    )
)
