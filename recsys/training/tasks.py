"""Training modules: a model plus its loss in one ``forward(batch) -> loss``, so that DDP and
DeepSpeed wrap a single module, and ``evaluate(batches) -> metrics`` for in-loop validation.

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
from recsys.training.data import text_inputs, trim_batch


class BiEncoderTask(nn.Module):
    """Batch: ``q_*`` (query tokens), ``p_*`` (positive item tokens)[, ``n_*`` (hard negative)]."""

    prefixes = ("q_", "p_", "n_")

    def __init__(self, model: nn.Module, loss: str = "infonce", temperature: float = 0.05, margin: float = 0.2):
        super().__init__()
        self.model, self.loss, self.temperature, self.margin = model, loss, temperature, margin

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.model.embed(text_inputs(batch, "q_"), "query")  # [B, D]
        p = self.model.embed(text_inputs(batch, "p_"), "item")  # [B, D]
        n = self.model.embed(text_inputs(batch, "n_"), "item") if "n_input_ids" in batch else None  # [B, D]
        if self.loss == "infonce":
            return infonce_loss(q.float(), p.float(), None if n is None else n.float(), self.temperature)
        pos, neg = (q * p).sum(-1).float(), (q * n).sum(-1).float()  # [B], [B]
        return bpr_loss(pos, neg) if self.loss == "bpr" else margin_loss(pos, neg, self.margin)

    @torch.no_grad()
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Retrieval over the validation set: each query ranks every distinct validation item."""
        qs, ps = [], []
        for b in batches:
            b = trim_batch(b, self.prefixes)
            qs.append(self.model.embed(text_inputs(b, "q_"), "query").float())
            ps.append(self.model.embed(text_inputs(b, "p_"), "item").float())
        if not qs:
            return {}
        q, p = torch.cat(qs), torch.cat(ps)  # [N, D], [N, D]
        scores = q @ p.T  # [N, N]; row i's relevant item is column i (duplicates of it count as ties)
        true = scores.diagonal().unsqueeze(1)  # [N, 1]
        rank = (scores > true).sum(1) + 1  # [N]
        return {"mrr": float((1.0 / rank).mean()), "recall@1": float((rank <= 1).float().mean()),
                "recall@10": float((rank <= 10).float().mean()), "valid_size": float(len(rank))}


class CrossEncoderTask(nn.Module):
    """Batch: ``input_ids``, ``attention_mask``[, ``token_type_ids``], ``label`` (0/1 or graded in [0, 1])."""

    prefixes = ("",)

    def __init__(self, model: nn.Module, loss: str = "bce", pos_weight: float | None = None,
                 margin: float = 0.2, list_size: int = 8):
        super().__init__()
        self.model, self.loss, self.pos_weight, self.margin, self.list_size = model, loss, pos_weight, margin, list_size

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

    @torch.no_grad()
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Pair classification at threshold 0.5: f1, precision, recall, accuracy; plus ROC AUC."""
        logits, labels = [], []
        for b in batches:
            b = trim_batch(b, self.prefixes)
            logits.append(self.model(text_inputs(b, "")).float().cpu().numpy().reshape(-1))
            labels.append(b["label"].float().cpu().numpy())
        if not logits:
            return {}
        s, y = np.concatenate(logits), np.concatenate(labels) > 0.5
        pred = s > 0.0  # sigmoid(s) > 0.5
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out = {"f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0, "precision": prec, "recall": rec,
               "accuracy": float((pred == y).mean()), "valid_size": float(len(y))}
        if 0 < y.sum() < len(y):
            from sklearn.metrics import roc_auc_score

            out["auc"] = float(roc_auc_score(y, s))
        return out


class SequentialTask(nn.Module):
    """Batch: ``items`` [B, L+1] left-padded indices (+ ``user`` [B, F]); valid: ``history``, ``target``."""

    prefixes = ()

    def __init__(self, model: nn.Module, loss: str = "full_softmax", num_negatives: int = 256):
        super().__init__()
        self.model, self.loss, self.num_negatives = model, loss, num_negatives

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = batch["items"]  # [B, L+1]
        inputs, targets = items[:, :-1], items[:, 1:]  # [B, L], [B, L]
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
    def evaluate(self, batches: Iterable[dict[str, torch.Tensor]], ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
        """Full ranking of the held-out item among all items: recall@k (= HR@k), ndcg@k, mrr."""
        table = self.model.all_item_repr().float()  # [V+1, H]
        ranks = []
        for b in batches:
            h = self.model(b["history"], b.get("user"))[:, -1].float()  # [B, H]
            s = h @ table.T  # [B, V+1]
            s[:, 0] = float("-inf")
            true = s.gather(1, b["target"].view(-1, 1))  # [B, 1]
            ranks.append(((s > true).sum(1) + 1).cpu())
        if not ranks:
            return {}
        r = torch.cat(ranks).float()
        out = {"mrr": float((1.0 / r).mean()), "valid_size": float(len(r))}
        for k in ks:
            hit = r <= k
            out[f"recall@{k}"] = float(hit.float().mean())
            out[f"ndcg@{k}"] = float((hit.float() / torch.log2(r + 1)).mean())
        return out


def build_task(kind: str, model: nn.Module, loss: str, opts: dict[str, Any]) -> nn.Module:
    """The training module of ``kind`` around ``model`` (``opts``: plain loss options)."""
    if kind == "bi_encoder":
        return BiEncoderTask(model, loss, opts.get("temperature", 0.05), opts.get("margin", 0.2))
    if kind == "cross_encoder":
        return CrossEncoderTask(model, loss, opts.get("pos_weight"), opts.get("margin", 0.2), opts.get("list_size", 8))
    if kind == "sequential":
        return SequentialTask(model, loss, opts.get("num_negatives", 256))
    raise ValueError(f"unknown model kind {kind!r}")
