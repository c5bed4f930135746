"""The guardrails of one policy, applied to inputs, outputs, URLs, SQL and tool calls."""

from __future__ import annotations

import logging

from include.guardrails._errors import GuardrailHit, GuardrailViolation
from include.guardrails._pii import redact as _redact
from include.guardrails._policy import GuardrailPolicy
from include.guardrails._profanity import check_profanity
from include.guardrails._sql import check_sql as _check_sql
from include.guardrails._urls import check_url as _check_url

log = logging.getLogger(__name__)


def _text(value: object, name: str = "text") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def _log_hits(hits: list[GuardrailHit]) -> None:
    for hit in hits:
        log.info("guardrail hit rule=%s action=%s count=%d", hit.rule, hit.action, hit.count)


class Guardrails:
    """Apply a :class:`GuardrailPolicy`. Cheap to build and to call; build one per task.

    Hits are returned (and logged at INFO) for the caller to audit and count; a refusal is a
    :class:`GuardrailViolation` carrying its hit. Redaction and profanity scoring are pure
    functions of the text, so one instance may be shared by threads.

    :param policy: the policy; ``None`` loads the default (``GuardrailPolicy.load()``).
    """

    def __init__(self, policy: GuardrailPolicy | None = None) -> None:
        if policy is None:
            policy = GuardrailPolicy.load()
        elif not isinstance(policy, GuardrailPolicy):
            raise TypeError(f"policy must be a GuardrailPolicy, not {type(policy).__name__}")
        self.policy = policy

    def redact(self, text: str) -> tuple[str, list[GuardrailHit]]:
        """Replace the policy's PII kinds by ``[REDACTED:<KIND>]`` placeholders.

        :param text: the text to redact.
        :return: the redacted text and one ``redacted`` hit per kind found (with its count).
        :raises TypeError: ``text`` is not a string.
        """
        text = _text(text)
        redacted, hits = _redact(text, self.policy.pii.redact, self.policy.pii.phone_regions)
        _log_hits(hits)
        return redacted, hits

    def check_input(self, text: str) -> tuple[str, list[GuardrailHit]]:
        """Check text before it goes to a model: size, profanity, then PII redaction.

        :param text: the prompt or user text.
        :return: the text to send (redacted) and the hits.
        :raises TypeError: ``text`` is not a string.
        :raises GuardrailViolation: rule ``input_size`` when longer than ``input.max_chars``;
            rule ``profanity`` when the policy blocks profane input.
        """
        text = _text(text)
        limit = self.policy.input.max_chars
        if len(text) > limit:
            hit = GuardrailHit(
                rule="input_size", action="blocked", detail={"chars": len(text), "max_chars": limit}
            )
            log.info("guardrail hit rule=input_size action=blocked chars=%d max=%d", len(text), limit)
            raise GuardrailViolation(hit, f"the input is {len(text)} characters long; the limit is {limit}")
        hits: list[GuardrailHit] = []
        flagged = self._profanity(text, "input")
        if flagged is not None:
            hits.append(flagged)
        redacted, pii_hits = self.redact(text)
        return redacted, hits + pii_hits

    def check_output(self, text: str) -> tuple[str, list[GuardrailHit]]:
        """Check what a model returned: profanity, then PII redaction if ``output.redact_pii``.

        :param text: the model's text output.
        :return: the text to pass on and the hits.
        :raises TypeError: ``text`` is not a string.
        :raises GuardrailViolation: rule ``profanity`` when the policy blocks profane output.
        """
        text = _text(text)
        hits: list[GuardrailHit] = []
        flagged = self._profanity(text, "output")
        if flagged is not None:
            hits.append(flagged)
        if self.policy.output.redact_pii:
            text, pii_hits = self.redact(text)
            hits.extend(pii_hits)
        return text, hits

    def check_url(self, url: str) -> None:
        """Refuse a URL the HTTP tool may not fetch (see ``tools`` in the policy).

        :param url: the URL.
        :raises TypeError: ``url`` is not a string.
        :raises GuardrailViolation: rule ``domain``: a scheme not allowed, user information,
            a host (or IP address) not on the allowlist, or a malformed URL.
        """
        try:
            _check_url(url, self.policy.tools)
        except GuardrailViolation as err:
            _log_hits([err.hit])
            raise

    def check_sql(self, sql: str) -> None:
        """Refuse SQL that is not a single read-only statement of an allowed kind.

        :param sql: the statement.
        :raises TypeError: ``sql`` is not a string.
        :raises GuardrailViolation: rule ``sql``.
        :raises ImportError: sqlglot is not installed.
        """
        try:
            _check_sql(sql, self.policy.tools.sql)
        except GuardrailViolation as err:
            _log_hits([err.hit])
            raise

    def check_tool(self, tool_name: str) -> None:
        """Refuse a tool call the policy does not allow (``tools.allowed``; ``null`` allows all).

        :param tool_name: the name of the tool the model asked to call.
        :raises TypeError: ``tool_name`` is not a string.
        :raises GuardrailViolation: rule ``tool_not_allowed``.
        """
        tool_name = _text(tool_name, "tool_name")
        allowed = self.policy.tools.allowed
        if allowed is None or tool_name in allowed:
            return
        hit = GuardrailHit(rule="tool_not_allowed", action="blocked", detail={"tool": tool_name})
        _log_hits([hit])
        raise GuardrailViolation(
            hit, f"tool {tool_name!r} is not allowed; allowed: {', '.join(allowed) or '(none)'}"
        )

    def _profanity(self, text: str, where: str) -> GuardrailHit | None:
        rule = self.policy.input.profanity if where == "input" else self.policy.output.profanity
        try:
            hit = check_profanity(text, rule, where=where)
        except GuardrailViolation as err:
            _log_hits([err.hit])
            raise
        if hit is not None:
            _log_hits([hit])
        return hit
