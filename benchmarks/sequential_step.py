"""Sequential-model training step: padding-aware vs the full window, same model, same batches.

(a) baseline: the whole left-padded window (``max_len`` positions) through the transformer and
    the full-softmax logits of every position, padding included (what the loop did before);
(b) recsys now: the batch's all-padding columns dropped (``SequentialRecommender.trim_padding``)
    and logits only for real positions (``full_softmax_loss``).
Both compute the same loss (checked on every batch in eval mode); the benchmark times
forward + backward + Adam over the same ``--steps`` batches of real Games-6k training windows
(one per user, the train job's ``encode_sequences``) and prints the ratio (a) / (b).

    .venv/bin/python benchmarks/sequential_step.py --steps 30 --batch-size 256 --max-len 50
"""

from __future__ import annotations

import argparse
import json
import os
import time


def windows(max_len: int) -> tuple[list[str], object]:
    """Training windows [users, max_len + 1] of Games-6k (last two items held out, as the job)."""
    from recsys.config.base import InputConfig
    from recsys.data.adapters import read_input
    from recsys.kinds.data import _group_events, encode_sequences

    root = os.environ.get(
        "RECSYS_DATA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    )
    events = read_input(
        InputConfig(path=f"{root}/amazon-games-6k", preset="amazon-games-6k"), "events"
    ).to_pandas()
    seqs = (
        _group_events(events, []).sort_by("user_id").to_pandas()
    )  # one row per user, in user id order (as before)
    items = sorted({i for s in seqs["items"] for i in s})
    index = {item: i + 1 for i, item in enumerate(items)}
    out = encode_sequences(seqs, index, {}, max_len=max_len, holdout=2, mode="train")
    return items, out["items"]


def old_loss(model, window):
    """Baseline: every position of the full window, padding included."""
    import torch
    import torch.nn.functional as F

    inputs, targets = window[:, :-1], window[:, 1:].masked_fill(window[:, :-1] == 0, 0)
    logits = model(inputs) @ model.all_item_repr().T  # [B, L, V+1]
    logits[..., 0] = torch.finfo(logits.dtype).min
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)


def run(variant: str, items, data, args) -> dict:
    import numpy as np
    import torch

    from recsys.kinds.sequential import SequentialTask
    from recsys.models.sequential import SequentialRecommender

    torch.manual_seed(0)
    model = SequentialRecommender(
        items, hidden_size=64, num_layers=2, num_heads=2, max_len=args.max_len, dropout=0.5
    )
    task = SequentialTask(model, "full_softmax")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    batches = [
        torch.from_numpy(data[rng.choice(len(data), args.batch_size, replace=False)])
        for _ in range(args.steps + args.warmup)
    ]
    times = []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        loss = old_loss(model, b) if variant == "a" else task({"items": b})
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():  # same numbers: the two losses agree on every batch
        diff = max(abs(float(old_loss(model, b)) - float(task({"items": b}))) for b in batches[:5])
    real = float(np.mean([(b[:, 1:] != 0).sum().item() / b[:, 1:].numel() for b in batches]))
    return {
        "variant": variant,
        "steps": len(times),
        "s_per_step": float(np.mean(times)),
        "samples_per_s": args.batch_size / float(np.mean(times)),
        "max_loss_diff": diff,
        "real_position_share": real,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=50)
    args = p.parse_args()
    items, data = windows(args.max_len)
    rows = [run(v, items, data, args) for v in ("a", "b")]
    for r in rows:
        print(json.dumps(r))
    print(
        json.dumps(
            {
                "speedup_b_over_a": rows[0]["s_per_step"] / rows[1]["s_per_step"],
                "users": int(len(data)),
                "items": len(items),
                "max_len": args.max_len,
            }
        )
    )


if __name__ == "__main__":
    main()
