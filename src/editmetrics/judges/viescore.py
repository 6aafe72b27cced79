"""``viescore`` and ``editscore``: SC/PQ judges on the judge service.

``viescore``: VIEScore's semantic consistency (SC), perceptual quality (PQ)
and overall score O = sqrt(SC * PQ), on VIEScore's 0-10 scale. Per pass:
SC = min of the SC answer's scores (editing success, over-editing), PQ = min of
the PQ answer's scores (naturalness, artifacts), O = sqrt(SC * PQ), as
VIEScore's ``evaluate``. The SC request carries the instruction and two images
(source, then edited); the PQ request carries the edited image only.

``editscore``: EditScore's prompts (reasoning first, scores on 0-25) and
decoding (images first, temperature 0.7, top_p 0.9, top_k 20, 512 tokens, seed
42 + pass), for EditScore's fine-tuned Qwen2.5-VL (LoRA merged, or served with
it). Per pass: prompt_following = SC[0] / 2.5, consistency = SC[1] / 2.5,
perceptual_quality = min(PQ) / 2.5, overall = sqrt(min(SC) / 2.5 *
perceptual_quality); each averaged over ``passes`` (Avg@k); ``reduction=
average_first`` gives sqrt(mean prompt_following * mean perceptual_quality)
as EditScore's option of that name.

With several passes the details keep the spread. A pass whose answer is a
refusal, unparseable, or whose request failed makes that score null with the
reason: no pass is dropped and nothing is guessed (EditScore's batch path
substitutes the mid-scale value; VIEScore's draws a random one).
"""

from __future__ import annotations

import math

import numpy as np

from editmetrics.contract.metric import Metric, MetricError, Param, Score
from editmetrics.judges.parse import AnswerError, parse_scores
from editmetrics.judges.prompts import load_prompt
from editmetrics.judges.service import judge_service


class _SCPQJudge(Metric):
    """Two requests per pass (SC: source + edited + instruction; PQ: edited)."""

    higher_is_better = True
    range = (0.0, 10.0)
    fields = ("edited", "instruction")
    reference = "source"
    PROMPTS: dict[str, tuple[str, str]] = {}
    SCALE = 10.0  # the answer's scale; values are reported on 0-10

    def decoding(self) -> dict:
        """This metric's decoding defaults over the run's judge_* settings."""
        return {}

    def passes(self) -> int:
        return self.service.passes

    def setup(self, ctx) -> None:
        sc_name, pq_name = self.PROMPTS[self.options["prompt"]]
        self.sc_prompt, self.pq_prompt = load_prompt(sc_name), load_prompt(pq_name)
        self.service = judge_service(ctx)
        self.service.identity()  # a misconfigured backend fails every record with its reason
        self._keys: dict[str, tuple[list[str], list[str]]] = {}

    def prepare(self, rec) -> None:
        source, edited = rec.image(self.ref), rec.image("edited")
        sc_text = self.sc_prompt.fill(instruction=str(rec.get("instruction")))
        dec = self.decoding()
        passes = range(self.passes())
        sc = [self.service.request(sc_text, [source, edited], p, dec) for p in passes]
        pq = [self.service.request(self.pq_prompt.text, [edited], p, dec) for p in passes]
        self._keys[rec.id] = (sc, pq)

    def compute(self, rec) -> Score:
        keys = self._keys.pop(rec.id, None)
        if keys is None:
            raise MetricError(f"{self.id}: no judge request was queued for this record")
        sc_passes = [self._judge(k, i) for i, k in enumerate(keys[0])]
        pq_passes = [self._judge(k, i) for i, k in enumerate(keys[1])]
        value, components, spread, reason = self.combine(sc_passes, pq_passes)
        decoding = self.service.decoding_for(self.decoding())
        details = {
            "judge": self.service.identity(),
            "prompts": {"sc": {"name": self.sc_prompt.name, "sha256": self.sc_prompt.sha256},
                        "pq": {"name": self.pq_prompt.name, "sha256": self.pq_prompt.sha256}},
            "decoding": decoding,
            "passes": len(sc_passes),
            "sc": sc_passes,
            "pq": pq_passes,
        }
        if decoding.get("seed") is not None and len(sc_passes) > 1:
            details["seed_per_pass"] = "seed + pass index"
        if len(sc_passes) > 1:
            details["spread"] = spread
        return Score(value, components=components, details=details, reason=reason)

    def _judge(self, key: str, index: int) -> dict:
        outcome = self.service.result(key)
        entry = {"pass": index, "answer": outcome.text, "finish_reason": outcome.finish_reason,
                 "cached": outcome.cached}
        if outcome.error is not None:
            entry["error"] = outcome.error
            return entry
        try:
            scores, reasoning = parse_scores(outcome.text, scale=(0.0, self.SCALE))
        except AnswerError as exc:
            refused = outcome.finish_reason in ("content_filter", "refusal")
            entry["error"] = f"refusal (finish_reason={outcome.finish_reason})" if refused else str(exc)
            return entry
        entry.update(scores=scores, reasoning=reasoning, value=min(scores) * 10.0 / self.SCALE)
        return entry

    def combine(self, sc_passes, pq_passes):
        sc, sc_err = _mean_of(sc_passes, "SC", "value")
        pq, pq_err = _mean_of(pq_passes, "PQ", "value")
        overall = None
        per_pass_o = [math.sqrt(a["value"] * b["value"]) if "value" in a and "value" in b else None
                      for a, b in zip(sc_passes, pq_passes)]
        if sc_err is None and pq_err is None:
            overall = float(np.mean(per_pass_o))
        spread = {"sc": _spread([p.get("value") for p in sc_passes]),
                  "pq": _spread([p.get("value") for p in pq_passes]), "o": _spread(per_pass_o)}
        reason = "; ".join(e for e in (sc_err, pq_err) if e) or None
        return overall, {"sc": sc, "pq": pq}, spread, reason


class VIEScore(_SCPQJudge):
    id = "viescore"
    description = "VIEScore O = sqrt(SC*PQ) on 0-10 by a VLM judge (judge_backend/judge_model/judge_url)"
    PROMPTS = {"v1": ("viescore_tie_sc_v1", "viescore_pq_v1")}
    params = {"prompt": Param("v1", "prompt version (files prompts/viescore_*_<version>.txt)", choices=("v1",))}


class EditScore(_SCPQJudge):
    id = "editscore"
    description = "EditScore overall (0-10) by EditScore's fine-tuned VLM on the judge backends; Avg@passes"
    PROMPTS = {"v1": ("editscore_sc_v1", "editscore_pq_v1")}
    SCALE = 25.0
    params = {
        "prompt": Param("v1", "prompt version (files prompts/editscore_*_<version>.txt)", choices=("v1",)),
        "passes": Param(1, "samples per request, averaged (EditScore's num_pass; Avg@4 in its paper)"),
        "temperature": Param(0.7, "sampling temperature (EditScore's default)"),
        "seed": Param(42, "seed of pass 0; pass i uses seed + i (EditScore's convention)"),
        "reduction": Param("average_last", "average_last: mean of per-pass overall; average_first: "
                           "sqrt(mean prompt_following * mean perceptual_quality)",
                           choices=("average_last", "average_first")),
    }

    def decoding(self) -> dict:
        # EditScore's sampling (qwen25vl / qwen25vl_vllm tools): images before the text
        return {"temperature": float(self.options["temperature"]), "top_p": 0.9, "top_k": 20, "max_tokens": 512,
                "seed": int(self.options["seed"]), "images_first": True}

    def passes(self) -> int:
        return max(1, int(self.options["passes"]))

    def combine(self, sc_passes, pq_passes):
        for p in sc_passes:
            if "scores" in p and len(p["scores"]) < 2:
                p["error"] = f"expected 2 SC scores (following, consistency), got {p['scores']}"
                del p["value"]
        for p in sc_passes:
            if "scores" in p and "error" not in p:
                p["prompt_following"] = p["scores"][0] / 2.5
                p["consistency"] = p["scores"][1] / 2.5
        pf, pf_err = _mean_of(sc_passes, "SC", "prompt_following")
        cons, _ = _mean_of(sc_passes, "SC", "consistency")
        pq, pq_err = _mean_of(pq_passes, "PQ", "value")
        per_pass_o = [math.sqrt(a["value"] * b["value"]) if "value" in a and "value" in b else None
                      for a, b in zip(sc_passes, pq_passes)]
        overall = None
        if pf_err is None and pq_err is None:
            if self.options["reduction"] == "average_first":
                overall = math.sqrt(pf * pq)
            else:
                overall = float(np.mean(per_pass_o))
        spread = {"prompt_following": _spread([p.get("prompt_following") for p in sc_passes]),
                  "perceptual_quality": _spread([p.get("value") for p in pq_passes]), "overall": _spread(per_pass_o)}
        reason = "; ".join(e for e in (pf_err, pq_err) if e) or None
        return overall, {"prompt_following": pf, "consistency": cons, "perceptual_quality": pq}, spread, reason


def _mean_of(passes: list[dict], name: str, field: str) -> tuple[float | None, str | None]:
    errors = [f"{name} pass {p['pass'] + 1}: {p['error']}" if len(passes) > 1 else f"{name}: {p['error']}"
              for p in passes if "error" in p]
    if errors:
        return None, "; ".join(errors)
    return float(np.mean([p[field] for p in passes])), None


def _spread(values: list) -> dict:
    ok = [v for v in values if v is not None]
    if not ok:
        return {"n": 0, "std": None, "min": None, "max": None}
    return {"n": len(ok), "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0,
            "min": float(min(ok)), "max": float(max(ok))}
