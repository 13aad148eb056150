"""Serving building blocks without Ray: fusion, ANN recall, BM25 filters, autocomplete, A/B router,
feedback partitioning, A/B statistics on synthetic feedback with a known effect, config errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys.retrieval import ann
from recsys.retrieval.autocomplete import Autocomplete, edit_distance
from recsys.retrieval.fusion import reciprocal_rank_fusion
from recsys.retrieval.lexical import BM25Index
from recsys.serving.ab_stats import ab_report, srm_check, two_proportion, wilson
from recsys.serving.feedback import read_feedback, to_events, write_partitioned
from recsys.serving.router import ABRouter


def test_rrf_exact_scores_and_weights():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], weights=[1.0, 2.0], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 2 / 61)
    assert fused["d"] == pytest.approx(2 / 62)
    assert [d for d, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], [1.0, 2.0])][:2] == ["b", "d"]
    with pytest.raises(ValueError, match="one weight per ranking"):
        reciprocal_rank_fusion([["a"]], [1.0, 2.0])


@pytest.fixture(scope="module")
def clustered_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    emb = centres[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 32))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def test_ann_exact_recall_is_one_and_approximate_close(clustered_embeddings):
    emb = clustered_embeddings
    q = emb[:200]
    assert ann.recall_at_k(ann.build_index(emb, "exact"), emb, q, 10) == 1.0
    assert ann.recall_at_k(ann.build_index(emb, "hnsw", ef_search=128), emb, q, 10) >= 0.9
    assert ann.recall_at_k(ann.build_index(emb, "ivf", nlist=32, nprobe=8), emb, q, 10) >= 0.8


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_ann_filters_apply_before_truncation(clustered_embeddings, kind):
    emb = clustered_embeddings
    index = ann.build_index(emb, kind, nlist=32, nprobe=32, ef_search=256)
    allowed = np.arange(3000, 3050)
    exact = allowed[np.argsort(-(emb[allowed] @ emb[0]))[:10]]
    _, rows = ann.search(index, emb[:1], 10, allowed, vectors=emb)
    assert rows[0].tolist() == exact.tolist()
    _, rows = ann.search(index, emb[:1], 10, allowed)  # index-only: faiss selector inside the search
    got = rows[0][rows[0] >= 0]
    assert len(got) >= 1 and set(got.tolist()) <= set(allowed.tolist())


def test_bm25_ranks_and_masks():
    texts = ["zelda breath of the wild", "mario kart deluxe", "zelda link to the past", "wireless controller"]
    bm = BM25Index.build(texts)
    rows, scores = bm.search("zelda", 10)
    assert sorted(rows.tolist()) == [0, 2] and (scores > 0).all()
    rows, _ = bm.search("zelda", 10, allowed=np.array([1, 2]))
    assert rows.tolist() == [2]
    assert bm.search("unknownword", 5)[0].size == 0


def test_autocomplete_prefix_typos_and_weights():
    ac = Autocomplete.from_sources(
        ["The Legend of Zelda", "Zelda II", "Mario Kart 8", "PlayStation 4 Console"],
        np.array([5, 50, 10, 3]),
        queries=["zelda amiibo", "mario"],
        query_counts=np.array([40, 5]),
        query_conversions=np.array([30, 0]),
    )
    texts = [s["text"] for s in ac.suggest("zel", 10)]
    assert set(texts) == {"The Legend of Zelda", "Zelda II", "zelda amiibo"}
    assert texts.index("zelda amiibo") < texts.index("The Legend of Zelda")  # frequent + converting query
    assert [s["text"] for s in ac.suggest("legend of zel", 5)] == ["The Legend of Zelda"]
    typo = ac.suggest("zleda", 5)
    assert typo and all(s["corrected"] for s in typo) and "Zelda II" in [s["text"] for s in typo]
    assert [s["text"] for s in ac.suggest("playstaton 4", 5)] == ["PlayStation 4 Console"]
    assert ac.suggest("", 5) == [] and ac.suggest("qqqqqq", 5) == []
    assert edit_distance("zleda", "zelda", 2) == 1 and edit_distance("abc", "xyz", 1) == 2


def test_router_is_sticky_and_follows_weights():
    r = ABRouter({"A": 0.8, "B": 0.2}, salt="s1")
    users = [f"u{i}" for i in range(20000)]
    arms = [r.assign(u) for u in users]
    assert arms == [
        ABRouter({"A": 0.8, "B": 0.2}, salt="s1").assign(u) for u in users
    ]  # sticky across replicas
    assert abs(arms.count("B") / len(arms) - 0.2) < 0.015
    other = [ABRouter({"A": 0.8, "B": 0.2}, salt="s2").assign(u) for u in users[:2000]]
    assert other != arms[:2000]  # a new salt re-randomises
    assert ABRouter({"A": 1.0, "B": 0.0}, "s").assign("anyone") == "A"


def test_feedback_rows_are_canonical_and_hour_partitioned(tmp_path):
    t0 = dt.datetime(2026, 1, 1, 10, 59, tzinfo=dt.timezone.utc)
    body = {
        "user_id": "u1",
        "query": "zelda",
        "session_id": "s",
        "country": "DE",
        "request_id": "r1",
        "events": [
            {"item_id": "1", "event_type": "impression", "position": 0, "timestamp": t0},
            {
                "item_id": "1",
                "event_type": "buy",
                "price": 9.5,
                "quantity": 2,
                "timestamp": t0 + dt.timedelta(minutes=2),
            },
        ],
    }
    files = write_partitioned(to_events(body, "B"), tmp_path)
    assert sorted(p.split("/")[-2] for p in files) == ["hour=2026-01-01T10", "hour=2026-01-01T11"]
    t = read_feedback(tmp_path).to_pandas().sort_values("timestamp")
    assert t["event_type"].tolist() == ["impression", "buy"] and set(t["arm"]) == {"B"}
    assert t["price"].iloc[1] == 9.5 and t["quantity"].iloc[1] == 2 and t["position"].iloc[0] == 0
    assert str(t["timestamp"].dtype) == "datetime64[us, UTC]"


def _synthetic_feedback(n_users: int, ctr: dict[str, float], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    router = ABRouter({"A": 0.5, "B": 0.5}, "exp")
    rows = []
    for u in range(n_users):
        arm = router.assign(f"user{u}")
        for pos in range(10):
            rows.append((f"user{u}", f"i{pos}", "impression", arm))
            if rng.random() < ctr[arm]:
                rows.append((f"user{u}", f"i{pos}", "click", arm))
                if rng.random() < 0.3:
                    rows.append((f"user{u}", f"i{pos}", "buy", arm))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "arm"])


def test_ab_report_detects_a_known_effect_and_not_a_null_one():
    ev = _synthetic_feedback(3000, {"A": 0.10, "B": 0.13})
    rep = ab_report(
        ev,
        control="A",
        expected_weights={"A": 0.5, "B": 0.5},
        alpha=0.05,
        srm_alpha=0.001,
        method="ztest",
        n_bootstrap=200,
        seed=0,
    )
    ctr = rep["comparisons"]["B_vs_A"]["ctr"]
    assert ctr["significant"] and ctr["ci_low"] < 0.03 < ctr["ci_high"]
    assert rep["arms"]["A"]["ctr_ci"][0] < 0.10 < rep["arms"]["A"]["ctr_ci"][1]
    assert not rep["srm"]["mismatch"]
    null = ab_report(
        _synthetic_feedback(3000, {"A": 0.1, "B": 0.1}, seed=1),
        control="A",
        expected_weights=None,
        alpha=0.05,
        srm_alpha=0.001,
        method="bootstrap",
        n_bootstrap=200,
        seed=0,
    )
    assert (
        null["comparisons"]["B_vs_A"]["ctr"]["ci_low"] < 0 < null["comparisons"]["B_vs_A"]["ctr"]["ci_high"]
    )


def test_srm_and_proportion_helpers():
    assert srm_check({"A": 5000, "B": 4500}, {"A": 0.5, "B": 0.5}, 0.001)["mismatch"]
    assert not srm_check({"A": 5010, "B": 4990}, {"A": 0.5, "B": 0.5}, 0.001)["mismatch"]
    assert srm_check({"A": 8000, "B": 2000}, {"A": 0.8, "B": 0.2}, 0.001)["mismatch"] is False
    lo, hi = wilson(10, 100, 0.05)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    t = two_proportion(100, 1000, 130, 1000, 0.05)
    assert t["diff"] == pytest.approx(0.03) and t["p_value"] == pytest.approx(0.0357, abs=2e-3)


def test_serve_args_errors_name_the_field(tmp_path):
    from recsys.config.loader import ConfigError
    from recsys.serving.launch import validate_args

    bad = {
        "name": "x",
        "args": {
            "arms": [{"name": "A-1", "artifacts": "runs/x"}, {"name": "B", "artifacts": "r", "weight": -1}],
            "deployments": {"Rerankr": {}},
            "rerank": {"max_batch_size": 0},
        },
    }
    with pytest.raises(ConfigError) as exc:
        validate_args(bad, "test.yaml")
    text = exc.value.render()
    for needle in ("arms[0].name", "arms[1].weight", "deployments", "Rerankr", "rerank.max_batch_size"):
        assert needle in text, text


def test_shipped_serve_configs_chain_to_index_outputs(project_root):
    import yaml

    from recsys.serving.launch import read_serve_config, validate_args

    for scale in ("tiny", "local"):
        index_out = yaml.safe_load((project_root / "configs" / "index" / f"{scale}.yaml").read_text())[
            "output_dir"
        ]
        serve_cfg = read_serve_config(project_root / "configs" / "serve" / f"{scale}.yaml")
        assert serve_cfg["http_options"]["port"] == 8000
        for app in serve_cfg["applications"]:
            args = validate_args(app, scale)
            assert args.arms[0].artifacts.endswith(index_out)
            for name in ("Ingress", "Retriever", "Reranker", "Personalizer", "Recommender", "FeedbackSink"):
                assert "autoscaling_config" in args.deployment(name).options()
            spec = args.arm_spec(args.arms[0])  # the caches are on, sized from the config
            assert spec.response_cache.entries == args.cache.responses > 0
            assert spec.retrieval.query_cache == args.cache.query_embeddings > 0
        assert (project_root / "configs" / "serve" / f"{scale}.yaml").read_text().startswith("# ")


def test_cache_config_errors_name_the_fix():
    from pydantic import ValidationError

    from recsys.serving.config import CacheArgs

    assert CacheArgs().responses > 0 and CacheArgs().query_embeddings > 0  # on by default
    with pytest.raises(ValidationError, match="set cache.responses > 0 or drop response_ttl_s"):
        CacheArgs(responses=0, response_ttl_s=60)
    with pytest.raises(ValidationError, match="extra"):
        CacheArgs.model_validate({"entries": 10})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        CacheArgs(responses=-1)


def test_shipped_serve_configs_pass_rays_schema(project_root):
    """What `serve run` / `serve deploy` / a RayService check before building the app."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    for scale in ("tiny", "local", "cluster"):
        cfg = ServeDeploySchema.model_validate(
            yaml.safe_load((project_root / "configs/serve" / f"{scale}.yaml").read_text())
        )
        assert cfg.applications[0].import_path == "recsys.serving.app:build_app"


def test_registry_arm_resolves_the_alias_it_names(tmp_path, monkeypatch):
    """An arm ``registry: {alias: production}`` serves the index of the version holding the alias now."""
    from recsys.registry import ModelRegistry
    from recsys.serving.config import ServeArgs
    from recsys.serving.targets import resolve_arms

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # arm A names no tracking_uri: the env var applies
    index = tmp_path / "index"
    reg = ModelRegistry(tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"), model_name="games")
    for v in ("v1", "v2"):
        (index / v).mkdir(parents=True)
        reg.register(str(index / v), tags={"recsys.index_dir": str(index), "recsys.index_version": v})
    reg.promote("1")
    (tmp_path / "runs" / "index" / "b").mkdir(parents=True)
    args = ServeArgs.model_validate(
        {
            "arms": [
                {"name": "A", "registry": {"alias": "production", "model_name": "games"}},
                {"name": "B", "artifacts": "runs/index/b", "version": "v9"},
            ]
        }
    )
    built, info = resolve_arms(args)
    assert [(a.name, a.artifacts, a.version, a.registry) for a in built.arms] == [
        ("A", str(index), "v1", None),
        ("B", str(tmp_path / "runs" / "index" / "b"), "v9", None),
    ]
    assert info == {"A": {"model_name": "games", "alias": "production", "version": "1"}}
    assert args.arms[0].artifacts is None  # the validated args are not mutated
    reg.promote("2")  # a redeploy after promote follows the alias
    built, info = resolve_arms(args)
    assert (built.arms[0].version, info["A"]["version"]) == ("v2", "2")
    pinned = ServeArgs.model_validate(
        {"arms": [{"name": "A", "registry": {"alias": "1", "model_name": "games", "tracking_uri": uri}}]}
    )
    assert resolve_arms(pinned)[0].arms[0].version == "v1"
    staged = ServeArgs.model_validate(
        {"arms": [{"name": "A", "registry": {"alias": "staging", "model_name": "games"}}]}
    )
    with pytest.raises(
        ValueError,
        match=r"arm 'A' \(registry games@staging\): model 'games' has no version or alias 'staging'",
    ):
        resolve_arms(staged)


def test_registry_arm_config_errors():
    from pydantic import ValidationError

    from recsys.serving.config import ArmArgs

    with pytest.raises(
        ValidationError, match="arm 'A': give either registry .* or artifacts/version, not both"
    ):
        ArmArgs(name="A", artifacts="/x", registry={"alias": "production"})
    with pytest.raises(ValidationError, match="arm 'A': give either registry"):
        ArmArgs(name="A", version="v2", registry={})
    with pytest.raises(ValidationError, match="arm 'A': needs artifacts"):
        ArmArgs(name="A")
    with pytest.raises(ValidationError, match="must not embed credentials"):
        ArmArgs(name="A", registry={"tracking_uri": "https://u:p@mlflow.example.com"})
    assert ArmArgs(name="A", registry={}).registry.model_dump() == {
        "alias": "production",
        "model_name": "recsys",
        "tracking_uri": None,
    }


def test_versioned_reconfigure_reports_the_registry_version(tmp_path):
    """What /healthz shows per arm: the index version loaded and the registry version it came from."""
    import asyncio

    from recsys.serving.deployments import _Versioned

    for v in ("v1", "v2"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "manifest.json").write_text("{}")

    class Toy(_Versioned):
        loads: list[str] = []

        def _load(self, version):
            self.loads.append(version)
            return f"state-{version}"

    t = Toy()
    t.root = str(tmp_path)
    asyncio.run(t.reconfigure({"version": "v1"}))
    assert t.info() == {"version": "v1", "loaded": True}
    ref = {"model_name": "recsys", "alias": "production", "version": "4"}
    asyncio.run(t.reconfigure({"version": "v1", "registry": ref}))  # same index: no reload
    assert t.info() == {"version": "v1", "loaded": True, "registry": ref} and t.loads == ["v1"]
    asyncio.run(t.reconfigure({"version": "v2", "registry": {**ref, "version": "5"}}))
    assert (t.state, t.info()["registry"]["version"], t.loads) == ("state-v2", "5", ["v1", "v2"])


def test_redeploys_surge_replicas_before_stopping_old_ones():
    """Ray's default (max_surge_percent 0) stops a 1-replica deployment before its replacement is ready:
    during a promote every deployment, the ingress included, had a window with no replica."""
    from recsys.serving.config import DeploymentArgs
    from recsys.serving.deployments import Retriever

    opts = DeploymentArgs().options()
    assert opts["max_surge_percent"] == 50
    assert Retriever.options(name="Retriever_A", **opts)._deployment_config.max_surge_percent == 50
    assert DeploymentArgs(max_surge_percent=0).options()["max_surge_percent"] == 0


def test_fallback_reranker_reads_stored_vectors_instead_of_encoding(tiny_bert_dir):
    """Without a cross-encoder the reranker scores by cosine; given the candidates' index rows it
    reads their stored vectors (the index was built by the same encoder), so the scores equal the
    encode-the-text path while only the query is encoded."""
    from recsys.retrieval.encoder import TextEncoder
    from recsys.search.stages import RerankerCore

    titles = ["red zelda cartridge", "blue mario kart", "green tetris", "yellow pac man"]
    vectors = TextEncoder(str(tiny_bert_dir), max_length=16).encode(titles, kind="item")  # [4, D]
    core = RerankerCore(None, str(tiny_bert_dir), 16, embeddings=vectors)
    texts = [titles[2], titles[0], titles[3]]
    stored, encoded = (
        core.score_many([("zelda", texts, [2, 0, 3]), ("kart", titles[:2], [0, 1])]),
        core.score_many([("zelda", texts), ("kart", titles[:2])]),
    )
    for a, b in zip(stored, encoded):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [len(s) for s in stored] == [3, 2]
    # one request without rows (another index version during a reload): every text is encoded
    mixed = core.score_many([("zelda", texts, None), ("kart", titles[:2], [0, 1])])
    np.testing.assert_allclose(mixed[0], encoded[0], rtol=1e-5, atol=1e-6)


def test_deployment_threads_are_configurable_and_not_a_serve_option():
    from recsys.serving.config import DeploymentArgs

    d = DeploymentArgs(num_cpus=0.2, threads=2)
    assert (
        d.threads == 2
        and "threads" not in d.options()
        and d.options()["ray_actor_options"]["num_cpus"] == 0.2
    )
    with pytest.raises(ValueError, match="threads"):
        DeploymentArgs(threads=0)


def test_reranker_device_auto_is_cpu_without_a_gpu(monkeypatch):
    import torch

    from recsys.search.stages import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    assert pick_device("cpu") == "cpu"


def test_reranker_skips_the_batch_wait_when_idle_and_batches_under_load(ray_session, monkeypatch):
    """A request that finds the replica idle is scored at once (no batch_wait_timeout_s of latency);
    requests arriving while it runs are batched together. Off, even a lone request waits. Two
    rerankers in one process (the fused topology's arms) keep their own batch queues."""
    import asyncio
    import time

    import ray.serve.batching as batching

    from recsys.serving.config import RerankArgs
    from recsys.serving.deployments import Reranker
    from recsys.serving.specs import BatchingSettings

    # outside a replica there is no context for Serve's max_ongoing_requests warning
    monkeypatch.setattr(
        batching._BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None
    )

    class Stub:
        def __init__(self, offset: float):
            self.offset, self.batches = offset, []

        def score_many(self, reqs):
            self.batches.append(len(reqs))
            time.sleep(0.05)
            return [np.full(len(texts), self.offset + len(q)) for q, texts, _ in reqs]

    def reranker(eager: bool, offset: float = 0.0):
        r = Reranker.func_or_class(
            "unused",
            RerankArgs(max_length=32, top_n=10, weight=1.0).settings(),
        )
        r.state, r.version = Stub(offset), "v1"
        r.set_batching(
            BatchingSettings(batching=True, max_batch_size=4, batch_wait_timeout_s=2.0, eager_when_idle=eager)
        )
        return r

    async def lone(r) -> tuple[float, dict]:
        t0 = time.perf_counter()
        out = await r.rerank("q", ["a", "b"], None, "v1")
        return time.perf_counter() - t0, out

    async def main():
        a, b, lazy = reranker(True), reranker(True, offset=100.0), reranker(False)
        lone_s, out = await lone(a)
        assert lone_s < 1.0 and out == {"scores": [1.0, 1.0], "batch_size": 1}  # 0.05 s of scoring, no wait
        # a burst on both arms at once: each first request finds its replica idle, the other four
        # fill one batch of max_batch_size, scored by its own arm's model
        outs = await asyncio.gather(
            *[r.rerank("q" * i, ["a"], None, "v1") for r in (a, b) for i in range(1, 6)]
        )
        assert a.state.batches == [1, 1, 4] and b.state.batches == [1, 4]
        assert [o["scores"][0] for o in outs] == [1, 2, 3, 4, 5, 101, 102, 103, 104, 105]
        assert [o["batch_size"] for o in outs] == [1, 4, 4, 4, 4] * 2
        lone_s, out = await lone(lazy)
        assert lone_s >= 2.0 and out["batch_size"] == 1  # waited batch_wait_timeout_s for company

    asyncio.run(main())


def test_guard_middleware_rejects_before_parsing_and_times_the_answer(monkeypatch):
    """The ingress's pure-ASGI guard: 401 without the key (probes exempt), 413 over the body limit,
    and a Server-Timing header on every answer it lets through (here a 404: no Serve replica)."""
    import hashlib

    from fastapi.testclient import TestClient

    from recsys.serving import guard
    from recsys.serving.app import api

    monkeypatch.setattr(
        guard, "SETTINGS", {"api_key_sha256": hashlib.sha256(b"k").hexdigest(), "max_body_bytes": 100}
    )
    c = TestClient(api)
    r = c.post("/search", json={"query": "x"})
    assert r.status_code == 401 and r.json()["field"] == "X-API-Key" and "server-timing" not in r.headers
    r = c.post("/search", content=b"x" * 101, headers={"x-api-key": "k", "content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {
        "error": "payload_too_large",
        "field": "body",
        "message": "body over 100 bytes",
    }
    r = c.get("/nope", headers={"authorization": "Bearer k"})
    assert r.status_code == 404 and r.headers["server-timing"].startswith("app;dur=")
    assert c.get("/openapi.json").status_code == 200  # open path: no key needed
