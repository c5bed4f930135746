from __future__ import annotations

from include.events import TriageResult
from include.policies import NO_LLM_NOTICE, extractive_triage


def _passage(doc_id: str, category: str, score: float, text: str = "First. Second. Third. Fourth.") -> dict:
    return {"doc_id": doc_id, "title": doc_id.title(), "category": category, "text": text, "score": score}


def test_category_is_the_score_weighted_vote() -> None:
    result = extractive_triage(
        [_passage("a", "shipping", 3.0), _passage("b", "billing", 2.0), _passage("c", "billing", 2.0)]
    )
    assert result["category"] == "billing"
    assert result["confidence"] == round(4.0 / 7.0, 3)
    assert result["sources"] == ["a", "b", "c"]
    # The reply quotes the best passage of the winning category, and says no LLM wrote it.
    assert 'From our guide "B"' in result["reply"]
    assert result["reply"].endswith(NO_LLM_NOTICE)
    TriageResult.model_validate(result)


def test_reply_quotes_at_most_max_sentences() -> None:
    result = extractive_triage([_passage("a", "returns", 1.0)], max_sentences=2)
    assert "First. Second." in result["reply"]
    assert "Third" not in result["reply"]


def test_unknown_categories_vote_as_other() -> None:
    result = extractive_triage([_passage("a", "legal", 5.0), _passage("b", "billing", 1.0)])
    assert result["category"] == "other"
    TriageResult.model_validate(result)


def test_no_passages_gives_a_holding_reply() -> None:
    result = extractive_triage([])
    assert result["category"] == "other"
    assert result["confidence"] == 0.0
    assert result["sources"] == []
    assert NO_LLM_NOTICE in result["reply"]
    TriageResult.model_validate(result)


def test_the_classifiers_category_hint_wins_over_the_passage_vote() -> None:
    from include.policies.extractive import extractive_triage, split_category_hint

    query, hint, score = split_category_hint(
        "Category: Shipping (classifier score 0.71)\nSubject: late parcel"
    )
    assert (query, hint, score) == ("Subject: late parcel", "shipping", 0.71)
    assert split_category_hint("no hint here") == ("no hint here", None, None)
    assert split_category_hint("Category: weather")[1] is None  # not a category we know
    passages = [
        {
            "doc_id": "a",
            "title": "Refunds",
            "category": "billing",
            "text": "Refunds take 5 days.",
            "score": 0.9,
        },
        {
            "doc_id": "b",
            "title": "Delays",
            "category": "shipping",
            "text": "Parcels can be late.",
            "score": 0.2,
        },
    ]
    result = extractive_triage(passages, category_hint="shipping", hint_score=0.71)
    assert (result["category"], result["confidence"]) == ("shipping", 0.71)
    assert '"Delays"' in result["reply"]  # the best passage of the hinted category is quoted
