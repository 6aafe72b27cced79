"""Peak memory of `editmetrics score` against the number of records.

    PYTHONPATH=src python benchmarks/bench_memory.py --records 5000 50000

Writes a pairs file of N records (SIZExSIZE photographs, default 64; the
records point at 64 distinct image files, since the figure measures what the run keeps per
record, not the page cache), runs `editmetrics score --metrics METRICS` (default psnr)
with --csv and --summary-json in a child process, and prints the child's
peak RSS (ru_maxrss). The target (docs/reliability.md): the 50,000-record
peak at most 1.5x the 5,000-record one.
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


def make_images(folder: str, size: int, count: int = 64) -> list[str]:
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    arr = np.asarray(base)
    names = []
    for i in range(count):
        noisy = np.clip(arr.astype(int) + (i % 13) - 6, 0, 255).astype(np.uint8)
        name = f"img{i}.png"
        Image.fromarray(noisy).save(os.path.join(folder, name))
        names.append(name)
    return names


def measure(n: int, folder: str, names: list[str], metrics: str) -> dict:
    pairs = os.path.join(folder, f"pairs{n}.jsonl")
    with open(pairs, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i}", "source": names[0], "edited": names[1 + i % (len(names) - 1)],
                                 "category": f"c{i % 5}", "instruction": "make it brighter"}) + "\n")
    out = os.path.join(folder, f"out{n}.jsonl")
    cmd = [sys.executable, "-m", "editmetrics", "score", "--pairs", pairs, "--metrics", metrics, "--out", out,
           "--no-progress", "--csv", os.path.join(folder, f"t{n}.csv"),
           "--summary-json", os.path.join(folder, f"s{n}.json")]
    # one child per measurement: ru_maxrss of RUSAGE_CHILDREN is the largest child so far
    script = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, check=True)
    peak_kib, code = proc.stdout.split()
    return {"records": n, "peak_rss_mib": round(int(peak_kib) / 1024, 1), "exit": int(code),
            "seconds": round(time.time() - start, 1)}


def one_image(folder: str) -> list[dict]:
    """Peak RSS of a one-record psnr run per hostile or large image: a 40000x40000
    1-bit PNG bomb, a 12000x12000 grey PNG, a 7680x4320 (8K, 33 MP) photograph."""
    import struct
    import zlib

    from skimage import data

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    side = 40000
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    with open(os.path.join(folder, "bomb.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                 + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    Image.new("L", (12000, 12000), 128).save(os.path.join(folder, "grey.png"))
    Image.fromarray(data.astronaut()).resize((7680, 4320)).save(os.path.join(folder, "8k.png"))
    rows = []
    for name in ("bomb.png", "grey.png", "8k.png"):
        pairs = os.path.join(folder, f"one-{name}.jsonl")
        with open(pairs, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": name, "source": name, "edited": name}) + "\n")
        out = os.path.join(folder, f"one-{name}.out.jsonl")
        cmd = [sys.executable, "-m", "editmetrics", "score", "--pairs", pairs, "--metrics", "psnr", "--out", out,
               "--no-progress"]
        script = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
                  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
        proc = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, check=True)
        peak_kib, code = proc.stdout.split()
        rows.append({"image": name, "file_kib": os.path.getsize(os.path.join(folder, name)) // 1024,
                     "peak_rss_mib": round(int(peak_kib) / 1024, 1), "exit": int(code)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--metrics", default="psnr")
    parser.add_argument("--size", type=int, default=64, help="Image side in pixels.")
    parser.add_argument("--one-image", action="store_true", help="Instead: one-record runs on a bomb, a 144 MP "
                        "grey image and an 8K photograph.")
    args = parser.parse_args()
    if args.one_image:
        with tempfile.TemporaryDirectory() as folder:
            for row in one_image(folder):
                print(json.dumps(row))
        return
    with tempfile.TemporaryDirectory() as folder:
        names = make_images(folder, args.size)
        results = [measure(n, folder, names, args.metrics) for n in args.records]
    for row in results:
        print(json.dumps(row))
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
        print(json.dumps({"ratio_last_to_first": round(ratio, 3), "target": 1.5, "ok": ratio <= 1.5}))


if __name__ == "__main__":
    main()
