"""Start-up time and memory of the command line (issue 12, item 2).

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--records 16]

Each command runs in a fresh interpreter (``python -m editmetrics``), with
every plugin installed in the environment loaded. Prints, per command, the
median wall time and the peak resident memory (max RSS of the child, from
``wait4``), and the heavy libraries (torch, transformers, ...) it imported.
Targets: ``editmetrics --help`` under 0.5 s; a pixel-only ``score``
(psnr, ssim, l1 on 512x384 PNG pairs) under 150 MiB peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "transformers", "open_clip", "diffusers", "groundingdino", "segment_anything", "llama_cpp",
         "pyiqa", "lpips", "piq")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str], env: dict) -> tuple[float, float, int]:
    """(seconds, peak MiB, exit status) of one fresh ``python -m editmetrics ARGS``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "editmetrics", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode


def heavy_imports(args: list[str], env: dict) -> list[str]:
    code = ("import sys\nfrom editmetrics.cli.app import main\nsys.argv = ['editmetrics'] + %r\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))))" % (args, HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    return [m for m in line[-1][len("HEAVY="):].split(",") if m] if line else ["(probe failed)"]


def make_pairs(folder: str, n: int) -> str:
    """Runs in a child process: this process stays small, since a child's max
    RSS also counts the memory it shared with its parent before exec."""
    code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); " \
           f"import bench_startup as b; print(b._make_pairs({folder!r}, {n}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _make_pairs(folder: str, n: int) -> str:
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    path = os.path.join(folder, "pairs.jsonl")
    with open(path, "w") as fh:
        for i in range(n):
            src = np.asarray(Image.fromarray(photos[i % 4]).resize((512, 384), Image.BICUBIC))
            edited = np.clip(src + rng.normal(0, 8, src.shape), 0, 255).astype(np.uint8)
            Image.fromarray(src).save(os.path.join(folder, f"s{i}.png"))
            Image.fromarray(edited).save(os.path.join(folder, f"e{i}.png"))
            fh.write(f'{{"id": "r{i}", "source": "s{i}.png", "edited": "e{i}.png"}}\n')
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--records", type=int, default=16)
    opts = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        pairs = make_pairs(tmp, opts.records)
        commands = [["--help"], ["metrics"], ["plugins"], ["models"], ["settings"]]
        print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f} "
              f"({os.cpu_count()} CPUs), {opts.repeats} runs each, median")
        print(f"{'command':<44} {'seconds':>8} {'peak MiB':>9}  heavy imports")
        for args in commands:
            runs = [run(args, env) for _ in range(opts.repeats)]
            secs = statistics.median(r[0] for r in runs)
            mib = max(r[1] for r in runs)
            print(f"{'editmetrics ' + ' '.join(args):<44} {secs:>8.3f} {mib:>9.1f}  "
                  f"{', '.join(heavy_imports(args, env)) or 'none'}")
        peaks, secs = [], []
        for i in range(max(1, opts.repeats // 2)):
            out = os.path.join(tmp, f"out{i}.jsonl")
            s, mib, code = run(["score", "--pairs", pairs, "--metrics", "psnr,ssim,l1", "--out", out,
                                "--no-progress"], env)
            if code != 0:
                raise SystemExit(f"score exited {code}")
            peaks.append(mib)
            secs.append(s)
        label = f"score psnr,ssim,l1 ({opts.records} 512x384 pairs)"
        print(f"{label:<44} {statistics.median(secs):>8.3f} {max(peaks):>9.1f}")
        examples = os.path.join(REPO, "examples", "pairs.jsonl")
        runs = [run(["score", "--pairs", examples, "--metrics", "psnr,ssim,psnr@target,l2", "--out",
                     os.path.join(tmp, f"ex{i}.jsonl"), "--no-progress"], env) for i in range(3)]
        label = "score (README command, examples/pairs.jsonl)"
        print(f"{label:<44} {statistics.median(r[0] for r in runs):>8.3f} {max(r[1] for r in runs):>9.1f}")
        print("targets: --help < 0.5 s; pixel-only score < 150 MiB peak")


if __name__ == "__main__":
    main()
