"""editmetrics: region-aware scores for instruction-based image edits.

Python API (mirrors the CLI)::

    import editmetrics
    editmetrics.list_metrics()                       # what `editmetrics metrics --json` prints
    editmetrics.get_metric("psnr")                   # the registered class
    rows = editmetrics.score_records([{"source": "a.png", "edited": "b.png"}], ["psnr", "ssim"])
    editmetrics.score_file("pairs.jsonl", ["psnr"], "out.jsonl", resume=True)
    editmetrics.run_model("noise", "pairs.jsonl", "out_dir")  # what `editmetrics run` does

In memory (docs/python-api.md): images as numpy arrays, PIL images, tensors or paths::

    psnr = editmetrics.load_metric("psnr")
    psnr(edited=array_b, source=array_a)             # a float
    editmetrics.score([{"source": a, "edited": b}], ["psnr", "ssim"]).to_pandas()
    editmetrics.functional.ssim(b, a)
"""

__version__ = "0.1.0"

from editmetrics.plugins.hookspecs import hookimpl  # noqa: E402
from editmetrics.contract.metric import Metric, MetricError, MetricSpec, Param, Score, SpecError  # noqa: E402
from editmetrics.contract.model import Model, ModelError, Weight  # noqa: E402
from editmetrics.plugins.registry import get_registry, reset_registry  # noqa: E402
from editmetrics.engine.runner import read_results, score_file, score_records  # noqa: E402
from editmetrics.engine.model_runs import run_model  # noqa: E402
from editmetrics.api import Results, load_metric, score  # noqa: E402
from editmetrics.engine.settings import Setting  # noqa: E402
from editmetrics import functional  # noqa: E402


def list_metrics() -> list[dict]:
    """Every registered metric's metadata (with the plugin that registered it)."""
    return get_registry().metric_rows()


def get_metric(metric_id: str):
    """The metric class registered under ``metric_id`` (did-you-mean on a typo)."""
    return get_registry().get("metrics", metric_id)


__all__ = [
    "Metric", "MetricError", "Results", "Setting", "functional", "load_metric", "score", "MetricSpec", "Model", "ModelError", "Param", "Score", "SpecError", "Weight",
    "get_metric", "get_registry", "hookimpl", "list_metrics", "read_results", "reset_registry",
    "run_model", "score_file", "score_records",
]
