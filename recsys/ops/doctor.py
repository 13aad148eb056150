"""Cluster health check: which nodes are alive, what they have, whether each one can run a task
and load the configured pretrained model offline."""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from recsys.models.hub import load_pretrained


def _probe(model_path: str | None, texts: list[str]) -> dict[str, Any]:
    """Runs on one node: report host facts and (optionally) encode texts with the model."""
    out: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    }
    if model_path:
        import torch  # lazy: only a probe that loads the model needs torch

        t0 = time.perf_counter()
        model, tok = load_pretrained(model_path)
        batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state  # [B, T, H]
        out["embedding_dim"] = int(hidden.shape[-1])
        out["model_load_encode_s"] = round(time.perf_counter() - t0, 3)
    return out


def check_cluster(model: str | None, texts: list[str], cpus_per_probe: float) -> dict[str, Any]:
    """Run one probe on every alive node (node-affinity scheduling) and summarise."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(_probe)
    refs = [
        probe.options(
            num_cpus=cpus_per_probe,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False),
        ).remote(model, texts)
        for n in nodes
    ]
    results = ray.get(refs)
    return {
        "nodes": len(nodes),
        "cluster_resources": ray.cluster_resources(),
        "probes": results,
        "nodes_ok": sum(1 for r in results if r.get("node_id")),
    }
