"""Where a GPU training step's time goes: the plain bi-encoder step (benchmark variant (a)) and a
bare encoder fwd+bwd at fixed shapes, timed with CUDA events, plus the torch.profiler's top ops.

    python benchmarks/gpu/profile_step.py --model /tmp/bert-base
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from train import flops_per_token  # noqa: E402 - benchmarks/train.py, the MFU formula its reports use


def timed(fn, n: int = 20, warm: int = 5) -> float:
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    from transformers import AutoModel

    from recsys.kinds.bi_encoder import BiEncoderTask
    from recsys.models.bi_encoder import BiEncoder

    dev = "cuda"
    enc = AutoModel.from_pretrained(args.model).to(dev)
    print("attn_implementation", enc.config._attn_implementation, "dtype", next(enc.parameters()).dtype)
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-5, fused=True)
    for b, s in [(128, 64), (32, 256), (256, 128)]:
        ids = torch.randint(1000, 2000, (b, s), device=dev)
        mask = torch.ones_like(ids)

        def step(ids=ids, mask=mask):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = enc(input_ids=ids, attention_mask=mask).last_hidden_state
            out.float().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        dt = timed(step)
        flops = b * s * flops_per_token(args.model, s)
        print(
            f"bare encoder fwd+bwd+adam b={b} s={s}: {dt * 1000:.1f} ms/step, {flops / dt / 1e12:.0f} TFLOP/s, "
            f"MFU {flops / dt / 989e12:.1%}"
        )

    model = BiEncoder.from_encoder(args.model, max_length=64)
    task = BiEncoderTask(model).to(dev).train()
    opt2 = torch.optim.AdamW(task.parameters(), lr=1e-5, fused=True)
    b = {
        f"{p}_{k}": torch.randint(1000, 2000, (128, 45), device=dev)
        if k == "input_ids"
        else torch.ones(128, 45, dtype=torch.long, device=dev)
        for p in ("q", "p")
        for k in ("input_ids", "attention_mask", "token_type_ids")
    }

    def task_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        opt2.step()
        opt2.zero_grad()

    print(f"bi-encoder task step b=128 s=45 (x2 towers): {timed(task_step) * 1000:.1f} ms/step")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            task_step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
