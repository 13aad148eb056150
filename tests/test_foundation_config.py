"""Config system: every shipped YAML validates; errors are reported all at once with key paths."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from recsys.config import ConfigError, InputConfig, JobConfig, load_config
from recsys.config.paths import expand_env
from recsys.jobs_registry import get_job, job_names

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_shipped_configs_for_every_job():
    for job in job_names():
        scales = {p.stem for p in (ROOT / "configs" / job).glob("*.yaml")}
        assert {"tiny", "local", "cluster"} <= scales, f"configs/{job}/ lacks a scale: has {sorted(scales)}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_yaml_validates(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and re.search(r"recsys |python -m |serve |ray ", first), (
        f"{path} must start with a comment giving its launch command, got {first!r}"
    )
    job = path.relative_to(ROOT / "configs").parts[0]  # configs/<job>/[...]/<scale>.yaml
    if job.replace("-", "_") not in job_names():  # e.g. Serve config files: YAML, owned by their tests
        assert isinstance(yaml.safe_load(path.read_text()), dict)
        return
    # Upstream outputs (runs/...) do not exist in a fresh clone: structure only here...
    load_config(get_job(job).config_cls, path, check_paths=False)
    # ...but every shared-data path a tiny/local config names must exist (cluster configs name the
    # cluster's storage, e.g. RECSYS_DATA_ROOT=s3://...).
    if path.stem.startswith("cluster"):
        return
    for ref in re.findall(r"\$\{RECSYS_DATA_ROOT\}[^\s'\"]*", path.read_text()):
        resolved = expand_env(ref)
        assert glob.glob(resolved) or "://" in resolved, f"{path}: {ref} matches nothing"


def test_validate_reports_every_error_at_once(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("seeed: 1\ncpus_per_probe: lots\nmodel:\n  name_or_path: ./no/such/model\n")
    with pytest.raises(ConfigError) as exc:
        load_config(get_job("doctor").config_cls, cfg, ["ray.num_cpu=2", "texts=[]"])
    errors = exc.value.errors
    assert len(errors) == 5, errors
    text = "\n".join(errors)
    assert "seeed: unknown key; did you mean 'seed'?" in text
    assert "ray.num_cpu: unknown key; did you mean 'num_cpus'?" in text
    assert "cpus_per_probe: Input should be a valid number" in text and "'lots'" in text
    assert "model.name_or_path: model directory './no/such/model' not found" in text
    assert text.count("texts:") == 1


class _ReadsAFile(JobConfig):
    input: InputConfig
    batch_size: int = Field(32, gt=0)


def test_missing_input_file_and_check_paths_context(tmp_path: Path):
    data = {"input": {"path": str(tmp_path / "nope.csv")}, "batch_size": 0}
    with pytest.raises(ConfigError) as exc:
        load_config(_ReadsAFile, None, data=data)
    assert any(e.startswith("input.path: file not found") for e in exc.value.errors)
    assert any(e.startswith("batch_size: Input should be greater than 0") for e in exc.value.errors)
    # the pipeline validates downstream stages before upstream outputs exist
    cfg = load_config(
        _ReadsAFile, None, data={"input": {"path": str(tmp_path / "later.parquet")}}, check_paths=False
    )
    assert cfg.input.path.endswith("later.parquet")


def test_overrides_are_typed_by_the_schema(tmp_path: Path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    cfg = load_config(
        _ReadsAFile,
        None,
        [
            f"input.path={tmp_path}/*.csv",
            "batch_size=64",
            "seed=7",
            "ray.num_cpus=1.5",
            "input.columns={UserId: user_id}",
            "input.columns.ts=timestamp",
            "output_dir=007",
        ],
    )
    assert cfg.batch_size == 64 and cfg.seed == 7 and cfg.ray.num_cpus == 1.5
    assert cfg.input.columns == {"UserId": "user_id", "ts": "timestamp"}
    assert cfg.output_dir == "007"  # a str field keeps the string as typed


def test_malformed_override_and_bad_yaml(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(get_job("doctor").config_cls, bad, ["no_equals_sign"])
    assert any("not valid YAML" in e for e in exc.value.errors)
    assert any("expected dotted key=value" in e for e in exc.value.errors)
    with pytest.raises(ConfigError) as exc:
        load_config(get_job("doctor").config_cls, tmp_path / "absent.yaml")
    assert exc.value.errors[0].startswith("--config: file not found")


def test_env_references_expand(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RECSYS_DATA_ROOT", str(tmp_path))
    assert expand_env("${RECSYS_DATA_ROOT}/x") == f"{tmp_path}/x"
    assert expand_env("${UNSET_VAR_FOR_TEST:-fallback}") == "fallback"
    (tmp_path / "bad.yaml").write_text("output_dir: ${UNSET_VAR_FOR_TEST}/out\nmodel: null\n")
    with pytest.raises(ConfigError) as exc:
        load_config(get_job("doctor").config_cls, tmp_path / "bad.yaml")
    assert "output_dir: environment variable UNSET_VAR_FOR_TEST is not set" in exc.value.errors[0]


def test_unknown_job_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean 'doctor'"):
        get_job("docter")


def test_local_ray_dashboard_port_falls_back_when_taken():
    import socket

    from recsys.runtime import _dashboard_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        other = _dashboard_port(taken)
        assert other != taken and other > 0
    assert _dashboard_port(taken) == taken  # free again


# -- dotted overrides into lists: one set_dotted for CLI, tune and pipeline ---------------------------
def _models() -> dict:
    return {
        "models": [
            {"name": "Pop", "kind": "popularity"},
            {"name": "SASRec", "kind": "model", "path": "runs/a", "params": {"blocks": [{"h": 1}, {"h": 2}]}},
            {"name": "KNN", "kind": "itemknn", "params": {"neighbors": 50}},
        ],
        "seed": 0,
    }


@pytest.mark.parametrize(
    "override, expected",
    [
        ("models.1.path=runs/b", ("models", 1, "path", "runs/b")),
        ("models[1].path=runs/b", ("models", 1, "path", "runs/b")),
        ("models.-1.params.neighbors=20", ("models", 2, "params", "neighbors", "20")),
        ("models[-3].kind=bpr", ("models", 0, "kind", "bpr")),
        ("models[name=SASRec].path=runs/b", ("models", 1, "path", "runs/b")),
        ("models[kind=itemknn].params.neighbors=7", ("models", 2, "params", "neighbors", "7")),
        # nested list of dicts, by selector and by position, and a dotted selector value
        ("models[name=SASRec].params.blocks[h=2].h=9", ("models", 1, "params", "blocks", 1, "h", "9")),
        ("models.1.params.blocks.0.h=5", ("models", 1, "params", "blocks", 0, "h", "5")),
        ("models[path=runs/a].path=runs/a.b", ("models", 1, "path", "runs/a.b")),
    ],
)
def test_list_override_sets_exactly_one_element(override: str, expected: tuple):
    from recsys.config.loader import parse_overrides

    data, errors = _models(), []
    parse_overrides(data, [override], errors)
    assert errors == []
    *where, last, value = expected
    want = _models()
    node = want
    for step in where:
        node = node[step]
    node[last] = value
    assert data == want


def test_list_override_replaces_a_whole_element_with_a_yaml_value():
    from recsys.config.loader import parse_overrides

    data, errors = _models(), []
    parse_overrides(data, ["models[name=KNN]={name: BPR, kind: bpr}", "models.0.params={k: 3}"], errors)
    assert errors == []
    assert data["models"][2] == {"name": "BPR", "kind": "bpr"}
    assert data["models"][0] == {"name": "Pop", "kind": "popularity", "params": {"k": 3}}


@pytest.mark.parametrize(
    "override, error",
    [
        (
            "models[name=sasrec].path=x",
            "models[name=sasrec].path: models[name=sasrec] matches nothing: name values in models are "
            "Pop, SASRec, KNN; did you mean models[name=SASRec]?",
        ),
        (
            "models[name=Nope].path=x",
            "models[name=Nope].path: models[name=Nope] matches nothing: name values in models are Pop, SASRec, KNN",
        ),
        (
            "models[id=x].path=x",
            "models[id=x].path: no element of models has a plain 'id' value (text or number) to match; "
            "select by position (models.0 .. models.2)",
        ),
        (
            "models[params=x].path=x",  # a section is not a value to match
            "models[params=x].path: no element of models has a plain 'params' value (text or number) to "
            "match; select by position (models.0 .. models.2)",
        ),
        (
            "models.3.path=x",
            "models.3.path: models has 3 elements; position 3 is out of range (0..2, or -1 for the last)",
        ),
        (
            "models.path=x",
            "models.path: models is a list; pick an element by position (models.0, models[-1]) "
            "or by a field (models[name=...]), not by key 'path'",
        ),
        (
            "metrics[0]=mrr",
            "metrics[0]: metrics is missing, not a list; set the whole list instead: metrics=[...]",
        ),
        (
            "seed[0]=1",
            "seed[0]: seed is a int, not a list; set the whole list instead: seed=[...]",
        ),
        (
            "models[0][1]=x",
            "models[0][1]: models[0] is a mapping, not a list; name one of its keys (name, kind) instead of [1]",
        ),
        (
            "models[0].kind.x=1",
            None,  # a scalar inside a mapping is replaced by a section, as before lists were indexable
        ),
        (
            "models[name=Pop.path=x",
            "override 'models[name=Pop.path=x': unclosed '[' at position 6; write [3] or [name=value]; "
            "e.g. train.lr=3e-5, models.3.path=..., models[-1].path=..., models[name=SASRec].path=...",
        ),
        (
            "models[x].path=1",
            "override 'models[x].path=1': [x] is neither a position ([3], [-1]) nor a selector "
            "([name=value]); e.g. train.lr=3e-5, models.3.path=..., models[-1].path=..., "
            "models[name=SASRec].path=...",
        ),
    ],
)
def test_list_override_errors_name_the_key_the_values_and_the_fix(override: str, error: str | None):
    from recsys.config.loader import parse_overrides

    errors: list[str] = []
    parse_overrides(_models(), [override], errors)
    assert errors == ([error] if error else [])


def test_ambiguous_selector_is_an_error_with_the_positions():
    from recsys.config.loader import parse_overrides

    data = {
        "models": [{"name": "a", "kind": "bpr"}, {"name": "b", "kind": "als"}, {"name": "c", "kind": "bpr"}]
    }
    errors: list[str] = []
    parse_overrides(data, ["models[kind=bpr].params={k: 1}"], errors)
    assert errors == [
        "models[kind=bpr].params: 2 elements of models have kind 'bpr' (positions 0, 2); "
        "select one by position, e.g. models.0"
    ]
    assert "params" not in data["models"][0] and "params" not in data["models"][2]


def test_list_overrides_reach_the_typed_evaluate_config():
    """The issue's command: ``recsys run evaluate --config beauty-loo.yaml models.3.path=...``."""
    path = ROOT / "configs/evaluate/beauty-loo.yaml"
    cls = get_job("evaluate").config_cls
    cfg = load_config(
        cls,
        path,
        [
            "models.3.path=/m/sasrec",
            "models[name=BPRMF].params.factors=32",
            "models[name=BPRMF].params.learning_rate=1e-2",
            "models[name=ItemKNN].params.variant=007x",
            "models[-1].name=Mine",
        ],
        check_paths=False,
    )
    assert [(m.name, m.path) for m in cfg.models] == [
        ("Pop", None),
        ("ItemKNN", None),
        ("BPRMF", None),
        ("Mine", "/m/sasrec"),
    ]
    # free-form params are read as YAML reads the file (pydantic types nothing there)
    assert cfg.models[2].params == {
        "factors": 32,
        "iterations": 200,
        "learning_rate": 0.01,
        "regularization": 0.001,
    }
    assert cfg.models[1].params == {"neighbors": 200, "variant": "007x"}
    with pytest.raises(ConfigError) as exc:
        load_config(cls, path, ["models[name=sasrec].path=/m", "models.4.path=/m"], check_paths=False)
    assert exc.value.errors == [
        "models[name=sasrec].path: models[name=sasrec] matches nothing: name values in models are "
        "Pop, ItemKNN, BPRMF, SASRec; did you mean models[name=SASRec]?",
        "models.4.path: models has 4 elements; position 4 is out of range (0..3, or -1 for the last)",
    ]


def test_tune_space_and_pipeline_stage_overrides_use_the_same_list_steps():
    from recsys.pipeline.stages import stage_data
    from recsys.tuning.space import _schema_error, trial_data

    assert _schema_error("lora.target_modules.0") is None
    assert _schema_error("lora.target_modules[-1]") is None
    assert _schema_error("lora.target_modules[0].x") == (
        "space.lora.target_modules[0].x: 'lora.target_modules[0]' is a value, not a section; remove 'x'"
    )
    base = {"lora": {"target_modules": ["query", "value"]}}
    assert trial_data(base, {"lora.target_modules.1": "key"}) == {
        "lora": {"target_modules": ["query", "key"]}
    }
    assert base == {"lora": {"target_modules": ["query", "value"]}}  # a copy
    data = stage_data("evaluate", "local", {"models[name=ItemKNN].params.neighbors": 20}, {})
    assert [m["params"]["neighbors"] for m in data["models"] if m["name"] == "ItemKNN"] == [20]
    with pytest.raises(ConfigError) as exc:
        stage_data("evaluate", "local", {"models[name=Knn].params.neighbors": 20}, {})
    assert exc.value.source == "overrides of stage config 'local' (job 'evaluate')"
    assert exc.value.errors[0].startswith(
        "models[name=Knn].params.neighbors: models[name=Knn] matches nothing"
    )


def test_no_shipped_evaluate_config_writes_into_tracked_files():
    """results_json (a copy of output_dir/results.json) is asked for on the command line only."""
    cls = get_job("evaluate").config_cls
    for path in sorted((ROOT / "configs/evaluate").glob("*.yaml")):
        assert load_config(cls, path, check_paths=False).results_json is None, path
