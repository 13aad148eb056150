"""The search stages as plain objects: hybrid retrieval with RRF fusion, the reranker and the
personalizer (what the Serve deployments wrap, and what :class:`recsys.search.SearchPipeline` runs
in-process). Candidates travel as dicts with the columns
``{"item_id", "row", "text", "fused", "ann_rank", "bm25_rank"}`` + ``"relevance"`` after reranking
+ ``"score"`` after personalizing."""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import numpy as np

from recsys.retrieval.ann import search
from recsys.retrieval.artifacts import IndexArtifacts
from recsys.retrieval.encoder import TextEncoder
from recsys.retrieval.fusion import reciprocal_rank_fusion
from recsys.search.cache import MISS, maybe_cache
from recsys.search.features import (
    FEATURES,
    MISSING_RANK,
    CandidateSignals,
    candidate_features,
    title_info,
)
from recsys.search.live import LiveContext, LivePolicy
from recsys.search.ltr import LambdaRanker
from recsys.search.query import QueryRewrite, QueryRewriter
from recsys.search.scores import minmax
from recsys.search.settings import PersonalizeWeights, QuerySettings, RankSettings, RetrievalSettings
from recsys.search.synonyms import load_synonyms


class RetrieverCore:
    """Hybrid retrieval (dense ANN + BM25, weighted RRF) with filters inside both searches."""

    def __init__(
        self,
        artifacts: IndexArtifacts,
        encoder: Any,
        *,
        ann_top_n: int,
        bm25_top_n: int,
        ann_weight: float,
        bm25_weight: float,
        rrf_k: float,
        query_cache: int = 0,
        model_id: str = "",
        query: QuerySettings | None = None,
        rank: RankSettings | None = None,
    ):
        """``query_cache``: query embeddings kept (LRU, keyed by ``model_id`` and the query text; 0 = off).
        ``query``: query understanding, built from this index version's titles (None / all off: none).
        ``rank``: the second phase; ``lambdarank`` re-orders every candidate with a trained LightGBM model."""
        self.a, self.encoder = artifacts, encoder
        self.ann_top_n, self.bm25_top_n = ann_top_n, bm25_top_n
        self.weights, self.rrf_k = (ann_weight, bm25_weight), rrf_k
        self.query_cache, self.model_id = maybe_cache(query_cache), model_id
        self.ranker = (
            LambdaRanker.load(rank.model) if rank is not None and rank.kind == "lambdarank" else None
        )
        self.title_infos: list[Any] | None = None
        self._derive()
        self.rewriter = (
            QueryRewriter(self.texts, query, load_synonyms(query.synonyms_path) if query.synonyms else None)
            if query is not None and query.enabled
            else None
        )

    def _derive(self) -> None:
        """The per-row arrays read from the catalog (titles, brands, popularity, the ranker's title infos)."""
        items = self.a.items
        self.texts = items["title"].astype(str).tolist()
        self.brands = items["brand"].astype("string").fillna("").tolist() if "brand" in items else None
        self.popularity = (
            items["popularity"].to_numpy(dtype=np.float32, na_value=0.0)
            if "popularity" in items
            else np.zeros(len(items), np.float32)
        )
        if self.ranker is not None:  # titles parsed once for the ranker's features (rows only grow)
            done = self.title_infos or []
            self.title_infos = done + [title_info(t) for t in self.texts[len(done) :]]

    def with_artifacts(self, a: IndexArtifacts) -> RetrieverCore:
        """This retriever over a live catalog snapshot (same encoder, caches, rewriter and ranker)."""
        new = copy.copy(self)
        new.a = a
        new._derive()
        return new

    def rewrite(self, query: str, exact: bool = False) -> QueryRewrite:
        """What to search for: the query rewritten by query understanding, unless ``exact`` or none is on."""
        if exact or self.rewriter is None:
            return QueryRewrite(query, ())
        return self.rewriter.rewrite(query)

    def encode_query(self, query: str) -> np.ndarray:
        """[1, D] query embedding, from the query-embedding cache when it holds it (read-only array)."""
        if self.query_cache is None:
            return cast(np.ndarray, self.encoder.encode([query], kind="query"))
        key = (self.model_id, query)
        q = self.query_cache.get(key)
        if q is MISS:
            q = np.asarray(self.encoder.encode([query], kind="query"))
            q.flags.writeable = False  # shared by every later hit
            self.query_cache.put(key, q)
        return cast(np.ndarray, q)

    def retrieve(self, query: str, filters: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """The ``n`` best candidates: RRF of the dense and BM25 lists, or, with a learned ranker (second
        phase), every candidate of both lists re-ordered by the ranker (``fused`` = its score)."""
        cands, feats = self.candidates(query, filters, n, features=self.ranker is not None)
        if self.ranker is None or not cands:
            return cands[:n]
        assert feats is not None  # asked for above
        scores = self.ranker.predict(feats)  # [C]
        order = np.argsort(-scores, kind="stable")[:n]
        return [dict(cands[i], fused=float(scores[i]), rrf=cands[i]["fused"]) for i in order]

    def candidates(
        self, query: str, filters: dict[str, Any], n: int, *, features: bool = False
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """Every candidate of the dense and BM25 lists in RRF order (cut to ``n`` unless ``features``)
        and, with ``features``, their :func:`~recsys.search.features.candidate_features` [C, F]: what
        ranker training, the evaluate protocol and Serve all compute through this one method."""
        allowed = self.a.allowed_rows(filters)  # KeyError(field) for a filter the catalog lacks
        if allowed is not None and allowed.size == 0:
            return [], (np.zeros((0, len(FEATURES)), np.float32) if features else None)
        dense_rows: list[int] = []
        q = None
        if self.weights[0] > 0:  # ann_weight 0 = lexical only: no query encoding, no dense candidates
            q = self.encode_query(query)  # [1, D]
            _, dense = search(self.a.ann, q, max(self.ann_top_n, n), allowed, vectors=self.a.embeddings)
            dense_rows = [int(r) for r in dense[0] if r >= 0]
        lex_rows: list[int] = []
        lex_scores = np.zeros(0, np.float32)
        if self.bm25_top_n > 0:
            rows, lex_scores = self.a.bm25.search(query, max(self.bm25_top_n, n), allowed)
            lex_rows = rows.tolist()
        fused = reciprocal_rank_fusion(
            [[str(r) for r in dense_rows], [str(r) for r in lex_rows]], self.weights, self.rrf_k
        )
        if not features:
            fused = fused[:n]
        ann_rank = {r: i for i, r in enumerate(dense_rows)}
        bm25_rank = {r: i for i, r in enumerate(lex_rows)}
        ids = self.a.items["item_id"]
        cands = [
            {
                "item_id": ids.iat[int(r)],
                "row": int(r),
                "text": self.texts[int(r)],
                "fused": float(s),
                "ann_rank": ann_rank.get(int(r)),
                "bm25_rank": bm25_rank.get(int(r)),
            }
            for r, s in fused
        ]
        if not features:
            return cands, None
        rows_arr = np.array([c["row"] for c in cands], dtype=np.int64)
        bm25_score = dict(zip(lex_rows, lex_scores.tolist()))
        signals = CandidateSignals(
            titles=[c["text"] for c in cands],
            infos=None if self.title_infos is None else [self.title_infos[int(r)] for r in rows_arr],
            brands=[None if self.brands is None else self.brands[r] for r in rows_arr],
            bm25_score=np.array([bm25_score.get(int(r), 0.0) for r in rows_arr], np.float32),
            bm25_rank=np.array([bm25_rank.get(int(r), MISSING_RANK) for r in rows_arr], np.float32),
            dense_cosine=(
                np.asarray(self.a.embeddings[rows_arr], np.float32) @ np.asarray(q[0], np.float32)
                if q is not None and len(rows_arr)
                else np.zeros(len(rows_arr), np.float32)
            ),
            dense_rank=np.array([ann_rank.get(int(r), MISSING_RANK) for r in rows_arr], np.float32),
            rrf=np.array([c["fused"] for c in cands], np.float32),
            popularity=self.popularity[rows_arr] if len(rows_arr) else np.zeros(0, np.float32),
        )
        return cands, candidate_features(query, signals)

    def suggest(self, q: str, k: int) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.a.autocomplete.suggest(q, k))


def pick_device(device: str = "auto") -> str:
    """``auto``: the GPU when this process may use one (a Serve replica with ``num_gpus`` > 0; Ray
    hides GPUs from replicas that asked for none), else the CPU."""
    if device != "auto":
        return device
    import torch  # lazy: torch costs seconds; only device 'auto' needs it

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_cross_encoder(
    path: str,
    backend: str,
    max_length: int,
    *,
    device: str = "cpu",
    precision: str = "auto",
    threads: int | None = None,
    torch_compile: bool = False,
) -> tuple[Any, str]:
    """The cross-encoder a reranker scores with and the backend it runs on, by ``backend`` (``auto``:
    whatever ``path`` holds): the torch model on ``device`` (``precision`` fp32 | fp16 | bf16 on a GPU;
    auto = fp16 there, fp32 on the CPU; ``torch_compile`` compiles its encoder) or a compressed variant
    run by ONNX Runtime (``threads`` intra-op threads) or torch.ao int8. ``max_length`` caps the model's
    token limit. Errors name ``rerank.model`` / ``rerank.backend`` and the fix."""
    from recsys.compress.scorers import load_scorer  # lazy: onnxruntime / torch cost seconds
    from recsys.compress.variants import VariantError, resolve_backend

    try:
        kind = resolve_backend(path, backend, model_type="cross_encoder")
        if kind == "torch":
            from recsys.models import CrossEncoder  # lazy: CrossEncoder imports torch

            model: Any = CrossEncoder.from_pretrained(path, device=device)
            _set_precision(model, device, precision)
            if torch_compile:
                import torch

                model.encoder = torch.compile(model.encoder, dynamic=False)
        else:
            model = load_scorer(path, kind, threads=threads)
    except VariantError as e:
        raise VariantError(f"rerank.model / rerank.backend: {e}") from e
    model.max_length = min(int(model.max_length), max_length)  # the serve config's token limit
    return model, kind


def _set_precision(model: Any, device: str, precision: str) -> None:
    on_gpu = device.startswith("cuda")
    if precision == "auto":
        precision = "fp16" if on_gpu else "fp32"
    if precision != "fp32" and not on_gpu:
        raise ValueError(
            f"rerank.precision={precision!r} needs a GPU replica (num_gpus > 0); use fp32 on the CPU"
        )
    if precision == "fp16":
        model.half()  # inference only: fp16 halves memory traffic, scores agree to ~1e-3
    elif precision == "bf16":
        import torch

        model.to(torch.bfloat16)
    elif precision != "fp32":
        raise ValueError(f"rerank.precision={precision!r}; use auto, fp32, fp16 or bf16")


class RerankerCore:
    """Scores (query, candidate) pairs: a trained CrossEncoder (torch, or a compressed ONNX / int8 variant
    of it, :func:`load_cross_encoder`), or, when no cross-encoder is configured, the bi-encoder's cosine of
    the query and the candidates. The fallback reads the candidates' vectors from the index
    (``embeddings``, rows given per request) instead of encoding their text again: the index was built with
    the same encoder, so the score is the same and a request costs one query encoding instead of ``top_n``
    title encodings. A dynamic batch's pairs are tokenized in one call and scored in passes of
    ``batch_size`` pairs of similar token length (``pad_to_multiple_of``: static-shape buckets)."""

    def __init__(
        self,
        model_path: str | None,
        encoder_path: str,
        max_length: int,
        embeddings: np.ndarray | None = None,
        device: str = "auto",
        *,
        backend: str = "auto",
        precision: str = "auto",
        pad_to_multiple_of: int = 0,
        torch_compile: bool = False,
        threads: int | None = None,
    ):
        self.cross, self.embeddings = None, embeddings
        self.device = pick_device(device)
        # A GPU scores a whole dynamic batch in one pass; on CPU smaller passes keep memory flat.
        self.batch_size = 1024 if self.device.startswith("cuda") else 64
        self.pad_to_multiple_of = pad_to_multiple_of
        if model_path:
            self.cross, self.backend = load_cross_encoder(
                model_path,
                backend,
                max_length,
                device=self.device,
                precision=precision,
                threads=threads,
                torch_compile=torch_compile,
            )
            self.kind = "cross_encoder"
        else:
            self.encoder = TextEncoder(encoder_path, max_length=max_length, device=self.device)
            self.kind, self.backend = "bi_encoder", "torch"

    def score_many(self, requests: list[tuple[Any, ...]]) -> list[np.ndarray]:
        """Requests ``(query, texts)`` or ``(query, texts, rows)`` (rows: the candidates' index rows,
        used by the fallback when the index's embeddings are loaded) -> per request float32 [len(texts)]."""
        pairs = [(r[0], t) for r in requests for t in r[1]]
        if not pairs:
            return [np.zeros(0, np.float32) for _ in requests]
        if self.cross is not None:
            flat = self.cross.score(pairs, self.batch_size, pad_to_multiple_of=self.pad_to_multiple_of)  # [P]
        else:
            queries = self.encoder.encode([r[0] for r in requests], kind="query")  # [R, D]
            owner = np.repeat(np.arange(len(requests)), [len(r[1]) for r in requests])  # [P]
            flat = np.einsum("pd,pd->p", queries[owner], self._item_vectors(requests))  # [P]
        out, start = [], 0
        for r in requests:
            out.append(np.asarray(flat[start : start + len(r[1])], dtype=np.float32))
            start += len(r[1])
        return out

    def _item_vectors(self, requests: list[tuple[Any, ...]]) -> np.ndarray:
        """[P, D] candidate vectors: stored rows where every request gave them, else encoded text."""
        if self.embeddings is not None and all(len(r) > 2 and r[2] is not None for r in requests):
            rows = np.fromiter((row for r in requests for row in r[2]), dtype=np.int64)  # [P]
            live = rows >= len(self.embeddings)  # rows the live catalog added after this version: encoded
            if not live.any():
                return np.asarray(self.embeddings[rows], dtype=np.float32)
            texts = [t for r in requests for t in r[1]]
            out = np.zeros((len(rows), self.embeddings.shape[1]), np.float32)
            out[~live] = self.embeddings[rows[~live]]
            out[live] = self.encoder.encode([texts[i] for i in np.flatnonzero(live)], kind="item")
            return out
        return self.encoder.encode([t for r in requests for t in r[1]], kind="item")


class PersonalizerCore:
    """Final score = relevance blended with the user's features; unknown users / items get the
    feature-free parts (relevance, popularity, country) so they never fail."""

    def __init__(self, artifacts: IndexArtifacts, weights: PersonalizeWeights, sequential: Any = None):
        self.a, self.w, self.seq = artifacts, weights, sequential
        pop = (
            artifacts.items["popularity"].to_numpy(dtype=np.float64)
            if "popularity" in artifacts.items
            else np.zeros(len(artifacts.items))
        )
        self.pop = minmax(np.log1p(np.nan_to_num(pop)))
        self.has_cat = "category" in artifacts.items.columns
        self.has_price = "price" in artifacts.items.columns

    def with_artifacts(self, a: IndexArtifacts) -> PersonalizerCore:
        """This personalizer over a live catalog snapshot (same weights and sequential model)."""
        return PersonalizerCore(a, self.w, self.seq)

    def user_context(
        self,
        user_id: str | None,
        country: str | None,
        recent: list[str] | None = None,
        live: LiveContext | None = None,
    ) -> dict[str, Any]:
        """The snapshot features of ``user_id`` (index version) merged with the live state, if any:
        history = snapshot + live + ``recent``; the request's country, else the live one, else the snapshot's;
        the category affinity blended with the live profile (``policy.live_share``); the live price band."""
        u = self.a.users.get(user_id or "", None)
        history = list(u["recent_items"]) if u else []
        affinity: dict[str, float] = dict((u or {}).get("category_affinity", {}))
        mean_price = (u or {}).get("mean_price")
        purchased = set((u or {}).get("purchased", set()))
        brands: dict[str, float] = {}
        if live is not None:
            history += [i for i in live.recent if i in self.a.row_of]
            purchased |= set(live.purchased)
            brands = dict(live.brands)
            if live.categories:
                share = live.policy.live_share if live.policy and affinity else 1.0
                cats = {c: (1 - share) * w for c, w in affinity.items()}
                for c, w in live.categories:
                    cats[c] = cats.get(c, 0.0) + share * w
                affinity = cats
            if live.price_mean is not None:
                mean_price = live.price_mean
        history += [i for i in (recent or []) if i in self.a.row_of]
        return {
            "known": u is not None,
            "history": history,
            "country": country or (live.country if live is not None else None) or (u or {}).get("country"),
            "affinity": affinity,
            "brands": brands,
            "mean_price": mean_price,
            "purchased": purchased,
        }

    def _recent_similarity(self, ctx: dict[str, Any], rows: np.ndarray, ids: list[str]) -> np.ndarray:
        if not ctx["history"]:
            return np.zeros(len(rows))
        if self.seq is not None:
            s = self.seq.score([ctx["history"]], candidates=[ids])[0]  # [C]
            s = np.where(np.isfinite(s), s, np.nan)
            return cast(
                np.ndarray,
                np.nan_to_num(minmax(np.nan_to_num(s, nan=np.nanmin(s) if np.isfinite(s).any() else 0.0))),
            )
        hist_rows = [self.a.row_of[i] for i in ctx["history"][-20:] if i in self.a.row_of]
        if not hist_rows:
            return np.zeros(len(rows))
        profile = np.asarray(self.a.embeddings[hist_rows]).mean(axis=0)  # [D]
        return cast(np.ndarray, np.clip(np.asarray(self.a.embeddings[rows]) @ profile, 0, None))  # [C]

    def personalize(
        self,
        candidates: list[dict[str, Any]],
        user_id: str | None,
        country: str | None,
        live: LiveContext | None = None,
        explain: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Candidates sorted by final ``score``; also whether the user was cold (no features, no live
        history). The score is a sum of weighted components; with ``explain`` every candidate carries
        them as ``reasons`` (``components`` summing to the score, and a human-readable ``text``)."""
        # Rows are re-derived from item ids: during a hot reload the retriever may already serve
        # another index version than this replica; items this version lacks are dropped.
        candidates = [
            dict(c, row=self.a.row_of[c["item_id"]]) for c in candidates if c["item_id"] in self.a.row_of
        ]
        ctx = self.user_context(user_id, country, live=live)
        policy = live.policy if live is not None else None
        if policy is not None and policy.purchased == "exclude" and ctx["purchased"]:
            candidates = [c for c in candidates if c["item_id"] not in ctx["purchased"]]
        if not candidates:
            return [], True
        rows = np.array([c["row"] for c in candidates])
        ids = [c["item_id"] for c in candidates]
        parts = self._components(candidates, rows, ids, ctx, policy)
        score = np.zeros(len(candidates))
        for v in parts.values():
            score = score + v
        order = np.argsort(-score, kind="stable")
        out = [dict(candidates[i], score=float(score[i])) for i in order]
        if explain:
            for o, i in zip(out, order):
                comps = {name: float(v[i]) for name, v in parts.items()}
                o["reasons"] = {"components": comps, "text": self._reason_text(o, comps, ctx)}
        return out, not (ctx["known"] or ctx["history"])

    def _components(
        self,
        candidates: list[dict[str, Any]],
        rows: np.ndarray,
        ids: list[str],
        ctx: dict[str, Any],
        policy: LivePolicy | None,
    ) -> dict[str, np.ndarray]:
        """Each weighted term of the score, [C] each (their sum is the score)."""
        w, n = self.w, len(candidates)
        parts = {
            "relevance": w.relevance
            * minmax(np.array([c["relevance"] for c in candidates], dtype=np.float64)),
            "popularity": w.popularity * self.pop[rows],
        }
        parts["country_popularity"] = np.zeros(n)
        if ctx["country"] is not None and ("country", ctx["country"]) in self.a.popular:
            rank = {iid: r for r, iid in enumerate(self.a.popular[("country", ctx["country"])])}
            parts["country_popularity"] = w.country_popularity * np.array(
                [1.0 / (1.0 + rank[i]) if i in rank else 0.0 for i in ids]
            )
        parts["category_affinity"] = np.zeros(n)
        if ctx["affinity"] and self.has_cat:
            cats = self.a.items["category"].to_numpy()[rows]
            parts["category_affinity"] = w.category_affinity * np.array(
                [ctx["affinity"].get(str(c), 0.0) for c in cats]
            )
        parts["price_band"] = np.zeros(n)
        if self.has_price and ctx["mean_price"] is not None and not math.isnan(ctx["mean_price"]):
            price = self.a.items["price"].to_numpy(dtype=np.float64)[rows]
            closeness = np.exp(
                -np.abs(np.log1p(np.nan_to_num(price, nan=ctx["mean_price"])) - np.log1p(ctx["mean_price"]))
            )
            parts["price_band"] = w.price_band * closeness
        parts["recent_items"] = w.recent_items * self._recent_similarity(ctx, rows, ids)
        if self.a.demoted is not None:  # the live catalog's out_of_stock: demote
            parts["out_of_stock"] = -self.a.demoted[rows]
        if policy is not None:  # live-only terms
            parts["brand_affinity"] = np.zeros(n)
            if ctx["brands"] and "brand" in self.a.items.columns:
                brands = self.a.items["brand"].to_numpy()[rows]
                parts["brand_affinity"] = policy.brand_affinity * np.array(
                    [ctx["brands"].get(str(b), 0.0) for b in brands]
                )
            if policy.purchased == "boost":
                parts["purchased"] = policy.purchased_boost * np.array(
                    [1.0 if i in ctx["purchased"] else 0.0 for i in ids]
                )
        return parts

    def _reason_text(self, cand: dict[str, Any], comps: dict[str, float], ctx: dict[str, Any]) -> str:
        """The largest personal terms in words ("similar to 'X' you viewed", "popular in DE", ...)."""
        lines = []
        if cand.get("matched"):
            lines.append("matches " + ", ".join(f"'{t}'" for t in cand["matched"]))
        personal = sorted(
            ((v, k) for k, v in comps.items() if k not in ("relevance", "popularity") and v > 1e-9),
            reverse=True,
        )
        for _, name in personal[:2]:
            row = cand["row"]
            if name == "recent_items":
                seen = self.most_similar_seen(row, ctx["history"])
                if seen is not None:
                    lines.append(f"similar to '{self.title(seen)}' you viewed")
            elif name == "country_popularity":
                lines.append(f"popular in {ctx['country']}")
            elif name == "category_affinity":
                lines.append(f"you often browse {self.a.items['category'].iat[row]}")
            elif name == "brand_affinity":
                lines.append(f"from {self.a.items['brand'].iat[row]}, a brand you like")
            elif name == "price_band":
                lines.append("in your usual price range")
            elif name == "purchased":
                lines.append("you bought this before")
        if not lines and comps.get("popularity", 0.0) > 0:
            lines.append("popular")
        return "; ".join(lines)

    def title(self, item_id: str) -> str:
        return str(self.a.items["title"].iat[self.a.row_of[item_id]])

    def most_similar_seen(self, row: int, history: list[str]) -> str | None:
        """The history item whose embedding is closest to catalog row ``row`` (None: no history)."""
        hist = [i for i in dict.fromkeys(history[-50:]) if i in self.a.row_of]
        if not hist:
            return None
        vecs = np.asarray(self.a.embeddings[[self.a.row_of[i] for i in hist]])
        return hist[int(np.argmax(vecs @ np.asarray(self.a.embeddings[row])))]


def load_retriever(root: str, version: str, s: RetrievalSettings) -> RetrieverCore:
    """The retriever of index ``version`` under ``root`` with its query encoder."""
    a = IndexArtifacts.load(root, version, nprobe=s.nprobe, ef_search=s.ef_search)
    model = s.encoder or a.manifest["model"]["path"]
    backend = s.encoder_backend
    if s.encoder is None and backend == "auto":  # the index's own encoder: run it as the index job did
        backend = a.manifest["model"].get("backend", "auto")
    enc = TextEncoder(model, max_length=s.max_length, backend=backend, field="retrieval.encoder")
    return RetrieverCore(
        a,
        enc,
        ann_top_n=s.ann_top_n,
        bm25_top_n=s.bm25_top_n,
        ann_weight=s.ann_weight,
        bm25_weight=s.bm25_weight,
        rrf_k=s.rrf_k,
        query_cache=s.query_cache,
        model_id=f"{model}:{s.max_length}",
        query=s.query,
        rank=s.rank,  # the same text truncated elsewhere is another embedding
    )
