"""Toolsets agents can be given (pydantic-ai ``FunctionToolset``s with stable ids)."""

from __future__ import annotations

from operators.toolsets.knowledge import CassandraKnowledgeToolset, knowledge_toolset

__all__ = ["CassandraKnowledgeToolset", "knowledge_toolset"]
