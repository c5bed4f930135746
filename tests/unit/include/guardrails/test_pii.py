from __future__ import annotations

import json

import pytest

from include.guardrails import GuardrailPolicy, Guardrails, PiiPolicy


def only(kind: str, regions: tuple[str, ...] = ("US", "GB", "DE", "FR")) -> Guardrails:
    return Guardrails(GuardrailPolicy(pii=PiiPolicy(redact=(kind,), phone_regions=regions)))  # type: ignore[arg-type]


def rules(hits: list) -> dict[str, int]:
    return {hit.rule: hit.count for hit in hits}


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "378282246310005",
        "6011 0009 9013 9424",
    ],
)
def test_luhn_valid_card_numbers_are_redacted(card: str) -> None:
    text, hits = only("card").redact(f"my card is {card}, thanks")
    assert text == "my card is [REDACTED:CARD], thanks"
    assert rules(hits) == {"pii.card": 1}
    assert hits[0].action == "redacted"


@pytest.mark.parametrize(
    "digits",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "5555555555554445",  # fails Luhn
        "424242424242",  # passes Luhn but only 12 digits
        "41111111111111111111",  # 20 digits: not a card number
        "order 12345",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",  # Luhn-valid digits, but not printed like a card
    ],
)
def test_digit_runs_that_are_not_card_numbers_are_kept(digits: str) -> None:
    text, hits = only("card").redact(f"ref {digits} end")
    assert text == f"ref {digits} end"
    assert hits == []


def test_a_card_followed_by_another_number_is_still_found() -> None:
    text, hits = only("card").redact("card 4111 1111 1111 1111 2024 expiry")
    assert text == "card [REDACTED:CARD] 2024 expiry"
    assert rules(hits) == {"pii.card": 1}


@pytest.mark.parametrize(
    "iban", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"]
)
def test_valid_ibans_are_redacted(iban: str) -> None:
    text, hits = only("iban").redact(f"Please refund to {iban} IBAN today.")
    assert text == "Please refund to [REDACTED:IBAN] IBAN today."
    assert rules(hits) == {"pii.iban": 1}


@pytest.mark.parametrize(
    "iban", ["DE88 3704 0044 0532 0130 00", "GB82WEST12345698765431", "XX12345678901234"]
)
def test_ibans_with_a_wrong_checksum_or_country_are_kept(iban: str) -> None:
    text, hits = only("iban").redact(f"Please refund to {iban} today.")
    assert text == f"Please refund to {iban} today."
    assert hits == []


def test_phone_numbers_in_text_are_redacted() -> None:
    text, hits = only("phone").redact("Call +1 650-253-0000 or 020 7946 0958, or +49 30 901820.")
    assert text == "Call [REDACTED:PHONE] or [REDACTED:PHONE], or [REDACTED:PHONE]."
    assert rules(hits) == {"pii.phone": 3}


def test_national_formats_count_only_for_the_policys_regions() -> None:
    text, _ = only("phone", ("US",)).redact("London office: 020 7946 0958")
    assert text == "London office: 020 7946 0958"
    text, _ = only("phone", ("GB",)).redact("London office: 020 7946 0958")
    assert text == "London office: [REDACTED:PHONE]"


def test_numbers_that_are_not_phone_numbers_are_kept() -> None:
    source = "Order 12345 shipped on 2024-01-15 with Python 3.11.4 and 42 items."
    assert only("phone").redact(source) == (source, [])


def test_timestamps_are_not_phone_numbers() -> None:
    # "06.745461" alone is a valid German number; inside an ISO timestamp (an Airflow run id) it is not.
    source = "run manual__2026-11-21T03:15:06.745461+00:00 at 2026-11-21 09:30:00Z"
    assert only("phone", ("US", "GB", "DE", "FR")).redact(source) == (source, [])
    text, _ = only("phone", ("DE",)).redact("ruf an: 06 745461")
    assert text == "ruf an: [REDACTED:PHONE]"


@pytest.mark.parametrize(
    "email", ["jane.doe@example.com", "Jane+tag@sub.example.co.uk", "o'brien@example.ie"]
)
def test_emails_are_redacted(email: str) -> None:
    text, hits = only("email").redact(f"write to {email}.")
    assert text == "write to [REDACTED:EMAIL]."
    assert rules(hits) == {"pii.email": 1}


@pytest.mark.parametrize(
    "source", ["ping @support now", "user@localhost", "a..b@example.com", "5 @ 3 dollars"]
)
def test_things_that_are_not_emails_are_kept(source: str) -> None:
    assert only("email").redact(source) == (source, [])


def test_all_kinds_together_with_counts_and_no_raw_values_in_hits(guardrails: Guardrails) -> None:
    source = (
        "I am jane.doe@example.com (also jd@example.org), phone +1 650-253-0000. "
        "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00."
    )
    text, hits = guardrails.redact(source)
    assert text == (
        "I am [REDACTED:EMAIL] (also [REDACTED:EMAIL]), phone [REDACTED:PHONE]. "
        "Card [REDACTED:CARD], IBAN [REDACTED:IBAN]."
    )
    assert rules(hits) == {"pii.email": 2, "pii.iban": 1, "pii.card": 1, "pii.phone": 1}
    dumped = json.dumps([hit.model_dump() for hit in hits])
    for raw in ("jane.doe", "650-253", "4111", "DE89"):
        assert raw not in dumped


def test_kinds_not_in_the_policy_are_left_alone() -> None:
    source = "jane.doe@example.com 4111 1111 1111 1111"
    text, hits = only("card").redact(source)
    assert text == "jane.doe@example.com [REDACTED:CARD]"
    assert rules(hits) == {"pii.card": 1}


def test_redact_refuses_non_strings(guardrails: Guardrails) -> None:
    with pytest.raises(TypeError, match="text must be a str, not bytes"):
        guardrails.redact(b"jane@example.com")  # type: ignore[arg-type]


def test_a_long_text_without_pii_is_unchanged(guardrails: Guardrails) -> None:
    source = ("a" * 19000) + " @ " + ("b" * 900)
    assert guardrails.redact(source) == (source, [])
