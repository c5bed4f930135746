from __future__ import annotations

import pytest

from include.guardrails import (
    GuardrailPolicy,
    Guardrails,
    GuardrailViolation,
    InputPolicy,
    OutputPolicy,
    PiiPolicy,
    ProfanityPolicy,
)

PROFANE = [
    "You are a fucking idiot and your product is shit.",
    "This is bullshit, I want my money back.",
]
CLEAN = [
    "Thank you for your help, my order arrived on time.",
    "I need to assess the Scunthorpe shipment before Friday.",
    "The cocktail party was a blast.",
    "My package never arrived and I am very frustrated.",
]


def with_profanity(action: str, threshold: float = 0.8) -> Guardrails:
    rule = ProfanityPolicy(action=action, threshold=threshold)  # type: ignore[arg-type]
    return Guardrails(
        GuardrailPolicy(
            input=InputPolicy(profanity=rule), output=OutputPolicy(profanity=rule), pii=PiiPolicy()
        )
    )


@pytest.mark.parametrize("sentence", PROFANE)
def test_profane_sentences_are_flagged(sentence: str) -> None:
    text, hits = with_profanity("flag").check_input(sentence)
    assert text == sentence
    assert [(h.rule, h.action) for h in hits] == [("profanity", "flagged")]
    assert hits[0].detail["probability"] >= 0.8
    assert hits[0].detail["where"] == "input"


@pytest.mark.parametrize("sentence", CLEAN)
def test_clean_sentences_are_not_flagged(sentence: str) -> None:
    assert with_profanity("flag").check_input(sentence) == (sentence, [])


def test_one_profane_sentence_in_a_long_polite_text_is_found() -> None:
    text = " ".join(CLEAN * 20) + " " + PROFANE[1] + " " + " ".join(CLEAN * 20)
    _, hits = with_profanity("flag").check_input(text)
    assert [h.rule for h in hits] == ["profanity"]
    assert hits[0].detail["sentence_index"] == len(CLEAN) * 20


def test_block_raises_with_the_hit() -> None:
    with pytest.raises(
        GuardrailViolation, match="guardrail 'profanity' blocked: the input is profane"
    ) as info:
        with_profanity("block").check_input(PROFANE[0])
    assert info.value.hit.rule == "profanity"
    assert info.value.hit.action == "blocked"
    assert "fucking" not in str(info.value)


def test_block_lets_clean_text_through() -> None:
    assert with_profanity("block").check_input(CLEAN[0]) == (CLEAN[0], [])


def test_off_does_not_score() -> None:
    assert with_profanity("off").check_input(PROFANE[0]) == (PROFANE[0], [])


def test_threshold_decides() -> None:
    sentence = "What the hell is wrong with this damn app?"  # scores about 0.94
    assert with_profanity("flag", threshold=0.99).check_input(sentence)[1] == []
    assert len(with_profanity("flag", threshold=0.5).check_input(sentence)[1]) == 1


def test_outputs_are_judged_too() -> None:
    _, hits = with_profanity("flag").check_output(PROFANE[1])
    assert [(h.rule, h.detail["where"]) for h in hits] == [("profanity", "output")]
    with pytest.raises(GuardrailViolation, match="the output is profane"):
        with_profanity("block").check_output(PROFANE[1])
