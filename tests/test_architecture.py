"""Issue 12: declared settings, plugin collisions and misspelt hooks, the
metric contract (ids, score keys, field kinds), one weight resolver, the
docs of every setting and hook, and the LLM extra's message."""

import inspect
import json
import os
import sys

import numpy as np
import pytest

import editmetrics
from editmetrics import Metric, hookimpl
from editmetrics.plugins import hookspecs
from editmetrics.plugins.registry import Registry
from editmetrics.contract.scorekey import ScoreKey, ScoreKeyError
from editmetrics.engine.settings import Setting, SettingError, score_affecting, validate

from helpers import REPO, photo, read_jsonl, repo_sources, run_cli, save, write_pairs

EXAMPLES = os.path.join(REPO, "examples", "pairs.jsonl")


# -- declared settings --------------------------------------------------------


def test_unknown_setting_exits_2_with_did_you_mean(tmp_path):
    res = run_cli("score", "--pairs", EXAMPLES, "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl"),
                  "--set", "feature_batch_sise=4")
    assert res.returncode == 2
    assert "unknown setting 'feature_batch_sise'" in res.stderr and "did you mean 'feature_batch_size'" in res.stderr
    assert not (tmp_path / "o.jsonl").exists()
    res = run_cli("models", "--set", "ssim_window=7")
    assert res.returncode == 2 and "unknown setting 'ssim_window'" in res.stderr


def test_settings_given_in_python_are_validated_too(tmp_path):
    """score_file / score_records (what the Python API and the benchmarks call)
    refuse a misspelt key before any work, and type the values they accept."""
    from editmetrics.engine.runner import checked_settings, score_file, score_records

    out = tmp_path / "o.jsonl"
    with pytest.raises(SettingError, match="did you mean 'feature_batch_size'"):
        score_file(EXAMPLES, ["psnr"], str(out), settings={"feature_batch_sise": 4}, progress=False)
    assert not out.exists()
    with pytest.raises(SettingError, match="unknown setting 'ssim_window'"):
        score_records([], ["psnr"], settings={"ssim_window": 7})
    assert checked_settings({"max_pixels": "1000"}, None) == {"max_pixels": 1000}


def test_bad_values_from_every_source_exit_2(tmp_path):
    res = run_cli("settings", "--json")  # nothing set: fine
    assert res.returncode == 0
    res = run_cli("models", "--set", "feature_batch_size=many")
    assert res.returncode == 2 and "'many' is not a valid int" in res.stderr
    res = run_cli("models", env={"EDITMETRICS_ALLOW_DOWNLOAD": "perhaps"})
    assert res.returncode == 2 and "EDITMETRICS_ALLOW_DOWNLOAD" in res.stderr
    res = run_cli("models", env={"EDITMETRICS_BPM_PARSR": "rules"})
    assert res.returncode == 2 and "did you mean 'bpm_parser'" in res.stderr
    (tmp_path / "c.toml").write_text('[settings]\nfeature_memory = "lots"\n')
    res = run_cli("models", "--config", str(tmp_path / "c.toml"))
    assert res.returncode == 2 and "feature_memory" in res.stderr and "c.toml" in res.stderr
    (tmp_path / "d.toml").write_text('feature_memory = 1000\nallow_download = false\n')
    assert run_cli("models", "--config", str(tmp_path / "d.toml")).returncode == 0


def test_values_are_typed():
    out = validate({"feature_batch_size": "16", "allow_download": "yes", "clip": "ViT-B-32:openai"})
    assert out == {"feature_batch_size": 16, "allow_download": True, "clip": "ViT-B-32:openai"}
    with pytest.raises(SettingError):
        validate({"feature_batch_size": 1.5})


def test_settings_command_lists_declarations():
    res = run_cli("settings", "--json")
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["clip"] == {**rows["clip"], "type": "str", "default": "ViT-L-14:openai", "affects_scores": True,
                            "plugin": "settings", "env": "EDITMETRICS_CLIP"}
    assert rows["feature_memory"]["affects_scores"] is False
    # a model weight's setting is declared by the Weight itself
    assert rows["ip2p"]["type"] == "path" and rows["ip2p"]["plugin"] == "diffusion"
    text = run_cli("settings").stdout
    assert "bpm_parser" in text and "rules" in text
    # the value in effect: --set > environment > default
    rows = {r["name"]: r for r in json.loads(run_cli("settings", "--json", "--set", "feature_memory=7",
                                                     env={"EDITMETRICS_CLIP": "ViT-B-32:openai"}).stdout)}
    assert rows["feature_memory"]["value"] == 7 and rows["clip"]["value"] == "ViT-B-32:openai"
    assert rows["dino"]["value"] == rows["dino"]["default"]


def test_score_affecting_gives_effective_values():
    values = score_affecting({"clip": "ViT-B-32:openai", "feature_memory": 5})
    assert values["clip"] == "ViT-B-32:openai" and values["bpm_parser"] == "rules"
    assert "feature_memory" not in values and "allow_download" not in values


def test_a_plugin_declares_its_settings():
    registry = Registry()
    registry.load_builtins()

    class Plugin:
        @hookimpl
        def register_settings(self, register):
            register(Setting("my_strength", "float", 0.5, "how strong", True))

    registry.add(Plugin(), "mine")
    assert validate({"my_strength": "0.25"}, registry=registry) == {"my_strength": 0.25}
    with pytest.raises(SettingError, match="did you mean 'my_strength'"):
        validate({"my_strenght": "0.25"}, registry=registry)

    class Clash:
        @hookimpl
        def register_settings(self, register):
            register(Setting("clip", "str", "x", "mine now", False))

    info = registry.add(Clash(), "clash")
    assert "refused: setting 'clip' is already registered by plugin 'settings'" in info.error


def test_docs_list_every_setting_and_hook():
    res = run_cli("settings", "--markdown")
    with open(os.path.join(REPO, "docs", "settings.md"), encoding="utf-8") as fh:
        assert fh.read() == res.stdout, "docs/settings.md is stale: run `editmetrics settings --markdown > docs/settings.md`"
    with open(os.path.join(REPO, "docs", "plugins.md"), encoding="utf-8") as fh:
        plugins_doc = fh.read()
    hooks = [name for name, fn in vars(hookspecs).items() if callable(fn) and name.startswith("register_")]
    assert len(hooks) >= 8
    for name in hooks:
        signature = f"`{name}{inspect.signature(getattr(hookspecs, name))}`"
        assert signature in plugins_doc, f"docs/plugins.md does not document {signature}"


def test_every_environment_variable_read_is_a_setting_or_a_listed_switch(tmp_path, monkeypatch):
    """A switch the tests or benchmarks read (EDITMETRICS_FAULT_TABLE, ...)
    must not make every command exit 2 as an unknown setting."""
    import re

    from editmetrics.engine.config import NOT_SETTINGS, load_settings
    from editmetrics.engine.settings import declared

    names = set()
    for _, text in repo_sources(("src", "tests", "benchmarks", "plugins", "scripts"), (".py", ".sh")):
        names |= set(re.findall(r"EDITMETRICS_([A-Z][A-Z0-9_]*[A-Z0-9])\b", text))
    assert {"FAULT_TABLE", "CHROMIUM", "LOAD_PLUGINS"} <= names  # the scan finds them
    settings = {name.upper() for name in declared()}
    not_names = {"NAME", "BPM_PARSR"}  # the docs' placeholder; the misspelling tested above
    stray = sorted(names - settings - NOT_SETTINGS - not_names)
    assert not stray, f"read from the environment but neither a setting nor in config.NOT_SETTINGS: {stray}"
    monkeypatch.chdir(tmp_path)  # no ./editmetrics.toml
    for name in NOT_SETTINGS:
        monkeypatch.setenv("EDITMETRICS_" + name, "x")
    load_settings()  # raises SettingError on an unknown EDITMETRICS_* name


# -- plugins: collisions, misspelt hooks, commands --------------------------------


class FakePSNR(Metric):
    id = "psnr"
    description = "an impostor"
    higher_is_better = True
    range = (0, 1)

    def compute(self, rec):
        return 0.123


def test_a_plugin_taking_a_builtin_id_is_refused():
    registry = Registry()
    registry.load_builtins()

    class Impostor:
        @hookimpl
        def register_metrics(self, register):
            register(FakePSNR)

        @hookimpl
        def register_settings(self, register):
            register(Setting("impostor_only", "int", 1, "x", False))

    info = registry.add(Impostor(), "impostor")
    assert info.error == "register_metrics failed: ValueError: refused: metric 'psnr' is already registered by plugin 'pixel'"
    assert registry.plugins["pixel"].error is None
    assert registry.get("metrics", "psnr") is not FakePSNR and "ssim" in registry.items["metrics"]
    assert "impostor_only" not in registry.items["settings"]  # nothing of a refused plugin is kept
    assert registry.pm.get_plugin("impostor") is None


def test_a_misspelt_hook_is_reported():
    registry = Registry()
    registry.load_builtins()

    class Typo:
        @hookimpl
        def register_metric(self, register):
            register(FakePSNR)

    info = registry.add(Typo(), "typo")
    assert info.error == "hook implementation 'register_metric' matches no editmetrics hook; did you mean 'register_metrics'?"


def test_a_plugin_command_cannot_replace_a_core_command(monkeypatch):
    import click

    from editmetrics.plugins import registry as plugins
    from editmetrics.cli.app import _add_plugin_commands, cli

    registry = Registry()
    registry.load_builtins()

    class Hijack:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("score")
            def fake():
                click.echo("hijacked")

            @cli.command("extra-hijack")
            def extra():
                pass

    registry.add(Hijack(), "hijack")
    monkeypatch.setattr(plugins, "_registry", registry)
    group = click.Group(commands=dict(cli.commands))
    _add_plugin_commands(group)
    assert registry.plugins["hijack"].error == "refused: command 'score' already exists"
    assert group.commands["score"] is cli.commands["score"] and "extra-hijack" not in group.commands
    assert {"run", "models", "weights", "report"} <= set(group.commands)


# -- metric contract ------------------------------------------------------------------


def test_score_keys_parse_and_print():
    key = ScoreKey.parse("ssim(convention=rgb,region=inside)@target.region")
    assert (key.name, key.params, key.field, key.component) == (
        "ssim", (("convention", "rgb"), ("region", "inside")), "target", "region")
    assert str(key) == "ssim(convention=rgb,region=inside)@target.region"
    assert key.spec == "ssim(convention=rgb,region=inside)@target"
    assert ScoreKey.parse("psnr").component is None and ScoreKey.parse("bpm.region").name == "bpm"
    assert ScoreKey.parse("clip_t(alpha=0.5).x").params == (("alpha", "0.5"),)
    with pytest.raises(ScoreKeyError):
        ScoreKey.parse("not a key!")


def test_metric_ids_are_restricted():
    class Dotted(FakePSNR):
        id = "my.metric"

    with pytest.raises(TypeError, match=r"\[a-z\]\[a-z0-9_\]"):
        editmetrics.contract.metric.validate_metric_class(Dotted)
    assert "backbones" in vars(Metric) and vars(Metric)["backbones"] == ()


class RenderDiff(Metric):
    """Reads a field outside the core schema, declared as an image."""

    id = "render_diff"
    description = "mean |edited - render|"
    higher_is_better = False
    range = (0, 1)
    fields = ("edited", "render")
    field_kinds = {"render": "image"}
    reference = None

    def compute(self, rec):
        return float(np.abs(rec.image("edited") - rec.image("render")).mean())


def test_a_metric_can_declare_a_new_image_field(tmp_path):
    registry = Registry()
    registry.load_builtins()

    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            register(RenderDiff)

    registry.add(Plugin(), "render")
    img = photo("coffee", (32, 24))
    save(img, tmp_path / "a.png")
    save(255 - img, tmp_path / "b.png")
    rows = editmetrics.score_records([{"id": 1, "edited": "a.png", "render": "a.png"},
                                      {"id": 2, "edited": "a.png", "render": "b.png"}],
                                     ["render_diff"], base_dir=str(tmp_path), registry=registry)
    assert rows[0]["scores"]["render_diff"] == 0.0 and rows[1]["scores"]["render_diff"] > 0.3


# -- one weight resolver ---------------------------------------------------------------


def test_models_and_weights_list_agree(tmp_path):
    models = {r["id"]: r for r in json.loads(run_cli("models", "--json", "--set", f"ip2p={tmp_path}").stdout)}
    assert models["ip2p"]["weights_present"] is True
    res = run_cli("weights", "list", "--json", "--set", f"ip2p={tmp_path}", "--set", f"weights_dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    row = next(r for r in json.loads(res.stdout) if r["spec"] == "ip2p:instruct-pix2pix")
    assert row["present"] is True and row["path"] == str(tmp_path)
    res = run_cli("weights", "list", "--json", "--set", f"weights_dir={tmp_path}")
    row = next(r for r in json.loads(res.stdout) if r["spec"] == "ip2p:instruct-pix2pix")
    assert row["present"] is False
    res = run_cli("weights", "verify", "--set", f"ip2p={tmp_path}", "--set", f"weights_dir={tmp_path}")
    assert f"PRESENT   ip2p:instruct-pix2pix: {tmp_path}" in res.stdout
    assert "MISSING   magicbrush:magicbrush" in res.stdout


def test_weights_list_shows_what_bpm_needs(tmp_path):
    """BPM's CLIP backbone and its grounder's folders are listed (the grounder's
    own declaration, so a plugin grounder lists its files too)."""
    res = run_cli("weights", "list", "--json", "--set", f"bpm_sam={tmp_path}", "--set", f"weights_dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    rows = {r["spec"]: r for r in json.loads(res.stdout)}
    assert "bpm" in next(r for r in rows.values() if r["setting"] == "clip")["metrics"]
    assert rows["gdino-sam:sam"]["present"] is True and rows["gdino-sam:sam"]["metrics"] == ["bpm(grounder=gdino-sam)"]
    assert rows["gdino-sam:groundingdino"]["present"] is False
    text = run_cli("weights", "list", "--set", f"weights_dir={tmp_path}").stdout
    assert "MISSING" in text and "weights list` shows all" not in text  # no pointer back to itself


def test_weights_list_shows_the_iqa_weight_files(tmp_path, monkeypatch):
    """LPIPS/DISTS files are listed where the metric looks for them: the
    iqa_weights folder, else torch hub's checkpoints (same rule, torch not imported)."""
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    res = run_cli("weights", "list", "--json", "--set", f"iqa_weights={tmp_path}")
    rows = {r["spec"]: r for r in json.loads(res.stdout)}
    assert rows["lpips:alexnet"]["present"] is True
    assert rows["lpips:alexnet"]["path"] == str(tmp_path / "alexnet-owt-7be5be79.pth")
    assert rows["dists:alpha_beta"]["present"] is False and rows["dists:alpha_beta"]["metrics"] == ["dists"]
    torch = pytest.importorskip("torch")
    from editmetrics.metrics.iqa import default_checkpoints_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert default_checkpoints_dir() == os.path.join(torch.hub.get_dir(), "checkpoints")


# -- set-up: the LLM parser's extra ---------------------------------------------------


def test_llm_parser_without_llama_cpp_names_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    res = run_cli("parse", "make the cat blue", "--parser", "llm")
    assert res.returncode == 2
    assert "scripts/setup.sh --llm" in res.stderr and "editmetrics[llm]" in res.stderr


def test_score_with_in_process_cli(tmp_path):
    """helpers.run_cli runs in-process; the row equals the Python API's."""
    src = photo("astronaut", (40, 30))
    save(src, tmp_path / "a.png")
    save(src[:, ::-1].copy(), tmp_path / "b.png")
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": "r", "source": "a.png", "edited": "b.png"}])
    res = run_cli("score", "--pairs", pairs, "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl"))
    assert res.returncode == 0, res.stderr
    assert read_jsonl(tmp_path / "o.jsonl")[0]["scores"]["psnr"] == editmetrics.functional.psnr(
        src[:, ::-1].copy(), src)


def test_declared_defaults_match_the_code():
    from editmetrics.weights import backbones
    from editmetrics.engine import features
    from editmetrics.weights import resolver as weights
    from editmetrics.bpm import grounding, parsing
    from editmetrics.engine.settings import declared

    table = declared()
    assert table["weights_dir"].default == weights.DEFAULT_WEIGHTS_DIR
    assert table["feature_batch_size"].default == features.DEFAULT_CHUNK
    assert table["feature_memory"].default == features.DEFAULT_MEMORY
    assert table["clip"].default == backbones.DEFAULT_SPECS["clip"]
    assert table["dino"].default == backbones.DEFAULT_SPECS["dino"]
    assert table["bpm_llm_prompt"].default == parsing.DEFAULT_PROMPT
    assert table["bpm_grounder"].default == grounding.HFGroundingDinoSam.id
