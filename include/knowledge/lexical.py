"""Okapi BM25 ranking over the shipped corpus: the embedded default's retriever.

The full stack searches the Cassandra 5 vector store with OpenVINO embeddings; on a bare
machine (``make demo``) this in-memory ranking stands in, with the same ``Passage`` shape.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from include.knowledge.corpus import Document

_TOKEN = re.compile(r"[a-z0-9]+")
# Words so common in support text that they carry no signal for ranking.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "for",
        "from",
        "has",
        "have",
        "i",
        "if",
        "in",
        "is",
        "it",
        "my",
        "of",
        "on",
        "or",
        "our",
        "the",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "with",
        "you",
        "your",
    ]
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words, with a plural ``s`` stripped."""
    tokens = (token for token in _TOKEN.findall(text.lower()) if token not in _STOPWORDS)
    return [token[:-1] if len(token) > 3 and token.endswith("s") else token for token in tokens]


@dataclass(frozen=True)
class Passage:
    """A ranked knowledge passage.

    :param doc_id: the document's id.
    :param title: the document's title.
    :param category: the document's category.
    :param text: the passage text.
    :param score: relevance; higher is better, comparable within one query only.
    """

    doc_id: str
    title: str
    category: str
    text: str
    score: float


class LexicalIndex:
    """BM25 index over a list of documents (title and body).

    :param documents: the documents to index.
    :param k1: BM25 term-frequency saturation.
    :param b: BM25 length normalisation.
    """

    def __init__(self, documents: list[Document], k1: float = 1.5, b: float = 0.75) -> None:
        if not documents:
            raise ValueError("LexicalIndex needs at least one document")
        self.documents = documents
        self.k1 = k1
        self.b = b
        self._terms = [Counter(tokenize(f"{doc.title} {doc.text}")) for doc in documents]
        self._lengths = [sum(terms.values()) for terms in self._terms]
        self._avg_length = sum(self._lengths) / len(self._lengths)
        frequency = Counter(term for terms in self._terms for term in terms)
        n = len(documents)
        self._idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """Return up to ``k`` passages with a positive score, best first.

        :raises ValueError: if ``query`` has no searchable word or ``k`` is not positive.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query_terms = set(tokenize(query))
        if not query_terms:
            raise ValueError(f"query has no searchable word: {query!r}")
        scored = []
        for doc, terms, length in zip(self.documents, self._terms, self._lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self._avg_length)
            score = sum(
                self._idf[term] * terms[term] * (self.k1 + 1) / (terms[term] + norm)
                for term in query_terms
                if term in terms
            )
            if score > 0:
                scored.append(Passage(doc.doc_id, doc.title, doc.category, doc.text, round(score, 4)))
        scored.sort(key=lambda passage: passage.score, reverse=True)
        return scored[:k]
