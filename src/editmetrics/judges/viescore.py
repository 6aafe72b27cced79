"""``viescore``: VIEScore's semantic consistency (SC), perceptual quality (PQ)
and overall score O = sqrt(SC * PQ), on VIEScore's 0-10 scale, by a VLM judge.

Per pass: SC = min of the SC answer's scores (editing success, over-editing),
PQ = min of the PQ answer's scores (naturalness, artifacts), O = sqrt(SC * PQ),
as VIEScore's ``evaluate``. The SC request carries the instruction and two
images (source, then edited); the PQ request carries the edited image only.

With ``judge_passes=N`` each request is sampled N times; the reported SC, PQ
and O are the means over the passes (O is the mean of the per-pass O), and the
details keep their spread. A pass whose answer is a refusal, unparseable, or
whose request failed makes that score null with the reason: no pass is dropped
and nothing is guessed.
"""

from __future__ import annotations

import math

import numpy as np

from ..metric import Metric, MetricError, Param, Score
from .parse import AnswerError, parse_scores
from .prompts import load_prompt
from .service import judge_service

PROMPTS = {"v1": ("viescore_tie_sc_v1", "viescore_pq_v1")}


class VIEScore(Metric):
    id = "viescore"
    description = "VIEScore O = sqrt(SC*PQ) on 0-10 by a VLM judge (judge_backend/judge_model/judge_url)"
    higher_is_better = True
    range = (0.0, 10.0)
    fields = ("edited", "instruction")
    reference = "source"
    params = {"prompt": Param("v1", "prompt version (files prompts/viescore_*_<version>.txt)",
                              choices=tuple(PROMPTS))}

    def setup(self, ctx) -> None:
        sc_name, pq_name = PROMPTS[self.options["prompt"]]
        self.sc_prompt, self.pq_prompt = load_prompt(sc_name), load_prompt(pq_name)
        self.service = judge_service(ctx)
        self.service.identity()  # a misconfigured backend fails every record with its reason
        self._keys: dict[str, tuple[list[str], list[str]]] = {}

    def prepare(self, rec) -> None:
        source, edited = rec.image(self.ref), rec.image("edited")
        sc_text = self.sc_prompt.fill(instruction=str(rec.get("instruction")))
        passes = range(self.service.passes)
        sc = [self.service.request(sc_text, [source, edited], p) for p in passes]
        pq = [self.service.request(self.pq_prompt.text, [edited], p) for p in passes]
        self._keys[rec.id] = (sc, pq)

    def compute(self, rec) -> Score:
        keys = self._keys.pop(rec.id, None)
        if keys is None:
            raise MetricError("viescore: no judge request was queued for this record")
        sc_passes = [self._judge(k, i) for i, k in enumerate(keys[0])]
        pq_passes = [self._judge(k, i) for i, k in enumerate(keys[1])]
        sc, sc_err = _combine(sc_passes, "SC")
        pq, pq_err = _combine(pq_passes, "PQ")
        overall = None
        if sc_err is None and pq_err is None:
            per_pass = [math.sqrt(a["value"] * b["value"]) for a, b in zip(sc_passes, pq_passes)]
            overall = float(np.mean(per_pass))
        details = {
            "judge": self.service.identity(),
            "prompts": {"sc": {"name": self.sc_prompt.name, "sha256": self.sc_prompt.sha256},
                        "pq": {"name": self.pq_prompt.name, "sha256": self.pq_prompt.sha256}},
            "decoding": self.service.decoding,
            "passes": len(sc_passes),
            "sc": sc_passes,
            "pq": pq_passes,
        }
        if len(sc_passes) > 1:
            details["spread"] = {
                "sc": _spread([p.get("value") for p in sc_passes]),
                "pq": _spread([p.get("value") for p in pq_passes]),
                "o": _spread([math.sqrt(a["value"] * b["value"]) if a.get("value") is not None
                              and b.get("value") is not None else None for a, b in zip(sc_passes, pq_passes)]),
            }
        reason = "; ".join(e for e in (sc_err, pq_err) if e) or None
        return Score(overall, components={"sc": sc, "pq": pq}, details=details, reason=reason)

    def _judge(self, key: str, index: int) -> dict:
        outcome = self.service.result(key)
        entry = {"pass": index, "answer": outcome.text, "finish_reason": outcome.finish_reason,
                 "cached": outcome.cached}
        if outcome.error is not None:
            entry["error"] = outcome.error
            return entry
        if outcome.finish_reason in ("content_filter", "refusal") and not _has_score(outcome.text):
            entry["error"] = f"refusal (finish_reason={outcome.finish_reason})"
            return entry
        try:
            scores, reasoning = parse_scores(outcome.text)
        except AnswerError as exc:
            entry["error"] = str(exc)
            return entry
        entry.update(scores=scores, reasoning=reasoning, value=min(scores))
        return entry


def _has_score(text: str | None) -> bool:
    try:
        parse_scores(text)
    except AnswerError:
        return False
    return True


def _combine(passes: list[dict], name: str) -> tuple[float | None, str | None]:
    errors = [f"{name} pass {p['pass'] + 1}: {p['error']}" if len(passes) > 1 else f"{name}: {p['error']}"
              for p in passes if "error" in p]
    if errors:
        return None, "; ".join(errors)
    return float(np.mean([p["value"] for p in passes])), None


def _spread(values: list) -> dict:
    ok = [v for v in values if v is not None]
    if not ok:
        return {"n": 0, "std": None, "min": None, "max": None}
    return {"n": len(ok), "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0,
            "min": float(min(ok)), "max": float(max(ok))}
