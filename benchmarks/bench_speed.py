"""Speed of editmetrics' pixel metrics against torchmetrics and pyiqa, same images, same process.

    .venv/bin/python benchmarks/bench_speed.py [--records 32] [--size 256] [--repeats 3] [--no-memory]

For batch sizes 1, 8 and 32 it prints records per second of

- PSNR:        editmetrics ``psnr``                  vs torchmetrics ``peak_signal_noise_ratio`` and pyiqa ``psnr``
- SSIM (RGB):  editmetrics ``ssim(convention=rgb)``  vs torchmetrics ``structural_similarity_index_measure``
               and pyiqa ``ssimc``
- SSIM (luma): editmetrics ``ssim`` (Wang's 8-bit luma) vs pyiqa ``ssim`` (Y channel; torchmetrics has none)

and the ratios editmetrics / peer (above 1: editmetrics is faster), by CPU
time (the process's, all threads: robust when other programs load the
machine) and by wall-clock time (credits torch's multi-threading). Every
library gets the same decoded images (``--records`` pairs of skimage.data
photographs at SIZE x SIZE, the edit = the photo plus seeded noise, rounded to
8 bits): editmetrics as the runner's decoded records (``Scorer.score`` on a
batch, what ``editmetrics score`` does after decoding), the peers as one
N x 3 x H x W float tensor per batch, built before timing. Time = best of
at least ``--repeats`` passes (and at least one second of passes) over all records. The largest difference of the
per-record values between editmetrics and each peer is printed too, so the
work compared is visibly the same computation.

Peak memory: for each configuration a fresh child process builds the same
images and inputs, imports only the library measured, resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), runs one pass, and
reports the growth of its peak resident set (``VmHWM``) over its resident set
just before the pass. (``tracemalloc`` cannot see torch's allocations.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Every library runs on one thread by default: editmetrics' pixel metrics are
# numpy/SciPy/OpenCV code, the peers torch code, and idle OpenMP/OpenBLAS
# worker threads spin and burn CPU on a loaded machine. Set before numpy,
# torch and OpenCV create their thread pools; EDITMETRICS_BENCH_THREADS=2 lets
# each library use two threads.
THREADS = int(os.environ.get("EDITMETRICS_BENCH_THREADS", "1"))
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import numpy as np  # noqa: E402

BATCHES = (1, 8, 32)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
# name -> (editmetrics spec, {peer: peer function name})
WORK = {
    "PSNR": ("psnr", {"torchmetrics": "tm_psnr", "pyiqa": "psnr"}),
    "SSIM (RGB)": ("ssim(convention=rgb)", {"torchmetrics": "tm_ssim", "pyiqa": "ssimc"}),
    "SSIM (luma)": ("ssim", {"pyiqa": "ssim"}),
}


def make_images(n: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(0)
    sources, edits = [], []
    for i in range(n):
        photo = getattr(data, PHOTOS[i % len(PHOTOS)])()
        img = Image.fromarray(photo).convert("RGB")
        side = min(img.size)
        img = img.crop((0, 0, side, side)).resize((size, size), Image.BICUBIC)
        src = np.asarray(img, dtype=np.float64)
        edit = np.clip(np.round(src + rng.normal(0, 10, src.shape)), 0, 255)
        sources.append((src / 255.0).astype(np.float32))
        edits.append((edit / 255.0).astype(np.float32))
    return sources, edits


# ---------------------------------------------------------------------------
# The three libraries, each as: prepare(batch of indices) -> callable returning per-record values
# ---------------------------------------------------------------------------


def editmetrics_runner(spec: str):
    from editmetrics.plugins import get_registry
    from editmetrics.records import EditRecord
    from editmetrics.runner import LoadedRecord, RunContext, Scorer, resolve_metrics

    registry = get_registry()
    scorer = Scorer(resolve_metrics([spec], registry), RunContext(registry=registry))

    def prepare(sources, edits, idx):
        batch = [LoadedRecord(EditRecord(id=i, fields={"source": "s", "edited": "e"}, base_dir="/", line=i),
                              images={"source": sources[i], "edited": edits[i]}) for i in idx]

        def run():
            rows = scorer.score(batch)
            return [row["scores"][spec] for row in rows]

        return run

    return prepare


def peer_runner(peer: str, name: str):
    import torch

    if peer == "torchmetrics":
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        if name == "tm_psnr":
            fn = lambda x, y: peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))  # noqa: E731
        else:
            fn = lambda x, y: structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")  # noqa: E731
    else:
        import pyiqa

        metric = pyiqa.create_metric(name, device="cpu")
        fn = lambda x, y: metric(x, y)  # noqa: E731

    def prepare(sources, edits, idx):
        x = torch.from_numpy(np.stack([edits[i] for i in idx]).transpose(0, 3, 1, 2).copy())
        y = torch.from_numpy(np.stack([sources[i] for i in idx]).transpose(0, 3, 1, 2).copy())

        def run():
            with torch.no_grad():
                return [float(v) for v in fn(x, y).reshape(-1)]

        return run

    return prepare


def runner(lib: str, work: str):
    spec, peers = WORK[work]
    return editmetrics_runner(spec) if lib == "editmetrics" else peer_runner(lib, peers[lib])


def batches(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def timed(prepare, sources, edits, batch: int, repeats: int, min_seconds: float = 1.0
          ) -> tuple[float, float, list[float]]:
    """Records per wall-clock second and per CPU second, and the values of the
    last pass. Each is the best pass of at least ``repeats`` passes and
    ``min_seconds`` of passes. CPU time is the process's (all its threads), so
    it counts the work done whatever else the machine runs; wall-clock time
    would credit torch's use of several cores but moves with the machine's load."""
    jobs = [prepare(sources, edits, idx) for idx in batches(len(sources), batch)]
    jobs[0]()  # warm-up: first-call allocations, lazy imports, kernel selection
    best_wall = best_cpu = float("inf")
    spent, passes = 0.0, 0
    while passes < repeats or spent < min_seconds:
        wall, cpu = time.perf_counter(), time.process_time()
        values = [v for job in jobs for v in job()]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, max(cpu, 1e-9))
        spent, passes = spent + wall, passes + 1
    return len(sources) / best_wall, len(sources) / best_cpu, values


# ---------------------------------------------------------------------------
# Memory: one child process per configuration
# ---------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(lib: str, work: str, batch: int, records: int, size: int) -> None:
    sources, edits = make_images(records, size)
    prepare = runner(lib, work)
    jobs = [prepare(sources, edits, idx) for idx in batches(records, batch)]
    # No warm-up here: the first batch's working buffers are part of what a pass needs.
    # Reset the kernel's peak-RSS mark (VmHWM) so imports before this point do not count.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status_kib("VmRSS")
    for job in jobs:
        job()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_growth_mib": max(0, peak - before) / 1024.0}))


def child_memory(lib: str, work: str, batch: int, records: int, size: int) -> float | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, work, str(batch),
           "--records", str(records), "--size", str(size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_growth_mib"]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def set_threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)


def available(peer: str) -> str | None:
    try:
        __import__(peer)
    except Exception as exc:  # noqa: BLE001 - report and go on without that peer
        return f"{type(exc).__name__}: {exc}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration child processes")
    ap.add_argument("--child", nargs=3, metavar=("LIB", "WORK", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        set_threads()
        child(args.child[0], args.child[1], int(args.child[2]), args.records, args.size)
        return

    import platform

    import torch

    set_threads()
    missing = {peer: available(peer) for peer in ("torchmetrics", "pyiqa")}
    for peer, why in missing.items():
        if why:
            print(f"note: {peer} unavailable ({why}); install the 'bench' extra: pip install -e '.[bench]'")
    versions = {"torch": torch.__version__}
    for peer in ("torchmetrics", "pyiqa"):
        if not missing[peer]:
            versions[peer] = __import__(peer).__version__
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"{THREADS} thread(s) per library (torch, OpenBLAS, OpenCV), no GPU used; python {platform.python_version()}; "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    sources, edits = make_images(args.records, args.size)
    print(f"{args.records} pairs of {args.size}x{args.size} RGB photographs; best of {args.repeats} passes\n")

    header = (f"{'work':<12} {'batch':>5} {'library':<13} {'rec/CPU-s':>10} {'rec/s wall':>10} "
              f"{'ratio CPU':>9} {'ratio wall':>10} {'max |diff|':>10} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    for work, (_, peers) in WORK.items():
        for batch in BATCHES:
            wall, cpu, ours = timed(runner("editmetrics", work), sources, edits, batch, args.repeats)
            mem = None if args.no_memory else child_memory("editmetrics", work, batch, args.records, args.size)
            print(f"{work:<12} {batch:>5} {'editmetrics':<13} {cpu:>10.1f} {wall:>10.1f} {'':>9} {'':>10} {'':>10} "
                  f"{_mib(mem):>9}")
            for peer in peers:
                if missing[peer]:
                    continue
                peer_wall, peer_cpu, theirs = timed(runner(peer, work), sources, edits, batch, args.repeats)
                diff = max(abs(a - b) for a, b in zip(ours, theirs))
                mem = None if args.no_memory else child_memory(peer, work, batch, args.records, args.size)
                print(f"{'':<12} {'':>5} {peer:<13} {peer_cpu:>10.1f} {peer_wall:>10.1f} {cpu / peer_cpu:>9.2f} "
                      f"{wall / peer_wall:>10.2f} {diff:>10.2e} {_mib(mem):>9}")
        print()
    print("ratio = editmetrics / peer records per second (above 1: editmetrics is faster). CPU: the process's\n"
          "CPU time (robust to other load); wall: elapsed time, best pass (moves with the machine's load).\n"
          "max |diff|: largest per-record difference of the values (SSIM RGB vs\n"
          "torchmetrics: torchmetrics averages over the reflect-padded image, editmetrics over the valid area;\n"
          "SSIM luma vs pyiqa: 8-bit rounded MATLAB luma vs unrounded). peak MiB: peak resident-set growth\n"
          "during one pass, in a fresh child process.")


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
