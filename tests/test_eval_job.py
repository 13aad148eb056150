"""End to end: ``recsys run evaluate`` on each protocol (full / sampled / file candidates, time split,
retrieval, matching) with tiny slices of the real data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.cli.entry import parse_job, run_parsed
from recsys.config import load_config
from recsys.config.loader import ConfigError
from recsys.jobs_registry import get_job


def _run(data: dict, tmp_path):
    spec = get_job("evaluate")
    cfg = load_config(spec.config_cls, None, data={"output_dir": str(tmp_path / "out"), **data})
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded"
    return report


@pytest.fixture(scope="module")
def beauty_slice(shared_data, tmp_path_factory):
    lines = (shared_data / "amazon-beauty" / "Beauty.txt").read_text().splitlines()[:400]
    rows = [ln.split() for ln in lines]
    d = tmp_path_factory.mktemp("beauty")
    pd.DataFrame({"user_id": [r[0] for r in rows], "items": [r[1:] for r in rows]}).to_parquet(
        d / "sequences.parquet"
    )
    cands = {r[0]: [str(int(r[-1]) + k) for k in range(1, 30)] for r in rows[:100] if len(r) > 4}
    pd.DataFrame({"user_id": list(cands), "items": list(cands.values())}).to_parquet(d / "candidates.parquet")
    pd.DataFrame(
        {"user_id": [r[0] for r in rows], "country": ["DE" if i % 3 else "FR" for i in range(len(rows))]}
    ).to_parquet(d / "users.parquet")
    return d


@pytest.fixture(scope="module")
def pairs_slice(shared_data, tmp_path_factory):
    from recsys.data.presets import ditto_text

    rows = []
    for split in ("valid", "test"):
        for ln in (
            (shared_data / "product-matching" / "abt-buy" / f"{split}.txt").read_text().splitlines()[:250]
        ):
            left, right, label = ln.split("\t")
            rows.append(
                {"left": ditto_text(left), "right": ditto_text(right), "label": int(label), "split": split}
            )
    df = pd.DataFrame(rows)
    df["left_id"], df["right_id"] = df["left"], df["right"]
    d = tmp_path_factory.mktemp("pairs")
    df.to_parquet(d / "pairs.parquet")
    return d / "pairs.parquet"


def _tracked_results(project_root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((project_root / "docs" / "results").glob("*.json"))}


def test_tiny_config_full_ranking_time_split(ray_session, tmp_path, project_root):
    tracked = _tracked_results(project_root)
    spec, cfg = parse_job(
        "evaluate",
        "tiny",
        [
            f"output_dir={tmp_path}",
            "protocol.max_queries=60",
            "bootstrap=50",
            "models[name=itemknn].params.neighbors=20",  # a list element by name, typed as YAML
        ],
    )
    assert cfg.results_json is None and cfg.models[2].params == {"neighbors": 20}
    report = run_parsed(spec, cfg)
    # no results_json: the leaderboard lands in the run directory only, the tracked results are untouched
    saved = json.loads((tmp_path / "results.json").read_text())
    assert report["artifacts"]["results"] == str(tmp_path / "results.json")
    assert "results_json" not in report["artifacts"]
    assert [r["model"] for r in saved["leaderboard"]] == [r["model"] for r in report["leaderboard"]]
    assert saved["config"]["models"][2]["params"] == {"neighbors": 20}
    assert _tracked_results(project_root) == tracked
    assert report["status"] == "succeeded" and report["summary"]["protocol"] == "full"
    lb = {r["model"]: r for r in report["leaderboard"]}
    assert set(lb) == {"pop", "recent-pop", "itemknn", "rrf"}
    assert all(0 <= r["recall@20"] <= 1 and len(r["ci95"]["recall@20"]) == 2 for r in lb.values())
    assert "coverage@10" in lb["pop"] and report["significance"]
    per = pd.read_parquet(tmp_path / "per_query.parquet")
    assert len(per) == 4 * report["counts"]["test_queries"] and "activity" in per.columns
    assert (tmp_path / "report.html").read_text().count("<table>") >= 2


def test_sampled_and_file_candidates_with_tuning_ensembles_kfold(ray_session, tmp_path, beauty_slice):
    base = {
        "data": {
            "events": {"path": str(beauty_slice / "sequences.parquet")},
            "users": {"path": str(beauty_slice / "users.parquet")},
        },
        "metrics": ["ndcg@10", "hit_rate@10", "auc"],
        "bootstrap": 100,
        "significance_resamples": 200,
    }
    models = [
        {"name": "pop", "kind": "popularity"},
        {"name": "bpr", "kind": "bpr", "params": {"iterations": 10}, "tune": {"factors": [8, 16]}},
        {"name": "knn", "kind": "itemknn"},
    ]
    report = _run(
        {
            **base,
            "protocol": {"n_negatives": 50, "kfold": 2},
            "models": models,
            "reference": "pop",
            "results_json": str(tmp_path / "res.json"),
            "ensembles": [
                {"name": "w", "members": ["pop", "knn"], "method": "weighted"},
                {"name": "lr", "members": ["pop", "knn", "bpr"], "method": "learned"},
            ],
        },
        tmp_path / "a",
    )
    lb = {r["model"]: r for r in report["leaderboard"]}
    assert report["summary"]["protocol"] == "sampled(51 candidates)"
    assert len(lb["bpr"]["info"]["tuning"]) == 2 and "weights" in lb["w"]["info"]
    assert (
        set(report["kfold"]) == {"pop", "bpr", "knn"} and len(report["kfold"]["pop"]["ndcg@10"]["folds"]) == 2
    )
    assert {s["vs"] for s in report["significance"]} == {"pop"} and all(
        0 < s["p_permutation"] <= 1 for s in report["significance"]
    )
    per = pd.read_parquet(tmp_path / "a" / "out" / "per_query.parquet")
    assert set(per["country"]) == {"DE", "FR"}
    assert "country=FR" in (tmp_path / "a" / "out" / "report.html").read_text()
    assert (
        json.loads((tmp_path / "res.json").read_text())["leaderboard"][0]["model"]
        == report["leaderboard"][0]["model"]
    )
    # the asked-for copy is the run directory's results.json, byte for byte
    assert (tmp_path / "res.json").read_bytes() == (tmp_path / "a" / "out" / "results.json").read_bytes()
    assert report["artifacts"]["results_json"] == str(tmp_path / "res.json")
    file_report = _run(
        {
            **base,
            "data": {**base["data"], "candidates": {"path": str(beauty_slice / "candidates.parquet")}},
            "protocol": {"candidates": "file", "users": "with_candidates"},
            "models": models[:1],
        },
        tmp_path / "b",
    )
    assert (
        file_report["summary"]["protocol"].startswith("sampled(")
        and file_report["counts"]["test_queries"] <= 100
    )


def test_retrieval_and_matching_on_pairs(ray_session, tmp_path, pairs_slice, tiny_bert_dir):
    from recsys.models import CrossEncoder

    CrossEncoder.from_encoder(str(tiny_bert_dir), max_length=32).save_pretrained(tmp_path / "ce")
    zs = {"name": "zeroshot", "kind": "zeroshot", "params": {"model": str(tiny_bert_dir)}}
    ce = {"name": "ce", "kind": "model", "path": str(tmp_path / "ce"), "standalone": False}
    report = _run(
        {
            "data": {"pairs": {"path": str(pairs_slice)}},
            "bootstrap": 50,
            "significance_resamples": 200,
            "protocol": {"task": "retrieval", "candidates": "full"},
            "metrics": ["recall@10", "mrr"],
            "models": [{"name": "bm25", "kind": "bm25"}, zs, ce],
            "ensembles": [
                {"name": "hybrid", "members": ["bm25", "zeroshot"]},
                {"name": "hybrid+ce", "members": ["hybrid", "ce"], "method": "rerank", "top_n": 5},
            ],
        },
        tmp_path / "r",
    )
    lb = {r["model"]: r for r in report["leaderboard"]}
    assert lb["bm25"]["recall@10"] > 0.5  # names share model numbers: lexical retrieval is strong here
    assert set(lb) == {"bm25", "zeroshot", "hybrid", "hybrid+ce"}  # the re-ranker alone is not ranked
    info = lb["hybrid+ce"]["info"]
    assert (
        info["top_n"] == 5
        and info["rerank_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        and "valid_recall@10" in info
    )  # primary = the first metric
    # re-ranking permutes each query's top 5 only: recall@10 is the hybrid's
    assert lb["hybrid+ce"]["recall@10"] == pytest.approx(lb["hybrid"]["recall@10"])
    match = _run(
        {
            "data": {"pairs": {"path": str(pairs_slice)}},
            "protocol": {"task": "matching"},
            "bootstrap": 50,
            "significance_resamples": 200,
            "models": [zs],
        },
        tmp_path / "m",
    )
    row = match["leaderboard"][0]
    assert 0 <= row["f1"] <= 1 and row["n_pairs"] == 250 and len(row["ci95"]["f1"]) == 2


def test_missing_trained_models_are_named_before_anything_runs(tmp_path):
    from recsys.experiments import run

    spec = get_job("evaluate")
    cfg = load_config(
        spec.config_cls,
        None,
        data={
            "output_dir": str(tmp_path),
            "data": {"pairs": {"path": __file__}},
            "protocol": {"task": "retrieval"},
            "models": [
                {"name": "a", "kind": "bm25"},
                {"name": "m1", "kind": "model", "path": str(tmp_path / "x")},
                {"name": "m2", "kind": "model", "path": str(tmp_path / "y")},
            ],
        },
    )
    with pytest.raises(FileNotFoundError, match=r"m1: .*x; m2: .*y\. Train them first"):
        run(cfg, None)


def test_config_errors_are_collected_and_name_the_fix():
    spec = get_job("evaluate")
    with pytest.raises(ConfigError) as exc:
        load_config(
            spec.config_cls,
            None,
            data={
                "data": {},
                "metrics": ["ndcg"],
                "models": [{"name": "m", "kind": "model"}],
                "ensembles": [{"name": "e", "members": ["m", "x"]}],
            },
        )
    text = exc.value.render()
    assert "needs a cutoff" in text and "kind=model needs path" in text
    models = [
        {"name": "a", "kind": "bm25"},
        {"name": "ce", "kind": "model", "path": "m", "standalone": False},
    ]
    base = {"data": {"pairs": {"path": __file__}}, "protocol": {"task": "retrieval"}}
    with pytest.raises(ConfigError, match=r"method rerank takes members \[first stage, re-ranker\], got 3"):
        load_config(
            spec.config_cls,
            None,
            data={
                **base,
                "models": models,
                "ensembles": [{"name": "r", "members": ["a", "ce", "a"], "method": "rerank"}],
            },
        )
    with pytest.raises(ConfigError, match=r"models \['b'\] have standalone: false but no ensemble uses them"):
        load_config(
            spec.config_cls,
            None,
            data={
                **base,
                "models": [*models, {"name": "b", "kind": "zeroshot", "standalone": False}],
                "ensembles": [{"name": "r", "members": ["a", "ce"], "method": "rerank"}],
            },
        )
