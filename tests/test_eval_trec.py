"""``recsys evaluate-run``: TREC run + qrels scored exactly like ranx, JSON output, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recsys.cli.main import app
from recsys.evaluation.trec import evaluate_run


@pytest.fixture
def trec_files(tmp_path):
    rng = np.random.default_rng(0)
    run, qrels = [], []
    for q in range(40):
        docs = rng.choice(200, 50, replace=False)
        scores = rng.normal(size=50)
        for r, (d, s) in enumerate(sorted(zip(docs, scores), key=lambda x: -x[1])):
            run.append(f"q{q:03d} Q0 d{d} {r + 1} {s:.6f} test")
        for d in rng.choice(200, 5, replace=False):
            qrels.append(f"q{q:03d} 0 d{d} {rng.integers(0, 3)}")
    (tmp_path / "run.txt").write_text("\n".join(run) + "\n")
    (tmp_path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return tmp_path / "run.txt", tmp_path / "qrels.txt"


def test_matches_ranx(trec_files):
    from ranx import Qrels, Run, evaluate

    run_p, qrels_p = trec_files
    names = ["ndcg@10", "recall@20", "precision@5", "mrr", "map", "map@10", "hit_rate@10"]
    ours = evaluate_run(run_p, qrels_p, names)
    qrels = Qrels.from_file(str(qrels_p), kind="trec")
    run = Run.from_file(str(run_p), kind="trec")
    ref = evaluate(qrels, run, names, make_comparable=True)
    for n in names:
        assert ours[n] == pytest.approx(ref[n], abs=1e-6), n


def test_cli_json_and_errors(trec_files, tmp_path):
    run_p, qrels_p = trec_files
    res = CliRunner().invoke(app, ["evaluate-run", "--run", str(run_p), "--qrels", str(qrels_p), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"ndcg@10", "recall@100", "mrr", "map"} <= set(out) and out["n_queries"] > 0
    bad = tmp_path / "bad.txt"
    bad.write_text("q1 Q0 d1\n")
    res = CliRunner().invoke(app, ["evaluate-run", "--run", str(bad), "--qrels", str(qrels_p)])
    assert res.exit_code == 1 and "qid Q0 docid rank score tag" in res.output
