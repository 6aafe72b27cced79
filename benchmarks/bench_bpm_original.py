"""Time the ``gdino-sam-original`` grounder (groundingdino-py + segment-anything,
plugins/editmetrics-grounding-original) per image, at the paper's sizes.

No released weights exist on this machine, so the models are RANDOM but
paper-sized: groundingdino-py's own ``GroundingDINO_SwinT_OGC.py`` unchanged
(Swin-T, 6+6 layers, 900 queries) with a BERT-base-sized text encoder, and SAM
``vit_h``; they are written in the released formats and loaded by path through
the plugin, so loading, the transformers-5 BERT shim, pre/post-processing and
batching are the real ones. The times are real, the boxes meaningless.

    .venv/bin/python benchmarks/bench_bpm_original.py --device cuda --n 16 --compare-cpu 1

``--compare-cpu K`` also grounds the first K images on the CPU with the same
files and prints the largest device-vs-CPU differences (boxes in pixels,
scores, mask pixels), and runs the device's SAM on the CPU's boxes. With random
weights GroundingDINO's two-stage top-900 query selection sits on near-ties, so
TF32 convolutions (cuDNN's default) can select other queries: ``--no-tf32``
compares in full float32. The random detector's text projection is scaled down
(``--feat-scale``) so its scores spread below 1 and the box threshold keeps a
subset of the 900 queries; the boxes per image are printed, since SAM's cost
grows with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "plugins", "editmetrics-grounding-original"))


def build(folder: str, sam_type: str, feat_scale: float) -> dict:
    import groundingdino
    import torch
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from segment_anything import sam_model_registry
    from transformers import BertConfig, BertModel, BertTokenizer

    from editmetrics.testing.tiny import BERT_VOCAB_SIZE, write_bert_vocab
    from editmetrics_grounding_original import bert_compat

    bert = os.path.join(folder, "bert")
    os.makedirs(bert, exist_ok=True)
    BertTokenizer(write_bert_vocab(os.path.join(bert, "vocab.txt"), size=BERT_VOCAB_SIZE)).save_pretrained(bert)
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(bert)  # bert-base-uncased's shape
    config = os.path.join(os.path.dirname(groundingdino.__file__), "config", "GroundingDINO_SwinT_OGC.py")
    args = SLConfig.fromfile(config)
    args.text_encoder_type = bert
    with bert_compat.patched_build():
        model = build_model(args)
    with torch.no_grad():
        model.feat_map.weight.mul_(feat_scale)
    torch.save({"model": model.state_dict()}, os.path.join(folder, "gdino.pth"))
    torch.save(sam_model_registry[sam_type](checkpoint=None).state_dict(), os.path.join(folder, "sam.pth"))
    return {"bpm_groundingdino_config": config, "bpm_groundingdino_checkpoint": os.path.join(folder, "gdino.pth"),
            "bpm_groundingdino_text_encoder": bert, "bpm_sam_checkpoint": os.path.join(folder, "sam.pth"),
            "bpm_sam_type": sam_type}


def photos(n: int, size: tuple[int, int]) -> list[tuple[np.ndarray, str]]:
    from PIL import Image
    from skimage import data

    named = [("astronaut", "astronaut"), ("chelsea", "cat"), ("coffee", "coffee cup"), ("rocket", "rocket")]
    out = []
    for i in range(n):
        name, phrase = named[i % len(named)]
        image = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.BICUBIC))
        out.append((image.astype(np.float32) / 255, phrase))
    return out


class Timed:
    """Wall time of the grounder's detection and segmentation stages."""

    def __init__(self, g, sync):
        self.times = {"detect": 0.0, "segment": 0.0}
        for stage in self.times:
            real = getattr(g, "_" + stage)

            def wrapped(*a, _real=real, _stage=stage):
                sync()
                start = time.perf_counter()
                out = _real(*a)
                sync()
                self.times[_stage] += time.perf_counter() - start
                return out

            setattr(g, "_" + stage, wrapped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=8, help="images timed (after one warm-up batch)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", default="640,480", help="W,H of the test photographs")
    ap.add_argument("--size", default="800,1333", help="bpm_groundingdino_size")
    ap.add_argument("--sam-type", default="vit_h")
    ap.add_argument("--box-threshold", type=float, default=0.3)
    ap.add_argument("--feat-scale", type=float, default=0.01)
    ap.add_argument("--compare-cpu", type=int, default=0, metavar="K")
    ap.add_argument("--no-tf32", action="store_true", help="full float32 convolutions on CUDA (cuDNN uses TF32 by default)")
    ap.add_argument("--folder", help="where the random files go (default: a temporary folder)")
    a = ap.parse_args()

    import torch

    from editmetrics_grounding_original import OriginalGroundingDinoSam

    if a.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    folder = a.folder or tempfile.mkdtemp(prefix="bench-gdino-original-")
    start = time.perf_counter()
    settings = build(folder, a.sam_type, a.feat_scale)
    settings.update(bpm_groundingdino_size=a.size, bpm_grounding_batch_size=a.batch_size)
    print(f"random paper-sized files written in {time.perf_counter() - start:.1f} s ({folder})")
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    g = OriginalGroundingDinoSam(settings, device=a.device, box_threshold=a.box_threshold)
    print(f"loaded through the plugin on {a.device} in {time.perf_counter() - start:.1f} s "
          f"(GroundingDINO {sum(p.numel() for p in g.detector.parameters()) / 1e6:.0f}M, "
          f"SAM {a.sam_type} {sum(p.numel() for p in g.sam.parameters()) / 1e6:.0f}M parameters)")
    w, h = (int(v) for v in a.image_size.split(","))
    items = photos(a.n, (w, h))
    g.ground(items[:min(a.batch_size, a.n)])  # warm-up
    timer = Timed(g, sync)
    start = time.perf_counter()
    results = g.ground(items)
    total = time.perf_counter() - start
    boxes = [len(d) for d in results]
    print(f"{a.n} images {w}x{h}, batch {a.batch_size}, input {a.size}: {1000 * total / a.n:.0f} ms/image "
          f"(detect {1000 * timer.times['detect'] / a.n:.0f}, segment {1000 * timer.times['segment'] / a.n:.0f}); "
          f"boxes/image mean {np.mean(boxes):.0f} (min {min(boxes)}, max {max(boxes)})")
    if a.compare_cpu:
        cpu = OriginalGroundingDinoSam(settings, device="cpu", box_threshold=a.box_threshold)
        for i, (item, dev) in enumerate(zip(items[:a.compare_cpu], results)):
            (ref,) = cpu.ground([item])
            box = max((min(np.abs(np.subtract(d.box, r.box)).max() for r in ref) for d in dev), default=0.0)
            pairs = [(d, min(ref, key=lambda r: np.abs(np.subtract(d.box, r.box)).max())) for d in dev]
            score = max((abs(d.score - r.score) for d, r in pairs), default=0.0)
            mask = max(((d.mask != r.mask).mean() for d, r in pairs), default=0.0)
            print(f"image {i}: {len(dev)} boxes on {a.device}, {len(ref)} on cpu; largest difference: box "
                  f"{box:.3f} px, score {score:.2e}, mask pixels {100 * mask:.3f}%")
            # SAM alone: the CPU's boxes through the device's SAM
            import copy

            same = [copy.copy(r) for r in ref]
            g._segment([item[0]], [same])
            worst = max(((s.mask != r.mask).mean() for s, r in zip(same, ref)), default=0.0)
            print(f"image {i}: SAM on {a.device} with the CPU's {len(ref)} boxes: largest mask difference "
                  f"{100 * worst:.3f}% of pixels")
        # the detector's raw outputs for one image and caption, same query order
        # only if the two-stage top-900 selection agrees: float32, then float64
        x = g.preprocess(items[0][0])[None]
        for dtype in (torch.float32, torch.float64):
            with torch.no_grad():
                outs = [m.to(dtype)(x.to(dev, dtype), captions=["astronaut."])
                        for m, dev in ((g.detector, a.device), (cpu.detector, "cpu"))]
            db = (outs[0]["pred_boxes"].cpu() - outs[1]["pred_boxes"]).abs().max().item()
            dl = (outs[0]["pred_logits"].sigmoid().cpu() - outs[1]["pred_logits"].sigmoid()).abs().max().item()
            print(f"raw detector outputs, {dtype}: largest |box| difference {db:.2e} (normalised), "
                  f"|probability| {dl:.2e}")


if __name__ == "__main__":
    main()
