"""ERMA (SPPE paper, section 4): editability of a surrogate from (source,
surrogate, instruction), before any cloud edit.

- Frozen CLIP image/text encoders: embeddings come from the shared feature
  store (``editmetrics.engine.features``), any CLIP backbone spec it accepts.
- Relational vector (eq. 3): f_X, f_S, f_X*f_S, f_X-f_S, |f_X-f_S|, f_T and
  cos(X,T), cos(S,T), cos(X,S) on L2-normalised features.
- A small MLP with a sigmoid (eq. 4), trained with MSE on the editability
  label (eq. 5), mapped to [0, 1] as (1 + cos) / 2 (section 4.3).

The paper's text lost its equations: the order of eq. 3 and the sign of its
difference follow the prose of section 4.2, and MSE for eq. 5 is our reading
of "for regression" (docs/sppe.md, "Reconstructed from the prose").

Checkpoint folder: ``erma.safetensors`` (head weights) + ``erma.json`` (backbone
spec, embedding size, feature layout, head shape, training record). A run whose
CLIP setting names another backbone refuses the checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from editmetrics.contract.metric import Metric, MetricError, Param
from editmetrics.contract.model import Model, Weight

FORMAT = "editmetrics-erma/1"
CONFIG = "erma.json"
WEIGHTS = "erma.safetensors"
LABEL = "editability_label"


def layout(dim: int) -> list[list]:
    """Names and widths of the relational vector's parts, in order."""
    return [["f_x", dim], ["f_s", dim], ["f_x*f_s", dim], ["f_x-f_s", dim], ["|f_x-f_s|", dim], ["f_t", dim],
            ["cos(x,t)", 1], ["cos(s,t)", 1], ["cos(x,s)", 1]]


def relational(fx: np.ndarray, fs: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """Eq. 3 for (N, D) L2-normalised features -> (N, 6D + 3) float32."""
    fx, fs, ft = (np.atleast_2d(np.asarray(a, dtype=np.float32)) for a in (fx, fs, ft))
    cos = lambda a, b: (a * b).sum(axis=1, keepdims=True)  # noqa: E731 - unit vectors: dot = cosine
    return np.concatenate([fx, fs, fx * fs, fx - fs, np.abs(fx - fs), ft, cos(fx, ft), cos(fs, ft), cos(fx, fs)],
                          axis=1).astype(np.float32)


def make_head(in_dim: int, hidden: int, dropout: float):
    """The trainable predictor g: Linear-GELU-Dropout-Linear-sigmoid (paper
    silent on its shape; one hidden layer, see docs/sppe.md)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, 1), torch.nn.Sigmoid(),
    )


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


@dataclass
class Checkpoint:
    folder: str
    config: dict
    head: Any  # torch module, eval mode

    @property
    def spec(self) -> str:
        return self.config["backbone"]["spec"]

    def predict(self, z: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.head(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).reshape(-1).double().numpy()


def save_checkpoint(folder: str, head, config: dict) -> None:
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
              os.path.join(folder, WEIGHTS), metadata={"format": FORMAT})
    with open(os.path.join(folder, CONFIG), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)


def load_checkpoint(folder: str) -> Checkpoint:
    from safetensors.torch import load_file

    folder = os.path.expanduser(str(folder))
    cfg_path, w_path = os.path.join(folder, CONFIG), os.path.join(folder, WEIGHTS)
    for path in (cfg_path, w_path):
        if not os.path.isfile(path):
            raise MetricError(f"erma: checkpoint file {os.path.basename(path)} not found in {folder} "
                              "(train one with `editmetrics train erma --pairs TRAIN.jsonl --out DIR`)")
    with open(cfg_path, encoding="utf-8") as fh:
        config = json.load(fh)
    if config.get("format") != FORMAT:
        raise MetricError(f"erma: {cfg_path} is not an ERMA checkpoint config (format {config.get('format')!r})")
    dim = int(config["backbone"]["embed_dim"])
    if config.get("feature_layout") != layout(dim):
        raise MetricError(f"erma: {cfg_path} records feature layout {config.get('feature_layout')}, "
                          f"this version builds {layout(dim)}")
    head = make_head(6 * dim + 3, int(config["head"]["hidden"]), float(config["head"]["dropout"]))
    try:
        head.load_state_dict(load_file(w_path), strict=True)
    except RuntimeError as exc:
        raise MetricError(f"erma: {w_path} does not match {cfg_path}: {str(exc).splitlines()[0]}") from None
    return Checkpoint(folder, config, head.eval())


def check_backbone(ckpt: Checkpoint, settings: dict, embed_dim: int | None = None) -> str:
    """The spec to encode with: the checkpoint's. A run that sets ``clip`` to
    another backbone is refused (the head only fits the features it was trained on)."""
    wanted = settings.get("clip")
    if wanted and str(wanted).strip() != ckpt.spec:
        raise MetricError(f"erma: checkpoint {ckpt.folder} was trained on CLIP backbone {ckpt.spec!r}, "
                          f"but this run's clip setting is {str(wanted).strip()!r}; use --clip {ckpt.spec!r} "
                          "or a checkpoint trained on that backbone")
    if embed_dim is not None and embed_dim != int(ckpt.config["backbone"]["embed_dim"]):
        raise MetricError(f"erma: backbone {ckpt.spec!r} now gives {embed_dim}-d features, the checkpoint "
                          f"expects {ckpt.config['backbone']['embed_dim']}")
    return ckpt.spec


def erma_folder(options: dict, settings: dict) -> str:
    folder = options.get("checkpoint") or settings.get("erma")
    if not folder:
        raise MetricError("erma needs a checkpoint folder: --erma DIR (setting 'erma', env EDITMETRICS_ERMA) "
                          "or erma(checkpoint=DIR); train one with `editmetrics train erma`")
    return str(folder)


# ---------------------------------------------------------------------------
# Feature extraction shared by training and prediction
# ---------------------------------------------------------------------------


def encode_triplets(store, spec: str, items: Iterable[tuple], chunk: int = 32, progress=None) -> np.ndarray:
    """Relational vectors of (source, surrogate, instruction) triplets.

    ``items`` yields (source array, surrogate array, text); arrays are decoded
    lazily by the caller, ``chunk`` at a time, so memory stays flat.
    """
    out, block = [], []

    def run(block):
        fx = store.encode_images(spec, [b[0] for b in block])
        fs = store.encode_images(spec, [b[1] for b in block])
        ft = store.encode_texts(spec, [b[2] for b in block])
        out.append(relational(fx, fs, ft))

    for item in items:
        block.append(item)
        if len(block) == chunk:
            run(block)
            if progress is not None:
                progress.update(len(block))
            block = []
    if block:
        run(block)
        if progress is not None:
            progress.update(len(block))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------------
# The metric and the model plugin
# ---------------------------------------------------------------------------


class ErmaMetric(Metric):
    id = "erma"
    description = "SPPE ERMA: predicted editability of the surrogate for the instruction, in [0, 1] (--erma DIR)"
    higher_is_better = True
    range = (0.0, 1.0)
    fields = ("surrogate", "instruction")
    reference = "source"
    params = {"checkpoint": Param("", "ERMA checkpoint folder (default: setting 'erma')")}

    def setup(self, ctx) -> None:
        from editmetrics.engine.features import features_for

        folder = erma_folder(self.options, ctx.settings)
        self.ckpt = ctx.service(f"erma:{os.path.abspath(os.path.expanduser(folder))}",
                                lambda c: load_checkpoint(folder))
        self.spec = check_backbone(self.ckpt, ctx.settings)
        self.store = features_for(ctx)
        self.store.backbone(self.spec)  # a missing CLIP weight fails here, once, for every record
        self.keys: dict = {}

    def prepare(self, rec) -> None:
        self.keys[rec.uid] = (self.store.request_image(self.spec, rec, self.ref),
                             self.store.request_image(self.spec, rec, "surrogate"),
                             self.store.request_text(self.spec, str(rec.get("instruction"))))

    def compute(self, rec):
        kx, ks, kt = self.keys.pop(rec.uid)
        fx, fs, ft = (self.store.get(k) for k in (kx, ks, kt))
        check_backbone(self.ckpt, {}, embed_dim=int(fx.shape[0]))
        return float(self.ckpt.predict(relational(fx, fs, ft))[0])


class ErmaAssessor(Model):
    id = "erma"
    kind = "assessor"
    description = "SPPE ERMA editability assessor: (source, surrogate, instruction) -> editability in [0, 1]"
    inputs = ("source", "surrogate", "instruction")
    outputs = ("editability",)
    params = {"checkpoint": Param("", "ERMA checkpoint folder (erma.json + erma.safetensors)")}
    weights = (Weight("head", "an ERMA checkpoint folder from `editmetrics train erma --out DIR`; "
                              "the CLIP weights named in its erma.json must be on local disk", setting="erma"),)

    def weight_path(self, weight: Weight) -> str | None:
        # the `checkpoint` parameter wins over the setting 'erma' / EDITMETRICS_ERMA
        folder = self.options.get("checkpoint")
        return os.path.expanduser(str(folder)) if folder else super().weight_path(weight)

    def weights_present(self):
        folder = self.weight_path(self.weights[0])
        return bool(folder) and os.path.isfile(os.path.join(folder, CONFIG))

    def load(self, device: str = "cpu", store=None, settings: dict | None = None) -> None:
        """Load the head; CLIP features come from ``store`` (the run's feature
        store) or a new ``FeatureStore`` built from ``settings`` (default: the
        settings given to ``configure``)."""
        from editmetrics.engine.features import FeatureStore

        settings = dict(self.settings if settings is None else settings)
        folder = self.weight_path(self.weights[0])
        if not folder:
            raise MetricError("erma needs a checkpoint folder: erma(checkpoint=DIR), --set erma=DIR or "
                              "EDITMETRICS_ERMA; train one with `editmetrics train erma`")
        self.ckpt = load_checkpoint(folder)
        self.spec = check_backbone(self.ckpt, settings)
        self.store = store or FeatureStore(settings, device=device)

    def predict(self, inputs: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        return {"editability": float(self.predict_batch([inputs])[0])}

    def predict_batch(self, batch: list[dict[str, Any]]) -> np.ndarray:
        if not hasattr(self, "ckpt"):
            raise MetricError("erma: call load() before predict()")
        z = encode_triplets(self.store, self.spec, ((b["source"], b["surrogate"], b["instruction"]) for b in batch))
        return self.ckpt.predict(z)
