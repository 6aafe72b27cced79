"""Core commands ``editmetrics report`` (HTML, editmetrics.analysis.report) and
``editmetrics compare`` (paired comparison, editmetrics.analysis.compare)."""

from __future__ import annotations

import json
import os

import click

from editmetrics.analysis.report_media import FULL_SIZE, THUMB_SIZE


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--title", help="Page title (default: the results file name).")
@click.option("--by", default="category", show_default=True, help="Record field for the per-group tables.")
@click.option("--thumb-size", default=THUMB_SIZE, show_default=True, type=click.IntRange(16, 1024),
              help="Longest side of the inlined thumbnails, in pixels.")
@click.option("--full-size", default=FULL_SIZE, show_default=True, type=click.IntRange(0, 8192),
              help="Longest side of the full-size views (larger images are scaled down; 0: no full-size views).")
def report(results, out, title, by, thumb_size, full_size):
    """Write a self-contained HTML report of a results file (several files: a comparison)."""
    from editmetrics.analysis.report import write_report

    try:
        n = write_report(list(results), out, title=title, by=by, thumb_size=thumb_size, full_size=full_size)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"not a results JSON Lines file: {exc}") from None
    click.echo(f"wrote {out} ({n} records, {os.path.getsize(out) // 1024} KiB)")


@click.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--metrics", "metric_list", help="Comma-separated score keys (default: those in every file).")
@click.option("--by", default=None, help="Also compare per value of this record field (e.g. category).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(results, metric_list, by, as_json):
    """Paired comparison of results files scored on the same records (matched by id)."""
    from editmetrics.analysis.compare import CompareError, compare_files, format_comparison
    from editmetrics.contract.metric import split_specs
    from editmetrics.engine.runner import UsageError

    if len(results) < 2:
        raise UsageError("compare needs at least two results files")
    try:
        out = compare_files(list(results), split_specs(metric_list) if metric_list else None, by)
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"not a results JSON Lines file: {exc}") from None
    if as_json:
        click.echo(json.dumps(out, indent=2, allow_nan=False))
    else:
        click.echo(format_comparison(out))
    for m in out["missing"]:
        if m["count"]:
            click.echo(f"warning: {m['count']} record(s) missing from {m['file']} (listed under 'missing')",
                       err=True)
