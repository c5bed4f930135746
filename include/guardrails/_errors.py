"""What a guardrail reports: a hit (counted, audited) and the violation that stops a call."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from include.errors import AgentFlowError

#: The rules a hit can name (``pii.name`` stays unused until an offline NER model is installed).
RULES = (
    "pii.email",
    "pii.phone",
    "pii.card",
    "pii.iban",
    "pii.name",
    "profanity",
    "input_size",
    "domain",
    "sql",
    "rate_limit",
    "tool_not_allowed",
)

HitAction = Literal["redacted", "blocked", "flagged"]


class GuardrailHit(BaseModel):
    """One guardrail firing: which rule, what it did, how often, and details safe to log.

    :param rule: the rule, one of :data:`RULES` (``pii.email``, ``profanity``, ``domain`` ...).
    :param action: ``redacted`` (the text was changed), ``blocked`` (the call was refused,
        see :class:`GuardrailViolation`) or ``flagged`` (let through, recorded).
    :param count: how many times the rule fired in one text (e.g. three emails redacted).
    :param detail: JSON-able details for the audit trail. Never holds the raw PII or secret.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(min_length=1)
    action: HitAction
    count: int = Field(default=1, ge=1)
    detail: dict[str, Any] = Field(default_factory=dict)


class GuardrailViolation(AgentFlowError):
    """A guardrail refused an input, output, URL, SQL statement, tool call or model request.

    :param hit: the hit that caused it (``action`` is ``blocked``), for the audit trail.
    :param reason: what was wrong, in words; the message is ``guardrail <rule> blocked: <reason>``.
    """

    def __init__(self, hit: GuardrailHit, reason: str) -> None:
        self.hit = hit
        self.reason = reason
        super().__init__(f"guardrail {hit.rule!r} {hit.action}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.hit, self.reason))
