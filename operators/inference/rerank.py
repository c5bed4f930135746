"""Rerank documents for a query (bi-encoder cosine, or a cross-encoder), on the Intel worker pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from operators.inference._common import (
    DEFAULT_MODEL,
    InferenceDefaultsMixin,
    coerce_texts,
    inference_defaults,
    report_hardware,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from include.inference.hardware import HardwarePolicy


class OpenVINORerankOperator(InferenceDefaultsMixin, BaseOperator):
    """Order documents by relevance to the query, best first.

    With an embedding model (the default) the score is the cosine between the query's and the
    document's embeddings (bi-encoder). With a ``task: rerank`` model (a cross-encoder exported
    to OpenVINO, e.g. by ``make models``) each (query, document) pair is scored jointly by
    openvino-genai's ``TextRerankPipeline``. Returns ``[{"index", "score", "document"}]`` for
    the ``top_k`` best documents.

    :param query: the query text.
    :param documents: the candidates: a list, an XCom reference, or a template rendering to a JSON list.
    :param model: an ``embed`` (bi-encoder) or ``rerank`` (cross-encoder) model from ``config/models.yaml``.
    :param top_k: how many to return; all if ``None``.
    :param socket_path: the inference server's socket; ``AGENTFLOW_INFERENCE_SOCKET`` if ``None``.
    :param hardware_policy: ``fail`` or ``warn`` on a non-Intel CPU; the environment's if ``None``.
    """

    template_fields: Sequence[str] = ("query", "documents", "model")
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        query: str,
        documents: list[str] | str | Any,
        model: str = DEFAULT_MODEL,
        top_k: int | None = None,
        socket_path: str | None = None,
        hardware_policy: HardwarePolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**inference_defaults(kwargs))
        self.query = query
        self.documents = documents
        self.model = model
        self.top_k = top_k
        self.socket_path = socket_path
        self.hardware_policy = hardware_policy

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Rerank; return the best documents with their input index and cosine."""
        documents = coerce_texts(self.documents, "documents")
        from include.inference.backend import get_backend

        backend = get_backend(self.socket_path)
        report_hardware(self.log, backend, self.model, self.hardware_policy, "rerank")
        hits = backend.rerank(self.model, self.query, documents, self.top_k)
        self.log.info("reranked %s document(s) with %s; best %s", len(documents), self.model, hits[:3])
        return [{"index": h.index, "score": h.score, "document": documents[h.index]} for h in hits]
