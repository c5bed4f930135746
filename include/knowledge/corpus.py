"""Loads the knowledge documents (Markdown with a small front-matter block)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CORPUS_DIR = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Document:
    """One knowledge document.

    :param doc_id: stable id, cited as a source in replies.
    :param title: the document's title.
    :param category: the ticket category the document answers.
    :param text: the body, without front-matter.
    """

    doc_id: str
    title: str
    category: str
    text: str


def parse_document(raw: str, origin: str) -> Document:
    """Parse one Markdown document with a ``---`` front-matter block.

    :param raw: the file's text.
    :param origin: where it came from, named in errors.
    :raises ValueError: if the front-matter is missing or lacks ``id``, ``title`` or ``category``.
    """
    parts = raw.split("---", 2)
    if len(parts) != 3 or parts[0].strip():
        raise ValueError(f"{origin}: a knowledge document must start with a '---' front-matter block")
    meta = yaml.safe_load(parts[1]) or {}
    missing = [key for key in ("id", "title", "category") if not meta.get(key)]
    if missing:
        raise ValueError(f"{origin}: front-matter lacks {', '.join(missing)}")
    return Document(
        doc_id=str(meta["id"]),
        title=str(meta["title"]),
        category=str(meta["category"]),
        text=" ".join(parts[2].split()),
    )


def load_corpus(directory: Path = CORPUS_DIR) -> list[Document]:
    """Load every ``*.md`` document of ``directory``, sorted by file name.

    :raises ValueError: if the folder holds no document, or one is malformed.
    """
    documents = [parse_document(path.read_text(), str(path)) for path in sorted(directory.glob("*.md"))]
    if not documents:
        raise ValueError(f"no knowledge documents (*.md) in {directory}")
    return documents
