"""viescore through the openai backend against a fake server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from editmetrics.judges.fakeserver import FakeChatServer, images_of, is_sc_request
from editmetrics.engine.runner import score_records
from helpers import photo, save

SC_ANSWER = json.dumps({"score": [7, 4], "reasoning": "edit done, some over-editing"})
PQ_ANSWER = json.dumps({"score": [9, 6], "reasoning": "natural, few artifacts"})


def by_kind(sc, pq):
    """A responder answering SC and PQ requests differently."""
    def respond(body):
        return sc(body) if is_sc_request(body) else pq(body)
    return respond


def ok(text):
    return lambda body: (200, text)


@pytest.fixture
def records(tmp_path):
    src, out = photo("astronaut"), photo("coffee")
    return tmp_path, [
        {"id": "a", "source": save(src, tmp_path / "s.png"), "edited": save(out, tmp_path / "e.png"),
         "instruction": "make it a cup of coffee"},
    ]


def settings(server, tmp_path=None, **extra):
    out = {"judge_backend": "openai", "judge_model": "fake-vlm", "judge_url": server.url,
           "judge_backoff": 0.0, "judge_max_retries": 2}
    if tmp_path is not None:
        out["judge_cache_dir"] = str(tmp_path / "cache")
    out.update(extra)
    return out


def run(records, server, **extra):
    base, recs = records
    return score_records(recs, ["viescore"], base_dir=str(base), settings=settings(server, **extra))


def test_sc_pq_o_arithmetic_and_provenance(records):
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        (row,) = run(records, server)
    scores = row["scores"]
    assert scores["viescore.sc"] == 4.0  # min(7, 4)
    assert scores["viescore.pq"] == 6.0  # min(9, 6)
    assert scores["viescore"] == pytest.approx(math.sqrt(24.0), abs=1e-12)
    assert row["errors"] == {}
    d = row["details"]["viescore"]
    assert d["judge"]["model"] == "fake-vlm" and d["judge"]["backend"] == "openai"
    assert d["prompts"]["sc"]["name"] == "viescore_tie_sc_v1" and len(d["prompts"]["sc"]["sha256"]) == 64
    assert d["decoding"] == {"temperature": 0.0, "max_tokens": 1400, "seed": None}
    assert d["sc"][0]["answer"] == SC_ANSWER and d["pq"][0]["answer"] == PQ_ANSWER
    assert d["sc"][0]["reasoning"] == "edit done, some over-editing"
    assert all(p == "/v1/chat/completions" for p in server.paths)


def test_two_images_in_sc_one_in_pq(records):
    base, recs = records
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        run(records, server)
    assert len(server.requests) == 2
    sc = next(b for b in server.requests if is_sc_request(b))
    pq = next(b for b in server.requests if not is_sc_request(b))
    assert sc["model"] == "fake-vlm" and sc["temperature"] == 0.0 and sc["max_tokens"] == 1400
    assert "Editing instruction: make it a cup of coffee" in sc["messages"][0]["content"][0]["text"]
    assert "<instruction>" not in sc["messages"][0]["content"][0]["text"]
    sc_imgs, pq_imgs = images_of(sc), images_of(pq)
    assert len(sc_imgs) == 2 and len(pq_imgs) == 1
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))) for u in sc_imgs]
    assert all(u.startswith("data:image/png;base64,") for u in sc_imgs + pq_imgs)
    # source first, then edited; PNG is lossless so the pixels are the files' pixels
    assert np.array_equal(decoded[0], np.asarray(Image.open(os.path.join(base, "s.png"))))
    assert np.array_equal(decoded[1], np.asarray(Image.open(os.path.join(base, "e.png"))))
    assert pq_imgs[0] == sc_imgs[1]


@pytest.mark.parametrize("sc_reply, expected", [
    (lambda b: (200, "I'm sorry, but I can't help with evaluating this image."), "refusal"),
    (lambda b: (200, None, {"finish_reason": "content_filter"}), "refusal (finish_reason=content_filter)"),
    (lambda b: (200, "The edit looks great, I'd say seven out of ten!"), "unparseable answer"),
    (lambda b: (200, '{"score": [7, 11], "reasoning": "x"}'), "outside [0, 10]"),
    (lambda b: (200, '{"score": [], "reasoning": "x"}'), "empty score list"),
    (lambda b: (400, "bad request"), "HTTP 400"),
    (lambda b: (500, "server exploded"), "HTTP 500"),
    (lambda b: (429, "slow down"), "HTTP 429"),
])
def test_failures_are_null_with_reason_never_zero(records, sc_reply, expected):
    with FakeChatServer(by_kind(sc_reply, ok(PQ_ANSWER))) as server:
        (row,) = run(records, server)
    assert row["scores"]["viescore"] is None
    assert row["scores"]["viescore.sc"] is None
    assert row["scores"]["viescore.pq"] == 6.0  # the other half is still reported
    assert expected in row["errors"]["viescore"]
    if expected.startswith("HTTP 5") or expected == "HTTP 429":
        sc_calls = [b for b in server.requests if is_sc_request(b)]
        assert len(sc_calls) == 3  # 1 + judge_max_retries
        assert "after 3 attempts" in row["errors"]["viescore"]
    elif expected == "HTTP 400":
        assert len([b for b in server.requests if is_sc_request(b)]) == 1  # not retried


def test_429_then_success_is_retried(records):
    calls = {"n": 0}

    def flaky(body):
        calls["n"] += 1
        if calls["n"] <= 2:
            return 429, "rate limited", {"headers": {"Retry-After": "0"}}
        return 200, SC_ANSWER

    with FakeChatServer(by_kind(flaky, ok(PQ_ANSWER))) as server:
        (row,) = run(records, server)
    assert row["scores"]["viescore.sc"] == 4.0 and row["errors"] == {}
    assert calls["n"] == 3


def test_timeout_is_null_with_reason(records):
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER)), delay=0.5) as server:
        (row,) = run(records, server, judge_timeout=0.1, judge_max_retries=0)
    assert row["scores"]["viescore"] is None
    assert "timeout" in row["errors"]["viescore"]


def test_unreachable_server_is_null_with_reason(records):
    base, recs = records
    rows = score_records(recs, ["viescore"], base_dir=str(base), settings={
        "judge_model": "m", "judge_url": "http://127.0.0.1:9/v1", "judge_max_retries": 0})
    assert rows[0]["scores"]["viescore"] is None
    assert "cannot reach" in rows[0]["errors"]["viescore"] or "connection" in rows[0]["errors"]["viescore"]


def test_missing_configuration_is_a_reason(records):
    base, recs = records
    rows = score_records(recs, ["viescore"], base_dir=str(base), settings={})
    assert rows[0]["scores"]["viescore"] is None
    assert "judge_url" in rows[0]["errors"]["viescore"]


def test_cache_second_run_sends_nothing(records, tmp_path):
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        (first,) = run(records, server, tmp_path=tmp_path)
        assert len(server.requests) == 2
        (second,) = run(records, server, tmp_path=tmp_path)
        assert len(server.requests) == 2  # all answers came from the cache
        (third,) = run(records, server, tmp_path=tmp_path, judge_temperature=0.7)
        assert len(server.requests) == 4  # other decoding settings: a new key
    assert second["scores"] == first["scores"]
    assert second["details"]["viescore"]["sc"][0]["cached"] is True
    assert first["details"]["viescore"]["sc"][0]["cached"] is False
    assert third["details"]["viescore"]["decoding"]["temperature"] == 0.7


def test_failed_requests_are_not_cached(records, tmp_path):
    with FakeChatServer(by_kind(lambda b: (500, "down"), ok(PQ_ANSWER))) as server:
        (row,) = run(records, server, tmp_path=tmp_path, judge_max_retries=0)
    assert row["scores"]["viescore.sc"] is None
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        (row,) = run(records, server, tmp_path=tmp_path)
        assert len(server.requests) == 1  # only the SC request is sent again
    assert row["scores"]["viescore.sc"] == 4.0


def test_passes_average_and_spread(records):
    answers = iter([[8, 6], [4, 10], [5, 5]])  # SC mins: 6, 4, 5

    def sc(body):
        return 200, json.dumps({"score": next(answers), "reasoning": "r"})

    with FakeChatServer(by_kind(sc, ok(PQ_ANSWER))) as server:
        (row,) = run(records, server, judge_passes=3, judge_concurrency=1)
    s = row["scores"]
    assert s["viescore.sc"] == pytest.approx(5.0)
    assert s["viescore.pq"] == pytest.approx(6.0)
    assert s["viescore"] == pytest.approx(np.mean([math.sqrt(6 * 6), math.sqrt(4 * 6), math.sqrt(5 * 6)]))
    spread = row["details"]["viescore"]["spread"]
    assert spread["sc"] == {"n": 3, "std": pytest.approx(1.0), "min": 4.0, "max": 6.0}
    assert [p["pass"] for p in row["details"]["viescore"]["sc"]] == [0, 1, 2]


def test_one_failed_pass_makes_the_score_null(records):
    answers = iter([(200, SC_ANSWER), (200, "garbage")])
    with FakeChatServer(by_kind(lambda b: next(answers), ok(PQ_ANSWER))) as server:
        (row,) = run(records, server, judge_passes=2, judge_concurrency=1)
    assert row["scores"]["viescore.sc"] is None
    assert "SC pass 2: unparseable" in row["errors"]["viescore"]


def test_requests_of_a_batch_run_concurrently(tmp_path):
    src = save(photo("astronaut"), tmp_path / "s.png")
    recs = [{"id": i, "source": src, "edited": save(photo("coffee", (96 - i, 64)), tmp_path / f"e{i}.png"),
             "instruction": f"edit {i}"} for i in range(6)]
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER)), delay=0.2) as server:
        rows = score_records(recs, ["viescore"], base_dir=str(tmp_path), batch_size=6,
                             settings=settings(server, judge_concurrency=4))
    assert len(server.requests) == 12
    assert server.max_in_flight == 4
    assert all(r["scores"]["viescore"] == pytest.approx(math.sqrt(24.0)) for r in rows)


def test_prompts_are_the_ones_viescore_sent(records):
    """The SC/PQ texts we send equal the prompts VIEScore recorded in its released answers."""
    path = os.path.join(os.path.dirname(__file__), "data", "judges", "viescore_released_prompt_input.json")
    with open(path) as fh:
        released = json.load(fh)
    base, recs = records
    recs = [dict(recs[0], instruction=released["instruction"])]
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        score_records(recs, ["viescore"], base_dir=str(base), settings=settings(server))
    texts = {is_sc_request(b): b["messages"][0]["content"][0]["text"] for b in server.requests}
    assert texts[True] == released["sc_prompt_input"]
    assert texts[False] == released["pq_prompt_input"]


def test_images_first_layout_and_dedup(records):
    base, recs = records
    recs = recs + [dict(recs[0], id="b")]  # the same request twice in one batch: sent once
    with FakeChatServer(by_kind(ok(SC_ANSWER), ok(PQ_ANSWER))) as server:
        rows = score_records(recs, ["viescore"], base_dir=str(base),
                             settings=settings(server, judge_images_first="true"))
    assert len(server.requests) == 2
    sc = next(b for b in server.requests if is_sc_request(b))
    assert [p["type"] for p in sc["messages"][0]["content"]] == ["image_url", "image_url", "text"]
    assert "images_first" not in sc  # layout, not a request field
    assert rows[1]["details"]["viescore"]["decoding"]["images_first"] is True
    assert rows[0]["scores"] == rows[1]["scores"]
