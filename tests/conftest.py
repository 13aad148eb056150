"""Shared fixtures: one Ray for the whole session, paths to the shared data, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys.utils.net import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# ranx (the reference the metric tests compare with) compiles its numba kernels on first use: ~40 s of CPU
# per session, against <5 s to run them as plain Python on the tests' small runs. No recsys code path uses
# numba (bm25s runs its numpy backend by default), so only the reference checks see this.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
# Ray Train's controller polls its workers every 2 s (start, every report, the end): 0.5 s takes ~1-2 s off
# each of the suite's ~20 Train runs. A missed poll is only logged (a worker is declared dead after 600 s).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECSYS_DATA_ROOT", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or RECSYS_DATA_ROOT); tests read slices of it, never copy it."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it (2 CPUs, like CI)."""
    import ray

    if not ray.is_initialized():
        from recsys.runtime import start_local_ray

        # Ray 2.60 gives a raylet a fixed 30 s to register (ray/_private/node.py; no setting): on a
        # machine loaded by other Rays it can miss that, so the session's one start is tried 3 times.
        for attempt in range(3):
            try:
                # dashboard on (Ray Train frees a stopped trial's placement group through its State API), on
                # a free port rather than 8265, with its address given to the workers (several Rays per machine)
                start_local_ray(
                    num_cpus=2,
                    env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
                    log_to_driver=False,
                    dashboard_port=free_port(),
                )
                break
            except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
                if "timed out during startup" not in str(exc) or attempt == 2:
                    raise
                ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers, hidden 32) saved the HF way, with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from recsys.models.hub import resolve_model_path

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_cross_encoder(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """A tiny random cross-encoder (``tiny_bert_dir`` + a fresh head) saved the recsys way (``"torch"``) and
    its ``onnx`` and ``onnx-int8`` variants written by the compress library (a few seconds). Its linear and
    embedding weights are drawn at std 0.2 (as tests/test_compress.py does): at BERT's default 0.02 every
    input scores alike and int8 noise swamps the differences a trained model has."""
    import torch

    from recsys.compress.variants import export_variant
    from recsys.models import CrossEncoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-ce")
    model = CrossEncoder.from_encoder(str(tiny_bert_dir), max_length=64)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.weight.normal_(0.0, 0.2)
    torch_dir = model.save_pretrained(out / "model")
    variants = {k: export_variant(torch_dir, out / k, k, model=model) for k in ("onnx", "onnx-int8")}
    return {"torch": Path(torch_dir), **variants}


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    """A real 2-node Ray cluster on this machine (head + 1 worker node), via cluster/local/start.sh.

    Yields the job-submission address; stopped with cluster/local/stop.sh (only this cluster).
    """
    import subprocess

    # Overridable so that two test runs on one machine (developers, CI) do not collide.
    port = int(os.environ.get("RECSYS_TEST_RAY_PORT", "6421"))
    dash = int(os.environ.get("RECSYS_TEST_DASHBOARD_PORT", "8321"))
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "RECSYS_CLUSTER_DIR": str(state), "RECSYS_RUNS_ROOT": str(state / "runs")}
    for attempt in range(3):  # a raylet that misses Ray's fixed 30 s registration (loaded machine): again
        start = subprocess.run(
            [
                str(ROOT / "cluster/local/start.sh"),
                "--workers",
                "1",
                "--port",
                str(port),
                "--dashboard-port",
                str(dash),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        if start.returncode == 0:
            break
        subprocess.run([str(ROOT / "cluster/local/stop.sh"), "--port", str(port)], env=env)
        if "timed out during startup" not in start.stdout + start.stderr or attempt == 2:
            pytest.fail(f"local cluster did not start:\n{start.stdout}\n{start.stderr}")
    yield {
        "address": f"http://127.0.0.1:{dash}",
        "ray_address": f"127.0.0.1:{port}",
        "runs": state / "runs",
        "env": env,
    }
    subprocess.run([str(ROOT / "cluster/local/stop.sh"), "--port", str(port)], env=env, timeout=60)
