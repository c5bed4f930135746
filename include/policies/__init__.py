"""Agent policies that need no model: the extractive reply used when no LLM is configured."""

from __future__ import annotations

from include.policies.extractive import NO_LLM_NOTICE, extractive_triage

__all__ = ["NO_LLM_NOTICE", "extractive_triage"]
