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


def extractive_triage(
    passages: Sequence[Mapping[str, Any]], *, max_sentences: int = 3, policy_name: str = "extractive-policy"
) -> dict[str, Any]:
    """Return a ``TriageResult``-shaped dict from ranked passages.

    The category is a score-weighted vote of the passages' categories, the confidence that
    category's share of the total score, and the reply quotes the best passage.

    :param passages: ranked passages with ``doc_id``, ``title``, ``category``, ``text`` and ``score``.
    :param max_sentences: how many sentences of the best passage the reply quotes.
    :param policy_name: recorded in ``drafted_by``.
    """
    if not passages:
        return {
            "category": "other",
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
    best = next(
        p for p in passages if (p["category"] if p["category"] in _CATEGORIES else "other") == category
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
        "confidence": round(weight / sum(votes.values()), 3),
        "drafted_by": policy_name,
    }
