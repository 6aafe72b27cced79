"""Core commands ``editmetrics run`` and ``editmetrics models`` (model runs: editmetrics.engine.model_runs)."""

from __future__ import annotations

import json
import sys

import click

from editmetrics.cli.options import settings_options
from editmetrics.engine.ray_executor import executor_options


@click.command("run")
@click.argument("model_id", metavar="MODEL")
@click.option("--pairs", required=True, type=click.Path(dir_okay=False), help="Input pairs file (.jsonl or .csv).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: pairs.jsonl and images/.")
@click.option("--seed", default=0, show_default=True, type=int, help="Run seed (each record's seed derives from it).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: skip ids already in OUT_DIR/pairs.jsonl.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT_DIR/pairs.jsonl of an earlier run.")
@settings_options  # --set also takes a model parameter (see `editmetrics models --json`)
@click.option("--device", default="cpu", show_default=True, help="torch device for model inference.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@executor_options
def run_command(model_id, pairs, out_dir, seed, resume, overwrite, assignments, config_path, device, progress,
                executor, ray_address):
    """Run MODEL over a pairs file; writes OUT_DIR/pairs.jsonl for `editmetrics score`."""
    from editmetrics.contract.model import ModelError
    from editmetrics.engine.config import load_settings, parse_assignments
    from editmetrics.engine.model_runs import build_model, run_model
    from editmetrics.engine.ray_executor import make_executor
    from editmetrics.engine.runner import UsageError, read_results
    from editmetrics.plugins.registry import get_registry

    registry = get_registry()
    assigned = parse_assignments(assignments)
    cls = registry.get("models", model_id)
    settings = load_settings(config_path, {k: v for k, v in assigned.items() if k not in cls.params})
    try:
        model = build_model(model_id, assigned, settings, registry)
        result = run_model(model, pairs, out_dir, seed=seed, resume=resume, overwrite=overwrite, device=device,
                           registry=registry, progress=progress,
                           executor=make_executor(executor, ray_address, settings))
    except ModelError as exc:  # weights missing, load failure: nothing can be produced
        raise UsageError(str(exc)) from None
    total = failed = 0
    for row in read_results(result.out):  # streamed: memory stays flat
        total += 1
        failed += "error" in row
    click.echo(f"{total} records in {result.out} ({result.written} produced now, "
               f"{result.skipped} already there, {failed} failed)")
    if failed:
        click.echo(f"{failed} record(s) have errors; see the 'error' field in {result.out}", err=True)
        sys.exit(1)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@settings_options
def models_command(as_json, config_path, assignments):
    """List the models every loaded plugin registered, with their kind and weights."""
    from editmetrics.engine.config import load_settings, parse_assignments
    from editmetrics.engine.model_runs import model_table
    from editmetrics.plugins.registry import get_registry

    rows = model_table(get_registry(), load_settings(config_path, parse_assignments(assignments)))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = {None: "no weights needed", True: "weights present", False: "weights missing"}
        click.echo(f"{row['id']:<16} {row['kind']:<10} {state[row['weights_present']]:<17} "
                   f"[{row['plugin']}]  {row['description']}")
        if row["weights_present"] is False:
            for w in row["weights"]:
                where = w["resolved_path"] or "no path set"
                how = f"--set {w['setting']}=PATH" if w["setting"] else w["hint"]
                click.echo(f"{'':<16}   {w['name']}: {where} ({how})")
