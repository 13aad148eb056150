"""The one exchange of the data jobs: hash-partition by a key, then work per block with pyarrow.

A Ray Data ``groupby`` per aggregation costs a full shuffle each time (and 200 partitions by
default); here a dataset is hash-partitioned once by its key into a number of blocks sized from the
cluster, and every per-key computation (dedup, bot bursts, sessions, sequences, per-user/per-item
features) runs as a pyarrow ``group_by`` or sort inside each block: a block holds all rows of its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1


def num_partitions(per_cpu: int = 2, override: int | None = None) -> int:
    """Blocks of a keyed exchange: ``override`` or ``per_cpu`` x the cluster's CPUs."""
    return override or per_cpu * cluster_cpus()


def configure_exchange(input_batch_mb: int | None = None, compression: str | None = None) -> None:
    """Shuffle settings for the datasets this process creates next (Ray Data reads ``DataContext`` then).

    ``input_batch_mb``: input one shuffle-map task partitions (Ray's default 1 GiB serialises a small
    cluster's whole input into one or two map tasks after the read). ``compression``: codec of the
    intermediate shards (none / lz4 / zstd).
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    if input_batch_mb is not None:
        ctx.shuffle_input_batch_bytes = input_batch_mb * 2**20
    if compression is not None:
        ctx.shuffle_compression = compression


def by_key(ds, key: str | list[str], fn: Callable[..., pa.Table], *, partitions: int | None = None,
           fn_kwargs: dict[str, Any] | None = None, **ray_args):
    """Hash-partition ``ds`` by ``key`` and apply ``fn(table, **fn_kwargs)`` to each whole block."""
    keys = [key] if isinstance(key, str) else list(key)
    parted = ds.repartition(num_partitions(override=partitions), keys=keys)
    return parted.map_batches(fn, batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
                              fn_kwargs=fn_kwargs or {}, **ray_args)


def first_per_key(table: pa.Table, key: str, how: dict[str, str] | None = None) -> pa.Table:
    """One row per ``key``: the first non-null value of each column (or ``how[col]``: mean, max, ...)."""
    how = how or {}
    aggs = [(c, how.get(c, "first")) for c in table.column_names if c != key]
    if table.num_rows == 0:
        return table
    out = table.group_by(key, use_threads=False).aggregate(aggs)
    names = {f"{c}_{a}": c for c, a in aggs}
    return out.rename_columns([names.get(c, c) for c in out.column_names]).select(table.column_names)
