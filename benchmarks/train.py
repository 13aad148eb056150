"""Training throughput: the same bi-encoder, data, batch and steps, measured in one run.

(a) a plain single-process PyTorch loop (the baseline), (b) Ray Train DDP with 1 and 2 workers,
(c) Ray Train DeepSpeed ZeRO-2 (2 workers), (d) the sentence-transformers trainer. Model:
all-MiniLM-L6-v2 bi-encoder, in-batch InfoNCE; data: Amazon-Google matching pairs (positives).
Throughput = training samples / wall seconds of the timed steps (first ``--warmup`` steps excluded
for (a) and (d); for Ray Train the loop's own samples/s over all steps, so it includes the
first steps' warm-up and the data pipeline -- a conservative figure for Ray).

    .venv/bin/python benchmarks/train.py --steps 30 --batch-size 16 --max-length 48

Prints one JSON line per variant and the ratios vs (a). CPU timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_pairs(path: str, n: int) -> list[tuple[str, str]]:
    from recsys.config.base import InputConfig
    from recsys.data.adapters import read_input

    df = read_input(InputConfig(path=path, preset="product-matching"), "pairs").to_pandas()
    df = df[(df["split"] == "train") & (df["label"] > 0)].head(n)
    return list(zip(df["left"].astype(str), df["right"].astype(str), strict=True))


def plain_loop(pairs, steps: int, batch: int, max_length: int, warmup: int, threads: int) -> dict:
    """(a): BiEncoderTask + AdamW on pre-tokenized batches, one process."""
    import torch

    from recsys.models.bi_encoder import BiEncoder
    from recsys.training.data import trim_batch
    from recsys.training.tasks import BiEncoderTask

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = BiEncoder.from_encoder("all-MiniLM-L6-v2", max_length=max_length)
    task = BiEncoderTask(model).train()
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=2e-5)
    tok = model.tokenizer

    def batch_at(i):
        rows = [pairs[(i * batch + j) % len(pairs)] for j in range(batch)]
        q = tok([r[0] for r in rows], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        p = tok([r[1] for r in rows], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        b = {f"q_{k}": v for k, v in q.items()} | {f"p_{k}": v for k, v in p.items()}
        return trim_batch(b, ("q_", "p_"))

    batches = [batch_at(i) for i in range(steps)]
    t0 = None
    for i, b in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
        loss = task(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    dt = time.perf_counter() - t0
    return {"variant": "a_plain_pytorch", "samples_per_s": (steps - warmup) * batch / dt}


def ray_train(path: str, n: int, steps: int, batch: int, max_length: int, workers: int, strategy: str,
              cpus: float) -> dict:
    """(b)/(c): the project's train loop through TorchTrainer; samples/s as reported by rank 0."""
    from recsys.training.config import TrainConfig
    from recsys.training.trainer import run_training

    cfg = TrainConfig.model_validate({
        "model": {"kind": "bi_encoder", "name_or_path": "all-MiniLM-L6-v2", "max_length": max_length},
        "data": {"train": {"path": path, "preset": "product-matching"}, "max_train_rows": n * 8,
                 "max_valid_rows": 32},
        "optim": {"lr": 2e-5, "warmup_ratio": 0.0, "scheduler": "constant"},
        "strategy": {"name": strategy, "deepspeed": {"zero_stage": 2}},
        "train": {"batch_size": batch, "max_steps": steps, "eval_every": steps, "eval_batch_size": 32,
                  "num_to_keep": 1, "resume": False},
        "scaling": {"num_workers": workers, "cpus_per_worker": cpus},
    })
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = run_training(cfg, out)
        wall = time.perf_counter() - t
    m = res["final_metrics"]
    return {"variant": f"{'b' if strategy == 'ddp' else 'c'}_ray_{strategy}_{workers}w",
            "samples_per_s": m["samples_per_s"], "wall_s_incl_startup": round(wall, 1), "steps": m["step"]}


def st_trainer(pairs, steps: int, batch: int, max_length: int, warmup: int, threads: int) -> dict:
    """(d): SentenceTransformerTrainer + MultipleNegativesRankingLoss, same model / batch / steps."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from recsys.models.hub import resolve_model_path

    torch.set_num_threads(threads)
    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = max_length
    rows = [pairs[i % len(pairs)] for i in range(steps * batch)]
    ds = Dataset.from_dict({"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]})
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=2e-5,
            warmup_steps=0, logging_steps=10**6, save_strategy="no", report_to=[], dataloader_drop_last=True,
            use_cpu=True, seed=0, max_grad_norm=1.0)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                             loss=MultipleNegativesRankingLoss(model), callbacks=[Clock()])
        trainer.train()
    dt = marks[steps] - marks[warmup]
    return {"variant": "d_sentence_transformers", "samples_per_s": (steps - warmup) * batch / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(os.environ.get("RECSYS_DATA_ROOT", "../shared/data"),
                                                   "product-matching/amazon-google"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--only", nargs="*", default=["a", "b1", "b2", "c", "d"])
    args = ap.parse_args()
    import ray

    from recsys.runtime import start_local_ray

    start_local_ray(num_cpus=2, env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}, log_to_driver=False)
    pairs = load_pairs(args.data, args.steps * args.batch_size)
    results = []
    runs = {
        "a": lambda: plain_loop(pairs, args.steps, args.batch_size, args.max_length, args.warmup, 1),
        "b1": lambda: ray_train(args.data, len(pairs), args.steps, args.batch_size, args.max_length, 1, "ddp", 1.0),
        "b2": lambda: ray_train(args.data, len(pairs), args.steps, args.batch_size, args.max_length, 2, "ddp", 0.5),
        "c": lambda: ray_train(args.data, len(pairs), args.steps, args.batch_size, args.max_length, 2, "deepspeed", 0.5),
        "d": lambda: st_trainer(pairs, args.steps, args.batch_size, args.max_length, args.warmup, 1),
    }
    for key in args.only:
        r = runs[key]()
        results.append(r)
        print(json.dumps(r), flush=True)
    base = next((r["samples_per_s"] for r in results if r["variant"].startswith("a_")), None)
    if base:
        for r in results:
            print(f"{r['variant']:28s} {r['samples_per_s']:8.2f} samples/s   ratio vs (a) {r['samples_per_s'] / base:5.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
