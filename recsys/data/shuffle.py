"""The one exchange of the data jobs: hash-partition by a key, then work per block with pyarrow.

A Ray Data ``groupby`` per aggregation costs a full shuffle each time (and 200 partitions by
default); here a dataset is hash-partitioned once by its key into a number of blocks sized from the
cluster, and every per-key computation (dedup, bot bursts, sessions, sequences, per-user/per-item
features) runs as a pyarrow ``group_by`` or sort inside each block: a block holds all rows of its keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.data.io import expand_paths, filesystem

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.data import Dataset


def cluster_cpus() -> int:
    import ray  # lazy: Ray costs seconds of import; the block functions here also run without it

    return max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1


def num_partitions(per_cpu: int = 2, override: int | None = None) -> int:
    """Blocks of a keyed exchange: ``override`` or ``per_cpu`` x the cluster's CPUs."""
    return override or per_cpu * cluster_cpus()


def configure_exchange(
    input_batch_mb: int | None = None,
    compression: str | None = None,
    reserve_per_operator: bool | None = None,
) -> None:
    """Shuffle settings for the datasets this process creates next (Ray Data reads ``DataContext`` then).

    ``input_batch_mb``: input one shuffle-map task partitions (Ray's default 1 GiB serialises a small
    cluster's whole input into one or two map tasks after the read). ``compression``: codec of the
    intermediate shards (none / lz4 / zstd). ``reserve_per_operator``: Ray Data's per-operator resource
    reservation (on 2 CPUs it held map operators to one task at a time). None leaves a setting alone.
    """
    from ray.data import DataContext  # lazy: Ray Data costs seconds of import

    ctx = DataContext.get_current()
    if input_batch_mb is not None:
        ctx.shuffle_input_batch_bytes = input_batch_mb * 2**20
    if compression is not None:
        ctx.shuffle_compression = compression
    if reserve_per_operator is not None:
        ctx.op_resource_reservation_enabled = reserve_per_operator


def by_key(
    ds: Dataset,
    key: str | list[str],
    fn: Callable[..., pa.Table],
    *,
    partitions: int | None = None,
    fn_kwargs: dict[str, Any] | None = None,
    **ray_args: Any,
) -> Dataset:
    """Hash-partition ``ds`` by ``key`` and apply ``fn(table, **fn_kwargs)`` to each whole block."""
    keys = [key] if isinstance(key, str) else list(key)
    parted = ds.repartition(num_partitions(override=partitions), keys=keys)
    return parted.map_batches(
        fn,
        batch_format="pyarrow",
        batch_size=None,
        zero_copy_batch=True,
        fn_kwargs=fn_kwargs or {},
        **ray_args,
    )


PARTITION_MB = (
    128  # default in-memory size of one reduce partition of the tasks exchanges (exchange.partition_mb)
)


def by_key_tasks(
    ds: Dataset,
    key: str | list[str],
    fn: Callable[..., pa.Table],
    *,
    partitions: int | None = None,
    fn_kwargs: dict[str, Any] | None = None,
    partition_mb: float | None = None,
) -> Dataset:
    """``by_key`` with plain Ray tasks (``exchange_refs``): the same contract (every output block holds all rows
    of its keys), for small inputs such as map-side partial aggregates. Ray Data's shuffle operator has a fixed
    start-up of 3-4 s on 2 CPUs (measured on 133k partial rows; its tasks ran 0.15 s), more than the work
    there. Returns a dataset of the partitions' outputs."""
    import ray  # lazy: Ray costs seconds of import; the block functions here also run without it

    refs = exchange_refs(ds, key, fn, partitions=partitions, fn_kwargs=fn_kwargs, partition_mb=partition_mb)
    return ray.data.from_arrow_refs(refs) if refs else ds.materialize()


def by_key_streaming(
    ds: Dataset,
    key: str | list[str],
    fn: Callable[..., pa.Table],
    *,
    partitions: int | None = None,
    fn_kwargs: dict[str, Any] | None = None,
    partition_mb: float | None = None,
) -> list[pa.Table]:
    """``by_key`` for large inputs, without Ray Data's shuffle operator (``exchange_refs``). Returns ``fn``'s
    outputs, fetched to the driver in partition order: ``fn`` should return a small summary (the clean job's
    reduce writes its rows and returns counts)."""
    import ray  # lazy: Ray costs seconds of import; the block functions here also run without it

    out: list[pa.Table] = ray.get(
        exchange_refs(ds, key, fn, partitions=partitions, fn_kwargs=fn_kwargs, partition_mb=partition_mb)
    )
    return out


def exchange_refs(
    ds: Dataset,
    key: str | list[str],
    fn: Callable[..., pa.Table],
    *,
    partitions: int | None = None,
    fn_kwargs: dict[str, Any] | None = None,
    partition_mb: float | None = None,
) -> list[ObjectRef[pa.Table]]:
    """A keyed exchange of plain Ray tasks: each block ``ds`` produces is split by a stable hash of ``key`` in one
    task, submitted as soon as the block exists (the splits overlap the read and map stages instead of waiting
    for them), then one task per partition concatenates its shards and applies ``fn``. Only object refs and
    shard sizes pass through the driver. Returns the refs of ``fn``'s outputs ([] when ``ds`` has no rows).
    Tasks retry on worker failure (Ray's default ``max_retries``).

    Partitions: ``partitions`` fixed ones; else sized from the data, as Spark's adaptive execution coalesces
    shuffle partitions: blocks are split into ``exchange_buckets()`` hash buckets, and once every split is done
    consecutive buckets are grouped into partitions of about ``partition_mb`` MiB in memory (at least 2 per
    CPU). Reduce time grows faster than its input (sorts, cache misses, fresh memory): on 10M events and 2 CPUs,
    4 partitions of ~300 MiB took 36 s of reduce wall time, 32 of ~40 MiB took 11 s."""
    import ray  # lazy: Ray costs seconds of import; the block functions here also run without it

    keys = [key] if isinstance(key, str) else list(key)
    buckets = partitions or exchange_buckets()
    split = ray.remote(_bucket_split).options(num_returns=buckets + 1)
    shards: list[list[Any]] = []  # per split task: its bucket refs, then the ref of its sizes
    sizes = []
    for bundle in ds.iter_internal_ref_bundles():
        for ref, meta in zip(bundle.block_refs, bundle.metadata):
            if meta.num_rows == 0:  # an empty block may lack the columns (e.g. a header-only CSV)
                continue
            *out, size = split.remote(ref, keys, buckets)
            shards.append(out)
            sizes.append(size)
    if not shards:
        return []
    if partitions:
        groups = [[b] for b in range(buckets)]
    else:
        per_bucket = np.sum(ray.get(sizes), axis=0)  # [buckets] bytes
        groups = coalesce(per_bucket, (partition_mb or PARTITION_MB) * 2**20, num_partitions())
    reduce = ray.remote(_apply_to_shards)
    return [reduce.remote(fn, fn_kwargs or {}, *[s[b] for s in shards for b in g]) for g in groups]


def exchange_buckets() -> int:
    """Hash buckets of a data-sized exchange: 32 per CPU, 64 to 1,024 (the upper bound on its partitions;
    every block becomes this many shard objects)."""
    return min(1024, max(64, 32 * cluster_cpus()))


def coalesce(sizes: np.ndarray, target_bytes: float, min_partitions: int) -> list[list[int]]:
    """Consecutive buckets grouped into partitions: a partition closes before the bucket that would take it
    over ``min(target_bytes, total / min_partitions)`` bytes (so a bucket above that stands alone); empty
    buckets join the current partition. Every bucket lands in exactly one partition."""
    target = min(target_bytes, float(np.sum(sizes)) / max(1, min_partitions))
    groups: list[list[int]] = [[]]
    acc = 0.0
    for b, size in enumerate(sizes):
        if groups[-1] and size > 0 and acc + size > target:
            groups.append([])
            acc = 0.0
        groups[-1].append(b)
        acc += size
    return groups


def _bucket_split(table: pa.Table, keys: list[str], n: int) -> list[Any]:
    """``table`` in ``n`` hash buckets (zero-copy slices of one take) plus their approximate bytes."""
    if not isinstance(table, pa.Table):  # a pandas block
        table = pa.Table.from_pandas(table, preserve_index=False)
    if table.num_rows == 0:
        return [table] * n + [np.zeros(n, np.int64)]
    h = _bucket_of(table, keys, n)
    order = np.argsort(h, kind="stable")
    bounds = np.searchsorted(h[order], np.arange(n + 1))
    srt = table.take(order)
    rows = np.diff(bounds)
    sizes = (rows * (srt.nbytes / max(1, table.num_rows))).astype(np.int64)  # [n] bytes, at the mean row size
    return [srt.slice(bounds[i], rows[i]) for i in range(n)] + [sizes]


def _bucket_of(table: pa.Table, keys: list[str], n: int) -> np.ndarray:
    """Bucket in [0, n) of each row: a hash of ``keys`` that is the same in every process. One string key is
    hashed once per distinct value (dictionary-encoded first): a Python object per row cost 4-7x more."""
    col = table[keys[0]]
    if len(keys) == 1 and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        enc = pc.dictionary_encode(col).combine_chunks()
        values = pa.concat_arrays([enc.dictionary, pa.nulls(1, enc.dictionary.type)])  # nulls: the last value
        hashed = (
            pd.util.hash_pandas_object(pa.table({keys[0]: values}).to_pandas(), index=False).to_numpy() % n
        )
        out: np.ndarray = hashed[pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy()]  # [rows]
        return out
    return np.asarray(pd.util.hash_pandas_object(table.select(keys).to_pandas(), index=False).to_numpy() % n)


def _apply_to_shards(fn: Callable[..., pa.Table], fn_kwargs: dict[str, Any], *shards: pa.Table) -> pa.Table:
    return fn(pa.concat_tables(shards, promote_options="default"), **fn_kwargs)


def group_order(table: pa.Table, keys: list[str]) -> pa.Array:
    """``sort_indices`` by ``keys`` (ascending) with string columns sorted by dictionary code: rows with
    equal values end up adjacent and in the same order as a string sort would put them (ties broken by
    the later keys), but distinct strings are ordered by first appearance, not lexically. 3-5x faster
    than comparing strings at millions of rows; for grouping, dedup and per-key time order."""
    cols = {}
    for k in keys:
        col = table[k]
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(col).indices  # nulls stay null: sorted last, as strings are
        cols[k] = col
    return pc.sort_indices(pa.table(cols), sort_keys=[(k, "ascending") for k in keys])


LAYOUT_FILE = "_partitioning.json"


def mark_partitioned(path: str, keys: list[str]) -> None:
    """Record that every Parquet file under ``path`` holds all rows of its ``keys`` values (and which files:
    a file added or removed later voids the record)."""
    fs, inner = filesystem(path)
    files = _parquet_files(path)
    if not files:
        return
    with fs.open_output_stream(f"{inner}/{LAYOUT_FILE}") as fh:
        fh.write(
            json.dumps({"keys": list(keys), "files": sorted(f.rsplit("/", 1)[-1] for f in files)}).encode()
        )


def partitioned_by(path: str) -> list[str] | None:
    """The keys ``path``'s files are partitioned by (``mark_partitioned``), or None when unknown or stale."""
    fs, inner = filesystem(path)
    if fs.get_file_info(f"{inner}/{LAYOUT_FILE}").type != pafs.FileType.File:
        return None
    with fs.open_input_stream(f"{inner}/{LAYOUT_FILE}") as fh:
        layout = json.loads(fh.read())
    return (
        layout["keys"]
        if sorted(f.rsplit("/", 1)[-1] for f in _parquet_files(path)) == layout["files"]
        else None
    )


def per_file(
    path: str, fn: Callable[..., pa.Table], fn_kwargs: dict[str, Any] | None = None, **ray_args: Any
) -> Dataset:
    """``fn(file's table, **fn_kwargs)`` on each Parquet file of ``path``, one Ray Data task per file: the
    exchange-free ``by_key`` for a folder whose files are partitioned by the key (``partitioned_by``)."""
    import ray  # lazy: Ray costs seconds of import; the block functions here also run without it

    files = _parquet_files(path)
    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
    return ds.map_batches(
        _apply_to_file,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"fn": fn, "fn_kwargs": fn_kwargs or {}, "root": path},
        **ray_args,
    )


def _apply_to_file(
    batch: pa.Table, fn: Callable[..., pa.Table], fn_kwargs: dict[str, Any], root: str
) -> pa.Table:
    fs, _ = filesystem(root)
    return fn(pq.read_table(batch["path"][0].as_py(), filesystem=fs), **fn_kwargs)


def _parquet_files(path: str) -> list[str]:
    """The data files of a Parquet folder (hidden / ``_``-prefixed files skipped); [] when there are none."""
    try:
        files, _ = expand_paths(path, (".parquet",))
    except FileNotFoundError:
        return []
    return [f for f in files if f.endswith(".parquet")]


def first_per_key(table: pa.Table, key: str, how: dict[str, str] | None = None) -> pa.Table:
    """One row per ``key``: the first non-null value of each column (or ``how[col]``: mean, max, ...)."""
    how = how or {}
    aggs = [(c, how.get(c, "first")) for c in table.column_names if c != key]
    if table.num_rows == 0:
        return table
    out = table.group_by(key, use_threads=False).aggregate(aggs)
    names = {f"{c}_{a}": c for c, a in aggs}
    return out.rename_columns([names.get(c, c) for c in out.column_names]).select(table.column_names)
