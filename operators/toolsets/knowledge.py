"""The ``knowledge`` toolset: lets an agent search the knowledge base.

Two backings with one tool shape (``search_knowledge(query, k)`` returning passages with
``doc_id``, ``title``, ``category``, ``text`` and ``score``):

* :func:`knowledge_toolset`: BM25 over the corpus shipped in ``include/knowledge/corpus``,
  in memory; the embedded default (``make demo``), no service needed.
* :class:`CassandraKnowledgeToolset`: the Cassandra 5 vector store (SAI ANN) with the
  query embedded by OpenVINO, for documents ingested by ``KnowledgeIngestOperator``; without
  the connection, the embedded SQLite store (``operators.hooks.cassandra.state_backend``).
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic_ai.toolsets import FunctionToolset

from include.knowledge import LexicalIndex, load_corpus
from operators.inference._common import DEFAULT_MODEL

if TYPE_CHECKING:
    from include.state.embedded import EmbeddedState
    from operators.hooks.cassandra import CassandraHook

MAX_K = 10


@functools.cache
def _index() -> LexicalIndex:
    # Built once per process on first use, never at DAG parse time.
    return LexicalIndex(load_corpus())


def search_knowledge(query: str, k: int = 3) -> list[dict[str, Any]]:
    """Search the support knowledge base; return the best passages with their ids and scores.

    :param query: what to look for, in plain words.
    :param k: how many passages to return (1-10).
    """
    return [asdict(passage) for passage in _index().search(query, k=max(1, min(int(k), MAX_K)))]


def knowledge_toolset() -> FunctionToolset[Any]:
    """Return the in-memory (BM25) toolset with ``search_knowledge``, id ``knowledge``."""
    return FunctionToolset([search_knowledge], id="knowledge")


class CassandraKnowledgeToolset(FunctionToolset[Any]):
    """``search_knowledge`` over the Cassandra vector store, id ``knowledge``.

    Nothing connects when it is built (DAG parse time): the Cassandra session opens on the
    first search of an agent run, serves every search of that run, and closes when the
    agent leaves the toolset (pydantic-ai's ``__aexit__``). The query is embedded by the
    node's warm inference server, or in-process.

    :param cassandra_conn_id: the Cassandra connection; when it is not defined, the embedded
        SQLite store.
    :param model: the embedding model in ``config/models.yaml``; the one that ingested.
    :param socket_path: the inference server's socket; default ``AGENTFLOW_INFERENCE_SOCKET``.
    """

    def __init__(
        self,
        cassandra_conn_id: str = "cassandra_default",
        model: str = DEFAULT_MODEL,
        socket_path: str | None = None,
    ) -> None:
        super().__init__([self.search_knowledge], id="knowledge")
        self.cassandra_conn_id = cassandra_conn_id
        self.model = model
        self.socket_path = socket_path
        self._backend: CassandraHook | EmbeddedState | None = None

    def search_knowledge(self, query: str, k: int = 3, category: str | None = None) -> list[dict[str, Any]]:
        """Search the support knowledge base by meaning; return the best passages with their scores.

        :param query: what to look for, in plain words.
        :param k: how many passages to return (1-10).
        :param category: only passages of this category (billing, shipping, returns, account, technical).
        """
        from include.inference.backend import get_backend
        from operators.hooks.cassandra import state_backend

        [vector] = get_backend(self.socket_path).embed_rows(self.model, [query])
        if self._backend is None:
            self._backend = state_backend(self.cassandra_conn_id)
        filters = {"category": category} if category else None
        hits = self._backend.knowledge().search(vector, k=max(1, min(int(k), MAX_K)), filters=filters)
        return [
            {
                "doc_id": hit.metadata.get("doc_id", hit.source or hit.content_hash),
                "title": hit.title or "",
                "category": hit.category or "other",
                "text": hit.content,
                "score": round(hit.score, 4),
            }
            for hit in hits
        ]

    async def __aexit__(self, *args: Any) -> bool | None:
        """Close the Cassandra session opened by this run's searches."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        return await super().__aexit__(*args)
