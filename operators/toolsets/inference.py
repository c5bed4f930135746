"""The ``inference`` toolset: OpenVINO classification and semantic similarity as agent tools."""

from __future__ import annotations

from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from operators.inference._common import DEFAULT_MODEL

#: The most texts one tool call handles.
MAX_TEXTS = 32


class InferenceToolset(FunctionToolset[Any]):
    """``classify_text`` and ``rank_by_similarity`` on the node's warm OpenVINO models, id ``inference``.

    The work runs in the node's inference server when one is up (``make up``: models
    compiled once per worker node), in-process otherwise. Embedding vectors themselves are
    of no use to a language model, so the tools return what an agent can reason with:
    labels with scores, and texts ranked by cosine similarity.

    :param classifier: the classifier under ``config/classify`` for ``classify_text``.
    :param model: the embedding model of ``rank_by_similarity`` (``config/models.yaml``).
    :param socket_path: the inference server's socket; default ``AGENTFLOW_INFERENCE_SOCKET``.
    """

    def __init__(
        self, classifier: str = "support_tickets", model: str = DEFAULT_MODEL, socket_path: str | None = None
    ) -> None:
        super().__init__([self.classify_text, self.rank_by_similarity], id="inference")
        self.classifier = classifier
        self.model = model
        self.socket_path = socket_path

    def classify_text(self, text: str) -> dict[str, Any]:
        """Classify a support text into a category (billing, shipping, returns, account, technical).

        :param text: the text to classify.
        """
        from include.inference.backend import get_backend

        [label] = get_backend(self.socket_path).classify(self.classifier, [text], True)
        return label.model_dump() if label is not None else {"label": None}

    def rank_by_similarity(self, query: str, texts: list[str]) -> list[dict[str, Any]]:
        """Rank texts by how close in meaning they are to the query, best first.

        :param query: what the texts are compared with.
        :param texts: up to 32 texts.
        """
        from pydantic_ai import ModelRetry

        from include.inference.backend import get_backend

        if not texts or len(texts) > MAX_TEXTS:
            raise ModelRetry(f"give 1 to {MAX_TEXTS} texts, not {len(texts)}")
        ranked = get_backend(self.socket_path).rerank(self.model, query, texts)
        return [item.model_dump() for item in ranked]
