"""The model registry: which models exist, where their weights come from, how to run them.

Configuration lives in ``config/models.yaml`` (``AGENTFLOW_MODELS_CONFIG`` points elsewhere).
Nothing here imports OpenVINO; :func:`get_model_spec` is cheap and safe in DAG parsing.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from include.errors import ConfigurationError
from include.inference._errors import UnknownModelError

DEFAULT_MODELS_PATH = Path(__file__).resolve().parents[2] / "config" / "models.yaml"

Task = Literal["embed", "rerank", "classify", "generate"]
Precision = Literal["auto", "f32", "int8"]
Device = Literal["CPU", "GPU", "NPU", "AUTO"]
PerformanceHint = Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"]


class ModelSource(BaseModel):
    """Where a model's weights come from: exactly one of ``package``, ``path`` or ``hub``.

    :param package: an importable package that ships the weights (its ``get_model_path()``,
        else the package folder).
    :param path: a local folder holding ``config.json``, the weights and ``tokenizer.json``.
    :param hub: a Hugging Face hub id; needs network the first time.
    :param revision: the hub revision (only with ``hub``).
    """

    model_config = ConfigDict(extra="forbid")

    package: str | None = None
    path: str | None = None
    hub: str | None = None
    revision: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("package", "path", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"source needs exactly one of package, path, hub; got {given or 'none'}")
        if self.revision and not self.hub:
            raise ValueError("source.revision only applies to a hub source")
        return self

    def describe(self) -> str:
        """A short human-readable form, for logs and errors."""
        if self.package:
            return f"package:{self.package}"
        if self.path:
            return f"path:{self.path}"
        return f"hub:{self.hub}" + (f"@{self.revision}" if self.revision else "")

    def resolve(self) -> Path:
        """The local folder with the source weights (downloads a hub model if needed).

        :raises ConfigurationError: the package is not installed, the folder does not
            exist, or the hub model cannot be fetched.
        """
        if self.package:
            try:
                module = importlib.import_module(self.package)
            except ImportError as err:
                raise ConfigurationError(
                    f"model source package {self.package!r} is not installed: {err}"
                ) from err
            getter = getattr(module, "get_model_path", None)
            folder = Path(getter()) if callable(getter) else Path(module.__file__ or "").parent
        elif self.path:
            folder = Path(os.path.expandvars(self.path)).expanduser()
        else:
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(repo_id=str(self.hub), revision=self.revision))
            except Exception as err:
                raise ConfigurationError(
                    f"cannot fetch hub model {self.hub!r} (no network or unknown id?): {err}"
                ) from err
        if not (folder / "config.json").is_file():
            raise ConfigurationError(f"model source {self.describe()} -> {folder} has no config.json")
        return folder


class ModelSpec(BaseModel):
    """One model of the registry and how to run it.

    :param name: the registry name tasks refer to.
    :param source: where the weights come from.
    :param task: what the model is for: ``embed``, ``rerank``, ``classify`` or ``generate``.
    :param precision: ``auto`` (bf16 where the CPU has AMX, else f32), ``f32`` (strict) or
        ``int8`` (only if the INT8 model passes the accuracy gate; else ``auto``).
    :param device: the OpenVINO device.
    :param performance_hint: OpenVINO's ``PERFORMANCE_HINT``.
    :param max_batch: texts per inference call; batches are length-sorted.
    :param max_length: the longest text in tokens, special tokens included.
    :param truncate: cut longer texts to ``max_length`` instead of refusing them.
    :param pooling: ``mean`` (over the attention mask) or ``cls``.
    :param normalize: L2-normalise the embeddings.
    :param gate_threshold: for ``int8``: the cosine to the f32 model every probe of the accuracy
        gate (one per token length 8..128) must reach for the INT8 model to be used.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    source: ModelSource
    task: Task = "embed"
    precision: Precision = "auto"
    device: Device = "CPU"
    performance_hint: PerformanceHint = "LATENCY"
    max_batch: int = Field(default=32, ge=1, le=4096)
    max_length: int = Field(default=128, ge=2, le=8192)
    truncate: bool = False
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    gate_threshold: float = Field(default=0.9999, gt=0, le=1)


class ModelRegistry(BaseModel):
    """All the models of one ``models.yaml``.

    :param models: name -> spec.
    :param path: the file it was read from, for error messages.
    """

    models: dict[str, ModelSpec]
    path: str = "<memory>"

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelRegistry:
        """Read and validate a registry file.

        :raises ConfigurationError: the file is missing, not YAML, or a model is invalid.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigurationError(f"cannot read the model registry {path}: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ConfigurationError(f"model registry {path} needs a top-level 'models:' mapping")
        models: dict[str, ModelSpec] = {}
        for name, body in data["models"].items():
            fields: dict[str, Any] = {"name": name, **(body or {})}
            try:
                models[str(name)] = ModelSpec.model_validate(fields)
            except ValidationError as err:
                raise ConfigurationError(f"model {name!r} in {path} is invalid: {err}") from err
        return cls(models=models, path=str(path))

    def get(self, name: str) -> ModelSpec:
        """The spec of model ``name``.

        :raises UnknownModelError: no such model; the message lists the known names.
        """
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "(none)"
            raise UnknownModelError(f"unknown model {name!r}; known models in {self.path}: {known}") from None


def registry_path() -> Path:
    """The registry file in effect: ``AGENTFLOW_MODELS_CONFIG`` or ``config/models.yaml``."""
    return Path(os.environ.get("AGENTFLOW_MODELS_CONFIG") or DEFAULT_MODELS_PATH)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> ModelRegistry:
    return ModelRegistry.from_yaml(path)


def load_registry(path: str | Path | None = None) -> ModelRegistry:
    """The registry at ``path`` (default :func:`registry_path`), re-read when the file changes."""
    resolved = Path(path) if path else registry_path()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as err:
        raise ConfigurationError(f"model registry {resolved} not found: {err}") from err
    return _load(str(resolved), mtime)


def get_model_spec(name: str, path: str | Path | None = None) -> ModelSpec:
    """The spec of model ``name`` from the registry (see :func:`load_registry`).

    :raises UnknownModelError: no such model; the message lists the known names.
    """
    return load_registry(path).get(name)
