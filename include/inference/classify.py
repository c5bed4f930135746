"""Nearest-centroid classification and bi-encoder reranking on top of an embedding model.

numpy is imported inside the functions that compute, so reading a classifier's
configuration (as the classify operator does before it calls the server) stays light.

A classifier is configuration, not training: ``config/classify/<name>.yaml`` names the
embedding model and gives labelled example texts per label. Each label's centroid is the
normalised mean of its examples' embeddings; a text gets the label whose centroid is
closest in cosine. Reranking scores documents by cosine to the query's embedding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, Field, ValidationError

from include.errors import ConfigurationError
from include.inference._types import Classification, RerankHit

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_CLASSIFY_DIR = Path(__file__).resolve().parents[2] / "config" / "classify"
EmbedFn = Callable[[Sequence[str]], "NDArray[np.float32]"]


class ClassifierConfig(BaseModel):
    """A nearest-centroid classifier's configuration.

    :param model: the embedding model (a registry name).
    :param labels: label -> example texts (at least one each).
    """

    model: str
    labels: dict[str, list[str]] = Field(min_length=2)


def classifier_path(name_or_path: str) -> Path:
    """A classifier's YAML: a path, or a name under ``AGENTFLOW_CLASSIFY_DIR`` / ``config/classify``."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return Path(name_or_path).expanduser()
    folder = Path(os.environ.get("AGENTFLOW_CLASSIFY_DIR") or DEFAULT_CLASSIFY_DIR)
    return folder / f"{name_or_path}.yaml"


def load_classifier_config(name_or_path: str) -> ClassifierConfig:
    """Read and validate a classifier's configuration.

    :raises ConfigurationError: the file is missing or invalid (names the known classifiers).
    """
    path = classifier_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigurationError(f"classifier {name_or_path!r} not found at {path}; known: {known}")
    try:
        config = ClassifierConfig.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as err:
        raise ConfigurationError(f"classifier {path} is invalid: {err}") from err
    empty = [label for label, texts in config.labels.items() if not texts]
    if empty:
        raise ConfigurationError(f"classifier {path}: labels without examples: {empty}")
    return config


class NearestCentroid:
    """Label centroids built from examples; classify by cosine.

    :param labels: the labels, in order.
    :param centroids: ``[len(labels), dim]`` unit vectors.
    """

    def __init__(self, labels: list[str], centroids: NDArray[np.float32]) -> None:
        self.labels = labels
        self.centroids = centroids

    @classmethod
    def fit(cls, config: ClassifierConfig, embed: EmbedFn) -> NearestCentroid:
        """Embed every example once and average per label."""
        import numpy as np

        labels = list(config.labels)
        texts = [t for label in labels for t in config.labels[label]]
        vectors = _unit(np.asarray(embed(texts), dtype=np.float32))
        centroids, start = [], 0
        for label in labels:
            n = len(config.labels[label])
            centroids.append(vectors[start : start + n].mean(0))
            start += n
        return cls(labels, _unit(np.stack(centroids)))

    def predict(self, vectors: NDArray[np.float32]) -> list[Classification]:
        """The closest label for each vector."""
        import numpy as np

        sims = _unit(np.asarray(vectors, dtype=np.float32)) @ self.centroids.T
        out = []
        for row in sims:
            best = int(np.argmax(row))
            out.append(
                Classification(
                    label=self.labels[best],
                    score=float(row[best]),
                    scores={label: float(s) for label, s in zip(self.labels, row, strict=True)},
                )
            )
        return out


def rerank(
    query: NDArray[np.float32], docs: NDArray[np.float32], top_k: int | None = None
) -> list[RerankHit]:
    """Documents by cosine to the query, best first (``top_k`` of them if given)."""
    import numpy as np

    scores = (
        _unit(np.asarray(docs, dtype=np.float32))
        @ _unit(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
    )
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [RerankHit(index=int(i), score=float(scores[i])) for i in order]


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    import numpy as np

    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
