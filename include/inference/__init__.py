"""OpenVINO inference: the model registry, conversion to IR, warm compiled models, the node server.

Also: INT8 behind the accuracy gate (:mod:`~include.inference.quantize`), cross-encoder
reranking (:mod:`~include.inference.rerank`), a pydantic-ai model on openvino-genai's
``LLMPipeline`` (:mod:`~include.inference.llm`, the ``pydanticai_openvino`` connection) and
``make models`` (:mod:`~include.inference.export_llm`).

Nothing here imports Airflow. ``numpy`` and the OpenVINO runtime are imported by the
modules that use them; ``torch`` only by :mod:`include.inference.convert` (when a model has
to be converted) and :mod:`include.inference.tiny`, NNCF only by
:mod:`include.inference.quantize`, optimum-intel only in the exporter's subprocess.
"""

from __future__ import annotations

from include.inference._errors import (
    ConversionError,
    CorruptModelError,
    DeviceNotAvailableError,
    InferenceError,
    InferenceServerError,
    InvalidTextError,
    UnknownModelError,
    UnsupportedHardwareError,
)
from include.inference.registry import ModelRegistry, ModelSource, ModelSpec, get_model_spec, load_registry

__all__ = [
    "ConversionError",
    "CorruptModelError",
    "DeviceNotAvailableError",
    "InferenceError",
    "InferenceServerError",
    "InvalidTextError",
    "ModelRegistry",
    "ModelSource",
    "ModelSpec",
    "UnknownModelError",
    "UnsupportedHardwareError",
    "get_model_spec",
    "load_registry",
]
