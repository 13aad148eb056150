"""Check a Ray cluster: nodes, resources, a task on every node, the pretrained model offline."""

from __future__ import annotations

from pydantic import Field

from recsys.config import JobConfig, ModelConfig


class DoctorConfig(JobConfig):
    """Config of the doctor job."""

    model: ModelConfig | None = Field(
        default_factory=ModelConfig, description="Model every node must load offline (null = skip)."
    )
    texts: list[str] = Field(
        default_factory=lambda: ["wireless gaming mouse"],
        min_length=1,
        description="Sentences encoded on each node.",
    )
    cpus_per_probe: float = Field(0.1, gt=0, description="CPUs reserved by each node's probe task.")


CONFIG = DoctorConfig


def run(cfg: DoctorConfig, ctx) -> dict:
    from recsys.models.hub import resolve_model_path
    from recsys.ops.doctor import check_cluster

    model_path = resolve_model_path(cfg.model.name_or_path) if cfg.model else None
    with ctx.timer("probe_nodes"):
        result = check_cluster(model_path, cfg.texts, cfg.cpus_per_probe)
    for p in result["probes"]:
        ctx.log.info("node %s (%s): ok, dim=%s", p["node_id"][:8], p["hostname"], p.get("embedding_dim"))
    return {"counts": {"nodes": result["nodes"], "nodes_ok": result["nodes_ok"]}, "cluster": result}


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
