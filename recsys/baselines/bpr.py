"""BPR matrix factorisation trained with Adam and early stopping, as RecBole trains its BPR baseline.

``implicit``'s BPR (``kind: bpr``, the default ``optimizer: sgd``) is hogwild SGD over a fixed
number of epochs; published BPRMF rows (RecBole, LLMRank) come from mini-batch Adam on the same
loss, stopped on a validation ranking metric, which lands several NDCG points higher. This is that
recipe: user and item embeddings (Xavier-normal), score = u . i, loss = -log sigmoid(s_pos - s_neg)
with one uniformly sampled unseen item per positive, Adam, batch 2048.

Early stopping: the last training item of up to ``valid_users`` random users is held out of the
fit and ranked against the full catalog (minus the user's other items) every ``eval_every``
epochs; training stops after ``patience`` evaluations without a better NDCG@10 and the best
epoch's weights are kept. ``valid_users: 0`` trains exactly ``epochs`` epochs on everything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys.baselines.mf import FactorScorer
from recsys.evaluation import metrics
from recsys.evaluation.train_data import TrainData

log = logging.getLogger(__name__)


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, n_items: int, seen: sp.csr_matrix
) -> np.ndarray:
    """One item per user, uniform over the catalog, re-drawn until it is not in the user's ``seen`` row."""
    neg = rng.integers(0, n_items, size=len(users))
    for _ in range(100):  # each redraw hits a seen item with probability (row length / catalog size)
        hit = np.asarray(seen[users, neg]).reshape(-1) > 0
        if not hit.any():
            break
        neg[hit] = rng.integers(0, n_items, size=int(hit.sum()))
    return neg


def holdout_last(data: TrainData, n_users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user rows, item columns) of the last training item of up to ``n_users`` random users that have
    at least two distinct items (so that one stays in training)."""
    index = data.item_index()
    candidates = []
    for u, items in enumerate(data.sequences["items"]):
        cols = index.lookup(np.asarray(list(items), dtype=object)) if len(items) else np.zeros(0, np.int64)
        cols = cols[cols >= 0]
        if len(np.unique(cols)) >= 2 and (cols[:-1] != cols[-1]).all():  # the last item appears only once
            candidates.append((u, int(cols[-1])))
    if not candidates or n_users <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pick = rng.permutation(len(candidates))[:n_users]
    arr = np.asarray(candidates, dtype=np.int64)[np.sort(pick)]
    return arr[:, 0], arr[:, 1]


def ndcg_at_10(
    user_f: torch.Tensor, item_f: torch.Tensor, users: np.ndarray, targets: np.ndarray, seen: sp.csr_matrix
) -> float:
    """Full-catalog NDCG@10 of ``targets`` (one per user), the users' other training items excluded."""
    total = 0.0
    for s in range(0, len(users), 1024):
        u, t = users[s : s + 1024], targets[s : s + 1024]
        scores = (user_f[u] @ item_f.T).numpy()  # (B, N)
        mask = seen[u].tocoo()
        scores[mask.row, mask.col] = -np.inf
        ranks = metrics.ranks_from_scores(
            scores, t[:, None], np.ones((len(u), 1)), ties="optimistic"
        )  # as RecBole
        total += float(metrics.ndcg(ranks, 10).sum())
    return total / max(len(users), 1)


class BPRAdamScorer(FactorScorer):
    """factors, epochs (max), learning_rate, batch_size, regularization (L2 on the batch's embeddings),
    valid_users / eval_every / patience (early stopping), seed, num_threads (torch; 0 = torch's default)."""

    def __init__(
        self,
        *,
        factors: int = 64,
        epochs: int = 300,
        learning_rate: float = 1e-3,
        batch_size: int = 2048,
        regularization: float = 0.0,
        valid_users: int = 3000,
        eval_every: int = 5,
        patience: int = 4,
        seed: int = 0,
        num_threads: int = 0,
    ):
        for name, value in (
            ("factors", factors),
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("eval_every", eval_every),
            ("patience", patience),
        ):
            if value < 1:
                raise ValueError(f"bpr (optimizer: adam): {name} must be >= 1, got {value}")
        if learning_rate <= 0 or regularization < 0 or valid_users < 0:
            raise ValueError(
                "bpr (optimizer: adam): learning_rate must be > 0, regularization and valid_users >= 0"
            )
        self.factors, self.epochs, self.learning_rate, self.batch_size = (
            factors,
            epochs,
            learning_rate,
            batch_size,
        )
        self.regularization, self.valid_users, self.eval_every, self.patience = (
            regularization,
            valid_users,
            eval_every,
            patience,
        )
        self.seed, self.num_threads = seed, num_threads
        self.history: list[tuple[int, float]] = []  # (epoch, probe NDCG@10)
        self.best_epoch = 0

    def fit(self, data: TrainData) -> BPRAdamScorer:
        self._items, self._users = data.item_index(), data.user_index()
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            self._fit(data, rng)
        finally:
            torch.set_num_threads(threads)
        return self

    def _fit(self, data: TrainData, rng: np.random.Generator) -> None:
        seen = data.matrix().tocsr()  # (U, N) every training item, never sampled as a negative
        probe_u, probe_i = holdout_last(data, self.valid_users, rng)
        train = seen.tolil(copy=True)
        train[probe_u, probe_i] = 0
        train = train.tocsr()
        train.eliminate_zeros()
        users, items = train.nonzero()  # (P,) positive pairs
        n_users, n_items = seen.shape
        user_emb = torch.nn.Embedding(n_users, self.factors)
        item_emb = torch.nn.Embedding(n_items, self.factors)
        torch.nn.init.xavier_normal_(user_emb.weight)
        torch.nn.init.xavier_normal_(item_emb.weight)
        params = [user_emb.weight, item_emb.weight]
        opt = torch.optim.Adam(params, lr=self.learning_rate, fused=True)  # fused: half the step time on CPU
        best, best_state, bad = -1.0, None, 0
        t0 = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            order = rng.permutation(len(users))
            neg_all = sample_negatives(rng, users[order], n_items, seen)
            for s in range(0, len(order), self.batch_size):
                b = order[s : s + self.batch_size]
                u = torch.from_numpy(users[b])
                i = torch.from_numpy(items[b])
                j = torch.from_numpy(neg_all[s : s + self.batch_size])
                eu, ei, ej = user_emb(u), item_emb(i), item_emb(j)  # (B, F) each
                diff = (eu * (ei - ej)).sum(-1)  # (B,) s_pos - s_neg
                loss = -torch.nn.functional.logsigmoid(diff).mean()
                if self.regularization:
                    loss = loss + self.regularization * (
                        eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()
                    ) / len(b)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                opt.step()
            if len(probe_u) and (epoch % self.eval_every == 0 or epoch == self.epochs):
                with torch.no_grad():
                    score = ndcg_at_10(user_emb.weight, item_emb.weight, probe_u, probe_i, train)
                self.history.append((epoch, score))
                log.info(
                    "bpr-adam epoch %d: probe ndcg@10 %.4f (%.0f s)", epoch, score, time.perf_counter() - t0
                )
                if score > best:
                    best, bad, self.best_epoch = score, 0, epoch
                    best_state = [p.detach().clone() for p in params]
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
        if best_state is None:  # no early stopping: the last epoch's weights
            self.best_epoch = epoch
            best_state = [p.detach().clone() for p in params]
        self._user_f = best_state[0].numpy()  # (U, F)
        self._item_f = best_state[1].numpy()  # (N, F)

    def info(self) -> dict[str, Any]:
        """Reported beside the model in the evaluate job's results."""
        return {"best_epoch": self.best_epoch, "probe_ndcg@10": [[e, round(v, 5)] for e, v in self.history]}
