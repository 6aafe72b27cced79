"""Trustworthy results (docs/reliability.md): provenance header, safe resume,
one writer, outputs never onto inputs, I/O failures, signals, plugin warnings."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from click.testing import CliRunner

from editmetrics.cli.app import cli
from editmetrics.engine.results import (ResultsFileError, ResultsWriter, check_paths, read_results, read_run,
                                 score_affecting_settings)
from editmetrics.engine.runner import score_file

from helpers import CLI, default_sigint, photo, read_jsonl, run_cli, save, write_pairs


def make_pairs(folder, n=6, name="pairs.jsonl", shift=0):
    src = photo("astronaut", (32, 32))
    save(src, os.path.join(folder, "src.png"))
    records = []
    for i in range(n):
        edited = np.clip(src.astype(int) + i + 1 + shift, 0, 255).astype(np.uint8)
        records.append({"id": f"r{i}", "source": "src.png", "edited": save(edited, os.path.join(folder, f"e{i}{shift}.png")),
                        "category": "a" if i % 2 else "b"})
    return write_pairs(os.path.join(folder, name), records)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# -- provenance -------------------------------------------------------------


def test_header_carries_provenance(tmp_path):
    pairs = make_pairs(str(tmp_path))
    out = str(tmp_path / "o.jsonl")
    res = invoke("score", "--pairs", pairs, "--metrics", "psnr,ssim", "--out", out, "--set", "clip=ViT-B-32:" + pairs,
                 "--set", "feature_cache=/tmp/x", "--batch-size", "3")
    assert res.exit_code == 0, res.output
    header, rows = read_run(out)
    assert header["kind"] == "score" and header["metrics"] == ["psnr", "ssim"]
    assert header["pairs"]["records"] == 6 and len(header["pairs"]["sha256"]) == 64
    assert header["settings"]["clip"].startswith("ViT-B-32:") and "feature_cache" not in header["settings"]
    assert header["settings"]["size_policy"] == "resize" and header["settings"]["max_pixels"] == 100_000_000
    assert "batch_size" not in header["settings"]  # executors and batch sizes never split a run
    assert header["weights"]["clip"]["fingerprint"]  # the path after ARCH: is fingerprinted
    assert header["metric_plugins"]["psnr"]["plugin"] == "pixel" and header["editmetrics_version"]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(6)]
    # the end-of-run message and every reader skip the header
    assert "6 records in" in res.output


def test_score_affecting_settings_registry_hook():
    class Declared:
        def __init__(self, affects):
            self.affects_scores = affects

    registry = {"threads": Declared(False), "clip": Declared(True)}
    kept = score_affecting_settings({"threads": 4, "clip": "a", "workers": 2, "other": 1}, registry)
    assert kept == {"clip": "a", "other": 1}


# -- resume ----------------------------------------------------------------


def test_resume_refuses_another_run(tmp_path):
    pairs = make_pairs(str(tmp_path))
    other = make_pairs(str(tmp_path), name="model_b.jsonl", shift=5)
    out = str(tmp_path / "o.jsonl")
    assert invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", out).exit_code == 0
    before = open(out, "rb").read()
    cases = [
        (["--pairs", other, "--metrics", "psnr"], "pairs file content"),
        (["--pairs", pairs, "--metrics", "ssim"], "metric specs"),
        (["--pairs", pairs, "--metrics", "psnr", "--clip", "ViT-L-14:openai"], "'clip' is unset in the file"),
        (["--pairs", pairs, "--metrics", "psnr", "--size-policy", "error"], "'size_policy'"),
    ]
    for args, expected in cases:
        res = CliRunner().invoke(cli, ["score", *args, "--out", out, "--resume"])
        assert res.exit_code == 2 and expected in res.output and "holds another run" in res.output, res.output
        assert open(out, "rb").read() == before
    # the same run resumes even with another batch size
    res = invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", out, "--resume", "--batch-size", "2")
    assert res.exit_code == 0 and "(0 scored now, 6 already there)" in res.output
    # without --resume: refused; --overwrite starts again
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "ssim", "--out", out])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = invoke("score", "--pairs", pairs, "--metrics", "ssim", "--out", out, "--overwrite")
    assert res.exit_code == 0 and read_run(out)[0]["metrics"] == ["ssim"] and len(list(read_results(out))) == 6


def test_torn_last_line_repaired_corrupt_middle_line_refused(tmp_path):
    pairs = make_pairs(str(tmp_path))
    out = tmp_path / "o.jsonl"
    assert invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", str(out)).exit_code == 0
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:5]) + lines[5][:20])  # header + 4 rows + a torn row
    res = invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", str(out), "--resume")
    assert res.exit_code == 0 and "(2 scored now, 4 already there)" in res.output
    assert [r["id"] for r in read_results(str(out))] == [f"r{i}" for i in range(6)]
    # a corrupt line in the middle: named, nothing deleted
    good = out.read_bytes().splitlines(keepends=True)
    broken = b"".join(good[:3]) + b'{"id": "r2", "sco\n' + b"".join(good[4:])
    out.write_bytes(broken)
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out", str(out), "--resume"])
    assert res.exit_code == 2 and "line 4 is not valid JSON" in res.output
    assert out.read_bytes() == broken
    with pytest.raises(ResultsFileError, match="line 4"):
        list(read_results(str(out)))
    res = CliRunner().invoke(cli, ["correlate", str(out), "--label", "psnr"])
    assert res.exit_code == 2 and "line 4" in res.output


# -- one writer --------------------------------------------------------------


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    pairs = make_pairs(str(tmp_path))
    out = str(tmp_path / "o.jsonl")
    header = {"kind": "score", "pairs": {"sha256": "x"}}
    with ResultsWriter(out, header):
        proc = run_cli("score", "--pairs", pairs, "--metrics", "psnr", "--out", out, "--resume")
        assert proc.returncode == 2
        assert f"pid {os.getpid()}" in proc.stderr and "another editmetrics process" in proc.stderr
        assert os.path.exists(out + ".lock")
    assert not os.path.exists(out + ".lock")


def test_two_processes_one_file(tmp_path, sleepy_env):
    """A second `score` on the --out a first one is writing exits 2; the file
    holds each record once."""
    pairs, out, args = _sleepy_run(tmp_path, 25)
    first = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sleepy_env)
    _wait_for_lines(out, 3)
    first.send_signal(signal.SIGSTOP)  # holds the lock, mid-run, for as long as the second needs
    try:
        second = run_cli(*args, "--resume", env=sleepy_env)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "another editmetrics process" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.wait(timeout=300) == 0
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(f"r{i}" for i in range(25))


SLEEPY = """
import time
from editmetrics import Metric, hookimpl

class Sleepy(Metric):
    id = "sleepy"
    description = "sleeps 0.1 s per record (tests only)"
    higher_is_better = True
    range = (None, None)
    fields = ()
    reference = None

    def compute(self, rec):
        time.sleep(0.1)
        return 1.0

@hookimpl
def register_metrics(register):
    register(Sleepy)
"""


@pytest.fixture(scope="module")
def sleepy_env(tmp_path_factory):
    """A plugin distribution with a metric that takes 0.1 s per record, so a
    run can be interrupted midway without racing its end."""
    site = tmp_path_factory.mktemp("sleepy")
    (site / "sleepy_em_plugin.py").write_text(SLEEPY)
    dist = site / "sleepy_em_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sleepy-em-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[editmetrics]\nsleepy = sleepy_em_plugin\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
                EDITMETRICS_LOAD_PLUGINS="sleepy")  # no other third-party plugin (and its warnings)


def _sleepy_run(tmp_path, n):
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": f"r{i}"} for i in range(n)])
    out = tmp_path / "o.jsonl"
    return pairs, out, ["score", "--pairs", pairs, "--metrics", "sleepy", "--out", str(out), "--batch-size", "1",
                        "--no-progress"]


def _wait_for_lines(out, n):
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and out.read_bytes().count(b"\n") >= n):
        time.sleep(0.02)


# -- outputs never destroy inputs ----------------------------------------------


def test_output_input_collisions_are_refused(tmp_path):
    pairs = make_pairs(str(tmp_path))
    pairs_text = open(pairs, "rb").read()
    csv_pairs = tmp_path / "p.csv"
    csv_pairs.write_text("id,source,edited\n1,src.png,e00.png\n")
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    out = str(tmp_path / "o.jsonl")
    os.link(pairs, tmp_path / "hardlink.jsonl")
    cases = [
        ["--pairs", pairs, "--out", out, "--csv", pairs],
        ["--pairs", pairs, "--out", out, "--summary-json", pairs],
        ["--pairs", pairs, "--out", out, "--summary-json", str(tmp_path / "hardlink.jsonl")],
        ["--pairs", pairs, "--out", pairs],
        ["--pairs", str(csv_pairs), "--out", str(csv_pairs), "--resume"],
        ["--pairs", pairs, "--out", out, "--csv", out],
        ["--pairs", pairs, "--out", out, "--csv", str(tmp_path / "t.csv"), "--summary-json", str(tmp_path / "t.csv")],
        ["--pairs", pairs, "--out", str(tmp_path / "e00.png")],
        ["--pairs", pairs, "--out", str(notes), "--resume"],
        ["--pairs", pairs, "--out", str(notes), "--overwrite"],
    ]
    for args in cases:
        res = CliRunner().invoke(cli, ["score", "--metrics", "psnr", *args])
        assert res.exit_code == 2, (args, res.output)
        assert "same file" in res.output or "not an editmetrics results file" in res.output \
            or "'edited' image" in res.output, res.output
    assert open(pairs, "rb").read() == pairs_text and notes.read_text() == "my notes\n"
    assert csv_pairs.read_text() == "id,source,edited\n1,src.png,e00.png\n"
    assert not os.path.exists(out)
    # a CSV or summary path holding someone's file is not replaced...
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out", out, "--csv", str(notes)])
    assert res.exit_code == 2 and "never overwritten" in res.output and notes.read_text() == "my notes\n"
    # ...but our own CSV is (atomically), run after run
    table = tmp_path / "t.csv"
    for extra in ([], ["--resume"]):
        res = invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", out, "--csv", str(table), *extra)
        assert res.exit_code == 0 and table.read_text().startswith("id,category,psnr,errors")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_run_out_dir_collisions(tmp_path):
    pairs = make_pairs(str(tmp_path))
    from editmetrics.engine.model_runs import run_model
    from editmetrics.engine.runner import UsageError

    before = open(pairs, "rb").read()
    with pytest.raises(UsageError, match="same file"):
        run_model("identity", pairs, str(tmp_path))  # OUT_DIR/pairs.jsonl is the input
    os.makedirs(tmp_path / "d" / "images")
    save(photo("astronaut", (32, 32)), str(tmp_path / "d" / "images" / "x.png"))
    inside = write_pairs(str(tmp_path / "in.jsonl"), [{"id": "x", "source": "d/images/x.png"}])
    with pytest.raises(UsageError, match="where this run writes its images"):
        run_model("identity", inside, str(tmp_path / "d"))
    assert open(pairs, "rb").read() == before
    proc = run_cli("run", "identity", "--pairs", pairs, "--out-dir", str(tmp_path))
    assert proc.returncode == 2 and "same file" in proc.stderr and open(pairs, "rb").read() == before


def test_check_paths_symlink(tmp_path):
    target = tmp_path / "a.jsonl"
    target.write_text("{}\n")
    os.symlink(target, tmp_path / "b.jsonl")
    with pytest.raises(ResultsFileError, match="same file"):
        check_paths({"--pairs": str(target)}, {"--out": str(tmp_path / "b.jsonl")})
    with pytest.raises(ResultsFileError, match="same file"):
        check_paths({}, {"--out": str(tmp_path / "new.jsonl"), "--csv": str(tmp_path / "sub" / ".." / "new.jsonl")})


# -- I/O failures, signals, plugins ------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_write_failure_is_one_line_and_resumable(tmp_path, monkeypatch, code):
    pairs = make_pairs(str(tmp_path))
    out = str(tmp_path / "o.jsonl")
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 4:  # header and two rows succeed
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out", out])
    monkeypatch.setattr(os, "write", real_write)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"cannot write {out}: {os.strerror(code)}" in res.output and "resumable" in res.output
    res = invoke("score", "--pairs", pairs, "--metrics", "psnr", "--out", out, "--resume")
    assert res.exit_code == 0 and "(4 scored now, 2 already there)" in res.output


def test_unwritable_folder(tmp_path):
    pairs = make_pairs(str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out", str(blocker / "o.jsonl")])
    assert res.exit_code == 2 and res.output.startswith("Error: cannot") and "Traceback" not in res.output


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_resumes(tmp_path, sleepy_env, sig, status):
    n = 40
    pairs, out, args = _sleepy_run(tmp_path, n)
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sleepy_env,
                            preexec_fn=default_sigint)
    _wait_for_lines(out, 3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and "--resume" in stderr and "record(s) written" in stderr
    assert len(stderr.strip().splitlines()) == 1
    written = len(read_jsonl(out))
    assert 2 <= written < n and out.read_bytes().endswith(b"\n")
    res = run_cli(*args, "--resume", env=sleepy_env)
    assert res.returncode == 0 and f"({n - written} scored now, {written} already there)" in res.stdout


def test_failed_plugin_warned_once_by_every_command(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_em_plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    dist = site / "broken_em_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-em-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[editmetrics]\nbroken = broken_em_plugin\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    pairs = make_pairs(str(tmp_path))
    for args in (["score", "--pairs", pairs, "--metrics", "psnr", "--out", str(tmp_path / "o.jsonl")],
                 ["correlate", str(tmp_path / "o.jsonl"), "--label", "psnr"]):
        proc = run_cli(*args, env=env)
        assert proc.stderr.count("plugin 'broken' failed to load") == 1, (args, proc.stderr)


# -- per-record limits and the end-of-run message ----------------------------------------


def test_max_pixels_and_failure_message(tmp_path):
    pairs = make_pairs(str(tmp_path))
    out = str(tmp_path / "o.jsonl")
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr,ssim", "--out", out,
                                   "--set", "max_pixels=1000"])
    assert res.exit_code == 1
    rows = list(read_results(out))
    assert all("above the max_pixels setting (1,000)" in r["errors"]["source"] for r in rows)
    assert all(r["warnings"] == {} and r["details"] == {} for r in rows)
    # per metric: how many failed and the most frequent reason
    assert "psnr: 6 failed; most often (6x), e.g.: field 'edited' could not be loaded" in res.output
    assert "ssim: 6 failed" in res.output
    res = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out", str(tmp_path / "x.jsonl"),
                                   "--set", "max_pixels=lots"])
    assert res.exit_code == 2 and "max_pixels" in res.output


def test_failure_reasons_group_by_kind_and_show_a_real_example():
    """Messages that differ only in their paths count as one reason; the line
    shows the first one whole (its folder included), and 'hf:/x' is no drive."""
    from editmetrics.cli.app import FailureTally

    tally = FailureTally()
    rows = [{"id": str(i), "scores": {"dino_i": None}, "errors": {"dino_i": f"backbone 'hf:/models/d{i}': not found"}}
            for i in range(3)]
    rows.append({"id": "x", "scores": {"dino_i": None}, "errors": {"dino_i": "other"}})
    assert len(list(tally.watch(rows))) == 4
    assert tally.message("o.jsonl").splitlines()[1] == \
        "  dino_i: 4 failed; most often (3x), e.g.: backbone 'hf:/models/d0': not found"


def test_python_api_streams_and_keeps_read_results(tmp_path):
    pairs = make_pairs(str(tmp_path))
    out = str(tmp_path / "o.jsonl")
    result = score_file(pairs, ["psnr"], out, progress=False)
    assert (result.written, result.skipped) == (6, 0)
    from editmetrics.engine.runner import read_results as runner_read_results

    assert [r["id"] for r in runner_read_results(out)] == [f"r{i}" for i in range(6)]
    assert json.loads(open(out).readline())["editmetrics_run"]["kind"] == "score"
