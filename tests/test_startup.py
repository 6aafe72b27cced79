"""Start-up stays light: listing commands import no deep-learning library,
even with every bundled plugin (plugins/*) loaded. The subprocess is what is
under test here (a fresh interpreter's sys.modules)."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

HEAVY = ("torch", "transformers", "open_clip", "diffusers", "groundingdino", "segment_anything", "llama_cpp",
         "pyiqa", "lpips", "piq")
# (plugin name, module, folder under plugins/) of every bundled plugin
BUNDLED = [
    ("example", "editmetrics_example", "editmetrics-example"),
    ("pyiqa", "editmetrics_pyiqa", "editmetrics-pyiqa"),
    ("grounding-original", "editmetrics_grounding_original", "editmetrics-grounding-original"),
]

PROBE = """
import importlib, json, sys
from editmetrics.plugins.registry import get_registry
registry = get_registry()
loaded = {info.module.split(":")[0] for info in registry.plugins.values()}
for name, module, _ in BUNDLED:
    if module not in loaded:  # not installed here: register this checkout's copy
        registry.add(importlib.import_module(module), name)
from editmetrics.cli.app import main
sys.argv = ["editmetrics"] + ARGS
try:
    main()
except SystemExit:
    pass
plugins = {n: i.error for n, i in registry.plugins.items()}
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print("\\nPROBE=" + json.dumps({"heavy": heavy, "plugins": plugins}))
"""


def probe(args: list[str], before: str = "") -> dict:
    paths = [os.path.join(REPO, "src")] + [os.path.join(REPO, "plugins", folder) for *_, folder in BUNDLED]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    # the bundled plugins, and no other plugin that happens to be installed here
    env["EDITMETRICS_LOAD_PLUGINS"] = ",".join(name for name, *_ in BUNDLED)
    code = f"BUNDLED = {BUNDLED!r}\nHEAVY = {HEAVY!r}\nARGS = {args!r}\n{before}\n" + PROBE
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PROBE=")]
    assert line, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(line[-1][len("PROBE="):])


@pytest.mark.parametrize("args", [["--help"], ["metrics"], ["plugins"], ["models"], ["settings"],
                                  ["metrics", "--json"], ["score", "--help"]])
def test_listing_commands_import_no_heavy_library(args):
    out = probe(args)
    for name, *_ in BUNDLED:
        assert name in out["plugins"] and out["plugins"][name] is None, out["plugins"]
    assert out["heavy"] == [], f"`editmetrics {' '.join(args)}` imported {out['heavy']}"


def test_the_probe_sees_a_heavy_import():
    """The check above can fail: a plugin that imports torch when it loads is caught."""
    pytest.importorskip("torch")
    out = probe(["--help"], before="import torch")
    assert out["heavy"] and "torch" in out["heavy"]
