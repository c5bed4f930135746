"""Drafts a triage result from retrieved passages alone: classification, passages, templates.

This is what the flagship DAG's agent answers with when no LLM connection is configured.
It never pretends to be a model: every reply it drafts says so.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

NO_LLM_NOTICE = (
    "[Drafted without an LLM: no model connection is configured, so this reply quotes the "
    "knowledge base. Configure the `agentflow_llm` connection to have a model write it.]"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CATEGORIES = {"billing", "shipping", "returns", "account", "technical"}


_HINT = re.compile(r"^Category:\s*(\w+)(?:\s*\(classifier score\s*([0-9.]+)\))?\s*$", re.MULTILINE)


def split_category_hint(prompt: str) -> tuple[str, str | None, float | None]:
    """Split a ``Category: <label> (classifier score <x>)`` line off a prompt.

    Returns the rest of the prompt, the label (``None`` without a hint or for an unknown
    label) and the classifier's score.
    """
    match = _HINT.search(prompt)
    if match is None:
        return prompt, None, None
    rest = (prompt[: match.start()] + prompt[match.end() :]).strip()
    label = match.group(1).lower()
    score = float(match.group(2)) if match.group(2) else None
    return rest, (label if label in _CATEGORIES | {"other"} else None), score


def extractive_triage(
    passages: Sequence[Mapping[str, Any]],
    *,
    category_hint: str | None = None,
    hint_score: float | None = None,
    max_sentences: int = 3,
    policy_name: str = "extractive-policy",
) -> dict[str, Any]:
    """Return a ``TriageResult``-shaped dict from ranked passages.

    The category is the classifier's ``category_hint`` when given, else a score-weighted
    vote of the passages' categories; the confidence is the classifier's score, else the
    category's share of the vote; the reply quotes the best passage of that category (the
    best passage overall when none has it).

    :param passages: ranked passages with ``doc_id``, ``title``, ``category``, ``text`` and ``score``.
    :param category_hint: the category an upstream classifier chose.
    :param hint_score: that classifier's score, 0..1.
    :param max_sentences: how many sentences of the best passage the reply quotes.
    :param policy_name: recorded in ``drafted_by``.
    """
    if not passages:
        return {
            "category": category_hint or "other",
            "reply": "Thank you for contacting us. A member of our support team will review your "
            f"request and get back to you.\n\n{NO_LLM_NOTICE}",
            "sources": [],
            "confidence": 0.0,
            "drafted_by": policy_name,
        }
    votes: dict[str, float] = defaultdict(float)
    for passage in passages:
        category = str(passage["category"])
        votes[category if category in _CATEGORIES else "other"] += float(passage["score"])
    category, weight = max(votes.items(), key=lambda item: item[1])
    confidence = weight / sum(votes.values())
    if category_hint is not None:
        category = category_hint
        confidence = hint_score if hint_score is not None else votes.get(category, 0.0) / sum(votes.values())
    best = next(
        (p for p in passages if (p["category"] if p["category"] in _CATEGORIES else "other") == category),
        passages[0],
    )
    sentences = _SENTENCE_END.split(str(best["text"]).strip())[:max_sentences]
    reply = (
        f'Thank you for contacting us about this. From our guide "{best["title"]}": '
        f"{' '.join(sentences)}\n\n{NO_LLM_NOTICE}"
    )
    return {
        "category": category,
        "reply": reply,
        "sources": [str(p["doc_id"]) for p in passages],
        "confidence": round(min(max(confidence, 0.0), 1.0), 3),
        "drafted_by": policy_name,
    }


def extractive_answer(passages: Sequence[Mapping[str, Any]], *, max_sentences: int = 3) -> str:
    """Return a plain-text answer quoting the best passages, for agents whose output is text.

    :param passages: ranked passages with ``doc_id``, ``title``, ``text`` and ``score``.
    :param max_sentences: how many sentences of each passage are quoted.
    """
    if not passages:
        return f"The knowledge base has nothing on this.\n\n{NO_LLM_NOTICE}"
    quoted = [
        f'From "{p["title"]}" ({p["doc_id"]}): '
        + " ".join(_SENTENCE_END.split(str(p["text"]).strip())[:max_sentences])
        for p in passages
    ]
    return "\n".join(quoted) + f"\n\n{NO_LLM_NOTICE}"
