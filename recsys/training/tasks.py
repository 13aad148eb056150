"""Training modules: a model plus its loss in one ``forward(batch) -> loss``, so that DDP and
DeepSpeed wrap a single module, and ``evaluate(batches) -> metrics`` for in-loop validation.

``evaluate`` only turns the validation batches into scores; the metrics come from the Evaluation
code (``recsys.training.validation`` -> ``recsys.evaluation``), so a metric name means in a training
report what it means in the ``evaluate`` job's, and the dict carries ``primary_metric`` like the
evaluators'. A ranking task also computes its ``primary_metric`` when it is any ranking metric name
(``ndcg@20``, ``map@10``, ...), as ``RankingEvaluator`` does.

Batches come from ``recsys.training.data`` (already tokenized / indexed, as torch tensors).
Constructors take plain values (no config objects).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from recsys.losses.bce import bce_loss
from recsys.losses.bpr import bpr_loss
from recsys.losses.full_softmax import full_softmax_loss
from recsys.losses.infonce import infonce_loss
from recsys.losses.listwise import listwise_softmax_loss
from recsys.losses.margin import margin_loss
from recsys.losses.mse import mse_loss
from recsys.losses.sampled_softmax import sampled_softmax_loss
from recsys.models.sequential import trim_padding
from recsys.training.data import text_inputs, trim_batch
from recsys.training.validation import pair_metrics, ranking_summary, retrieval_metrics, with_primary

BI_ENCODER_METRICS = ("mrr", "recall@1", "recall@10", "hit_rate@10", "ndcg@10")
SEQUENTIAL_METRICS = ("mrr", "recall@10", "hit_rate@10", "ndcg@10", "recall@20", "hit_rate@20", "ndcg@20")


class BiEncoderTask(nn.Module):
    """Batch: ``q_*`` (query tokens), ``p_*`` (positive item tokens)[, ``n_*`` (hard negative)]."""

    prefixes = ("q_", "p_", "n_")

    def __init__(self, model: nn.Module, loss: str = "infonce", temperature: float = 0.05, margin: float = 0.2,
                 primary_metric: str = "mrr"):
        super().__init__()
        self.model, self.loss, self.temperature, self.margin = model, loss, temperature, margin
        self.primary_metric = primary_metric

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.model.embed(text_inputs(batch, "q_"), "query")  # [B, D]
        p = self.model.embed(text_inputs(batch, "p_"), "item")  # [B, D]
        n = self.model.embed(text_inputs(batch, "n_"), "item") if "n_input_ids" in batch else None  # [B, D]
        if self.loss == "infonce":
            return infonce_loss(q.float(), p.float(), None if n is None else n.float(), self.temperature)
        pos, neg = (q * p).sum(-1).float(), (q * n).sum(-1).float()  # [B], [B]
        return bpr_loss(pos, neg) if self.loss == "bpr" else margin_loss(pos, neg, self.margin)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Retrieval as the evaluate job's retrieval protocol: each distinct validation query ranks every
        distinct validation item; its relevant items are all those it is paired with (rows with the same
        tokens are the same query / item, so duplicates are neither extra queries nor tied rivals)."""
        queries: dict[bytes, int] = {}
        items: dict[bytes, int] = {}
        q_vecs, p_vecs, targets, rows = [], [], [], 0
        for b in batches:
            b = trim_batch(b, self.prefixes)
            q = self.model.embed(text_inputs(b, "q_"), "query").float().cpu().numpy()  # [B, D]
            p = self.model.embed(text_inputs(b, "p_"), "item").float().cpu().numpy()  # [B, D]
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
            return {}
        metrics = with_primary(BI_ENCODER_METRICS, self.primary_metric)
        out = retrieval_metrics(np.stack(q_vecs), np.stack(p_vecs), [sorted(t) for t in targets], metrics,
                                self.primary_metric)
        out.update(valid_size=float(rows), n_items=len(items))
        return out


def _row_keys(batch: dict[str, torch.Tensor], prefix: str) -> list[bytes]:
    """One hashable key per row: its real (unpadded) token ids."""
    ids = batch[f"{prefix}input_ids"].cpu().numpy()
    lens = batch[f"{prefix}attention_mask"].sum(1).cpu().numpy()
    return [ids[i, : lens[i]].tobytes() for i in range(len(ids))]


class CrossEncoderTask(nn.Module):
    """Batch: ``input_ids``, ``attention_mask``[, ``token_type_ids``], ``label`` (0/1 or graded in [0, 1])."""

    prefixes = ("",)

    def __init__(self, model: nn.Module, loss: str = "bce", pos_weight: float | None = None,
                 margin: float = 0.2, list_size: int = 8, primary_metric: str = "f1"):
        super().__init__()
        self.model, self.loss, self.pos_weight, self.margin, self.list_size = model, loss, pos_weight, margin, list_size
        self.primary_metric = primary_metric

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.model(text_inputs(batch, "")).float()  # [B]
        label = batch["label"].float()  # [B]
        if self.loss == "bce":
            return bce_loss(logits, label, self.pos_weight)
        if self.loss == "mse":
            return mse_loss(logits, label)
        if self.loss == "listwise":  # consecutive rows form lists of list_size (batch_size % list_size == 0)
            k = self.list_size
            g = logits.shape[0] // k
            return listwise_softmax_loss(logits[: g * k].view(g, k), label[: g * k].view(g, k))
        pos, neg = logits[label > 0], logits[label <= 0]  # every positive vs every negative of the batch
        if pos.numel() == 0 or neg.numel() == 0:
            return logits.sum() * 0.0
        pos, neg = pos.unsqueeze(1).expand(-1, neg.numel()), neg.unsqueeze(0).expand(pos.numel(), -1)
        return bpr_loss(pos, neg) if self.loss == "bpr" else margin_loss(pos, neg, self.margin)

    @property
    def threshold(self) -> float:
        """Fixed decision threshold on the model's output: probability 0.5, i.e. logit 0 (mse regresses
        the label itself, so 0.5 there)."""
        return 0.5 if self.loss == "mse" else 0.0

    @torch.no_grad()
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Pair classification (labels > 0.5 match) at the fixed ``threshold``: f1, precision, recall,
        accuracy, pr_auc, roc_auc; plus ``valid_f1`` at the best threshold on these pairs."""
        logits, labels = [], []
        for b in batches:
            b = trim_batch(b, self.prefixes)
            logits.append(self.model(text_inputs(b, "")).float().cpu().numpy().reshape(-1))
            labels.append(b["label"].float().cpu().numpy().reshape(-1))
        if not logits:
            return {}
        y = np.concatenate(labels)
        out = pair_metrics(np.concatenate(logits), y, self.threshold, self.primary_metric)
        out["valid_size"] = float(len(y))
        return out


class SequentialTask(nn.Module):
    """Batch: ``items`` [B, L+1] left-padded indices (+ ``user`` [B, F]); valid: ``history``, ``target``."""

    prefixes = ()

    def __init__(self, model: nn.Module, loss: str = "full_softmax", num_negatives: int = 256,
                 primary_metric: str = "ndcg@10", exclude_history: bool = True):
        super().__init__()
        self.model, self.loss, self.num_negatives = model, loss, num_negatives
        self.primary_metric, self.exclude_history = primary_metric, exclude_history

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]  # [B, L+1]
        items = items[:, trim_padding(items, keep_last=1):]  # [B, L'+1]: no all-padding columns
        inputs, targets = items[:, :-1], items[:, 1:]  # [B, L'], [B, L']
        targets = targets.masked_fill(inputs == 0, 0)  # no prediction from a padded position
        hidden = self.model(inputs, batch.get("user")).float()  # [B, L, H]
        if self.loss == "full_softmax":
            return full_softmax_loss(hidden, self.model.all_item_repr().float(), targets)
        n = self.model.num_items
        neg_ids = torch.randint(1, n + 1, (self.num_negatives,), device=items.device)  # [N]
        pos_repr = self.model.item_repr(targets).float()  # [B, L, H]
        if self.loss == "sampled_softmax":
            return sampled_softmax_loss(hidden, pos_repr, self.model.item_repr(neg_ids).float(), targets, neg_ids)
        valid = targets != 0  # bpr: one random negative per position
        neg_one = torch.randint(1, n + 1, targets.shape, device=items.device)  # [B, L]
        pos_s = (hidden * pos_repr).sum(-1)[valid]
        neg_s = (hidden * self.model.item_repr(neg_one).float()).sum(-1)[valid]
        return bpr_loss(pos_s, neg_s)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Full ranking of the held-out item among all items, as the evaluate job's full-ranking
        protocol: the items of the user's history (the model's input window) are not ranked unless
        one is the target (``exclude_history``); ties rank the target last."""
        from recsys.evaluation.metrics import TargetRanks, ranks_from_scores

        table = self.model.all_item_repr().float()  # [V+1, H]
        parts = []
        for b in batches:
            hist = b["history"][:, trim_padding(b["history"]):]  # [B, L'] no all-padding columns
            h = self.model(hist, b.get("user"))[:, -1].float()  # [B, H]
            s = h @ table.T  # [B, V+1]
            target = b["target"].view(-1, 1)  # [B, 1]
            drop = torch.zeros_like(s, dtype=torch.bool)
            drop[:, 0] = True  # padding index
            if self.exclude_history:
                drop.scatter_(1, b["history"], True).scatter_(1, target, False)
            s = s.masked_fill(drop, float("-inf"))
            t = target.cpu().numpy()
            parts.append(ranks_from_scores(s.cpu().numpy(), t, np.ones(t.shape)))
        if not parts:
            return {}
        tr = TargetRanks.concat(parts)
        out = ranking_summary(tr, with_primary(SEQUENTIAL_METRICS, self.primary_metric), self.primary_metric)
        out["valid_size"] = float(len(tr))
        return out


def build_task(kind: str, model: nn.Module, loss: str, opts: dict[str, Any]) -> nn.Module:
    """The training module of ``kind`` around ``model`` (``opts``: plain loss options, plus
    ``primary_metric``: the validation metric the run selects on)."""
    if kind == "bi_encoder":
        return BiEncoderTask(model, loss, opts.get("temperature", 0.05), opts.get("margin", 0.2),
                             opts.get("primary_metric") or "mrr")
    if kind == "cross_encoder":
        return CrossEncoderTask(model, loss, opts.get("pos_weight"), opts.get("margin", 0.2), opts.get("list_size", 8),
                                opts.get("primary_metric") or "f1")
    if kind == "sequential":
        return SequentialTask(model, loss, opts.get("num_negatives", 256), opts.get("primary_metric") or "ndcg@10")
    raise ValueError(f"unknown model kind {kind!r}")
