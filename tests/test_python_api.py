"""The in-memory Python API (docs/python-api.md): arrays, PIL images, tensors,
equality with the CLI, Results, functional; the doc's code blocks run."""

import os
import re

import numpy as np
import pytest
from PIL import Image

import editmetrics
from editmetrics import Metric, MetricError, Score, functional as F, hookimpl
from editmetrics.plugins.registry import Registry

from helpers import REPO, photo, read_jsonl, run_cli, save, write_pairs


@pytest.fixture(scope="module")
def images():
    source = photo("astronaut", (64, 48)).copy()
    rng = np.random.default_rng(1)
    edited = np.clip(source + rng.normal(0, 10, source.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(source.shape[:2], bool)
    mask[10:30, 20:50] = True
    return source, edited, mask


def test_load_metric_equals_the_cli_for_every_kind_of_value(images, tmp_path):
    torch = pytest.importorskip("torch")
    source, edited, mask = images
    save(source, tmp_path / "s.png")
    save(edited, tmp_path / "e.png")
    save((mask * 255).astype(np.uint8), tmp_path / "m.png")
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": "r", "source": "s.png", "edited": "e.png",
                                                     "mask": "m.png"}])
    specs = ["psnr", "ssim", "l1(region=inside)", "ssim(convention=rgb,region=outside)"]
    proc = run_cli("score", "--pairs", pairs, "--metrics", ",".join(specs), "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 0, proc.stderr
    cli = read_jsonl(tmp_path / "o.jsonl")[0]["scores"]
    as_values = {
        "numpy uint8": (edited, source, mask),
        "PIL": (Image.fromarray(edited), Image.fromarray(source), Image.fromarray(mask)),
        "tensor CHW float": (torch.from_numpy(edited).permute(2, 0, 1).float() / 255,
                             torch.from_numpy(source).permute(2, 0, 1).float() / 255, torch.from_numpy(mask)),
        "tensor HWC float": (torch.from_numpy(edited).float() / 255, torch.from_numpy(source).float() / 255,
                             mask.astype(np.uint8)),
        "numpy float": (edited.astype(np.float32) / 255, source.astype(np.float32) / 255, mask),
        "paths": (str(tmp_path / "e.png"), str(tmp_path / "s.png"), str(tmp_path / "m.png")),
    }
    for spec in specs:
        fn = editmetrics.load_metric(spec)
        for label, (e, s, m) in as_values.items():
            assert fn(edited=e, source=s, mask=m) == cli[spec], (spec, label)


def test_gray_images_and_bad_values(images):
    source, edited, _ = images
    psnr = editmetrics.load_metric("psnr")
    gray = np.asarray(Image.fromarray(source).convert("L"))
    # an HxW array is a grayscale image, replicated to three channels like an L-mode file
    assert psnr(edited=gray, source=np.repeat(gray[..., None], 3, axis=2)) == float("inf")
    with pytest.raises(MetricError, match=r"float images must hold values in \[0, 1\]"):
        psnr(edited=edited.astype(np.float32), source=source)
    with pytest.raises(MetricError, match="field 'source' is missing"):
        psnr(edited=edited)
    with pytest.raises(MetricError, match="expected an image of shape"):
        psnr(edited=np.zeros((4, 4, 5), np.uint8), source=source)


class Parts(Metric):
    """Reports components and keeps per-record state between prepare and compute."""

    id = "api_parts"
    description = "test"
    higher_is_better = True
    range = (0, None)
    reference = None
    fields = ("edited",)

    def setup(self, ctx):
        self.pending = {}

    def prepare(self, rec):
        self.pending[rec.uid] = float(rec.image("edited").mean())

    def compute(self, rec):
        mean = self.pending.pop(rec.uid)
        return Score(mean, components={"double": 2 * mean}, details={"uid": rec.uid})


def registry_with(*classes):
    registry = Registry()
    registry.load_builtins()

    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            for cls in classes:
                register(cls)

    registry.add(Plugin(), "api-test")
    assert registry.plugins["api-test"].error is None, registry.plugins["api-test"].error
    return registry


def test_score_with_components_and_duplicate_ids(images):
    source, edited, _ = images
    registry = registry_with(Parts)
    fn = editmetrics.load_metric("api_parts", registry=registry)
    result = fn(edited=edited)
    assert isinstance(result, Score) and result.components["double"] == pytest.approx(2 * result.value)
    # two records with one id: each keeps its own value (state keyed by rec.uid, not rec.id)
    dark, bright = np.zeros_like(source), np.full_like(source, 255)
    rows = editmetrics.score([{"id": "x", "edited": dark}, {"id": "x", "edited": bright}], ["api_parts"],
                             registry=registry)
    assert [r["scores"]["api_parts"] for r in rows] == [0.0, 1.0]
    assert rows[0]["edited"].startswith("<ndarray 48x64x3")


def test_results_table_and_pandas(images):
    source, edited, mask = images
    results = editmetrics.score([{"id": "a", "source": source, "edited": edited, "category": "c"},
                                 {"id": "b", "source": source, "edited": source}], "psnr,l2(region=inside)")
    table = results.table()
    assert table[0]["id"] == "a" and table[0]["category"] == "c" and "psnr" in table[0]
    assert "region=inside needs a 'mask'" in table[0]["errors"]
    pd = pytest.importorskip("pandas")
    frame = results.to_pandas()
    assert isinstance(frame, pd.DataFrame) and frame.loc["b", "psnr"] == float("inf")


def test_functional_matches_load_metric(images):
    source, edited, mask = images
    assert F.psnr(edited, source) == editmetrics.load_metric("psnr")(edited=edited, source=source)
    assert F.ssim(edited, source, convention="rgb") == editmetrics.load_metric("ssim(convention=rgb)")(
        edited=edited, source=source)
    assert F.l1(edited, source, mask=mask, region="outside") == editmetrics.load_metric("l1(region=outside)")(
        edited=edited, source=source, mask=mask)
    assert F.metric("l2", edited=edited, source=source) == F.l2(edited, source)


def test_score_records_takes_arrays(images):
    """The original bug: numpy arrays in score_records raised 'truth value ... ambiguous'."""
    source, edited, _ = images
    row = editmetrics.score_records([{"source": source, "edited": edited}], ["psnr"])[0]
    assert row["errors"] == {} and row["scores"]["psnr"] > 20


def test_python_api_doc_examples_run(tmp_path, capsys):
    pytest.importorskip("pandas")
    pytest.importorskip("torch")
    with open(os.path.join(REPO, "docs", "python-api.md"), encoding="utf-8") as fh:
        blocks = re.findall(r"```python\n(.*?)```", fh.read(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/python-api.md block {i + 1}", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    assert "did you mean 'feature_batch_size'" in capsys.readouterr().out
