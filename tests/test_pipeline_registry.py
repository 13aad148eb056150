"""MLflow registry: versions with tags, staging / production / previous aliases, promote, rollback,
run tracking, and the `recsys models` commands (embedded sqlite, no server)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory):
    from recsys.registry import ModelRegistry

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    reg = ModelRegistry(tracking_uri=uri, artifact_location=str(root / "artifacts"), model_name="games")
    dirs = []
    for i in range(3):
        d = root / f"index-v{i}"
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"version": f"v{i}"}))
        dirs.append(d)
    return reg, uri, dirs, root


def test_register_promote_rollback(registry_env):
    from recsys.registry import RegistryError

    reg, _, dirs, root = registry_env
    run_id = reg.log_run("evaluate", params={"protocol": {"split": "loo"}, "metrics": ["ndcg@10"]},
                         metrics={"ndcg@10": 0.61, "not-a-number": "x"}, artifacts={"index": str(dirs[0])})
    run = reg.client.get_run(run_id)
    assert run.data.metrics == {"ndcg_at_10": 0.61}
    assert run.data.params["protocol.split"] == "loo" and run.data.params["metrics"] == '["ndcg@10"]'
    v1 = reg.register(str(dirs[0]), run_id=run_id, tags={"recsys.index_dir": str(root), "recsys.index_version": "v0",
                                                          "recsys.metrics": {"gate": {"diff": 0.1}}})
    v2 = reg.register(str(dirs[1]), tags={"recsys.index_dir": str(root), "recsys.index_version": "v1"})
    assert (v1, v2) == ("1", "2")
    assert reg.alias_version("staging") == "2"
    assert reg.promote(v1) == {"production": "1", "previous": None}
    assert reg.promote(v2) == {"production": "2", "previous": "1"}
    assert reg.alias_version("staging") is None  # promoting the staged version clears staging
    rows = {r["version"]: r for r in reg.versions()}
    assert rows["2"]["aliases"] == ["production"] and rows["1"]["aliases"] == ["previous"]
    assert json.loads(rows["1"]["tags"]["recsys.metrics"]) == {"gate": {"diff": 0.1}}
    assert reg.serving_target("production") == {"version": "2", "artifacts": str(root), "index_version": "v1"}
    assert reg.local_path("production") == str(dirs[1].resolve())
    assert reg.rollback() == {"production": "1", "rolled_back": "2"}
    assert reg.get("2")["tags"]["recsys.rolled_back"] == "true"
    with pytest.raises(RegistryError, match="no earlier production version to roll back to"):
        reg.rollback()
    with pytest.raises(RegistryError, match="has no version or alias '9'"):
        reg.promote("9")


def test_models_cli(registry_env):
    from recsys.cli.main import app

    reg, uri, dirs, root = registry_env
    v3 = reg.register(str(dirs[2]), tags={"recsys.index_dir": str(root), "recsys.index_version": "v2"})
    runner = CliRunner()
    base = ["--tracking-uri", uri, "--name", "games"]
    res = runner.invoke(app, ["models", "promote", v3, *base])
    assert res.exit_code == 0, res.output
    assert f"production = {v3} (previous: 1)" in res.output
    res = runner.invoke(app, ["models", "ls", *base, "--json"])
    rows = {r["version"]: r["aliases"] for r in json.loads(res.output)}
    assert rows[v3] == ["production"] and rows["1"] == ["previous"]
    res = runner.invoke(app, ["models", "rollback", *base])
    assert res.exit_code == 0 and f"rolled back {v3} -> production = 1" in res.output
    res = runner.invoke(app, ["models", "promote", "42", *base])
    assert res.exit_code == 1 and "has no version or alias '42'" in res.output
