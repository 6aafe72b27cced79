"""Core command ``editmetrics demo-weights``: tiny RANDOM-weight models for plumbing
checks (built by editmetrics.testing.tiny)."""

from __future__ import annotations

import json
import os

import click


@click.command("demo-weights")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--no-ip2p", is_flag=True, help="Skip the InstructPix2Pix folder (the slowest to write).")
def demo_weights(folder, seed, no_ip2p):
    """Write tiny RANDOM-weight models of every architecture (CLIP, DINOv2,
    GroundingDINO + SAM, InstructPix2Pix) and FOLDER/editmetrics.toml.

    Scores computed with them are plumbing checks only, not measurements."""
    from transformers.utils import logging as hf_logging

    from editmetrics.testing.tiny import RANDOM_NOTE, write_demo_weights

    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per folder is noise here
    settings = write_demo_weights(folder, seed=seed, ip2p=not no_ip2p)
    config = os.path.join(os.path.abspath(folder), "editmetrics.toml")
    banner = "!" * 78
    click.echo(f"{banner}\n{RANDOM_NOTE}\n{banner}")
    click.echo(f"wrote {config}:")
    for key, value in settings.items():
        click.echo(f"  {key} = {json.dumps(value)}")
    click.echo(f"use it with: editmetrics score --config {config} --pairs PAIRS --metrics ... --out OUT")
    click.echo("WARNING: RANDOM weights -- numbers from these models are only plumbing checks.", err=True)
