"""Report an A/B test from served feedback: per-arm CTR / add-to-cart / conversion with CIs, p-values, SRM check."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath

NEEDS_RAY = False


class FeedbackInput(StrictModel):
    path: InputPath = Field(..., description="feedback_dir of the Serve app (hour=*/part-*.parquet).")


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
    write_json(ctx.path("ab_report.json"), report)
    ctx.path("ab_report.md").write_text(to_markdown(report), encoding="utf-8")
    ctx.log.info("[ab_report]\n%s", to_markdown(report))
    if cfg.fail_on_srm and report["srm"]["mismatch"]:
        raise RuntimeError(
            f"sample ratio mismatch: p={report['srm']['p_value']:.2e}, users per arm {report['srm']['observed']}"
        )
    return {
        "counts": {"events": len(events), **{f"users_{a}": r["users"] for a, r in report["arms"].items()}},
        "metrics": {
            f"{a}.{k}": r[k]
            for a, r in report["arms"].items()
            for k in ("ctr", "add_to_cart_rate", "conversion_rate")
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
