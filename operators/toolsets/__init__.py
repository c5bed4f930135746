"""Toolsets agents can be given (pydantic-ai ``FunctionToolset``s with stable ids)."""

from __future__ import annotations

from operators.toolsets.knowledge import knowledge_toolset

__all__ = ["knowledge_toolset"]
