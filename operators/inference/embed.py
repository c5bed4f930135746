"""Embed texts with an OpenVINO model on the Intel worker pool."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from pydantic import BaseModel, Field

from operators.inference._common import (
    DEFAULT_MODEL,
    TEXTS_METRIC,
    InferenceDefaultsMixin,
    coerce_texts,
    embed_with_progress,
    inference_defaults,
    report_hardware,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from include.inference.hardware import HardwarePolicy


class EmbeddingResult(BaseModel):
    """What :class:`OpenVINOEmbedOperator` pushes to XCom.

    Small results travel inline (``embeddings``); large ones as a ``.npy`` file (``path``),
    float32 ``[count, dimension]``, with NaN rows at invalid indices.

    :param model: the registry model.
    :param dimension: the embedding size.
    :param count: how many texts came in.
    :param embeddings: the vectors in input order (``None`` at skipped indices), or ``None``
        when they were written to ``path``.
    :param path: the ``.npy`` file holding them, when too large for XCom.
    :param invalid: index -> reason for texts that were skipped.
    :param precision: the inference precision in effect.
    """

    model: str
    dimension: int
    count: int
    embeddings: list[list[float] | None] | None = None
    path: str | None = None
    invalid: dict[int, str] = Field(default_factory=dict)
    precision: str | None = None


class OpenVINOEmbedOperator(InferenceDefaultsMixin, BaseOperator):
    """Embed texts with an OpenVINO model (length-sorted batches, dynamic shapes, warm models).

    The model comes from the node's inference server (``AGENTFLOW_INFERENCE_SOCKET``) or the
    process-wide pool: it is compiled once, never per call. Map it over shards with
    ``OpenVINOEmbedOperator.partial(...).expand(texts=shards)``. Returns an
    :class:`EmbeddingResult` as a dict.

    :param texts: the texts: a list, an XCom reference (``upstream.output``), or a template
        rendering to a JSON list.
    :param model: a model name from ``config/models.yaml``.
    :param truncate: cut over-long texts to the model's ``max_length``; the model's setting if ``None``.
    :param on_invalid: ``fail`` (the task fails naming every bad index) or ``skip`` (bad texts
        get ``None``/NaN and are listed in ``invalid``). Valid texts are computed either way.
    :param max_xcom_values: above this many floats the result goes to a file, not XCom.
    :param output_dir: where large results go; ``AGENTFLOW_ARTIFACT_DIR`` or
        ``~/.cache/agentflow/artifacts`` if ``None`` (use shared storage with several workers).
    :param socket_path: the inference server's socket; ``AGENTFLOW_INFERENCE_SOCKET`` if ``None``.
    :param hardware_policy: ``fail`` or ``warn`` on a non-Intel CPU; ``AGENTFLOW_NON_INTEL_POLICY``
        (default ``fail``) if ``None``.
    """

    template_fields: Sequence[str] = ("texts", "model", "output_dir")
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        texts: list[str] | str | Any,
        model: str = DEFAULT_MODEL,
        truncate: bool | None = None,
        on_invalid: Literal["fail", "skip"] = "fail",
        max_xcom_values: int = 65_536,
        output_dir: str | None = None,
        socket_path: str | None = None,
        hardware_policy: HardwarePolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**inference_defaults(kwargs))
        if on_invalid not in ("fail", "skip"):
            raise ValueError(f"on_invalid must be 'fail' or 'skip', not {on_invalid!r}")
        self.texts = texts
        self.model = model
        self.truncate = truncate
        self.on_invalid = on_invalid
        self.max_xcom_values = max_xcom_values
        self.output_dir = output_dir
        self.socket_path = socket_path
        self.hardware_policy = hardware_policy

    def execute(self, context: Context) -> dict[str, Any]:
        """Embed the texts; return an :class:`EmbeddingResult` dict."""
        from airflow.sdk.observability.stats import Stats

        from include.inference import InvalidTextError

        texts = coerce_texts(self.texts)
        from include.inference.backend import get_backend

        backend = get_backend(self.socket_path)
        hardware = report_hardware(self.log, backend, self.model, self.hardware_policy, "embed")
        started = time.monotonic()
        invalid: dict[int, str] = {}
        rows: list[list[float] | None]
        try:
            rows = embed_with_progress(backend, self.model, texts, self.truncate, self.log)
        except InvalidTextError as err:
            if self.on_invalid == "fail":
                raise
            invalid = err.errors
            for index, reason in invalid.items():
                self.log.warning("skipping text %s: %s", index, reason)
            rows = [None if row is None else [float(x) for x in row] for row in (err.results or [])]  # type: ignore[attr-defined]
        self.log.info(
            "embedded %s text(s) with %s in %.3f s (%s skipped; backend %s)",
            len(texts),
            self.model,
            time.monotonic() - started,
            len(invalid),
            type(backend).__name__,
        )
        Stats.incr(TEXTS_METRIC, count=len(texts) - len(invalid), tags={"task": "embed", "model": self.model})
        dim = next((len(row) for row in rows if row is not None), 0)
        result = EmbeddingResult(
            model=self.model, dimension=dim, count=len(rows), invalid=invalid, precision=hardware.precision
        )
        if len(rows) * dim > self.max_xcom_values:
            result.path = str(self._write(rows, dim, context))
            self.log.info("wrote %s x %s embeddings to %s", len(rows), dim, result.path)
        else:
            result.embeddings = rows
        return result.model_dump(mode="json")

    def _write(self, rows: list[list[float] | None], dim: int, context: Context) -> Path:
        import numpy as np

        vectors = np.full((len(rows), dim), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                vectors[i] = row

        ti = context["ti"]
        root = Path(
            self.output_dir or os.environ.get("AGENTFLOW_ARTIFACT_DIR") or "~/.cache/agentflow/artifacts"
        ).expanduser()
        folder = root / str(ti.dag_id) / str(ti.run_id).replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "" if ti.map_index in (None, -1) else f"-{ti.map_index}"
        final = folder / f"{ti.task_id}{suffix}.npy"
        tmp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, vectors)
        os.replace(tmp, final)
        return final
