"""Training throughput: the same bi-encoder, data, batch and steps, measured in one run.

(a) a plain single-process PyTorch loop (the baseline), (b) Ray Train DDP with 1 and 2 workers,
(c) Ray Train DeepSpeed ZeRO-2 (2 workers), (d) the sentence-transformers trainer. Model:
all-MiniLM-L6-v2 bi-encoder, in-batch InfoNCE; data: Amazon-Google matching pairs (positives).
Throughput = training samples / wall seconds of the timed steps (first ``--warmup`` steps excluded
for (a) and (d); for Ray Train the loop's own samples/s over all steps, so it includes the
first steps' warm-up and the data pipeline -- a conservative figure for Ray).

    .venv/bin/python benchmarks/train.py --steps 30 --batch-size 16 --max-length 48

Prints one JSON line per variant and the ratios vs (a). CPU timings on a shared machine are noisy.

On a GPU (``--device cuda``, bf16 autocast / DeepSpeed bf16, one Ray Train worker holding the GPU)
each variant also reports tokens/s and MFU: training FLOPs per token = 6 * non-embedding params +
12 * layers * hidden * mean sequence length (fwd + bwd, attention included), over ``--peak-tflops``
(H100 SXM dense bf16: 989). ``--report RUN/report.json`` prints the same for a train job's run
(each validation window's samples/s, tokens/s and GPU memory):

    python benchmarks/random_encoder.py --arch bert-base --tokenizer TOK --out /tmp/bert-base
    python benchmarks/train.py --device cuda --model /tmp/bert-base --batch-size 64 --steps 120 --warmup 20 \\
        --only a b1 c d
    python benchmarks/train.py --report runs/train/cluster/report.json --model /tmp/bert-base
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


def flops_per_token(model: str, seq_len: float) -> float:
    """Training FLOPs per token of a BERT-family encoder: 6 N (N = non-embedding parameters; fwd 2N,
    bwd 4N) + 12 L H S (attention scores and weighted sum, fwd + bwd)."""
    from transformers import AutoConfig

    from recsys.models.hub import resolve_model_path

    c = AutoConfig.from_pretrained(resolve_model_path(model))
    h, layers, inter = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    per_layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h  # attention, FFN, 2 LayerNorms
    return 6 * layers * per_layer + 12 * layers * h * seq_len


def add_mfu(r: dict, model: str, peak_tflops: float) -> dict:
    """Adds mfu (share of ``peak_tflops``) from tokens/s and the mean sequence length."""
    if r.get("tokens_per_s") and r.get("samples_per_s"):
        seq = r["tokens_per_s"] / r["samples_per_s"] / r.get("sequences_per_sample", 1)
        r["mean_seq_len"] = round(seq, 1)
        r["mfu"] = r["tokens_per_s"] * flops_per_token(model, seq) / (peak_tflops * 1e12)
    return r


def plain_loop(
    pairs,
    steps: int,
    batch: int,
    max_length: int,
    warmup: int,
    threads: int,
    model_name: str = "all-MiniLM-L6-v2",
    device: str = "cpu",
    precision: str = "fp32",
) -> dict:
    """(a): BiEncoderTask + AdamW on pre-tokenized batches, one process."""
    import contextlib

    import torch

    from recsys.kinds.bi_encoder import BiEncoderTask
    from recsys.kinds.data import trim_batch
    from recsys.models.bi_encoder import BiEncoder

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = BiEncoder.from_encoder(model_name, max_length=max_length)
    task = BiEncoderTask(model).to(device).train()
    opt = torch.optim.AdamW(
        [p for p in task.parameters() if p.requires_grad], lr=2e-5, fused=True if device == "cuda" else None
    )
    autocast = (
        torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    tok = model.tokenizer

    def batch_at(i):
        rows = [pairs[(i * batch + j) % len(pairs)] for j in range(batch)]
        q = tok(
            [r[0] for r in rows],
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        p = tok(
            [r[1] for r in rows],
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        b = {f"q_{k}": v for k, v in q.items()} | {f"p_{k}": v for k, v in p.items()}
        return trim_batch(b, ("q_", "p_"))

    batches = [{k: v.to(device) for k, v in batch_at(i).items()} for i in range(steps)]
    tokens = sum(v.numel() for b in batches[warmup:] for k, v in b.items() if k.endswith("input_ids"))
    t0 = None
    for i, b in enumerate(batches):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        with autocast:
            loss = task(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    sync(device)
    dt = time.perf_counter() - t0
    return {
        "variant": "a_plain_pytorch",
        "samples_per_s": (steps - warmup) * batch / dt,
        "tokens_per_s": tokens / dt,
        "sequences_per_sample": 2,
        **gpu_memory(device),
    }


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def gpu_memory(device: str) -> dict:
    import torch

    if device != "cuda":
        return {}
    out = {"gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    torch.cuda.reset_peak_memory_stats()
    return out


def ray_train(
    path: str,
    n: int,
    steps: int,
    batch: int,
    max_length: int,
    workers: int,
    strategy: str,
    cpus: float,
    model_name: str = "all-MiniLM-L6-v2",
    use_gpu: bool = False,
    precision: str = "fp32",
    warmup: int = 0,
) -> dict:
    """(b)/(c): the project's train loop through TorchTrainer; samples/s as reported by rank 0.
    With ``warmup`` > 0 the loop validates (a 32-row pass) after ``warmup`` steps, so its last
    report's window holds only the steps after it, as (a) and (d) exclude their first steps."""
    from recsys.training.config import TrainConfig
    from recsys.training.trainer import run_training

    cfg = TrainConfig.model_validate(
        {
            "model": {"kind": "bi_encoder", "name_or_path": model_name, "max_length": max_length},
            "data": {
                "train": {"path": path, "preset": "product-matching"},
                "max_train_rows": n * 8,
                "max_valid_rows": 32,
            },
            "optim": {"lr": 2e-5, "warmup_ratio": 0.0, "scheduler": "constant"},
            "strategy": {"name": strategy, "precision": precision, "deepspeed": {"zero_stage": 2}},
            "train": {
                "batch_size": batch,
                "max_steps": steps,
                "eval_every": warmup or steps,
                "eval_batch_size": 32,
                "num_to_keep": 1,
                "resume": False,
            },
            "scaling": {"num_workers": workers, "cpus_per_worker": cpus, "use_gpu": use_gpu},
        }
    )
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = run_training(cfg, out)
        wall = time.perf_counter() - t
    m = res["final_metrics"]
    out = {
        "variant": f"{'b' if strategy == 'ddp' else 'c'}_ray_{strategy}_{workers}w",
        "samples_per_s": m["samples_per_s"],
        "tokens_per_s": m.get("tokens_per_s"),
        "sequences_per_sample": 2,
        "wall_s_incl_startup": round(wall, 1),
        "steps": m["step"],
    }
    return out | ({"gpu_mem_gb": round(m["gpu_mem_gb"], 2)} if "gpu_mem_gb" in m else {})


def st_trainer(
    pairs,
    steps: int,
    batch: int,
    max_length: int,
    warmup: int,
    threads: int,
    model_name: str = "all-MiniLM-L6-v2",
    device: str = "cpu",
    precision: str = "fp32",
) -> dict:
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
    model = SentenceTransformer(resolve_model_path(model_name), device=device)
    model.max_seq_length = max_length
    rows = [pairs[i % len(pairs)] for i in range(steps * batch)]
    ds = Dataset.from_dict({"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]})
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=2e-5,
            warmup_steps=0,
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            dataloader_drop_last=True,
            use_cpu=device == "cpu",
            bf16=precision == "bf16",
            seed=0,
            max_grad_norm=1.0,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=ds,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[Clock()],
        )
        trainer.train()
    dt = marks[steps] - marks[warmup]  # the trainer syncs the GPU each step (loss logging), so marks are real
    return {"variant": "d_sentence_transformers", "samples_per_s": (steps - warmup) * batch / dt}


def from_report(path: str, model: str, peak_tflops: float) -> None:
    """Per validation window of a train job's report.json: samples/s, tokens/s, GPU memory, MFU."""
    hist = json.loads(open(path).read())["history"]
    for h in hist:
        r = {k: h[k] for k in ("step", "samples_per_s", "tokens_per_s", "gpu_mem_gb") if k in h}
        print(json.dumps(add_mfu(r, model, peak_tflops)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        default=os.path.join(
            os.environ.get("RECSYS_DATA_ROOT", "../shared/data"), "product-matching/amazon-google"
        ),
    )
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--only", nargs="*", default=["a", "b1", "b2", "c", "d"])
    ap.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="encoder alias or save_pretrained() directory"
    )
    ap.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: one GPU; Ray Train variants use 1 worker holding it (b2 is skipped)",
    )
    ap.add_argument(
        "--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on cuda, fp32 on cpu"
    )
    ap.add_argument(
        "--peak-tflops", type=float, default=989.0, help="bf16 dense peak for MFU (H100 SXM: 989)"
    )
    ap.add_argument(
        "--report", default=None, help="print per-window throughput and MFU of a train job's report.json"
    )
    args = ap.parse_args()
    if args.report:
        from_report(args.report, args.model, args.peak_tflops)
        return
    import ray

    from recsys.runtime import start_local_ray

    gpu = args.device == "cuda"
    prec = args.precision or ("bf16" if gpu else "fp32")
    cpus = os.cpu_count() if gpu else 2
    start_local_ray(
        num_cpus=cpus, env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}, log_to_driver=False
    )
    pairs = load_pairs(args.data, args.steps * args.batch_size)
    results = []
    common = dict(model_name=args.model, use_gpu=gpu, precision=prec, warmup=args.warmup if gpu else 0)
    threads = max(1, cpus // 2) if gpu else 1
    runs = {
        "a": lambda: plain_loop(
            pairs,
            args.steps,
            args.batch_size,
            args.max_length,
            args.warmup,
            threads,
            args.model,
            args.device,
            prec,
        ),
        "b1": lambda: ray_train(
            args.data,
            len(pairs),
            args.steps,
            args.batch_size,
            args.max_length,
            1,
            "ddp",
            threads if gpu else 1.0,
            **common,
        ),
        "b2": lambda: ray_train(
            args.data, len(pairs), args.steps, args.batch_size, args.max_length, 2, "ddp", 0.5, **common
        ),
        "c": lambda: ray_train(
            args.data,
            len(pairs),
            args.steps,
            args.batch_size,
            args.max_length,
            1 if gpu else 2,
            "deepspeed",
            threads if gpu else 0.5,
            **common,
        ),
        "d": lambda: st_trainer(
            pairs,
            args.steps,
            args.batch_size,
            args.max_length,
            args.warmup,
            threads,
            args.model,
            args.device,
            prec,
        ),
    }
    for key in args.only:
        if gpu and key == "b2":
            continue
        r = runs[key]()
        if gpu:
            r = add_mfu(r, args.model, args.peak_tflops)
        results.append(r)
        print(json.dumps(r), flush=True)
    base = next((r["samples_per_s"] for r in results if r["variant"].startswith("a_")), None)
    st = next((r["samples_per_s"] for r in results if r["variant"].startswith("d_")), None)
    for r in results:
        line = f"{r['variant']:28s} {r['samples_per_s']:8.2f} samples/s"
        line += f"   ratio vs (a) {r['samples_per_s'] / base:5.2f}" if base else ""
        line += f"   ratio vs (d) {r['samples_per_s'] / st:5.2f}" if st else ""
        line += f"   MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
        print(line)
    ray.shutdown()


if __name__ == "__main__":
    main()
