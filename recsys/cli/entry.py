"""``python -m jobs.<job> --config F [k=v ...]``: the same code path as ``recsys run``.

This is the entrypoint a Ray job submission runs on the cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

import yaml

from recsys.config.loader import ConfigError, load_config
from recsys.jobs_registry import get_job, resolve_config_path
from recsys.registry.tracking import track_job
from recsys.runtime import run_job
from recsys.utils.console import RunConsole, mode_from, set_mode

QUIET_HELP = "Print only the summary and errors."
VERBOSE_HELP = "Also print every log line and Ray worker output (always kept in the run's job.log)."


def parse_job(job: str, config: str | None, overrides: list[str], *, check_paths: bool = True):
    """``config`` is a path, a scale name, or ``env:VAR`` (YAML text in an env var, used by submit)."""
    spec = get_job(job)
    if config and config.startswith("env:"):
        data = yaml.safe_load(os.environ.get(config[4:], "")) or {}
        return spec, load_config(spec.config_cls, None, overrides, check_paths=check_paths, data=data)
    path = resolve_config_path(spec.name, config) if config else None
    return spec, load_config(spec.config_cls, path, overrides, check_paths=check_paths)


def run_parsed(spec, cfg) -> dict:
    return run_job(spec.name, cfg, spec.module.run, needs_ray=spec.needs_ray, track=track_job)


@contextlib.contextmanager
def console_mode(quiet: bool = False, verbose: bool = False) -> Iterator[RunConsole]:
    """The console on, in the mode of the flags (else $RECSYS_CONSOLE, else normal), for the block;
    off again after it (a command run in-process by tests leaves no mode behind)."""
    console = set_mode(mode_from(quiet, verbose))
    try:
        yield console
    finally:
        set_mode(None)


def run_quietly(spec, cfg, quiet: bool = False, verbose: bool = False) -> int:
    """Run a parsed job with the console on; the exit status. A failure was printed by the runtime
    (stage, reason, report path; the traceback is in job.log), so it is not raised again here."""
    with console_mode(quiet, verbose) as console:
        try:
            report = run_parsed(spec, cfg)
        except BaseException:
            if not console.errors:  # failed before the run could report it: show it all
                raise
            return 130 if isinstance(sys.exc_info()[1], KeyboardInterrupt) else 1
    return 0 if report.get("status") == "succeeded" else 1


def job_main(module_name: str, argv: list[str] | None = None) -> None:
    if module_name == "__main__":  # `python -m jobs.<job>`: the real name is on the module spec
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module_name = spec.name if spec else sys.argv[0]
    job = module_name.rsplit(".", 1)[-1].removesuffix(".py")
    parser = argparse.ArgumentParser(prog=f"python -m jobs.{job}", description=f"Run the {job} job.")
    parser.add_argument(
        "--config", "-c", required=True, help="YAML config path or scale (tiny/local/cluster)"
    )
    parser.add_argument("--validate", action="store_true", help="only parse and check the config")
    parser.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    parser.add_argument("--verbose", "-v", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = parser.parse_args(argv)
    try:
        spec, cfg = parse_job(job, args.config, args.overrides)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        sys.exit(1)
    if args.validate:
        print(f"{job}: config OK")
        return
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose exclude each other")
    sys.exit(run_quietly(spec, cfg, args.quiet, args.verbose))
