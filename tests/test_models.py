"""`editmetrics run` / `models`, the run loop, and the cheap baseline models."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from editmetrics.data.images import load_image
from editmetrics.contract.model import ModelError
from editmetrics.plugins.registry import get_registry
from editmetrics.engine.model_runs import record_seed, run_model
from editmetrics.engine.runner import UsageError, read_results, score_file

from helpers import REPO, photo, read_jsonl, run_cli, save, write_pairs

EXAMPLES = os.path.join(REPO, "examples", "pairs.jsonl")


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------------------
# What the issue must show: identity -> inf PSNR, noise -> lower
# ---------------------------------------------------------------------------


def test_identity_then_score_gives_infinite_psnr_and_noise_lower(tmp_path):
    out = tmp_path / "out"
    res = run_cli("run", "identity", "--pairs", EXAMPLES, "--out-dir", str(out))
    assert res.returncode == 0, res.stderr
    res = run_cli("score", "--pairs", str(out / "pairs.jsonl"), "--metrics", "psnr", "--out", str(tmp_path / "s.jsonl"))
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(str(tmp_path / "s.jsonl"))
    assert len(rows) == 5 and all(r["scores"]["psnr"] == float("inf") for r in rows)

    noisy = tmp_path / "noisy"
    assert run_cli("run", "noise", "--pairs", EXAMPLES, "--out-dir", str(noisy)).returncode == 0
    result = score_file(str(noisy / "pairs.jsonl"), ["psnr"], str(tmp_path / "n.jsonl"))
    assert result.failed_records == 0
    psnr = [r["scores"]["psnr"] for r in read_results(str(tmp_path / "n.jsonl"))]
    # sigma = 0.05 Gaussian noise, clipped: close to 10 log10(1 / 0.05^2) = 26 dB, finite
    assert all(25.0 < p < 27.0 for p in psnr), psnr


def test_output_record_layout(tmp_path):
    run_model("identity", EXAMPLES, str(tmp_path), seed=7)
    rows = read_jsonl(str(tmp_path / "pairs.jsonl"))
    inputs = read_jsonl(EXAMPLES)
    assert [r["id"] for r in rows] == [r["id"] for r in inputs]
    for row, rec in zip(rows, inputs):
        assert row["edited"] == f"images/{row['id']}.png"
        # other image fields point at the same files, relative to the output folder
        for name in ("source", "target", "mask"):
            if name in rec:
                assert os.path.samefile(tmp_path / row[name], os.path.join(REPO, "examples", rec[name]))
        assert row["instruction"] == rec["instruction"] and row["category"] == rec["category"]
        run = row["model_run"]
        assert run["model"] == "identity" and run["kind"] == "editor" and run["plugin"] == "baselines"
        assert run["seed"] == 7 and run["record_seed"] == record_seed(7, row["id"])
        np.testing.assert_array_equal(_pixels(tmp_path / row["edited"]), _pixels(tmp_path / row["source"]))


# ---------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------


def test_noise_is_seeded_per_record_independent_of_order(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_model("noise", EXAMPLES, str(a), seed=1)
    run_model("noise", EXAMPLES, str(c), seed=2)
    # the same records in reverse order: each record keeps its own noise
    reversed_pairs = write_pairs(str(tmp_path / "rev.jsonl"), [
        {**r, **{k: os.path.join(REPO, "examples", r[k]) for k in ("source", "target", "edited", "mask") if k in r}}
        for r in reversed(read_jsonl(EXAMPLES))
    ])
    run_model("noise", reversed_pairs, str(b), seed=1)
    for rec in read_jsonl(EXAMPLES):
        name = f"images/{rec['id']}.png"
        same_a, same_b, other = _pixels(a / name), _pixels(b / name), _pixels(c / name)
        np.testing.assert_array_equal(same_a, same_b)
        assert np.abs(same_a.astype(int) - other.astype(int)).mean() > 1.0


def test_noise_sigma_parameter_is_recorded_and_used(tmp_path):
    run_model("noise", EXAMPLES, str(tmp_path / "lo"), assignments={"sigma": "0.01"})
    run_model("noise", EXAMPLES, str(tmp_path / "hi"), assignments={"sigma": "0.2"})
    lo = read_jsonl(str(tmp_path / "lo" / "pairs.jsonl"))[0]
    assert lo["model_run"]["params"] == {"sigma": 0.01}
    src = _pixels(os.path.join(REPO, "examples", "cat.png")).astype(float)
    err_lo = np.abs(_pixels(tmp_path / "lo" / "images" / "cat-blue.png") - src).mean()
    err_hi = np.abs(_pixels(tmp_path / "hi" / "images" / "cat-blue.png") - src).mean()
    assert err_lo < 4 < 20 < err_hi  # 0.01 * 255 * 0.8 ~ 2 vs 0.2 * 255 * 0.8 ~ 40 (less after clipping)


# ---------------------------------------------------------------------------
# Failures, resume
# ---------------------------------------------------------------------------


def _small_set(folder, n=3):
    recs = []
    for i, name in enumerate(["astronaut", "coffee", "chelsea"][:n]):
        recs.append({"id": f"r{i}", "source": save(photo(name, (40, 32)), os.path.join(folder, f"{name}.png")),
                     "instruction": "x"})
    return recs


def test_failures_are_per_record_and_written_once(tmp_path):
    recs = _small_set(str(tmp_path))
    recs.insert(1, {"id": "broken", "source": "nowhere.png", "edited": "old.png"})
    recs.append({"id": "nosource", "instruction": "y"})
    pairs = write_pairs(str(tmp_path / "p.jsonl"), recs)
    res = run_cli("run", "noise", "--pairs", pairs, "--out-dir", str(tmp_path / "o"))
    assert res.returncode == 1 and "2 failed" in res.stdout
    rows = {r["id"]: r for r in read_jsonl(str(tmp_path / "o" / "pairs.jsonl"))}
    assert len(rows) == 5
    assert "missing file" in rows["broken"]["error"] and "edited" not in rows["broken"]  # the old output is dropped
    assert "'source' is missing" in rows["nosource"]["error"]
    assert all("error" not in rows[k] and os.path.isfile(tmp_path / "o" / rows[k]["edited"]) for k in ("r0", "r1", "r2"))
    # the failed records are scored as failures, not as the stale 'old.png'
    score = score_file(str(tmp_path / "o" / "pairs.jsonl"), ["psnr"], str(tmp_path / "s.jsonl"))
    assert score.failed_records == 2


def test_resume_drops_torn_line_and_skips_done(tmp_path):
    recs = _small_set(str(tmp_path))
    pairs = write_pairs(str(tmp_path / "p.jsonl"), recs)
    out = tmp_path / "o"
    run_model("noise", pairs, str(out), seed=3)
    first = (out / "pairs.jsonl").read_text().splitlines(keepends=True)
    # a crash while writing the third row: the run header, two complete rows and a torn one
    (out / "pairs.jsonl").write_text(first[0] + first[1] + first[2] + first[3][:25])
    with pytest.raises(UsageError):
        run_model("noise", pairs, str(out), seed=3)  # never overwrites without --resume
    with pytest.raises(UsageError, match="seed"):
        run_model("noise", pairs, str(out), seed=4, resume=True)  # a different run
    result = run_model("noise", pairs, str(out), seed=3, resume=True)
    assert (result.written, result.skipped) == (1, 2)
    assert (out / "pairs.jsonl").read_text().splitlines(keepends=True) == first


def test_models_command_and_missing_weights_message(tmp_path):
    from editmetrics.engine.model_runs import model_table

    rows = {r["id"]: r for r in model_table(get_registry(), {})}
    assert rows["identity"]["kind"] == "editor" and rows["identity"]["weights_present"] is None
    assert rows["paste_back"]["kind"] == "recoverer" and rows["color_transfer"]["kind"] == "recoverer"
    assert rows["ip2p"]["weights_present"] is False and rows["ip2p"]["weights"][0]["setting"] == "ip2p"
    rows = {r["id"]: r for r in model_table(get_registry(), {"ip2p": str(tmp_path)})}
    assert rows["ip2p"]["weights_present"] is True and rows["ip2p"]["weights"][0]["resolved_path"] == str(tmp_path)
    res = run_cli("models", "--json", "--set", f"magicbrush={tmp_path}")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in json.loads(res.stdout)}
    assert rows["magicbrush"]["weights_present"] is True and rows["ip2p"]["weights_present"] is False

    res = run_cli("run", "magicbrush", "--pairs", EXAMPLES, "--out-dir", str(tmp_path / "o"),
                  env={"EDITMETRICS_MAGICBRUSH": str(tmp_path / "absent")})
    assert res.returncode == 2
    assert "'magicbrush'" in res.stderr and str(tmp_path / "absent") in res.stderr and "--set magicbrush=PATH" in res.stderr


def test_unknown_model_and_parameter_are_usage_errors(tmp_path):
    assert run_cli("run", "identty", "--pairs", EXAMPLES, "--out-dir", str(tmp_path)).returncode == 2
    res = run_cli("run", "noise", "--pairs", EXAMPLES, "--out-dir", str(tmp_path), "--set", "sigma=abc")
    assert res.returncode == 2 and "sigma" in res.stderr


# ---------------------------------------------------------------------------
# Recoverers on a synthetic SPPE-format set
# ---------------------------------------------------------------------------


def _ellipse(w, h, cx, cy, rx, ry):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def _affine_edit(image: np.ndarray, coef: np.ndarray) -> np.ndarray:
    x = image.reshape(-1, 3).astype(float) / 255
    y = np.hstack([x, np.ones((len(x), 1))]) @ coef.T
    return np.clip(np.rint(y * 255), 0, 255).astype(np.uint8).reshape(image.shape)


COLOR_MAP = np.array([[0.8, 0.1, 0.0, 0.05], [0.0, 0.7, 0.1, 0.02], [0.1, 0.0, 0.6, 0.2]])  # a 3x4 "tone" edit


@pytest.fixture(scope="module")
def sppe(tmp_path_factory):
    """Source X, surrogate S (private region replaced by other content), edited
    surrogate S' (a global colour edit plus a local change inside the mask),
    and the private-region mask, as SPPE lays them out."""
    folder = tmp_path_factory.mktemp("sppe")
    recs = []
    for i, (name, other) in enumerate([("astronaut", "coffee"), ("chelsea", "rocket"), ("coffee", "astronaut")]):
        w, h = 80, 64
        x = photo(name, (w, h))
        mask = _ellipse(w, h, 30 + 5 * i, 30, 14, 10)
        s = np.where(mask[..., None], photo(other, (w, h)), x)
        s_edit = _affine_edit(s, COLOR_MAP)
        s_edit[mask] = 255 - s_edit[mask]  # the edit also changes the substituted region
        if i == 2:  # an MLLM returning another size: recoverers align it to X
            s_edit = np.asarray(Image.fromarray(s_edit).resize((120, 96), Image.BICUBIC))
        rec = {"id": f"sppe{i}", "instruction": "make it look warm",
               "source": save(x, str(folder / f"x{i}.png")), "surrogate": save(s, str(folder / f"s{i}.png")),
               "edited_surrogate": save(s_edit, str(folder / f"se{i}.png")),
               "mask": save(mask.astype(np.uint8) * 255, str(folder / f"m{i}.png")),
               "target": save(_affine_edit(x, COLOR_MAP), str(folder / f"t{i}.png"))}
        recs.append(rec)
    return str(folder), write_pairs(str(folder / "pairs.jsonl"), recs), recs


def test_paste_back_is_bit_exact_outside_the_mask(sppe, tmp_path):
    folder, pairs, recs = sppe
    result = run_model("paste_back", pairs, str(tmp_path))
    assert result.failed_records == 0
    rows = read_jsonl(str(tmp_path / "pairs.jsonl"))
    for rec, row in zip(recs, rows):
        # inputs are kept; the recovery is the record's `edited`
        for name in ("source", "surrogate", "edited_surrogate", "mask", "target"):
            assert os.path.samefile(tmp_path / row[name], os.path.join(folder, rec[name]))
        x = _pixels(os.path.join(folder, rec["source"]))
        mask = np.asarray(Image.open(os.path.join(folder, rec["mask"]))) > 0
        recovered = _pixels(tmp_path / row["edited"])
        np.testing.assert_array_equal(recovered[~mask], x[~mask])
        # and exactly the float values editmetrics decodes
        np.testing.assert_array_equal(load_image(str(tmp_path / row["edited"]))[~mask],
                                      load_image(os.path.join(folder, rec["source"]))[~mask])
        s_edit = _pixels(os.path.join(folder, rec["edited_surrogate"]))
        if s_edit.shape == x.shape:
            np.testing.assert_array_equal(recovered[mask], s_edit[mask])
        assert np.abs(recovered[mask].astype(int) - x[mask].astype(int)).mean() > 20


def test_color_transfer_recovers_a_global_colour_edit(sppe, tmp_path):
    folder, pairs, recs = sppe
    run_model("color_transfer", pairs, str(tmp_path / "affine"))
    run_model("paste_back", pairs, str(tmp_path / "paste"))
    run_model("color_transfer", pairs, str(tmp_path / "meanstd"), assignments={"method": "meanstd"})
    for rec in recs:
        target = _pixels(os.path.join(folder, rec["target"])).astype(int)
        affine = _pixels(tmp_path / "affine" / "images" / f"{rec['id']}.png").astype(int)
        paste = _pixels(tmp_path / "paste" / "images" / f"{rec['id']}.png").astype(int)
        meanstd = _pixels(tmp_path / "meanstd" / "images" / f"{rec['id']}.png").astype(int)
        err = np.abs(affine - target)
        # the map is fitted outside the mask, where S = X: X' is A X up to 8-bit rounding
        # (the resized S' of the third record adds bicubic blur)
        assert np.median(err) <= 1 and err.mean() < 3, err.mean()
        assert err.mean() < np.abs(meanstd - target).mean() < np.abs(paste - target).mean()
    row = read_jsonl(str(tmp_path / "affine" / "pairs.jsonl"))[0]
    fitted = np.array(row["model_run"]["info"]["color_map"])
    np.testing.assert_allclose(fitted, COLOR_MAP, atol=0.02)


def test_recoverer_needs_its_inputs(tmp_path):
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [
        {"id": "a", "source": save(photo("coffee", (32, 32)), str(tmp_path / "c.png"))}])
    run_model("paste_back", pairs, str(tmp_path / "o"))
    row = read_jsonl(str(tmp_path / "o" / "pairs.jsonl"))[0]
    assert "edited_surrogate" in row["error"] and "edited" not in row


def test_registered_through_the_hook():
    registry = get_registry()
    for mid in ("identity", "noise", "paste_back", "color_transfer", "ip2p", "magicbrush", "r-sie"):
        cls = registry.get("models", mid)
        assert cls.describe()["kind"] in ("editor", "recoverer")
    with pytest.raises(ModelError, match="not found"):
        registry.get("models", "ip2p")().configure({"ip2p": "/nonexistent/ip2p"}).require_weights()


def test_third_party_assessor_through_a_registry(tmp_path):
    """A model from an outside plugin object: non-image outputs become fields."""
    from types import SimpleNamespace

    from editmetrics import Model, hookimpl
    from editmetrics.plugins.registry import Registry

    class Brightness(Model):
        id = "brightness"
        kind = "assessor"
        description = "mean grey level of the source"
        inputs = ("source",)
        outputs = ("brightness",)

        def predict(self, inputs, seed=None):
            return {"brightness": np.float32(inputs["source"].mean()), "info": {"pixels": inputs["source"].size}}

    plugin = SimpleNamespace(register_models=hookimpl(lambda register: register(Brightness)))
    registry = Registry()
    registry.add(plugin, "outside")
    run_model("brightness", EXAMPLES, str(tmp_path), registry=registry)
    for row, rec in zip(read_jsonl(str(tmp_path / "pairs.jsonl")), read_jsonl(EXAMPLES)):
        source = load_image(os.path.join(REPO, "examples", rec["source"]))
        assert row["brightness"] == pytest.approx(float(source.mean()), rel=1e-6)
        assert row["model_run"]["plugin"] == "outside" and row["model_run"]["info"]["pixels"] == source.size
        assert os.path.samefile(tmp_path / row["edited"], os.path.join(REPO, "examples", rec["edited"]))
