"""MLflow model registry and run tracking for recsys.

A registered *version* is a deployable unit: the index version directory the service loads (its
manifest names the embedding model) plus the trained model directory, with the metrics and lineage
that justified it as tags. Aliases: ``staging`` (registered, not yet live) and ``production``
(what the service resolves at start-up and on hot reload). ``promote`` keeps the previous
production version under the ``previous`` alias and in a history tag, so ``rollback`` restores it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from recsys.config.paths import runs_root

STAGING, PRODUCTION, PREVIOUS = "staging", "production", "previous"
_HISTORY_TAG = "recsys.production_history"
_BAD_KEY = re.compile(r"[^\w.\- /:]")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (no such version, nothing to roll back to)."""


def mlflow_key(name: str) -> str:
    """MLflow metric / param names allow letters, digits, ``_ - . / : space``: ``ndcg@10`` -> ``ndcg_at_10``."""
    return _BAD_KEY.sub("_", name.replace("@", "_at_"))


def default_tracking_uri() -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path(runs_root()).resolve() / 'mlflow' / 'mlflow.db'}"
    )


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b.c": value}`` (lists as JSON) for MLflow params."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, list | tuple) else obj}


class ModelRegistry:
    """Thin, typed wrapper over ``mlflow.MlflowClient`` (plain values in, plain dicts out)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        experiment: str = "recsys",
        model_name: str = "recsys",
        copy_artifacts: bool = False,
    ):
        from mlflow import MlflowClient  # lazy: mlflow costs ~2 s of import; only registry calls need it

        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.embedded = self.tracking_uri.startswith("sqlite:///")
        if self.embedded:
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            artifact_location = artifact_location or str(Path(runs_root()).resolve() / "mlflow" / "artifacts")
        self.artifact_location = artifact_location
        self.experiment_name = experiment
        self.model_name = model_name
        self.copy_artifacts = copy_artifacts
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, cfg) -> ModelRegistry:
        """Build from a ``RegistryConfig`` (the only place a config object is read)."""
        return cls(
            cfg.tracking_uri, cfg.artifact_location, cfg.experiment, cfg.model_name, cfg.copy_artifacts
        )

    # ---- tracking -----------------------------------------------------------------------------
    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (
                exp.experiment_id
                if exp
                else self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            )
        return self._experiment_id

    def log_run(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        artifacts: dict[str, str] | None = None,
        status: str = "FINISHED",
    ) -> str:
        """One finished MLflow run (a job / pipeline stage): params, numeric metrics, files or dirs;
        ``status`` is MLflow's run status (FINISHED / FAILED)."""
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
        rid = run.info.run_id
        for key, value in sorted(flatten(params or {}).items()):
            with contextlib.suppress(Exception):  # a param over MLflow's length limit is skipped, not fatal
                self.client.log_param(rid, mlflow_key(key)[:250], str(value)[:6000])
        for key, value in (metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.client.log_metric(rid, mlflow_key(key), float(value))
        for name_, path in (artifacts or {}).items():
            p = Path(path)
            if p.is_dir():
                self.client.log_artifacts(rid, str(p), artifact_path=mlflow_key(name_))
            elif p.is_file():
                self.client.log_artifact(rid, str(p), artifact_path=mlflow_key(name_))
        self.client.set_terminated(rid, status)
        return rid

    def log_job_report(
        self,
        report: dict[str, Any],
        extra_tags: dict[str, str] | None = None,
        artifacts: dict[str, str] | None = None,
    ) -> str:
        """Log a job's ``report.json`` as one run: the config as params, the metrics (nested ones as
        ``model.metric``), counts as ``count.<name>``, timings as ``time.<stage>``, the report itself
        plus ``artifacts``."""
        out = Path(report.get("output_dir", "."))
        metrics = flatten(report.get("metrics") or {})
        metrics.update({f"count.{k}": v for k, v in flatten(report.get("counts") or {}).items()})
        metrics.update({f"time.{k}": v for k, v in (report.get("timings") or {}).items()})
        tags = {
            "recsys.job": report.get("job", "?"),
            "recsys.status": report.get("status", "?"),
            "recsys.output_dir": str(out),
            "mlflow.source.git.commit": report.get("git_sha") or "unknown",
            **(extra_tags or {}),
        }
        arts = {"report": str(out / "report.json")} if (out / "report.json").is_file() else {}
        arts.update(artifacts or {})
        status = "FINISHED" if report.get("status") == "succeeded" else "FAILED"
        return self.log_run(
            report.get("job", "job"),
            params=report.get("config"),
            metrics=metrics,
            tags=tags,
            artifacts=arts,
            status=status,
        )

    # ---- registry -----------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException  # lazy: imports mlflow (~2 s)

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(
                self.model_name, description="recsys deployable versions (index + model)"
            )

    def register(
        self,
        source_dir: str,
        *,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        alias: str | None = STAGING,
    ) -> str:
        """Register ``source_dir`` as a new version (tagged; aliased ``staging`` by default); returns the version."""
        src = Path(source_dir)
        if not src.exists():
            raise RegistryError(f"cannot register {source_dir!r}: it does not exist")
        self._ensure_model()
        source = str(src.resolve())
        if self.copy_artifacts:
            rid = run_id or self.log_run(
                f"register-{self.model_name}", tags={"recsys.registered_from": source}
            )
            self.client.log_artifacts(rid, source, artifact_path="deployable")
            source, run_id = f"{self.client.get_run(rid).info.artifact_uri}/deployable", rid
        str_tags = {
            k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in (tags or {}).items()
        }
        mv = self.client.create_model_version(self.model_name, source, run_id=run_id, tags=str_tags)
        if alias:
            self.client.set_registered_model_alias(self.model_name, alias, mv.version)
        return str(mv.version)

    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException  # lazy: imports mlflow (~2 s)

        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None

    def get(self, ref: str) -> dict[str, Any]:
        """A version by number or alias (``production``) as a plain dict; RegistryError if absent."""
        from mlflow.exceptions import MlflowException  # lazy: imports mlflow (~2 s)

        try:
            mv = (
                self.client.get_model_version(self.model_name, ref)
                if ref.isdigit()
                else self.client.get_model_version_by_alias(self.model_name, ref)
            )
        except MlflowException:
            known = ", ".join(v["version"] for v in self.versions()) or "none"
            raise RegistryError(
                f"model {self.model_name!r} has no version or alias {ref!r} (versions: {known}); "
                "see `recsys models ls`"
            ) from None
        return self._as_dict(mv)

    def _as_dict(self, mv) -> dict[str, Any]:
        return {
            "version": str(mv.version),
            "aliases": sorted(mv.aliases or []),
            "source": mv.source,
            "run_id": mv.run_id,
            "created": mv.creation_timestamp,
            "tags": dict(mv.tags or {}),
        }

    def versions(self) -> list[dict[str, Any]]:
        """Every version, newest first."""
        from mlflow.exceptions import MlflowException  # lazy: imports mlflow (~2 s)

        try:
            found = self.client.search_model_versions(f"name='{self.model_name}'")
        except MlflowException:
            return []
        aliases: dict[str, list[str]] = {}  # search results do not carry aliases on every store
        with contextlib.suppress(MlflowException):
            for alias, ver in (self.client.get_registered_model(self.model_name).aliases or {}).items():
                aliases.setdefault(str(ver), []).append(alias)
        rows = [{**self._as_dict(mv), "aliases": sorted(aliases.get(str(mv.version), []))} for mv in found]
        return sorted(rows, key=lambda d: int(d["version"]), reverse=True)

    def _history(self) -> list[str]:
        from mlflow.exceptions import MlflowException  # lazy: imports mlflow (~2 s)

        try:
            tags = self.client.get_registered_model(self.model_name).tags or {}
        except MlflowException:
            return []
        return json.loads(tags.get(_HISTORY_TAG, "[]"))

    def promote(self, version: str) -> dict[str, str | None]:
        """Make ``version`` production; the old production becomes ``previous`` (for rollback)."""
        self.get(str(version))  # clear error if absent
        current = self.alias_version(PRODUCTION)
        if current == str(version):
            return {"production": current, "previous": self.alias_version(PREVIOUS)}
        history = self._history()
        if current:
            history.append(current)
            self.client.set_registered_model_alias(self.model_name, PREVIOUS, current)
        self.client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history[-50:]))
        self.client.set_registered_model_alias(self.model_name, PRODUCTION, str(version))
        if self.alias_version(STAGING) == str(version):
            self.client.delete_registered_model_alias(self.model_name, STAGING)
        self.client.set_model_version_tag(self.model_name, str(version), "recsys.promoted", "true")
        return {"production": str(version), "previous": current}

    def rollback(self) -> dict[str, str | None]:
        """Restore the production version before the current one; RegistryError if there is none."""
        history = self._history()
        current = self.alias_version(PRODUCTION)
        if not history:
            raise RegistryError(
                f"model {self.model_name!r}: no earlier production version to roll back to "
                f"(production is {current or 'unset'}); promote a version with `recsys models promote N`"
            )
        target = history.pop()
        self.client.set_registered_model_alias(self.model_name, PRODUCTION, target)
        if current:
            self.client.set_model_version_tag(self.model_name, current, "recsys.rolled_back", "true")
        if history:
            self.client.set_registered_model_alias(self.model_name, PREVIOUS, history[-1])
        else:
            with contextlib.suppress(Exception):
                self.client.delete_registered_model_alias(self.model_name, PREVIOUS)
        self.client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history))
        return {"production": target, "rolled_back": current}

    def local_path(self, ref: str) -> str:
        """Local directory of a version (downloaded when it lives in a remote artifact store)."""
        source = self.get(ref)["source"]
        if "://" not in source or source.startswith("file://"):
            return source.removeprefix("file://")
        import mlflow.artifacts  # lazy: mlflow costs ~2 s of import

        return mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=self.tracking_uri)

    def serving_target(self, ref: str = PRODUCTION) -> dict[str, str]:
        """What a service arm loads for ``ref``: ``{"version": N, "artifacts": index dir, "index_version": v}``,
        plus ``"model"`` (the trained model dir) when the version has one (the tags the pipeline's deploy
        stage writes)."""
        mv = self.get(ref)
        tags = mv["tags"]
        if "recsys.index_dir" not in tags:
            raise RegistryError(
                f"version {mv['version']} has no recsys.index_dir tag; register index outputs with "
                "the pipeline's deploy stage (or tag it by hand)"
            )
        target = {
            "version": mv["version"],
            "artifacts": tags["recsys.index_dir"],
            "index_version": tags.get("recsys.index_version", "latest"),
        }
        if tags.get("recsys.model_dir"):  # a pipeline with a train stage: its model serves /recommend
            target["model"] = tags["recsys.model_dir"]
        return target
