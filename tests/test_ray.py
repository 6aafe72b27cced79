"""The Ray executor on a local Ray (num_cpus=2): the same rows as in-process
(pixel and tiny-CLIP semantic metrics, including failures), every record
exactly once when an actor is killed mid-run, a batch that keeps killing its
worker becomes per-record errors, resume across executors, `run` on Ray, and
the command line (exit 2 without Ray)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from editmetrics.data.records import EditRecord
from editmetrics.engine.runner import RunInterrupted, read_results, score_file
from helpers import photo, save, write_pairs

PIXEL = ["psnr", "ssim", "l1", "psnr(region=inside)"]
N = 200


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module: 2 CPUs, a small object store, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             logging_level="warning")
    yield ray
    ray.shutdown()


def _executor(**settings):
    from editmetrics.engine.ray_executor import RayExecutor

    return RayExecutor(settings={"ray_actors": 2, **{k: str(v) for k, v in settings.items()}})


@pytest.fixture(scope="module")
def pixel_pairs(tmp_path_factory):
    """200 records from six photographs: noise of growing strength, a mask,
    some other sizes (resized, with a warning) and a few broken records."""
    root = tmp_path_factory.mktemp("raypix")
    rng = np.random.default_rng(0)
    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry"]
    sources = [save(photo(n, (40, 32)), root / f"s{i}.png") for i, n in enumerate(names)]
    mask = np.zeros((32, 40), bool)
    mask[8:24, 10:30] = True
    save(mask.astype(np.uint8) * 255, root / "mask.png")
    records = []
    for i in range(N):
        src = photo(names[i % 6], (40, 32)).astype(float)
        size = (48, 36) if i % 17 == 0 else (40, 32)
        edited = np.clip(src + rng.normal(0, 1 + i % 23, src.shape), 0, 255).astype(np.uint8)
        if size != (40, 32):
            from PIL import Image

            edited = np.asarray(Image.fromarray(edited).resize(size))
        record = {"id": f"r{i}", "source": sources[i % 6], "edited": save(edited, root / f"e{i}.png"),
                  "category": ["local", "global"][i % 2]}
        if i % 3:
            record["mask"] = "mask.png"
        if i % 41 == 5:
            record["edited"] = "missing.png"  # a load error, per record
        records.append(record)
    return write_pairs(str(root / "pairs.jsonl"), records)


@pytest.fixture(scope="module")
def pixel_expected(pixel_pairs, tmp_path_factory):
    """The in-process rows every Ray run of ``pixel_pairs`` must reproduce."""
    return _reference(tmp_path_factory.mktemp("ref"), pixel_pairs, PIXEL)


def _rows(path):
    return list(read_results(str(path)))


def _reference(tmp_path, pairs, metrics, **kw):
    out = tmp_path / "inprocess.jsonl"
    score_file(pairs, metrics, str(out), progress=False, **kw)
    return _rows(out)


def test_pixel_rows_equal_in_process(ray_local, pixel_pairs, pixel_expected, tmp_path):
    expected = pixel_expected
    out = tmp_path / "ray.jsonl"
    executor = _executor()
    result = score_file(pixel_pairs, PIXEL, str(out), executor=executor, progress=False)
    rows = _rows(out)
    assert result.written == N and len(executor.worker_pids) == 2
    assert rows == expected  # same JSON values, same order
    assert any(r["errors"] for r in rows) and any(r.get("warnings") for r in rows)  # failures travel too
    assert executor.stats["actor_deaths"] == 0 and executor.stats["failed_batches"] == 0


def test_semantic_rows_equal_in_process(ray_local, tmp_path_factory):
    """Tiny random open_clip CLIP through the shared feature store (images and
    texts shared across records and batches): the same batches reach the
    encoder, so the vectors and the scores are the same."""
    from editmetrics.testing.tiny import write_open_clip

    root = tmp_path_factory.mktemp("raysem")
    spec = write_open_clip(str(root / "clip"), name="tinyclip_ray", seed=3)
    names = ["astronaut", "chelsea", "coffee", "rocket"]
    rng = np.random.default_rng(1)
    records = []
    for i in range(N):
        src = photo(names[i % 4], (48, 48))
        edited = np.clip(src + rng.normal(0, 2 + i % 13, src.shape), 0, 255).astype(np.uint8)
        records.append({"id": i, "source": save(src, root / f"s{i % 4}.png"),
                        "edited": save(edited, root / f"e{i}.png"),
                        "target": f"e{max(i - 1, 0)}.png", "instruction": f"make it look like {names[(i + 1) % 4]}",
                        "source_caption": f"a photo of {names[i % 4]}",
                        "target_caption": f"a photo of {names[(i + 1) % 4]} number {i % 7}"})
    pairs = write_pairs(str(root / "pairs.jsonl"), records)
    metrics = ["clip_i", "clip_t", "dir_i", "clip_dir", "psnr"]
    settings = {"clip": spec}
    expected = _reference(root, pairs, metrics, settings=settings, batch_size=16)
    out = root / "ray.jsonl"
    score_file(pairs, metrics, str(out), settings=settings, batch_size=16, executor=_executor(), progress=False)
    rows = _rows(out)
    assert [r["errors"] for r in rows if r["errors"]] == []
    assert rows == expected


def test_actor_killed_mid_run_every_record_once(ray_local, pixel_pairs, pixel_expected, tmp_path):
    executor = _executor(ray_max_retries=2)
    out = tmp_path / "killed.jsonl"
    seen = []

    def kill_one(row):
        seen.append(row["id"])
        if len(seen) == 40:
            os.kill(executor.worker_pids[0], signal.SIGKILL)

    result = score_file(pixel_pairs, PIXEL, str(out), executor=executor, progress=False,
                        batch_size=4, on_row=kill_one)
    rows = _rows(out)
    assert result.written == N
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(N)]  # each once, in order
    assert rows == pixel_expected  # retried batches scored, not turned into errors
    assert executor.stats["actor_deaths"] >= 1 and executor.stats["actors_started"] >= 3
    assert executor.stats["failed_batches"] == 0


def test_batch_that_keeps_killing_its_worker_becomes_errors(ray_local, tmp_path):
    """A record that kills the process whenever it is scored: its batch is
    tried 1 + ray_max_retries times, then its records get error rows; every
    other batch (including those queued behind it on the dying actor) is fine."""
    from editmetrics.engine.ray_executor import ScorerFactory

    class Poisoned(ScorerFactory):  # defined here: Ray ships it by value
        def build(self, device=None):
            def load(record):
                return record

            def score(batch):
                if any(r.id == "poison" for r in batch):
                    os._exit(1)
                return [{"id": r.id, "scores": {"x": 1.0}, "errors": {}} for r in batch]

            return load, score

    ids = [f"a{i}" for i in range(10)] + ["poison"] + [f"b{i}" for i in range(13)]
    records = [EditRecord(id=i, fields={"id": i}, base_dir=str(tmp_path), line=n) for n, i in enumerate(ids)]
    executor = _executor(ray_max_retries=1, ray_batches_in_flight=3)
    rows = list(executor.run_factory(Poisoned(("x",)), records, 4))
    assert [r["id"] for r in rows] == ids
    bad = [r for r in rows if r["errors"]]
    assert [r["id"] for r in bad] == ["a8", "a9", "poison", "b0"]  # the batch of 4 holding the poison
    assert all(r["scores"] == {"x": None} and "failed 2 time(s)" in r["errors"]["x"] for r in bad)
    assert all(r["warnings"] == {} and r["details"] == {} for r in bad)  # the row schema of docs/records.md
    assert executor.stats["failed_batches"] == 1
    # The poison killed its actor twice. A loaded machine (CI) can add a death:
    # Ray reports a slow, healthy actor as ActorUnavailableError (a
    # RayActorError), which the executor treats as dead and replaces; the
    # batch it held is then retried, so rows stay right either way.
    assert executor.stats["actor_deaths"] >= 2


def _interrupt_after(n):
    count = []

    def on_row(row):
        count.append(row)
        if len(count) == n:
            raise KeyboardInterrupt  # what Ctrl-C does in the writer's loop

    return on_row


def test_resume_in_process_run_on_ray(ray_local, pixel_pairs, pixel_expected, tmp_path):
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(RunInterrupted):  # Ctrl-C: what was written stays resumable
        score_file(pixel_pairs, PIXEL, str(out), progress=False, on_row=_interrupt_after(70))
    assert len(_rows(out)) == 70
    result = score_file(pixel_pairs, PIXEL, str(out), executor=_executor(), progress=False, resume=True)
    assert (result.written, result.skipped) == (N - 70, 70)
    assert _rows(out) == pixel_expected


def _wait_gone(pids, timeout=20.0):
    import time

    deadline = time.time() + timeout
    alive = list(pids)
    while alive and time.time() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"worker processes still running: {alive}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
    return True


def test_run_model_on_ray_equals_in_process(ray_local, tmp_path):
    """`run` on Ray: the noise editor (seeded per record) writes the same
    pairs file and the same PNGs as in-process."""
    from editmetrics.engine.ray_executor import RayExecutor
    from editmetrics.engine.model_runs import run_model

    records = [{"id": f"m{i}", "source": save(photo(["astronaut", "coffee"][i % 2], (24, 16)), tmp_path / f"s{i}.png")}
               for i in range(12)]
    records.append({"id": "nosource"})
    pairs = write_pairs(str(tmp_path / "pairs.jsonl"), records)
    a = run_model("noise", pairs, str(tmp_path / "a"), seed=5, progress=False)
    b = run_model("noise", pairs, str(tmp_path / "b"), seed=5, progress=False,
                  executor=RayExecutor(settings={"ray_actors": 2}))
    assert (a.written, a.failed_records) == (b.written, b.failed_records) == (13, 1)
    assert _rows(a.out) == _rows(b.out)
    for i in range(12):
        rel = os.path.join("images", f"m{i}.png")
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_cli_ray_ctrl_c_stops_its_local_ray_then_resume_in_process(pixel_pairs, pixel_expected, tmp_path):
    """`score --executor ray` in a fresh process starts its own local Ray;
    Ctrl-C mid-run stops it (no Ray process of that run is left), the lines
    written are whole, and an in-process --resume completes the same file."""
    pytest.importorskip("ray")
    import subprocess
    import time

    from helpers import CLI, default_sigint

    out = tmp_path / "cli.jsonl"
    proc = subprocess.Popen(CLI + ["score", "--pairs", pixel_pairs, "--metrics", ",".join(PIXEL), "--out", str(out),
                                   "--no-progress", "--batch-size", "2", "--executor", "ray",
                                   "--set", "ray_local_cpus=2", "--set", "ray_actors=1",
                                   "--set", "ray_object_store_mb=80", "--set", "ray_batches_in_flight=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    ray_pids = _descendants(proc.pid)
    assert ray_pids, "the CLI started no Ray processes"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in stderr, stderr
    _wait_gone(ray_pids)
    done = len(_rows(out))
    assert 4 <= done < N
    result = score_file(pixel_pairs, PIXEL, str(out), progress=False, resume=True)
    assert (result.written, result.skipped) == (N - done, done)
    assert _rows(out) == pixel_expected


def _descendants(pid):
    """Every process below ``pid`` (Ray's GCS, raylet, workers...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().split(")")[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_cli_without_ray_exits_2_with_the_install_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from editmetrics.cli.app import cli

    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray -> ImportError
    pairs = write_pairs(str(tmp_path / "p.jsonl"), [{"id": 1, "source": "a.png", "edited": "a.png"}])
    result = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out",
                                      str(tmp_path / "o.jsonl"), "--executor", "ray"])
    assert result.exit_code == 2
    assert "pip install 'editmetrics[ray]'" in result.output
    assert not (tmp_path / "o.jsonl").exists()
    result = CliRunner().invoke(cli, ["score", "--pairs", pairs, "--metrics", "psnr", "--out",
                                      str(tmp_path / "o.jsonl"), "--ray-address", "auto"])
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.output


def test_resources_and_settings_are_checked_before_work(ray_local, pixel_pairs, tmp_path):
    from editmetrics.engine.ray_executor import RayExecutor
    from editmetrics.engine.runner import UsageError

    out = tmp_path / "gpu.jsonl"
    with pytest.raises(UsageError, match="asks for 1 GPU"):  # --device cuda on a cluster without GPUs
        score_file(pixel_pairs, ["psnr"], str(out), device="cuda", executor=_executor(), progress=False)
    assert not out.exists() or _rows(out) == []
    with pytest.raises(UsageError, match="ray_max_retries"):
        RayExecutor(settings={"ray_max_retries": "many"})
