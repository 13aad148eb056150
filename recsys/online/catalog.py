"""The live catalog's change log in the online store, and the follower every index-backed replica runs.

Keys (``<prefix>`` = the online store's ``key_prefix``):

- ``<prefix>:catalog:seq``: the log's head (a counter; the number of changes ever appended);
- ``<prefix>:catalog:log``: a list, entry ``i`` (0-based) is change ``seq = i + 1``: JSON with ``op``,
  ``item_id``, the item fields and ``v``: ``{encoder id: base64 float32 vector}`` (upserts).

An append is one Lua script (counter and entries together: atomic, one round trip, one fsync with the
embedded server's ``appendfsync always``): acknowledged = durable and ordered. A replica's follower compares
the head with the ``seq`` it has applied before each request and applies the entries after it
(``recsys.retrieval.delta.LiveCatalog``); a new index version starts from the ``catalog_seq`` its manifest
says it folded. The log is never trimmed by the app (a replica loading an old version replays from there).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from recsys.retrieval.artifacts import IndexArtifacts
from recsys.retrieval.changes import ITEM_FIELDS, ItemChange
from recsys.retrieval.config import ChangeLogConfig, ChangesConfig
from recsys.retrieval.delta import LiveCatalog, LiveSettings

log = logging.getLogger(__name__)

_APPEND = """
local n = #ARGV
for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return redis.call('INCRBY', KEYS[1], n)
"""


def encoder_id(manifest: dict[str, Any]) -> str:
    """The key of an index version's item vectors in a log entry: its encoder's fingerprint."""
    m = manifest.get("model") or {}
    return str(m.get("sha256") or m.get("path") or "default")[:16]


def encode_entry(c: ItemChange, vectors: dict[str, np.ndarray]) -> str:
    body: dict[str, Any] = {"op": c.op, "item_id": c.item_id}
    if c.op == "upsert":
        body.update({f: getattr(c, f) for f in ITEM_FIELDS})
        body["v"] = {
            k: base64.b64encode(np.asarray(v, np.float32).tobytes()).decode() for k, v in vectors.items()
        }
    return json.dumps(body, separators=(",", ":"))


def decode_entry(raw: bytes | str, seq: int) -> tuple[ItemChange, dict[str, np.ndarray]]:
    body = json.loads(raw)
    vecs = {k: np.frombuffer(base64.b64decode(v), np.float32) for k, v in (body.pop("v", None) or {}).items()}
    fields = {f: body.get(f) for f in ITEM_FIELDS}
    return ItemChange(body["op"], body["item_id"], seq=seq, **fields), vecs


class CatalogLog:
    """The change log over a synchronous ``redis`` client (thread-safe: its connection pool)."""

    def __init__(self, url: str, key_prefix: str = "rs", timeout_s: float = 5.0):
        import redis  # lazy: only processes that talk to the store

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.seq_key, self.log_key = f"{key_prefix}:catalog:seq", f"{key_prefix}:catalog:log"
        self._append = self.client.register_script(_APPEND)

    def append(
        self, changes: Sequence[ItemChange], vectors: Sequence[dict[str, np.ndarray]]
    ) -> tuple[int, int]:
        """Append in order; returns (first seq, last seq) of the appended entries (acknowledged = durable)."""
        if not changes:
            head = self.head()
            return head + 1, head
        entries = [encode_entry(c, v) for c, v in zip(changes, vectors)]
        last = int(self._append(keys=[self.seq_key, self.log_key], args=entries))
        return last - len(entries) + 1, last

    def head(self) -> int:
        v = self.client.get(self.seq_key)
        return int(v) if v is not None else 0

    def read(self, after: int, limit: int = 100_000) -> list[tuple[ItemChange, dict[str, np.ndarray]]]:
        """The entries with ``seq > after`` (at most ``limit``), in order."""
        raw = self.client.lrange(self.log_key, after, after + limit - 1)
        return [decode_entry(r, after + i + 1) for i, r in enumerate(raw)]

    def close(self) -> None:
        self.client.close()


class CatalogFollower:
    """Keeps one replica's live catalog at the log's head. ``sync()`` before answering: one GET when nothing
    changed; on a store failure the replica keeps serving what it has (retried after ``backoff_s``)."""

    def __init__(
        self,
        base: IndexArtifacts,
        url_source: Callable[[], str],
        key_prefix: str,
        settings: LiveSettings | None = None,
        timeout_s: float = 1.0,
        backoff_s: float = 1.0,
    ):
        self.live = LiveCatalog(base, settings, applied_seq=int(base.manifest.get("catalog_seq") or 0))
        self.url_source, self.prefix, self.timeout_s, self.backoff_s = (
            url_source,
            key_prefix,
            timeout_s,
            backoff_s,
        )
        self.model = encoder_id(base.manifest)
        self.log: CatalogLog | None = None
        self.lock = threading.Lock()
        self._skip_until = 0.0
        self.errors = 0
        self.poll_s = 0.0  # the owner's minimum interval between head checks (CatalogArgs.poll_ms)

    def sync(self) -> IndexArtifacts | None:
        """The new snapshot when the log moved since the last call, else None."""
        if time.monotonic() < self._skip_until:
            return None
        with self.lock:
            try:
                if self.log is None:
                    self.log = CatalogLog(self.url_source(), self.prefix, self.timeout_s)
                if self.log.head() <= self.live.applied_seq:
                    return None
                entries = self.log.read(self.live.applied_seq)
            except Exception as exc:  # noqa: BLE001 - a store outage must not fail requests
                self.errors += 1
                log.warning(
                    "catalog log unreachable (%s: %s); serving the catalog as applied",
                    type(exc).__name__,
                    exc,
                )
                self._skip_until = time.monotonic() + self.backoff_s
                self.log = None
                return None
            changes = [c for c, _ in entries]
            vectors = [v.get(self.model) if c.op == "upsert" else None for c, v in entries]
            missing = [c.item_id for c, v in zip(changes, vectors) if c.op == "upsert" and v is None]
            if missing:  # an entry embedded for another encoder only: skip it, loudly
                log.error(
                    "catalog changes without a vector for encoder %s skipped: %s", self.model, missing[:5]
                )
                keep = [
                    i
                    for i, (c, v) in enumerate(zip(changes, vectors))
                    if not (c.op == "upsert" and v is None)
                ]
                changes, vectors = [changes[i] for i in keep], [vectors[i] for i in keep]
            snap = self.live.apply(changes, vectors)
            self.live.applied_seq = max(self.live.applied_seq, entries[-1][0].seq)
            return snap


@contextlib.contextmanager
def open_log(cfg: ChangeLogConfig) -> Iterator[CatalogLog]:
    """The change log a job reads or writes: an external store's, or an embedded store's data dir started for
    the job's duration (never while a Serve app runs on that dir: point ``url`` at its server instead)."""
    server = None
    if cfg.dir:
        from recsys.online.server import EmbeddedServer

        server = EmbeddedServer(cfg.dir)
        url = server.start()
    else:
        url = cfg.url or os.environ.get(cfg.url_env or "", "")
        if not url:
            raise ValueError(
                f"changes log: env var {cfg.url_env!r} is not set; export the store's redis:// URL"
            )
    log_ = CatalogLog(url, cfg.key_prefix)
    try:
        yield log_
    finally:
        log_.close()
        if server is not None:
            server.stop()


def fold_log(items: Any, log_: CatalogLog) -> tuple[Any, int, int]:
    """``items`` (a catalog table) with every logged change folded in order -> (table, changes, head seq)."""
    from recsys.retrieval.changes import fold

    head = log_.head()
    entries = log_.read(0, head) if head else []
    return fold(items, [c for c, _ in entries]), len(entries), head


def fold_changes(items: Any, changes: ChangesConfig) -> tuple[Any, dict[str, int]]:
    """The index job's ``changes``: a change file (every row valid, else ChangeError naming the first bad
    one) then the live catalog's log, folded into ``items`` in order -> (table, counts of what was folded
    and the log position this version includes: ``catalog_seq``)."""
    from recsys.retrieval.changes import ChangeError, fold, read_change_file, validate_rows

    folded = {"file": 0, "log": 0, "catalog_seq": 0}
    if changes.path:
        good, bad = validate_rows(read_change_file(changes.path))
        if bad:
            raise ChangeError(*bad[0])
        items, folded["file"] = fold(items, good), len(good)
    if changes.log is not None:
        with open_log(changes.log) as log_:
            items, folded["log"], folded["catalog_seq"] = fold_log(items, log_)
    return items, folded


def publish_changes(
    rows: Sequence[dict[str, Any]],
    log_: CatalogLog,
    encode: Callable[[list[str]], np.ndarray],
    model: str,
    batch_size: int,
    on_error: str = "fail",
) -> dict[str, Any]:
    """Validate change rows, embed the upserts (``encode``: the serving encoder's item tower), append them to
    the log in batches. ``on_error``: ``fail`` raises ChangeError on the first bad row before anything is
    appended; ``skip`` appends the good rows. Counts reconcile: ``applied + rejected == rows``."""
    from recsys.retrieval.changes import ChangeError, validate_rows
    from recsys.retrieval.delta import embed_text

    changes, rejected = validate_rows(rows)
    if rejected and on_error == "fail":
        row, field, message = rejected[0]
        raise ChangeError(
            row, field, f"{message} ({len(rejected)} bad rows; on_error=skip applies the others)"
        )
    first = last = 0
    for lo in range(0, len(changes), batch_size):
        batch = changes[lo : lo + batch_size]
        ups = [i for i, c in enumerate(batch) if c.op == "upsert"]
        vecs = encode([embed_text(batch[i].record()) for i in ups]) if ups else np.zeros((0, 0), np.float32)
        vectors: list[dict[str, np.ndarray]] = [{} for _ in batch]
        for i, v in zip(ups, vecs):
            vectors[i] = {model: v}
        f, last = log_.append(batch, vectors)
        first = first or f
    return {
        "rows": len(rows),
        "applied": len(changes),
        "upserts": sum(c.op == "upsert" for c in changes),
        "deletes": sum(c.op == "delete" for c in changes),
        "rejected": rejected,
        "first_seq": first,
        "last_seq": last,
    }
