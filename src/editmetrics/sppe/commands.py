"""CLI: ``editmetrics train erma``, ``editmetrics sppe synth``, ``editmetrics sppe table``."""

from __future__ import annotations

import sys

import click

from editmetrics.contract.metric import MetricError
from editmetrics.cli.options import load_cli_settings, settings_options


def _settings(config_path, assignments, clip):
    return load_cli_settings(config_path, assignments, clip=clip)


@click.command("erma")
@click.option("--pairs", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training pairs file: source, surrogate, instruction and editability_label "
                   "(or edited_surrogate + target to compute it).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to create.")
@click.option("--label", default="editability_label", show_default=True, help="Label field of the records.")
@click.option("--label-map", type=click.Choice(["none", "cosine"]), default="none", show_default=True,
              help="cosine: the stored labels are raw cosines c in [-1, 1]; train on (1 + c) / 2 "
                   "(SPPE section 4.3). Without it, labels outside [0, 1] are refused.")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 0.9),
              help="Held-out share for early stopping (random, seeded).")
@click.option("--epochs", default=300, show_default=True, type=click.IntRange(1), help="Maximum epochs.")
@click.option("--patience", default=30, show_default=True, type=click.IntRange(1),
              help="Stop after this many epochs without a better validation MSE.")
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default=256, show_default=True, type=click.IntRange(1), help="MLP hidden width.")
@click.option("--dropout", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@settings_options
@click.option("--clip", help="CLIP backbone spec (setting 'clip'); recorded in the checkpoint.")
def train_erma(pairs, out, label, label_map, val_fraction, epochs, patience, lr, batch_size, hidden, dropout, seed,
               device, progress, config_path, assignments, clip):
    """Train ERMA's head on frozen CLIP features (SPPE eq. 3-5)."""
    from editmetrics.sppe.train import TrainOptions, train_erma as run

    settings = _settings(config_path, assignments, clip)
    opts = TrainOptions(label=label, val_fraction=val_fraction, epochs=epochs, patience=patience, lr=lr,
                        batch_size=batch_size, hidden=hidden, dropout=dropout, seed=seed, device=device,
                        progress=progress, label_map=label_map)
    try:
        result = run(pairs, out, settings, opts)
    except (MetricError, FileExistsError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, FileExistsError) else 1)
    val = "-" if result.val_loss is None else f"{result.val_loss:.5f}"
    click.echo(f"ERMA checkpoint written to {result.out}: {result.n_train} train / {result.n_val} validation "
               f"records, best epoch {result.best_epoch}, train MSE {result.train_loss:.5f}, validation MSE {val}")
    if result.skipped:
        click.echo(f"{len(result.skipped)} record(s) skipped, e.g. {next(iter(result.skipped.items()))}", err=True)


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
