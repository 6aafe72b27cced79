"""Core command group ``editmetrics weights`` (list / path / verify; logic in editmetrics.weights.resolver)."""

from __future__ import annotations

import json
import os

import click

from editmetrics.cli.options import load_cli_settings, settings_options


@click.group("weights")
def weights():
    """Show the weights each metric needs, where they go, and verify them."""


def _settings(config_path, assignments, clip, dino):
    return load_cli_settings(config_path, assignments, clip=clip, dino=dino)


def with_common(fn):
    """--config/--set plus --clip and --dino, on every weights subcommand."""
    for opt in reversed([settings_options, click.option("--clip", help="CLIP backbone spec."),
                         click.option("--dino", help="DINO backbone spec.")]):
        fn = opt(fn)
    return fn


@weights.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_common
def list_cmd(as_json, config_path, assignments, clip, dino):
    """Each weight: the metrics that need it, its path and whether it is present."""
    from editmetrics.weights.resolver import weight_rows

    rows = weight_rows(_settings(config_path, assignments, clip, dino))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "present" if row["present"] else "MISSING"
        where = row.get("path") or row.get("home") or "(no path configured)"
        click.echo(f"{row['spec']:<40} {state:<8} {where}")
        click.echo(f"    used by: {', '.join(row['metrics'])}")
        if not row["present"] and row.get("hint"):
            click.echo(f"    {row['hint']}")


@weights.command("path")
@click.argument("spec_or_setting")
@with_common
def path_cmd(spec_or_setting, config_path, assignments, clip, dino):
    """Print where the weights of a spec (or of setting clip/dino) are, or should go."""
    from editmetrics.weights.backbones import describe_spec, resolve_spec_setting

    settings = _settings(config_path, assignments, clip, dino)
    spec = resolve_spec_setting(spec_or_setting, settings)
    info = describe_spec(spec, settings)
    click.echo(info.get("path") or info.get("home") or "")
    if not info["present"]:
        click.echo(f"missing: {info.get('hint', '')}", err=True)
        raise SystemExit(1)


@weights.command("verify")
@with_common
def verify_cmd(config_path, assignments, clip, dino):
    """Check presence, and sha256 where the file's hash is known."""
    from editmetrics.weights.resolver import sha256_file, weight_rows

    rows = weight_rows(_settings(config_path, assignments, clip, dino))
    bad = 0
    for row in rows:
        path = row.get("path")
        if not row["present"]:
            click.echo(f"MISSING   {row['spec']}: {row.get('hint', '')}")
            bad += 1
            continue
        expected = row.get("sha256")
        if expected and os.path.isfile(path):
            digest = sha256_file(path)
            ok = digest == expected
            bad += not ok
            click.echo(f"{'OK' if ok else 'MISMATCH':<9} {row['spec']}: {path} sha256 {digest}"
                       + ("" if ok else f" (expected {expected})"))
        else:
            click.echo(f"PRESENT   {row['spec']}: {path} (no published hash to check)")
    if bad:
        raise SystemExit(1)
