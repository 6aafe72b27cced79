"""CLI: ``editmetrics sppe synth``, ``editmetrics sppe table`` (``train erma`` is a core command: editmetrics.cli.train)."""

from __future__ import annotations

import click


@click.group("sppe")
def sppe_group():
    """SPPE task 1 helpers (synthetic data, Table-4-style tables)."""


@sppe_group.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the set into.")
@click.option("--photos", default=16, show_default=True, type=click.IntRange(2, 18),
              help="skimage.data photographs used as sources.")
@click.option("--surrogates", default=3, show_default=True, type=click.IntRange(1), help="Surrogates per photo.")
@click.option("--instructions", default=2, show_default=True, type=click.IntRange(1, 7),
              help="Instructions per surrogate (SPPE samples two).")
@click.option("--size", default=96, show_default=True, type=click.IntRange(32), help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--clip", help="Label with this CLIP spec instead of a new tiny random CLIP.")
@click.option("--layout", type=click.Choice(["sppe", "instructpix2pix"]), default="sppe", show_default=True,
              help="instructpix2pix: IP2P-style folders with full-image surrogates, global edits, no labels.")
def synth(out, photos, surrogates, instructions, size, seed, clip, layout):
    """Write a small SPPE-format set from skimage.data photographs (labels: editability_label)."""
    from editmetrics.sppe.synthetic import make_synthetic, make_synthetic_ip2p

    if layout == "instructpix2pix":
        summary = make_synthetic_ip2p(out, photos=photos, instructions=instructions, size=size, seed=seed)
        click.echo(f"{summary['records']} InstructPix2Pix-style samples in {out} "
                   f"(read them with `editmetrics dataset export instructpix2pix {out} --out PAIRS.jsonl`)")
        return
    summary = make_synthetic(out, photos=photos, surrogates=surrogates, instructions=instructions, size=size,
                             seed=seed, clip_spec=clip)
    click.echo(f"{summary['records']} records in {out}/sppe.json ({summary['train']} in train.jsonl, "
               f"{summary['test']} in test.jsonl); labels with CLIP {summary['clip']} "
               f"(also in {out}/editmetrics.toml)")


@sppe_group.command("table")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", default="editability_label", show_default=True)
@click.option("--by", default="privacy_group", show_default=True,
              help="Field for the SRCC-std row: privacy_group (SPPE's 11 groups, Table 2; taken from "
                   "'category' where a row has none), category (the fine-grained categories), '' for none.")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write the Markdown here too.")
def table(results, label, by, bootstrap, out_path):
    """Table-4-style Markdown (SRCC, PLCC after the logistic fit, ...) of a results file."""
    from editmetrics.plugins.registry import get_registry
    from editmetrics.engine.runner import read_results
    from editmetrics.analysis.stats import correlate_rows, metric_directions
    from editmetrics.sppe.privacy import GROUP_FIELD, with_privacy_groups
    from editmetrics.sppe.table import markdown_table

    rows = list(read_results(results))
    if by == GROUP_FIELD:
        rows, unknown = with_privacy_groups(rows)
        if unknown:
            click.echo(f"categories outside SPPE's 36 have no privacy group (overall figures only): "
                       f"{', '.join(unknown)}", err=True)
    keys = [k for k in dict.fromkeys(k for r in rows for k in r.get("scores", {})) if k != label]
    scored = [k for k in keys if any(r["scores"].get(k) is not None for r in rows)]
    failures = {}
    for k in keys:
        if k not in scored:
            reasons = [r.get("errors", {}).get(k) for r in rows if r.get("errors", {}).get(k)]
            failures[k] = reasons[0] if reasons else "no score"
    out = correlate_rows(rows, label, scored, by=by or None,
                         direction=metric_directions(keys, get_registry()), n_boot=bootstrap)
    text = markdown_table(out, failures)
    click.echo(text)
    if out_path:
        from editmetrics.engine.results import atomic_write, check_paths, starts_with

        check_paths({"RESULTS": results}, {"--out": out_path})
        atomic_write(out_path, text + "\n", label="--out", replaceable=starts_with((b"|",)))
