"""What the inference operators share: defaults, input coercion, backend choice, hardware logging."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from include.errors import ConfigurationError

if TYPE_CHECKING:
    from include.inference.backend import InferenceBackend
    from include.inference.hardware import HardwareInfo, HardwarePolicy

DEFAULT_POOL = "openvino"
DEFAULT_QUEUE = "intel"
DEFAULT_MODEL = "all-minilm-l6-v2"
HARDWARE_METRIC = "agentflow.inference.tasks"
TEXTS_METRIC = "agentflow.inference.texts"


def inference_defaults(
    kwargs: dict[str, Any], dag_default_args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``kwargs`` with the ``openvino`` pool and ``intel`` queue unless the caller (or the DAG's
    ``default_args``) chose others."""
    chosen = {**(dag_default_args or {}), **(kwargs.get("default_args") or {})}
    for key, value in (("pool", DEFAULT_POOL), ("queue", DEFAULT_QUEUE)):
        if key not in kwargs and key not in chosen:
            kwargs[key] = value
    return kwargs


class InferenceDefaultsMixin:
    """Apply the pool and queue defaults to mapped tasks too (``.partial(...).expand(...)``).

    ``partial()`` does not run ``__init__`` and reads no ``pool`` default from its signature,
    so without this a mapped inference task would land in ``default_pool``.
    """

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``BaseOperator.partial`` with the inference pool and queue by default."""
        from airflow.sdk.definitions._internal.contextmanager import DagContext

        dag = kwargs.get("dag") or DagContext.get_current()
        defaults = dict(getattr(dag, "default_args", None) or {})
        return super().partial(**inference_defaults(kwargs, defaults))  # type: ignore[misc]

    def pre_execute(self, context: Any) -> None:
        """Start the batch clock (for ``operators.metrics.inference``)."""
        self._inference_started = time.monotonic()
        super().pre_execute(context)  # type: ignore[misc]

    def post_execute(self, context: Any, result: Any = None) -> None:
        """Emit the finished batch through ``operators.metrics.inference``: model, items, seconds.

        Items are the task's input texts (``texts``, or ``documents`` for rerank); the model
        tag is ``model``, or the classifier's name for classify. Runs only after a successful
        ``execute``.
        """
        from operators import metrics

        super().post_execute(context, result)  # type: ignore[misc]
        started = getattr(self, "_inference_started", None)
        if started is None:
            return
        items = coerce_texts(getattr(self, "texts", None) or getattr(self, "documents", None) or [])
        model = getattr(self, "model", None) or getattr(self, "classifier", None) or "unknown"
        metrics.inference(str(model), len(items), time.monotonic() - started)


def coerce_texts(value: Any, what: str = "texts") -> list[str]:
    """A list of texts from a list, a JSON list string (a rendered template) or one string.

    :raises ConfigurationError: anything else.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                return [value]
        else:
            return [value]
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return list(value)
    raise ConfigurationError(
        f"{what} must be a list of strings (or an XCom that holds one), not {type(value).__name__}"
    )


def report_hardware(
    log: Any, backend: InferenceBackend, model: str, policy: HardwarePolicy | None, task: str
) -> HardwareInfo:
    """Log and emit the hardware ``model`` runs on; refuse non-Intel CPUs unless the policy warns.

    :raises UnsupportedHardwareError: a non-Intel CPU under the ``fail`` policy.
    """
    from airflow.sdk.observability.stats import Stats

    from include.inference.hardware import check_hardware

    info = backend.hardware(model)
    log.info("inference hardware for %s: %s", model, info.summary())
    Stats.incr(
        HARDWARE_METRIC,
        tags={
            "task": task,
            "model": model,
            "vendor": info.vendor,
            "cpu_model": info.cpu_model,
            "device": info.device,
            "precision": info.precision or "unknown",
            "amx": str(info.has_amx).lower(),
            "avx512": str("avx512f" in info.flags).lower(),
            "vnni": str(any("vnni" in f for f in info.flags)).lower(),
        },
    )
    check_hardware(info, policy)
    return info


#: Texts per call to the backend in long embedding jobs; the task logs its progress after each.
PROGRESS_CHUNK = 512


def embed_with_progress(
    backend: Any,
    model: str,
    texts: Sequence[str],
    truncate: bool | None,
    log: Any,
    *,
    chunk: int = PROGRESS_CHUNK,
) -> list[list[float] | None]:
    """Embed ``texts`` in chunks of ``chunk``, logging ``embedded k/N texts`` after each chunk.

    :raises InvalidTextError: naming every bad index (input positions), with the valid rows
        in ``results``, as one ``embed_rows`` call would.
    """
    from include.inference import InvalidTextError

    rows: list[list[float] | None] = []
    errors: dict[int, str] = {}
    total = len(texts)
    for start in range(0, total, chunk):
        part = list(texts[start : start + chunk])
        try:
            rows.extend(backend.embed_rows(model, part, truncate))
        except InvalidTextError as err:
            errors.update({start + index: reason for index, reason in err.errors.items()})
            rows.extend(err.results or [None] * len(part))  # type: ignore[arg-type]
        if total > chunk:
            log.info(
                "embedded %d/%d texts (%d%%)",
                min(start + chunk, total),
                total,
                100 * min(start + chunk, total) // total,
            )
    if errors:
        raise InvalidTextError(model, errors, list(rows))
    return rows
