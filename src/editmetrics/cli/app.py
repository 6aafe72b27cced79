"""Command line: thin commands over the Python API.

Plugins add commands through the ``register_commands(cli)`` hook.
Exit status: 0 all scores computed, 1 some records have errors, 2 usage or I/O
error, 130 Ctrl-C, 143 SIGTERM (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
from collections import Counter

import click

from editmetrics import __version__
from editmetrics.analysis.stats import summarize
from editmetrics.cli.options import load_cli_settings, settings_options
from editmetrics.contract.metric import SpecError, split_specs
from editmetrics.data.images import SIZE_POLICIES
from editmetrics.data.records import PairsFileError
from editmetrics.engine.config import ConfigError
from editmetrics.engine.ray_executor import executor_options, make_executor
from editmetrics.engine.results import ResultsFileError, atomic_write, check_paths, check_replaceable, starts_with
from editmetrics.engine.runner import RunInterrupted, Terminated, UsageError, read_results, score_file
from editmetrics.plugins.registry import PluginError, UnknownNameError, get_registry

USAGE_ERRORS = (ConfigError, SpecError, UnknownNameError, PairsFileError, UsageError, PluginError, ResultsFileError)
# Exit statuses (docs/reliability.md): 0 all scored, 1 some records have
# errors, 2 usage or I/O error, 130 Ctrl-C, 143 SIGTERM.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
# What an earlier --csv / --summary-json of editmetrics starts with (else never replaced).
CSV_REPLACEABLE = starts_with((b"id,category,",))
JSON_REPLACEABLE = starts_with((b'{\n  "overall"', b'{"overall"'))


class Group(click.Group):
    """Turns known usage errors and I/O failures into exit status 2 with one
    clear line, and Ctrl-C / SIGTERM into one line and 130 / 143."""

    def invoke(self, ctx):
        _warn_failed_plugins()
        previous = _on_sigterm()
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except RunInterrupted as exc:
            click.echo(str(exc), err=True)
            sys.exit(exc.status)
        except KeyboardInterrupt as exc:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT)
        except OSError as exc:  # disk full, read-only folder, permission: one line, not a traceback
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            click.echo(f"Error: I/O failure{where}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        finally:
            _restore_sigterm(previous)


def _on_sigterm():
    """SIGTERM stops a command like Ctrl-C (main thread only)."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a test runner's worker)
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass


@click.group(cls=Group)
@click.version_option(__version__, prog_name="editmetrics")
def cli():
    """Score instruction-based image edits."""


@cli.group()
def train():
    """Train a model (plugins add subcommands: `train erma`, `train c2e-s2ser`, ...)."""


def _add_core_commands() -> None:
    """Core commands live in cli/ modules and are added here, never through the
    plugin hook: no plugin (or plugin failure) can remove or replace them."""
    from editmetrics.cli import data, demo, models, report, train as train_commands, weights

    for command in (models.run_command, models.models_command, weights.weights, report.report, report.compare,
                    data.pairs, data.dataset, demo.demo_weights):
        cli.add_command(command)
    train.add_command(train_commands.train_erma, "erma")
    train.add_command(train_commands.train_c2e_s2ser)


def format_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}"


def print_summary(summary: dict) -> None:
    def table(stats: dict, title: str) -> None:
        click.echo(title)
        width = max([len("metric")] + [len(k) for k in stats])
        click.echo(f"  {'metric':<{width}}  {'n':>5}  {'mean':>9}  {'std':>9}  {'95% CI':>21}  {'failed':>6}  {'n/a':>5}")
        for key, s in stats.items():
            ci = f"[{format_number(s['ci95'][0])}, {format_number(s['ci95'][1])}]"
            click.echo(
                f"  {key:<{width}}  {s['n']:>5}  {format_number(s['mean']):>9}  {format_number(s['std']):>9}"
                f"  {ci:>21}  {s['failures']:>6}  {s.get('not_applicable', 0):>5}"
            )

    table(summary["overall"], "Summary (mean with 95% bootstrap interval):")
    for group, stats in summary.get("groups", {}).items():
        table(stats, _printable(f"{summary['by']} = {group}:"))


def _printable(text: str) -> str:
    """Text any terminal encoding can print (unpaired surrogates escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@cli.command()
@click.option("--pairs", required=True, type=click.Path(dir_okay=False), help="Pairs file (.jsonl or .csv).")
@click.option("--metrics", "metric_list", required=True, help="Comma-separated metric specs, e.g. psnr,ssim@target.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output JSON Lines file (append-only).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (same pairs, metrics and settings): "
              "skip ids already in --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out results file (and --csv/--summary-json files "
              "not written by editmetrics).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write a flat CSV table of the scores.")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Write the summary statistics as JSON.")
@click.option("--device", default="cpu", show_default=True, help="torch device for model-based metrics.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Records per batch.")
@click.option("--size-policy", type=click.Choice(SIZE_POLICIES), default="resize", show_default=True,
              help="When compared images differ in size: resize to the reference, or record an error.")
@click.option("--by", default="category", show_default=True, help="Record field to group the summary by.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@settings_options
@click.option("--clip", help="CLIP backbone spec ARCH:WEIGHTS (setting 'clip', env EDITMETRICS_CLIP).")
@click.option("--dino", help="DINO backbone spec (setting 'dino', env EDITMETRICS_DINO).")
@click.option("--erma", help="ERMA checkpoint folder (setting 'erma', env EDITMETRICS_ERMA).")
@executor_options
def score(pairs, metric_list, out, resume, overwrite, csv_path, summary_json, device, batch_size, size_policy, by,
          progress, config_path, assignments, clip, dino, erma, executor, ray_address):
    """Score every record of a pairs file with the given metrics."""
    check_paths({"--pairs": pairs, "--config": config_path},
                {"--out": out, "--csv": csv_path, "--summary-json": summary_json})
    check_replaceable(csv_path, CSV_REPLACEABLE, "--csv", overwrite)
    check_replaceable(summary_json, JSON_REPLACEABLE, "--summary-json", overwrite)
    settings = load_cli_settings(config_path, assignments, clip=clip, dino=dino, erma=erma)
    result = score_file(
        pairs, split_specs(metric_list), out, resume=resume, overwrite=overwrite, batch_size=batch_size,
        device=device, size_policy=size_policy, progress=progress, settings=settings,
        other_outputs={"--csv": csv_path, "--summary-json": summary_json},
        executor=make_executor(executor, ray_address, settings),
    )
    for note in result.notes:
        click.echo(note, err=True)
    failures = FailureTally()
    summary = summarize(failures.watch(read_results(out)), by=by)  # streamed: memory stays flat
    click.echo(f"{failures.rows} records in {out} ({result.written} scored now, {result.skipped} already there)")
    print_summary(summary)
    if summary_json:
        atomic_write(summary_json, json.dumps(summary, indent=2, allow_nan=True) + "\n", label="--summary-json",
                     replaceable=JSON_REPLACEABLE, overwrite=overwrite)
    if csv_path:
        write_csv(lambda: read_results(out), csv_path, overwrite=overwrite)
    if failures.failed:
        click.echo(failures.message(out), err=True)
        sys.exit(1)


class FailureTally:
    """Counts, while rows stream past, the records with errors and per score
    key the failures and their most frequent reason (for the end-of-run line)."""

    def __init__(self):
        self.rows = 0
        self.failed = 0
        self.reasons: dict[str, Counter] = {}
        self.examples: dict[tuple[str, str], str] = {}  # (key, kind) -> its first message, paths kept

    def watch(self, rows):
        for row in rows:
            self.rows += 1
            errors = row.get("errors") or {}
            if errors:
                self.failed += 1
            for key, value in (row.get("scores") or {}).items():
                if value is None and key in errors:
                    kind = _reason_kind(errors[key])
                    self.reasons.setdefault(key, Counter())[kind] += 1
                    self.examples.setdefault((key, kind), str(errors[key]))
            yield row

    def message(self, out: str) -> str:
        parts = []
        for key, counter in self.reasons.items():
            kind, count = counter.most_common(1)[0]
            reason = _cut(self.examples[(key, kind)], 400)
            parts.append(f"  {key}: {sum(counter.values())} failed; most often ({count}x), e.g.: {reason}")
        lines = [f"{self.failed} record(s) have errors; see the 'errors' field in {out}"] + parts
        return "\n".join(lines)


# a path: /a/b, ./a, ~/a, or C:/a (a drive letter only as a word of its own, so
# the "f:" of "hf:/models/x" stays)
_PATHS = re.compile(r"(?:(?<![A-Za-z0-9])[A-Za-z]:)?(?:/[^\s'\",:;()]+)+")


def _reason_kind(text) -> str:
    """An error message with its paths replaced, so that the same failure on
    different files counts as one reason."""
    return _PATHS.sub("<path>", str(text))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def write_csv(rows, path: str, overwrite: bool = False) -> None:
    """A flat CSV of the scores, written atomically. ``rows``: a list, or a
    callable returning a fresh iterator (two streamed passes: keys, then rows)."""
    import csv
    import io

    fresh = rows if callable(rows) else (lambda: rows)
    keys: list[str] = []
    for row in fresh():
        for key in row.get("scores", {}):
            if key not in keys:
                keys.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "category", *keys, "errors"])
    for row in fresh():
        scores = row.get("scores", {})
        writer.writerow([row["id"], row.get("category", ""), *[_cell(scores.get(k)) for k in keys],
                         "; ".join(f"{k}: {v}" for k, v in row.get("errors", {}).items())])
    atomic_write(path, buffer.getvalue(), label="--csv", replaceable=CSV_REPLACEABLE, overwrite=overwrite)


def _cell(value):
    return "" if value is None else value


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--markdown", is_flag=True, help="Print the catalogue of built-in metrics (docs/metrics.md).")
def metrics(as_json, markdown):
    """List the metrics every loaded plugin registered."""
    rows = get_registry().metric_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if markdown:
        click.echo(metrics_markdown(rows), nl=False)
        return
    for row in rows:
        direction = "higher" if row["higher_is_better"] else "lower"
        ref = f"@{row['reference']}" if row["reference"] else ""
        click.echo(f"{row['id'] + ref:<24} {direction:>6} is better  [{row['plugin']}]  {row['description']}")
    _warn_failed_plugins()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def plugins(as_json):
    """List plugins, their versions, what they registered and any load error."""
    rows = [info.describe() for info in get_registry().plugins.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        status = f"ERROR: {row['error']}" if row["error"] else ", ".join(row["hooks"])
        click.echo(f"{row['name']:<20} {row['version'] or '-':<10} {status}")


@cli.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--markdown", is_flag=True, help="Print the built-in settings table (docs/settings.md).")
@settings_options
def settings_command(as_json, markdown, config_path, assignments):
    """List every declared setting: type, default, whether it changes scores, help.
    With --config/--set (and EDITMETRICS_* variables), also the value in effect."""
    from editmetrics.engine import settings as declared

    if markdown:
        click.echo(declared.markdown(), nl=False)
        return
    given = load_cli_settings(config_path, assignments)
    rows = declared.rows()
    for row in rows:
        row["value"] = given.get(row["name"], row["default"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        value = "-" if row["value"] is None else str(row["value"])
        mark = "*" if row["name"] in given else " "  # set by --set, the environment or the config file
        scores = "scores" if row["affects_scores"] else ""
        click.echo(f"{row['name']:<{width}}  {row['type']:<5} {mark}{value:<24}  {scores:<6}  [{row['plugin']}]  "
                   f"{row['help']}")


@cli.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", required=True, help="Ground-truth field: a top-level field or a key of 'scores'.")
@click.option("--metrics", "metric_list", help="Comma-separated score keys (default: every score key but the label).")
@click.option("--by", default=None, help="Also correlate per value of this field (e.g. category).")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(0), help="Bootstrap resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per metric.")
def correlate(results, label, metric_list, by, bootstrap, as_json):
    """SRCC / PLCC / KRCC of metric scores against a label (see docs/sppe.md)."""
    from editmetrics.analysis.stats import correlate_rows, format_correlations, metric_directions

    rows = list(read_results(results))
    keys = split_specs(metric_list) if metric_list else None
    known = {k for row in rows for k in row.get("scores", {})}
    if keys:
        absent = [k for k in keys if k not in known]
        if absent:
            raise UsageError(f"no score {absent[0]!r} in {results} (it has {sorted(known)})")
    if not any(row.get(label) is not None or row.get("scores", {}).get(label) is not None for row in rows):
        raise UsageError(f"no row of {results} has a label {label!r}")
    out = correlate_rows(rows, label, keys, by=by, direction=metric_directions(known, get_registry()),
                         n_boot=bootstrap)
    click.echo(json.dumps(out, indent=2) if as_json else format_correlations(out))


def metrics_markdown(rows: list[dict]) -> str:
    """The metric catalogue of docs/metrics.md: built-in plugins only, so the
    file does not depend on what else is installed."""
    registry = get_registry()
    builtin = {n for n, p in registry.plugins.items() if p.module.startswith("editmetrics.")}
    lines = [
        "# Metric catalogue",
        "",
        "Generated from the registry by `editmetrics metrics --markdown > docs/metrics.md`;",
        "a test fails when this file is stale. Spec syntax: `NAME(k=v,...)@FIELD` (docs/records.md).",
        "",
        "| metric | plugin | better | range | needs | reference | parameters | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["plugin"] not in builtin:
            continue
        low, high = row["range"]
        rng = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        params = "; ".join(
            f"`{k}`={v['default']!r}" + (f" ({'/'.join(map(str, v['choices']))})" if v.get("choices") else "")
            for k, v in row["params"].items()
        ) or "-"
        needs = ", ".join(row["fields"]) + (f" (+ optional {', '.join(row['optional_fields'])})" if row["optional_fields"] else "")
        lines.append(
            f"| `{row['id']}` | {row['plugin']} | {'higher' if row['higher_is_better'] else 'lower'} | {rng} "
            f"| {needs} | {row['reference'] or '-'} | {params} | {row['description']} |"
        )
    cited = [row for row in rows if row["plugin"] in builtin and row.get("citation")]
    if cited:
        lines += ["", "## References", ""] + [f"- `{row['id']}`: {row['citation']}" for row in cited]
    return "\n".join(lines) + "\n"


_add_core_commands()
_warned = False


def _warn_failed_plugins() -> None:
    """Once per process, on stderr: every plugin that failed to load."""
    global _warned
    if _warned:
        return
    _warned = True
    try:
        failed = [p for p in get_registry().plugins.values() if p.error]
    except PluginError:
        return  # strict mode: reported as an error by the command itself
    for info in failed:
        click.echo(f"warning: plugin {info.name!r} failed to load: {info.error}", err=True)


def _command_table(group: click.Group) -> dict[tuple[str, ...], click.Command]:
    """(path) -> command for every command and subcommand of ``group``."""
    out: dict[tuple[str, ...], click.Command] = {}

    def walk(g: click.Group, prefix: tuple[str, ...]) -> None:
        for name, cmd in list(g.commands.items()):
            out[prefix + (name,)] = cmd
            if isinstance(cmd, click.Group):
                walk(cmd, prefix + (name,))

    walk(group, ())
    return out


def _restore_commands(group: click.Group, before: dict[tuple[str, ...], click.Command]) -> None:
    """Undo one plugin's register_commands: drop what it added, put back what it replaced."""
    after = _command_table(group)
    for path in sorted(after, key=len, reverse=True):
        # a whole new group goes with its subcommands: emptying it would mutate the
        # plugin's module-level group object, which a re-registration adds again
        if path not in before and (len(path) == 1 or path[:-1] in before):
            parent = group
            for name in path[:-1]:
                parent = parent.commands[name]
            parent.commands.pop(path[-1], None)
    for path, cmd in sorted(before.items(), key=lambda kv: len(kv[0])):
        parent = group
        for name in path[:-1]:
            parent = parent.commands[name]
        parent.commands[path[-1]] = cmd


def _add_plugin_commands(group: click.Group | None = None) -> None:
    """Let each plugin add its commands, built-ins first. A plugin whose command
    would replace an existing one is refused (its commands are removed) and
    reported in `editmetrics plugins`."""
    group = group or cli
    registry = get_registry()
    if getattr(group, "_editmetrics_registry", None) is registry:
        return  # already done for this registry (tests call this more than once)
    core = getattr(group, "_editmetrics_core", None)
    if core is None:
        group._editmetrics_core = core = _command_table(group)
    else:
        _restore_commands(group, core)  # the registry was reset: start again from the core commands
    group._editmetrics_registry = registry
    order = {name: i for i, name in enumerate(registry.plugins)}
    impls = sorted(registry.pm.hook.register_commands.get_hookimpls(), key=lambda i: order.get(i.plugin_name, 1 << 30))
    for impl in impls:
        before = _command_table(group)
        info = registry.plugins.get(impl.plugin_name)
        try:
            impl.function(cli=group)
        except Exception as exc:  # noqa: BLE001 - one plugin's command must not take the CLI down
            _restore_commands(group, before)
            if info is not None:
                info.error = f"register_commands failed: {type(exc).__name__}: {exc}"
            continue
        after = _command_table(group)
        taken = [" ".join(path) for path, cmd in before.items() if after.get(path) is not cmd]
        if taken:
            _restore_commands(group, before)
            if info is not None:
                info.error = f"refused: command {taken[0]!r} already exists"


def get_cli() -> click.Group:
    """The ``editmetrics`` group with every loaded plugin's commands (for
    in-process use, e.g. ``CliRunner().invoke(get_cli(), [...])``)."""
    _add_plugin_commands()
    return cli


def main() -> None:
    try:
        _add_plugin_commands()
    except PluginError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    cli()
