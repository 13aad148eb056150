"""Run a pipeline: stages in order (cached by key), gates after their stage, then register / promote /
serve; a lineage manifest and Prometheus gauges whatever happens."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from recsys.pipeline import deploy as D
from recsys.pipeline import gates as G
from recsys.pipeline.lineage import export_gauges
from recsys.pipeline.stages import ResolvedStage, execute, resolve, stage_data
from recsys.registry import ModelRegistry
from recsys.runtime import git_sha, key_metric, write_json
from recsys.utils.console import get_console

CHAMPION = "production"  # name of the champion in the evaluate stage's leaderboard


class PipelineStopped(RuntimeError):
    """A stage failed or a gate did not pass; the message says which and why."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _row_status(report: dict[str, Any], rerun: bool, gate_failed: bool) -> str | None:
    """A stage's status in the run's summary (None: succeeded)."""
    if report.get("status") != "succeeded":
        return "failed"
    if gate_failed:
        return "gate failed"
    return None if rerun else "reused"


def _without_name(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "name"}


class PipelineRunner:
    def __init__(self, cfg, root: Path, log, registry=None):
        self.cfg = cfg
        self.root = root.resolve()
        self.log = log
        self._registry = registry
        self.lineage: dict[str, Any] = {
            "pipeline": cfg.output_dir or str(root),
            "started_at": _now(),
            "stages": [],
            "gates": [],
            "deployment": None,
            "status": "running",
        }
        self.reports: dict[str, dict[str, Any]] = {}

    @property
    def registry(self):
        if self._registry is None:
            self._registry = ModelRegistry.from_config(self.cfg.registry)
        return self._registry

    def _needs_registry(self) -> bool:
        return (
            self.cfg.deploy is not None
            or self.cfg.track
            or any(g.kind == "champion_challenger" for g in self.cfg.gates)
        )

    # ---- stages ---------------------------------------------------------------------------------
    def _champion_injection(self, stage_name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Before an evaluate stage with a champion_challenger gate: add the production model's spec
        (as recorded at its promotion) as model ``production`` and make it the paired-test reference."""
        gate = next(
            (g for g in self.cfg.gates if g.kind == "champion_challenger" and g.stage == stage_name), None
        )
        if gate is None:
            return None
        challenger = next((m for m in data.get("models", []) if m.get("name") == gate.model), None)
        if challenger is None:
            raise PipelineStopped(
                f"gate {gate.name!r}: challenger {gate.model!r} is not among the models of stage "
                f"{stage_name!r} ({[m.get('name') for m in data.get('models', [])]})"
            )
        version, spec = D.champion_spec(self.registry)
        info = {
            "gate": gate.name,
            "challenger": gate.model,
            "challenger_spec": challenger,
            "production_version": version,
        }
        if spec is not None and _without_name(spec) == _without_name(challenger):
            # production's own model refit on today's data: comparing it with itself proves nothing
            # (a paired test of identical scores never passes), so this is a refresh, not a challenge
            info["same_as_production"] = True
        elif spec is not None:
            data["models"] = [*data["models"], {**spec, "name": CHAMPION}]
            data["reference"] = CHAMPION
            info["champion_spec"] = spec
        elif version is not None:
            self.log.warning(
                "[pipeline] production version %s has no recorded champion spec; it cannot be re-evaluated, "
                "so the challenger is compared with nothing",
                version,
            )
        return info

    def _resolve(self, s, outputs: dict[str, str]) -> tuple[ResolvedStage, dict[str, Any] | None]:
        data = stage_data(s.job, s.config, s.overrides, outputs)
        champion = self._champion_injection(s.name, data) if self.cfg.gates else None
        return resolve(s.name, s.job, data, self.root, sorted(s.refs())), champion

    def _record(
        self, st: ResolvedStage, report: dict[str, Any], action: str, seconds: float
    ) -> dict[str, Any]:
        entry = {
            "name": st.name,
            "job": st.job,
            "action": action,
            "status": report.get("status"),
            "key": st.key,
            "output_dir": str(st.output_dir),
            "upstream": st.upstream,
            "inputs": st.inputs,
            "git_sha": report.get("git_sha"),
            "config": st.config,
            "counts": report.get("counts"),
            "metrics": report.get("metrics"),
            "artifacts": report.get("artifacts"),
            "seconds": round(seconds, 2),
            "timings": report.get("timings"),
            "error": report.get("error"),
        }
        self.lineage["stages"].append(entry)
        return entry

    def _track(self, st: ResolvedStage, report: dict[str, Any]) -> None:
        if not self.cfg.track:
            return
        try:
            run_id = self.registry.log_job_report(
                report,
                {"recsys.pipeline": str(self.root), "recsys.stage": st.name, "recsys.stage_key": st.key},
            )
            self.lineage["stages"][-1]["mlflow_run_id"] = run_id
        except Exception as exc:  # noqa: BLE001 - tracking must not fail a pipeline; the lineage keeps everything
            self.log.warning("[pipeline] MLflow tracking of stage %s failed: %s", st.name, exc)

    def _gates_after(
        self, stage: str, report: dict[str, Any], champion: dict[str, Any] | None
    ) -> list[G.Verdict]:
        out = []
        for g in (g for g in self.cfg.gates if g.stage == stage):
            if g.kind == "data_contract":
                v = G.data_contract(g.name, stage, report, g.key)
            elif g.kind == "data_loss":  # read on failure too: the gate is what fails the clean stage
                v = G.data_loss(g.name, stage, report, g.key)
            elif report.get("status") != "succeeded":
                continue  # the stage failure itself stops the pipeline
            elif g.kind == "reconciliation":
                v = G.reconciliation(g.name, stage, report, g.key)
            elif g.kind == "metric_min":
                v = G.metric_min(g.name, stage, report, g.key, g.model, g.metric, g.min)
            elif g.kind == "compression":
                v = G.compression(g.name, stage, report, g.model)
            elif g.kind == "ope_no_drop":
                v = G.ope_no_drop(g.name, stage, report, g.estimator, g.max_drop)
            elif champion and champion.get("same_as_production"):
                v = G.Verdict(
                    g.name,
                    "champion_challenger",
                    stage,
                    True,
                    f"challenger {g.model!r} has production's spec (version {champion.get('production_version')}): "
                    "a refresh on current data, nothing to compare",
                    {"challenger": g.model, "refresh": True},
                )
            else:
                has_champion = bool(champion and champion.get("champion_spec"))
                v = G.champion_challenger(
                    g.name,
                    stage,
                    report,
                    g.model,
                    CHAMPION if has_champion else None,
                    g.metric,
                    g.alpha,
                    g.test,
                    g.min_improvement,
                )
                v.details["production_version"] = (champion or {}).get("production_version")
            self.log.info(
                "[pipeline] gate %s (%s): %s — %s", g.name, g.kind, "PASS" if v.passed else "FAIL", v.reason
            )
            self.lineage["gates"].append(v.as_dict())
            out.append(v)
        return out

    def run_stages(self) -> dict[str, Any]:
        cfg = self.cfg
        stages = [s for s in cfg.stages if s.enabled]
        start = next((i for i, s in enumerate(stages) if s.name == cfg.from_stage), None)
        outputs: dict[str, str] = {}
        champion_info = None
        for i, s in enumerate(stages):
            st, champion = self._resolve(s, outputs)
            champion_info = champion or champion_info
            cached = None if cfg.force else st.cached_report()
            rerun = cached is None or (start is not None and i >= start)
            if start is not None and i < start and cached is None:
                raise PipelineStopped(
                    f"cannot resume from {cfg.from_stage!r}: stage {s.name!r} has no finished output for its current "
                    f"config and inputs (key {st.key[:12]}); run the pipeline without from_stage"
                )
            t0 = time.perf_counter()
            with get_console().stage(s.name, step=f"{i + 1}/{len(stages)}") as shown:  # one display per stage
                if (
                    rerun or cached is None
                ):  # (cached is None implies rerun; spelled out for the type checker)
                    self.log.info("[pipeline] stage %s (%s) -> %s", s.name, s.job, st.output_dir)
                    report = execute(st)
                else:
                    self.log.info(
                        "[pipeline] stage %s (%s): inputs and config unchanged, reusing %s",
                        s.name,
                        s.job,
                        st.output_dir,
                    )
                    report = cached
                self.reports[s.name] = report
                self._record(st, report, "ran" if rerun else "cached", time.perf_counter() - t0)
                if rerun and report.get("status") == "succeeded":
                    self._track(st, report)
                verdicts = self._gates_after(s.name, report, champion)
                failed = [v for v in verdicts if not v.passed and v.kind != "compression"]  # advisory
                shown.done(
                    metric=key_metric(report),
                    report=st.output_dir / "report.json",
                    status=_row_status(report, rerun, bool(failed)),
                )
            if report.get("status") != "succeeded":
                gate = next((v.gate for v in failed), None)
                raise PipelineStopped(
                    f"stage {s.name!r} ({s.job}) failed{f' (gate {gate})' if gate else ''}: "
                    f"{report.get('error')}; see {st.output_dir / 'report.json'}; fix it and rerun "
                    f"with from_stage={s.name}"
                )
            if failed:
                raise PipelineStopped(f"gate {failed[0].gate!r} after stage {s.name!r}: {failed[0].reason}")
            outputs[s.name] = str(st.output_dir)
            self._point_current(st.output_dir)
        return {"champion": champion_info}

    @staticmethod
    def _point_current(out: Path) -> None:
        """``stages/<name>/current`` -> the stage's last successful output (what drift and humans read)."""
        link = out.parent / "current"
        tmp = out.parent / ".current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(out.name)
        tmp.replace(link)  # atomic: readers never see a missing link

    # ---- deploy ---------------------------------------------------------------------------------
    def deploy(self, champion_info: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.cfg.deploy is None:
            return None
        with get_console().stage("deploy") as shown:
            out = self._deploy(champion_info)
            state = "promoted" if out["promoted"] else f"(production: {out['production_after']})"
            shown.done(metric=f"version {out['version']} {state}", report=self.root / "lineage.json")
        return out

    def _deploy(self, champion_info: dict[str, Any] | None) -> dict[str, Any]:
        d = self.cfg.deploy
        assert d is not None
        index_report = self.reports[d.index_stage]
        model_report = self.reports.get(d.model_stage) if d.model_stage else None
        stage_keys = {e["name"]: e["key"] for e in self.lineage["stages"]}
        spec = None
        if d.champion_gate:
            gate = next(g for g in self.cfg.gates if g.name == d.champion_gate)
            spec = (champion_info or {}).get("challenger_spec")
            if spec is None:
                ev = self.reports.get(gate.stage, {}).get("config", {})
                spec = next((m for m in ev.get("models", []) if m.get("name") == gate.model), None)
        key = D.deploy_key(
            {"index": stage_keys[d.index_stage], "model": stage_keys.get(d.model_stage or ""), "spec": spec}
        )
        metrics = {v["gate"]: v["details"] for v in self.lineage["gates"]}
        compressed = self._compressed(d.compress_gate)
        version, new = D.register(
            self.registry,
            index_report,
            model_report,
            spec,
            key,
            str(self.root / "lineage.json"),
            metrics,
            compressed,
        )
        before = self.registry.alias_version("production")
        out: dict[str, Any] = {
            "version": version,
            "registered": new,
            "production_before": before,
            "model_name": self.registry.model_name,
            "tracking_uri": self.registry.tracking_uri,
        }
        if d.promote and before != version:
            self.registry.promote(version)
        out["production_after"] = self.registry.alias_version("production")
        out["promoted"] = out["production_after"] == version and before != version
        self.log.info(
            "[pipeline] registry %s: version %s %s (production %s -> %s)",
            self.registry.model_name,
            version,
            "registered" if new else "already registered",
            before,
            out["production_after"],
        )
        if d.serve and out["production_after"] == version:
            target = self.registry.serving_target(version)
            served = D.serve_target(
                d.serve.config,
                target["artifacts"],
                target["index_version"],
                d.serve.arm,
                d.serve.port,
                target.get("model"),
            )
            out["service"] = {**served, "version": version, "index_version": target["index_version"]}
            if d.serve.smoke_query:
                out["service"]["smoke"] = D.smoke(served["url"], d.serve.smoke_query)
            self.log.info(
                "[pipeline] serving version %s at %s (docs: %s/docs)", version, served["url"], served["url"]
            )
        return out

    def _compressed(self, gate_name: str | None) -> dict[str, Any] | None:
        """The compress stage's variant rows and the gate's verdict, for the registry (None: no such gate
        or its stage did not run)."""
        gate = next((g for g in self.cfg.gates if g.name == gate_name), None)
        verdict = next((v for v in self.lineage["gates"] if v["gate"] == gate_name), None)
        if gate is None or verdict is None or gate.stage not in self.reports:
            return None
        return {"report": self.reports[gate.stage], "verdict": verdict}

    # ---- all ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        error: BaseException | None = None
        try:
            info = self.run_stages()
            self.lineage["deployment"] = self.deploy(info["champion"])
            self.lineage["status"] = "succeeded"
        except BaseException as exc:
            self.lineage["status"] = "stopped" if isinstance(exc, PipelineStopped) else "failed"
            self.lineage["error"] = f"{type(exc).__name__}: {exc}"
            error = exc
        finally:
            self.lineage["finished_at"] = _now()
            self._write_outputs()
        if error is not None:
            raise error
        return self.summary()

    def summary(self) -> dict[str, Any]:
        stages = self.lineage["stages"]
        return {
            "counts": {
                "stages": len(stages),
                "ran": sum(s["action"] == "ran" for s in stages),
                "cached": sum(s["action"] == "cached" for s in stages),
                "gates": len(self.lineage["gates"]),
            },
            "stages": [
                {k: s[k] for k in ("name", "job", "action", "status", "key", "output_dir", "seconds")}
                for s in stages
            ],
            "gates": self.lineage["gates"],
            "deployment": self.lineage["deployment"],
            "artifacts": {
                "lineage": str(self.root / "lineage.json"),
                "gauges": str(self.root / "pipeline.prom"),
            },
        }

    def _write_outputs(self) -> None:
        self.lineage["git_sha"] = git_sha()
        self.lineage["config"] = self.cfg.model_dump(mode="json")
        write_json(self.root / "lineage.json", self.lineage)
        try:
            export_gauges(
                self.lineage,
                self.root / "pipeline.prom",
                self.cfg.pushgateway,
                Path(self.lineage["pipeline"]).name,
            )
        except Exception as exc:  # noqa: BLE001 - an unreachable Pushgateway must not hide the pipeline's result
            self.log.warning("[pipeline] exporting gauges failed: %s", exc)
        self.log.info("[pipeline] lineage: %s", self.root / "lineage.json")

    @staticmethod
    def load_lineage(root: Path) -> dict[str, Any]:
        return json.loads((root / "lineage.json").read_text(encoding="utf-8"))
