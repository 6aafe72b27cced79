"""Core commands ``editmetrics pairs from-folders`` (editmetrics.data.pairs_from_folders) and
``editmetrics dataset list|export`` (editmetrics.data.datasets)."""

from __future__ import annotations

import json
import os

import click


@click.group("pairs")
def pairs():
    """Build pairs files."""


@pairs.command("from-folders")
@click.option("--source", required=True, type=click.Path(file_okay=False), help="Folder of source images.")
@click.option("--edited", required=True, type=click.Path(file_okay=False), help="Folder of edited images.")
@click.option("--mask", type=click.Path(file_okay=False), help="Folder of masks (optional).")
@click.option("--target", type=click.Path(file_okay=False), help="Folder of ground-truth edits (optional).")
@click.option("--instructions", type=click.Path(exists=True, dir_okay=False),
              help="CSV or JSONL with an 'id' column (= image name stem) and instruction, category, ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (.jsonl or .csv).")
@click.option("--allow-unmatched", is_flag=True,
              help="Warn about unmatched files and write the matched records, instead of failing.")
@click.option("--force", is_flag=True, help="Overwrite --out when it exists.")
def from_folders(source, edited, mask, target, instructions, out, allow_unmatched, force):
    """Match images by name stem across folders and write a pairs file."""
    from editmetrics.data.pairs_from_folders import FolderPairsError, build_pairs, write_pairs
    from editmetrics.engine.runner import UsageError

    if os.path.exists(out) and not force:
        raise UsageError(f"{out} exists: pass --force to overwrite it")
    try:
        result = build_pairs(source, edited, out, mask=mask, target=target, instructions=instructions)
    except FolderPairsError as exc:
        raise UsageError(str(exc)) from None
    for folder, names in result.ignored:
        click.echo(f"note: {len(names)} non-image file(s) in {folder} ignored: {', '.join(names[:5])}"
                   + (", ..." if len(names) > 5 else ""), err=True)
    if result.unmatched:
        if not allow_unmatched:
            raise UsageError(result.message() + "\nnothing written; pass --allow-unmatched to write the "
                             "matched records anyway")
        click.echo("warning: " + result.message(), err=True)
    if not result.records:
        raise UsageError(f"no image stem is in both {source} and {edited}: nothing to write")
    write_pairs(result.records, out)
    click.echo(f"wrote {out} ({len(result.records)} records)")


@click.group("dataset")
def dataset():
    """Dataset loaders: list them, export one as a pairs file."""


@dataset.command("list")
@click.option("--layout", is_flag=True, help="Also print the folder layout each loader expects.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_command(layout, as_json):
    """List the registered dataset loaders."""
    from editmetrics.plugins.registry import get_registry

    registry = get_registry()
    rows = [{"id": cid, "description": getattr(cls, "description", ""), "layout": getattr(cls, "layout", ""),
             "plugin": registry.plugin_of("datasets", cid)}
            for cid, cls in sorted(registry.items["datasets"].items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']:<16} [{row['plugin']}]  {row['description']}")
        if layout:
            click.echo("    " + row["layout"].replace("\n", "\n    ") + "\n")


@dataset.command("export")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (.jsonl).")
@click.option("--limit", type=click.IntRange(1), help="Export only the first N records.")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Folder for derived files such as decoded masks (default: OUT without .jsonl + '-files').")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def export_command(name, path, out, limit, work_dir, force):
    """Write dataset NAME found at PATH as a pairs file (absolute image paths)."""
    from editmetrics.data.datasets import DatasetError, export_dataset

    if os.path.exists(out) and not force:
        raise click.UsageError(f"{out} exists: pass --force to replace it")
    try:
        n = export_dataset(name, path, out, limit=limit, work_dir=work_dir)
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise click.UsageError(f"{name}: unexpected content under {path}: {type(exc).__name__}: {exc}") from None
    click.echo(f"wrote {out} ({n} records from {name} at {path})")
