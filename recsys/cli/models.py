"""``recsys models ls | promote <version> | rollback``: the registry from the command line.

With ``--serve CONFIG`` (and ``--ray-address`` of the cluster running the service), promote and
rollback also move the live service to the new production version: an in-place Serve update, no
downtime.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recsys.pipeline.deploy import serve_target
from recsys.registry import ModelRegistry, RegistryError

models_app = typer.Typer(
    help="Model registry (MLflow): list versions, promote, roll back.", no_args_is_help=True
)
console = Console()

TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking URI (default: embedded sqlite under runs/mlflow).",
    ),
]
NameOpt = Annotated[str, typer.Option("--name", help="Registered model name.")]
ServeOpt = Annotated[
    str | None,
    typer.Option("--serve", help="Serve config of the live service to move to the new production version."),
]
ArmOpt = Annotated[
    str | None,
    typer.Option(
        "--arm",
        help="Only this arm moves to production (default: every arm; arms with `registry:` follow their alias).",
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster running the service (host:port)."),
]


def _registry(tracking_uri: str | None, name: str) -> ModelRegistry:
    return ModelRegistry(tracking_uri=tracking_uri, model_name=name)


def _fail(exc: Exception) -> None:
    Console(stderr=True).print(f"[red]{exc}[/red]")
    raise typer.Exit(1)


def _move_service(reg, serve: str | None, arm: str | None, ray_address: str | None) -> None:
    if not serve:
        return
    import ray  # lazy: Ray costs ~1 s of CLI start-up; only --serve needs it

    target = reg.serving_target("production")
    ray.init(address=ray_address or "auto", log_to_driver=False)
    try:
        out = serve_target(
            serve, target["artifacts"], target["index_version"], arm, model=target.get("model")
        )
    finally:
        ray.shutdown()
    console.print(
        f"service at {out['url']} now serves version {target['version']} (index {target['index_version']})"
    )


@models_app.command("ls")
def ls(
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "recsys",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered versions, newest first, with aliases (staging / production / previous)."""
    rows = _registry(tracking_uri, name).versions()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"registered model {name!r}")
    for col in ("version", "aliases", "created", "index", "gates", "source"):
        table.add_column(col)
    for r in rows:
        created = (
            dt.datetime.fromtimestamp(r["created"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
            if r["created"]
            else ""
        )
        tags = r["tags"]
        table.add_row(
            r["version"],
            ", ".join(r["aliases"]),
            created,
            tags.get("recsys.index_version", ""),
            ", ".join(json.loads(tags.get("recsys.metrics", "{}"))),
            r["source"],
        )
    console.print(table if rows else f"no versions of {name!r} yet: run `recsys run pipeline --config tiny`")


@models_app.command()
def promote(
    version: str,
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "recsys",
    serve: ServeOpt = None,
    arm: ArmOpt = None,
    ray_address: RayOpt = None,
) -> None:
    """Make VERSION production (the old production becomes `previous`); --serve moves the live service."""
    reg = _registry(tracking_uri, name)
    try:
        out = reg.promote(version)
    except RegistryError as exc:
        _fail(exc)
    console.print(f"{name}: production = {out['production']} (previous: {out['previous']})")
    _move_service(reg, serve, arm, ray_address)


@models_app.command()
def rollback(
    tracking_uri: TrackingOpt = None,
    name: NameOpt = "recsys",
    serve: ServeOpt = None,
    arm: ArmOpt = None,
    ray_address: RayOpt = None,
) -> None:
    """Restore the production version before the current one; --serve moves the live service."""
    reg = _registry(tracking_uri, name)
    try:
        out = reg.rollback()
    except RegistryError as exc:
        _fail(exc)
    console.print(f"{name}: rolled back {out['rolled_back']} -> production = {out['production']}")
    _move_service(reg, serve, arm, ray_address)
