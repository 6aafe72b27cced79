"""Speed of the reference-script IQA metrics against pyiqa's implementations, in one run.

    .venv/bin/python benchmarks/bench_fr_iqa.py [--pairs 4] [--size 512x384] [--repeat 2]

For each of ms_ssim, gmsd, vif, vifp and fsim it times, per image pair (best
of ``--repeat`` passes over ``--pairs`` pairs made from skimage.data photographs
with noise), editmetrics' implementation from decoded float RGB (luma
conversion included) and pyiqa's metric of the same name on ready-made CPU
tensors (torch uses every core; editmetrics runs single-threaded numpy/OpenCV).
pyiqa has no pixel-domain VIF: vifp is compared with piq's ``vif_p``. The
mean absolute difference of the values is printed too: pyiqa follows the
MATLAB scripts in some respects and not others (docs/conventions.md).
Target (issue 14): editmetrics at least as fast as pyiqa for each metric.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image


def make_pairs(n: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.RandomState(0)
    pairs = []
    for i in range(n):
        ref = np.asarray(Image.fromarray(photos[i % 4]).resize(size, Image.BICUBIC))
        dist = np.clip(ref + rng.normal(0, 4 + 4 * (i % 3), ref.shape), 0, 255).astype(np.uint8)
        pairs.append((ref.astype(np.float32) / 255, dist.astype(np.float32) / 255))
    return pairs


def best_per_item(fn, items, repeat: int) -> tuple[float, list[float]]:
    values = [fn(item) for item in items]  # warm-up (filter banks, torch kernels)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return best, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", default="512x384", help="WxH")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))

    import piq
    import pyiqa
    import torch

    from editmetrics.metrics import fr_reference as fr
    from editmetrics.metrics.pixel import _uint8_values, rgb2gray_uint8

    torch.set_num_threads(os.cpu_count() or 1)
    pairs = make_pairs(args.pairs, (w, h))
    tensors = [tuple(torch.from_numpy(x.transpose(2, 0, 1).copy())[None] for x in p) for p in pairs]

    def gray(fn):
        return lambda p: fn(rgb2gray_uint8(p[0]), rgb2gray_uint8(p[1]))

    ours = {
        "ms_ssim": gray(fr.ms_ssim),
        "gmsd": gray(fr.gmsd),
        "vif": gray(fr.vif),
        "vifp": gray(fr.vifp),
        "fsim": lambda p: fr.fsim(_uint8_values(p[0]), _uint8_values(p[1]))[1],
    }
    peers = {}
    for name in ("ms_ssim", "gmsd", "vif", "fsim"):
        metric = pyiqa.create_metric(name, device="cpu", as_loss=False)
        peers[name] = ("pyiqa", lambda t, m=metric: float(m(t[1], t[0])))
    peers["vifp"] = ("piq vif_p", lambda t: float(piq.vif_p(t[1], t[0], data_range=1.0)))

    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}; {args.pairs} pairs of {w}x{h}, best of {args.repeat}")
    print(f"{'metric':8} {'editmetrics':>12} {'peer':>12}  {'speed-up':>8}  peer              mean |diff|")
    with torch.no_grad():
        for name, fn in ours.items():
            t_ours, v_ours = best_per_item(fn, pairs, args.repeat)
            label, peer = peers[name]
            t_peer, v_peer = best_per_item(peer, tensors, args.repeat)
            diff = float(np.mean(np.abs(np.array(v_ours) - np.array(v_peer))))
            print(f"{name:8} {t_ours * 1000:9.1f} ms {t_peer * 1000:9.1f} ms  {t_peer / t_ours:7.1f}x  {label:16}  {diff:.2e}")


if __name__ == "__main__":
    main()
