"""Operators for OpenVINO inference: embed, classify, rerank.

They default to the ``openvino`` pool and the ``intel`` Celery queue, use the node's
inference server when ``AGENTFLOW_INFERENCE_SOCKET`` names one (models warm across tasks)
and in-process inference otherwise. OpenVINO and numpy are imported inside ``execute()``.
"""

from __future__ import annotations

from operators.inference.classify import OpenVINOClassifyOperator
from operators.inference.embed import OpenVINOEmbedOperator
from operators.inference.rerank import OpenVINORerankOperator

__all__ = ["OpenVINOClassifyOperator", "OpenVINOEmbedOperator", "OpenVINORerankOperator"]
