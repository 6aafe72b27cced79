"""Local judge backends: transformers on a tiny random Qwen2.5-VL; llama_cpp what
can be checked without a multimodal GGUF (none is available offline)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from editmetrics.engine.runner import score_records
from helpers import photo, save

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from editmetrics.judges.tiny_vlm import write_tiny_qwen2_5_vl

    return write_tiny_qwen2_5_vl(str(tmp_path_factory.mktemp("tinyqwen")))


@pytest.fixture
def records(tmp_path):
    return tmp_path, [{"id": "a", "source": save(photo("astronaut"), tmp_path / "s.png"),
                       "edited": save(photo("coffee"), tmp_path / "e.png"), "instruction": "make it coffee"}]


def tf_settings(folder, **extra):
    return {"judge_backend": "transformers", "judge_model": folder, "judge_max_tokens": 6, **extra}


def test_random_vlm_answer_is_null_with_reason_and_kept(records, tiny_qwen):
    base, recs = records
    (row,) = score_records(recs, ["viescore"], base_dir=str(base), settings=tf_settings(tiny_qwen))
    assert row["scores"]["viescore"] is None and row["scores"]["viescore.sc"] is None
    assert "SC:" in row["errors"]["viescore"] and "PQ:" in row["errors"]["viescore"]
    d = row["details"]["viescore"]
    assert d["judge"]["backend"] == "transformers" and len(d["judge"]["revision"]) == 16
    assert isinstance(d["sc"][0]["answer"], str)  # the raw (noise) answer is recorded
    assert d["sc"][0]["finish_reason"] in ("stop", "length")


def test_sc_prompt_has_two_images_pq_one(tiny_qwen):
    from editmetrics.judges.local_backends import TransformersBackend

    backend = TransformersBackend({"judge_model": tiny_qwen})
    img = photo("astronaut").astype(np.float32) / 255
    _, processor = backend._load()
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for n in (2, 1):
        inputs = backend.prompt_inputs("Editing instruction: x", [img] * n)
        assert inputs["image_grid_thw"].shape[0] == n
        merged = int(inputs["image_grid_thw"].prod(dim=1).sum()) // 4  # spatial_merge_size 2
        assert int((inputs["input_ids"] == pad).sum()) == merged


def answer_with(monkeypatch, answer):
    """Replace the tiny model's generate (a random model cannot answer) by one
    that appends ``answer(input_ids, generate_kwargs, processor)`` and EOS."""
    import torch

    from editmetrics.judges import local_backends

    original_load = local_backends.TransformersBackend._load

    def load(self):
        model, processor = original_load(self)

        def generate(input_ids=None, **kwargs):
            new = processor.tokenizer(answer(input_ids, kwargs, processor), return_tensors="pt")["input_ids"]
            eos = torch.tensor([[model.generation_config.eos_token_id]])
            return torch.cat([input_ids, new, eos], dim=1)

        model.generate = generate
        return model, processor

    monkeypatch.setattr(local_backends.TransformersBackend, "_load", load)


def test_decoded_answer_is_parsed_and_cached(records, tiny_qwen, tmp_path, monkeypatch):
    """The generated tokens after the prompt are decoded and parsed (generate is
    replaced to emit a known answer: a random model cannot); a rerun with the
    cache generates nothing."""
    calls = {"n": 0}

    def answer(input_ids, kwargs, processor):
        calls["n"] += 1
        is_sc = (input_ids == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum() > 6
        return '{"score": [8, 5], "reasoning": "r"}' if is_sc else '{"score": [6, 9], "reasoning": "q"}'

    answer_with(monkeypatch, answer)
    base, recs = records
    settings = tf_settings(tiny_qwen, judge_cache_dir=str(tmp_path / "cache"))
    (row,) = score_records(recs, ["viescore"], base_dir=str(base), settings=settings)
    assert row["scores"]["viescore.sc"] == 5.0 and row["scores"]["viescore.pq"] == 6.0
    assert row["scores"]["viescore"] == pytest.approx(math.sqrt(30.0))
    assert row["details"]["viescore"]["sc"][0]["finish_reason"] == "stop"
    assert calls["n"] == 2
    (again,) = score_records(recs, ["viescore"], base_dir=str(base), settings=settings)
    assert calls["n"] == 2 and again["scores"] == row["scores"]


def test_llama_cpp_configuration_errors_are_reasons(records, tmp_path):
    base, recs = records
    (row,) = score_records(recs, ["viescore"], base_dir=str(base),
                           settings={"judge_backend": "llama_cpp", "judge_model": str(tmp_path / "no.gguf")})
    assert row["scores"]["viescore"] is None and "judge_model=FILE.gguf" in row["errors"]["viescore"]
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    (row,) = score_records(recs, ["viescore"], base_dir=str(base),
                           settings={"judge_backend": "llama_cpp", "judge_model": str(model)})
    assert "judge_mmproj" in row["errors"]["viescore"]


def test_llama_cpp_handler_and_messages():
    pytest.importorskip("llama_cpp")
    from llama_cpp import llama_chat_format

    from editmetrics.judges.local_backends import LlamaCppBackend, handler_class

    assert handler_class(llama_chat_format, "qwen25vl") is llama_chat_format.Qwen25VLChatHandler
    with pytest.raises(ValueError, match="no chat handler"):
        handler_class(llama_chat_format, "nope")
    img = photo("astronaut").astype(np.float32) / 255
    msgs = LlamaCppBackend.messages("hello", [img, img])
    parts = msgs[0]["content"]
    assert parts[0] == {"type": "text", "text": "hello"}
    assert [p["type"] for p in parts[1:]] == ["image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_unknown_backend_is_a_reason(records):
    base, recs = records
    (row,) = score_records(recs, ["viescore"], base_dir=str(base), settings={"judge_backend": "magic"})
    assert "unknown judge_backend 'magic'" in row["errors"]["viescore"]
    assert json.dumps(row)  # the row stays valid JSON


def test_lora_adapter_is_merged_and_recorded(records, tiny_qwen, tmp_path):
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    torch.manual_seed(1)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "lora"))
    base, recs = records
    plain = score_records(recs, ["viescore"], base_dir=str(base), settings=tf_settings(tiny_qwen))
    merged = score_records(recs, ["viescore"], base_dir=str(base),
                           settings=tf_settings(tiny_qwen, judge_lora=str(tmp_path / "lora")))
    ident = merged[0]["details"]["viescore"]["judge"]
    assert ident["lora"].endswith("lora") and ident["model"].endswith("+lora")
    # a random adapter changes the (noise) answer: the adapter was applied
    assert merged[0]["details"]["viescore"]["sc"][0]["answer"] != plain[0]["details"]["viescore"]["sc"][0]["answer"]


def test_editscore_on_the_transformers_backend(records, tiny_qwen, monkeypatch):
    """editscore(passes=2) through the transformers backend: EditScore's
    decoding reaches generate (sampling at 0.7, top_p 0.9, top_k 20, 512
    tokens, seed 42 + pass, images before the text), and known answers give
    the exact 0-25 -> 0-10 arithmetic; the random model's own answers give
    null with a reason per pass."""
    import torch

    from editmetrics.judges import local_backends

    base, recs = records
    (noise,) = score_records(recs, ["editscore(passes=2)"], base_dir=str(base), settings=tf_settings(tiny_qwen))
    key = "editscore(passes=2)"
    assert noise["scores"][key] is None and "SC pass 1:" in noise["errors"][key]

    seen = []
    answers = {(True, 42): [20, 15], (False, 42): [18, 22], (True, 43): [25, 10], (False, 43): [10, 12]}

    # image-pad tokens of one image: the PQ request has one, the SC request two
    backend = local_backends.TransformersBackend({"judge_model": tiny_qwen})
    _, processor = backend._load()
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    one = backend.prompt_inputs("x", [np.asarray(photo("coffee"), dtype=np.float32) / 255])
    pads_of_one = int((one["input_ids"] == pad).sum())

    def answer(input_ids, kwargs, processor):
        is_sc = input_ids[0].tolist().count(pad) > pads_of_one
        text = processor.decode(input_ids[0], skip_special_tokens=False)
        seed = torch.initial_seed()
        seen.append({"sc": is_sc, "seed": seed,
                     "images_first": text.index("<|image_pad|>") < text.index("You are a professional"),
                     **{k: kwargs.get(k) for k in ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens")}})
        return json.dumps({"reasoning": "r", "score": answers[(is_sc, seed)]})

    answer_with(monkeypatch, answer)
    (row,) = score_records(recs, ["editscore(passes=2)"], base_dir=str(base), settings=tf_settings(tiny_qwen))
    assert sorted((s["sc"], s["seed"]) for s in seen) == [(False, 42), (False, 43), (True, 42), (True, 43)]
    assert all(s["do_sample"] and s["temperature"] == 0.7 and s["top_p"] == 0.9 and s["top_k"] == 20
               and s["max_new_tokens"] == 512 and s["images_first"] for s in seen)
    # pass 1: following 20/2.5 = 8, consistency 6, PQ min(18, 22)/2.5 = 7.2, O = sqrt(min(20, 15)/2.5 * 7.2)
    # pass 2: following 10, consistency 4, PQ 4, O = sqrt(4 * 4)
    s = row["scores"]
    assert s[key + ".prompt_following"] == pytest.approx(9.0)
    assert s[key + ".consistency"] == pytest.approx(5.0)
    assert s[key + ".perceptual_quality"] == pytest.approx(5.6)
    assert s[key] == pytest.approx((math.sqrt(6 * 7.2) + 4.0) / 2)
