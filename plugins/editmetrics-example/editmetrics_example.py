"""A complete third-party editmetrics plugin in one module.

Installing this package (``pip install ./plugins/editmetrics-example``) makes
the metric ``hist_intersection`` appear in ``editmetrics metrics`` and usable
in ``editmetrics score --metrics hist_intersection@target``.
"""

import numpy as np

import editmetrics


class HistogramIntersection(editmetrics.Metric):
    id = "hist_intersection"
    description = "Intersection of the RGB colour histograms of edited and reference images"
    higher_is_better = True
    range = (0.0, 1.0)
    fields = ("edited",)
    reference = "source"
    params = {"bins": editmetrics.Param(8, "bins per channel")}

    def compute(self, rec):
        # rec.pair() returns both images decoded, at the reference's size
        edited, reference = rec.pair("edited", self.ref)
        bins = self.options["bins"]
        if bins < 1:
            raise editmetrics.MetricError("bins must be at least 1")
        h1 = self._hist(edited, bins)
        h2 = self._hist(reference, bins)
        return float(np.minimum(h1, h2).sum())

    @staticmethod
    def _hist(image, bins):
        idx = np.minimum((image * bins).astype(np.int64), bins - 1)
        flat = (idx[..., 0] * bins + idx[..., 1]) * bins + idx[..., 2]
        counts = np.bincount(flat.ravel(), minlength=bins**3)
        return counts / counts.sum()


@editmetrics.hookimpl
def register_metrics(register):
    register(HistogramIntersection)
