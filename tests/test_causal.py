"""Counterfactual logs and estimators (issue #32): policies, propensity estimation, OPE. No Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.causal import clicklog, ope, propensity
from recsys.causal.policies import LoggingPolicy, pl_marginals, rank, rank_batch


def test_policies_log_exact_or_consistent_propensities():
    rng = np.random.default_rng(0)
    scores = np.array([2.0, 1.0, 0.5, 0.0, -1.0])
    shown, prop = rank(scores, LoggingPolicy(), 3, rng)
    assert shown.tolist() == [0, 1, 2] and prop.tolist() == [1.0, 1.0, 1.0]
    shown, prop = rank(scores, LoggingPolicy("shuffle_topk", shuffle_k=4), 5, rng)
    assert sorted(shown[:4].tolist()) == [0, 1, 2, 3] and shown[4] == 4
    assert prop.tolist() == [0.25] * 4 + [1.0]
    m = pl_marginals(scores, 0.5, 5, 20000, rng)
    np.testing.assert_allclose(m.sum(0), 1.0)  # every position holds one item
    np.testing.assert_allclose(m.sum(1), 1.0)  # every item is somewhere (depth = n)
    softmax = np.exp(scores / 0.5) / np.exp(scores / 0.5).sum()
    np.testing.assert_allclose(m[:, 0], softmax, atol=0.01)  # position 1 of Plackett-Luce is the softmax
    shown, prop = rank_batch(
        np.tile(scores, (4, 1)), LoggingPolicy("plackett_luce", 0.5), 3, rng, np.tile(m, (4, 1, 1))
    )
    assert shown.shape == prop.shape == (4, 3)
    np.testing.assert_allclose(prop, m[shown, np.arange(3)])


def _three_impressions() -> ope.SlotArrays:
    # one slot per session; sessions 1 and 2 showed the candidate's item, session 3 did not
    return ope.SlotArrays(
        match=np.array([[True], [True], [False]]),
        click=np.array([[1.0], [0.0], [0.0]]),
        propensity=np.array([[0.5], [0.25], [1.0]]),
        q=np.array([[0.3], [0.2], [0.4]]),
    )


def test_estimators_equal_hand_computed_values_on_three_impressions():
    # w = [2, 4, 0]; IPS = 2/3; SNIPS = 2/6; DM = 0.9/3; DR = ((0.3 + 2*0.7) + (0.2 - 4*0.2) + 0.4)/3 = 0.5
    est = ope.estimate(_three_impressions(), n_bootstrap=0)["estimates"]
    assert est["ips"]["value"] == pytest.approx(2 / 3)
    assert est["snips"]["value"] == pytest.approx(1 / 3)
    assert est["dm"]["value"] == pytest.approx(0.3)
    assert est["dr"]["value"] == pytest.approx(0.5)
    assert est["naive"]["value"] == pytest.approx(0.5)
    clipped = ope.estimate(_three_impressions(), clip=3.0, n_bootstrap=0)  # w = [2, 3, 0]
    assert clipped["counts"]["clipped_slots"] == 1
    assert clipped["estimates"]["snips"]["value"] == pytest.approx(2 / 5)
    assert clipped["estimates"]["ips"]["value"] == pytest.approx(2 / 3)


@pytest.mark.slow  # importing obp pulls in torch, sklearn and matplotlib: seconds on a quiet machine, minutes loaded
def test_ips_and_dr_match_open_bandit_pipeline():
    obp_ope = pytest.importorskip("obp.ope")
    rng = np.random.default_rng(1)
    n, k, items = 40, 3, 5
    logged = np.argsort(rng.random((n, items)), 1)[:, :k]
    cand = np.argsort(rng.random((n, items)), 1)[:, :k]
    click = (rng.random((n, k)) < 0.4).astype(float)
    pscore = rng.uniform(0.2, 1.0, (n, k))
    qhat = rng.uniform(0, 0.5, (n, items, k))
    match = logged == cand
    slots = ope.SlotArrays(
        match,
        np.where(match, click, 0.0),
        np.where(match, pscore, 1.0),
        np.take_along_axis(qhat, cand[:, None, :], 1)[:, 0],
    )
    mine = ope.estimate(slots, n_bootstrap=0)["estimates"]
    # obp: one round per logged impression; the candidate's action distribution per (round, item, position)
    dist = np.zeros((n, items, k))
    dist[np.arange(n)[:, None], cand, np.arange(k)[None, :]] = 1.0
    rounds = dict(
        reward=click.ravel(),
        action=logged.ravel(),
        position=np.tile(np.arange(k), n),
        pscore=pscore.ravel(),
        action_dist=np.repeat(dist, k, axis=0),
    )
    ips = obp_ope.InverseProbabilityWeighting().estimate_policy_value(**rounds)
    dr = obp_ope.DoublyRobust().estimate_policy_value(
        **rounds, estimated_rewards_by_reg_model=np.repeat(qhat, k, axis=0)
    )
    assert mine["ips"]["value"] == pytest.approx(ips, rel=1e-9)
    assert mine["dr"]["value"] == pytest.approx(dr, rel=1e-9)


@pytest.fixture(scope="module")
def shuffle_log() -> clicklog.ClickLog:
    return clicklog.generate(
        clicklog.ClickLogParams(
            sessions=20000, queries=100, session_noise=0.0, policy=LoggingPolicy("shuffle_topk"), seed=3
        )
    )


@pytest.fixture(scope="module")
def ordinary_log() -> clicklog.ClickLog:
    return clicklog.generate(clicklog.ClickLogParams(sessions=20000, queries=200, session_noise=0.5, seed=4))


def test_intervention_recovers_the_examination_curve(shuffle_log):
    est = propensity.intervention(shuffle_log.impressions, 10, n_bootstrap=100)
    err = propensity.error_vs_truth(est, shuffle_log.truth["examination"])
    assert err["mean_abs_rel_error"] < 0.08, err  # 200k impressions: ~2-4 % expected
    assert np.all(np.asarray(est.ci_low) <= np.asarray(est.ci_high))


@pytest.mark.parametrize("model", ["pair", "regression"])
def test_regression_em_recovers_the_examination_curve(ordinary_log, model):
    est = propensity.regression_em(
        ordinary_log.impressions,
        10,
        relevance_model=model,
        features=ordinary_log.candidates,
        iters=150,
        n_bootstrap=2,
    )
    err = propensity.error_vs_truth(est, ordinary_log.truth["examination"])
    assert err["mean_abs_rel_error"] < 0.10, err
    assert est.counts["impressions"] == 200000


def test_ope_recovers_the_candidates_true_ctr_where_naive_does_not():
    log = clicklog.generate(
        clicklog.ClickLogParams(
            sessions=20000,
            queries=50,
            session_noise=0.0,
            policy=LoggingPolicy("plackett_luce", temperature=0.5, n_samples=4000),
            seed=5,
        )
    )
    scores = log.candidates[["query_id", "item_id", "candidate_score"]].rename(
        columns={"candidate_score": "score"}
    )
    rep = ope.evaluate(
        log.impressions, scores, np.asarray(log.truth["examination"]), depth=10, clip=None, n_bootstrap=50
    )
    true = log.truth["candidate_ctr"]
    assert abs(true - log.truth["logger_ctr"]) / log.truth["logger_ctr"] > 0.1  # a real difference to find
    for e in ("ips", "snips", "dr"):
        assert abs(rep["estimates"][e]["value"] - true) / true < 0.08, (e, rep["estimates"][e], true)
    assert abs(rep["estimates"]["naive"]["value"] - true) / true > 0.2
    c = rep["counts"]
    assert c["impressions_used"] == c["impressions_in"] == 200000 and c["slots"] == 200000


def test_bad_logs_give_errors_that_name_the_fix():
    imp = pd.DataFrame(
        {
            "session_id": [0, 0],
            "query_id": ["q", "q"],
            "item_id": ["a", "b"],
            "position": [0, 1],
            "click": [1, 0],
        }
    )
    with pytest.raises(ValueError, match="position"):
        propensity.intervention(imp.drop(columns="position"), 2)
    with pytest.raises(ValueError, match="no position"):
        propensity.intervention(imp.assign(position=[0, None]), 2)
    scores = pd.DataFrame({"query_id": ["q", "q"], "item_id": ["a", "b"], "score": [1.0, 0.0]})
    with pytest.raises(ValueError, match="propensity"):
        ope.evaluate(imp, scores, np.ones(2), depth=2, clip=None)
    with pytest.raises(ValueError, match="max_excluded_share"):
        ope.evaluate(imp.assign(propensity=[0.5, 0.0]), scores, np.ones(2), depth=2, clip=None, n_bootstrap=0)
    rep = ope.evaluate(
        imp.assign(propensity=[0.5, 0.0]),
        scores,
        np.ones(2),
        depth=2,
        clip=None,
        max_excluded_share=0.5,
        n_bootstrap=0,
    )
    assert rep["counts"]["excluded_no_propensity"] == 1 and rep["counts"]["impressions_used"] == 1
    with pytest.raises(ValueError, match="depth"):
        clicklog.generate(clicklog.ClickLogParams(candidates=5, depth=10))


@pytest.mark.slow
def test_synth_click_log_propensity_and_ope_jobs_tiny(tmp_path):
    import json

    from recsys.cli.entry import parse_job, run_parsed

    logs = tmp_path / "logs"
    run_parsed(*parse_job("synth", "configs/synth/click_log_tiny.yaml", [f"output_dir={logs}"]))
    assert json.loads((logs / "truth.json").read_text())["policy_id"] == "plackett_luce@T=0.5"
    imp = pd.read_parquet(logs / "impressions")
    assert {"position", "policy_id", "propensity"} <= set(imp.columns) and (imp["propensity"] > 0).all()
    prop = run_parsed(
        *parse_job("propensity", "tiny", [f"output_dir={tmp_path / 'p'}", f"logs={logs}"], check_paths=False)
    )
    assert prop["status"] == "succeeded", prop
    curve = json.loads((tmp_path / "p" / "propensities.json").read_text())["examination"]
    assert len(curve) == 10 and curve[0] == 1.0 and curve[9] < curve[1]
    rep = run_parsed(
        *parse_job(
            "ope",
            "tiny",
            [
                f"output_dir={tmp_path / 'o'}",
                f"logs={logs}",
                f"propensities={tmp_path / 'p' / 'propensities.json'}",
            ],
            check_paths=False,
        )
    )
    assert rep["status"] == "succeeded", rep
    assert rep["counts"]["impressions_used"] == 20000 and set(rep["ope"]["estimates"]) == set(ope.ESTIMATORS)


def test_ope_gate_stops_a_challenger_with_a_significant_predicted_drop():
    from recsys.pipeline.gates import ope_no_drop

    def report(lo: float, hi: float) -> dict:
        est = {"value": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}
        return {"ope": {"estimates": {"snips": est}, "logged_ctr": 0.12}, "counts": {"impressions_used": 10}}

    assert ope_no_drop("g", "ope", report(0.10, 0.13), "snips", 0.0).passed  # CI reaches the logged CTR
    bad = ope_no_drop("g", "ope", report(0.08, 0.10), "snips", 0.0)
    assert not bad.passed and "significant predicted drop" in bad.reason and "not deployed" in bad.reason
    assert ope_no_drop("g", "ope", report(0.08, 0.10), "snips", 0.2).passed  # a 20 % drop tolerated
    assert not ope_no_drop("g", "ope", {"counts": {}}, "dr", 0.0).passed


def test_ipw_losses_with_unit_propensities_equal_the_naive_click_losses_exactly():
    import torch

    from recsys.losses import registry
    from recsys.losses.ipw_listwise import ClickLists, IpwParams, click_softmax_loss
    from recsys.losses.ipw_pairwise import click_pairwise_loss

    registry.load()
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 5, generator=g)
    clicks = (torch.rand(4, 5, generator=g) < 0.4).float()
    mask = torch.ones(4, 5)
    mask[3, 3:] = 0
    ones = ClickLists(scores, clicks, torch.ones(4, 5), mask)
    params = IpwParams()
    lw, pw = registry.get("ipw_listwise"), registry.get("ipw_pairwise")
    assert torch.equal(lw.compute(ones, params), click_softmax_loss(scores, clicks, mask))
    assert torch.equal(pw.compute(ones, params), click_pairwise_loss(scores, clicks, clicks, mask))
    # a click at a rarely examined slot counts 1/p, clipped at propensity_clip
    low = ClickLists(scores, clicks, torch.full((4, 5), 0.001), mask)
    assert torch.allclose(lw.compute(low, params), click_softmax_loss(scores, clicks / 0.01, mask))
    assert torch.allclose(pw.compute(low, params), click_pairwise_loss(scores, clicks, clicks / 0.01, mask))
