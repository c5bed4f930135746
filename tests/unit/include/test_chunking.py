from __future__ import annotations

import pytest

from include.knowledge.chunking import chunk_text


def test_sentences_are_packed_up_to_the_limit() -> None:
    first, second, third = "Refunds take five business days.", "Labels come by email.", "Keep the receipt."
    text = f"{first} {second} {third}"
    assert chunk_text(text, max_chars=len(text)) == [text]
    assert chunk_text(text, max_chars=len(text) - 1) == [f"{first} {second}", third]


def test_chunks_never_exceed_the_limit_and_keep_every_word() -> None:
    text = ("Refunds take five to ten business days. " * 20) + "A" * 10 + " " + "word " * 40
    chunks = chunk_text(text, max_chars=80)
    assert all(len(chunk) <= 80 for chunk in chunks)
    assert " ".join(chunks).split() == text.split()


def test_a_long_sentence_is_cut_at_word_boundaries() -> None:
    sentence = " ".join(f"w{i}" for i in range(100)) + "."
    chunks = chunk_text(sentence, max_chars=60)
    assert len(chunks) > 1
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert " ".join(chunks) == sentence


def test_empty_text_gives_no_chunk_and_tiny_limits_are_refused() -> None:
    assert chunk_text("   ") == []
    with pytest.raises(ValueError, match="at least 50"):
        chunk_text("text", max_chars=10)
