"""The ``recsys`` command: list, validate, run and submit jobs; follow submissions.

Commands of later stages (``evaluate-run``, ``models``, ``serve``, ``demo``) register here too.
``--quiet`` / ``--verbose`` on run, submit, serve and demo pick the console's mode
(recsys/utils/console.py): by default a run shows its stages and a summary, and its logs go to a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from recsys import demo as demo_lib
from recsys.cli.entry import QUIET_HELP, VERBOSE_HELP, console_mode, parse_job, run_quietly
from recsys.config.loader import ConfigError
from recsys.config.paths import configs_dir, runs_root
from recsys.jobs_registry import get_job, job_names, resolve_config_path
from recsys.ops import submit as sub
from recsys.runtime import FAST_INGRESS_ENV, JOB_ENV
from recsys.serving import launch
from recsys.utils.console import ENV as CONSOLE_ENV
from recsys.utils.console import mode_from

app = typer.Typer(
    name="recsys",
    help="recsys: from raw e-commerce logs to autoscaled search and recommendation on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err = Console(stderr=True)

ConfigOpt = Annotated[
    str, typer.Option("--config", "-c", help="YAML path, or a scale: tiny | local | cluster.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. train.lr=3e-5 models.3.path=P models[name=SASRec].path=P"),
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="pipeline: resume from this stage (same as from_stage=STAGE).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)]
AddressOpt = Annotated[
    str,
    typer.Option(
        "--address", envvar="RAY_API_SERVER_ADDRESS", help="Ray dashboard address, e.g. http://127.0.0.1:8265"
    ),
]


def _parse(job: str, config: str, overrides: list[str] | None, check_paths: bool = True):
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


def _mode_flags(quiet: bool, verbose: bool) -> None:
    if quiet and verbose:
        err.print("[red]--quiet and --verbose exclude each other[/red]")
        raise typer.Exit(2)


@app.command()
def run(
    job: str,
    config: ConfigOpt,
    overrides: Overrides = None,
    from_stage: FromOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a job in this process (against RAY_ADDRESS if set, else a local Ray): one progress line per
    stage and a summary; logs and Ray output in <output_dir>/job.log."""
    _mode_flags(quiet, verbose)
    overrides = [*(overrides or []), *([f"from_stage={from_stage}"] if from_stage else [])]
    spec, cfg = _parse(job, config, overrides)
    raise typer.Exit(run_quietly(spec, cfg, quiet, verbose))


@app.command()
def submit(
    job: str,
    config: ConfigOpt,
    address: AddressOpt = "http://127.0.0.1:8265",
    overrides: Overrides = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the submission id and return.")] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="KEY=VALUE for the job's environment.")
    ] = None,
    submission_id: Annotated[str | None, typer.Option("--submission-id")] = None,
    from_stage: FromOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Submit a job to a Ray cluster (working dir = this project); stream its console, exit with its status."""
    _mode_flags(quiet, verbose)
    overrides = [*(overrides or []), *([f"from_stage={from_stage}"] if from_stage else [])]
    spec, _ = _parse(job, config, overrides, check_paths=False)  # paths are checked on the cluster
    cfg_path = str(resolve_config_path(spec.name, config)) if not config.startswith("env:") else config
    env_map = {CONSOLE_ENV: mode_from(quiet, verbose), **dict(e.split("=", 1) for e in (env or []))}
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
    print(sub.status(submission_id, address))


@app.command()
def logs(
    submission_id: str,
    address: AddressOpt = "http://127.0.0.1:8265",
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print a submission's logs (--follow streams until it ends)."""
    if follow:
        final = sub.follow(submission_id, address)
        raise typer.Exit(0 if final == "SUCCEEDED" else 1)
    sys.stdout.write(sub.logs(submission_id, address))


@app.command()
def stop(submission_id: str, address: AddressOpt = "http://127.0.0.1:8265") -> None:
    """Stop a running submission."""
    print("stopped" if sub.stop(submission_id, address) else "not running")


@app.command("serve")
def serve_cmd(
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Serve config YAML, or a scale: tiny | local | cluster."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: the config's http_options.port).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="HTTP host (default: the config's).")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only validate the config's args, start nothing.")
    ] = False,
    stop: Annotated[
        bool,
        typer.Option(
            "--stop",
            help="Stop the running service: a foreground `recsys serve` (Ctrl-C does the same) and the "
            "Serve apps of the cluster at --address (default: the `make demo` cluster).",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="RAY_API_SERVER_ADDRESS",
            help="--stop: the Ray dashboard of the cluster serving.",
        ),
    ] = None,
    fast_ingress: Annotated[
        bool,
        typer.Option(
            "--fast-ingress",
            help="Start the local Ray with Ray Serve's HAProxy ingress and throughput-optimized mode "
            "(RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1, "
            "user code and router kept off the replicas' "
            "main loop): lower per-request overhead. On an existing cluster (RAY_ADDRESS), set those variables "
            "(recsys.runtime.FAST_INGRESS_ENV) where its nodes start instead.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve search / recommend / suggest with Ray Serve from a Serve config (same file as `serve run`), in the
    foreground until Ctrl-C or `recsys serve --stop`; Ray's logs go to runs/serve/serve.log."""
    _mode_flags(quiet, verbose)
    if stop:
        raise typer.Exit(_stop_service(address))
    if config is None:
        err.print("[red]--config is required (a Serve config YAML, or tiny | local | cluster)[/red]")
        raise typer.Exit(2)
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
    with console_mode(quiet, verbose) as out, out.capture(Path(runs_root()) / "serve" / "serve.log"):
        _serve_foreground(path, port, host, fast_ingress, out)


def _serve_foreground(
    path: str, port: int | None, host: str | None, fast_ingress: bool, out
) -> None:  # pragma: no cover
    import ray  # heavy: only when serving

    for k, v in JOB_ENV.items():
        os.environ.setdefault(k, v)
    ray_address = os.environ.get("RAY_ADDRESS")
    if fast_ingress:
        if ray_address:  # the Serve controller and proxies read these when the cluster's nodes start
            out.print(
                "[yellow]--fast-ingress: a running cluster keeps its ingress; start its nodes with "
                f"{' '.join(f'{k}={v}' for k, v in FAST_INGRESS_ENV.items())}[/yellow]",
                quiet_too=True,
                markup=True,
            )
        os.environ.update(FAST_INGRESS_ENV)
    ray.init(
        address=ray_address,
        runtime_env={"env_vars": dict(JOB_ENV)},
        **({} if ray_address else {"include_dashboard": False}),
    )
    served = launch.start(path, port=port, host=host)
    out.print(
        f"recsys serving {served['apps']} at {served['url']} (API docs: {served['url']}/docs); stop: Ctrl-C or "
        f"`recsys serve --stop`; log: {out.log_path}",
        quiet_too=True,
    )
    launch.serve_forever(served["apps"], served["url"])


def _stop_service(address: str | None) -> int:
    """`recsys serve --stop`: the foreground server (pid file), then the Serve apps of the cluster."""
    stopped = False
    pid = launch.stop_foreground()
    if pid is not None:
        console.print(f"stopped recsys serve (pid {pid})")
        stopped = True
    dashboard = address or demo_lib.demo_dashboard()
    if dashboard:
        try:
            with httpx.Client(base_url=dashboard, timeout=30) as client:
                names = launch.stop_apps(client)
        except httpx.HTTPError as exc:
            err.print(f"[red]could not reach the Ray dashboard at {dashboard}: {exc}[/red]")
            return 1
        if names:
            console.print(
                f"stopped Serve apps {names} on {dashboard} (Ray keeps running; "
                f"stop it too: cluster/local/stop.sh --port {demo_lib.DEMO_PORT})"
            )
            stopped = True
    if not stopped:
        console.print("no service running")
    return 0


@app.command("evaluate-run")
def evaluate_run_cmd(
    run_file: Annotated[str, typer.Option("--run", help="TREC run: qid Q0 docid rank score tag.")],
    qrels: Annotated[str, typer.Option("--qrels", help="TREC qrels: qid 0 docid relevance.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric (repeatable), e.g. ndcg@10.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score a TREC run file against TREC qrels (ndcg@k, recall@k, mrr, map, ...)."""
    from recsys.evaluation.cli import evaluate_run_command  # the evaluation package loads numpy and scipy

    raise typer.Exit(evaluate_run_command(run_file, qrels, metric, as_json))


from recsys.cli.models import models_app  # noqa: E402 - light: mlflow is imported by the commands

app.add_typer(models_app, name="models")


@app.command()
def demo(
    scale: Annotated[str, typer.Option(help="Config scale to run.")] = "local",
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline on the shared data (local config), deploy the service, print example answers;
    the service stays up (stop it: recsys serve --stop)."""
    _mode_flags(quiet, verbose)
    with console_mode(quiet, verbose) as out:
        code = demo_lib.run_demo(scale, out)
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app(prog_name=Path(sys.argv[0]).name)
