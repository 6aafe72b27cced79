"""Fault injection: a seeded generator of malformed pairs files, hostile
images and faulty metric plugins. Each case runs `editmetrics score`
in-process and must end without a traceback, with exit status 0 or 1, and
with exactly one valid JSON line per input record after the run header.
The fault classes and counts are listed in docs/reliability.md."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import signal
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from editmetrics import Metric, Score, hookimpl
from editmetrics.cli.app import cli
from editmetrics.contract.metric import Param
from editmetrics.plugins.registry import get_registry, reset_registry

from helpers import photo, save

SEED = 11
CASES = 240
RECORDS_PER_CASE = (2, 5)


# ---------------------------------------------------------------------------
# Faulty metrics (registered on the process registry for this module only)
# ---------------------------------------------------------------------------


class _Cycle(dict):
    pass


def _value(kind: str):
    cycle = _Cycle()
    cycle["self"] = cycle
    return {
        "str": "0.5", "dict": {"v": 1}, "list": [1.0], "bool": True, "none": None, "nan": math.nan,
        "inf": math.inf, "complex": 1j, "bigint": 10 ** 400, "npfloat": np.float32(0.25),
        "details_obj": Score(0.5, details={"o": object(), "s": {1, 2}}),
        "details_cycle": Score(0.5, details={"c": cycle}),
        "details_array": Score(0.5, details={"a": np.arange(3)}),
        "components_str": Score(0.5, components={"part": "x"}),
        "score_none": Score(None),
    }[kind]


VALUE_KINDS = ("str", "dict", "list", "bool", "none", "nan", "inf", "complex", "bigint", "npfloat", "details_obj",
               "details_cycle", "details_array", "components_str", "score_none")
RAISE_KINDS = ("compute_raise", "compute_exit", "prepare_raise", "prepare_exit", "setup_raise", "setup_exit",
               "compute_recursion", "compute_memory", "str_of_exception_fails")


class _BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str")


class FaultMetric(Metric):
    id = "fault"
    description = "returns or raises what its `kind` parameter says (tests only)"
    higher_is_better = True
    range = (None, None)
    fields = ("edited",)
    reference = None

    params = {"kind": Param("str", choices=VALUE_KINDS + RAISE_KINDS)}

    def setup(self, ctx):
        kind = self.options["kind"]
        if kind == "setup_raise":
            raise RuntimeError("setup failed on purpose")
        if kind == "setup_exit":
            raise SystemExit(3)

    def prepare(self, rec):
        kind = self.options["kind"]
        if kind == "prepare_raise":
            raise KeyError("prepare")
        if kind == "prepare_exit":
            raise SystemExit("prepare called sys.exit")

    def compute(self, rec):
        kind = self.options["kind"]
        rec.image("edited")
        if kind == "compute_raise":
            raise ValueError("compute failed on purpose")
        if kind == "compute_exit":
            raise SystemExit(1)
        if kind == "compute_recursion":
            raise RecursionError("maximum recursion depth exceeded")
        if kind == "compute_memory":
            raise MemoryError()
        if kind == "str_of_exception_fails":
            raise _BadStr()
        return _value(kind)


class FaultPlugin:
    @hookimpl
    def register_metrics(self, register):
        register(FaultMetric)


@pytest.fixture(scope="module")
def registry():
    reset_registry()
    reg = get_registry()
    reg.add(FaultPlugin(), "faults-test")
    yield reg
    reset_registry()


# ---------------------------------------------------------------------------
# Hostile files
# ---------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: str, side: int) -> None:
    """A real 1-bit PNG of side x side black pixels: tiny on disk, huge decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body)
                 + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def world(tmp_path_factory, registry):
    """One folder of good and hostile image files shared by every case."""
    root = tmp_path_factory.mktemp("faults")
    a = photo("astronaut", (16, 16))
    save(a, str(root / "a.png"))
    save(np.clip(a.astype(int) + 9, 0, 255).astype(np.uint8), str(root / "b.png"))
    save(a[:8, :12], str(root / "small.png"))
    save((a[..., 0] > 100).astype(np.uint8) * 255, str(root / "mask.png"))
    png = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    (root / "random.png").write_bytes(random.Random(0).randbytes(512))
    (root / "header_only.png").write_bytes(png[:33])
    os.mkdir(root / "adir.png")
    os.mkfifo(root / "fifo.png")
    os.symlink("loop.png", root / "loop.png")
    os.symlink(str(root / "a.png"), root / "link.png")
    write_bomb(str(root / "bomb.png"), 20000)  # 400 MP, 6 KiB on disk
    from PIL import Image

    Image.fromarray((a[..., 0].astype(np.uint16) * 257)).save(root / "gray16.png")
    Image.fromarray(a).convert("P").save(root / "palette.png")
    Image.fromarray(a).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(a).save(root / "anim.gif", save_all=True, append_images=[Image.fromarray(a[::-1])])
    Image.fromarray(a).convert("LA").save(root / "la.png")
    Image.new("F", (16, 16), 2.5).save(root / "float.tif")
    Image.new("RGB", (1, 1)).save(root / "one.png")
    return root


GOOD_IMAGES = ["a.png", "b.png", "small.png", "link.png", "gray16.png", "palette.png", "cmyk.jpg", "anim.gif",
               "la.png", "float.tif", "one.png"]
BAD_IMAGES = ["nope.png", "truncated.png", "empty.png", "text.png", "random.png", "header_only.png", "adir.png",
              "fifo.png", "loop.png", "bomb.png", "/dev/zero", "/dev/null", "x" * 5000 + ".png", "a\x00.png",
              "\udc80.png", "\ud800.png", 12, [1, 2], {"p": 1}, True, "~nobody/none.png", "../../../../etc/shadow"]
HOSTILE_TEXT = ["\ud800", "caf\u00e9 \U0001F600", "\x00nul", "a" * 100_000, "<script>alert(1)</script>",
                "\u202eevil", "line\nbreak", "tab\there", "'\";--", "\udcff\udc80"]


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


class Case:
    def __init__(self, number: int, fmt: str):
        self.number = number
        self.fmt = fmt
        self.records = 0
        self.classes: list[str] = []
        self.metrics = ["psnr"]
        self.settings: list[str] = []


def _record(rng: random.Random, case: Case, index: int) -> dict:
    rec = {"id": f"c{case.number}-r{index}", "source": rng.choice(GOOD_IMAGES), "edited": rng.choice(GOOD_IMAGES)}
    roll = rng.random()
    if roll < 0.35:
        field = rng.choice(["source", "edited", "mask", "target"])
        rec[field] = rng.choice(BAD_IMAGES)
        case.classes.append("image:" + _image_class(rec[field]))
    elif roll < 0.55:
        field = rng.choice(["instruction", "category", "id", "note"])
        value = rng.choice(HOSTILE_TEXT)
        rec[field] = value if field != "id" else f"{rec['id']}{value[:50]}"
        case.classes.append("text:" + field)
    elif roll < 0.65:
        rec["nested"] = json.loads("[" * 200 + "]" * 200)
        rec["big"] = 1e308 * 10 if rng.random() < 0.5 else -(2 ** 70)
        case.classes.append("value:nested/huge")
    elif roll < 0.72:
        rec[rng.choice(["scores", "errors", "warnings", "details"])] = {}
        case.classes.append("field:reserved")
    elif roll < 0.78:
        rec["id"] = rng.choice([None, [1], {"a": 1}, True])
        case.classes.append("id:not-scalar")
    return rec


def _image_class(value) -> str:
    if not isinstance(value, str):
        return "path-not-string"
    name = value if len(value) < 40 else "long-name"
    return {"fifo.png": "fifo", "/dev/zero": "device", "/dev/null": "device", "bomb.png": "bomb",
            "adir.png": "directory", "loop.png": "symlink-loop", "nope.png": "missing",
            "long-name": "name-too-long"}.get(name, "undecodable-or-odd-path")


def _jsonl_line(rng: random.Random, case: Case, index: int) -> bytes:
    """One record's line: a hostile record, or a line-level fault."""
    roll = rng.random()
    if roll < 0.06:
        case.classes.append("line:invalid-utf8")
        return b'{"id": "x' + bytes([rng.choice([0xff, 0xc3, 0xed, 0x80])]) + b'", "edited": "a.png"}'
    if roll < 0.11:
        case.classes.append("line:truncated-json")
        return b'{"id": "t' + str(index).encode() + b'", "edited": "a.p'
    if roll < 0.15:
        case.classes.append("line:not-an-object")
        return rng.choice([b"[1, 2]", b"42", b'"text"', b"null", b"true"])
    if roll < 0.19:
        case.classes.append("line:5000-digit-integer")
        return b'{"id": "big%d", "source": "a.png", "edited": "b.png", "n": ' % index + b"9" * 5000 + b"}"
    if roll < 0.23:
        case.classes.append("line:deep-nesting")
        return b'{"id": "deep%d", "x": ' % index + b"[" * 100_000 + b"]" * 100_000 + b"}"
    if roll < 0.26:
        case.classes.append("line:nul-byte")
        return b'{"id": "n%d",\x00 "edited": "a.png"}' % index
    if roll < 0.29:
        case.classes.append("line:lone-surrogate-escape")
        return b'{"id": "s%d\\ud800", "source": "a.png", "edited": "\\udc80b.png", "category": "\\udfff"}' % index
    rec = _record(rng, case, index)
    return json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def make_jsonl(rng: random.Random, case: Case, folder) -> str:
    lines = []
    if rng.random() < 0.2:
        lines.append(b"\xef\xbb\xbf")
        case.classes.append("file:bom")
    n = rng.randint(*RECORDS_PER_CASE)
    for i in range(n):
        if rng.random() < 0.1:
            lines.append(rng.choice([b"\n", b"   \n", b"\r\n"]))  # blank lines are not records
        lines.append(_jsonl_line(rng, case, i) + (b"\r\n" if rng.random() < 0.1 else b"\n"))
    if rng.random() < 0.2:
        lines[-1] = lines[-1].rstrip(b"\r\n")  # no newline at the end of the file
        case.classes.append("file:no-final-newline")
    case.records = n
    path = os.path.join(folder, f"case{case.number}.jsonl")
    with open(path, "wb") as fh:
        fh.write(b"".join(lines))
    return path


def make_csv(rng: random.Random, case: Case, folder) -> str:
    n = rng.randint(*RECORDS_PER_CASE)
    columns = ["id", "source", "edited", "instruction", "category"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if rng.random() < 0.3 else "\n")
    writer.writerow(columns)
    for i in range(n):
        row = [f"c{case.number}-r{i}", rng.choice(GOOD_IMAGES), rng.choice(GOOD_IMAGES), "make it red", "local"]
        roll = rng.random()
        if roll < 0.15:
            row[4] = "x" * 200_000
            case.classes.append("csv:cell-over-field-limit")
        elif roll < 0.3:
            row[3] = "@@BADBYTES@@"
            case.classes.append("csv:invalid-utf8")
        elif roll < 0.4:
            row = row + ["extra", "cells"]
            case.classes.append("csv:ragged-long")
        elif roll < 0.5:
            row = row[:2]
            case.classes.append("csv:ragged-short")
        elif roll < 0.6:
            row[2] = rng.choice([v for v in BAD_IMAGES if isinstance(v, str) and "\x00" not in v
                                 and "\ud800" not in v and "\udc80" not in v])
            case.classes.append("image:" + _image_class(row[2]))
        elif roll < 0.68:
            row[3] = "[" * 5000 + "]" * 5000
            case.classes.append("csv:deep-json-cell")
        elif roll < 0.74:
            row[4] = "a\x00b"
            case.classes.append("csv:nul")
        elif roll < 0.8:
            row[0] = ""  # no id: the row number
            case.classes.append("csv:empty-id")
        writer.writerow(row)
    data = buffer.getvalue().encode("utf-8").replace(b"@@BADBYTES@@", b"caf\xe9 \xff")
    if rng.random() < 0.25:
        data = b"\xef\xbb\xbf" + data
        case.classes.append("file:bom")
    case.records = n
    path = os.path.join(folder, f"case{case.number}.csv")
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def generate(seed: int = SEED, count: int = CASES):
    """(case, writer) pairs; ``writer(folder)`` writes the case's pairs file."""
    rng = random.Random(seed)
    for number in range(count):
        case = Case(number, "csv" if rng.random() < 0.3 else "jsonl")
        roll = rng.random()
        if roll < 0.3:
            kind = rng.choice(VALUE_KINDS + RAISE_KINDS)
            case.metrics.append(f"fault(kind={kind})")
            case.classes.append("metric:" + kind)
        if rng.random() < 0.15:
            case.settings = ["--set", "max_pixels=" + rng.choice(["200", "1000000000000"])]
            case.classes.append("setting:max_pixels")
        case_rng = random.Random(rng.random())
        if case.fmt == "csv":
            yield case, (lambda folder, c=case, r=case_rng: make_csv(r, c, folder))
        else:
            yield case, (lambda folder, c=case, r=case_rng: make_jsonl(r, c, folder))


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def check_output(out: str, case: Case) -> list[dict]:
    raw = open(out, "rb").read()
    assert raw.endswith(b"\n")
    text = raw.decode("utf-8")  # valid UTF-8 (ensure_ascii: in fact ASCII)
    lines = text.split("\n")[:-1]
    header = json.loads(lines[0])
    assert list(header) == ["editmetrics_run"]
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == case.records, (len(rows), case.records)
    assert len({str(r["id"]) for r in rows}) == len(rows)
    keys = [m.replace(" ", "") for m in case.metrics]
    for row in rows:
        assert set(row) >= {"id", "scores", "errors", "warnings", "details"}
        for key in keys:
            value = row["scores"][key]
            assert value is None or isinstance(value, float)
            if value is None:
                assert key in row["errors"] and row["errors"][key]
    return rows


def test_fault_injection(world, tmp_path, registry):
    runner = CliRunner()
    tally: Counter = Counter()
    outcomes: Counter = Counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case, write in generate():
            pairs = write(str(world))
            out = str(tmp_path / f"out{case.number}.jsonl")
            args = ["score", "--pairs", pairs, "--metrics", ",".join(case.metrics), "--out", out, "--no-progress",
                    *case.settings]
            if case.number % 4 == 0:
                args += ["--csv", str(tmp_path / f"t{case.number}.csv"),
                         "--summary-json", str(tmp_path / f"s{case.number}.json")]
            signal.alarm(20)  # a FIFO or /dev/zero opened by mistake would block forever
            try:
                result = runner.invoke(cli, args, catch_exceptions=True)
            finally:
                signal.alarm(0)
            detail = f"case {case.number} {case.classes}: {result.output[-2000:]}"
            assert result.exception is None or isinstance(result.exception, SystemExit), \
                f"{detail}\n{result.exc_info}"
            assert "Traceback" not in result.output, detail
            assert result.exit_code in (0, 1), detail
            rows = check_output(out, case)
            if case.number % 4 == 0:
                assert open(tmp_path / f"t{case.number}.csv", "rb").read().decode("utf-8")
                json.loads((tmp_path / f"s{case.number}.json").read_text())
            outcomes[result.exit_code] += 1
            for name in set(case.classes) or {"clean"}:
                tally[name] += 1
            assert sum(1 for r in rows if r["errors"]) == 0 or result.exit_code == 1
            os.remove(pairs)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert sum(outcomes.values()) == CASES >= 200
    # every fault class of the generator was drawn at least once
    assert len([k for k in tally if k.startswith("metric:")]) >= 15
    assert {"image:fifo", "image:device", "image:bomb", "line:invalid-utf8", "line:deep-nesting",
            "line:5000-digit-integer", "csv:cell-over-field-limit", "csv:invalid-utf8", "file:bom"} <= set(tally)
    if os.environ.get("EDITMETRICS_FAULT_TABLE"):  # the table of docs/reliability.md
        with open(os.environ["EDITMETRICS_FAULT_TABLE"], "w", encoding="utf-8") as fh:
            json.dump({"cases": CASES, "outcomes": dict(outcomes), "classes": dict(sorted(tally.items()))}, fh,
                      indent=1)
