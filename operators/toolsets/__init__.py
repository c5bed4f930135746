"""Toolsets agents can be given (pydantic-ai toolsets with stable ids, so durable replay works).

For a read-only SQL tool use common.ai's own ``SQLToolset(db_conn_id, allowed_tables=...)``
(``allow_writes=False`` by default); the others are ours.
"""

from __future__ import annotations

from operators.toolsets.http import HttpToolset
from operators.toolsets.inference import InferenceToolset
from operators.toolsets.kafka import KafkaPublishToolset
from operators.toolsets.knowledge import CassandraKnowledgeToolset, knowledge_toolset
from operators.toolsets.memory import MemoryToolset

__all__ = [
    "CassandraKnowledgeToolset",
    "HttpToolset",
    "InferenceToolset",
    "KafkaPublishToolset",
    "MemoryToolset",
    "knowledge_toolset",
]
