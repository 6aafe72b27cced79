"""The Ray executor: throughput with 1 and 2 workers, and the driver's memory.

    .venv/bin/python benchmarks/bench_ray.py throughput [--records 64] [--metric vif] [--size 256]
    .venv/bin/python benchmarks/bench_ray.py memory [--counts 5000,50000]
    .venv/bin/python benchmarks/bench_ray.py overhead [--records 2000]

``throughput``: a CPU-bound metric (default ``vif``, the wavelet-domain VIF
in numpy, one BLAS thread per worker with OMP_NUM_THREADS=1) over N records
of SIZExSIZE PNG pairs made from skimage.data
photographs, scored in-process and on a local Ray (num_cpus = this machine's
cores) with 1 and 2 actors. Prints records/s measured from the first row to
the last (steady state: actor start-up excluded) and the start-up time (Ray +
actors building their scorers) separately.

``memory``: for each count, a fresh driver process scores that many records
(psnr on 16x16 images, batch 64, 2 actors) and prints its own peak RSS
(VmHWM: the driver alone, not Ray's processes). Two modes: ``executor`` streams
records from a generator through ``RayExecutor.run_factory`` into the results
writer (what the executor itself holds), ``score_file`` is the whole
``editmetrics.score_file`` call (records streamed too). Flat = the 10x larger
run peaks within a few MiB of the smaller one.

``overhead``: Ray's own cost per batch (one record per batch, nothing to
decode or compute), with 1 and 2 actors.
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


def make_pairs(folder: str, n: int, size: int, distinct: int | None = None) -> str:
    """N records; with ``distinct`` only that many image files exist (records share them)."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    files = distinct or n
    for i in range(files):
        s, e = os.path.join(folder, f"s{i}.png"), os.path.join(folder, f"e{i}.png")
        if not os.path.exists(e):
            src = np.asarray(Image.fromarray(photos[i % 4]).resize((size, size), Image.BICUBIC))
            Image.fromarray(src).save(s)
            Image.fromarray(np.clip(src + rng.normal(0, 8, src.shape), 0, 255).astype(np.uint8)).save(e)
    path = os.path.join(folder, f"pairs{n}.jsonl")
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "source": f"s{i % files}.png", "edited": f"e{i % files}.png"}) + "\n")
    return path


def timed_run(pairs: str, metric: str, out: str, executor, batch_size: int) -> tuple[float, float, int]:
    """(seconds to first row, seconds first -> last row, rows)."""
    from editmetrics.engine.runner import score_file

    stamps = []
    t0 = time.perf_counter()
    if os.path.exists(out):
        os.remove(out)
    score_file(pairs, [metric], out, executor=executor, batch_size=batch_size, progress=False,
               on_row=lambda row: stamps.append(time.perf_counter()))
    return stamps[0] - t0, stamps[-1] - stamps[0], len(stamps)


def throughput(args) -> None:
    import ray

    from editmetrics.engine.ray_executor import RayExecutor

    work = args.workdir
    os.makedirs(work, exist_ok=True)
    pairs = make_pairs(work, args.records, args.size)
    out = os.path.join(work, "out.jsonl")
    cores = os.cpu_count() or 1
    print(f"machine: {cores} CPU cores; metric {args.metric}; {args.records} records of {args.size}x{args.size}; "
          f"batch {args.batch_size}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    timed_run(pairs, args.metric, out, None, args.batch_size)  # warm the file cache and imports
    first, span, n = timed_run(pairs, args.metric, out, None, args.batch_size)
    print(f"in-process          : {(n - 1) / span:7.2f} records/s   (first row after {first:5.2f} s)")
    ray.init(address="local", num_cpus=cores, include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             logging_level="warning")
    try:
        for actors in (1, 2):
            executor = RayExecutor(settings={"ray_actors": actors, "ray_num_cpus": 1})
            first, span, n = timed_run(pairs, args.metric, out, executor, args.batch_size)
            print(f"ray, {actors} worker(s)    : {(n - 1) / span:7.2f} records/s   (first row after {first:5.2f} s: "
                  "actors start and build their scorers)")
    finally:
        ray.shutdown()


def overhead(args) -> None:
    """Ray's cost per batch: records that carry a read error go through the
    real Scorer (nothing decoded, nothing computed), one record per batch."""
    import ray

    from editmetrics.engine.ray_executor import RayExecutor, ScorerFactory
    from editmetrics.data.records import EditRecord

    n = args.records
    records = [EditRecord(id=i, fields={"id": i}, base_dir="/", line=i, error="benchmark") for i in range(n)]
    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
             object_store_memory=100 * 1024 * 1024, logging_level="warning")
    try:
        for actors in (1, 2):
            executor = RayExecutor(settings={"ray_actors": actors})
            stamps = []
            for _ in executor.run_factory(ScorerFactory(("psnr",), batch_size=1), records, 1):
                stamps.append(time.perf_counter())
            per = (stamps[-1] - stamps[0]) / (n - 1)
            print(f"ray, {actors} worker(s): {per * 1000:6.2f} ms per batch (dispatch, score nothing, row back, order)")
    finally:
        ray.shutdown()


def memory_child(pairs: str, mode: str) -> None:
    from editmetrics.engine.ray_executor import RayExecutor, ScorerFactory
    from editmetrics.data.records import read_pairs
    from editmetrics.engine.results import ResultsWriter
    from editmetrics.engine.runner import score_file, write_rows

    out = pairs + f".{mode}.out.jsonl"
    if os.path.exists(out):
        os.remove(out)
    settings = {"ray_actors": 2, "ray_local_cpus": 2, "ray_object_store_mb": 100}
    t0 = time.perf_counter()
    if mode == "executor":
        executor = RayExecutor(settings=settings)
        rows = executor.run_factory(ScorerFactory(("psnr",), batch_size=64), read_pairs(pairs), 64)
        with ResultsWriter(out, {"editmetrics_run": {"benchmark": "bench_ray memory"}}) as writer:
            write_rows(writer, rows, 0, lambda row: bool(row["errors"]), progress=False)
            written = writer.written
    else:
        written = score_file(pairs, ["psnr"], out, executor=RayExecutor(settings=settings), batch_size=64,
                             progress=False).written
    with open("/proc/self/status") as fh:  # VmHWM: this process alone (ru_maxrss is inherited over fork)
        hwm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"written": written, "peak_mib": hwm_kib / 1024, "seconds": time.perf_counter() - t0}))


def memory(args) -> None:
    work = args.workdir
    os.makedirs(work, exist_ok=True)
    counts = [int(c) for c in args.counts.split(",")]
    print(f"driver peak RSS (VmHWM), psnr on 16x16 PNGs, batch 64, 2 Ray actors; {os.cpu_count()} CPU cores")
    for mode in ("executor", "score_file"):
        for n in counts:
            pairs = make_pairs(work, n, 16, distinct=16)
            proc = subprocess.run([sys.executable, __file__, "_memory_child", pairs, mode],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                raise SystemExit(f"{mode} {n}: child failed")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            assert res["written"] == n, res
            print(f"{mode:<10} {n:>7} records: peak {res['peak_mib']:7.1f} MiB   ({res['seconds']:6.1f} s, "
                  f"{n / res['seconds']:6.0f} records/s)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_memory_child":
        memory_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("throughput", "memory", "overhead"))
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--metric", default="vif")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--counts", default="5000,50000")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    run = {"throughput": throughput, "memory": memory, "overhead": overhead}[args.what]
    if args.workdir is None:  # a temporary folder, removed afterwards
        with tempfile.TemporaryDirectory(prefix="em-bench-ray-") as tmp:
            args.workdir = tmp
            return run(args)
    return run(args)


if __name__ == "__main__":
    main()
