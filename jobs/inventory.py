"""Profile a data set (schema, roles, stats, PII, integrity), check a quality contract, write JSON + HTML."""

from recsys.data.config import InventoryConfig

CONFIG = InventoryConfig


def run(cfg: InventoryConfig, ctx) -> dict:
    import datetime as dt
    import json

    import yaml

    from recsys.data.inventory import check_contract
    from recsys.data.inventory_job import infer_adapter, profile_inputs
    from recsys.data.report_html import render

    now = cfg.now or dt.datetime.now(dt.timezone.utc)
    inputs, roles = [cfg.input], None
    if not cfg.input.preset and not cfg.input.columns:
        with ctx.timer("infer_roles"):
            proposed, roles = infer_adapter(cfg.input, cfg.sample_rows)
        ctx.path("adapter.yaml").write_text(
            "# Proposed by `recsys run inventory` (column role inference); use as the clean job's input: section\n"
            + yaml.safe_dump({"input": proposed}, sort_keys=False)
        )
        inputs = [type(cfg.input).model_validate(proposed)]
    with ctx.timer("profile"):
        profiles = profile_inputs(inputs + list(cfg.more_inputs), cfg.top_k, cfg.bins, now, cfg.limit)
    rules = [dict(r.model_dump(), label=r.label()) for r in cfg.contract]
    contract = check_contract(profiles, rules)
    inventory = {
        "generated_at": now.isoformat(),
        "input": cfg.input.path,
        "roles": roles,
        "tables": profiles,
        "contract": contract,
    }
    ctx.path("inventory.json").write_text(json.dumps(inventory, indent=2, default=str))
    with ctx.timer("html"):
        charts = ctx.output_dir / "charts"
        charts.mkdir(exist_ok=True)
        ctx.path("inventory.html").write_text(render(inventory, charts), encoding="utf-8")
    failed = [r["label"] + f" (got {r['value']})" for r in contract if not r["ok"]]
    result = {
        "counts": {t: p["rows"] for t, p in profiles.items()},
        "contract_violations": failed,
        "artifacts": {
            "inventory": str(ctx.output_dir / "inventory.json"),
            "html": str(ctx.output_dir / "inventory.html"),
            "charts": str(charts),
        }
        | ({"adapter": str(ctx.output_dir / "adapter.yaml")} if roles else {}),
    }
    if failed:
        raise RuntimeError(f"quality contract violated ({len(failed)} rule(s)): " + "; ".join(failed))
    return result


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
