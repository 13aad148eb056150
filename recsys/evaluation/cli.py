"""``recsys evaluate-run --run RUN --qrels QRELS [--json] [-m METRIC ...]``."""

from __future__ import annotations

import json
import sys

from recsys.evaluation.trec import evaluate_run


def evaluate_run_command(run_file: str, qrels: str, metrics: list[str] | None, as_json: bool) -> int:
    try:
        out = evaluate_run(run_file, qrels, metrics or None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate-run: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for k, v in out.items():
            print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0
