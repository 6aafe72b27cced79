"""The in-memory Python API: metrics as callables, scores as tables.

``load_metric(SPEC)`` returns a callable taking record fields as keywords;
each image field may be a path, a numpy array, a PIL image or a torch tensor
(``editmetrics.data.arrays``). ``score(records, metrics)`` scores many records and
returns ``Results``, a list of the rows the CLI writes, with ``to_pandas()``.
Both go through the same ``runner.Scorer`` as ``editmetrics score``, so the
numbers are the CLI's for the same pixels. See docs/python-api.md.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from editmetrics.data.images import SizePolicy
from editmetrics.contract.metric import MetricError, Score
from editmetrics.plugins.registry import Registry, get_registry
from editmetrics.data.records import EditRecord
from editmetrics.engine.runner import RunContext, Scorer, checked_settings, resolve_metrics, score_records


class MetricFunction:
    """One metric spec, set up once, called on one record at a time.

    ``fn(edited=..., source=..., mask=..., instruction=...)`` returns a float,
    or a ``Score`` (value, components, details) when the metric reports
    components or details. A record the metric cannot score raises
    ``MetricError`` with the reason the CLI would record.
    """

    def __init__(self, spec: str, *, settings: dict | None = None, device: str = "cpu",
                 size_policy: str = "resize", registry: Registry | None = None):
        registry = registry or get_registry()
        settings = checked_settings(settings, registry)
        (self.bound,) = resolve_metrics([spec], registry)
        self.spec = self.bound.key
        self.metric = self.bound.metric
        ctx = RunContext(device=device, size_policy=SizePolicy(size_policy), settings=settings, registry=registry)
        self._scorer = Scorer([self.bound], ctx)
        self._calls = 0

    def __repr__(self) -> str:
        return f"<editmetrics metric {self.spec}>"

    def row(self, **fields: Any) -> dict:
        """The full output row (scores, errors, warnings, details) for one record."""
        self._calls += 1
        record = EditRecord(id=fields.pop("id", self._calls), fields=fields, base_dir=os.getcwd(), line=self._calls)
        return self._scorer.score([self._scorer.load(record)])[0]

    def __call__(self, **fields: Any) -> float | Score:
        row = self.row(**fields)
        key = self.spec
        if key in row["errors"]:
            # a field that could not be used says why itself (e.g. a float image outside [0, 1])
            fields = [f"{k}: {v}" for k, v in row["errors"].items() if k != key]
            raise MetricError("; ".join(fields) if fields else row["errors"][key])
        components = {k[len(key) + 1:]: v for k, v in row["scores"].items() if k.startswith(key + ".")}
        details = (row.get("details") or {}).get(key) or {}
        if components or details:
            return Score(row["scores"][key], components, details)
        return row["scores"][key]


def load_metric(spec: str, **options: Any) -> MetricFunction:
    """A callable for ``spec`` (``psnr``, ``ssim(convention=rgb)@target``, ...);
    options: ``settings``, ``device``, ``size_policy``, ``registry``."""
    return MetricFunction(spec, **options)


class Results(list):
    """Rows as ``editmetrics score`` writes them, one dict per record."""

    def table(self) -> list[dict]:
        """Flat rows: id, the record's text fields, one column per score key, errors."""
        flat = []
        for row in self:
            out = {k: v for k, v in row.items() if k not in ("scores", "errors", "warnings", "details")}
            out.update(row.get("scores", {}))
            out["errors"] = "; ".join(f"{k}: {v}" for k, v in row.get("errors", {}).items())
            flat.append(out)
        return flat

    def to_pandas(self):
        """A pandas DataFrame of ``table()``, indexed by record id."""
        import pandas as pd

        return pd.DataFrame(self.table()).set_index("id")


def score(records: Iterable[dict], metrics: list[str] | str, **options: Any) -> Results:
    """Score in-memory records (dicts of fields; images as paths, arrays, PIL
    images or tensors) with metric specs; options as ``score_records``
    (``settings``, ``device``, ``batch_size``, ``size_policy``, ``base_dir``)."""
    from editmetrics.contract.metric import split_specs

    specs = split_specs(metrics) if isinstance(metrics, str) else list(metrics)
    return Results(score_records(records, specs, **options))  # settings validated there

