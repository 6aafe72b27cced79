"""Training ERMA's head on a pairs file (``editmetrics train erma``).

Features are computed once (through the feature store, so a ``feature_cache``
folder makes a second training run skip CLIP entirely) and kept as one tensor;
epochs only run the small MLP. Labels are the records' ``editability_label``
field; records without it but with ``edited_surrogate`` and ``target`` get it
computed by the ``editability_label`` metric with the same CLIP backbone.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field

import numpy as np

from editmetrics.data.images import ImageLoadError, load_image
from editmetrics.contract.metric import MetricError
from editmetrics.data.records import read_pairs
from editmetrics.sppe.erma import FORMAT, LABEL, encode_triplets, layout, make_head, save_checkpoint


@dataclass
class TrainOptions:
    label: str = LABEL
    val_fraction: float = 0.2
    epochs: int = 300
    patience: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    hidden: int = 256
    dropout: float = 0.1
    seed: int = 0
    device: str = "cpu"
    progress: bool | None = None
    label_map: str = "none"  # "cosine": stored labels are raw cosines c in [-1, 1] -> (1 + c) / 2


@dataclass
class TrainResult:
    out: str
    n_train: int
    n_val: int
    best_epoch: int
    train_loss: float
    val_loss: float | None
    skipped: dict = field(default_factory=dict)  # id -> reason
    feature_stats: dict = field(default_factory=dict)  # the store's counters: encodes happen once, before epochs


def _label_of(fields: dict, label: str):
    value = fields.get(label)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


LABEL_MAPS = ("none", "cosine")
TOLERANCE = 1e-6  # rounding in stored labels


def map_labels(labels: dict[str, float], opts: TrainOptions) -> dict[str, float]:
    """Check stored labels against the range ERMA's sigmoid head can output,
    [0, 1], after the optional cosine mapping of SPPE section 4.3; refuse
    them (MetricError) with the numbers and the fix otherwise."""
    if opts.label_map not in LABEL_MAPS:
        raise MetricError(f"erma: unknown label map {opts.label_map!r}; choose one of {', '.join(LABEL_MAPS)}")
    if not labels:
        return labels
    values = np.array(list(labels.values()), dtype=np.float64)
    low, high = (-1.0, 1.0) if opts.label_map == "cosine" else (0.0, 1.0)
    outside = (values < low - TOLERANCE) | (values > high + TOLERANCE)
    if outside.any():
        where = (f"{int(outside.sum())} of {len(values)} stored {opts.label!r} values lie outside "
                 f"[{low:g}, {high:g}] (min {values.min():.4g}, max {values.max():.4g})")
        if opts.label_map == "cosine":
            raise MetricError(f"erma: {where}: --label-map cosine expects raw cosines in [-1, 1]")
        raise MetricError(
            f"erma: {where}. ERMA's sigmoid head predicts values in [0, 1]; SPPE (section 4.3) maps the raw "
            "editing-direction cosine c in [-1, 1] linearly to (1 + c) / 2 before regression. If these labels "
            "are raw cosines, pass --label-map cosine (applies (1 + c) / 2); otherwise rescale them to [0, 1]")
    if opts.label_map == "cosine":
        return {k: min(1.0, max(0.0, (1.0 + v) / 2.0)) for k, v in labels.items()}
    return {k: min(1.0, max(0.0, v)) for k, v in labels.items()}


def training_set(pairs: str, settings: dict, store, spec: str, opts: TrainOptions):
    """(Z, y, ids, skipped): relational vectors and labels of usable records."""
    records = list(read_pairs(pairs))
    labels: dict[str, float] = {}
    need_metric = []
    skipped: dict[str, str] = {}
    for rec in records:
        if rec.error:
            skipped[rec.key] = rec.error
            continue
        for name in ("source", "surrogate", "instruction"):
            if not rec.fields.get(name):
                skipped[rec.key] = f"no {name!r}"
                break
        else:
            value = _label_of(rec.fields, opts.label)
            if value is not None:
                labels[rec.key] = value
            elif opts.label == LABEL and rec.fields.get("edited_surrogate") and rec.fields.get("target"):
                need_metric.append(rec)
            else:
                skipped[rec.key] = f"no {opts.label!r} label"
    labels = map_labels(labels, opts)  # stored labels only: computed ones are (1 + c) / 2 already
    if need_metric:
        from editmetrics.engine.runner import score_records

        rows = score_records([{**r.fields, "id": r.key, **{f: r.path(f) for f in
                               ("source", "surrogate", "edited_surrogate", "target")}} for r in need_metric],
                             [LABEL], settings={**settings, "clip": spec}, device=opts.device)
        for row in rows:
            value = row["scores"].get(LABEL)
            if value is None:
                skipped[str(row["id"])] = row["errors"].get(LABEL, "label could not be computed")
            else:
                labels[str(row["id"])] = float(value)
    usable = [r for r in records if r.key in labels]
    ids: list[str] = []

    def triplets():
        # decoded lazily, one chunk at a time (SPPE has tens of thousands of
        # records: holding every decoded image at once would not fit in memory)
        for rec in usable:
            try:
                x, s = load_image(rec.path("source")), load_image(rec.path("surrogate"))
            except ImageLoadError as exc:
                skipped[rec.key] = str(exc)
                continue
            ids.append(rec.key)
            yield x, s, str(rec.fields["instruction"])

    bar = _bar(len(usable), opts.progress, "CLIP features")
    z = encode_triplets(store, spec, triplets(), progress=bar)
    if bar:
        bar.close()
    y = np.array([labels[i] for i in ids], dtype=np.float32)
    return z, y, ids, skipped


def _bar(total, enabled, desc, unit="rec"):
    if enabled is False or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled)


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split (validation gets ceil(n * fraction))."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 2, max(1, math.ceil(n * fraction))) if fraction > 0 else 0
    return order[n_val:], order[:n_val]


def fit_head(z: np.ndarray, y: np.ndarray, opts: TrainOptions):
    """Adam on MSE with early stopping on validation MSE; returns (best head,
    record). Deterministic for a given seed on the CPU."""
    import torch

    # A head this small gains nothing from intra-op threads, and on a busy
    # machine thread hand-offs made an epoch ~50x slower: use one thread here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(z, y, opts)
    finally:
        torch.set_num_threads(threads)


def _fit(z, y, opts):
    import torch

    torch.manual_seed(opts.seed)
    train_idx, val_idx = split(len(y), opts.val_fraction, opts.seed)
    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    head = make_head(z.shape[1], opts.hidden, opts.dropout).to(opts.device)
    optim = torch.optim.Adam(head.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    gen = torch.Generator().manual_seed(opts.seed)
    best = (math.inf, 0, copy.deepcopy(head.state_dict()), math.inf)
    bar = _bar(opts.epochs, opts.progress, "ERMA epochs", unit="epoch")
    stale = 0
    for epoch in range(1, opts.epochs + 1):
        head.train()
        perm = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), opts.batch_size):
            idx = perm[start:start + opts.batch_size]
            pred = head(zt[idx].to(opts.device)).reshape(-1)
            loss = torch.nn.functional.mse_loss(pred, yt[idx].to(opts.device))
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(idx)
        train_loss = total / len(perm)
        head.eval()
        if len(val_idx):
            with torch.no_grad():
                vi = torch.from_numpy(val_idx)
                val_loss = float(torch.nn.functional.mse_loss(head(zt[vi].to(opts.device)).reshape(-1),
                                                              yt[vi].to(opts.device)))
        else:
            val_loss = train_loss
        if val_loss < best[0] - 1e-7:
            best, stale = (val_loss, epoch, copy.deepcopy(head.state_dict()), train_loss), 0
        else:
            stale += 1
        if bar:
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=best[1])
            bar.update(1)
        if stale >= opts.patience:
            break
    if bar:
        bar.close()
    head.load_state_dict(best[2])
    record = {"best_epoch": best[1], "epochs_run": epoch, "val_loss": best[0] if len(val_idx) else None,
              "train_loss": best[3], "n_train": int(len(train_idx)), "n_val": int(len(val_idx))}
    return head.eval().cpu(), record


def train_erma(pairs: str, out: str, settings: dict, opts: TrainOptions | None = None) -> TrainResult:
    from editmetrics.engine.features import FeatureStore

    opts = opts or TrainOptions()
    if os.path.exists(os.path.join(out, "erma.json")):
        raise FileExistsError(f"{out} already holds an ERMA checkpoint; choose another --out")
    store = FeatureStore(settings, device=opts.device)
    spec = store.spec("clip")
    encoder = store.backbone(spec)  # missing CLIP weights: one clear MetricError here
    if not encoder.has_text:
        raise MetricError(f"erma needs a CLIP backbone with a text encoder; {spec!r} has none")
    z, y, ids, skipped = training_set(pairs, settings, store, spec, opts)
    if len(y) < 4:
        raise MetricError(f"erma: only {len(y)} usable training record(s) in {pairs}; need at least 4 "
                          f"(skipped: {dict(list(skipped.items())[:3])})")
    dim = (z.shape[1] - 3) // 6
    head, record = fit_head(z, y, opts)
    config = {
        "format": FORMAT,
        "backbone": {"spec": spec, "identity": encoder.identity, "embed_dim": dim},
        "feature_layout": layout(dim),
        "head": {"hidden": opts.hidden, "dropout": opts.dropout, "activation": "gelu", "output": "sigmoid"},
        "training": {"pairs": os.path.abspath(pairs), "label": opts.label, "seed": opts.seed,
                     "val_fraction": opts.val_fraction, "lr": opts.lr, "weight_decay": opts.weight_decay,
                     "batch_size": opts.batch_size, "max_epochs": opts.epochs, "patience": opts.patience,
                     "label_map": opts.label_map,
                     "skipped": len(skipped), **record},
    }
    save_checkpoint(out, head, config)
    return TrainResult(out=out, n_train=record["n_train"], n_val=record["n_val"], best_epoch=record["best_epoch"],
                       train_loss=record["train_loss"], val_loss=record["val_loss"], skipped=skipped,
                       feature_stats=dict(store.stats))
