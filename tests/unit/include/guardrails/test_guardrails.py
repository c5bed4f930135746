from __future__ import annotations

import logging
import pickle

import pytest

from include.errors import AgentFlowError
from include.guardrails import (
    GuardrailHit,
    GuardrailPolicy,
    Guardrails,
    GuardrailViolation,
    InputPolicy,
    OutputPolicy,
    ToolsPolicy,
)


def test_input_at_the_limit_passes_and_one_more_char_is_refused() -> None:
    guard = Guardrails(GuardrailPolicy(input=InputPolicy(max_chars=40)))
    assert guard.check_input("x" * 40) == ("x" * 40, [])
    with pytest.raises(GuardrailViolation, match="the input is 41 characters long; the limit is 40") as info:
        guard.check_input("x" * 41)
    assert info.value.hit == GuardrailHit(
        rule="input_size", action="blocked", detail={"chars": 41, "max_chars": 40}
    )


def test_the_shipped_size_limit(guardrails: Guardrails) -> None:
    with pytest.raises(GuardrailViolation, match="input_size"):
        guardrails.check_input("word " * 5000)


def test_check_input_redacts_and_returns_every_hit(guardrails: Guardrails) -> None:
    text, hits = guardrails.check_input(
        "This shit is broken. Email me at jane.doe@example.com or call +1 650-253-0000."
    )
    assert text == "This shit is broken. Email me at [REDACTED:EMAIL] or call [REDACTED:PHONE]."
    assert [(h.rule, h.action) for h in hits] == [
        ("profanity", "flagged"),
        ("pii.email", "redacted"),
        ("pii.phone", "redacted"),
    ]


def test_check_output_redacts_unless_the_policy_says_not_to(guardrails: Guardrails) -> None:
    reply = "We refunded card 4111 1111 1111 1111; questions to billing@example.com."
    text, hits = guardrails.check_output(reply)
    assert text == "We refunded card [REDACTED:CARD]; questions to [REDACTED:EMAIL]."
    assert {h.rule for h in hits} == {"pii.card", "pii.email"}
    keep = Guardrails(GuardrailPolicy(output=OutputPolicy(redact_pii=False)))
    assert keep.check_output(reply) == (reply, [])


@pytest.mark.parametrize("method", ["check_input", "check_output", "redact"])
def test_non_string_text_is_a_type_error(guardrails: Guardrails, method: str) -> None:
    with pytest.raises(TypeError, match="text must be a str, not NoneType"):
        getattr(guardrails, method)(None)


def test_tool_allowlist() -> None:
    open_policy = Guardrails(GuardrailPolicy())
    open_policy.check_tool("anything")
    guard = Guardrails(GuardrailPolicy(tools=ToolsPolicy(allowed=("knowledge_search", "recall"))))
    guard.check_tool("knowledge_search")
    with pytest.raises(GuardrailViolation, match="tool 'publish_event' is not allowed") as info:
        guard.check_tool("publish_event")
    assert info.value.hit.rule == "tool_not_allowed"
    assert info.value.hit.detail == {"tool": "publish_event"}


def test_hits_are_logged(guardrails: Guardrails, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="include.guardrails"):
        guardrails.redact("jane.doe@example.com")
    assert "guardrail hit rule=pii.email action=redacted count=1" in caplog.text
    assert "jane.doe" not in caplog.text


def test_default_policy_and_bad_policy_argument() -> None:
    assert Guardrails().policy == GuardrailPolicy.load()
    with pytest.raises(TypeError, match="policy must be a GuardrailPolicy, not dict"):
        Guardrails({"input": {}})  # type: ignore[arg-type]


def test_violation_is_an_agentflow_error_and_survives_pickling() -> None:
    hit = GuardrailHit(rule="domain", action="blocked", detail={"host": "evil.com"})
    err = GuardrailViolation(hit, "host 'evil.com' is not on the domain allowlist")
    assert isinstance(err, AgentFlowError)
    assert str(err) == "guardrail 'domain' blocked: host 'evil.com' is not on the domain allowlist"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.hit, str(copy)) == (hit, str(err))


def test_hits_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="action"):
        GuardrailHit(rule="x", action="ignored")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        GuardrailHit(rule="x", action="flagged", count=0)
