"""Model kind ``cross_encoder``: (query, item) text pair -> relevance score; re-ranking and matching.

Trains on **pairs** (``left``, ``right``, ``label`` 0/1 or graded in [0, 1]) tokenized together into
``input_ids`` / ``attention_mask`` [/ ``token_type_ids``]; validates as pair classification at the
loss's fixed threshold; evaluates as a re-ranker of candidates.

Distillation (the train config's ``distil`` section): the training pairs get a ``teacher_score`` column
(the teacher cross-encoder's logit, scored offline in the Ray Data pipeline) for the ``Distillation``
losses (``distil_mse``, ``margin_mse``), and ``distil.student_layers`` builds the student from a subset
of the teacher's layers (``recsys.models.distil``) instead of from ``model.name_or_path``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recsys.config.base import StrictModel
from recsys.kinds import data as D
from recsys.kinds.base import KindData, ModelKind, PairScores, register
from recsys.kinds.text import finish_encoders, query_texts, require_texts
from recsys.losses import registry as losses
from recsys.losses.registry import Distillation, LossParams, Pairwise, Pointwise
from recsys.models.base import MODEL_FILE
from recsys.models.cross_encoder import CrossEncoder

if TYPE_CHECKING:
    from ray.data import Dataset


class CrossEncoderOptions(StrictModel):
    """Options of the cross-encoder (query + item -> relevance)."""

    pooling: Literal["mean", "cls", "max"] = Field("cls", description="Pooling of the pair's token states.")
    num_labels: int = Field(1, ge=1, description="Head outputs: 1 = binary/graded score.")
    head_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the head.")


@dataclass(frozen=True)
class StudentInputs:
    """What the workers need to build a distillation student: the teacher directory and the layers kept."""

    teacher: str
    layers: tuple[int, ...]


def build_model(model_cfg: Any, inputs: Any = None) -> nn.Module:
    if isinstance(inputs, StudentInputs):  # distil.student_layers: the teacher's layers, embeddings, head
        from recsys.models.distil import load_teacher, student_model  # lazy: transformers

        return finish_encoders(student_model(load_teacher(inputs.teacher), inputs.layers).train(), model_cfg)
    if (Path(model_cfg.name_or_path) / MODEL_FILE).is_file():  # a saved cross-encoder (e.g. pruned): go on
        return finish_encoders(_saved_cross_encoder(model_cfg.name_or_path).train(), model_cfg)
    o = model_cfg.cross_encoder
    model = CrossEncoder.from_encoder(
        model_cfg.name_or_path,
        num_labels=o.num_labels,
        pooling=o.pooling,
        dropout=o.head_dropout,
        max_length=model_cfg.max_length,
    )
    return finish_encoders(model, model_cfg)


def _saved_cross_encoder(path: str) -> CrossEncoder:
    """model.name_or_path a saved recsys model directory: that cross-encoder, head and all (its own
    architecture options win over model.cross_encoder)."""
    from recsys.models import load_model

    model = load_model(path)
    if not isinstance(model, CrossEncoder):
        raise ValueError(
            f"model.name_or_path {path!r} holds a {getattr(model, 'model_type', '?')!r} model; model.kind "
            "cross_encoder continues only a saved cross_encoder: point it at one, or at a Hugging Face encoder"
        )
    return model


class CrossEncoderTask(nn.Module):
    """Batch: ``input_ids``, ``attention_mask``[, ``token_type_ids``], ``label`` (0/1 or graded in [0, 1])."""

    prefixes = ("",)

    def __init__(self, model: nn.Module, loss: str = "bce", params: LossParams | None = None):
        super().__init__()
        self.model: Any = model  # duck-typed: the kind's model (or a test stub) with the methods used here
        self.loss = losses.get(loss)
        self.params = params if params is not None else self.loss.params()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits: torch.Tensor = self.model(D.text_inputs(batch, "")).float()  # [B]
        label = batch["label"].float()  # [B]
        if self.loss.inputs is Distillation:
            return self.loss.compute(Distillation(logits, batch["teacher_score"].float(), label), self.params)
        if self.loss.inputs is Pointwise:
            return self.loss.compute(Pointwise(logits, label), self.params)
        pos, neg = (
            logits[label > 0],
            logits[label <= 0],
        )  # pairwise: every positive vs every negative of the batch
        if pos.numel() == 0 or neg.numel() == 0:
            return logits.sum() * 0.0
        pos, neg = (
            pos.unsqueeze(1).expand(-1, neg.numel()),
            neg.unsqueeze(0).expand(pos.numel(), -1),
        )  # [P, N]
        return self.loss.compute(Pairwise(pos, neg), self.params)

    @property
    def threshold(self) -> float:
        """Fixed decision threshold on the model's output, declared by the loss: logit 0 (probability
        0.5) for bce; 0.5 for mse, which regresses the label itself."""
        return self.loss.threshold

    @torch.no_grad()
    def validation_scores(self, batches: Iterable[dict[str, torch.Tensor]]) -> PairScores:
        """Pair classification (labels > 0.5 match) at the fixed ``threshold``."""
        logits, labels = [], []
        for b in batches:
            b = D.trim_batch(b, self.prefixes)
            logits.append(self.model(D.text_inputs(b, "")).float().cpu().numpy().reshape(-1))
            labels.append(b["label"].float().cpu().numpy().reshape(-1))
        if not logits:
            return PairScores(np.zeros(0), np.zeros(0), self.threshold)
        y = np.concatenate(labels)
        return PairScores(np.concatenate(logits), y, self.threshold, {"valid_size": float(len(y))})


def build_task(model: nn.Module, loss: str, params: LossParams, model_cfg: Any) -> CrossEncoderTask:
    return CrossEncoderTask(model, loss, params)


def prepare(cfg: Any) -> KindData:
    """Pairs tokenized together (``tokenize_cross``); a grouped loss gets each query's rows as one list;
    with ``distil.teacher`` the training pairs carry the teacher's ``teacher_score``."""
    spec = losses.get(cfg.loss_name)
    distil = cfg.distil

    def rows(train: Dataset, valid: Dataset) -> tuple[Dataset, Dataset]:
        if spec.group_size is not None:
            train = D.listwise_groups(train, getattr(cfg.loss, spec.group_size), cfg.seed)
        if distil.teacher is not None and distil.mined_per_query:
            train = D.with_mined_pairs(train, distil.mined_per_query)
        if distil.teacher is not None:
            train = D.with_teacher_scores(train, str(distil.teacher), distil.score_batch_size)
        return train, valid

    data = D.pairs_data(cfg, rows, D.tokenize_cross, grouped=spec.group_size is not None)
    if distil.student_layers is not None and distil.teacher is not None:
        return replace(data, model_inputs=StudentInputs(str(distil.teacher), tuple(distil.student_layers)))
    return data


class CrossEncoderScorer:
    """A re-ranker: scores (query text, item text) pairs, so use it with candidate protocols (sampled /
    file) or small catalogs."""

    def __init__(
        self,
        model: Any,
        item_texts: dict[str, str],
        *,
        history_len: int = 10,
        batch_size: int = 64,
        max_cells: int = 200_000,
    ):
        self.model, self.texts, self.history_len = model, item_texts, history_len
        self.batch_size, self.max_cells = batch_size, max_cells

    def score(self, batch: Any, item_ids: np.ndarray) -> np.ndarray:
        grid = np.broadcast_to(item_ids, (len(batch), item_ids.shape[1]))
        if grid.size > self.max_cells:
            raise ValueError(
                f"a cross-encoder would score {grid.size} (query, item) pairs in one batch; use it on a "
                "candidate protocol (protocol.candidates: sampled or file) or as a re-ranker in an ensemble"
            )
        queries = query_texts(batch, self.texts, self.history_len)
        pairs = [
            (queries[b], self.texts.get(i, "")) for b in range(len(batch)) for i in grid[b] if i is not None
        ]
        flat = self.model.score(pairs, batch_size=self.batch_size) if pairs else np.zeros(0)
        out = np.full(grid.shape, -np.inf)
        out[~(grid == None)] = flat  # noqa: E711 - element-wise None test on an object array
        return out


def scorer(
    model: Any,
    *,
    item_texts: dict[str, str] | None = None,
    catalog: np.ndarray | None = None,
    history_len: int = 10,
) -> CrossEncoderScorer:
    return CrossEncoderScorer(model, require_texts("cross_encoder", item_texts), history_len=history_len)


def pair_scorer(model: Any, batch_size: int = 64) -> Any:
    """Matching: the model's score of each (left, right) pair."""
    return lambda lefts, rights: model.score(list(zip(lefts, rights)), batch_size=batch_size)


KIND = register(
    ModelKind(
        name="cross_encoder",
        options=CrossEncoderOptions,
        default_loss="bce",
        default_metric="f1",
        table="pairs",
        build_model=build_model,
        build_task=build_task,
        prepare=prepare,
        scorer=scorer,
        pair_scorer=pair_scorer,
        loss_inputs=(Pointwise, Pairwise, Distillation),
        distil=True,
        summary="one encoder over the (query, item) pair -> score; re-ranking, matching",
    )
)
