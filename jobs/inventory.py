"""Profile a data set (schema, roles, stats, PII, integrity), check a quality contract, write JSON + HTML."""

from recsys.data.config import InventoryConfig

CONFIG = InventoryConfig


def run(cfg: InventoryConfig, ctx) -> dict:
    import datetime as dt
    import json

    from recsys.data.config import DEFAULT_CONTRACT
    from recsys.data.inventory import check_contract
    from recsys.data.inventory_job import (
        clean_yaml,
        default_rules,
        infer_adapter,
        profile_inputs,
        verdict,
    )
    from recsys.data.report_html import render
    from recsys.data.roles import adapter_yaml

    now = cfg.now or dt.datetime.now(dt.timezone.utc)
    inputs, proposal = [cfg.input], None
    if not cfg.input.preset and not cfg.input.columns:
        with ctx.timer("infer_roles"):
            proposal = infer_adapter(cfg.input, cfg.sample_rows)
        adapter = adapter_yaml(
            proposal,
            "Proposed by `recsys run inventory` (column role inference); use as the clean job's input: section",
        )
        ctx.path("adapter.yaml").write_text(adapter)
        ctx.path("clean.yaml").write_text(clean_yaml(adapter, ctx.path("clean.yaml"), ctx.output_dir))
        type(cfg.input).model_validate(proposal.input)  # the clean job accepts it
        inputs = [type(cfg.input).model_validate(proposal.input)]
    with ctx.timer("profile"):
        profiles = profile_inputs(inputs + list(cfg.more_inputs), cfg.top_k, cfg.bins, now, cfg.limit)
    given = list(cfg.contract) or default_rules(profiles, DEFAULT_CONTRACT)
    rules = [dict(r.model_dump(), label=r.label()) for r in given]
    contract = check_contract(profiles, rules)
    status, review = verdict(proposal, contract)
    inventory = {
        "generated_at": now.isoformat(),
        "input": cfg.input.path,
        "verdict": status,
        "review": review,
        "roles": proposal.roles if proposal else None,
        "proposal": proposal.to_json() if proposal else None,
        "null_tokens_from": (
            f"roles: the first {cfg.sample_rows:,} raw rows (source columns); tables: the full pass "
            "(tokens left as values in canonical text columns)"
        ),
        "tables": profiles,
        "contract": contract,
        "contract_default": not cfg.contract,
    }
    ctx.path("inventory.json").write_text(json.dumps(inventory, indent=2, default=str))
    with ctx.timer("html"):
        charts = ctx.output_dir / "charts"
        charts.mkdir(exist_ok=True)
        ctx.path("inventory.html").write_text(render(inventory, charts), encoding="utf-8")
    failed = [
        r["label"] + f" (got {r['value']})" for r in contract if not r["ok"] and r["severity"] == "error"
    ]
    ctx.note(
        f"inventory verdict: {status}" + (f" ({len(review)} reason(s), in inventory.json)" if review else "")
    )
    for why in review[:5]:
        ctx.note(f"  review: {why}")
    result = {
        "counts": {t: p["rows"] for t, p in profiles.items()},
        "verdict": status,
        "review": review,
        "contract_violations": failed,
        "contract_warnings": [
            r["label"] + f" (got {r['value']})" for r in contract if not r["ok"] and r["severity"] == "warn"
        ],
        "artifacts": {
            "inventory": str(ctx.output_dir / "inventory.json"),
            "html": str(ctx.output_dir / "inventory.html"),
            "charts": str(charts),
        }
        | (
            {
                "adapter": str(ctx.output_dir / "adapter.yaml"),
                "clean_config": str(ctx.output_dir / "clean.yaml"),
            }
            if proposal
            else {}
        ),
    }
    if failed:
        raise RuntimeError(f"quality contract violated ({len(failed)} rule(s)): " + "; ".join(failed))
    return result


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
