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
    assert calls[1]["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{calls[1]['dashboard_port']}"


def test_start_local_ray_explicit_port_is_not_retried(monkeypatch):
    import ray

    from recsys import runtime

    def fake_init(**kwargs):
        raise RuntimeError("port in use")

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(RuntimeError, match="port in use"):
        runtime.start_local_ray(num_cpus=1, dashboard_port=18265)
