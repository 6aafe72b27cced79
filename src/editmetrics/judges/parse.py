"""Strict parsing of a judge's answer ``{"score": [...], "reasoning": "..."}``.

Unlike VIEScore's ``mllm_output_to_dict`` nothing is ever guessed: VIEScore
draws a random score after a failed retry, and GEdit-Bench scores an empty
(content-filtered) answer as 0. Here such an answer raises ``AnswerError``
whose message is recorded as the reason, and the score is null.

Accepted: the JSON object anywhere in the text (code fences and text around it
are ignored), VIEScore's ``||V^=^V||`` delimiters, a bare number instead of a
list (VIEScore wraps it too). Each score must be a number in [0, 10].
"""

from __future__ import annotations

import json
import math
import re

SCALE = (0.0, 10.0)

# Phrases of a refusal; checked only when no valid JSON answer was found.
_REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I can(?:no|')t (?:help|assist|evaluate|provide|comply)|I cannot|I'm unable|"
    r"I am unable|unable to (?:help|assist|evaluate)|against (?:my|the) (?:policy|policies|guidelines)|"
    r"content (?:policy|filter))",
    re.IGNORECASE,
)


class AnswerError(ValueError):
    """The answer holds no usable score; the message is the recorded reason."""


def _candidates(text: str):
    """JSON object texts in ``text``: between delimiters, fenced, or balanced braces."""
    if text.count("||V^=^V||") == 2:
        start = text.find("||V^=^V||") + len("||V^=^V||")
        yield text[start:text.rfind("||V^=^V||")]
    for match in re.finditer(r"```(?:json)?\s*(.*?)```", text, re.DOTALL):
        yield match.group(1)
    depth, start = 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                yield text[start:i + 1]


def parse_scores(text: str | None, n_expected: int | None = None,
                 scale: tuple[float, float] = SCALE) -> tuple[list[float], str | None]:
    """(scores, reasoning) from a judge's answer, each in ``scale``; raises ``AnswerError``."""
    if text is None or not text.strip():
        raise AnswerError("empty answer")
    found_json = False
    for chunk in _candidates(text):
        try:
            obj = json.loads(chunk.strip())
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or "score" not in obj:
            continue
        found_json = True
        scores = obj["score"]
        if not isinstance(scores, list):
            scores = [scores]
        if not scores:
            raise AnswerError("answer has an empty score list")
        out = []
        for value in scores:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise AnswerError(f"score {value!r} is not a number")
            if not scale[0] <= value <= scale[1]:
                raise AnswerError(f"score {value!r} is outside [{scale[0]:g}, {scale[1]:g}]")
            out.append(float(value))
        if n_expected is not None and len(out) != n_expected:
            raise AnswerError(f"expected {n_expected} scores, got {len(out)}: {out}")
        reasoning = obj.get("reasoning")
        return out, reasoning if isinstance(reasoning, str) else None
    if not found_json and _REFUSAL.search(text):
        raise AnswerError(f"refusal: {_clip(text)}")
    raise AnswerError(f"unparseable answer (no JSON object with 'score'): {_clip(text)}")


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."
