"""editscore (EditScore's prompts and decoding) against the fake server."""

from __future__ import annotations

import json
import math

import pytest

from editmetrics.judges.fakeserver import FakeChatServer, is_sc_request
from editmetrics.engine.runner import score_records
from helpers import photo, save


@pytest.fixture
def records(tmp_path):
    return tmp_path, [{"id": "a", "source": save(photo("astronaut"), tmp_path / "s.png"),
                       "edited": save(photo("coffee"), tmp_path / "e.png"), "instruction": "make it coffee"}]


def answer(scores):
    return json.dumps({"reasoning": "r", "score": scores})


def run(records, responder, spec="editscore", **extra):
    base, recs = records
    with FakeChatServer(responder) as server:
        rows = score_records(recs, [spec], base_dir=str(base), settings={
            "judge_model": "editscore-7b", "judge_url": server.url, "judge_backoff": 0, "judge_concurrency": 1,
            **extra})
    return rows[0], server


def test_scales_components_and_request_layout(records):
    row, server = run(records, lambda b: (200, answer([20, 15] if is_sc_request(b) else [25, 10])))
    s = row["scores"]
    assert s["editscore.prompt_following"] == 8.0 and s["editscore.consistency"] == 6.0
    assert s["editscore.perceptual_quality"] == 4.0
    assert s["editscore"] == pytest.approx(math.sqrt(6.0 * 4.0))  # min(SC)/2.5 = 6
    sc = next(b for b in server.requests if is_sc_request(b))
    assert [p["type"] for p in sc["messages"][0]["content"]] == ["image_url", "image_url", "text"]
    assert (sc["temperature"], sc["top_p"], sc["top_k"], sc["max_tokens"], sc["seed"]) == (0.7, 0.9, 20, 512, 42)
    text = sc["messages"][0]["content"][-1]["text"]
    assert "from 0 to 25" in text and text.index('"reasoning"') < text.index('"score"')
    assert row["details"]["editscore"]["prompts"]["sc"]["name"] == "editscore_sc_v1"


def test_avg_at_k_seeds_and_reductions(records):
    sc_answers = {42: [25, 20], 43: [15, 10]}  # prompt_following 10 / 6, min SC 8 / 4
    pq_answers = {42: [25, 25], 43: [10, 20]}  # PQ 10 / 4

    def respond(body):
        return 200, answer((sc_answers if is_sc_request(body) else pq_answers)[body["seed"]])

    row, server = run(records, respond, spec="editscore(passes=2)")
    assert sorted(b["seed"] for b in server.requests) == [42, 42, 43, 43]
    s = row["scores"]
    assert s["editscore(passes=2).prompt_following"] == pytest.approx(8.0)
    assert s["editscore(passes=2).perceptual_quality"] == pytest.approx(7.0)
    assert s["editscore(passes=2)"] == pytest.approx((math.sqrt(8 * 10) + math.sqrt(4 * 4)) / 2)
    row, _ = run(records, respond, spec="editscore(passes=2,reduction=average_first)")
    assert row["scores"]["editscore(passes=2,reduction=average_first)"] == pytest.approx(math.sqrt(8.0 * 7.0))


def test_out_of_scale_and_short_answers_are_null(records):
    row, _ = run(records, lambda b: (200, answer([26, 3] if is_sc_request(b) else [5, 5])))
    assert row["scores"]["editscore"] is None and "outside [0, 25]" in row["errors"]["editscore"]
    row, _ = run(records, lambda b: (200, answer([20] if is_sc_request(b) else [5, 5])))
    assert row["scores"]["editscore"] is None and "expected 2 SC scores" in row["errors"]["editscore"]
    assert row["scores"]["editscore.perceptual_quality"] == 2.0
