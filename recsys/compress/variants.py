"""The variant directory: a compressed copy of a saved recsys model that a loader opens by path.

A variant directory holds:

- ``variant.json``: ``{"format_version": 1, "kind": "onnx" | "onnx-int8" | "torch-int8", "backend":
  "onnxruntime" | "torch", "model_type", "source_model", "size_bytes", "files", ...}``;
- ONNX kinds: ``model.onnx`` (and ``item_model.onnx`` for a bi-encoder with separate towers),
  ``source_model.json`` (the source's ``recsys_model.json``: its architecture config, e.g. ``max_length``)
  and the tokenizer files;
- ``torch-int8``: the source model saved the Hugging Face way (``recsys_model.json``,
  ``model.safetensors``, tokenizer); ``torch.ao`` dynamic int8 is applied when it is loaded.

``export_variant`` builds the directory in a temporary sibling and renames it into place at the end:
a failed export leaves nothing at the destination (and an existing variant untouched).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, cast

VARIANT_FILE = "variant.json"
SOURCE_META_FILE = "source_model.json"
FORMAT_VERSION = 1
VARIANT_KINDS = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime", "torch-int8": "torch"}
"""Variant kind -> the backend that runs it."""


class VariantError(ValueError):
    """A variant cannot be built or opened (the message names what and the fix)."""


def dir_size_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _onnx_files(model_type: str, shared: bool) -> list[str]:
    return ["model.onnx"] if model_type == "cross_encoder" or shared else ["model.onnx", "item_model.onnx"]


def required_files(meta: dict[str, Any]) -> list[str]:
    """Files a variant of this ``variant.json`` must hold."""
    if meta.get("backend") == "torch":
        return [VARIANT_FILE, "recsys_model.json", "model.safetensors", "tokenizer_config.json"]
    return [VARIANT_FILE, SOURCE_META_FILE, "tokenizer_config.json", *meta.get("onnx_files", ["model.onnx"])]


def is_variant(path: str | Path) -> bool:
    return (Path(path) / VARIANT_FILE).is_file()


def read_variant(path: str | Path) -> dict[str, Any]:
    """``variant.json`` of a variant directory, after checking every file it needs is there."""
    p = Path(path)
    if not (p / VARIANT_FILE).is_file():
        hint = (
            " (it is a torch model directory: open it with recsys.models.load_model or backend: torch)"
            if (p / "recsys_model.json").is_file()
            else ""
        )
        raise VariantError(
            f"{str(p)!r} is not a compressed variant: no {VARIANT_FILE}{hint}; pass a directory written by "
            "the compress job (runs/compress/<scale>/variants/<kind>)"
        )
    meta = cast(dict[str, Any], json.loads((p / VARIANT_FILE).read_text(encoding="utf-8")))
    if meta.get("kind") not in VARIANT_KINDS:
        raise VariantError(
            f"{str(p / VARIANT_FILE)!r} names kind {meta.get('kind')!r}; one of {sorted(VARIANT_KINDS)}"
        )
    missing = [f for f in required_files(meta) if not (p / f).is_file()]
    if missing:
        raise VariantError(
            f"variant directory {str(p)!r} ({meta['kind']}) is missing {', '.join(missing)}; it was copied "
            "partially or edited: re-run the compress job to rebuild it "
            "(recsys run compress --config configs/compress/<scale>.yaml)"
        )
    return meta


def check_onnx_runs(path: str | Path) -> None:
    """Open ``path`` with ONNX Runtime (CPU); an op it cannot run -> VariantError naming the op and the fix."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own pybind exception types (Fail, NotImplemented, InvalidGraph)
        raise VariantError(
            f"ONNX Runtime {ort.__version__} cannot run {str(path)!r}: {str(e).strip()[:500]} -- an op or "
            "opset it does not implement; re-export with a lower `export.opset` (default 17), or keep this "
            "model on the torch backend (variants: [torch-int8] or backend: torch)"
        ) from e


def _build(model: Any, source: Path, tmp: Path, kind: str, opset: int, optimization: str) -> dict[str, Any]:
    from recsys.compress.export import export_onnx, graphs_of, optimize_onnx
    from recsys.compress.quantize import quantize_onnx_int8

    meta: dict[str, Any] = {}
    if VARIANT_KINDS[kind] == "torch":
        model.save_pretrained(tmp)
        return meta
    shutil.copyfile(source / "recsys_model.json", tmp / SOURCE_META_FILE)
    model.tokenizer.save_pretrained(str(tmp))
    files = []
    for name, graph in graphs_of(model).items():
        raw = tmp / f"raw-{name}"
        export_onnx(graph, raw, opset=opset)
        if kind == "onnx":
            optimize_onnx(raw, tmp / name, optimization) if optimization != "none" else raw.rename(tmp / name)
        else:  # int8 weights from the plain export; ORT applies its fusions when the session opens
            quantize_onnx_int8(raw, tmp / name)
        raw.unlink(missing_ok=True)
        check_onnx_runs(tmp / name)
        files.append(name)
    for extra in tmp.glob("*.data"):  # external-data files are never written for these small graphs
        extra.unlink()
    meta.update(
        {"onnx_files": files, "opset": opset, "optimization": optimization if kind == "onnx" else "none"}
    )
    return meta


def export_variant(
    model_dir: str | Path,
    out_dir: str | Path,
    kind: str,
    *,
    opset: int = 17,
    optimization: str = "extended",
    model: Any = None,
) -> Path:
    """Write the ``kind`` variant of the saved model at ``model_dir`` to ``out_dir``, atomically.

    ``model`` (the loaded torch model) saves a reload when several variants are built from one source.
    An existing ``out_dir`` is replaced only once the new variant is complete.
    """
    from recsys.compress.export import check_exportable
    from recsys.models import load_model
    from recsys.models.base import read_model_meta

    if kind not in VARIANT_KINDS:
        raise VariantError(f"variant kind {kind!r}; use one of {sorted(VARIANT_KINDS)}")
    source = Path(model_dir)
    model_type = read_model_meta(source)["model_type"]
    check_exportable(model_type)
    model = model if model is not None else load_model(source)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        start = time.perf_counter()
        extra = _build(model, source, tmp, kind, opset, optimization)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "backend": VARIANT_KINDS[kind],
            "model_type": model_type,
            "source_model": str(source.resolve()),
            **extra,
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        meta["size_bytes"] = dir_size_bytes(tmp)
        meta["files"] = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()) + [
            VARIANT_FILE
        ]
        (tmp / VARIANT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it owner-only
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


SERVING_BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "torch-int8")
"""What a serve / index / evaluate config's ``backend`` field takes (``auto``: whatever the directory holds)."""


def resolve_backend(path: str | Path, backend: str = "auto", model_type: str | None = None) -> str:
    """The backend that opens ``path`` (``torch`` for a saved model directory, else the variant's kind),
    after checking it matches ``backend`` and, when given, ``model_type``. Reads JSON only (no ONNX Runtime,
    no torch): config validators call it. Raises :class:`VariantError` naming what is wrong and the fix."""
    if backend not in SERVING_BACKENDS:
        raise VariantError(f"backend {backend!r}; use one of {', '.join(SERVING_BACKENDS)}")
    p = Path(path)
    if is_variant(p):
        meta = read_variant(p)  # checks every file the variant needs
        kind, found_type = str(meta["kind"]), str(meta.get("model_type"))
        if backend not in ("auto", kind):
            raise VariantError(
                f"{str(p)!r} is a {kind!r} variant, not {backend!r}: set backend: {kind} (or auto), or point the "
                f"path at the {backend} variant (runs/compress/<scale>/variants/{backend})"
            )
    elif (p / "recsys_model.json").is_file():
        kind = "torch"
        found_type = str(json.loads((p / "recsys_model.json").read_text(encoding="utf-8")).get("model_type"))
        if backend not in ("auto", "torch", "torch-int8"):
            raise VariantError(
                f"backend {backend!r} needs a variant directory, but {str(p)!r} is a torch model directory (no "
                f"{VARIANT_FILE}): set backend: torch (or auto), or build the variant with recsys run compress "
                f"--config configs/compress/<scale>.yaml and point the path at its variants/{backend}"
            )
        kind = "torch-int8" if backend == "torch-int8" else "torch"
    else:
        raise VariantError(
            f"{str(p)!r} is neither a saved recsys model (no recsys_model.json) nor a compressed variant (no "
            f"{VARIANT_FILE}): point the path at runs/train/<run>/model or runs/compress/<scale>/variants/<kind>"
        )
    if model_type is not None and found_type != model_type:
        raise VariantError(
            f"{str(p)!r} holds a {found_type!r} model; this field needs a {model_type!r} one (a directory "
            f"written by the train or compress job for a {model_type})"
        )
    return kind


def check_model_backend(path: str | Path, backend: str, model_type: str) -> None:
    """Config-time check of a ``model`` + ``backend`` pair: when ``path`` is a local model or variant
    directory, :func:`resolve_backend` must accept it; a hub alias or a path not built yet passes (the loader
    checks it when it opens it); a non-``auto`` backend on a pretrained encoder name fails."""
    p = Path(path)
    if p.is_dir() and ((p / "recsys_model.json").is_file() or (p / VARIANT_FILE).is_file()):
        resolve_backend(p, backend, model_type)
    elif backend not in ("auto", "torch") and p.is_dir():
        raise VariantError(
            f"backend {backend!r} needs a compressed variant, but {str(p)!r} has no {VARIANT_FILE}: build it with "
            f"recsys run compress --config configs/compress/<scale>.yaml and point the path at its variants/{backend}"
        )
