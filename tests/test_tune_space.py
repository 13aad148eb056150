"""Tune config and search space: validated against the train config before any trial starts."""

from __future__ import annotations

import copy

import pytest
import yaml

from recsys.config.loader import ConfigError, load_config
from recsys.tuning.config import TuneJobConfig


@pytest.fixture(scope="module")
def tiny_data(project_root):
    return yaml.safe_load((project_root / "configs/tune/tiny.yaml").read_text())


def _load(data):
    return load_config(TuneJobConfig, None, data=data, check_paths=False)


def test_shipped_tune_configs_validate(project_root):
    for path in sorted((project_root / "configs/tune").glob("*.yaml")):
        assert path.read_text().startswith("# "), path
        cfg = load_config(TuneJobConfig, path, check_paths=False)
        assert cfg.space, path


def test_unknown_space_key_is_named_with_a_suggestion(tiny_data):
    data = copy.deepcopy(tiny_data)
    data["space"]["optim.learning_rate"] = {"type": "grid", "values": [1e-3]}
    data["space"]["model.sequential.hiden_size"] = {"type": "grid", "values": [8]}
    with pytest.raises(ConfigError) as exc:
        _load(data)
    text = str(exc.value)
    assert "the train config has no key 'optim.learning_rate'" in text
    assert "the train config has no key 'model.sequential.hiden_size'" in text
    assert "did you mean 'hidden_size'?" in text


def test_space_values_are_checked_against_the_train_schema(tiny_data):
    data = copy.deepcopy(tiny_data)
    data["space"] = {
        "train.batch_size": {"type": "grid", "values": [16, 0]},
        "model.sequential.num_heads": {"type": "grid", "values": [1, 3]},
        "optim": {"type": "grid", "values": [1]},
    }
    with pytest.raises(ConfigError) as exc:
        _load(data)
    text = str(exc.value)
    assert "space.train.batch_size = 0" in text and "greater than or equal to 1" in text
    assert "space.model.sequential.num_heads = 3" in text and "not divisible" in text  # hidden_size 16
    assert "'optim' is a whole section" in text
    assert "space.train.batch_size = 16" not in text


def test_distribution_and_algorithm_checks(tiny_data):
    bad = [
        ({"optim.lr": {"type": "loguniform", "low": 0, "high": 1e-2}}, "loguniform needs low > 0"),
        ({"optim.lr": {"type": "uniform", "low": 1e-2, "high": 1e-3}}, "must be smaller than high"),
        ({"optim.lr": {"type": "choice"}}, "needs a non-empty 'values'"),
        (
            {"optim.lr": {"type": "uniform", "low": 1e-4, "high": 1e-3}},
            "search.algorithm grid needs every space key",
        ),
    ]
    for space, message in bad:
        data = copy.deepcopy(tiny_data)
        data["space"] = space
        with pytest.raises(ConfigError) as exc:
            _load(data)
        assert message in str(exc.value), (space, str(exc.value))
    data = copy.deepcopy(tiny_data)
    data["search"] = {"algorithm": "optuna"}
    data["space"] = {"optim.lr": {"type": "grid", "values": [1e-3]}}
    with pytest.raises(ConfigError, match="Optuna cannot search type: grid"):
        _load(data)


def test_base_from_a_path_and_env_refs_kept_in_best_yaml(tmp_path, tiny_data):
    from recsys.tuning.results import best_train_data
    from recsys.tuning.space import load_base

    base_file = tmp_path / "base.yaml"
    base_file.write_text(yaml.safe_dump(tiny_data["base"]))
    data = {**copy.deepcopy(tiny_data), "base": str(base_file)}
    cfg = _load(data)
    raw = load_base(cfg.base)
    best = best_train_data(
        raw, {"optim.lr": 0.01, "model.sequential.hidden_size": 8}, "runs/tune/x/best_train"
    )
    assert best["data"]["train"]["path"] == "${RECSYS_DATA_ROOT}/amazon-games-6k"
    assert best["optim"]["lr"] == 0.01 and best["model"]["sequential"]["hidden_size"] == 8
    assert best["output_dir"] == "runs/tune/x/best_train"
    assert "header" not in best["data"]["train"]  # unset keys stay unset: the preset's defaults apply
    with pytest.raises(ConfigError, match="base: file not found"):
        _load({**copy.deepcopy(tiny_data), "base": str(tmp_path / "missing.yaml")})


def test_grid_param_space_and_scheduler_defaults(tiny_data):
    from ray.tune.search.sample import Categorical, Float

    from recsys.tuning.space import grid_size, param_space, validate_space
    from recsys.tuning.sweep import scheduler_defaults

    cfg = _load(tiny_data)
    space = param_space(cfg.space)
    assert space["optim.lr"] == {"grid_search": [0.0001, 0.01]}
    assert grid_size(cfg.space) == 4
    mixed = TuneJobConfig.model_validate(
        {
            **tiny_data,
            "search": {"algorithm": "random"},
            "space": {
                "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                "loss.name": {"type": "choice", "values": ["sampled_softmax", "full_softmax"]},
            },
        },
        context={"check_paths": False},
    )
    doms = param_space(mixed.space)
    assert isinstance(doms["optim.lr"], Float) and isinstance(doms["loss.name"], Categorical)
    base = validate_space(dict(tiny_data["base"]), cfg.space, "ndcg@10", "max", check_paths=False)
    assert scheduler_defaults(cfg.scheduler, base) == {
        "max_t": 6,
        "grace_period": 2,
        "perturbation_interval": 4,
    }


def test_schedulers_and_searchers_from_config(tiny_data):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from recsys.tuning.promotion import GatedLimiter, GatedVariantGenerator, PromotionASHA
    from recsys.tuning.space import validate_space
    from recsys.tuning.sweep import build_scheduler, build_search_alg

    data = {
        **copy.deepcopy(tiny_data),
        "search": {"algorithm": "random", "num_samples": 4},
        "space": {
            "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "model.sequential.dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
        },
    }
    expected = {
        "asha": ASHAScheduler,
        "median": MedianStoppingRule,
        "pbt": PopulationBasedTraining,
        "fifo": FIFOScheduler,
    }
    for name, cls in expected.items():
        cfg = _load({**data, "scheduler": {"name": name}})
        base = validate_space(dict(cfg.base), cfg.space, check_paths=False)
        sched = build_scheduler(cfg, base)
        assert isinstance(sched, cls), name
    asha = build_scheduler(_load({**data, "scheduler": {"name": "asha"}}), base)
    assert asha._max_t == 6 and sorted(r for r, _ in asha._brackets[0]._rungs) == [
        2,
        6,
    ]  # max_steps 6, eval_every 2
    pbt = build_scheduler(_load({**data, "scheduler": {"name": "pbt"}}), base)
    assert set(pbt._hyperparam_mutations) == {"optim.lr", "model.sequential.dropout"}
    search = _load(data).search
    bvg = build_search_alg(search, seed=3, concurrency=2)
    assert isinstance(bvg, BasicVariantGenerator) and bvg.max_concurrent == 2
    optuna = build_search_alg(search.model_copy(update={"algorithm": "optuna"}), seed=3, concurrency=2)
    assert isinstance(optuna, ConcurrencyLimiter) and optuna.max_concurrent == 2
    promote = build_scheduler(_load({**data, "scheduler": {"name": "asha_promote"}}), base, concurrency=3)
    assert (
        isinstance(promote, PromotionASHA) and promote.rungs == [2] and promote.max_running == 3
    )  # rf 3: 2 * 3 = max_t
    gated = build_search_alg(search, seed=3, concurrency=3, gate=promote)
    assert (
        isinstance(gated, GatedVariantGenerator) and gated.scheduler is promote and gated.max_concurrent == 0
    )
    gated = build_search_alg(
        search.model_copy(update={"algorithm": "optuna"}), seed=3, concurrency=3, gate=promote
    )
    assert isinstance(gated, GatedLimiter) and gated.scheduler is promote


def test_mlflow_callback_only_with_a_tracking_uri(tiny_data, tmp_path, monkeypatch):
    from recsys.tuning.run import mlflow_callbacks

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_callbacks(_load(tiny_data)) == []
    cfg = _load(
        {**copy.deepcopy(tiny_data), "mlflow": {"tracking_uri": f"file:{tmp_path}/mlruns", "experiment": "t"}}
    )
    (cb,) = mlflow_callbacks(cfg)
    assert type(cb).__name__ == "MLflowLoggerCallback" and cb.tracking_uri == f"file:{tmp_path}/mlruns"


def test_overrides_set_on_the_base_nested_or_dotted(tiny_data):
    from recsys.tuning.space import load_base

    data = {**copy.deepcopy(tiny_data), "overrides": {"train.max_steps": 4, "optim": {"weight_decay": 0.0}}}
    cfg = _load(data)
    raw = load_base(cfg.base, cfg.overrides)
    assert raw["train"]["max_steps"] == 4 and raw["train"]["eval_every"] == 2  # merged, not replaced
    assert raw["optim"] == {"lr": 0.001, "warmup_ratio": 0.0, "weight_decay": 0.0}
    with pytest.raises(ConfigError, match="overrides.train.max_step: the train config has no key"):
        _load({**copy.deepcopy(tiny_data), "overrides": {"train": {"max_step": 4}}})


def test_trials_share_prepared_data_only_when_the_space_leaves_it_alone():
    from recsys.tuning.trial import shares_prepared_data

    assert shares_prepared_data(
        ["optim.lr", "model.sequential.hidden_size", "loss.temperature", "strategy.name"]
    )
    for key in (
        "data.max_train_rows",
        "data.train.path",
        "seed",
        "model.kind",
        "model.sequential.max_len",
        "loss.name",
        "train.batch_size",
        "scaling.num_workers",
        "optim.grad_accum",
        "model",
        "model.sequential",
    ):  # the last two: sections that hold prepare keys
        assert not shares_prepared_data(["optim.lr", key]), key


def test_prepare_view_lets_prepare_read_only_prepare_keys(tiny_data):
    from recsys.training.config import DataSection
    from recsys.training.trainer import PrepareView
    from recsys.tuning.space import validate_space

    cfg = _load(tiny_data)
    view = PrepareView(validate_space(dict(cfg.base), cfg.space, check_paths=False))
    assert isinstance(view.data, DataSection) and view.data.max_train_rows == 400  # whole section: as is
    assert (view.model.kind, view.model.sequential.max_len, view.seed, view.train.max_steps) == (
        "sequential",
        10,
        0,
        6,
    )
    assert view.loss_name == "sampled_softmax"  # a property runs on the view: its reads are checked too
    for read in (lambda: view.optim.lr, lambda: view.model.sequential.hidden_size, lambda: view.metric_name):
        with pytest.raises(
            AttributeError,
            match=r"prepare\(\) read the train-config key '(optim.lr|model.sequential"
            r".hidden_size|train.metric)', which is not in .*PREPARE_KEYS",
        ):
            read()


class _FakeDataset:
    """Stands in for a Ray Dataset: ``prepare``'s data calls, without Ray."""

    def __init__(self, rows: int = 64):
        import types

        self.rows = rows
        self.context = types.SimpleNamespace(execution_options=types.SimpleNamespace(preserve_order=False))

    def map_batches(self, *args, **kwargs):
        return self

    def materialize(self):
        return self

    def randomize_block_order(self, seed=None):
        return self

    def limit(self, n: int):
        return _FakeDataset(min(self.rows, n))

    def count(self) -> int:
        return self.rows

    def unique(self, column: str) -> list[str]:
        return ["i1", "i2"]


def test_prepare_reads_nothing_beyond_prepare_keys_for_every_model_kind(project_root, monkeypatch):
    """Every branch of ``prepare`` (pairs: bi-encoder, cross-encoder pointwise / listwise; sequences with
    text and user features) runs through the PrepareView: the key list covers what prepare reads."""
    import numpy as np
    import ray

    from recsys.kinds import data as D
    from recsys.models.bi_encoder import BiEncoder
    from recsys.training.config import TrainConfig
    from recsys.training.trainer import prepare

    for name in ("load_pairs", "read_table", "load_sequences"):
        monkeypatch.setattr(D, name, lambda *a, **k: _FakeDataset())
    for name in ("bi_encoder_rows", "listwise_groups"):
        monkeypatch.setattr(D, name, lambda ds, *a, **k: ds)
    monkeypatch.setattr(
        D,
        "build_vocab",
        lambda ds, feats, extra=None: D.SequenceVocab(["i1", "i2"], {f: ["a"] for f in feats}),
    )
    monkeypatch.setattr(D, "item_texts", lambda ds, ids: ["t"] * len(ids))
    encoder = type("Enc", (), {"encode": lambda self, texts, batch_size, tower: np.zeros((len(texts), 4))})()
    monkeypatch.setattr(BiEncoder, "from_encoder", classmethod(lambda cls, *a, **k: encoder))
    monkeypatch.setattr(ray, "put", lambda value: value)
    seq_text = {
        "model.sequential.use_text": True,
        "model.sequential.user_features": ["country"],
        "data.items": {"path": "items.parquet", "preset": "amazon-games-6k"},
    }
    cases = [
        ("tiny.yaml", {}),
        ("tiny.yaml", {"loss.name": "listwise"}),
        ("tiny-bi-encoder.yaml", {}),
        ("tiny-sequential.yaml", {}),
        ("tiny-sequential.yaml", seq_text),
    ]
    for file, overrides in cases:
        data = yaml.safe_load((project_root / "configs/train" / file).read_text())
        for key, value in overrides.items():
            section, _, last = key.rpartition(".")
            node = data
            for part in section.split("."):
                node = node.setdefault(part, {})
            node[last] = value
        cfg = TrainConfig.model_validate(data, context={"check_paths": False})
        prep = prepare(cfg)
        per_worker = 64 // cfg.scaling.num_workers // cfg.train.batch_size
        assert prep.extras.total_steps == cfg.train.max_steps and prep.counts["train_rows"] == 64, (
            file,
            overrides,
        )
        assert prep.extras.steps_per_epoch == max(1, per_worker // cfg.optim.grad_accum), (file, overrides)
        assert (getattr(prep.extras.model_inputs, "text_embeddings_ref", None) is not None) == bool(
            overrides.get("model.sequential.use_text")
        )


def test_collect_keeps_a_trial_interrupted_before_its_first_report():
    """An interruption can catch a trial whose directory is still empty (no config, no metrics): it is
    listed as unfinished under its Tune id, not a crash."""
    from types import SimpleNamespace

    from recsys.tuning.results import collect

    empty = SimpleNamespace(
        metrics_dataframe=None,
        metrics=None,
        config=None,
        error=None,
        path="/x/sweep/train_trial_53874_00001_1_model_sequential_hidden_size=16_2026-11-25_05-37-51",
    )
    [rec] = collect([empty], ["optim.lr"], {"53874_00000": "TERMINATED", "53874_00001": "UNFINISHED"})
    assert (rec.trial_id, rec.status, rec.params, len(rec.history)) == ("53874_00001", "unfinished", {}, 0)
