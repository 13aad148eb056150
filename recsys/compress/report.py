"""The compress run: build each variant of a model, compare its scores with the torch model's on a
fixed sample, benchmark it, and return one report row per variant (the torch fp32 model first)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.compress import bench
from recsys.compress.config import CompressConfig

log = logging.getLogger(__name__)

_WORDS = (
    "wireless controller black edition ps4 xbox headset gaming mouse keyboard mechanical rgb usb cable "
    "charger 2m fast hdmi monitor 27 inch 4k stand tripod camera lens 50mm canon nikon sony bluetooth "
    "speaker portable waterproof laptop sleeve 15.6 bag backpack travel ssd 1tb nvme external drive"
).split()


def builtin_pairs(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """``n`` deterministic product-like pairs (half share most words: label 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        left = " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 12))))
        if i % 2 == 0:
            words = left.split()
            right = " ".join(list(rng.permutation(words)) + list(rng.choice(_WORDS, size=2)))
        else:
            right = " ".join(rng.choice(_WORDS, size=int(rng.integers(3, 20))))
        out.append((left, right, int(i % 2 == 0)))
    return out


def read_pairs(path: str | None, size: int, seed: int = 0) -> tuple[list[tuple[str, str]], np.ndarray | None]:
    """The comparison sample: pairs and labels (None when the sample has none)."""
    if path is None:
        rows = builtin_pairs(size, seed)
        return [(a, b) for a, b, _ in rows], np.asarray([r[2] for r in rows])
    if path.endswith(".txt"):
        from recsys.data.presets import ditto_text

        lines = Path(path).read_text(encoding="utf-8").splitlines()[:size]
        parts = [ln.split("\t") for ln in lines if ln.strip()]
        pairs = [(ditto_text(p[0]) or "", ditto_text(p[1]) or "") for p in parts]
        labels = np.asarray([int(p[2]) for p in parts]) if all(len(p) > 2 for p in parts) else None
        return pairs, labels
    import pandas as pd

    df = pd.read_parquet(path).head(size)
    missing = {"left", "right"} - set(df.columns)
    if missing:
        raise ValueError(
            f"sample.path {path!r} lacks columns {sorted(missing)}; give a pairs table (left, right[, label]) "
            "or a Ditto .txt file"
        )
    pairs = [(str(a), str(b)) for a, b in zip(df["left"], df["right"])]
    return pairs, (df["label"].to_numpy().astype(int) if "label" in df.columns else None)


def agreement(ref: np.ndarray, scores: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """How closely ``scores`` follow the torch model's ``ref`` on the same pairs.

    ``decision_agreement``: share of pairs on the same side of 0 (the logit a matcher thresholds);
    ``spearman``: rank correlation; ``top10_overlap``: share of the torch top 10 kept; with labels,
    ``f1`` at logit 0 of this variant (and the torch model's in its own row)."""
    from scipy.stats import spearmanr

    k = min(10, len(ref))
    top_ref, top = set(np.argsort(-ref)[:k].tolist()), set(np.argsort(-scores)[:k].tolist())
    rho = spearmanr(ref, scores).statistic if len(ref) > 1 and np.std(ref) > 0 and np.std(scores) > 0 else 1.0
    out: dict[str, Any] = {
        "max_abs_diff": round(float(np.max(np.abs(ref - scores))), 6),
        "decision_agreement": round(float(np.mean((ref > 0) == (scores > 0))), 4),
        "spearman": round(float(rho), 4),
        "top10_overlap": round(len(top_ref & top) / k, 4),
    }
    if labels is not None:
        out["f1"] = round(f1_at_zero(scores, labels), 4)
    return out


def f1_at_zero(scores: np.ndarray, labels: np.ndarray) -> float:
    pred = scores > 0
    tp = float(np.sum(pred & (labels == 1)))
    denom = float(np.sum(pred) + np.sum(labels == 1))
    return 2 * tp / denom if denom else 0.0


def _row(
    name: str,
    backend: str,
    model: Any,
    size_bytes: int,
    pairs: Sequence[tuple[str, str]],
    cfg: CompressConfig,
) -> dict[str, Any]:
    before = bench.rss_mb()
    fn = bench.score_fn(model)
    row: dict[str, Any] = {"variant": name, "backend": backend, "size_mb": round(size_bytes / 2**20, 3)}
    row.update(bench.latency(fn, pairs, cfg.bench.batch_sizes, cfg.bench.repeats, cfg.bench.warmup))
    row["pairs_s"] = row[f"pairs_s_b{cfg.bench.throughput_batch}"]
    row["rss_mb"] = round(bench.rss_mb(), 1)
    row["rss_delta_mb"] = round(bench.rss_mb() - before, 1)
    row["peak_rss_mb"] = round(bench.peak_rss_mb(), 1)
    return row


def _isolated_rss(row: dict[str, Any], pairs: Sequence[tuple[str, str]], cfg: CompressConfig) -> None:
    if cfg.bench.isolated_rss:
        row["isolated_peak_rss_mb"] = bench.isolated_peak_rss_mb(
            row["path"], cfg.bench.threads, pairs, cfg.bench.batch_sizes
        )


def source_model_dir(cfg: CompressConfig, workdir: Path) -> Path:
    """The saved model to compress (a `random` one is built and saved under ``workdir``)."""
    if cfg.model.path is not None:
        return Path(cfg.model.path)
    import torch

    from recsys.models import model_class

    torch.manual_seed(cfg.seed)
    cls = model_class(cfg.model.random or "")
    model = cls.from_encoder(cfg.model.encoder, max_length=cfg.model.max_length)
    log.warning(
        "compressing a RANDOM %s over %s (model.random): a smoke test, not a trained model",
        cfg.model.random,
        cfg.model.encoder,
    )
    return Path(model.save_pretrained(workdir / "source_model"))


@dataclass(frozen=True)
class Source:
    """One model whose rows the report holds: the model being compressed (``torch``, the reference), a
    configured extra model (e.g. the distilled student) or the pruned model, with the variants built of it."""

    name: str
    path: Path
    variants: tuple[str, ...]

    def row_name(self, kind: str | None = None) -> str:
        """``torch`` / ``onnx-int8`` for the reference; ``student`` / ``student/onnx-int8`` for others."""
        if self.name == "torch":
            return kind or "torch"
        return self.name if kind is None else f"{self.name}/{kind}"

    def variant_dir(self, output_dir: Path, kind: str) -> Path:
        return output_dir / "variants" / (kind if self.name == "torch" else f"{self.name}-{kind}")


def pruned_source(cfg: CompressConfig, source: Path, output_dir: Path) -> tuple[Source, dict[str, Any]]:
    """Prune ``source`` as ``cfg.prune`` says, fine-tune it to recover (when configured); the pruned model
    as a Source and what was done."""
    from recsys.compress.prune import prune_saved_model, recover

    pc = cfg.prune
    assert pc is not None  # called only with a prune section
    pairs: list[tuple[str, str]] = []
    labels = None
    if pc.importance == "taylor":
        pairs, labels = read_pairs(pc.data.path, pc.data.size, cfg.seed)
        if labels is None:
            raise ValueError(f"prune.data.path {pc.data.path!r} has no labels; taylor importance needs them")
    pruned_dir = output_dir / "prune" / "model"
    info = prune_saved_model(
        source,
        pruned_dir,
        ffn_keep=pc.ffn_keep,
        importance=pc.importance,
        pairs=pairs,
        labels=labels,
        batch_size=pc.batch_size,
    )
    path = pruned_dir
    if pc.recovery is not None:
        t0 = time.perf_counter()
        path = recover(
            pruned_dir, pc.recovery.config, pc.recovery.overrides, output_dir / "prune" / "recovery"
        )
        info["recovery"] = {"config": pc.recovery.config, "overrides": pc.recovery.overrides}
        info["recovery_s"] = round(time.perf_counter() - t0, 1)
    info["path"] = str(path)
    return Source(pc.name, path, tuple(pc.variants)), info


def run_compress(cfg: CompressConfig, output_dir: Path) -> dict[str, Any]:
    """Build every configured variant under ``output_dir/variants`` and return the report dict: one row
    per model (torch fp32) and per variant, all compared with the reference model's (``torch``) scores."""
    from recsys.compress.export import check_exportable
    from recsys.models.base import read_model_meta

    source = source_model_dir(cfg, output_dir)
    model_type = read_model_meta(source)["model_type"]
    check_exportable(model_type)  # before any work: an unsupported kind fails naming the fix
    bench.set_torch_threads(cfg.bench.threads)
    pairs, labels = read_pairs(cfg.sample.path, cfg.sample.size, cfg.seed)
    sources = [Source("torch", source, tuple(cfg.variants))]
    sources += [Source(m.name, Path(m.path), tuple(m.variants)) for m in cfg.extra_models]
    extra: dict[str, Any] = {}
    if cfg.prune is not None:
        pruned, extra["prune"] = pruned_source(cfg, source, output_dir)
        sources.append(pruned)
        bench.set_torch_threads(cfg.bench.threads)  # a recovery run may have changed them
    rows: list[dict[str, Any]] = []
    artifacts: dict[str, str] = {}
    ref: np.ndarray | None = None
    for src in sources:
        ref = _source_rows(src, cfg, output_dir, pairs, labels, ref, rows, artifacts)
    return {
        "counts": {"variants": len(rows) - len(sources), "models": len(sources), "sample_pairs": len(pairs)},
        "model_type": model_type,
        "source_model": str(source),
        "threads": cfg.bench.threads,
        "variants": rows,
        "artifacts": artifacts,
        **extra,
    }


def _source_rows(
    src: Source,
    cfg: CompressConfig,
    output_dir: Path,
    pairs: list[tuple[str, str]],
    labels: np.ndarray | None,
    ref: np.ndarray | None,
    rows: list[dict[str, Any]],
    artifacts: dict[str, str],
) -> np.ndarray:
    """Append the rows of one source (its torch model, then each variant) to ``rows``; returns the
    reference scores (the first source's torch scores)."""
    from recsys.compress.scorers import load_variant
    from recsys.compress.variants import dir_size_bytes, export_variant
    from recsys.models import load_model

    model = load_model(src.path)
    scores = bench.score_fn(model)(pairs, cfg.bench.throughput_batch)
    ref = scores if ref is None else ref
    base = rows[0] if rows else None
    row = _row(src.row_name(), "torch", model, dir_size_bytes(src.path), pairs, cfg)
    row.update(agreement(ref, scores, labels))
    rows.append(_relative(row, base, src.path))
    _isolated_rss(row, pairs, cfg)
    for kind in src.variants:
        t0 = time.perf_counter()
        path = export_variant(
            src.path,
            src.variant_dir(output_dir, kind),
            kind,
            opset=cfg.export.opset,
            optimization=cfg.export.optimization,
            model=model,
        )
        build_s = time.perf_counter() - t0
        variant = load_variant(path, threads=cfg.bench.threads)
        backend = "torch" if kind.startswith("torch") else "onnxruntime"
        row = _row(src.row_name(kind), backend, variant, dir_size_bytes(path), pairs, cfg)
        row.update(agreement(ref, bench.score_fn(variant)(pairs, cfg.bench.throughput_batch), labels))
        row["build_s"] = round(build_s, 2)
        rows.append(_relative(row, rows[0], path))
        _isolated_rss(row, pairs, cfg)
        artifacts[f"variant_{src.row_name(kind).replace('/', '_')}"] = str(path)
        log.info(
            "%s: %.1f pairs/s (%.2fx torch), %.1f MB, max |diff| %.2e",
            row["variant"],
            row["pairs_s"],
            row["speedup_vs_torch"],
            row["size_mb"],
            row["max_abs_diff"],
        )
        bench.set_torch_threads(cfg.bench.threads)  # a torch-int8 load must not change the next rows' threads
    return ref


def _relative(row: dict[str, Any], base: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    """``row`` with its path and its speed / size against the reference torch row (``base``; None: it is)."""
    from recsys.compress.variants import dir_size_bytes

    row["path"] = str(path)
    base = base or row
    row["speedup_vs_torch"] = round(row["pairs_s"] / base["pairs_s"], 3)
    row["size_ratio_vs_torch"] = round(dir_size_bytes(path) / max(dir_size_bytes(base["path"]), 1), 3)
    return row


def apply_gate(rows: list[dict[str, Any]], metric: str, max_relative_drop: float) -> None:
    """The quality gate, in place: each row's ``relative_drop`` of ``metric`` against the first row (the
    uncompressed model), ``promotable`` (drop <= ``max_relative_drop``) and, when not, the ``reason``."""
    ref = float(rows[0][metric])
    for i, row in enumerate(rows):
        value = float(row[metric])
        drop = (ref - value) / ref if ref > 0 else 0.0
        row["relative_drop"] = round(drop, 5)
        row["promotable"] = i == 0 or drop <= max_relative_drop
        if i == 0:
            row["reason"] = "reference (the uncompressed model)"
        elif row["promotable"]:
            row["reason"] = (
                f"{metric} {value:.4f} vs {ref:.4f}: relative drop {drop:.2%} <= {max_relative_drop:.2%}"
            )
        else:
            row["reason"] = (
                f"{metric} {value:.4f} vs the uncompressed model's {ref:.4f}: relative drop {drop:.2%} exceeds "
                f"the bound quality.max_relative_drop={max_relative_drop:.2%}"
            )
