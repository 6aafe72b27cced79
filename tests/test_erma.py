"""ERMA: relational vector, training (cached features, seeds, early stopping,
checkpoint format), prediction as metric and model, backbone guard."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as st

from editmetrics.cli import app as cli_module
from editmetrics.engine.features import FeatureStore
from editmetrics.contract.metric import MetricError
from editmetrics.engine.runner import read_results, score_records
from editmetrics.sppe.erma import ErmaAssessor, layout, load_checkpoint, relational
from editmetrics.sppe.synthetic import make_synthetic
from editmetrics.sppe.train import TrainOptions, fit_head, train_erma


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = make_synthetic(str(out), photos=8, surrogates=2, instructions=2, size=64, seed=1)
    return out, summary["clip"]


@pytest.fixture(scope="module")
def ckpt(synth, tmp_path_factory):
    out, spec = synth
    folder = tmp_path_factory.mktemp("ckpt") / "erma"
    result = train_erma(str(out / "train.jsonl"), str(folder), {"clip": spec},
                        TrainOptions(epochs=40, patience=10, hidden=32, progress=False))
    return folder, result


def test_relational_vector_layout_and_identities():
    rng = np.random.default_rng(0)
    fx, fs, ft = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in rng.normal(size=(3, 5, 8)))
    z = relational(fx, fs, ft)
    widths = [w for _, w in layout(8)]
    assert z.shape == (5, sum(widths)) == (5, 6 * 8 + 3)
    parts = np.split(z, np.cumsum(widths)[:-1], axis=1)
    names = [n for n, _ in layout(8)]
    got = dict(zip(names, parts))
    assert np.allclose(got["f_x*f_s"], fx * fs) and np.allclose(got["f_x-f_s"], fx - fs)
    assert np.allclose(got["|f_x-f_s|"], np.abs(fx - fs)) and np.allclose(got["f_t"], ft)
    assert np.allclose(got["cos(x,t)"][:, 0], (fx * ft).sum(1)) and np.allclose(got["cos(x,s)"][:, 0], (fx * fs).sum(1))
    same = relational(fx, fx, ft)
    assert np.allclose(same[:, 24:40], 0) and np.allclose(same[:, -1], 1.0, atol=1e-6)


def test_training_is_seeded_and_early_stops():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 51)).astype(np.float32)
    y = (1 / (1 + np.exp(-z[:, 0]))).astype(np.float32)
    opts = TrainOptions(epochs=60, patience=5, hidden=16, seed=3, progress=False)
    a, rec_a = fit_head(z, y, opts)
    b, rec_b = fit_head(z, y, opts)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy())
    assert rec_a == rec_b and rec_a["n_val"] == 8 and rec_a["n_train"] == 32
    assert rec_a["epochs_run"] <= 60 and rec_a["best_epoch"] <= rec_a["epochs_run"]
    if rec_a["epochs_run"] < 60:
        assert rec_a["epochs_run"] - rec_a["best_epoch"] == 5  # stopped after `patience` stale epochs


def test_checkpoint_records_backbone_and_layout(ckpt, synth):
    folder, result = ckpt
    _, spec = synth
    config = json.loads((folder / "erma.json").read_text())
    assert config["backbone"]["spec"] == spec and config["backbone"]["embed_dim"] == 32
    assert config["feature_layout"] == layout(32)
    assert (folder / "erma.safetensors").is_file()
    assert result.n_train + result.n_val == 16  # 4 training photos x 2 surrogates x 2 instructions
    assert load_checkpoint(str(folder)).spec == spec


def test_epochs_do_not_re_encode(synth, tmp_path):
    out, spec = synth
    counts = []
    for epochs in (2, 30):
        res = train_erma(str(out / "train.jsonl"), str(tmp_path / f"e{epochs}"), {"clip": spec},
                         TrainOptions(epochs=epochs, patience=100, hidden=8, progress=False))
        counts.append(res.feature_stats["images_encoded"])
    # 4 distinct sources + 8 surrogates, however many epochs
    assert counts[0] == counts[1] == 12


def test_metric_equals_head_on_store_features_and_model_agrees(ckpt, synth):
    folder, _ = ckpt
    out, spec = synth
    records = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    rows = score_records(records, ["erma"], settings={"erma": str(folder), "clip": spec})
    assert all(r["errors"] == {} for r in rows)
    values = np.array([r["scores"]["erma"] for r in rows])
    assert np.all((values >= 0) & (values <= 1))
    from editmetrics.data.images import load_image

    store = FeatureStore({"clip": spec})
    head = load_checkpoint(str(folder))
    fx = store.encode_images(spec, [load_image(r["source"]) for r in records])
    fs = store.encode_images(spec, [load_image(r["surrogate"]) for r in records])
    ft = store.encode_texts(spec, [r["instruction"] for r in records])
    assert np.allclose(values, head.predict(relational(fx, fs, ft)), atol=1e-6)
    assert ErmaAssessor(checkpoint=str(folder)).weights_present() is True
    assert ErmaAssessor().weights_present() is False
    model = ErmaAssessor().configure({"erma": str(folder), "clip": spec})  # as `editmetrics run erma --set erma=DIR`
    model.load()
    got = model.predict({"source": load_image(records[0]["source"]), "surrogate": load_image(records[0]["surrogate"]),
                         "instruction": records[0]["instruction"]})
    assert abs(got["editability"] - values[0]) < 1e-6


def test_other_backbone_is_refused_and_missing_checkpoint_is_clear(ckpt, synth, tmp_path):
    folder, _ = ckpt
    out, spec = synth
    rec = json.loads((out / "test.jsonl").read_text().splitlines()[0])
    row = score_records([rec], ["erma"], settings={"erma": str(folder), "clip": "ViT-B-32:/nowhere/b32.safetensors"})[0]
    assert "trained on CLIP backbone" in row["errors"]["erma"] and spec in row["errors"]["erma"]
    with pytest.raises(MetricError, match="trained on CLIP backbone"):
        ErmaAssessor(checkpoint=str(folder)).load(settings={"clip": "ViT-B-32:openai"})
    row = score_records([rec], ["erma", "editability_label"], settings={"erma": str(tmp_path), "clip": spec})[0]
    assert "erma.json" in row["errors"]["erma"] and str(tmp_path) in row["errors"]["erma"]
    assert 0 <= row["scores"]["editability_label"] <= 1  # the other metric is still scored
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((folder / "erma.json").read_text())
    config["feature_layout"] = config["feature_layout"][:-1]
    (bad / "erma.json").write_text(json.dumps(config))
    (bad / "erma.safetensors").write_bytes((folder / "erma.safetensors").read_bytes())
    with pytest.raises(MetricError, match="feature layout"):
        load_checkpoint(str(bad))


def test_cli_train_score_correlate(synth, tmp_path):
    out, spec = synth
    cli_module._add_plugin_commands()
    runner = CliRunner()
    ck = tmp_path / "ck"
    res = runner.invoke(cli_module.cli, ["train", "erma", "--pairs", str(out / "train.jsonl"), "--out", str(ck),
                                         "--config", str(out / "editmetrics.toml"), "--epochs", "20",
                                         "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "ERMA checkpoint written" in res.output
    again = runner.invoke(cli_module.cli, ["train", "erma", "--pairs", str(out / "train.jsonl"), "--out", str(ck),
                                           "--config", str(out / "editmetrics.toml"), "--no-progress"])
    assert again.exit_code == 2  # never overwrites a checkpoint
    results = tmp_path / "res.jsonl"
    res = runner.invoke(cli_module.cli, ["score", "--pairs", str(out / "test.jsonl"), "--metrics",
                                         "erma,lpips(image=surrogate)", "--erma", str(ck), "--config",
                                         str(out / "editmetrics.toml"), "--out", str(results),
                                         "--set", f"iqa_weights={tmp_path}"])
    assert res.exit_code == 1  # lpips has no weights here: recorded per record, erma scored
    rows = list(read_results(str(results)))
    assert all(r["scores"]["erma"] is not None and "alexnet-owt-7be5be79.pth" in r["errors"]["lpips(image=surrogate)"]
               for r in rows)
    res = runner.invoke(cli_module.cli, ["correlate", str(results), "--label", "editability_label", "--json",
                                         "--metrics", "erma", "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    (out_row,) = json.loads(res.output)
    x = [r["scores"]["erma"] for r in rows]
    y = [r["editability_label"] for r in rows]
    assert out_row["n"] == len(rows) == 16
    assert abs(out_row["srcc"] - st.spearmanr(x, y).statistic) < 1e-9
    assert abs(out_row["plcc"] - st.pearsonr(x, y).statistic) < 1e-9
    assert abs(out_row["krcc"] - st.kendalltau(x, y).statistic) < 1e-9


def test_unusable_training_records_are_skipped_with_reasons(synth, tmp_path):
    out, spec = synth
    lines = (out / "train.jsonl").read_text().splitlines()
    broken = dict(json.loads(lines[0]), id="broken", surrogate=str(tmp_path / "gone.png"))
    nolabel = {k: v for k, v in json.loads(lines[1]).items() if k not in ("editability_label", "edited_surrogate")}
    nolabel["id"] = "nolabel"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(lines + [json.dumps(broken), json.dumps(nolabel)]) + "\n")
    res = train_erma(str(pairs), str(tmp_path / "ck"), {"clip": spec},
                     TrainOptions(epochs=2, hidden=8, progress=False))
    assert res.n_train + res.n_val == 16
    assert "gone.png" in res.skipped["broken"] and "label" in res.skipped["nolabel"]


def test_missing_labels_are_computed_with_the_same_clip(synth, tmp_path):
    from editmetrics.sppe.train import training_set

    out, spec = synth
    stored = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    pairs = tmp_path / "nolabels.jsonl"
    pairs.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "editability_label"}) + "\n"
                             for r in stored))
    store = FeatureStore({"clip": spec})
    _, y, ids, skipped = training_set(str(pairs), {"clip": spec}, store, spec, TrainOptions(progress=False))
    want = {r["id"]: r["editability_label"] for r in stored}
    assert not skipped and np.allclose(y, [want[i] for i in ids], atol=1e-6)


def test_label_range_is_checked_and_cosine_map_offered():
    from editmetrics.sppe.train import map_labels

    ok = {"a": 0.0, "b": 0.4, "c": 1.0}
    assert map_labels(ok, TrainOptions()) == ok
    raw = {"a": -0.5, "b": 0.2, "c": 1.0}
    with pytest.raises(MetricError, match=r"1 of 3 stored 'editability_label' values lie outside \[0, 1\]") as exc:
        map_labels(raw, TrainOptions())
    for part in ("section 4.3", "(1 + c) / 2", "--label-map cosine"):
        assert part in str(exc.value)
    assert map_labels(raw, TrainOptions(label_map="cosine")) == {"a": 0.25, "b": 0.6, "c": 1.0}
    with pytest.raises(MetricError, match=r"outside \[-1, 1\]"):
        map_labels({"a": 1.5, "b": 0.0}, TrainOptions(label_map="cosine"))
    assert map_labels({"a": 1.0 + 1e-9}, TrainOptions()) == {"a": 1.0}  # rounding, not a range error


def test_cli_refuses_raw_cosine_labels_and_maps_them_on_request(synth, tmp_path):
    out, spec = synth
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    for r in rows:
        r["editability_label"] = 2 * r["editability_label"] - 1  # back to the raw cosine c
    rows[0]["editability_label"] = -0.25  # a surrogate whose edit went the other way
    pairs = tmp_path / "raw.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli_module._add_plugin_commands()
    runner = CliRunner()
    args = ["train", "erma", "--pairs", str(pairs), "--config", str(out / "editmetrics.toml"), "--epochs", "2",
            "--hidden", "8", "--no-progress"]
    res = runner.invoke(cli_module.cli, args + ["--out", str(tmp_path / "refused")])
    assert res.exit_code == 1 and "section 4.3" in res.output and "--label-map cosine" in res.output
    assert not (tmp_path / "refused" / "erma.json").exists()
    res = runner.invoke(cli_module.cli, args + ["--out", str(tmp_path / "ck"), "--label-map", "cosine"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "ck" / "erma.json").read_text())
    assert config["training"]["label_map"] == "cosine"
