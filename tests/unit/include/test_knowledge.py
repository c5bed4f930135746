from __future__ import annotations

from pathlib import Path

import pytest

from include.knowledge import LexicalIndex, load_corpus
from include.knowledge.corpus import parse_document


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex(load_corpus())


def test_corpus_documents_have_unique_ids() -> None:
    ids = [doc.doc_id for doc in load_corpus()]
    assert len(ids) == len(set(ids)) >= 8


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("I was charged twice for my order", "kb-billing-charges"),
        ("tracking says delivered but the parcel never arrived", "kb-shipping-times"),
        ("the app crashes at checkout", "kb-app-troubleshooting"),
        ("I forgot my password and cannot sign in", "kb-account-access"),
        ("the blender arrived broken", "kb-damaged-item"),
    ],
)
def test_search_ranks_the_answering_document_first(index: LexicalIndex, query: str, expected: str) -> None:
    passages = index.search(query, k=3)
    assert passages[0].doc_id == expected
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_search_returns_nothing_for_unrelated_words(index: LexicalIndex) -> None:
    assert index.search("zebra quantum xylophone") == []


def test_search_rejects_empty_query_and_bad_k(index: LexicalIndex) -> None:
    with pytest.raises(ValueError, match="no searchable word"):
        index.search("the and of")
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search("refund", k=0)


def test_parse_document_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="lacks category"):
        parse_document("---\nid: x\ntitle: y\n---\nbody", "doc.md")
    with pytest.raises(ValueError, match="front-matter block"):
        parse_document("no front matter", "doc.md")


def test_load_corpus_refuses_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no knowledge documents"):
        load_corpus(tmp_path)
