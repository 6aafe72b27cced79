"""Speed of editmetrics' pixel metrics against torchmetrics and pyiqa, same images, same process.

    .venv/bin/python benchmarks/bench_speed.py [--records 32] [--size 256] [--repeats 3] [--no-memory]
        [--only all|pixel|clip] [--clip-model vit-b-32|tiny] [--clip-records 32] [--clip-repeats 2]

For batch sizes 1, 8 and 32 it prints records per second of

- PSNR:        editmetrics ``psnr``                  vs torchmetrics ``peak_signal_noise_ratio`` and pyiqa ``psnr``
- SSIM (RGB):  editmetrics ``ssim(convention=rgb)``  vs torchmetrics ``structural_similarity_index_measure``
               and pyiqa ``ssimc``
- SSIM (luma): editmetrics ``ssim`` (Wang's 8-bit luma) vs pyiqa ``ssim`` (Y channel; torchmetrics has none)
- CLIP-T:      editmetrics ``clip_t(text=instruction)`` (feature store, setting ``clip = hf:DIR``) vs
               torchmetrics ``CLIPScore`` on the same random-weight transformers CLIP folder (built for
               the run: OpenAI ViT-B/32 shapes, or ``--clip-model tiny``); pyiqa's clipscore is skipped
               (it downloads OpenAI's weights)

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
    from editmetrics.plugins.registry import get_registry
    from editmetrics.data.records import EditRecord
    from editmetrics.engine.runner import LoadedRecord, RunContext, Scorer, resolve_metrics

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
# CLIP text-image score: editmetrics clip_t vs torchmetrics CLIPScore
# ---------------------------------------------------------------------------

CLIP_WORK = "CLIP-T"
CLIP_SPEC = "clip_t(text=instruction)"  # raw cosine; torchmetrics' per-record score is 100 * cosine
CLIP_SIZES = ("vit-b-32", "tiny")


def clip_texts(n: int) -> list[str]:
    """One distinct instruction per record, so neither library gains from
    encoding a repeated text once (editmetrics would: its store de-duplicates)."""
    verbs = ("make it", "turn it into", "give it", "add")
    things = ("a pencil sketch", "night time", "a warm sunset tone", "a blue tint", "snow", "a watercolor look")
    return [f"{verbs[i % len(verbs)]} {things[(i // len(verbs)) % len(things)]}, version {i}" for i in range(n)]


def write_clip_model(folder: str, size: str) -> str:
    """A transformers CLIP folder (model + CLIPImageProcessor + real-vocabulary
    tokenizer) with RANDOM weights; returns the folder. ``tiny``:
    editmetrics.testing.tiny.write_hf_clip (32-d, 1 layer, 32 px). ``vit-b-32``: the
    same files with OpenAI ViT-B/32's shapes (12+12 layers, 768/512 wide,
    224 px, patch 32, 512-d projection; about 150M parameters), so the forward
    passes cost what the real model's do."""
    from transformers.utils import logging as hf_logging

    from editmetrics.testing import tiny

    hf_logging.disable_progress_bar()
    spec = tiny.write_hf_clip(folder)  # tokenizer, processor; the tiny model is replaced below for vit-b-32
    if size == "vit-b-32":
        import torch
        import transformers as tf

        tok = tf.AutoTokenizer.from_pretrained(folder)
        torch.manual_seed(0)
        cfg = tf.CLIPConfig(
            text_config={"vocab_size": len(tok), "hidden_size": 512, "intermediate_size": 2048,
                         "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77,
                         "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                         "pad_token_id": tok.pad_token_id},
            vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                           "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
            projection_dim=512)
        tf.CLIPModel(cfg).eval().save_pretrained(folder)
        tf.CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
                              ).save_pretrained(folder)  # OpenAI's defaults: bicubic, CLIP mean/std
    return spec.split(":", 1)[1]


def clip_runner(lib: str, model_dir: str, batch: int):
    """prepare(sources, edits, idx) -> callable returning 100 * cosine per record."""
    texts = clip_texts(10_000)
    if lib == "editmetrics":
        from transformers.utils import logging as hf_logging

        from editmetrics.engine.features import features_for
        from editmetrics.plugins.registry import get_registry
        from editmetrics.data.records import EditRecord
        from editmetrics.engine.runner import LoadedRecord, RunContext, Scorer, resolve_metrics

        hf_logging.disable_progress_bar()
        registry = get_registry()
        # the runner's batch and the feature store's forward-pass batch are both `batch`
        ctx = RunContext(registry=registry, batch_size=batch,
                         settings={"clip": f"hf:{model_dir}", "feature_batch_size": batch})
        scorer = Scorer(resolve_metrics([CLIP_SPEC], registry), ctx)
        store = features_for(ctx)

        def prepare(sources, edits, idx):
            batch_records = [LoadedRecord(EditRecord(id=i, fields={"source": "s", "edited": "e",
                                                                   "instruction": texts[i]}, base_dir="/", line=i),
                                          images={"source": sources[i], "edited": edits[i]}) for i in idx]

            def run():
                store.forget()  # no embedding kept from an earlier pass: every pass encodes everything
                return [100.0 * row["scores"][CLIP_SPEC] for row in scorer.score(batch_records)]

            return run

        prepare.model = lambda: store.backbone("clip").model  # loads the encoder (lazy otherwise)
        return prepare

    import torch
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPModel, CLIPProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    class TensorFeatures(CLIPModel):
        """transformers 5 returns a ModelOutput from get_*_features (the projected
        embedding is its pooler_output); torchmetrics 1.9 expects a tensor and fails
        with "'BaseModelOutputWithPooling' object has no attribute 'norm'"."""

        def get_image_features(self, *args, **kwargs):
            out = super().get_image_features(*args, **kwargs)
            return out if torch.is_tensor(out) else out.pooler_output

        def get_text_features(self, *args, **kwargs):
            out = super().get_text_features(*args, **kwargs)
            return out if torch.is_tensor(out) else out.pooler_output

    # torchmetrics 1.9 refuses a plain local folder (it accepts only paths containing
    # "openai", "jinaai" or "zer0int"); its documented alternative is a callable
    # returning (model, processor): the same transformers loading, from the folder.
    metric = CLIPScore(model_name_or_path=lambda: (TensorFeatures.from_pretrained(model_dir).eval(),
                                                   CLIPProcessor.from_pretrained(model_dir)))

    def prepare(sources, edits, idx):
        # uint8 CHW tensors: CLIPProcessor rescales by 1/255 (a float [0, 1] tensor would be rescaled again)
        x = torch.from_numpy(np.stack([np.rint(edits[i] * 255.0) for i in idx]).astype(np.uint8)
                             .transpose(0, 3, 1, 2).copy())
        batch_texts = [texts[i] for i in idx]

        def run():
            with torch.no_grad():
                metric.update(x, batch_texts)  # the timed work: what a user's loop calls
                # per-record values for the comparison: the function update() itself calls
                # (score = 100 * cosine, before update() sums it); not timed separately
            return []

        def values():
            with torch.no_grad():
                score, _ = _clip_score_update(x, batch_texts, metric.model, metric.processor)
            return [float(v) for v in score.reshape(-1)]

        run.values = values
        return run

    prepare.model = lambda: metric.model
    return prepare


def clip_values(prepare, sources, edits, batch: int) -> list[float]:
    jobs = [prepare(sources, edits, idx) for idx in batches(len(sources), batch)]
    out = []
    for job in jobs:
        out.extend(job.values() if hasattr(job, "values") else job())
    return out


def clip_section(args, sources, edits, missing) -> None:
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", message=".*rescale already rescaled images.*")
    folder = tempfile.mkdtemp(prefix="editmetrics-bench-clip-")
    t0 = time.perf_counter()
    model_dir = write_clip_model(folder, args.clip_model)
    n = args.clip_records
    src, ed = sources[:n], edits[:n]
    print(f"CLIP text-image score, {n} records ({args.size}x{args.size} edited photographs, one distinct "
          f"instruction each), RANDOM-weight transformers CLIP ({args.clip_model}"
          f"{', OpenAI ViT-B/32 shapes' if args.clip_model == 'vit-b-32' else ', editmetrics.testing.tiny.write_hf_clip'};"
          f" written in {time.perf_counter() - t0:.1f} s to {model_dir}); best of {args.clip_repeats} passes;"
          " model loading not timed.")
    print("pyiqa: skipped -- its clipscore loads OpenAI's CLIP weights from the network (no weights, no network "
          "here; it cannot take a local transformers folder).")
    if missing["torchmetrics"]:
        print("torchmetrics unavailable: only editmetrics is timed.")
    header = (f"{'work':<12} {'batch':>5} {'library':<13} {'rec/CPU-s':>10} {'rec/s wall':>10} "
              f"{'ratio CPU':>9} {'ratio wall':>10} {'max |diff|':>10} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    for batch in BATCHES:
        ours_prep = clip_runner("editmetrics", model_dir, batch)
        wall, cpu, ours = timed(ours_prep, src, ed, batch, args.clip_repeats, min_seconds=0.0)
        mem = None if args.no_memory else child_memory("editmetrics", CLIP_WORK, batch, n, args.size,
                                                       ["--clip-dir", model_dir])
        print(f"{CLIP_WORK:<12} {batch:>5} {'editmetrics':<13} {cpu:>10.2f} {wall:>10.2f} {'':>9} {'':>10} "
              f"{'':>10} {_mib(mem):>9}")
        if missing["torchmetrics"]:
            continue
        tm_prep = clip_runner("torchmetrics", model_dir, batch)
        tm_wall, tm_cpu, _ = timed(tm_prep, src, ed, batch, args.clip_repeats, min_seconds=0.0)
        theirs = clip_values(tm_prep, src, ed, batch)
        diff = max(abs(a - b) for a, b in zip(ours, theirs))
        clamped = max(abs(max(a, 0.0) - max(b, 0.0)) for a, b in zip(ours, theirs))
        mem = None if args.no_memory else child_memory("torchmetrics", CLIP_WORK, batch, n, args.size,
                                                       ["--clip-dir", model_dir])
        print(f"{'':<12} {'':>5} {'torchmetrics':<13} {tm_cpu:>10.2f} {tm_wall:>10.2f} {cpu / tm_cpu:>9.2f} "
              f"{wall / tm_wall:>10.2f} {diff:>10.2e} {_mib(mem):>9}")
        print(f"{'':<12} {'':>5} {'':<13} (CLIPScore = max(100 cos, 0): largest difference {clamped:.2e}; "
              f"100 cos in [{min(theirs):.1f}, {max(theirs):.1f}])")
    print("\nCLIP-T: editmetrics clip_t(text=instruction) through its feature store (runner batch = forward batch"
          " = BATCH)\nvs torchmetrics CLIPScore.update on BATCH images + texts; values compared as 100 * cosine"
          " (max |diff|).\nThe weights are random: the figures time the pipelines (preprocessing, forward passes,"
          " bookkeeping), not a model's quality.")
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------
# Memory: one child process per configuration
# ---------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(lib: str, work: str, batch: int, records: int, size: int, clip_dir: str | None = None) -> None:
    sources, edits = make_images(records, size)
    prepare = clip_runner(lib, clip_dir, batch) if work == CLIP_WORK else runner(lib, work)
    jobs = [prepare(sources, edits, idx) for idx in batches(records, batch)]
    if hasattr(prepare, "model"):
        # CLIP: load the model and read every weight now. transformers maps the
        # safetensors file, so untouched weights would be paged in during the
        # pass and counted as its memory (about the model's size).
        for param in prepare.model().parameters():
            float(param.detach().sum())
    # No warm-up here: the first batch's working buffers are part of what a pass needs.
    # Reset the kernel's peak-RSS mark (VmHWM) so imports before this point do not count.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status_kib("VmRSS")
    for job in jobs:
        job()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_growth_mib": max(0, peak - before) / 1024.0}))


def child_memory(lib: str, work: str, batch: int, records: int, size: int, extra: list[str] = ()
                 ) -> float | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, work, str(batch),
           "--records", str(records), "--size", str(size), *extra]
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
    ap.add_argument("--only", choices=("all", "pixel", "clip"), default="all",
                    help="pixel: PSNR/SSIM only; clip: the CLIP text-image score only")
    ap.add_argument("--clip-model", choices=CLIP_SIZES, default="vit-b-32",
                    help="random-weight CLIP built for the run: OpenAI ViT-B/32 shapes, or editmetrics' tiny one")
    ap.add_argument("--clip-records", type=int, default=32, help="records of the CLIP part (at most --records)")
    ap.add_argument("--clip-repeats", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("LIB", "WORK", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--clip-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        set_threads()
        child(args.child[0], args.child[1], int(args.child[2]), args.records, args.size, args.clip_dir)
        return
    args.clip_records = min(args.clip_records, args.records)

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
    if args.only != "clip":
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
    if args.only != "pixel":
        if args.only == "all":
            print()
        clip_section(args, sources, edits, missing)


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
