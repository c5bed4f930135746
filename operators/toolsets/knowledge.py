"""The ``knowledge`` toolset: lets an agent search the knowledge base."""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from include.knowledge import LexicalIndex, load_corpus


@functools.cache
def _index() -> LexicalIndex:
    # Built once per process on first use, never at DAG parse time.
    return LexicalIndex(load_corpus())


def search_knowledge(query: str, k: int = 3) -> list[dict[str, Any]]:
    """Search the support knowledge base; return the best passages with their ids and scores.

    :param query: what to look for, in plain words.
    :param k: how many passages to return (1-10).
    """
    return [asdict(passage) for passage in _index().search(query, k=max(1, min(int(k), 10)))]


def knowledge_toolset() -> FunctionToolset[Any]:
    """Return the toolset with ``search_knowledge``, id ``knowledge`` (stable for durable replay)."""
    return FunctionToolset([search_knowledge], id="knowledge")
