"""BPM time per image, split by stage: parse, grounding, CLIP, judges.

The paper reports 1.5 s per image for BPM (Table 3, their GPU). This script
scores a pairs file (records repeated to --n images) through the real runner
and prints where the time goes. Models are given by path:

    .venv/bin/python benchmarks/bench_bpm.py --pairs examples/pairs.jsonl --n 64 \
        --groundingdino /models/grounding-dino-tiny --sam /models/sam-vit-huge \
        --clip ViT-L-14:/models/vit-l-14.safetensors --device cuda --batch-size 16 --ground

    # smoke run without weights: tiny random models built on the fly (figures
    # are NOT comparable with the paper; they check the plumbing and batching)
    .venv/bin/python benchmarks/bench_bpm.py --tiny --n 16 --ground

    # the paper's architectures at full size with RANDOM weights (GroundingDINO
    # Swin-T OGC + BERT-base, SAM ViT-H, CLIP ViT-L/14): the times are real
    # (same layers, same input sizes), the scores are meaningless
    .venv/bin/python benchmarks/bench_bpm.py --random-paper-sized --device cuda --n 64 --ground

``--ground`` drops the records' masks/boxes so every record goes through
grounding, as in the paper. ``--parser llm --llm FILE.gguf`` times the LLM
parser (parses are cached per instruction text: the cold cost per unique
instruction is printed separately). A first batch warms the models up and is
not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def build_random(root: str, paper_sized: bool) -> dict:
    """Random CLIP / GroundingDINO / SAM from their real architectures: tiny,
    or at the paper's sizes (CLIP ViT-L/14, Swin-T OGC + BERT-base, SAM ViT-H)."""
    from editmetrics.testing.tiny import write_grounding, write_open_clip

    arch = "ViT-L-14" if paper_sized else None
    settings = {"clip": write_open_clip(os.path.join(root, "clip"), name="benchclip", arch=arch)}
    settings.update(write_grounding(root, paper_sized=paper_sized))
    return settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=os.path.join(HERE, "..", "examples", "pairs.jsonl"))
    ap.add_argument("--n", type=int, default=32, help="images to score (records repeated)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clip", help="CLIP spec ARCH:WEIGHTS (setting 'clip')")
    ap.add_argument("--groundingdino", help="GroundingDINO folder (save_pretrained)")
    ap.add_argument("--sam", help="SAM folder (save_pretrained)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA (default: full fp32)")
    ap.add_argument("--grounder", default="gdino-sam", help="grounder id, e.g. gdino-sam-original (plugin)")
    ap.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                    help="any setting, e.g. bpm_sam_checkpoint=FILE for gdino-sam-original (repeatable)")
    ap.add_argument("--parser", default="rules", choices=["rules", "llm"])
    ap.add_argument("--llm", help="GGUF file for --parser llm")
    ap.add_argument("--ground", action="store_true", help="ignore the records' masks/boxes: ground every record")
    ap.add_argument("--tiny", action="store_true", help="random tiny models (plumbing check, not comparable)")
    ap.add_argument("--random-paper-sized", action="store_true",
                    help="the paper's architectures at full size, random weights (real timing, meaningless scores)")
    ap.add_argument("--box-threshold", type=float, default=None, help="default: 0.3, or 0.0 with random weights")
    ap.add_argument("--max-detections", type=int, default=None,
                    help="boxes kept per phrase (setting bpm_max_detections); default: all, or 3 with random "
                         "weights, whose detector fires everywhere (a trained one finds a few boxes per phrase)")
    args = ap.parse_args()

    import torch

    from editmetrics.bpm.parsing import ParseService, make_parser
    from editmetrics.engine.config import parse_assignments
    from editmetrics.engine.features import FeatureStore
    from editmetrics.plugins.registry import get_registry
    from editmetrics.data.records import read_pairs
    from editmetrics.engine.runner import InProcessExecutor, RunContext, Scorer, resolve_metrics

    settings: dict = {"bpm_parser": args.parser}
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    tmp = tempfile.mkdtemp(prefix="bench_bpm_")
    import atexit
    import shutil

    atexit.register(shutil.rmtree, tmp, True)  # random models live only for this run
    random_weights = args.tiny or args.random_paper_sized
    if random_weights:
        t_build = time.perf_counter()
        settings.update(build_random(tmp, paper_sized=args.random_paper_sized))
        print(f"built random models in {time.perf_counter() - t_build:.1f} s", flush=True)
    for key, value in (("clip", args.clip), ("bpm_groundingdino", args.groundingdino), ("bpm_sam", args.sam),
                       ("bpm_llm", args.llm)):
        if value:
            settings[key] = value
    settings.update(parse_assignments(tuple(args.assignments)))
    max_det = args.max_detections
    if max_det is None and random_weights:
        max_det = 3
    if max_det:
        settings["bpm_max_detections"] = max_det
    threshold = args.box_threshold if args.box_threshold is not None else (0.0 if random_weights else 0.3)

    base = list(read_pairs(args.pairs))
    records = []
    for i in range(args.n):
        rec = base[i % len(base)]
        fields = {k: v for k, v in rec.fields.items()
                  if not (args.ground and k in ("mask", "source_mask", "target_mask", "source_bbox", "target_bbox"))}
        fields["id"] = f"{rec.key}#{i}"
        records.append(type(rec)(id=fields["id"], fields=fields, base_dir=rec.base_dir, line=i))

    # Cold parse cost per unique instruction (the run itself reuses the cache).
    parser = make_parser(args.parser, settings)
    texts = sorted({str(r.fields.get("instruction")) for r in records if r.fields.get("instruction")})
    service = ParseService(parser)
    start = time.perf_counter()
    for text in texts:
        service.parse(text)
    cold_parse = (time.perf_counter() - start) / max(1, len(texts))

    clip_time = [0.0]
    real_flush = FeatureStore.flush

    def timed_flush(self):
        t0 = time.perf_counter()
        real_flush(self)
        clip_time[0] += time.perf_counter() - t0

    FeatureStore.flush = timed_flush

    registry = get_registry()
    spec = f"bpm(box_threshold={threshold},grounder={args.grounder})"
    bound = resolve_metrics([spec], registry)
    ctx = RunContext(device=args.device, batch_size=args.batch_size, settings=settings, registry=registry)
    scorer = Scorer(bound, ctx)
    if bound[0].setup_error:
        sys.exit(f"bpm cannot run: {bound[0].setup_error}")
    metric = bound[0].metric
    executor = InProcessExecutor()

    t0 = time.perf_counter()
    warm = records[:args.batch_size]
    list(executor.run(scorer.load, scorer.score, warm, args.batch_size))
    load_s = time.perf_counter() - t0

    # reset counters, then the timed pass
    for k in metric.timings:
        metric.timings[k] = 0.0
    grounding = [s for name, s in ctx.services.items() if name.startswith("bpm.grounder:")]
    for g in grounding:
        g.timings["grounding"] = 0.0
        g.counts.update(phrases=0, detections=0)
    clip_time[0] = 0.0
    if "features" in ctx.services:
        # drop the warm-up's embeddings: repeats *within* the timed pass still hit
        # the cache, as they would in a real run (see the store's counters)
        ctx.services["features"].forget()
    start = time.perf_counter()
    rows = list(executor.run(scorer.load, scorer.score, records, args.batch_size))
    total = time.perf_counter() - start
    n = len(rows)
    failed = sum(1 for r in rows if r["errors"])
    ground_s = sum(g.timings["grounding"] for g in grounding)
    stages = {
        "parse": metric.timings["parse"],
        "grounding": ground_s,
        "CLIP (feature store)": clip_time[0],
        "judges": metric.timings["judges"] + metric.timings["locate"],
    }
    other = total - sum(stages.values())

    device = args.device + (f" ({torch.cuda.get_device_name(0)}, {'TF32' if args.tf32 else 'fp32'})"
                            if args.device.startswith("cuda") else "")
    print(f"BPM benchmark: {n} images, batch {args.batch_size}, device {device}, parser {args.parser}, "
          f"{'grounding every record' if args.ground else 'masks/boxes from the records where given'}")
    if args.tiny:
        print("  tiny random models: a plumbing check, not comparable with the paper's 1.5 s/image")
    if args.random_paper_sized:
        print("  random weights at the paper's sizes (CLIP ViT-L/14, GroundingDINO Swin-T + BERT-base 800/1333, "
              "SAM ViT-H 1024): times are real, scores meaningless; random boxes vary in number")
    print(f"  warm-up (model loading + first batch, not counted): {load_s:.2f} s")
    print(f"  cold parse per unique instruction ({len(texts)} unique): {1000 * cold_parse:.1f} ms")
    for name, secs in stages.items():
        print(f"  {name:<22} {1000 * secs / n:9.2f} ms/image")
    print(f"  {'image decoding, other':<22} {1000 * other / n:9.2f} ms/image")
    print(f"  {'total':<22} {1000 * total / n:9.2f} ms/image   (paper: 1500 ms/image on their GPU)")
    phrases = sum(g.counts["phrases"] for g in grounding)
    if phrases:
        print(f"  grounding: {phrases} phrases, {sum(g.counts['detections'] for g in grounding) / phrases:.2f} "
              f"boxes per phrase (box threshold {threshold})")
    store = ctx.services.get("features")
    if store is not None:
        print(f"  feature store: {store.stats}")
    parses = [s for name, s in ctx.services.items() if name.startswith("bpm.parser:")]
    for s in parses:
        print(f"  parse cache: {s.hits} hits, {s.misses} misses")
    if failed:
        reasons = {next(iter(r["errors"].values())) for r in rows if r["errors"]}
        print(f"  {failed} record(s) failed: {sorted(reasons)[:3]}")


if __name__ == "__main__":
    main()
