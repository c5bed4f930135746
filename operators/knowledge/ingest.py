"""Chunk, embed (OpenVINO) and upsert documents into the knowledge store (Cassandra or embedded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from operators.inference._common import (
    DEFAULT_MODEL,
    InferenceDefaultsMixin,
    embed_with_progress,
    inference_defaults,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class KnowledgeIngestOperator(InferenceDefaultsMixin, BaseOperator):
    """Ingest Markdown knowledge documents: chunk, embed on the Intel pool, upsert by content hash.

    Chunks are keyed by the SHA-256 of their text, so ingesting the same documents again
    writes nothing. Runs on the ``openvino`` pool and ``intel`` queue by default, with the
    warm model of the node's inference server when one answers.

    :param documents_dir: folder of ``*.md`` documents with front-matter (``id``, ``title``,
        ``category``); default: the corpus shipped in ``include/knowledge/corpus``.
    :param documents: only these ``*.md`` files (one shard of a mapped ingest, see the
        ``knowledge_ingest`` DAG); overrides ``documents_dir``.
    :param model: the embedding model's name in ``config/models.yaml``.
    :param cassandra_conn_id: the Cassandra connection (an ``agentflow_cassandra`` type); when it
        is not defined, the embedded SQLite store (``operators.hooks.cassandra.state_backend``).
    :param max_chunk_chars: the longest chunk, in characters.
    :param socket_path: the inference server's socket; default ``AGENTFLOW_INFERENCE_SOCKET``.
    """

    template_fields = ("documents_dir", "documents", "model")

    def __init__(
        self,
        *,
        documents_dir: str | None = None,
        documents: list[str] | None = None,
        model: str = DEFAULT_MODEL,
        cassandra_conn_id: str = "cassandra_default",
        max_chunk_chars: int = 600,
        socket_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**inference_defaults(kwargs))
        self.documents_dir = documents_dir
        self.documents = documents
        self.model = model
        self.cassandra_conn_id = cassandra_conn_id
        self.max_chunk_chars = max_chunk_chars
        self.socket_path = socket_path

    def execute(self, context: Context) -> dict[str, Any]:
        """Ingest the documents; return the document, chunk, written and unchanged counts."""
        from pathlib import Path

        from include.knowledge.chunking import chunk_text
        from include.knowledge.corpus import CORPUS_DIR, load_corpus, parse_document
        from include.state.knowledge import KnowledgeChunk
        from operators.hooks.cassandra import state_backend

        if self.documents:
            documents = [
                parse_document(Path(path).read_text(encoding="utf-8"), path) for path in self.documents
            ]
        else:
            documents = load_corpus(Path(self.documents_dir) if self.documents_dir else CORPUS_DIR)
        pieces = [
            (doc, index, text)
            for doc in documents
            for index, text in enumerate(chunk_text(doc.text, self.max_chunk_chars))
        ]
        self.log.info("ingesting %d documents as %d chunks with %s", len(documents), len(pieces), self.model)
        from include.inference.backend import get_backend

        rows = embed_with_progress(
            get_backend(self.socket_path), self.model, [text for _, _, text in pieces], None, self.log
        )
        # A bad chunk raised above (naming it), so every row is present.
        vectors = [row for row in rows if row is not None]
        chunks = [
            KnowledgeChunk(
                content=text,
                embedding=vector,
                title=doc.title,
                source=doc.doc_id,
                category=doc.category,
                metadata={"doc_id": doc.doc_id, "chunk": str(index)},
            )
            for (doc, index, text), vector in zip(pieces, vectors, strict=True)
        ]
        backend = state_backend(self.cassandra_conn_id)
        try:
            result = backend.knowledge().upsert(chunks)
        finally:
            backend.close()
        self.log.info("knowledge store: %d written, %d unchanged", len(result.written), len(result.unchanged))
        return {
            "documents": len(documents),
            "chunks": len(chunks),
            "written": len(result.written),
            "unchanged": len(result.unchanged),
        }
