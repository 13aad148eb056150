"""Prometheus metrics exported by the ingress at ``GET /metrics``: per endpoint and arm request
counts and latency histograms, reranker batch sizes, feedback events, replica counts per
deployment (read from the Serve controller at scrape time), and the /search caches' hits, misses and
sizes (``recsys_cache_*{cache="response"|"query_embedding", arm}``, read from the caches at scrape time)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class CacheCollector(Collector):
    """Cache counts as Prometheus families: the caches count, this only reports (``stats[(cache, arm)]``
    = ``{"hits", "misses", "size", "capacity"}``, set before each scrape)."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], dict[str, int]] = {}

    def collect(self) -> Iterator[Metric]:
        hits = CounterMetricFamily("recsys_cache_hits", "Cache lookups answered.", labels=["cache", "arm"])
        misses = CounterMetricFamily("recsys_cache_misses", "Cache lookups missed.", labels=["cache", "arm"])
        size = GaugeMetricFamily("recsys_cache_entries", "Entries held now.", labels=["cache", "arm"])
        cap = GaugeMetricFamily("recsys_cache_capacity", "Most entries held.", labels=["cache", "arm"])
        for (cache, arm), s in sorted(self.stats.items()):
            hits.add_metric([cache, arm], s["hits"])
            misses.add_metric([cache, arm], s["misses"])
            size.add_metric([cache, arm], s["size"])
            cap.add_metric([cache, arm], s["capacity"])
        yield from (hits, misses, size, cap)


LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_requests_total",
            "Requests by endpoint, arm and HTTP status.",
            ["endpoint", "arm", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_request_latency_seconds",
            "End-to-end latency inside the ingress.",
            ["endpoint", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "recsys_rerank_batch_size",
            "Requests per reranker forward pass.",
            ["arm"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.feedback = Counter(
            "recsys_feedback_events_total",
            "Feedback events accepted.",
            ["arm", "event_type"],
            registry=self.registry,
        )
        self.cold = Counter(
            "recsys_cold_start_total",
            "Requests answered by the cold-start fallback.",
            ["endpoint", "arm"],
            registry=self.registry,
        )
        self.replicas = Gauge(
            "recsys_replicas", "Running replicas per deployment.", ["deployment"], registry=self.registry
        )
        self._replicas_at = 0.0
        self.caches = CacheCollector()
        self.registry.register(self.caches)

    def refresh_replicas(self, app_name: str, max_age_s: float = 5.0) -> None:
        """Replica counts from ``serve.status()`` (cached ``max_age_s``; best effort)."""
        if time.monotonic() - self._replicas_at < max_age_s:
            return
        self._replicas_at = time.monotonic()
        try:
            from ray import serve  # lazy: Ray Serve costs seconds; metrics work without it

            app = serve.status().applications.get(app_name)
            for name, dep in (app.deployments if app else {}).items():
                running = dep.replica_states.get("RUNNING", 0) if dep.replica_states else 0
                self.replicas.labels(deployment=name).set(running)
        except Exception:  # noqa: BLE001 - metrics must never fail a scrape
            pass

    def render(self) -> bytes:
        return generate_latest(self.registry)
