"""Reranker replicas alone (GPU or CPU): latency at a fixed request rate and the @serve.batch ratio.

The project's ``Reranker`` deployment (the same class the Serve app binds) scores ``--candidates``
(query, product text) pairs per request with a cross-encoder, called through its DeploymentHandle:

1. **rate**: open loop at ``--rate`` requests/s per replica for ``--duration`` s with dynamic
   batching on: p50/p95/p99 latency, achieved rate, errors, mean batch size;
2. **batching**: closed loop at ``--concurrency`` workers, batching off (one request per forward
   pass, the baseline) then on: throughput ratio.

A replica takes the GPU when ``--num-gpus`` > 0 (fp16 inference, one pass per dynamic batch).
Texts are real product titles/descriptions from a product-matching set. Latency depends on the
architecture, not the weights, so ``--arch`` builds a random cross-encoder of that size when no
trained ``--model`` is given (``--tokenizer`` names its vocabulary).

    python -m benchmarks.serve_reranker --num-gpus 1 --arch minilm-l6 --tokenizer TOK --rate 500 --candidates 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path

from benchmarks.serve_load import closed_loop, open_loop

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_texts(path: str, n: int = 5000) -> tuple[list[str], list[str]]:
    """Queries (left titles cut to 1-4 words) and candidate texts (right records) of a matching set."""
    from recsys.config.base import InputConfig
    from recsys.data.adapters import read_input

    df = read_input(InputConfig(path=path, preset="product-matching"), "pairs").to_pandas().head(n)
    rng = random.Random(0)
    queries = [" ".join(str(t).split()[: rng.randint(1, 4)]) for t in df["left"]]
    return queries, [str(t) for t in df["right"]]


def build_model(args, out: str) -> str:
    """A trained CrossEncoder directory, or a random one of ``--arch`` saved the recsys way."""
    if args.model:
        return args.model
    from benchmarks.random_encoder import make_random_encoder
    from recsys.models import CrossEncoder

    enc = make_random_encoder(args.arch, args.tokenizer, os.path.join(out, "encoder"))
    ce = CrossEncoder.from_encoder(enc, max_length=args.max_length)
    ce.save_pretrained(os.path.join(out, "cross-encoder"))
    return os.path.join(out, "cross-encoder")


def stub_artifacts(out: str) -> str:
    """The Reranker resolves an index version before loading; a cross-encoder reads nothing from it."""
    root = Path(out) / "artifacts"
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "manifest.json").write_text("{}")
    (root / "latest").write_text("bench\n")
    return str(root)


async def run(args, handle, queries, texts) -> dict:
    rng = random.Random(0)
    from recsys.serving.specs import BatchingSettings

    batching = {
        "version": "latest",
        **asdict(
            BatchingSettings(
                batching=True,
                max_batch_size=args.max_batch_size,
                batch_wait_timeout_s=args.batch_wait_s,
                eager_when_idle=True,
            )
        ),
    }
    await handle.reconfigure.remote(batching)
    await closed_loop(
        handle, queries, texts, 8, 3.0, args.candidates, rng
    )  # warm-up (CUDA kernels, allocator)
    out = {
        "rate": [
            await open_loop(handle, queries, texts, r, args.duration, args.candidates, rng) for r in args.rate
        ]
    }
    await handle.reconfigure.remote({**batching, "batching": False})
    off = await closed_loop(handle, queries, texts, args.concurrency, args.duration, args.candidates, rng)
    await handle.reconfigure.remote(batching)
    on = await closed_loop(handle, queries, texts, args.concurrency, args.duration, args.candidates, rng)
    out["batching"] = {
        "concurrency": args.concurrency,
        "off": off,
        "on": on,
        "ratio": on["rps"] / max(off["rps"], 1e-9),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        default=os.path.join(
            os.environ.get("RECSYS_DATA_ROOT", "../shared/data"), "product-matching/abt-buy"
        ),
    )
    ap.add_argument("--model", default=None, help="a trained CrossEncoder directory")
    ap.add_argument("--arch", default="minilm-l6", help="random cross-encoder size when no --model")
    ap.add_argument(
        "--tokenizer", default=None, help="tokenizer directory for --arch (default: the packaged MiniLM)"
    )
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--num-gpus", type=float, default=0.0)
    ap.add_argument("--num-cpus", type=float, default=1.0)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument(
        "--rate", type=float, nargs="+", default=[500.0], help="open-loop requests/s (one run each)"
    )
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--batch-wait-s", type=float, default=0.005)
    ap.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx", "onnx-int8", "torch-int8"],
        help="rerank.backend: onnx kinds export the model with the compress library first (CPU replicas)",
    )
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"], help="GPU torch")
    ap.add_argument(
        "--pad-to-multiple-of",
        type=int,
        default=0,
        help="static-shape buckets (e.g. 16 with --torch-compile)",
    )
    ap.add_argument("--torch-compile", action="store_true", help="torch.compile the encoder (GPU path)")
    args = ap.parse_args()
    if not args.model and not args.tokenizer:
        from recsys.models.hub import resolve_model_path

        args.tokenizer = resolve_model_path("all-MiniLM-L6-v2")
    import ray
    from ray import serve

    from recsys.runtime import start_local_ray
    from recsys.search.settings import RerankSettings
    from recsys.serving.deployments import Reranker

    queries, texts = load_texts(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args, tmp)
        if args.backend != "torch":
            from recsys.compress.variants import export_variant

            model = str(export_variant(model, os.path.join(tmp, args.backend), args.backend))
        start_local_ray(env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}, log_to_driver=False)
        app = Reranker.options(
            name="RerankerBench",
            num_replicas=1,
            max_ongoing_requests=max(args.concurrency * 2, 256),
            ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
            user_config={"version": "latest"},
        ).bind(
            stub_artifacts(tmp),
            RerankSettings(
                model=model,
                max_length=args.max_length,
                top_n=args.candidates,
                weight=1.0,
                backend=args.backend,
                precision=args.precision,
                pad_to_multiple_of=args.pad_to_multiple_of,
                torch_compile=args.torch_compile,
            ),
        )
        handle = serve.run(app, name="bench-rerank", route_prefix=None)
        info = handle.info.remote().result()
        res = asyncio.run(run(args, handle, queries, texts))
        serve.shutdown()
        ray.shutdown()
    res["setup"] = {
        "model": args.model or f"random {args.arch}",
        "num_gpus": args.num_gpus,
        "candidates": args.candidates,
        "max_length": args.max_length,
        "max_batch_size": args.max_batch_size,
        "backend": args.backend,
        "precision": args.precision,
        "pad_to_multiple_of": args.pad_to_multiple_of,
        "torch_compile": args.torch_compile,
        "replica": info,
    }
    if args.num_gpus:
        import torch

        res["setup"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
