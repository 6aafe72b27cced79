"""``editmetrics meta-eval``: a metric's agreement with human judgements."""

from __future__ import annotations

import json

import click


def add_command(cli) -> None:
    @cli.command("meta-eval")
    @click.option("--human", "human_paths", multiple=True, required=True, type=click.Path(exists=True),
                  help="Human-judgement file(s) in the set's released format (repeatable; a folder for imagenhub).")
    @click.option("--format", "fmt", required=True,
                  type=click.Choice(["genai-bench", "editreward-bench", "imagenhub", "pointwise", "mos"]),
                  help="Format and protocol of the human-judgement set.")
    @click.option("--results", type=click.Path(exists=True, dir_okay=False),
                  help="Results file of `editmetrics score` (ids as written by --write-pairs).")
    @click.option("--metric", "metric_key", help="Score key in the results to evaluate, e.g. viescore.")
    @click.option("--label", default=None, type=click.Choice(["SC", "PQ", "O"]),
                  help="imagenhub: which human rating the metric is compared with (default O).")
    @click.option("--id-column", default="id", show_default=True, help="mos: id column.")
    @click.option("--mos-column", default="mos", show_default=True, help="mos: MOS column.")
    @click.option("--lower-is-better", is_flag=True, default=None,
                  help="Treat the metric as lower-is-better (default: the registry's direction).")
    @click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=click.IntRange(0),
                  help="Bootstrap resamples for the 95% intervals.")
    @click.option("--write-pairs", type=click.Path(dir_okay=False),
                  help="Write the set's candidates as a pairs file (ids the judgements use) and stop.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def meta_eval(human_paths, fmt, results, metric_key, label, id_column, mos_column, lower_is_better,
                  n_boot, write_pairs, as_json):
        """Agreement of a metric with human judgements, by the set's own protocol.

        genai-bench: pairwise accuracy with tie calibration (GenAI-Bench scorer);
        editreward-bench: 2-pair accuracy with ties, 3/4-pair without, strict
        ranking accuracy; imagenhub: per-model Spearman, tanh-mean average,
        human-human ceiling; pointwise: per-model Spearman (tanh-mean as
        EditReward's ImagenHub scorer, plain mean as its AURORA scorer);
        mos: SRCC/PLCC/KRCC. See docs/judges.md.
        """
        from editmetrics.engine.runner import UsageError, read_results
        from editmetrics.analysis.metaeval.evaluate import evaluate, scores_from_rows
        from editmetrics.analysis.metaeval.loaders import HumanSetError, load, pairs_records

        try:
            hs = load(fmt, list(human_paths), id_column=id_column, mos_column=mos_column)
        except HumanSetError as exc:
            raise UsageError(str(exc)) from None
        if write_pairs:
            with open(write_pairs, "w", encoding="utf-8") as fh:
                for rec in pairs_records(hs):
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            click.echo(f"{len(hs.candidates)} candidates written to {write_pairs}")
            return
        if not results or not metric_key:
            raise UsageError("give --results and --metric (or --write-pairs)")
        rows = list(read_results(results))
        if not any(metric_key in (row.get("scores") or {}) for row in rows):
            known = sorted({k for row in rows for k in (row.get("scores") or {})})
            raise UsageError(f"no score {metric_key!r} in {results} (it has {known})")
        higher = not lower_is_better if lower_is_better is not None else _direction(metric_key)
        out = evaluate(hs, scores_from_rows(rows, metric_key), higher_is_better=higher,
                       protocol=fmt if fmt in ("genai-bench", "editreward-bench") else None,
                       label="score" if fmt == "pointwise" else (label or "O"), n_boot=n_boot)
        out = {"metric": metric_key, "results": results, "human": list(human_paths), "format": fmt, **out}
        click.echo(json.dumps(out, indent=2) if as_json else format_report(out))


def _direction(key: str) -> bool:
    from editmetrics.plugins.registry import get_registry
    from editmetrics.analysis.stats import metric_directions

    return metric_directions([key], get_registry()).get(key, True)


def _f(v, pct=False):
    if v is None:
        return "-"
    return f"{100 * v:.2f}" if pct else f"{v:.4f}"


def _ci(ci, pct=False):
    return f"[{_f(ci[0], pct)}, {_f(ci[1], pct)}]" if ci else ""


def format_report(out: dict) -> str:
    lines = [f"{out['metric']} vs {out['format']} ({out['candidates']} candidates, {out['unscored']} unscored)"]
    proto = out.get("protocol")
    if proto == "genai-bench":
        lines.append(f"  pairs {out['pairs']} (human ties {out['human_ties']}, dropped {out['pairs_dropped']})")
        lines.append(f"  accuracy with ties   {_f(out['accuracy_with_ties'], True)}  "
                     f"{_ci(out['accuracy_with_ties_ci95'], True)}  epsilon {_f(out['epsilon'])}")
        lines.append(f"  (grid epsilon)       {_f(out['accuracy_with_ties_grid'], True)}")
        lines.append(f"  accuracy w/o ties    {_f(out['accuracy_without_ties'], True)}")
    elif proto == "editreward-bench":
        for g, r in out["groups"].items():
            lines.append(f"  {g}: pairwise {_f(r.get('pairwise_accuracy'), True)} ({r.get('kind')}), "
                         f"strict {_f(r.get('strict_ranking_accuracy'), True)}")
        lines.append(f"  overall pairwise {_f(out['pairwise_accuracy'], True)} {_ci(out['pairwise_accuracy_ci95'], True)}"
                     f", strict {_f(out['strict_ranking_accuracy'], True)}")
    elif proto == "imagenhub":
        for model, r in out["per_model"].items():
            lines.append(f"  {model:<20} Spearman {_f(r)}")
        lines.append(f"  average (tanh of mean) {_f(out['average'])} {_ci(out['average_ci95'])}; "
                     f"plain mean {_f(out['mean'])}")
        ceiling = out.get("human_ceiling")
        if ceiling:
            lines.append(f"  human-human ceiling {_f(ceiling['average'])}")
    else:
        lines.append(f"  n {out['n']}  SRCC {_f(out['srcc'])} {_ci(out['srcc_ci95'])}  "
                     f"PLCC {_f(out['plcc'])} {_ci(out['plcc_ci95'])}  KRCC {_f(out['krcc'])}")
    return "\n".join(lines)
