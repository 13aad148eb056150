"""Issue #32 in serving: an arm's stochastic policy, the propensities its pages carry, /feedback logging them,
and the causal jobs reading the feedback sink directly. No Ray: the Ingress's calls, in order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys.causal import served
from recsys.causal.policies import rank
from recsys.serving.policy import ServingPolicy


def _ranked(n: int) -> list[dict]:
    """What the pipeline returns: catalog records, best first, with score and position."""
    return [
        {"item_id": str(i), "title": f"t{i}", "score": round(1.0 - i / n, 6), "position": i} for i in range(n)
    ]


def test_deterministic_policy_is_the_default_and_serves_the_ranking_as_is():
    from recsys.serving.config import PolicyArgs

    p = PolicyArgs().settings()
    assert p == ServingPolicy() and p.fetch_k(5) == 5
    page = p.serve(_ranked(5), 5, "ab" * 16)
    assert [i["item_id"] for i in page] == ["0", "1", "2", "3", "4"] and [
        i["position"] for i in page
    ] == list(range(5))
    assert {(i["policy_id"], i["propensity"]) for i in page} == {("deterministic", 1.0)}
    later = ServingPolicy("plackett_luce", top_k=8).serve(_ranked(3), 3, "ab" * 16, page=2)
    assert [(i["position"], i["propensity"]) for i in later] == [(6, 1.0), (7, 1.0), (8, 1.0)]


def test_stochastic_policies_sample_k_distinct_items_with_the_propensities_they_computed():
    ranked = _ranked(12)
    sh = ServingPolicy("shuffle_topk", top_k=8, seed=3)
    assert sh.fetch_k(5) == 8 and sh.fetch_k(5, page=1) == 5
    pages = [sh.serve(ranked[:8], 5, f"{r:032x}") for r in range(30)]
    for page in pages:
        ids = [i["item_id"] for i in page]
        assert len(ids) == 5 == len(set(ids)) and set(ids) <= {str(j) for j in range(8)}
        assert [i["propensity"] for i in page] == [1 / 8] * 5 and page[0]["policy_id"] == "shuffle_top8"
    assert len({tuple(i["item_id"] for i in p) for p in pages}) > 20  # the order varies between requests
    assert sh.serve(ranked[:8], 5, f"{7:032x}") == pages[7]  # replayable from the request_id

    pl = ServingPolicy("plackett_luce", temperature=0.2, top_k=6, n_samples=4000, seed=1)
    rid = "0123456789abcdef" * 2
    page = pl.serve(ranked[:6], 4, rid)
    scores = np.array([it["score"] for it in ranked[:6]])
    shown, prop = rank(scores, pl.logging_policy(), 4, pl.rng(rid))  # the policy's own computation
    assert [i["item_id"] for i in page] == [str(j) for j in shown] and [
        i["propensity"] for i in page
    ] == prop.tolist()
    assert page[0]["policy_id"] == "plackett_luce@T=0.2" and [i["position"] for i in page] == [0, 1, 2, 3]
    # position 1 of Plackett-Luce is the softmax: the logged propensity of the first item estimates it
    firsts = pd.Series([pl.serve(ranked[:6], 1, f"{r:032x}")[0]["item_id"] for r in range(400)])
    soft = np.exp(scores / 0.2) / np.exp(scores / 0.2).sum()
    one = pl.serve(ranked[:6], 1, f"{5:032x}")[0]
    assert one["propensity"] == pytest.approx(soft[int(one["item_id"])], abs=0.03)
    assert firsts.value_counts(normalize=True).get("0", 0.0) == pytest.approx(soft[0], abs=0.08)
    assert len(pl.serve(ranked[:2], 4, rid)) == 2  # a short catalog: every item once, no more


def test_serve_config_takes_a_policy_per_arm_and_rejects_bad_ones():
    from recsys.serving.config import ArmArgs, PolicyArgs, ServeArgs

    args = ServeArgs(
        arms=[
            ArmArgs(name="A", artifacts="/x"),
            ArmArgs(
                name="B", artifacts="/x", policy=PolicyArgs(kind="plackett_luce", temperature=0.3, top_k=20)
            ),
        ]
    )
    a, b = (args.arm_spec(arm) for arm in args.arms)
    assert a.policy.kind == "deterministic" and b.policy == ServingPolicy("plackett_luce", 0.3, 20, 2000, 0)
    for bad in ({"kind": "softmax"}, {"temperature": 0}, {"top_k": 1}):
        with pytest.raises(ValidationError):
            PolicyArgs(**bad)


def test_feedback_round_trip_logs_the_served_propensities_and_the_ope_job_reads_them(tmp_path):
    """Served pages -> /feedback bodies (the schema) -> the sink's Parquet -> served impressions -> ope job."""
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.serving.feedback import read_feedback, to_events, write_partitioned
    from recsys.serving.schemas import FeedbackRequest

    pl = ServingPolicy("plackett_luce", temperature=0.3, top_k=6, n_samples=500)
    ranked, rows, served_pages = _ranked(6), [], {}
    rng = np.random.default_rng(0)
    for r in range(60):
        rid = f"{r:032x}"
        page = pl.serve(ranked, 4, rid)
        served_pages[rid] = page
        events = [
            {"item_id": i["item_id"], "event_type": "impression", "position": i["position"],
             "policy_id": i["policy_id"], "propensity": i["propensity"]}
            for i in page
        ]  # fmt: skip
        events += [{"item_id": page[0]["item_id"], "event_type": "click", "position": 0}] * int(
            rng.random() < 0.5
        )
        body = FeedbackRequest(user_id=f"u{r}", query="mario", request_id=rid, events=events)
        rows += to_events(body.model_dump(), "B")
    rows += to_events(
        {"user_id": "x", "request_id": "nope", "events": [{"item_id": "9", "event_type": "click"}]}, "B"
    )
    write_partitioned(rows, tmp_path / "fb")
    logged_fb = read_feedback(tmp_path / "fb").to_pandas()
    impressions = logged_fb["event_type"] == "impression"
    assert (
        logged_fb.loc[impressions, "propensity"].notna().all()
        and logged_fb.loc[~impressions, "propensity"].isna().all()
    )

    imp, counts = served.read_impressions(tmp_path / "fb")
    assert counts["impressions"] == 240 and counts["clicks_without_impression"] == 1
    assert counts["impressions_without_propensity"] == 0 and counts["duplicate_impressions"] == 0
    logged = imp.set_index(["session_id", "position"])["propensity"]
    assert all(logged[rid, i["position"]] == i["propensity"] for rid, p in served_pages.items() for i in p)
    assert int(imp["click"].sum()) == counts["feedback_clicks"] - 1 and set(imp["query_id"]) == {"mario"}

    cands = pd.DataFrame({"query_id": "mario", "item_id": [str(j) for j in range(6)], "cand": np.arange(6.0)})
    cands.to_parquet(tmp_path / "cands.parquet")
    over = [
        f"output_dir={tmp_path / 'o'}",
        f"logs={tmp_path / 'fb'}",
        f"candidate.path={tmp_path / 'cands.parquet'}",
    ]
    rep = run_parsed(
        *parse_job("ope", "tiny", [*over, "candidate.score_column=cand", "depth=4"], check_paths=False)
    )
    assert rep["status"] == "succeeded", rep
    c = rep["counts"]
    assert c["impressions_in"] == c["impressions_used"] == 240 and c["clicks_without_impression"] == 1
    assert c["matched_slots"] > 0 and np.isfinite(rep["ope"]["estimates"]["snips"]["value"])


def test_feedback_rejects_a_zero_propensity_and_a_log_without_positions_is_an_error(tmp_path):
    from recsys.causal import clicklog
    from recsys.serving.feedback import to_events, write_partitioned
    from recsys.serving.schemas import FeedbackRequest

    with pytest.raises(ValidationError, match="propensity"):
        FeedbackRequest(user_id="u", events=[{"item_id": "1", "event_type": "impression", "propensity": 0}])
    body = {"user_id": "u", "request_id": "r", "events": [{"item_id": "1", "event_type": "impression"}]}
    write_partitioned(to_events(body, "A"), tmp_path)
    imp, counts = clicklog.read_impressions(tmp_path)
    assert counts["impressions_without_propensity"] == 1 and imp["query_id"].tolist() == ["recommend:u"]
    from recsys.causal import ab
    from recsys.causal.ope import slot_arrays

    skipped = ab.ope_by_arm(imp, logging_arms=None, depth=1, clip=None)  # nothing stochastic: said, not fatal
    assert "stochastic" in skipped["skipped"] and skipped["counts"]["logging_impressions"] == 0

    with pytest.raises(ValueError, match="no position"):
        slot_arrays(imp, {"recommend:u": ["1"]}, 1, np.ones(1), {}, 0.1)


def _page_events(page: list[dict], clicked) -> list[dict]:
    """A served page's /feedback events: each item's impression (position, policy_id, propensity as served),
    then a click for each item ``clicked`` marks."""
    impressions = [
        {"event_type": "impression", **{k: i[k] for k in ("item_id", "position", "policy_id", "propensity")}}
        for i in page
    ]
    return impressions + [
        {"item_id": i["item_id"], "event_type": "click"} for i, c in zip(page, clicked) if c
    ]


def _ab_feedback(root, sessions: int = 1500, k: int = 4, seed: int = 0) -> dict[str, float]:
    """Feedback of a two-arm test on a position-based click model: arm A serves Plackett-Luce samples of a
    mediocre ranker (logging propensities), arm B the deterministic order of a better one. Returns each arm's
    exact expected CTR (clicks per slot) on its sessions."""
    from recsys.serving.feedback import to_events, write_partitioned

    rng = np.random.default_rng(seed)
    n_q, n_items = 6, 8
    rel = rng.uniform(0.05, 0.6, size=(n_q, n_items))
    theta = 1.0 / (1.0 + np.arange(k))
    logger = ServingPolicy("plackett_luce", temperature=0.3, top_k=n_items, n_samples=500)
    mediocre = rel + rng.normal(0, 0.2, size=rel.shape)
    better = np.argsort(-rel, axis=1)[:, :k]  # B: the true order
    rows, exp = [], {"A": [], "B": []}
    for s in range(sessions):
        for arm in ("A", "B"):
            q = int(rng.integers(n_q))
            rid = f"{arm}{s}"
            if arm == "A":
                ranked = [
                    {"item_id": f"q{q}i{j}", "score": float(mediocre[q, j])} for j in np.argsort(-mediocre[q])
                ]
                page = logger.serve(ranked, k, rid)
            else:
                page = ServingPolicy().serve(
                    [{"item_id": f"q{q}i{j}", "score": 0.0} for j in better[q]], k, rid
                )
            r = np.array([rel[q, int(i["item_id"].split("i")[1])] for i in page])
            exp[arm].append(float((theta * r).mean()))
            clicks = rng.random(k) < theta * r
            events = _page_events(page, clicks)
            rows += to_events(
                {"user_id": f"{arm}u{s}", "query": f"q{q}", "request_id": rid, "events": events}, arm
            )
    write_partitioned(rows, root)
    return {a: float(np.mean(v)) for a, v in exp.items()}


def test_ab_report_shows_each_arms_off_policy_estimate_beside_its_online_ctr(tmp_path):
    from recsys.cli.entry import parse_job, run_parsed

    truth = _ab_feedback(tmp_path / "fb")
    over = [
        f"feedback.path={tmp_path / 'fb'}",
        f"output_dir={tmp_path / 'o'}",
        "ope.depth=4",
        "ope.n_bootstrap=100",
    ]
    rep = run_parsed(*parse_job("ab_report", "configs/ab_report/tiny.yaml", over))
    assert rep["status"] == "succeeded", rep
    o = rep["ab"]["ope"]
    assert o["logging_arms"] == ["A"] and o["counts"]["logging_impressions"] == 1500 * 4
    assert (
        o["counts"]["excluded_deterministic_in_logging_arms"] == 0
        and o["counts"]["clicks_without_impression"] == 0
    )
    b = o["arms"]["B"]
    assert b["counts"]["impressions_used"] == 6000 and b["counts"]["clipped_slots"] == 0
    # B's CTR predicted from A's logs alone: within 10 % of B's exact CTR, the CI covering it; naive replay is biased
    for e in ("snips", "dr"):
        est = b["estimates"][e]
        assert (
            est["value"] == pytest.approx(truth["B"], rel=0.10)
            and est["ci_low"] < truth["B"] < est["ci_high"]
        )
    assert b["estimates"]["naive"]["value"] > 1.1 * truth["B"]
    assert rep["ab"]["arms"]["B"]["ctr"] == pytest.approx(truth["B"], rel=0.10)  # the online figure beside it
    assert truth["B"] > 1.1 * truth["A"]
    md = (tmp_path / "o" / "ab_report.md").read_text()
    assert "| arm | online CTR [CI] | SNIPS [CI] | DR [CI] | NAIVE [CI] | used | clipped | excluded |" in md
    assert rep["metrics"]["B.ope.snips"] == b["estimates"]["snips"]["value"]


def test_propensity_job_reads_a_shuffle_arms_served_logs_and_recovers_the_examination_curve(tmp_path):
    """A shuffle_topk arm's pages and position-based clicks -> the feedback sink -> `recsys run propensity`
    (intervention estimator) on the feedback dir."""
    import json

    from recsys.cli.entry import parse_job, run_parsed
    from recsys.serving.feedback import to_events, write_partitioned

    rng = np.random.default_rng(0)
    theta, rel = 1.0 / np.arange(1, 6), rng.uniform(0.2, 0.8, size=(10, 5))
    arm, rows = ServingPolicy("shuffle_topk", top_k=5), []
    for r in range(4000):
        q = int(rng.integers(10))
        page = arm.serve([{"item_id": f"q{q}i{j}", "score": -j} for j in range(5)], 5, f"r{r}")
        clicked = rng.random(5) < theta * rel[q, [int(i["item_id"].split("i")[1]) for i in page]]
        events = _page_events(page, clicked)
        rows += to_events(
            {"user_id": f"u{r}", "query": f"q{q}", "request_id": f"r{r}", "events": events}, "S"
        )
    write_partitioned(rows, tmp_path / "fb")
    over = [f"output_dir={tmp_path / 'p'}", f"logs={tmp_path / 'fb'}", "estimators=[intervention]", "depth=5"]
    rep = run_parsed(*parse_job("propensity", "tiny", [*over, "n_bootstrap=50"], check_paths=False))
    assert rep["status"] == "succeeded", rep
    assert rep["counts"]["impressions"] == 20_000 and rep["counts"]["clicks_without_impression"] == 0
    curve = json.loads((tmp_path / "p" / "propensities.json").read_text())["examination"]
    np.testing.assert_allclose(curve, theta, atol=0.06)
