"""Report an A/B test from served feedback: per-arm CTR / add-to-cart / conversion with CIs, p-values, SRM check."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath

NEEDS_RAY = False


class FeedbackInput(StrictModel):
    path: InputPath = Field(..., description="feedback_dir of the Serve app (hour=*/part-*.parquet).")


class AbOpeSection(StrictModel):
    """Off-policy estimates of every arm from the stochastic arms' logs (recsys.causal.ab, docs/CAUSAL.md)."""

    enabled: bool = Field(
        True, description="false: no OPE section (it is skipped anyway without stochastic logs)."
    )
    logging_arms: list[str] | None = Field(
        None,
        description="Arms whose stochastic impressions are the logs (default: every arm that logged any).",
    )
    depth: int = Field(
        10, ge=1, description="Slots evaluated (CTR = expected clicks per slot in the top depth)."
    )
    clip: float | None = Field(
        None, gt=1, description="Clip importance weights at this value (None = no clipping)."
    )
    propensities: InputPath | None = Field(
        None, description="propensities.json for DM / DR (default: regression-EM on the logs)."
    )
    estimators: list[Literal["ips", "snips", "dm", "dr", "naive"]] = Field(
        ["snips", "dr", "naive"],
        min_length=1,
        description="Columns of the markdown table (the JSON has all).",
    )
    n_bootstrap: int = Field(200, ge=0, description="Bootstrap resamples (over sessions).")


class AbReportConfig(JobConfig):
    """Config of the ab-report job."""

    feedback: FeedbackInput = Field(..., description="Feedback events written by the Serve app.")
    control: str | None = Field(None, description="Control arm (default: the first arm by name).")
    expected_weights: dict[str, float] | None = Field(
        None, description="Traffic weights of the arms (default equal) for the SRM check."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of CIs and tests.")
    srm_alpha: float = Field(
        0.001, gt=0, lt=1, description="A sample-ratio-mismatch is flagged below this p-value."
    )
    method: Literal["ztest", "bootstrap"] = Field(
        "ztest", description="Two-proportion z-test or user-level bootstrap."
    )
    n_bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples.")
    fail_on_srm: bool = Field(False, description="Exit non-zero when the SRM check fails.")
    ope: AbOpeSection = Field(
        default_factory=AbOpeSection, description="Each arm's off-policy estimate beside its online figure."
    )

    @model_validator(mode="after")
    def _weights(self) -> AbReportConfig:
        if self.expected_weights is not None and (
            not self.expected_weights or any(w < 0 for w in self.expected_weights.values())
        ):
            raise ValueError(
                "expected_weights needs at least one arm and non-negative weights, e.g. {A: 0.5, B: 0.5}"
            )
        return self


CONFIG = AbReportConfig


def run(cfg: AbReportConfig, ctx) -> dict:
    from recsys.causal import ab
    from recsys.runtime import write_json
    from recsys.serving.ab_stats import ab_report, to_markdown
    from recsys.serving.feedback import read_feedback

    with ctx.timer("read"):
        events = read_feedback(cfg.feedback.path).to_pandas()
    with ctx.timer("stats"):
        report = ab_report(
            events,
            control=cfg.control,
            expected_weights=cfg.expected_weights,
            alpha=cfg.alpha,
            srm_alpha=cfg.srm_alpha,
            method=cfg.method,
            n_bootstrap=cfg.n_bootstrap,
            seed=cfg.seed,
        )
    md = to_markdown(report)
    if cfg.ope.enabled:
        with ctx.timer("ope"):
            o = cfg.ope
            report["ope"] = ab.ope_section(
                events,
                logging_arms=o.logging_arms,
                depth=o.depth,
                clip=o.clip,
                propensities=o.propensities,
                n_bootstrap=o.n_bootstrap,
                seed=cfg.seed,
            )
        md += "\n" + ab.markdown(report["ope"], report["arms"], tuple(cfg.ope.estimators))
    write_json(ctx.path("ab_report.json"), report)
    ctx.path("ab_report.md").write_text(md, encoding="utf-8")
    ctx.log.info("[ab_report]\n%s", md)
    if cfg.fail_on_srm and report["srm"]["mismatch"]:
        raise RuntimeError(
            f"sample ratio mismatch: p={report['srm']['p_value']:.2e}, users per arm {report['srm']['observed']}"
        )
    ope_metrics = {
        f"{a}.ope.{e}": v["value"]
        for a, r in report.get("ope", {}).get("arms", {}).items()
        for e, v in r.get("estimates", {}).items()
    }
    return {
        "counts": {"events": len(events), **{f"users_{a}": r["users"] for a, r in report["arms"].items()}},
        "metrics": {
            **{
                f"{a}.{k}": r[k]
                for a, r in report["arms"].items()
                for k in ("ctr", "add_to_cart_rate", "conversion_rate")
            },
            **ope_metrics,
        },
        "ab": report,
        "artifacts": {
            "report": str(ctx.output_dir / "ab_report.json"),
            "markdown": str(ctx.output_dir / "ab_report.md"),
        },
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
