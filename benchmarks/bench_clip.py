"""Benchmark: six CLIP metrics share one feature store.

    .venv/bin/python benchmarks/bench_clip.py [--records 48] [--arch ViT-B-32] [--size 256] [--device cpu]

Builds a random-weight open_clip model of a real architecture (default
ViT-B-32, saved to a temporary safetensors file and passed as ``ARCH:FILE``
like a user's checkpoint), writes SPPE-shaped records (real photographs from
scikit-image, synthetic edits, instructions from a fixed list as SPPE's 65
instructions, so texts repeat across records) as PNG files, and prints:

1. the six metrics scored together: images encoded vs. distinct images (each
   image must be encoded exactly once) and wall time;
2. each of the six alone (a separate run each) and ``dir_i`` alone (the single
   metric that needs the same three images): together / one-alone ratio
   (target <= 1.2) and the speed-up of one run over six separate runs;
3. images per second of the store at feature batch sizes 1, 8 and 32.

Times exclude model loading (printed separately); they include decoding,
hashing, preprocessing and the forward passes. Numbers depend on the machine:
the figures in docs/semantic.md name theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

# Six metrics over the same three images (source, target, edited); their texts
# (instructions, source captions) repeat across records as in SPPE, so each is
# encoded once per run. A text unique to every record (clip_dir's target
# caption) would add one text-tower pass per record: measured separately below.
SIX = ["clip_i", "clip_i@target", "dir_i", "clip_t(text=instruction)",
       "clip_t(text=instruction,scale=clipscore)", "clip_t(text=source_caption)"]
ONE = "dir_i"
INSTRUCTIONS = [
    ("make it look like a pencil sketch", "as a pencil sketch"),
    ("turn it into a watercolor painting", "as a watercolor painting"),
    ("make it night time", "at night"),
    ("give it a warm sunset tone", "in warm sunset light"),
    ("make it black and white", "in black and white"),
    ("add a blue tint", "with a blue tint"),
]


def make_data(folder: str, n_records: int, size: int) -> str:
    from PIL import Image, ImageFilter
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "cat": data.chelsea(),
              "rocket": data.rocket(), "motorcycle": np.asarray(data.stereo_motorcycle()[0]),
              "coins": np.stack([data.coins()] * 3, axis=2)}
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_records):
        subject = list(photos)[i % len(photos)]
        instr, suffix = INSTRUCTIONS[(i // len(photos)) % len(INSTRUCTIONS)]
        src_name = f"{subject}.png"
        src = Image.fromarray(photos[subject]).convert("RGB").resize((size, size), Image.BICUBIC)
        if not os.path.exists(os.path.join(folder, src_name)):
            src.save(os.path.join(folder, src_name))
        arr = np.asarray(src).astype(np.float32)
        target = np.clip(arr * rng.uniform(0.6, 1.2, 3) + rng.uniform(-20, 20, 3), 0, 255).astype(np.uint8)
        edited = Image.fromarray(target).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
        Image.fromarray(target).save(os.path.join(folder, f"t{i}.png"))
        edited.save(os.path.join(folder, f"e{i}.png"))
        rows.append({"id": i, "source": src_name, "target": f"t{i}.png", "edited": f"e{i}.png",
                     "instruction": instr, "source_caption": f"a photo of a {subject}",
                     "target_caption": f"a photo of a {subject} {suffix}"})
    path = os.path.join(folder, "pairs.jsonl")
    with open(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def run(pairs: str, metrics: list[str], settings: dict, device: str, batch: int):
    """One scoring run; returns (wall seconds excluding model load, load seconds,
    store stats, rows, CPU seconds of this process -- all threads -- excluding load)."""
    from editmetrics.engine.features import SERVICE
    from editmetrics.data.images import SizePolicy
    from editmetrics.plugins.registry import get_registry
    from editmetrics.data.records import read_pairs
    from editmetrics.engine.runner import (
        InProcessExecutor,
        RunContext,
        Scorer,
        resolve_metrics,
    )

    registry = get_registry()
    ctx = RunContext(device=device, batch_size=batch, size_policy=SizePolicy("resize"),
                     settings=dict(settings), registry=registry)
    t0 = time.perf_counter()
    scorer = Scorer(resolve_metrics(metrics, registry), ctx)  # setup: loads the backbone
    load = time.perf_counter() - t0
    errors = [bm.setup_error for bm in scorer.metrics if bm.setup_error]
    if errors:
        sys.exit(f"setup failed: {errors[0]}")
    records = list(read_pairs(pairs))
    t0, c0 = time.perf_counter(), time.process_time()
    rows = list(InProcessExecutor().run(scorer.load, scorer.score, records, batch))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    bad = [r["errors"] for r in rows if r["errors"]]
    if bad:
        sys.exit(f"scoring errors: {bad[0]}")
    return seconds, load, dict(ctx.services[SERVICE].stats), rows, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=48)
    ap.add_argument("--throughput-records", type=int, default=16,
                    help="records used for the images/s figures (a rate: a subset suffices)")
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--size", type=int, default=256, help="side of the square test images")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2,
                    help="best of N for the together/alone comparison (interleaved runs)")
    args = ap.parse_args()

    import open_clip
    import torch
    from safetensors.torch import save_file

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = open_clip.create_model(args.arch, pretrained=None)
        weights = os.path.join(tmp, "weights.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
        del model
        pairs = make_data(tmp, args.records, args.size)
        settings = {"clip": f"{args.arch}:{weights}"}
        with open(pairs) as fh:
            distinct = len({json.loads(line)["source"] for line in fh}) + 2 * args.records
        print(f"editmetrics CLIP benchmark: {args.arch} (random weights), {args.records} records, "
              f"{args.size}x{args.size} PNG, device {args.device}, torch threads {torch.get_num_threads()}")
        print(f"distinct images: {distinct} (sources shared by several records + one target and one edited each)")

        # interleave the two runs the ratio compares, so a busy machine hits both alike
        six_runs, one_runs = [], []
        for _ in range(args.repeats):
            six_runs.append(run(pairs, SIX, settings, args.device, 8))
            one_runs.append(run(pairs, [ONE], settings, args.device, 8))
        t_six, load, stats, _, c_six = min(six_runs, key=lambda r: r[0])
        t_one, _, one_stats, _, c_one = min(one_runs, key=lambda r: r[0])
        c_six, c_one = min(r[4] for r in six_runs), min(r[4] for r in one_runs)
        print(f"\n1. six metrics together: {', '.join(SIX)}")
        print(f"   images encoded {stats['images_encoded']} (distinct {distinct}), texts encoded "
              f"{stats['texts_encoded']}, forward batches {stats['batches']}")
        print(f"   time {t_six:.3f} s wall, {c_six:.3f} s CPU (best of {args.repeats}; model load {load:.2f} s, "
              "excluded)")
        if stats["images_encoded"] != distinct:
            print("   WARNING: an image was encoded more than once")
        print(f"   {ONE} alone (the same three images): {t_one:.3f} s wall, {c_one:.3f} s CPU, "
              f"images encoded {one_stats['images_encoded']}")
        print(f"   together / {ONE} alone: {c_six / c_one:.2f}x CPU time, {t_six / t_one:.2f}x wall  (target <= 1.2x; "
              "CPU time is the steadier figure on a shared machine)")

        print("\n2. each metric alone (a separate run each, one run):")
        alone = {ONE: (t_one, c_one)}
        for m in SIX:
            if m != ONE:
                r = run(pairs, [m], settings, args.device, 8)
                alone[m] = (r[0], r[4])
            print(f"   {m:<42} {alone[m][0]:8.3f} s wall {alone[m][1]:8.3f} s CPU")
        sep_wall = sum(w for w, _ in alone.values())
        sep_cpu = sum(c for _, c in alone.values())
        print(f"   speed-up of one run over six separate runs: CPU {sep_cpu:.3f} s / {c_six:.3f} s = "
              f"{sep_cpu / c_six:.2f}x; wall {sep_wall:.3f} s / {t_six:.3f} s = {sep_wall / t_six:.2f}x")
        t_dir, _, dstats, _, c_dir = run(pairs, SIX + ["clip_dir"], settings, args.device, 8)
        print(f"   (adding clip_dir, whose target caption is new in every record: {t_dir:.3f} s wall, "
              f"{c_dir:.3f} s CPU, "
              f"texts encoded {dstats['texts_encoded']})")

        sub = os.path.join(tmp, "subset.jsonl")
        with open(pairs) as fh, open(sub, "w") as out:
            out.writelines(fh.readlines()[:args.throughput_records])
        print(f"\n3. feature store throughput ({ONE} on {args.throughput_records} records; "
              "batch = records per batch = forward-pass chunk):")
        for batch in (1, 8, 32):
            s = dict(settings, feature_batch_size=batch)
            seconds, _, st, _, _ = run(sub, [ONE], s, args.device, batch)
            print(f"   batch {batch:>2}: {st['images_encoded'] / seconds:7.1f} images/s "
                  f"({st['images_encoded']} images in {seconds:.3f} s, {st['batches']} forward passes)")


if __name__ == "__main__":
    main()
