"""Run converted models: tokenization, length-sorted batching, compiled OpenVINO models, the pool.

* :class:`TextEncoder` tokenizes with the ``tokenizers`` library from the model's
  ``tokenizer.json`` (no torch or transformers at runtime), checks every text up front,
  sorts the valid ones by token length, pads each batch of ``max_batch`` to its own longest
  text (dynamic shapes), runs them and returns the embeddings in input order.
* Bad input does not lose the batch: empty texts, non-strings and texts longer than
  ``max_length`` (unless ``truncate``) are collected first, the valid texts are still
  computed, and then one :class:`InvalidTextError` names every bad index and carries the
  valid results (``None`` at the bad indices) as ``results``.
* :func:`load_encoder` converts (or finds the cached IR), compiles once with properties
  from the spec and the CPUs this process owns, and reports the precision in effect.
* :class:`ModelPool` keeps compiled models warm: an LRU bounded by count, with ``loads``,
  ``hits`` and ``evictions`` counters and a clean :meth:`ModelPool.close`;
  :func:`get_pool` is the process-wide one.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from include.errors import ConfigurationError
from include.inference._errors import CorruptModelError, InvalidTextError
from include.inference.convert import INPUT_NAMES, compiled_cache_dir, ensure_converted
from include.inference.hardware import HardwareInfo, detect_hardware
from include.inference.registry import ModelSpec, get_model_spec

if TYPE_CHECKING:
    import openvino as ov
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

    from include.inference.rerank import CrossEncoder

log = logging.getLogger(__name__)

Batch = dict[str, "NDArray[np.int64]"]
#: Runs padded batches and returns one float32 array ``[batch, dim]`` per batch, in order.
BatchRunner = Callable[[list[Batch]], list["NDArray[np.float32]"]]


#: Batch widths are rounded up to a multiple of this many tokens (see ``TextEncoder.batches``).
PAD_MULTIPLE = 16


def load_tokenizer(path: Path, truncate_to: int | None = None) -> Tokenizer:
    """A ``tokenizers`` tokenizer from ``tokenizer.json``, without its own padding.

    :param truncate_to: truncate to this many tokens; ``None`` keeps every token.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    if truncate_to is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length=truncate_to)
    return tokenizer


class TextEncoder:
    """Tokenize, batch and run texts through an embedding model; engine-agnostic.

    :param name: the model name, for messages.
    :param tokenizer_path: the model's ``tokenizer.json``.
    :param run_batches: runs padded batches (see :data:`BatchRunner`).
    :param max_length: the longest text in tokens, special tokens included.
    :param max_batch: texts per batch.
    :param truncate: default for cutting over-long texts instead of refusing them.
    :param hardware: what the model runs on, if known.
    :param pad_multiple: round batch widths up to a multiple of this many tokens (masked).
    """

    def __init__(
        self,
        name: str,
        tokenizer_path: Path,
        run_batches: BatchRunner,
        *,
        max_length: int,
        max_batch: int,
        truncate: bool = False,
        hardware: HardwareInfo | None = None,
        pad_multiple: int = 1,
    ) -> None:
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be at least 1, got {pad_multiple}")
        self.name = name
        self.pad_multiple = pad_multiple
        self.max_length = max_length
        self.max_batch = max_batch
        self.truncate = truncate
        self.hardware = hardware
        self._run_batches = run_batches
        self._tokenizer = load_tokenizer(tokenizer_path)
        self._truncating = load_tokenizer(tokenizer_path, truncate_to=max_length)
        self._lock = threading.Lock()

    def tokenize(
        self, texts: Sequence[object], truncate: bool | None = None
    ) -> tuple[list[list[int] | None], dict[int, str]]:
        """Token ids per text (``None`` where invalid) and index -> reason for the invalid ones."""
        truncate = self.truncate if truncate is None else truncate
        errors: dict[int, str] = {}
        valid: list[int] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                errors[i] = f"not a string (got {type(text).__name__})"
            elif not text.strip():
                errors[i] = "empty text"
            else:
                valid.append(i)
        ids: list[list[int] | None] = [None] * len(texts)
        encoded = self._tokenizer.encode_batch([texts[i] for i in valid]) if valid else []
        for i, enc in zip(valid, encoded, strict=True):
            n = len(enc.ids)
            if n <= self.max_length:
                ids[i] = list(enc.ids)
            elif truncate:
                ids[i] = list(self._truncating.encode(str(texts[i])).ids)
            else:
                errors[i] = f"{n} tokens, longer than max_length {self.max_length} (set truncate to cut it)"
        return ids, errors

    def batches(self, ids: Sequence[list[int] | None]) -> tuple[list[list[int]], list[Batch]]:
        """Length-sorted batches of the valid texts: the input indices of each batch, and its arrays.

        With ``pad_multiple`` > 1 a batch's width is its longest text rounded up to a multiple
        of it (masked padding, so the embeddings do not change): on AMX CPUs the attention
        matmuls then run on whole tiles, about 10% more sentences/s (``bench/inference.py``).
        """
        order = sorted((i for i, seq in enumerate(ids) if seq is not None), key=lambda i: len(ids[i] or ()))
        groups = [order[k : k + self.max_batch] for k in range(0, len(order), self.max_batch)]
        arrays: list[Batch] = []
        for group in groups:
            longest = max(len(ids[i] or ()) for i in group)
            padded = -(-longest // self.pad_multiple) * self.pad_multiple
            width = max(longest, min(padded, self.max_length))
            input_ids = np.zeros((len(group), width), dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            for row, i in enumerate(group):
                seq = ids[i] or []
                input_ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            arrays.append(
                {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            )
        return groups, arrays

    def embed(self, texts: Sequence[object], truncate: bool | None = None) -> NDArray[np.float32]:
        """Embeddings ``[len(texts), dim]`` in input order.

        :raises InvalidTextError: some texts are invalid; the valid ones were computed and are
            in the error's ``results``.
        """
        ids, errors = self.tokenize(texts, truncate)
        groups, arrays = self.batches(ids)
        if arrays:
            with self._lock:
                outputs = self._run_batches(arrays)
        else:
            outputs = []
        dim = int(outputs[0].shape[1]) if outputs else 0
        result = np.zeros((len(texts), dim), dtype=np.float32)
        for group, out in zip(groups, outputs, strict=True):
            result[group] = out
        if errors:
            rows: list[object] = [None if i in errors else result[i] for i in range(len(texts))]
            raise InvalidTextError(self.name, errors, rows)
        return result

    def close(self) -> None:
        """Release the model (the compiled model is freed when the last reference goes)."""
        self._run_batches = _closed_runner(self.name)


def _closed_runner(name: str) -> BatchRunner:
    def run(_: list[Batch]) -> list[NDArray[np.float32]]:
        raise RuntimeError(f"model {name!r} was closed (evicted from the pool)")

    return run


def compile_properties(
    spec: ModelSpec, hardware: HardwareInfo, precision: str | None = None, cache_root: Path | None = None
) -> dict[str, Any]:
    """OpenVINO properties from the spec and the CPUs this process owns.

    Strict ``f32`` pins ``INFERENCE_PRECISION_HINT=f32``; ``auto`` (and ``int8``, whose INT8 IR,
    when the accuracy gate accepted it, runs at OpenVINO's default too) leaves OpenVINO's
    default, which is bf16 on AMX CPUs and f32 elsewhere. On the CPU, threads come from
    ``os.sched_getaffinity`` (a ``cpuset``-pinned worker sees its own CPUs), with one stream
    for ``LATENCY`` and one stream per CPU for ``THROUGHPUT``.

    OpenVINO's compiled-model cache (``CACHE_DIR``) gets one folder per precision policy:
    OpenVINO 2026.4.1's cache key ignores ``INFERENCE_PRECISION_HINT``, so an IR compiled at
    strict f32 and later at the default precision loads the f32 blob into a bf16 model, which
    corrupts memory on the first inference (seen as a segfault or ``malloc(): invalid size``).

    :param precision: ``auto`` or ``f32`` instead of the spec's (the accuracy gate compiles both).
    :param cache_root: the model cache whose ``ov-compiled`` folder holds the blobs; none if ``None``.
    """
    props: dict[str, Any] = {"PERFORMANCE_HINT": spec.performance_hint}
    policy = precision or effective_precision(spec)
    if policy == "f32":
        props["INFERENCE_PRECISION_HINT"] = "f32"
    if cache_root is not None:
        props["CACHE_DIR"] = str(compiled_cache_dir(cache_root) / ("f32" if policy == "f32" else "auto"))
    if spec.device == "CPU":
        props["INFERENCE_NUM_THREADS"] = hardware.cpus
        props["ENABLE_CPU_PINNING"] = True
        props["NUM_STREAMS"] = 1 if spec.performance_hint == "LATENCY" else hardware.cpus
    return props


def effective_precision(spec: ModelSpec) -> str:
    """The inference precision hint policy: ``int8`` runs at ``auto`` (its weights carry the INT8).

    Whether an ``int8`` spec gets its INT8 IR at all is the accuracy gate's call
    (:func:`include.inference.quantize.ensure_int8`, in :func:`load_encoder`).
    """
    return "auto" if spec.precision == "int8" else spec.precision


def _async_runner(compiled: ov.CompiledModel) -> BatchRunner:
    import openvino as ov

    jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    queue = ov.AsyncInferQueue(compiled, jobs)

    def run(arrays: list[Batch]) -> list[NDArray[np.float32]]:
        outputs: list[Any] = [None] * len(arrays)

        def done(request: ov.InferRequest, index: int) -> None:
            outputs[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

        queue.set_callback(done)
        for index, batch in enumerate(arrays):
            queue.start_async(dict(batch), userdata=index)
        queue.wait_all()
        return outputs

    return run


def load_encoder(spec: ModelSpec, core: ov.Core | None = None) -> TextEncoder:
    """Convert (or find the cached IR) and compile the model once; a ready :class:`TextEncoder`.

    A ``precision: int8`` spec runs its NNCF INT8 IR only if that passed the accuracy gate
    (:mod:`include.inference.quantize`); otherwise it runs at ``auto`` and the log says why.

    :raises CorruptModelError: the cached IR cannot be read or compiled.
    :raises DeviceNotAvailableError: the spec's device is not present.
    """
    import openvino as ov

    started = time.monotonic()
    converted = ensure_converted(spec)
    core = core or ov.Core()
    hardware = detect_hardware(spec.device, core)

    def build(xml: Path, precision: str, label: str | None = None, pad: int = 1) -> TextEncoder:
        return _compile_encoder(
            spec, core, xml, converted.tokenizer, hardware.model_copy(), precision, label, pad
        )

    # INT8 models keep exact widths: the accuracy gate judged them width by width.
    if spec.precision != "int8":
        encoder = build(converted.xml, spec.precision, pad=PAD_MULTIPLE)
    else:
        from include.inference.quantize import ensure_int8

        decision = ensure_int8(spec, converted, build)
        if decision.accepted and decision.xml:
            log.info("model %s: running INT8: %s", spec.name, decision.reason)
            encoder = build(Path(decision.xml), "auto", label="int8")
        else:
            log.warning("model %s: running precision auto instead of int8: %s", spec.name, decision.reason)
            encoder = build(converted.xml, "auto", pad=PAD_MULTIPLE)
    log.info("model %s: ready in %.2f s", spec.name, time.monotonic() - started)
    return encoder


def _compile_encoder(
    spec: ModelSpec,
    core: ov.Core,
    xml: Path,
    tokenizer: Path,
    hardware: HardwareInfo,
    precision: str,
    label: str | None = None,
    pad_multiple: int = 1,
) -> TextEncoder:
    props = compile_properties(spec, hardware, precision, cache_root=xml.parent.parent)
    started = time.monotonic()
    try:
        compiled = core.compile_model(str(xml), spec.device, props)
    except RuntimeError as err:
        raise CorruptModelError(
            f"model {spec.name!r}: cannot read or compile the IR at {xml}: {err}. "
            f"Delete {xml.parent} to convert it again."
        ) from err
    missing = [n for n in INPUT_NAMES if n not in {name for p in compiled.inputs for name in p.get_names()}]
    if missing:
        raise CorruptModelError(f"model {spec.name!r}: the IR at {xml} lacks inputs {missing}")
    if spec.device in ("CPU", "GPU", "NPU"):
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        hint_name = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        hardware.precision = f"{label}+{hint_name}" if label else hint_name
    log.info(
        "model %s: compiled %s on %s in %.2f s (%s)",
        spec.name,
        xml.name,
        spec.device,
        time.monotonic() - started,
        props,
    )
    return TextEncoder(
        spec.name,
        tokenizer,
        _async_runner(compiled),
        max_length=spec.max_length,
        max_batch=spec.max_batch,
        truncate=spec.truncate,
        hardware=hardware,
        pad_multiple=pad_multiple,
    )


class Closeable(Protocol):
    """What the pool keeps: anything with ``close()``."""

    def close(self) -> None: ...


class ModelPool:
    """Compiled models kept warm: an LRU bounded by count, with counters.

    Embedding models (:class:`TextEncoder`) and cross-encoders (``task: rerank``,
    :class:`~include.inference.rerank.CrossEncoder`) share the bound.

    :param max_models: how many compiled models to keep; the least recently used is closed.
    :param loader: builds an embedding model from its spec (default :func:`load_encoder`).
    :param registry_path: the ``models.yaml`` to resolve names in (default: the configured one).
    :param reranker_loader: builds a cross-encoder from its spec (default
        :func:`~include.inference.rerank.load_cross_encoder`).
    """

    def __init__(
        self,
        max_models: int = 2,
        loader: Callable[[ModelSpec], TextEncoder] | None = None,
        registry_path: str | Path | None = None,
        reranker_loader: Callable[[ModelSpec], CrossEncoder] | None = None,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, not {max_models}")
        self.max_models = max_models
        self._loader = loader or load_encoder
        self._reranker_loader = reranker_loader
        self._registry_path = registry_path
        self._models: OrderedDict[str, TextEncoder | CrossEncoder] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    def spec(self, name: str) -> ModelSpec:
        """The registry spec of ``name``.

        :raises UnknownModelError: ``name`` is not in the registry.
        """
        return get_model_spec(name, self._registry_path)

    def get(self, name: str) -> TextEncoder:
        """The warm embedding model ``name``, loading (and maybe evicting another) on a miss.

        :raises UnknownModelError: ``name`` is not in the registry.
        :raises ConfigurationError: ``name`` is a cross-encoder, which cannot embed.
        """
        model = self.get_model(name)
        if not isinstance(model, TextEncoder):
            raise ConfigurationError(
                f"model {name!r} is a cross-encoder (task rerank); it scores pairs and cannot embed"
            )
        return model

    def get_reranker(self, name: str) -> CrossEncoder:
        """The warm cross-encoder ``name`` (a ``task: rerank`` model).

        :raises UnknownModelError: ``name`` is not in the registry.
        :raises ConfigurationError: ``name`` is not a ``rerank`` model.
        """
        model = self.get_model(name)
        if isinstance(model, TextEncoder):
            raise ConfigurationError(
                f"model {name!r} is an embedding model, not a cross-encoder (task rerank)"
            )
        return model

    def get_model(self, name: str) -> TextEncoder | CrossEncoder:
        """The warm model ``name`` of either kind, loading (and maybe evicting another) on a miss.

        :raises UnknownModelError: ``name`` is not in the registry.
        """
        spec = self.spec(name)
        key = f"{name}:{spec.model_dump_json()}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the model pool is closed")
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                self.hits += 1
                return model
            if spec.task == "rerank":
                if self._reranker_loader is None:
                    from include.inference.rerank import load_cross_encoder

                    self._reranker_loader = load_cross_encoder
                model = self._reranker_loader(spec)
            else:
                model = self._loader(spec)
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.max_models:
                old_key, old = self._models.popitem(last=False)
                self.evictions += 1
                log.info("model pool: evicting %s", old_key.split(":", 1)[0])
                old.close()
            return model

    def loaded(self) -> list[str]:
        """Names of the models held, least recently used first."""
        with self._lock:
            return [key.split(":", 1)[0] for key in self._models]

    def stats(self) -> dict[str, Any]:
        """The counters and what is loaded."""
        return {
            "loads": self.loads,
            "hits": self.hits,
            "evictions": self.evictions,
            "loaded": self.loaded(),
            "max_models": self.max_models,
        }

    def close(self) -> None:
        """Close every model; later :meth:`get` calls fail."""
        with self._lock:
            self._closed = True
            while self._models:
                _, model = self._models.popitem(last=False)
                model.close()


_pool: ModelPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> ModelPool:
    """The process-wide pool (``AGENTFLOW_INFERENCE_MAX_MODELS`` models, default 2)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._closed:
            _pool = ModelPool(max_models=int(os.environ.get("AGENTFLOW_INFERENCE_MAX_MODELS", "2")))
            atexit.register(_pool.close)
        return _pool
