"""Result types that cross the inference server's socket; no numpy, so clients stay light."""

from __future__ import annotations

from pydantic import BaseModel


class Classification(BaseModel):
    """One text's label.

    :param label: the closest label.
    :param score: cosine to that label's centroid.
    :param scores: cosine to every label's centroid.
    """

    label: str
    score: float
    scores: dict[str, float]


class RerankHit(BaseModel):
    """One reranked document.

    :param index: the document's index in the input.
    :param score: cosine between the query and the document.
    """

    index: int
    score: float
