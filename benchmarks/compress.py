"""Cross-encoder pairs/s: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8, in one run.

Every backend scores the same batches of ``--batch`` (query, product) pairs (tokenization included, as
in serving) with ``--threads`` intra-op threads; the ratios are against PyTorch fp32 in the same process.
Throughput depends on the architecture, not the weights: without ``--model`` (a trained cross-encoder
directory) the packaged all-MiniLM-L6-v2 encoder is wrapped as a cross-encoder with a RANDOM head, which
times exactly what a trained MiniLM cross-encoder costs (the int8 score drift printed is then of that
random head, not a quality number: the compress job's report measures quality on a trained model).
Pairs are Abt-Buy test pairs when ``$RECSYS_DATA_ROOT`` (default ../shared/data) has them.

    python -m benchmarks.compress --threads 2 --batch 32 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _pairs(n: int) -> list[tuple[str, str]]:
    from recsys.compress.report import builtin_pairs, read_pairs

    path = Path(os.environ.get("RECSYS_DATA_ROOT", "../shared/data")) / "product-matching/abt-buy/test.txt"
    if path.is_file():
        return read_pairs(str(path), n)[0]
    return [(a, b) for a, b, _ in builtin_pairs(n)]


def _throughput(model, pairs: list[tuple[str, str]], batch: int, seconds: float) -> tuple[float, np.ndarray]:
    batches = [pairs[i : i + batch] for i in range(0, len(pairs) - batch + 1, batch)]
    scores = np.concatenate([model.score(b, batch_size=batch) for b in batches[:2]])  # warm-up + drift sample
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.score(batches[done % len(batches)], batch_size=batch)
        done += 1
    return done * batch / (time.perf_counter() - t0), scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a trained cross-encoder directory (default: MiniLM with a random head)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per backend")
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import torch

    from recsys.compress.scorers import load_scorer, load_variant
    from recsys.compress.variants import dir_size_bytes, export_variant
    from recsys.models.cross_encoder import CrossEncoder

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-compress-"))
    source = args.model
    if source is None:
        torch.manual_seed(0)
        model = CrossEncoder.from_encoder("all-MiniLM-L6-v2", max_length=128)
        source = str(model.save_pretrained(work / "minilm-random-head"))
        print("model: all-MiniLM-L6-v2 encoder + RANDOM head (no trained cross-encoder given)")
    pairs = _pairs(args.pairs)
    models = {
        "torch-fp32": (load_scorer(source, backend="torch", threads=args.threads), dir_size_bytes(source))
    }
    for kind in ("onnx", "onnx-int8"):
        path = export_variant(source, work / kind, kind)
        models[kind] = (load_variant(path, threads=args.threads), (path / "model.onnx").stat().st_size)
    torch_weights = (Path(source) / "model.safetensors").stat().st_size
    rows, ref = {}, None
    for name, (model, size) in models.items():
        pps, scores = _throughput(model, pairs, args.batch, args.seconds)
        ref = scores if ref is None else ref
        print(f"{name}: {pps:.1f} pairs/s", flush=True)
        rows[name] = {
            "pairs_s": round(pps, 1),
            "size_mb": round(size / 2**20, 2),
            "max_abs_diff": round(float(np.max(np.abs(scores - ref))), 5),
        }
    base = rows["torch-fp32"]
    print(f"threads={args.threads} batch={args.batch} seconds={args.seconds} pairs={len(pairs)}")
    print(f"{'backend':<12}{'pairs/s':>10}{'x torch':>9}{'MB':>9}{'size x':>8}{'max|diff|':>11}")
    for name, r in rows.items():
        size_mb = r["size_mb"] if name != "torch-fp32" else round(torch_weights / 2**20, 2)
        r["speedup"] = round(r["pairs_s"] / base["pairs_s"], 2)
        r["size_ratio"] = round(size_mb * 2**20 / torch_weights, 3)
        print(
            f"{name:<12}{r['pairs_s']:>10.1f}{r['speedup']:>9.2f}{size_mb:>9.1f}{r['size_ratio']:>8.3f}{r['max_abs_diff']:>11.5f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
