"""Pixel-metric throughput: decode-bound scoring, compared with peers.

    .venv/bin/python benchmarks/bench_pixel.py [--records 64] [--workdir DIR]

Prints, for 512x384 PNG pairs made from skimage.data photographs:
- time to decode both PNGs of a pair (PIL, editmetrics' decoder);
- end-to-end ``editmetrics.score_file(metrics=psnr,ssim)`` per record;
- SSIM alone: editmetrics, torchmetrics and scikit-image on the same images;
- peak memory (max RSS) of end-to-end runs over N and 4N records, each in a
  fresh process: records stream, so it should stay flat.
Target (issue 2): end-to-end within 1.5x of decode time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def make_pairs(folder: str, n: int) -> str:
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        src = np.asarray(Image.fromarray(photos[i % 4]).resize((512, 384), Image.BICUBIC))
        edited = np.clip(src + rng.normal(0, 8, src.shape), 0, 255).astype(np.uint8)
        s, e = f"s{i}.png", f"e{i}.png"
        if not os.path.exists(os.path.join(folder, s)):
            Image.fromarray(src).save(os.path.join(folder, s))
            Image.fromarray(edited).save(os.path.join(folder, e))
        records.append({"id": i, "source": s, "edited": e})
    path = os.path.join(folder, f"pairs{n}.jsonl")
    with open(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return path


def per_item(fn, items, repeat=1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--workdir")
    parser.add_argument("--_rss", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._rss:  # child mode: one end-to-end run, print peak RSS in MiB
        from editmetrics import score_file

        out = args._rss + ".out.jsonl"
        if os.path.exists(out):
            os.remove(out)
        score_file(args._rss, ["psnr", "ssim"], out, progress=False)
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking
        # parent (which holds torch here); VmHWM belongs to this program alone
        with open("/proc/self/status") as fh:
            hwm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        print(hwm_kib / 1024)
        return

    if args.workdir is None:  # a temporary folder, removed afterwards (it holds ~180 MB of PNGs)
        with tempfile.TemporaryDirectory(prefix="em-bench-") as tmp:
            args.workdir = tmp
            return measure(args)
    return measure(args)


def measure(args) -> None:
    import torch
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.image import structural_similarity_index_measure

    from editmetrics import score_file
    from editmetrics.data.images import load_image
    from editmetrics.metrics.pixel import rgb2gray_uint8, ssim_map

    torch.set_num_threads(os.cpu_count() or 1)
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    n = args.records
    pairs = make_pairs(work, n)
    big = make_pairs(work, 4 * n)
    files = [(os.path.join(work, f"s{i}.png"), os.path.join(work, f"e{i}.png")) for i in range(n)]

    decode = per_item(lambda p: (load_image(p[0]), load_image(p[1])), files, repeat=2)
    images = [(load_image(a), load_image(b)) for a, b in files[:16]]

    out = os.path.join(work, "out.jsonl")
    timings = []
    for _ in range(2):
        if os.path.exists(out):
            os.remove(out)
        t0 = time.perf_counter()
        score_file(pairs, ["psnr", "ssim"], out, progress=False)
        timings.append((time.perf_counter() - t0) / n)
    end_to_end = min(timings)

    ours = per_item(lambda ab: ssim_map(rgb2gray_uint8(ab[0]), rgb2gray_uint8(ab[1]), 255.0).mean(), images, 3)
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
    tensors = [(t(a), t(b)) for a, b in images]
    tm = per_item(lambda ab: structural_similarity_index_measure(ab[0], ab[1], data_range=1.0), tensors, 3)
    sk = per_item(lambda ab: structural_similarity(ab[0], ab[1], channel_axis=2, data_range=1.0,
                                                   gaussian_weights=True, sigma=1.5,
                                                   use_sample_covariance=False), images, 3)
    try:
        import pyiqa  # noqa: F401  (optional: pip install pyiqa)

        pq_metric = pyiqa.create_metric("ssim", device="cpu")
        pq = per_item(lambda ab: pq_metric(ab[0], ab[1]), tensors, 1)
    except Exception as exc:  # noqa: BLE001 - optional peer
        pq, pq_note = None, f"pyiqa not available ({type(exc).__name__})"

    rss = []
    for path in (pairs, big):
        proc = subprocess.run([sys.executable, __file__, "--_rss", path], capture_output=True, text=True, check=True)
        rss.append(float(proc.stdout.strip().splitlines()[-1]))

    ms = lambda s: f"{s * 1000:8.2f} ms"  # noqa: E731
    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}; images 512x384 PNG")
    print(f"decode a pair (2 PNGs)                : {ms(decode)}")
    print(f"end-to-end score psnr,ssim per record : {ms(end_to_end)}   ratio to decode {end_to_end / decode:.2f}x"
          f"  (target <= 1.5x)")
    print(f"SSIM alone, editmetrics (wang, gray)  : {ms(ours)}")
    print(f"SSIM alone, torchmetrics (RGB)        : {ms(tm)}   editmetrics end-to-end is {tm / end_to_end:.1f}x faster")
    print(f"SSIM alone, scikit-image (RGB)        : {ms(sk)}   editmetrics end-to-end is {sk / end_to_end:.1f}x faster")
    if pq is not None:
        print(f"SSIM alone, pyiqa                     : {ms(pq)}   editmetrics end-to-end is {pq / end_to_end:.1f}x faster")
    else:
        print(f"SSIM alone, pyiqa                     : {pq_note}")
    print(f"peak RSS end-to-end, {n:4d} records     : {rss[0]:8.1f} MiB")
    print(f"peak RSS end-to-end, {4 * n:4d} records     : {rss[1]:8.1f} MiB   (growth {rss[1] - rss[0]:+.1f} MiB)")


if __name__ == "__main__":
    main()
