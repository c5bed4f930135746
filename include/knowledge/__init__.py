"""The knowledge base: documents shipped with the project and how passages are found."""

from __future__ import annotations

from include.knowledge.corpus import Document, load_corpus
from include.knowledge.lexical import LexicalIndex, Passage

__all__ = ["Document", "LexicalIndex", "Passage", "load_corpus"]
