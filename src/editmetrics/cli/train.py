"""Core training commands: ``editmetrics train erma`` (SPPE's ERMA head) and
``editmetrics train c2e-s2ser`` (LoRA on FLUX Fill); the ``train`` group is in cli.app."""

from __future__ import annotations

import os
import sys

import click

from editmetrics.cli.options import load_cli_settings, settings_options
from editmetrics.models.c2e_s2ser import BASE_ENV, DTYPES


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
    from editmetrics.contract.metric import MetricError
    from editmetrics.sppe.train import TrainOptions, train_erma as run

    settings = load_cli_settings(config_path, assignments, clip=clip)
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


@click.command("c2e-s2ser")
@click.option("--pairs", required=True, type=click.Path(dir_okay=False),
              help="Training pairs (.jsonl/.csv): source, surrogate, edited_surrogate, target, instruction, [mask], [edit_tag].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder.")
@click.option("--base", envvar=BASE_ENV, show_envvar=True, help="FLUX.1-Fill-dev folder (diffusers layout).")
@click.option("--steps", default=6000, show_default=True, type=click.IntRange(1), help="Optimisation steps (paper: 6000).")
@click.option("--warmup-steps", default=3000, show_default=True, type=click.IntRange(0),
              help="Forward-only steps before the cycle loss starts (paper: 3000).")
@click.option("--lr", default=1e-4, show_default=True, type=float, help="Learning rate (value not given in the paper).")
@click.option("--weight-decay", default=1e-2, show_default=True, type=float)
@click.option("--optimizer", type=click.Choice(["adamw8bit", "adamw"]), default="adamw8bit", show_default=True,
              help="adamw8bit (paper; needs bitsandbytes) or torch AdamW.")
@click.option("--rank", default=256, show_default=True, type=click.IntRange(1), help="LoRA rank (paper: 256).")
@click.option("--alpha", default=None, type=float, help="LoRA alpha (default: the rank).")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1))
@click.option("--resolution", default=512, show_default=True, type=click.IntRange(16), help="Training images are resized to RES x RES.")
@click.option("--cycle-weight", default=1.0, show_default=True, type=float)
@click.option("--tag-weight", default=1.0, show_default=True, type=float)
@click.option("--guidance", default=30.0, show_default=True, type=float, help="FLUX distilled-guidance input.")
@click.option("--timestep-sampling", type=click.Choice(["logit_normal", "uniform"]), default="logit_normal", show_default=True)
@click.option("--max-sequence-length", default=512, show_default=True, type=click.IntRange(1), help="T5 tokens.")
@click.option("--tag-hidden", default=128, show_default=True, type=click.IntRange(1), help="Tag head width.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True, help="Base weights dtype.")
@click.option("--gradient-checkpointing", is_flag=True, help="Trade compute for memory (needed for full size).")
@click.option("--save-every", default=500, show_default=True, type=click.IntRange(0), help="Checkpoint every N steps (0: end only).")
@click.option("--log-every", default=10, show_default=True, type=click.IntRange(0))
def train_c2e_s2ser(pairs, out_dir, base, steps, warmup_steps, lr, weight_decay, optimizer, rank, alpha, batch_size,
                  resolution, cycle_weight, tag_weight, guidance, timestep_sampling, max_sequence_length, tag_hidden,
                  seed, device, dtype, gradient_checkpointing, save_every, log_every):
    """Train C2E-S2SER (LoRA on FLUX Fill + edit-tag head) on an SPPE-style pairs file."""
    import torch

    from editmetrics.models.c2e_s2ser import _torch_dtype
    from editmetrics.models.c2e_s2ser_net import C2ES2SER, C2EConfig, MissingWeightsError, load_base
    from editmetrics.models.c2e_s2ser_train import (
        TrainingDataError,
        read_training_pairs,
        seed_everything,
        train,
    )

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        items = read_training_pairs(pairs)
    except TrainingDataError as exc:
        raise click.ClickException(str(exc)) from None
    weak = sum(1 for i in items if i.tag_from == "instruction")
    click.echo(f"{len(items)} training records ({weak} with tags from instruction templates)")
    config = C2EConfig(lora_rank=rank, lora_alpha=float(alpha if alpha is not None else rank), tag_hidden=tag_hidden,
                       guidance=guidance, cycle_weight=cycle_weight, tag_weight=tag_weight, warmup_steps=warmup_steps,
                       timestep_sampling=timestep_sampling, max_sequence_length=max_sequence_length, resolution=resolution)
    seed_everything(seed)  # LoRA and tag-head initialisation
    try:
        transformer, vae, text, scheduler = load_base(base, device, _torch_dtype(dtype, device), max_sequence_length)
    except MissingWeightsError as exc:
        raise click.ClickException(str(exc)) from None
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    model = C2ES2SER(transformer, vae, text, scheduler, config)
    if resolution % (2 * model.vae_scale):
        raise click.ClickException(f"--resolution must be a multiple of {2 * model.vae_scale} (VAE factor x 2x2 packing)")
    n_train = sum(p.numel() for p in model.trainable_parameters())
    click.echo(f"trainable parameters: {n_train:,} (LoRA rank {rank} + tag head); device {device}")
    try:
        history = train(model, items, out_dir, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                        optimizer=optimizer, seed=seed, save_every=save_every, log_every=log_every,
                        training_meta={"pairs": os.path.abspath(pairs), "base": os.path.abspath(os.path.expanduser(base)),
                                       "device": device, "dtype": dtype}, log=click.echo)
    except RuntimeError as exc:
        if "bitsandbytes" in str(exc):
            raise click.ClickException(str(exc)) from None
        raise
    click.echo(f"saved {out_dir} (step {steps}; last loss {history[-1]['total']:.4f})")
