"""Judge throughput: viescore through the real runner against a fake
OpenAI-compatible server on 127.0.0.1 (the server sleeps ``--delay`` seconds
per request, standing in for a model's latency), then the same records again
from the answer cache; optionally the transformers backend on a tiny random
Qwen2.5-VL (CPU). Figures measure editmetrics' own overhead and concurrency,
NOT a real judge's speed.

    .venv/bin/python benchmarks/bench_judges.py --n 64 --delay 0.5 --concurrency 1 8 32
    .venv/bin/python benchmarks/bench_judges.py --n 8 --tiny-transformers
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from PIL import Image


def make_records(folder: str, n: int, size: int) -> list[dict]:
    from skimage import data

    src = Image.fromarray(data.astronaut()).resize((size, size))
    src.save(os.path.join(folder, "src.png"))
    rng = np.random.default_rng(0)
    base = np.asarray(Image.fromarray(data.coffee()).resize((size, size)), dtype=np.int16)
    recs = []
    for i in range(n):  # distinct edited images: no request is a cache hit by accident
        img = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"e{i}.png"))
        recs.append({"id": i, "source": "src.png", "edited": f"e{i}.png", "instruction": f"edit number {i}"})
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="records (each costs 2 requests per pass)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--delay", type=float, default=0.5, help="fake server seconds per request")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tiny-transformers", action="store_true", help="also time the tiny random Qwen2.5-VL")
    args = ap.parse_args()

    from editmetrics.judges.fakeserver import FakeChatServer
    from editmetrics.engine.runner import score_records

    answer = json.dumps({"score": [7, 5], "reasoning": "fine"})
    with tempfile.TemporaryDirectory() as tmp:
        recs = make_records(tmp, args.n, args.size)
        for conc in args.concurrency:
            cache = os.path.join(tmp, f"cache{conc}")
            with FakeChatServer(lambda body: (200, answer), delay=args.delay) as server:
                settings = {"judge_model": "fake", "judge_url": server.url, "judge_concurrency": conc,
                            "judge_cache_dir": cache}
                t0 = time.perf_counter()
                rows = score_records(recs, ["viescore"], base_dir=tmp, batch_size=args.batch_size, settings=settings)
                cold = time.perf_counter() - t0
                sent = len(server.requests)
                size_kb = len(json.dumps(server.requests[0])) / 1024
                t0 = time.perf_counter()
                score_records(recs, ["viescore"], base_dir=tmp, batch_size=args.batch_size, settings=settings)
                warm = time.perf_counter() - t0
                assert all(r["scores"]["viescore"] is not None for r in rows)
                print(f"openai/fake  delay {args.delay:.2f}s  concurrency {conc:>3}: {sent} requests in {cold:.2f} s "
                      f"({sent / cold:.1f} req/s, {args.n / cold:.2f} records/s; request body {size_kb:.0f} KiB at "
                      f"{args.size}px); cached rerun {warm:.2f} s, {len(server.requests) - sent} requests")
        if args.tiny_transformers:
            from editmetrics.judges.tiny_vlm import write_tiny_qwen2_5_vl

            folder = write_tiny_qwen2_5_vl(os.path.join(tmp, "tinyqwen"))
            settings = {"judge_backend": "transformers", "judge_model": folder, "judge_max_tokens": 32}
            score_records(recs[:1], ["viescore"], base_dir=tmp, settings=settings)  # load + warm up
            t0 = time.perf_counter()
            rows = score_records(recs[1:], ["viescore"], base_dir=tmp, batch_size=args.batch_size, settings=settings)
            dt = time.perf_counter() - t0
            # a random model's answers are noise: every row must carry an unparseable-answer reason
            assert all("unparseable" in r["errors"].get("viescore", "") for r in rows), rows[0]["errors"]
            k = 2 * (len(recs) - 1)
            print(f"transformers/tiny random Qwen2.5-VL (CPU, 32 new tokens): {k} requests in {dt:.2f} s "
                  f"({dt / k:.3f} s/request)")


if __name__ == "__main__":
    main()
