"""start_local_ray: a dashboard port taken between the free-port check and Ray's bind is retried."""

from __future__ import annotations

import pytest


def test_start_local_ray_retries_on_another_dashboard_port(monkeypatch):
    import ray

    from recsys import runtime

    calls: list[dict] = []

    def fake_init(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("dashboard failed to bind")

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    runtime.start_local_ray(num_cpus=1)
    assert len(calls) == 2 and calls[0]["dashboard_port"] != calls[1]["dashboard_port"]
    # the workers are told the port the dashboard really got
    assert (
        calls[1]["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"]
        == f"http://127.0.0.1:{calls[1]['dashboard_port']}"
    )


def test_start_local_ray_explicit_port_is_not_retried(monkeypatch):
    import ray

    from recsys import runtime

    def fake_init(**kwargs):
        raise RuntimeError("port in use")

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(RuntimeError, match="port in use"):
        runtime.start_local_ray(num_cpus=1, dashboard_port=18265)


def test_worker_env_retains_memory_and_never_repeats_a_submitted_key():
    from recsys.runtime import JOB_ENV, WORKER_MEMORY_ENV, worker_env

    assert worker_env(True, submitted=False) == {**JOB_ENV, **WORKER_MEMORY_ENV}
    assert worker_env(False, submitted=False) == JOB_ENV
    # a submitted job's environment holds its runtime env's keys: Ray fails on a key set twice
    submitted = {**JOB_ENV, "MIMALLOC_PURGE_DELAY": "100"}
    assert worker_env(True, submitted=True, environ=submitted) == {
        k: v for k, v in WORKER_MEMORY_ENV.items() if k != "MIMALLOC_PURGE_DELAY"
    }
    assert worker_env(False, submitted=True, environ=submitted) == {}


def test_init_ray_gives_local_workers_the_memory_env(monkeypatch):
    import ray

    from recsys import runtime
    from recsys.config.base import JobConfig

    seen: dict = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setattr(runtime, "start_local_ray", lambda **kw: seen.update(kw))
    cfg = JobConfig.model_validate({"ray": {"num_cpus": 1, "retain_worker_memory": True}})
    assert runtime.init_ray(cfg)
    assert seen["env"]["MIMALLOC_PURGE_DELAY"] == "-1" and seen["env"]["HF_HUB_OFFLINE"] == "1"
    cfg = JobConfig.model_validate({"ray": {"num_cpus": 1, "retain_worker_memory": False}})
    runtime.init_ray(cfg)
    assert "MIMALLOC_PURGE_DELAY" not in seen["env"]
