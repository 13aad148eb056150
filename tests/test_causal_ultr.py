"""Unbiased learning to rank (issue #32): the DLA loss's exact reduction to IPS, and the ultr study job on its
tiny config (naive / IPS / DLA / oracle against the known relevance). No Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _lists(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(5, 6, generator=g, requires_grad=True)
    clicks = (torch.rand(5, 6, generator=g) < 0.4).float()
    mask = torch.ones(5, 6)
    mask[4, 4:] = 0
    return scores, clicks, mask


def test_dla_with_a_fixed_propensity_model_is_exactly_ips():
    from recsys.losses import registry
    from recsys.losses.dla import DlaLists, PositionPropensity, dla_losses
    from recsys.losses.ipw_listwise import ClickLists, IpwParams

    registry.load()
    scores, clicks, mask = _lists()
    prop = PositionPropensity(6)
    with torch.no_grad():
        prop.logits.copy_(torch.log(1.0 / torch.arange(1, 7, dtype=torch.float32)))  # theta = 1/(p+1)
    positions = torch.arange(6).expand(5, 6)
    params = IpwParams(propensity_clip=0.01)
    ranker, _ = dla_losses(DlaLists(scores, clicks, prop(positions), mask), params)
    theta = torch.exp(prop.logits - prop.logits[0]).detach()[positions]  # psi_k / psi_0 of the fixed model
    ips = registry.get("ipw_listwise").compute(ClickLists(scores, clicks, theta, mask), params)
    assert torch.equal(ranker, ips)
    np.testing.assert_allclose(prop.propensities(), 1.0 / np.arange(1, 7), rtol=1e-6)
    # the ranker's gradient of the full DLA loss is IPS's: the propensity model's loss does not reach the scores
    total = registry.get("dla").compute(DlaLists(scores, clicks, prop(positions).detach(), mask), params)
    (g_dla,) = torch.autograd.grad(total, scores)
    (g_ips,) = torch.autograd.grad(ips, scores)
    assert torch.allclose(g_dla, g_ips)
    # and a uniform propensity model is the naive click loss
    flat, _ = dla_losses(DlaLists(scores, clicks, torch.zeros(5, 6), mask), params)
    naive = registry.get("ipw_listwise").compute(ClickLists(scores, clicks, torch.ones(5, 6), mask), params)
    assert torch.equal(flat, naive)


def test_dla_learns_the_examination_curve_of_a_position_based_click_model():
    from recsys.causal import clicklog, ultr
    from recsys.losses import registry

    registry.load()
    torch.set_num_threads(1)
    log = clicklog.generate(clicklog.ClickLogParams(sessions=2000, queries=40, depth=5, seed=1))
    _, x, rel, where = ultr.candidate_arrays(log.candidates)
    lists, _ = ultr.session_lists(log.impressions, x, rel, where, 5)
    _, learned = ultr.train("dla", lists, np.ones(5), ultr.TrainSettings(steps=150, lr=0.1))
    assert learned is not None and learned[0] == 1.0
    np.testing.assert_allclose(learned, log.truth["examination"], atol=0.12)  # 1, 1/2, 1/3, 1/4, 1/5


def test_ndcg_is_one_for_the_true_order_and_below_for_another():
    from recsys.causal.ultr import ndcg_at

    rel = np.array([[0.9, 0.1, 0.5, 0.0]])
    assert ndcg_at(rel, rel, 3)[0] == pytest.approx(1.0)
    worst = ndcg_at(-rel, rel, 3)[0]
    assert worst == pytest.approx((0.0 + 0.1 / np.log2(3) + 0.5 / 2) / (0.9 + 0.5 / np.log2(3) + 0.1 / 2))


@pytest.mark.slow
def test_ultr_job_tiny_ips_and_dla_beat_naive(tmp_path):
    from recsys.cli.entry import parse_job, run_parsed

    rep = run_parsed(*parse_job("ultr", "tiny", [f"output_dir={tmp_path}"]))
    assert rep["status"] == "succeeded", rep
    s = rep["study"]
    assert set(s["ndcg"]) == {"naive", "ips", "dla", "oracle"} and s["ndcg"]["oracle"] > s["ndcg"]["naive"]
    assert s["gap_closed"]["ips"] > 0.5 and s["gap_closed"]["dla"] > 0.3 and s["gap_closed"]["oracle"] == 1.0
    assert set(s["paired_vs_naive"]) == {"ips", "dla", "oracle"} and (tmp_path / "study.json").exists()
