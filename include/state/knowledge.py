"""Long-term knowledge in Cassandra 5: text chunks with embeddings, searched by ANN (SAI).

One row per chunk, keyed by the SHA-256 of its text: ``upsert`` reads the stored rows first
and writes only chunks that are new or whose embedding or metadata changed, so
re-ingesting a corpus changes nothing. ``search`` orders by cosine similarity with the
SAI index on ``embedding`` and filters on ``category`` and ``source``. The store takes
vectors; computing them (the OpenVINO embedder) is the caller's business.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from include.state._values import check_byte_count, check_vector
from include.state.session import CassandraClient

#: Columns ``search`` may filter on (each has an SAI index).
FILTER_COLUMNS = ("category", "source")
#: The most neighbours one search returns.
MAX_K = 1000


def content_hash(content: str) -> str:
    """Return the key of a chunk: the hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


class KnowledgeChunk(BaseModel):
    """A chunk to store.

    :param content: its text.
    :param embedding: its vector (``vector_dimension`` finite floats, not all zero).
    :param title: a title to show.
    :param source: where it came from (a filterable column).
    :param category: its category (a filterable column).
    :param metadata: other string attributes.
    """

    model_config = ConfigDict(frozen=True)

    content: str = Field(min_length=1)
    embedding: list[float]
    title: str | None = None
    source: str | None = None
    category: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """The chunk's key."""
        return content_hash(self.content)


class KnowledgeHit(BaseModel):
    """A search result.

    :param content_hash: the chunk's key.
    :param content: its text.
    :param title: its title.
    :param source: its source.
    :param category: its category.
    :param metadata: its other attributes.
    :param score: cosine similarity mapped to 0..1 (Cassandra's ``similarity_cosine``).
    """

    content_hash: str
    content: str
    title: str | None
    source: str | None
    category: str | None
    metadata: dict[str, str]
    score: float


class UpsertResult(BaseModel):
    """What ``upsert`` did: the keys written and those already stored unchanged."""

    written: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


def _as_float32(vector: Iterable[float]) -> tuple[float, ...]:
    values = list(vector)
    return struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values))


class KnowledgeStore:
    """Chunks and their embeddings in ``<keyspace>.knowledge_chunks``.

    :param client: the Cassandra client (its settings give the dimension and size limit).
    """

    def __init__(self, client: CassandraClient) -> None:
        self.client = client
        self.dimension = client.settings.vector_dimension
        self._table = f"{client.keyspace}.knowledge_chunks"

    def check_vector(self, vector: Sequence[float], what: str = "the vector") -> list[float]:
        """Return ``vector`` as floats if it has the configured dimension, finite and non-zero.

        :raises ValueError: otherwise, saying what is wrong.
        """
        return check_vector(vector, self.dimension, what)

    def upsert(self, chunks: Sequence[KnowledgeChunk]) -> UpsertResult:
        """Store chunks keyed by content hash, writing only what is new or changed.

        Every chunk is checked before anything is written.

        :raises ValueError: a vector of the wrong dimension, non-finite or all zeros.
        :raises ValueTooLargeError: a chunk larger than ``max_value_bytes``.
        """
        max_bytes = self.client.settings.max_value_bytes
        checked: dict[str, tuple[KnowledgeChunk, list[float]]] = {}
        for index, chunk in enumerate(chunks):
            vector = self.check_vector(chunk.embedding, f"chunk {index}'s embedding")
            size = len(chunk.content.encode("utf-8")) + sum(
                len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in chunk.metadata.items()
            )
            check_byte_count(size, max_bytes=max_bytes, what=f"chunk {index} (text and metadata)")
            checked[chunk.content_hash] = (chunk, vector)
        result = UpsertResult()
        select = (
            f"SELECT title, source, category, metadata, embedding FROM {self._table} WHERE content_hash = ?"
        )
        insert = (
            f"INSERT INTO {self._table} (content_hash, content, title, source, category, metadata, "
            "embedding, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        now = datetime.now(UTC)
        for key, (chunk, vector) in checked.items():
            row = self.client.execute(select, (key,)).one()
            if row is not None and (
                row.title == chunk.title
                and row.source == chunk.source
                and row.category == chunk.category
                and dict(row.metadata or {}) == chunk.metadata
                and _as_float32(row.embedding or ()) == _as_float32(vector)
            ):
                result.unchanged.append(key)
                continue
            self.client.execute(
                insert,
                (key, chunk.content, chunk.title, chunk.source, chunk.category, chunk.metadata, vector, now),
            )
            result.written.append(key)
        return result

    def search(
        self, vector: Sequence[float], k: int = 5, filters: Mapping[str, str] | None = None
    ) -> list[KnowledgeHit]:
        """Return the ``k`` chunks nearest to ``vector`` (cosine), best first.

        :param vector: the query embedding.
        :param k: how many neighbours (1 to ``MAX_K``).
        :param filters: equality filters on ``category`` and/or ``source``.
        :raises ValueError: a bad vector, ``k`` or filter column.
        """
        query = self.check_vector(vector, "the query vector")
        if not 1 <= int(k) <= MAX_K:
            raise ValueError(f"k must be 1 to {MAX_K}, got {k}")
        where: list[str] = []
        params: list[object] = [query]
        for column, value in sorted((filters or {}).items()):
            if column not in FILTER_COLUMNS:
                raise ValueError(f"cannot filter on {column!r}; filterable: {list(FILTER_COLUMNS)}")
            if not isinstance(value, str):
                raise TypeError(f"filter {column} must be a str, got {type(value).__name__}")
            where.append(f"{column} = ?")
            params.append(value)
        params.extend([query, int(k)])
        cql = (
            f"SELECT content_hash, content, title, source, category, metadata, "
            f"similarity_cosine(embedding, ?) AS score FROM {self._table}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY embedding ANN OF ? LIMIT ?"
        )
        return [
            KnowledgeHit(
                content_hash=row.content_hash,
                content=row.content,
                title=row.title,
                source=row.source,
                category=row.category,
                metadata=dict(row.metadata or {}),
                score=float(row.score),
            )
            for row in self.client.execute(cql, params)
        ]

    def get(self, key: str) -> KnowledgeChunk | None:
        """Return the stored chunk with content hash ``key``, or ``None``."""
        row = self.client.execute(
            f"SELECT content, title, source, category, metadata, embedding FROM {self._table} "
            "WHERE content_hash = ?",
            (key,),
        ).one()
        if row is None:
            return None
        return KnowledgeChunk(
            content=row.content,
            embedding=list(row.embedding),
            title=row.title,
            source=row.source,
            category=row.category,
            metadata=dict(row.metadata or {}),
        )

    def delete(self, key: str) -> None:
        """Delete the chunk with content hash ``key``."""
        self.client.execute(f"DELETE FROM {self._table} WHERE content_hash = ?", (key,))
