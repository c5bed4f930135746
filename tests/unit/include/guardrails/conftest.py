from __future__ import annotations

import pytest

from include.guardrails import GuardrailPolicy, Guardrails


@pytest.fixture(scope="session")
def policy() -> GuardrailPolicy:
    """The shipped policy, config/guardrails.yaml."""
    return GuardrailPolicy.load()


@pytest.fixture(scope="session")
def guardrails(policy: GuardrailPolicy) -> Guardrails:
    return Guardrails(policy)
