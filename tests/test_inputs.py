"""Bad and unusual input: every record is in the output once, errors name the field."""

import math

import numpy as np
import pytest
from PIL import Image

from editmetrics import Metric, hookimpl
from editmetrics.data.images import load_image, load_mask
from editmetrics.plugins.registry import Registry

from helpers import photo, read_jsonl, run_cli, save, write_pairs


class InstructionLength(Metric):
    """A test metric that needs the instruction text."""

    id = "instruction_words"
    description = "number of words of the instruction (test metric)"
    higher_is_better = True
    range = (0, None)
    fields = ("instruction",)
    reference = None

    def compute(self, rec):
        return len(rec.get("instruction").split())


def test_conversions_rgba_16bit_palette_gray(tmp_path):
    src = photo("chelsea", (64, 48))
    base = load_image(str(tmp_path / save(src, tmp_path / "rgb.png")))
    # opaque RGBA decodes to the same pixels
    rgba = np.dstack([src, np.full(src.shape[:2], 255, np.uint8)])
    assert np.array_equal(load_image(str(tmp_path / save(rgba, tmp_path / "rgba.png"))), base)
    # transparent pixels are composited over white
    rgba[:, :10, 3] = 0
    comp = load_image(str(tmp_path / save(rgba, tmp_path / "rgba_t.png")))
    assert np.all(comp[:, :10] == 1.0) and np.array_equal(comp[:, 10:], base[:, 10:])
    # 16-bit grayscale equals the 8-bit grayscale it was made from, exactly
    gray8 = np.asarray(Image.fromarray(src).convert("L"))
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    Image.fromarray((gray8.astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    g8, g16 = load_image(str(tmp_path / "g8.png")), load_image(str(tmp_path / "g16.png"))
    assert g16.shape == (48, 64, 3) and g16.dtype == np.float32
    assert np.array_equal(g8, g16)
    # palette image
    Image.fromarray(src).quantize(16).save(tmp_path / "p.png")
    pal = load_image(str(tmp_path / "p.png"))
    assert pal.shape == base.shape and np.abs(pal - base).mean() < 0.05


def test_exif_orientation_is_applied(tmp_path):
    src = photo("astronaut", (80, 48))
    Image.fromarray(src).save(tmp_path / "upright.jpg", quality=98)
    # Store the pixels rotated, with an EXIF tag saying how to turn them upright.
    rotated = Image.fromarray(src).transpose(Image.Transpose.ROTATE_90)  # 48x80 stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer turns the stored pixels 90 degrees clockwise
    rotated.save(tmp_path / "rotated.jpg", quality=98, exif=exif)
    upright, fixed = load_image(str(tmp_path / "upright.jpg")), load_image(str(tmp_path / "rotated.jpg"))
    assert fixed.shape == upright.shape == (48, 80, 3)
    assert np.abs(fixed - upright).mean() < 0.01  # same picture up to JPEG noise


def test_mask_rules(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[5:10, 5:20, 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "m_rgba.png")
    assert np.array_equal(load_mask(str(tmp_path / "m.png")), mask > 0)
    assert np.array_equal(load_mask(str(tmp_path / "m_rgba.png")), mask > 0)


@pytest.fixture()
def messy(tmp_path):
    src = photo("astronaut", (96, 64))
    save(src, tmp_path / "src.png")
    save(np.clip(src.astype(int) + 12, 0, 255).astype(np.uint8), tmp_path / "edited.png")
    save(np.asarray(Image.fromarray(src).resize((120, 80))), tmp_path / "big.png")
    save(np.dstack([src, np.full(src.shape[:2], 255, np.uint8)]), tmp_path / "rgba.png")
    gray8 = np.asarray(Image.fromarray(src).convert("L"))
    save(gray8, tmp_path / "gray8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    Image.fromarray(src).save(tmp_path / "src.jpg", quality=98)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation 8: the viewer turns the stored pixels 90 degrees counter-clockwise
    Image.fromarray(src).transpose(Image.Transpose.ROTATE_270).save(tmp_path / "rot.jpg", quality=98, exif=exif)
    records = [
        {"id": "good", "source": "src.png", "edited": "edited.png", "instruction": "brighten it"},
        {"id": "missing", "source": "src.png", "edited": "nope.png", "instruction": "x"},
        {"id": "corrupt", "source": "corrupt.png", "edited": "edited.png", "instruction": "x"},
        {"id": "size", "source": "src.png", "edited": "big.png", "instruction": "x"},
        {"id": "rgba", "source": "src.png", "edited": "rgba.png", "instruction": "x"},
        {"id": "gray16", "source": "gray8.png", "edited": "gray16.png", "instruction": "x"},
        {"id": "exif", "source": "src.jpg", "edited": "rot.jpg", "instruction": "x"},
        {"id": "empty-instruction", "source": "src.png", "edited": "edited.png", "instruction": ""},
    ]
    return write_pairs(str(tmp_path / "pairs.jsonl"), records), tmp_path


def test_messy_pairs_file_in_process(messy):
    pairs, tmp = messy
    from editmetrics.engine.runner import score_file

    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()

    class TestPlugin:
        @hookimpl
        def register_metrics(self, register):
            register(InstructionLength)

    registry.add(TestPlugin(), "test-plugin")
    out = tmp / "out.jsonl"
    result = score_file(pairs, ["psnr", "ssim", "instruction_words"], str(out), registry=registry, progress=False)
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert list(rows) == ["good", "missing", "corrupt", "size", "rgba", "gray16", "exif", "empty-instruction"]
    assert result.written == 8

    assert rows["good"]["errors"] == {} and rows["good"]["scores"]["instruction_words"] == 2.0
    # missing and corrupt: error names the field and the path; metrics needing it are null
    assert rows["missing"]["errors"]["edited"].startswith("missing file: ")
    assert rows["missing"]["errors"]["edited"].endswith("nope.png")
    assert rows["missing"]["scores"]["psnr"] is None and "'edited'" in rows["missing"]["errors"]["psnr"]
    assert rows["missing"]["scores"]["instruction_words"] == 1.0  # does not need images
    assert "cannot decode image" in rows["corrupt"]["errors"]["source"]
    assert "corrupt.png" in rows["corrupt"]["errors"]["source"]
    assert rows["corrupt"]["scores"]["ssim"] is None
    # size mismatch: default policy resizes, and says so in the record
    assert rows["size"]["errors"] == {} and rows["size"]["scores"]["psnr"] > 20
    assert "resized 120x80 vs reference 96x64" in rows["size"]["warnings"]["edited"]
    # convertible images score as the image they hold
    assert rows["rgba"]["scores"]["psnr"] == math.inf
    assert rows["gray16"]["scores"]["psnr"] == math.inf
    assert rows["exif"]["scores"]["psnr"] > 35 and rows["exif"]["warnings"] == {}  # keys always present
    # an empty instruction only fails metrics that read it
    e = rows["empty-instruction"]
    assert e["scores"]["psnr"] is not None and e["scores"]["instruction_words"] is None
    assert e["errors"] == {"instruction_words": "field 'instruction' is empty in this record"}


def test_messy_pairs_file_cli_exit_status_and_size_policy(messy):
    pairs, tmp = messy
    proc = run_cli("score", "--pairs", pairs, "--metrics", "psnr,ssim@source", "--out", str(tmp / "o.jsonl"))
    assert proc.returncode == 1, proc.stderr
    assert "2 record(s) have errors" in proc.stderr
    rows = read_jsonl(tmp / "o.jsonl")
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    proc = run_cli("score", "--pairs", pairs, "--metrics", "psnr", "--size-policy", "error",
                   "--out", str(tmp / "e.jsonl"))
    size = {r["id"]: r for r in read_jsonl(tmp / "e.jsonl")}["size"]
    assert size["scores"]["psnr"] is None and "size mismatch: 120x80 vs reference 96x64" in size["errors"]["psnr"]


def test_bad_json_line_and_csv(tmp_path):
    src = photo("coffee", (40, 30))
    save(src, tmp_path / "a.png")
    (tmp_path / "p.jsonl").write_text(
        '{"id": 1, "source": "a.png", "edited": "a.png"}\n{not json\n[1, 2]\n', encoding="utf-8")
    proc = run_cli("score", "--pairs", str(tmp_path / "p.jsonl"), "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl"))
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert proc.returncode == 1 and [r["id"] for r in rows] == [1, "line 2", "line 3"]  # unreadable: "line N"
    assert "line 2: invalid JSON" in rows[1]["errors"]["record"] and rows[1]["scores"]["psnr"] is None
    assert "expected a JSON object" in rows[2]["errors"]["record"]
    (tmp_path / "p.csv").write_text("source,edited,instruction,note\na.png,a.png,make it red,hello\n", encoding="utf-8")
    proc = run_cli("score", "--pairs", str(tmp_path / "p.csv"), "--metrics", "psnr", "--out", str(tmp_path / "c.jsonl"),
                   "--csv", str(tmp_path / "c.csv"))
    assert proc.returncode == 0, proc.stderr
    row = read_jsonl(tmp_path / "c.jsonl")[0]
    assert row["id"] == 1 and row["note"] == "hello" and row["scores"]["psnr"] == math.inf
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == "id,category,psnr,errors"


def test_usage_errors_exit_2(tmp_path):
    save(photo("coffee", (40, 30)), tmp_path / "a.png")
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": 1, "source": "a.png", "edited": "a.png"}])
    proc = run_cli("score", "--pairs", pairs, "--metrics", "psnrr", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "did you mean 'psnr'" in proc.stderr
    proc = run_cli("score", "--pairs", str(tmp_path / "none.jsonl"), "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "pairs file not found" in proc.stderr
    proc = run_cli("score", "--pairs", pairs, "--metrics", "ssim(convention=hsv)", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "not one of" in proc.stderr
    dup = write_pairs(str(tmp_path / "d.jsonl"), [{"id": 1, "source": "a.png", "edited": "a.png"}] * 2)
    proc = run_cli("score", "--pairs", dup, "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 2 and "duplicate id '1'" in proc.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_parallel_scoring_keeps_input_order_and_matches_sequential(tmp_path):
    """Thread-safe metrics score several batches at once; rows stay in input order."""
    from editmetrics.engine.runner import InProcessExecutor, RunContext, Scorer, resolve_metrics
    from editmetrics.data.records import EditRecord

    src = photo("rocket", (64, 48))
    save(src, tmp_path / "s.png")
    rng = np.random.default_rng(3)
    records = []
    for i in range(23):
        noisy = np.clip(src + rng.normal(0, 2 + i, src.shape), 0, 255).astype(np.uint8)
        records.append(EditRecord(id=f"r{i}", fields={"source": "s.png", "edited": save(noisy, tmp_path / f"e{i}.png")},
                                  base_dir=str(tmp_path), line=i + 1))
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    scorer = Scorer(resolve_metrics(["psnr", "ssim", "l1"], registry), RunContext())
    assert scorer.thread_safe
    executor = InProcessExecutor(workers=2)
    parallel = list(executor.run(scorer.load, scorer.score, records, 2, parallel_score=True))
    sequential = list(executor.run(scorer.load, scorer.score, records, 2))
    assert [r["id"] for r in parallel] == [f"r{i}" for i in range(23)]
    assert parallel == sequential
    psnr = [r["scores"]["psnr"] for r in parallel]
    assert psnr == sorted(psnr, reverse=True)  # more noise, lower PSNR: order kept


def test_to_uint8_inverts_decoding_exactly():
    from PIL import Image
    from skimage import data

    from editmetrics.data.images import to_float_rgb, to_pil, to_uint8

    photo = data.astronaut()
    decoded = to_float_rgb(Image.fromarray(photo))
    assert np.array_equal(to_uint8(decoded), photo)
    assert to_pil(decoded).mode == "RGB" and np.array_equal(np.asarray(to_pil(decoded)), photo)
    assert to_uint8(np.array([[-0.2, 0.5 / 255, 1.7]])).tolist() == [[0, 0, 255]]  # clipped; half to even
