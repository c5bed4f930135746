"""OpenVINO inference: the model registry, conversion to IR, warm compiled models, the node server.

Nothing here imports Airflow. ``numpy`` and the OpenVINO runtime are imported by the
modules that use them; ``torch`` only by :mod:`include.inference.convert`, and only when a
model has to be converted.
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
