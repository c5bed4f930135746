"""Cross-encoder reranking with openvino-genai's ``TextRerankPipeline``.

A registry model with ``task: rerank`` is a cross-encoder: a sequence-classification model
that scores a (query, document) pair jointly, exported to OpenVINO IR with its tokenizer
(``python -m include.inference.export_llm --task rerank --model <hub id or folder>``, or
``optimum-cli export openvino --task text-classification``). Its ``source`` points at the
exported folder (a ``path``, or a ``hub`` repository that ships OpenVINO IR). The
bi-encoder (cosine of embeddings from an ``embed`` model) stays the default reranker.

Scores are the pipeline's (a sigmoid of the relevance logit for a one-label model), best
first. Bad input does not lose the batch: an empty query fails the call, empty documents
and pairs longer than ``max_length`` (unless ``truncate``) are named by index in one
:class:`InvalidTextError` whose ``results`` still hold the ranking of the valid documents.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from include.errors import ConfigurationError
from include.inference._errors import CorruptModelError, InvalidTextError
from include.inference._types import RerankHit

if TYPE_CHECKING:
    import openvino_genai as ov_genai

    from include.inference.hardware import HardwareInfo
    from include.inference.registry import ModelSpec

log = logging.getLogger(__name__)

REQUIRED_FILES = ("openvino_model.xml", "openvino_tokenizer.xml")


class CrossEncoder:
    """A warm ``TextRerankPipeline`` with input checks; thread-safe.

    :param name: the registry name, for messages.
    :param pipeline: the compiled pipeline.
    :param tokenizer_path: the model's ``tokenizer.json`` (to check pair lengths), if it has one.
    :param max_length: the longest (query, document) pair in tokens, special tokens included.
    :param truncate: let the pipeline cut longer pairs instead of refusing them.
    :param hardware: what it runs on.
    """

    def __init__(
        self,
        name: str,
        pipeline: ov_genai.TextRerankPipeline,
        tokenizer_path: Path | None,
        *,
        max_length: int,
        truncate: bool = False,
        hardware: HardwareInfo | None = None,
    ) -> None:
        self.name = name
        self.max_length = max_length
        self.truncate = truncate
        self.hardware = hardware
        self._pipeline: ov_genai.TextRerankPipeline | None = pipeline
        self._tokenizer = None
        if tokenizer_path is not None and tokenizer_path.is_file():
            from include.inference.runtime import load_tokenizer

            self._tokenizer = load_tokenizer(tokenizer_path)
        self._lock = threading.Lock()

    def check(self, query: object, documents: Sequence[object]) -> dict[int, str]:
        """Document index -> what is wrong with it.

        :raises InvalidTextError: the query itself is empty or not a string (index ``-1``).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidTextError(self.name, {-1: "the query is empty or not a string"})
        errors: dict[int, str] = {}
        for i, doc in enumerate(documents):
            if not isinstance(doc, str):
                errors[i] = f"not a string (got {type(doc).__name__})"
            elif not doc.strip():
                errors[i] = "empty document"
            elif self._tokenizer is not None and not self.truncate:
                n = len(self._tokenizer.encode(query, doc).ids)
                if n > self.max_length:
                    errors[i] = (
                        f"query + document is {n} tokens, longer than max_length {self.max_length} "
                        "(set truncate to cut it)"
                    )
        return errors

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None) -> list[RerankHit]:
        """The documents by relevance to ``query``, best first (``top_k`` of them if given).

        :raises InvalidTextError: some documents are invalid; ``results`` ranks the valid ones.
        """
        errors = self.check(query, documents)
        valid = [i for i in range(len(documents)) if i not in errors]
        hits: list[RerankHit] = []
        if valid:
            with self._lock:
                if self._pipeline is None:
                    raise RuntimeError(f"model {self.name!r} was closed (evicted from the pool)")
                ranked = self._pipeline.rerank(query, [str(documents[i]) for i in valid])
            hits = [RerankHit(index=valid[int(j)], score=float(score)) for j, score in ranked]
            hits.sort(key=lambda h: -h.score)
        if top_k is not None:
            hits = hits[:top_k]
        if errors:
            raise InvalidTextError(self.name, errors, list(hits))
        return hits

    def close(self) -> None:
        """Release the pipeline."""
        with self._lock:
            self._pipeline = None


def load_cross_encoder(spec: ModelSpec) -> CrossEncoder:
    """Compile the ``rerank`` model of ``spec`` with openvino-genai's ``TextRerankPipeline``.

    :raises ConfigurationError: the spec is not a ``rerank`` model, or its folder is not an
        exported cross-encoder.
    :raises DeviceNotAvailableError: the device is not present.
    :raises CorruptModelError: OpenVINO cannot read or compile it.
    """
    import openvino_genai as ov_genai

    from include.inference.convert import compiled_cache_dir
    from include.inference.hardware import detect_hardware
    from include.inference.runtime import compile_properties

    if spec.task != "rerank":
        raise ConfigurationError(
            f"model {spec.name!r} has task {spec.task!r}, not 'rerank' (a cross-encoder)"
        )
    folder = spec.source.resolve()
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigurationError(
            f"rerank model {spec.name!r}: {folder} is not an exported cross-encoder (missing "
            f"{', '.join(missing)}); export it with `python -m include.inference.export_llm --task rerank`"
        )
    hardware = detect_hardware(spec.device)
    props = compile_properties(spec, hardware)
    props["CACHE_DIR"] = str(compiled_cache_dir() / "rerank" / ("f32" if spec.precision == "f32" else "auto"))
    config = ov_genai.TextRerankPipeline.Config(top_n=4096, max_length=spec.max_length)
    started = time.monotonic()
    try:
        pipeline = ov_genai.TextRerankPipeline(str(folder), spec.device, config, **props)
    except RuntimeError as err:
        raise CorruptModelError(f"rerank model {spec.name!r}: cannot load {folder}: {err}") from err
    hardware.precision = (
        spec.precision if spec.precision == "f32" else ("bf16" if hardware.has_amx else "f32")
    )
    log.info("rerank model %s compiled on %s in %.2f s", spec.name, spec.device, time.monotonic() - started)
    return CrossEncoder(
        spec.name,
        pipeline,
        folder / "tokenizer.json",
        max_length=spec.max_length,
        truncate=spec.truncate,
        hardware=hardware,
    )
