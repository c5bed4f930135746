"""Classify texts by nearest centroid over labelled examples, on the Intel worker pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator

from operators.inference._common import (
    InferenceDefaultsMixin,
    coerce_texts,
    inference_defaults,
    report_hardware,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from include.inference.hardware import HardwarePolicy


class OpenVINOClassifyOperator(InferenceDefaultsMixin, BaseOperator):
    """Label texts with the closest centroid of labelled examples (``config/classify/<name>.yaml``).

    No training: each label's centroid is the mean embedding of its examples, computed once
    per warm model. Returns, in input order, ``{"label", "score", "scores"}`` per text
    (``None`` for skipped texts).

    :param texts: the texts: a list, an XCom reference, or a template rendering to a JSON list.
    :param classifier: a classifier name under ``config/classify`` or a YAML path.
    :param truncate: cut over-long texts instead of refusing them; the model's setting if ``None``.
    :param on_invalid: ``fail`` (the task fails naming every bad index) or ``skip``.
    :param socket_path: the inference server's socket; ``AGENTFLOW_INFERENCE_SOCKET`` if ``None``.
    :param hardware_policy: ``fail`` or ``warn`` on a non-Intel CPU; the environment's if ``None``.
    """

    template_fields: Sequence[str] = ("texts", "classifier")
    ui_color = "#dbeafe"

    def __init__(
        self,
        *,
        texts: list[str] | str | Any,
        classifier: str = "support_tickets",
        truncate: bool | None = None,
        on_invalid: Literal["fail", "skip"] = "fail",
        socket_path: str | None = None,
        hardware_policy: HardwarePolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**inference_defaults(kwargs))
        if on_invalid not in ("fail", "skip"):
            raise ValueError(f"on_invalid must be 'fail' or 'skip', not {on_invalid!r}")
        self.texts = texts
        self.classifier = classifier
        self.truncate = truncate
        self.on_invalid = on_invalid
        self.socket_path = socket_path
        self.hardware_policy = hardware_policy

    def execute(self, context: Context) -> list[dict[str, Any] | None]:
        """Classify the texts; return one dict per text, in input order."""
        from include.inference import InvalidTextError
        from include.inference.classify import load_classifier_config

        texts = coerce_texts(self.texts)
        config = load_classifier_config(self.classifier)
        from include.inference.backend import get_backend

        backend = get_backend(self.socket_path)
        report_hardware(self.log, backend, config.model, self.hardware_policy, "classify")
        try:
            labels: list[Any] = list(backend.classify(self.classifier, texts, self.truncate))
        except InvalidTextError as err:
            if self.on_invalid == "fail":
                raise
            for index, reason in err.errors.items():
                self.log.warning("skipping text %s: %s", index, reason)
            labels = list(err.results or [])
        out = [None if c is None else c.model_dump() for c in labels]
        for i, c in enumerate(out):
            if c is not None:
                self.log.info("text %s -> %s (%.3f)", i, c["label"], c["score"])
        return out
