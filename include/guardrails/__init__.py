"""Guardrails for agents: input limits, PII, profanity, domain allowlist, read-only SQL, rate limits.

No Airflow here: the policy is ``config/guardrails.yaml`` (:class:`GuardrailPolicy`), the checks
are :class:`Guardrails`, and the shared rate limiter is :class:`RedisTokenBucket` on any
``redis.Redis``. Every check returns or raises :class:`GuardrailHit` records for the audit
trail; a refusal is a :class:`GuardrailViolation`. The libraries doing the work:
``phonenumbers``, ``python-stdnum`` (Luhn, IBAN), ``email-validator``, ``alt-profanity-check``
(loaded on first use), ``idna``, and common.ai's sqlglot-based SQL validator (imported on
first use of :meth:`Guardrails.check_sql`).
"""

from __future__ import annotations

from include.guardrails._errors import RULES, GuardrailHit, GuardrailViolation
from include.guardrails._guardrails import Guardrails
from include.guardrails._pii import PLACEHOLDERS
from include.guardrails._policy import (
    DEFAULT_POLICY_PATH,
    POLICY_ENV,
    GuardrailPolicy,
    InputPolicy,
    OutputPolicy,
    PiiPolicy,
    ProfanityPolicy,
    RateLimit,
    SqlPolicy,
    ToolsPolicy,
)
from include.guardrails._ratelimit import RedisTokenBucket

__all__ = [
    "DEFAULT_POLICY_PATH",
    "PLACEHOLDERS",
    "POLICY_ENV",
    "RULES",
    "GuardrailHit",
    "GuardrailPolicy",
    "GuardrailViolation",
    "Guardrails",
    "InputPolicy",
    "OutputPolicy",
    "PiiPolicy",
    "ProfanityPolicy",
    "RateLimit",
    "RedisTokenBucket",
    "SqlPolicy",
    "ToolsPolicy",
]
