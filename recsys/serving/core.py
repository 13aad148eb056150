"""The recommender as a plain object (what the Recommender deployment wraps)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.retrieval.ann import search
from recsys.retrieval.artifacts import IndexArtifacts
from recsys.search.live import LiveContext
from recsys.search.scores import minmax
from recsys.search.stages import PersonalizerCore


class RecommenderCore:
    """Next items from a user's history: the sequential model when configured, else similarity to
    the recent items' embeddings; cold users get popularity by country / category. Post-processing:
    de-dup, exclude history / purchased, per-category cap, MMR diversity."""

    def __init__(
        self,
        artifacts: IndexArtifacts,
        personalizer: PersonalizerCore,
        sequential: Any = None,
        *,
        candidates: int,
        diversity: float,
        max_per_category: int | None,
        history_items: int,
    ):
        self.a, self.p, self.seq = artifacts, personalizer, sequential
        self.n, self.diversity, self.cap, self.history_items = (
            candidates,
            diversity,
            max_per_category,
            history_items,
        )
        if sequential is not None:  # model column -> catalog row (-1 when the catalog lacks it)
            self.seq_rows = np.array([artifacts.row_of.get(str(i), -1) for i in sequential.item_ids])

    def with_artifacts(self, a: IndexArtifacts) -> RecommenderCore:
        """This recommender over a live catalog snapshot (same model and settings)."""
        return RecommenderCore(a, self.p.with_artifacts(a), self.seq, candidates=self.n,
                               diversity=self.diversity, max_per_category=self.cap,
                               history_items=self.history_items)  # fmt: skip

    def _scored(self, history: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
        """(rows [C], scores [C]) of the best candidates for a non-empty history."""
        if self.seq is not None:
            s = self.seq.score([history[-self.history_items :]])[0]  # [V]
            keep = (self.seq_rows >= 0) & np.isfinite(s)
            rows, s = self.seq_rows[keep], s[keep]
            top = np.argsort(-s, kind="stable")[: self.n]
            return rows[top], s[top], "sequential"
        hist_rows = [self.a.row_of[i] for i in history[-self.history_items :] if i in self.a.row_of]
        if not hist_rows:  # every history item was deleted from the live catalog
            return np.zeros(0, np.int64), np.zeros(0), "embedding"
        weights = np.linspace(0.5, 1.0, len(hist_rows))[:, None]  # recent items count more
        profile = (np.asarray(self.a.embeddings[hist_rows]) * weights).sum(axis=0, keepdims=True)  # [1, D]
        profile /= max(float(np.linalg.norm(profile)), 1e-12)
        scores, rows = search(self.a.ann, profile.astype(np.float32), self.n + len(hist_rows))
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep], "embedding"

    def recommend(
        self,
        user_id: str | None,
        item_ids: list[str],
        k: int,
        exclude_purchased: bool,
        country: str | None,
        live: LiveContext | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        """Live state (``live``) joins the history (the sequential model encodes events from seconds ago),
        its purchases the exclusions, its country the cold-start popularity; a user unknown to the index
        is served from their session alone, then from popularity by location."""
        ctx = self.p.user_context(user_id, country, item_ids, live)
        unknown = [i for i in item_ids if i not in self.a.row_of]
        history = list(dict.fromkeys(ctx["history"]))
        exclude = set(history) | (ctx["purchased"] if exclude_purchased else set())
        if history:
            rows, scores, strategy = self._scored(history)
            cold = False
        else:  # cold start: popularity by country, else global
            pop_ids = self.a.popular_for(country=ctx["country"])
            rows = np.array([self.a.row_of[i] for i in pop_ids if i in self.a.row_of], dtype=np.int64)
            scores = 1.0 / (1.0 + np.arange(len(rows)))
            strategy, cold = (
                ("popular_country" if ("country", ctx["country"]) in self.a.popular else "popular"),
                True,
            )
        picked = self._postprocess(rows, scores, exclude, k)
        if len(picked) < k:  # top up with popular items so k is met whenever the catalog allows
            seen = {r for r, _ in picked}
            for iid in self.a.popular_for(country=ctx["country"]):
                r = self.a.row_of.get(iid)
                if (
                    r is not None
                    and r not in seen
                    and iid not in exclude
                    and len(picked) < k
                    and self.a.visible(r)
                ):
                    picked.append((r, 0.0))
                    seen.add(r)
        out = {
            "rows": [r for r, _ in picked],
            "scores": [s for _, s in picked],
            "strategy": strategy,
            "cold_start": cold,
            "unknown_items": unknown,
        }
        if explain:
            out["reasons"] = [self._reason(r, s, strategy, history, ctx["country"]) for r, s in picked]
        return out

    def _reason(
        self, row: int, score: float, strategy: str, history: list[str], country: str | None
    ) -> dict[str, Any]:
        """The one component of a recommendation's score (the model's, or popularity) and why in words."""
        name = strategy if history else "popularity"
        if history and score != 0.0:  # 0.0: a popular item topping up a short list
            seen = self.p.most_similar_seen(row, history)
            text = f"similar to '{self.p.title(seen)}' you viewed" if seen is not None else ""
        else:
            text = f"popular in {country}" if country and strategy != "popular" else "popular"
        return {"components": {name: round(float(score), 6)}, "text": text}

    def _postprocess(
        self, rows: np.ndarray, scores: np.ndarray, exclude: set[str], k: int
    ) -> list[tuple[int, float]]:
        ids = self.a.items["item_id"].to_numpy()
        cats = self.a.items["category"].to_numpy() if "category" in self.a.items.columns else None
        seen, pool = set(), []
        for r, s in zip(rows.tolist(), np.asarray(scores, dtype=np.float64).tolist()):
            if r in seen or ids[r] in exclude or not self.a.visible(r):
                continue
            seen.add(r)
            pool.append((r, s))
        if not pool:
            return []
        rel = minmax(np.array([s for _, s in pool]))
        emb = np.asarray(self.a.embeddings[[r for r, _ in pool]])  # [C, D]
        chosen: list[int] = []
        per_cat: dict[Any, int] = {}
        max_sim = np.zeros(len(pool))
        while len(chosen) < k:
            mmr = (1 - self.diversity) * rel - self.diversity * max_sim
            mmr[chosen] = -np.inf
            if cats is not None and self.cap:
                for j, (r, _) in enumerate(pool):
                    if per_cat.get(cats[r], 0) >= self.cap:
                        mmr[j] = -np.inf
            j = int(np.argmax(mmr))
            if not np.isfinite(mmr[j]):
                break
            chosen.append(j)
            if cats is not None:
                per_cat[cats[pool[j][0]]] = per_cat.get(cats[pool[j][0]], 0) + 1
            max_sim = np.maximum(max_sim, emb @ emb[j])
        return [pool[j] for j in chosen]
