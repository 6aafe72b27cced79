"""Metrics as plain functions: ``functional.psnr(edited, source)``.

Each function takes images (paths, numpy arrays, PIL images or torch tensors,
see ``editmetrics.data.arrays``) and the metric's parameters as keywords, and
returns the number ``editmetrics score`` gives for the same pixels: it runs
the registered metric through ``editmetrics.load_metric`` (set up once per
parameter set and cached). A record the metric cannot score raises
``MetricError``.

    >>> from editmetrics import functional as F
    >>> F.psnr(edited, source)                     # doctest: +SKIP
    >>> F.ssim(edited, source, convention="rgb")   # doctest: +SKIP
    >>> F.l1(edited, source, mask=mask, region="outside")   # doctest: +SKIP
"""

from __future__ import annotations

import functools
from typing import Any

from editmetrics.contract.metric import Score

__all__ = ["metric", "psnr", "ssim", "l1", "l2", "ms_ssim", "fsim", "vif", "gmsd", "haarpsi"]


@functools.lru_cache(maxsize=64)
def _loaded(spec: str):
    from editmetrics.api import load_metric

    return load_metric(spec)


def _spec(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({','.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def metric(name: str, /, **fields_and_params: Any) -> float | Score:
    """Any registered metric: record fields and metric parameters as keywords
    (a keyword that is one of the metric's parameters sets that parameter)."""
    from editmetrics.plugins.registry import get_registry

    cls = get_registry().get("metrics", name)
    params = {k: v for k, v in fields_and_params.items() if k in cls.params}
    fields = {k: v for k, v in fields_and_params.items() if k not in cls.params}
    return _loaded(_spec(name, params))(**fields)


def _pair(name: str):
    def fn(edited, source, /, *, mask=None, **params) -> float:
        fields = {"edited": edited, "source": source}
        if mask is not None:
            fields["mask"] = mask
        return metric(name, **fields, **params)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (f"``{name}`` of ``edited`` against ``source`` (see `editmetrics metrics`); "
                  "parameters such as ``region`` as keywords, ``mask`` for region=inside/outside.")
    return fn


psnr = _pair("psnr")
ssim = _pair("ssim")
l1 = _pair("l1")
l2 = _pair("l2")
ms_ssim = _pair("ms_ssim")
fsim = _pair("fsim")
vif = _pair("vif")
gmsd = _pair("gmsd")
haarpsi = _pair("haarpsi")
