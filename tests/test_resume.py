"""A run killed hard and resumed ends with exactly one valid line per record."""

import json
import os
import signal
import subprocess
import time

import numpy as np

from helpers import CLI, photo, read_jsonl, run_cli, save, write_pairs

N = 40


def make_pairs(tmp_path):
    src = photo("astronaut", (192, 192))
    save(src, tmp_path / "src.png")
    rng = np.random.default_rng(0)
    records = []
    for i in range(N):
        noisy = np.clip(src + rng.normal(0, 3 + i, src.shape), 0, 255).astype(np.uint8)
        records.append({"id": f"r{i}", "source": "src.png", "edited": save(noisy, tmp_path / f"e{i}.png")})
    return write_pairs(str(tmp_path / "pairs.jsonl"), records)


def test_sigkill_then_resume(tmp_path):
    pairs = make_pairs(tmp_path)
    out = tmp_path / "out.jsonl"
    metrics = "psnr,ssim,fsim,vif"
    proc = subprocess.Popen(CLI + ["score", "--pairs", pairs, "--metrics", metrics, "--out", str(out),
                                   "--batch-size", "1", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 4:  # the run header + 3 rows
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_bytes()
    done_before = before.count(b"\n") - 1  # the first line is the run header
    assert 3 <= done_before < N, "the run must be killed midway"
    # simulate a kill in the middle of writing a line
    with open(out, "ab") as fh:
        fh.write(b'{"id": "r39", "scores": {"psnr": 1')
    result = run_cli("score", "--pairs", pairs, "--metrics", metrics, "--out", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert f"({N - done_before} scored now, {done_before} already there)" in result.stdout
    text = out.read_text()
    assert text.endswith("\n") and text.encode().startswith(before)
    lines = [json.loads(line) for line in text.splitlines()]  # every line is valid JSON
    assert list(lines[0]) == ["editmetrics_run"]
    rows = lines[1:]
    assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(N))
    assert all(r["errors"] == {} for r in rows)
    # resuming a finished run scores nothing and duplicates nothing
    again = run_cli("score", "--pairs", pairs, "--metrics", metrics, "--out", str(out), "--resume")
    assert again.returncode == 0 and "(0 scored now, 40 already there)" in again.stdout
    assert len(read_jsonl(out)) == N


def test_existing_output_is_never_overwritten(tmp_path):
    pairs = make_pairs(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "r0", "scores": {"psnr": 1.0}, "errors": {}}\n')  # no run header
    for extra in ([], ["--resume"], ["--overwrite"]):
        proc = run_cli("score", "--pairs", pairs, "--metrics", "psnr", "--out", str(out), *extra)
        assert proc.returncode == 2 and "not an editmetrics results file" in proc.stderr
    assert out.read_text() == '{"id": "r0", "scores": {"psnr": 1.0}, "errors": {}}\n'
