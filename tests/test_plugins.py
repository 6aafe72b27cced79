"""Plugin discovery: a real pip-installed plugin, a broken one, strict and filtered loading."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from editmetrics import Metric, hookimpl
from editmetrics.plugins.registry import Registry, UnknownNameError

from helpers import REPO, photo, read_jsonl, run_cli, save, write_pairs


@pytest.fixture(scope="module")
def example_plugin_path(tmp_path_factory):
    """pip-install the repo's example plugin package into a private folder."""
    target = tmp_path_factory.mktemp("site")
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    source = tmp_path_factory.mktemp("src") / "editmetrics-example"
    shutil.copytree(os.path.join(REPO, "plugins", "editmetrics-example"), source)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return str(target)


@pytest.fixture(scope="module")
def broken_plugin_path(tmp_path_factory):
    """A distribution whose editmetrics entry point raises at import."""
    site = tmp_path_factory.mktemp("broken")
    (site / "broken_em_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    dist = site / "broken_em_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-em-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[editmetrics]\nbroken = broken_em_plugin\n")
    return str(site)


def env_with(*paths, **extra):
    env = {"PYTHONPATH": os.pathsep.join(list(paths) + [os.environ.get("PYTHONPATH", "")])}
    env.update(extra)
    return env


def test_example_plugin_is_listed_and_scores(example_plugin_path, tmp_path):
    env = env_with(example_plugin_path)
    listed = json.loads(run_cli("metrics", "--json", env=env).stdout)
    row = next(r for r in listed if r["id"] == "hist_intersection")
    assert row["plugin"] == "example" and row["higher_is_better"] is True
    plugins = json.loads(run_cli("plugins", "--json", env=env).stdout)
    assert {"name": "example", "version": "0.1.0", "error": None}.items() <= next(
        p for p in plugins if p["name"] == "example").items()
    src = photo("coffee", (64, 48))
    save(src, tmp_path / "a.png")
    save(src[::-1].copy(), tmp_path / "b.png")
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": "same", "source": "a.png", "edited": "a.png"},
                                                    {"id": "flipped", "source": "a.png", "edited": "b.png"}])
    proc = run_cli("score", "--pairs", pairs, "--metrics", "hist_intersection,hist_intersection(bins=4)",
                   "--out", str(tmp_path / "o.jsonl"), env=env)
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(tmp_path / "o.jsonl")
    # a vertical flip keeps the colour histogram: both records score 1 (up to float rounding)
    assert all(abs(r["scores"]["hist_intersection"] - 1.0) < 1e-9 for r in rows)


def test_broken_plugin_is_reported_not_fatal(broken_plugin_path):
    env = env_with(broken_plugin_path)
    proc = run_cli("metrics", env=env)
    assert proc.returncode == 0 and "psnr" in proc.stdout
    assert "plugin 'broken' failed to load" in proc.stderr
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", env=env).stdout)}
    assert plugins["broken"]["version"] == "0.3"
    assert "this plugin is broken on purpose" in plugins["broken"]["error"]
    assert plugins["pixel"]["error"] is None


def test_strict_mode_and_load_filter(broken_plugin_path):
    proc = run_cli("metrics", env=env_with(broken_plugin_path, EDITMETRICS_STRICT_PLUGINS="1"))
    assert proc.returncode == 2 and "plugin 'broken'" in proc.stderr
    # the filter applies to third-party plugins only: built-ins always load
    proc = run_cli("plugins", "--json", env=env_with(broken_plugin_path, EDITMETRICS_LOAD_PLUGINS="pixel"))
    names = [p["name"] for p in json.loads(proc.stdout)]
    assert "broken" not in names and {"pixel", "baselines", "datasets", "semantic"} <= set(names)


CORE_COMMANDS = [("run",), ("models",), ("weights", "list"), ("weights", "path"), ("weights", "verify"),
                 ("train", "erma"), ("train", "c2e-s2ser"), ("demo-weights",), ("report",), ("compare",),
                 ("pairs", "from-folders"), ("dataset", "list"), ("dataset", "export"), ("score",), ("metrics",),
                 ("plugins",), ("settings",), ("correlate",)]


def _command(group, path):
    for name in path:
        group = group.commands[name]
    return group


def test_core_commands_live_in_cli_and_no_plugin_removes_them(broken_plugin_path, monkeypatch):
    import click

    from editmetrics.cli.app import _add_plugin_commands, cli
    from editmetrics.plugins import registry as plugins

    for path in CORE_COMMANDS:  # defined in the cli package, not added by a plugin's register_commands
        assert _command(cli, path).callback.__module__.startswith("editmetrics.cli."), path
    # a subprocess with a broken third-party plugin and a load filter still has every core command
    for name in ("run", "report", "dataset", "pairs", "demo-weights"):
        proc = run_cli(name, "--help", env=env_with(broken_plugin_path, EDITMETRICS_LOAD_PLUGINS="pixel"))
        assert proc.returncode == 0 and "Usage:" in proc.stdout, (name, proc.stderr)

    # in process: a plugin whose register_commands fails half-way cannot take a core command with it
    registry = Registry()
    registry.load_builtins()

    class Failing:
        @hookimpl
        def register_commands(self, cli):
            cli.commands.pop("run")
            cli.commands["train"].commands.pop("erma")
            raise RuntimeError("failing on purpose")

    registry.add(Failing(), "failing")
    monkeypatch.setattr(plugins, "_registry", registry)
    group = click.Group(commands=dict(cli.commands))
    _add_plugin_commands(group)
    assert "register_commands failed" in registry.plugins["failing"].error
    for path in CORE_COMMANDS:
        assert _command(group, path) is _command(cli, path), path


class Good(Metric):
    id = "good_metric"
    description = "d"
    higher_is_better = True
    range = (0, 1)

    def compute(self, rec):
        return 1.0


class NoDirection(Metric):
    id = "no_direction"
    description = "d"
    range = (0, 1)

    def compute(self, rec):
        return 1.0


def make_plugin(*classes):
    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            for cls in classes:
                register(cls)

    return Plugin()


def test_registration_is_validated_and_isolated():
    registry = Registry()
    registry.add(make_plugin(Good), "first")
    info = registry.add(make_plugin(NoDirection), "second")
    assert "does not declare higher_is_better" in info.error
    info = registry.add(make_plugin(Good), "third")
    assert "already registered by plugin 'first'" in info.error
    assert registry.plugin_of("metrics", "good_metric") == "first"
    with pytest.raises(UnknownNameError, match="did you mean 'good_metric'"):
        registry.get("metrics", "good_metrc")


def test_builtins_always_load_through_the_hooks():
    """Built-ins are default plugins registered through the same hooks; the
    entry-point filter cannot remove them."""
    from importlib.metadata import entry_points

    from editmetrics.plugins.registry import BUILTIN_PLUGINS

    assert "pixel" not in {ep.name for ep in entry_points(group="editmetrics")}
    registry = Registry()
    os.environ["EDITMETRICS_LOAD_PLUGINS"] = "nothing"
    try:
        registry.load_builtins()
        registry.load_entry_points()
    finally:
        os.environ.pop("EDITMETRICS_LOAD_PLUGINS", None)
    assert registry.plugin_of("metrics", "psnr") == "pixel"
    assert set(BUILTIN_PLUGINS) <= set(registry.plugins)
    assert all(registry.plugins[name].error is None for name in BUILTIN_PLUGINS)
