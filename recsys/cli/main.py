"""The ``recsys`` command: list, validate, run and submit jobs; follow submissions.

Commands of later stages (``evaluate-run``, ``models``, ``serve``) register here too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recsys.config.loader import ConfigError

app = typer.Typer(
    name="recsys",
    help="recsys: from raw e-commerce logs to autoscaled search and recommendation on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err = Console(stderr=True)

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="YAML path, or a scale: tiny | local | cluster.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. train.lr=3e-5 scaling.num_workers=4")]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="pipeline: resume from this stage (same as from_stage=STAGE).")
]
AddressOpt = Annotated[
    str, typer.Option("--address", envvar="RAY_API_SERVER_ADDRESS", help="Ray dashboard address, e.g. http://127.0.0.1:8265")
]


def _parse(job: str, config: str, overrides: list[str] | None, check_paths: bool = True):
    from recsys.cli.entry import parse_job

    try:
        return parse_job(job, config, overrides or [], check_paths=check_paths)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise typer.Exit(1) from None


@app.command("ls")
def ls_jobs() -> None:
    """List the jobs and their shipped configs."""
    from recsys.jobs_registry import get_job, job_names

    table = Table(title="recsys jobs")
    table.add_column("job")
    table.add_column("what it does")
    table.add_column("configs")
    for name in job_names():
        spec = get_job(name)
        table.add_row(name, spec.summary, ", ".join(p.stem for p in spec.shipped_configs()))
    console.print(table)


@app.command()
def validate(job: str, config: ConfigOpt, overrides: Overrides = None) -> None:
    """Parse and check a job config without starting Ray; exit 1 listing every error."""
    _parse(job, config, overrides)
    console.print(f"[green]{job}: config OK[/green]")


@app.command()
def run(job: str, config: ConfigOpt, overrides: Overrides = None, from_stage: FromOpt = None) -> None:
    """Run a job in this process (against RAY_ADDRESS if set, else a local Ray)."""
    from recsys.cli.entry import run_parsed

    overrides = [*(overrides or []), *([f"from_stage={from_stage}"] if from_stage else [])]
    spec, cfg = _parse(job, config, overrides)
    report = run_parsed(spec, cfg)
    console.print(f"{job}: {report['status']} -> {report['output_dir']}/report.json")
    raise typer.Exit(0 if report["status"] == "succeeded" else 1)


@app.command()
def submit(
    job: str,
    config: ConfigOpt,
    address: AddressOpt = "http://127.0.0.1:8265",
    overrides: Overrides = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the submission id and return.")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the job's environment.")] = None,
    submission_id: Annotated[str | None, typer.Option("--submission-id")] = None,
    from_stage: FromOpt = None,
) -> None:
    """Submit a job to a Ray cluster (working dir = this project); stream logs, exit with its status."""
    from recsys.cli import submit as sub

    overrides = [*(overrides or []), *([f"from_stage={from_stage}"] if from_stage else [])]
    spec, _ = _parse(job, config, overrides, check_paths=False)  # paths are checked on the cluster
    from recsys.jobs_registry import resolve_config_path

    cfg_path = str(resolve_config_path(spec.name, config)) if not config.startswith("env:") else config
    env_map = dict(e.split("=", 1) for e in (env or []))
    sid = sub.submit(spec.name, cfg_path, overrides or [], address, env_map, submission_id)
    console.print(f"submitted {sid} to {address}")
    if no_wait:
        print(sid)
        return
    final = sub.follow(sid, address)
    console.print(f"{sid}: {final}")
    raise typer.Exit(0 if final == "SUCCEEDED" else 1)


@app.command()
def status(submission_id: str, address: AddressOpt = "http://127.0.0.1:8265") -> None:
    """Print a submission's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from recsys.cli import submit as sub

    print(sub.status(submission_id, address))


@app.command()
def logs(
    submission_id: str,
    address: AddressOpt = "http://127.0.0.1:8265",
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print a submission's logs (--follow streams until it ends)."""
    from recsys.cli import submit as sub

    if follow:
        final = sub.follow(submission_id, address)
        raise typer.Exit(0 if final == "SUCCEEDED" else 1)
    sys.stdout.write(sub.logs(submission_id, address))


@app.command()
def stop(submission_id: str, address: AddressOpt = "http://127.0.0.1:8265") -> None:
    """Stop a running submission."""
    from recsys.cli import submit as sub

    print("stopped" if sub.stop(submission_id, address) else "not running")


@app.command("serve")
def serve_cmd(
    config: Annotated[str, typer.Option("--config", "-c", help="Serve config YAML, or a scale: tiny | local | cluster.")],
    port: Annotated[int | None, typer.Option(help="HTTP port (default: the config's http_options.port).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host (default: the config's).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only validate the config's args, start nothing.")] = False,
    fast_ingress: Annotated[bool, typer.Option(
        "--fast-ingress", help="Start the local Ray with Ray Serve's HAProxy ingress and throughput-optimized mode "
        "(RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1, user code and router kept off the replicas' "
        "main loop): lower per-request overhead. On an existing cluster (RAY_ADDRESS), set those variables "
        "(recsys.runtime.FAST_INGRESS_ENV) where its nodes start instead.")] = False,
) -> None:
    """Serve search / recommend / suggest with Ray Serve from a Serve config (same file as `serve run`)."""
    from recsys.config.paths import configs_dir
    from recsys.serving import launch

    path = config if config.endswith((".yaml", ".yml")) else str(configs_dir() / "serve" / f"{config}.yaml")
    try:
        cfg = launch.read_serve_config(path)
        for app_cfg in cfg["applications"]:
            launch.validate_args(app_cfg, path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise typer.Exit(1) from None
    if check:
        console.print(f"[green]{path}: serve config OK[/green]")
        return
    import os

    import ray

    from recsys.runtime import FAST_INGRESS_ENV, JOB_ENV

    for k, v in JOB_ENV.items():
        os.environ.setdefault(k, v)
    address = os.environ.get("RAY_ADDRESS")
    if fast_ingress:
        if address:  # the Serve controller and proxies read these when the cluster's nodes start
            console.print("[yellow]--fast-ingress: a running cluster keeps its ingress; start its nodes with "
                          f"{' '.join(f'{k}={v}' for k, v in FAST_INGRESS_ENV.items())}[/yellow]")
        os.environ.update(FAST_INGRESS_ENV)
    ray.init(address=address, runtime_env={"env_vars": dict(JOB_ENV)}, **({} if address else {"include_dashboard": False}))
    launch.start(path, port=port, host=host, blocking=True)


@app.command("evaluate-run")
def evaluate_run_cmd(
    run_file: Annotated[str, typer.Option("--run", help="TREC run: qid Q0 docid rank score tag.")],
    qrels: Annotated[str, typer.Option("--qrels", help="TREC qrels: qid 0 docid relevance.")],
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Metric (repeatable), e.g. ndcg@10.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score a TREC run file against TREC qrels (ndcg@k, recall@k, mrr, map, ...)."""
    from recsys.evaluation.cli import evaluate_run_command

    raise typer.Exit(evaluate_run_command(run_file, qrels, metric, as_json))


from recsys.cli.models import models_app  # noqa: E402 - light: mlflow is imported by the commands

app.add_typer(models_app, name="models")


@app.command()
def demo(scale: Annotated[str, typer.Option(help="Config scale to run.")] = "local") -> None:
    """Run the pipeline on the shared data (local config), deploy the service, print example answers."""
    from recsys.demo import run_demo

    raise typer.Exit(run_demo(scale))


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app(prog_name=Path(sys.argv[0]).name)
