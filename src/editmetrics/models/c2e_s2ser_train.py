"""C2E-S2SER training: SPPE-style pairs file -> LoRA + tag head checkpoint.

Each training record needs ``source`` (X), ``surrogate`` (S),
``edited_surrogate`` (S'), ``target`` (Y, the ground-truth edited source) and
``instruction``; ``mask`` (M) is optional (absent = the whole image was
replaced by the surrogate); ``edit_tag`` (object / attribute / global)
overrides the weak label derived from the instruction template.

Checkpoint folder: ``c2e_s2ser.safetensors`` (LoRA tensors ``lora.*`` in peft's
naming and tag-head tensors ``tag_head.*``) and ``config.json`` (the
``C2EConfig``, the base transformer's shape, the training options and step).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from editmetrics.models.c2e_s2ser_net import (
    C2ES2SER,
    TAGS,
    Batch,
    tag_index,
    to_model_image,
    to_model_mask,
    weak_tag,
)

from editmetrics.models.c2e_s2ser_layout import CONFIG_FILE, WEIGHTS_FILE  # noqa: E402 - torch-free, shared with `editmetrics models`
FORMAT = "editmetrics-c2e-s2ser"
REQUIRED = ("source", "surrogate", "edited_surrogate", "target", "instruction")


class TrainingDataError(ValueError):
    """The training pairs file cannot be used."""


@dataclass
class TrainItem:
    id: str
    paths: dict[str, str | None]
    instruction: str
    tag: int
    tag_from: str  # "field" or "instruction"


def read_training_pairs(path: str) -> list[TrainItem]:
    from editmetrics.data.records import read_pairs

    items, problems = [], []
    for rec in read_pairs(path):
        if rec.error:
            problems.append(f"{rec.key}: {rec.error}")
            continue
        missing = [f for f in REQUIRED if not rec.fields.get(f)]
        if missing:
            problems.append(f"{rec.key}: missing {', '.join(missing)}")
            continue
        paths = {f: rec.path(f) for f in ("source", "surrogate", "edited_surrogate", "target", "mask")}
        absent = [f"{f}={p}" for f, p in paths.items() if p and not os.path.isfile(p)]
        if absent:
            problems.append(f"{rec.key}: file not found: {', '.join(absent)}")
            continue
        instruction = str(rec.fields["instruction"])
        if rec.fields.get("edit_tag") not in (None, ""):
            try:
                tag, origin = tag_index(rec.fields["edit_tag"]), "field"
            except ValueError as exc:
                problems.append(f"{rec.key}: {exc}")
                continue
        else:
            tag, origin = weak_tag(instruction), "instruction"
        items.append(TrainItem(rec.key, paths, instruction, tag, origin))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise TrainingDataError(f"{path}: {len(problems)} unusable training record(s): {shown}")
    if not items:
        raise TrainingDataError(f"{path}: no training records")
    return items


def load_batch(items: list[TrainItem], resolution: int) -> Batch:
    """Decode and resize a batch (square ``resolution`` so records of any size batch together)."""
    from editmetrics.data.images import load_image, load_mask

    size = (resolution, resolution)
    cols: dict[str, list] = {k: [] for k in ("source", "surrogate", "edited_surrogate", "target", "mask")}
    for item in items:
        for key in ("source", "surrogate", "edited_surrogate", "target"):
            cols[key].append(to_model_image(load_image(item.paths[key]), size))
        mask = load_mask(item.paths["mask"]) if item.paths.get("mask") else None
        cols["mask"].append(to_model_mask(mask, size))
    return Batch(
        source=torch.cat(cols["source"]), surrogate=torch.cat(cols["surrogate"]),
        edited_surrogate=torch.cat(cols["edited_surrogate"]), target=torch.cat(cols["target"]),
        mask=torch.cat(cols["mask"]), instructions=[i.instruction for i in items],
        tag_labels=torch.tensor([i.tag for i in items], dtype=torch.long),
    )


def make_optimizer(params, name: str, lr: float, weight_decay: float):
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise RuntimeError("optimizer adamw8bit needs the bitsandbytes package (pip install bitsandbytes); "
                               "or pass --optimizer adamw") from exc
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (adamw, adamw8bit)")


def save_checkpoint(model: C2ES2SER, out_dir: str, step: int, training: dict) -> None:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tc = model.transformer.config
    meta = {
        "format": FORMAT,
        "version": 1,
        "step": step,
        "tags": list(TAGS),
        "config": model.config.to_dict(),
        "base_shape": {k: tc[k] for k in ("in_channels", "out_channels", "num_layers", "num_single_layers",
                                         "attention_head_dim", "num_attention_heads", "joint_attention_dim")},
        "latent_channels": model.latent_channels,
        "training": training,
    }
    # write then rename: an interrupted save never leaves a half-written checkpoint
    tmp = os.path.join(out_dir, WEIGHTS_FILE + ".tmp")
    save_file(model.trainable_state_dict(), tmp, metadata={"format": FORMAT, "step": str(step)})
    os.replace(tmp, os.path.join(out_dir, WEIGHTS_FILE))
    with open(os.path.join(out_dir, CONFIG_FILE + ".tmp"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    os.replace(os.path.join(out_dir, CONFIG_FILE + ".tmp"), os.path.join(out_dir, CONFIG_FILE))


def read_checkpoint_config(ckpt_dir: str) -> dict:
    from editmetrics.models.c2e_s2ser_net import MissingWeightsError

    path = os.path.expanduser(ckpt_dir or "")
    cfg, weights = os.path.join(path, CONFIG_FILE), os.path.join(path, WEIGHTS_FILE)
    if not ckpt_dir or not os.path.isfile(cfg) or not os.path.isfile(weights):
        raise MissingWeightsError(
            f"C2E-S2SER checkpoint not found: expected {WEIGHTS_FILE} and {CONFIG_FILE} in {path or '(no folder given)'}; "
            "train one with `editmetrics train c2e-s2ser --pairs TRAIN.jsonl --out DIR --base FLUX_FILL_DIR` and pass "
            "DIR with the setting c2e_s2ser (--set c2e_s2ser=DIR) or the environment variable EDITMETRICS_C2E_S2SER"
        )
    with open(cfg, encoding="utf-8") as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg} is not a C2E-S2SER checkpoint config (format {meta.get('format')!r})")
    return meta


def load_checkpoint(model: C2ES2SER, ckpt_dir: str, meta: dict) -> None:
    from safetensors.torch import load_file

    tc = model.transformer.config
    for key, value in meta.get("base_shape", {}).items():
        if tc.get(key) != value:
            raise ValueError(f"C2E-S2SER checkpoint {ckpt_dir} was trained on a base transformer with {key}={value}, "
                             f"the loaded base has {tc.get(key)}: use the same FLUX Fill weights as in training")
    state = load_file(os.path.join(os.path.expanduser(ckpt_dir), WEIGHTS_FILE))
    model.load_trainable_state_dict({k: v.to(model.device) for k, v in state.items()})


def train(model: C2ES2SER, items: list[TrainItem], out_dir: str, *, steps: int, batch_size: int = 1,
          lr: float = 1e-4, weight_decay: float = 1e-2, optimizer: str = "adamw", seed: int = 0,
          save_every: int = 0, log_every: int = 10, max_grad_norm: float = 1.0, training_meta: dict | None = None,
          log: Callable[[str], None] = print) -> list[dict]:
    """Run the staged schedule (forward + tag, then + cycle after ``config.warmup_steps``).

    Returns the per-step loss log (also appended to ``out_dir/train_log.jsonl``).
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    params = model.trainable_parameters()
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    model.train(True)
    order: list[int] = []
    history = []
    meta = dict(training_meta or {})
    meta.update({"steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                 "optimizer": optimizer, "seed": seed, "records": len(items), "max_grad_norm": max_grad_norm})
    log_path = os.path.join(out_dir, "train_log.jsonl")
    start = time.time()
    with open(log_path, "a", encoding="utf-8") as log_fh:
        for step in range(steps):
            batch_items = []
            while len(batch_items) < batch_size:
                if not order:  # a new shuffled epoch
                    order = list(range(len(items)))
                    rng.shuffle(order)
                batch_items.append(items[order.pop()])
            batch = load_batch(batch_items, model.config.resolution)
            out = model.losses(batch, step, generator=gen)
            opt.zero_grad(set_to_none=True)
            out["total"].backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            row = {"step": step + 1, "total": out["total"].item(), "forward": out["forward"].item(),
                   "cycle": None if out["cycle"] is None else out["cycle"].item(), "tag": out["tag"].item(),
                   "seconds": round(time.time() - start, 2)}
            history.append(row)
            log_fh.write(json.dumps(row) + "\n")
            if log_every and ((step + 1) % log_every == 0 or step == 0 or step + 1 == steps):
                cyc = "-" if row["cycle"] is None else f"{row['cycle']:.4f}"
                log(f"step {step + 1}/{steps}  loss {row['total']:.4f}  forward {row['forward']:.4f}  "
                    f"cycle {cyc}  tag {row['tag']:.4f}  {row['seconds']:.0f}s")
            if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                save_checkpoint(model, out_dir, step + 1, meta)
    save_checkpoint(model, out_dir, steps, meta)
    model.train(False)
    return history


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
