"""Knowledge-base operators: ingest documents into the Cassandra vector store."""

from __future__ import annotations

from operators.knowledge.ingest import KnowledgeIngestOperator

__all__ = ["KnowledgeIngestOperator"]
