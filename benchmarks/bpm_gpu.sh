#!/bin/bash
# BPM time per image on one GPU with the paper's architectures at full size and
# random weights (issue 4, must-show 5): builds the models once, then times
# batch 16 (fp32), batch 16 (TF32) and batch 1 (fp32), 64 records each, every
# record grounded. Needs editmetrics installed in $PYTHON (default python3) and
# a CUDA device; writes nothing but a temporary model folder (about 5 GB).
#   bash benchmarks/bpm_gpu.sh [OUT_FILE]
set -o pipefail
PY=${PYTHON:-python3}
OUT_FILE=${1:-/dev/null}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
MODELS=$(mktemp -d)
trap 'rm -rf "$MODELS"' EXIT
"$PY" - "$MODELS" <<'PY' || exit 1
import json, sys, time
from editmetrics.testing.tiny import write_grounding, write_open_clip
t = time.perf_counter()
s = {"clip": write_open_clip(f"{sys.argv[1]}/clip", name="benchclip", arch="ViT-L-14")}
s.update(write_grounding(sys.argv[1], paper_sized=True))
json.dump(s, open(f"{sys.argv[1]}/settings.json", "w"))
print(f"built paper-sized random models in {time.perf_counter() - t:.1f} s")
PY
ARGS=$("$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print('--clip', s['clip'], '--groundingdino', s['bpm_groundingdino'], '--sam', s['bpm_sam'])" "$MODELS/settings.json")
for run in "16" "16 --tf32" "1"; do
  set -- $run
  echo "=== batch $run" | tee -a "$OUT_FILE"
  # 3 boxes per phrase: a random detector fires everywhere, a trained one finds a few
  "$PY" benchmarks/bench_bpm.py $ARGS --device cuda --n 64 --batch-size "$1" $2 --ground \
      --box-threshold 0.0 --max-detections 3 2>&1 | grep -v "Loading weights" | tee -a "$OUT_FILE"
done
