"""Built-in plugin: BPM metric, its parsers and grounders, and its commands.

Commands:
- ``editmetrics parse "TEXT" [--parser rules|llm] [--json]``
- ``editmetrics bpm parse-eval FILE [--parser ...]``: accuracy on a labelled set
- ``editmetrics bpm pool RESULTS --out POOLED``: pool min-max normalisation
- ``editmetrics bpm align --human FILE --results FILE``: human alignment score
- ``editmetrics bpm gt-test --triplets FILE --results FILE``: ground-truth test
"""

from __future__ import annotations

import json
import os
import sys

import click

from editmetrics.plugins.hookspecs import hookimpl
from editmetrics.bpm.grounding import HFGroundingDinoSam
from editmetrics.bpm.metric import BPM
from editmetrics.bpm.parsing import LlamaParser
from editmetrics.bpm.rules import RuleParser


@hookimpl
def register_metrics(register):
    register(BPM)


@hookimpl
def register_parsers(register):
    register(RuleParser)
    register(LlamaParser)


@hookimpl
def register_grounders(register):
    register(HFGroundingDinoSam)


def _settings(config_path, assignments) -> dict:
    from editmetrics.cli.options import load_cli_settings

    return load_cli_settings(config_path, assignments)


def _make_parser(parser_id: str, settings: dict):
    from editmetrics.engine.runner import UsageError
    from editmetrics.bpm.parsing import make_parser

    try:
        return make_parser(parser_id, settings)
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


def _with_settings(fn):
    from editmetrics.cli.options import settings_options

    return settings_options(fn)


def _protocol(fn):
    """Protocol errors are usage errors (exit status 2)."""
    from functools import wraps

    from editmetrics.engine.runner import UsageError
    from editmetrics.bpm.protocols import ProtocolError

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProtocolError as exc:
            raise UsageError(str(exc)) from None

    return wrapper


def _direction(key: str) -> bool:
    from editmetrics.plugins.registry import get_registry
    from editmetrics.contract.scorekey import metric_class

    cls = metric_class(key, get_registry())  # None: unknown metric (e.g. from another tool): higher is better
    return True if cls is None else bool(cls.higher_is_better)


@hookimpl
def register_commands(cli):
    @cli.command("parse")
    @click.argument("text")
    @click.option("--parser", "parser_id", default=None, help="Parser id: rules (default) or llm.")
    @click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
    @_with_settings
    def parse_cmd(text, parser_id, as_json, config_path, assignments):
        """Parse an edit instruction into BPM's structured edit description."""
        settings = _settings(config_path, assignments)
        parser = _make_parser(parser_id or str(settings.get("bpm_parser", "rules")), settings)
        result = parser.parse(text)
        if as_json:
            # the edit description's six keys at the top level, then how it was obtained
            out = dict(result.parse or {})
            out.update({k: v for k, v in result.to_json().items() if k != "parse"})
            click.echo(json.dumps(out, indent=2))
        elif result.ok:
            for k, v in result.parse.items():
                click.echo(f"{k:<17} {v}")
        else:
            click.echo(f"parse failed ({result.parser}): {result.error}", err=True)
        if not result.ok:
            sys.exit(1)

    @cli.group("bpm")
    def bpm_group():
        """BPM: instruction parsing accuracy, pool normalisation, evaluation protocols."""

    @bpm_group.command("parse-eval")
    @click.argument("labelled", type=click.Path(exists=True, dir_okay=False))
    @click.option("--parser", "parser_id", default=None, help="Parser id: rules (default) or llm.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @_with_settings
    def parse_eval(labelled, parser_id, as_json, config_path, assignments):
        """Accuracy of a parser on a labelled instruction set (JSON Lines with the
        six keys and 'instruction'); an item counts as right when objects, edit
        type and size change all match."""
        from editmetrics.bpm.protocols import read_table
        from editmetrics.bpm.schema import KEYS

        settings = _settings(config_path, assignments)
        parser = _make_parser(parser_id or str(settings.get("bpm_parser", "rules")), settings)
        rows = read_table(labelled)
        per_key = {k: 0 for k in KEYS}
        core = valid = 0
        wrong = []
        for row in rows:
            result = parser.parse(row["instruction"])
            if not result.ok:
                wrong.append({"instruction": row["instruction"], "error": result.error, "raw": result.raw})
                continue
            valid += 1
            for k in KEYS:
                per_key[k] += int(result.parse[k] == row.get(k))
            if all(result.parse[k] == row.get(k) for k in ("source_object", "target_object", "edit_type",
                                                          "size_change")):
                core += 1
            else:
                wrong.append({"instruction": row["instruction"], "got": result.parse})
        n = len(rows)
        report = {"parser": parser.id, "n": n, "schema_valid": valid / n, "accuracy": core / n,
                  "per_key": {k: v / n for k, v in per_key.items()}, "wrong": wrong}
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        click.echo(f"parser {parser.id}: {n} instructions, schema-valid {valid}/{n}, "
                   f"objects+edit type+size right {core}/{n} ({100 * core / n:.1f}%)")
        for k, v in report["per_key"].items():
            click.echo(f"  {k:<17} {100 * v:5.1f}%")

    @bpm_group.command("pool")
    @click.argument("results", type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help="New JSON Lines file.")
    @click.option("--key", default="bpm", show_default=True, help="The BPM spec key in the results.")
    @click.option("--alpha", type=float, default=None, help="S_semantic weight (default: the run's).")
    @_protocol
    def pool(results, out, key, alpha):
        """Pool min-max normalisation of S_modify/S_preserve over all rows of a
        results file (the paper's Norm); writes a new file, never the input."""
        from editmetrics.engine.runner import UsageError, read_results
        from editmetrics.bpm.protocols import pool_rows

        if os.path.exists(out):
            raise UsageError(f"{out} exists: choose another --out (results are never overwritten)")
        rows, summary = pool_rows(list(read_results(results)), key, alpha)
        with open(out, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, allow_nan=True) + "\n")
        pres = summary["s_preserve_range"]
        pres_text = (f"[{pres[0]:.4f}, {pres[1]:.4f}] ({summary['s_preserve_excluded']} values of exactly 1 or 0 "
                     "left out)" if pres else "none: " + summary["s_preserve_fallback"])
        click.echo(f"pooled {summary['n']} of {len(rows)} rows into {out}: "
                   f"s_modify range [{summary['s_modify_range'][0]:.4f}, {summary['s_modify_range'][1]:.4f}], "
                   f"s_preserve range {pres_text}")

    @bpm_group.command("align")
    @click.option("--human", "human_path", required=True, type=click.Path(dir_okay=False),
                  help="Human scores: input, model, id, human.")
    @click.option("--results", "results_path", required=True, type=click.Path(dir_okay=False))
    @click.option("--metric", "keys", multiple=True, default=("bpm",), show_default=True,
                  help="Score key(s) in the results (repeatable).")
    @click.option("--ties", type=click.Choice(["paper", "skip"]), default="paper", show_default=True,
                  help="paper: P = 1[a > b] as published; skip: drop inputs where people tie.")
    @click.option("--json", "as_json", is_flag=True)
    @_protocol
    def align(human_path, results_path, keys, ties, as_json):
        """Human alignment score (paper Sec. 4.1) per model pair and on average."""
        from editmetrics.engine.runner import read_results
        from editmetrics.bpm.protocols import human_alignment, read_table

        human = read_table(human_path)
        results = list(read_results(results_path))
        reports = [human_alignment(human, results, k, _direction(k), ties) for k in keys]
        if as_json:
            click.echo(json.dumps(reports, indent=2))
            return
        for rep in reports:
            click.echo(f"{rep['metric']}: average alignment {rep['average']:.3f}")
            for name, p in rep["pairs"].items():
                click.echo(f"  {name:<32} {p['alignment']:.3f}  (n={p['n']})")

    @bpm_group.command("gt-test")
    @click.option("--triplets", "triplets_path", required=True, type=click.Path(dir_okay=False),
                  help="Triplets: input, ep, em, gt (record ids).")
    @click.option("--results", "results_path", required=True, type=click.Path(dir_okay=False))
    @click.option("--metric", "keys", multiple=True, default=("bpm",), show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @_protocol
    def gt_test(triplets_path, results_path, keys, as_json):
        """Ground-truth test (paper Table 4): win rates of EP / EM / GT."""
        from editmetrics.engine.runner import read_results
        from editmetrics.bpm.protocols import ground_truth_test, read_table

        triplets = read_table(triplets_path)
        results = list(read_results(results_path))
        reports = [ground_truth_test(triplets, results, k, _direction(k)) for k in keys]
        if as_json:
            click.echo(json.dumps(reports, indent=2))
            return
        click.echo(f"{'metric':<24} {'EP':>6} {'EM':>6} {'GT':>6}   n")
        for rep in reports:
            w = rep["win_rate"]
            click.echo(f"{rep['metric']:<24} {w['EP']:>6.3f} {w['EM']:>6.3f} {w['GT']:>6.3f}   {rep['n']}")
