"""Test-wide settings: nothing may reach a network or a model hub, and the
plugin set is fixed: built-ins plus this checkout's bundled plugins (plugins/*),
whatever else is installed in the environment."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# entry-point names of the bundled plugins; other installed plugins stay out of tests
BUNDLED_PLUGINS = ("example", "pyiqa", "grounding-original")
os.environ.setdefault("EDITMETRICS_LOAD_PLUGINS", ",".join(BUNDLED_PLUGINS))
# this checkout's copies of the bundled plugins win over installed (editable) ones
_plugin_dirs = [os.path.join(REPO, "plugins", d) for d in sorted(os.listdir(os.path.join(REPO, "plugins")))]
sys.path[:0] = _plugin_dirs
os.environ["PYTHONPATH"] = os.pathsep.join(_plugin_dirs + [os.environ.get("PYTHONPATH", "")])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
