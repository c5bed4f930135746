"""Where inference runs for a task: the node's inference server if there is one, else in-process.

Both backends offer the same calls (:class:`InferenceBackend`); :func:`get_backend` picks
the server when ``AGENTFLOW_INFERENCE_SOCKET`` names a socket that answers, and the
process-wide :class:`LocalBackend` (on :func:`~include.inference.runtime.get_pool`)
otherwise. Why a server: see :mod:`include.inference.server`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from include.inference._errors import InvalidTextError
from include.inference._types import Classification, RerankHit
from include.inference.classify import NearestCentroid, classifier_path, load_classifier_config, rerank
from include.inference.runtime import ModelPool, get_pool

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from include.inference.hardware import HardwareInfo

log = logging.getLogger(__name__)

SOCKET_ENV = "AGENTFLOW_INFERENCE_SOCKET"  # see include.inference.client


class InferenceBackend(Protocol):
    """The inference calls operators make."""

    def embed(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> NDArray[np.float32]:
        """Embeddings in input order; :class:`InvalidTextError` names bad indices."""
        ...

    def embed_rows(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> list[list[float]]:
        """Embeddings in input order as lists; :class:`InvalidTextError` names bad indices."""
        ...

    def classify(
        self, classifier: str, texts: Sequence[str], truncate: bool | None = None
    ) -> list[Classification]:
        """Labels in input order; :class:`InvalidTextError` names bad indices."""
        ...

    def rerank(
        self, model: str, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[RerankHit]:
        """Documents by relevance to the query, best first (cross-encoder or bi-encoder cosine)."""
        ...

    def hardware(self, model: str) -> HardwareInfo:
        """What ``model`` runs on, precision included."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters: ``loads``, ``hits`` (and ``requests`` for the server)."""
        ...


class LocalBackend:
    """Inference in this process, on a :class:`ModelPool`.

    :param pool: the pool; the process-wide one if ``None``.
    """

    def __init__(self, pool: ModelPool | None = None) -> None:
        self.pool = pool or get_pool()
        self._centroids: dict[tuple[str, int, str], NearestCentroid] = {}
        self._lock = threading.Lock()

    def embed(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> NDArray[np.float32]:
        """See :meth:`InferenceBackend.embed`."""
        return self.pool.get(model).embed(texts, truncate)

    def embed_rows(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> list[list[float]]:
        """See :meth:`InferenceBackend.embed_rows`."""
        rows: list[list[float]] = self.embed(model, texts, truncate).tolist()
        return rows

    def _classifier(self, name: str) -> NearestCentroid:
        path = classifier_path(name)
        config = load_classifier_config(name)
        key = (str(path.resolve()), path.stat().st_mtime_ns, config.model)
        with self._lock:
            fitted = self._centroids.get(key)
            if fitted is None:
                encoder = self.pool.get(config.model)
                fitted = NearestCentroid.fit(config, encoder.embed)
                self._centroids[key] = fitted
        return fitted

    def classify(
        self, classifier: str, texts: Sequence[str], truncate: bool | None = None
    ) -> list[Classification]:
        """See :meth:`InferenceBackend.classify`."""
        fitted = self._classifier(classifier)
        model = load_classifier_config(classifier).model
        try:
            return fitted.predict(self.embed(model, texts, truncate))
        except InvalidTextError as err:
            rows = err.results or []
            valid = [i for i, row in enumerate(rows) if row is not None]
            labels = fitted.predict(np.stack([np.asarray(rows[i]) for i in valid])) if valid else []
            results: list[object] = [None] * len(rows)
            for i, label in zip(valid, labels, strict=True):
                results[i] = label
            raise InvalidTextError(err.model, err.errors, results) from None

    def rerank(
        self, model: str, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[RerankHit]:
        """See :meth:`InferenceBackend.rerank`.

        A ``task: rerank`` model is a cross-encoder (openvino-genai's ``TextRerankPipeline``);
        any other is a bi-encoder (cosine of embeddings). An invalid query or document is an error.
        """
        if self.pool.spec(model).task == "rerank":
            return self.pool.get_reranker(model).rerank(query, documents, top_k)
        vectors = self.embed(model, [query, *documents])
        return rerank(vectors[0], vectors[1:], top_k)

    def hardware(self, model: str) -> HardwareInfo:
        """See :meth:`InferenceBackend.hardware`."""
        info = self.pool.get_model(model).hardware
        if info is None:
            raise RuntimeError(f"model {model!r} reports no hardware")
        return info

    def stats(self) -> dict[str, Any]:
        """See :meth:`InferenceBackend.stats`."""
        return {"backend": "in-process", "pid": os.getpid(), **self.pool.stats()}


_local: LocalBackend | None = None
_local_lock = threading.Lock()


def local_backend() -> LocalBackend:
    """The process-wide in-process backend."""
    global _local
    with _local_lock:
        if _local is None or _local.pool is not get_pool():
            _local = LocalBackend(get_pool())
        return _local


def get_backend(socket_path: str | None = None) -> InferenceBackend:
    """The node's inference server if its socket answers, else the in-process backend.

    :param socket_path: the server's socket; ``AGENTFLOW_INFERENCE_SOCKET`` if ``None``.
    """
    from include.inference.client import connect

    return connect(socket_path) or local_backend()
