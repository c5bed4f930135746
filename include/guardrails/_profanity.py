"""Profanity scoring with ``alt-profanity-check``: a linear SVM on TF-IDF, trained and shipped on PyPI.

The model is loaded (joblib, scikit-learn) on first use, once per process. A long text is
scored sentence by sentence and its score is the highest one, so one profane sentence is
not diluted by a page of polite ones.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from include.guardrails._errors import GuardrailHit, GuardrailViolation
from include.guardrails._policy import ProfanityPolicy

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_lock = threading.Lock()
_predict_prob: Callable[[Sequence[str]], Any] | None = None


def _classifier() -> Callable[[Sequence[str]], Any]:
    global _predict_prob
    with _lock:
        if _predict_prob is None:
            try:
                from profanity_check import predict_prob
            except ImportError as err:
                raise ImportError(
                    "the profanity guardrail needs alt-profanity-check (pip install alt-profanity-check), "
                    "or set profanity.action: off in the guardrail policy"
                ) from err
            _predict_prob = predict_prob
        return _predict_prob


def sentences(text: str) -> list[str]:
    """The non-empty sentences (and lines) of ``text``."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def profanity_score(text: str) -> tuple[float, int, int]:
    """Score ``text``: ``(highest sentence probability, sentences scored, index of the worst)``."""
    parts = sentences(text)
    if not parts:
        return 0.0, 0, -1
    probabilities = [float(p) for p in _classifier()(parts)]
    worst = max(range(len(parts)), key=probabilities.__getitem__)
    return probabilities[worst], len(parts), worst


def check_profanity(text: str, policy: ProfanityPolicy, *, where: str) -> GuardrailHit | None:
    """Apply a profanity rule: ``None`` when clean or off, a ``flagged`` hit, or raise when blocking.

    :param text: the text to judge.
    :param policy: the rule (action and threshold).
    :param where: ``input`` or ``output``, recorded in the hit.
    :raises GuardrailViolation: rule ``profanity`` when the action is ``block`` and the score
        reaches the threshold.
    """
    if policy.action == "off":
        return None
    score, scored, worst = profanity_score(text)
    if score < policy.threshold:
        return None
    detail = {
        "where": where,
        "probability": round(score, 4),
        "threshold": policy.threshold,
        "sentence_index": worst,
        "sentences": scored,
    }
    if policy.action == "block":
        hit = GuardrailHit(rule="profanity", action="blocked", detail=detail)
        raise GuardrailViolation(
            hit,
            f"the {where} is profane (sentence {worst + 1} of {scored} scored {score:.2f}, "
            f"threshold {policy.threshold})",
        )
    return GuardrailHit(rule="profanity", action="flagged", detail=detail)
