"""A pydantic-ai model connection backed by a local OpenVINO LLM (openvino-genai's ``LLMPipeline``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook

from include.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic_ai.models import Model


class OpenVINOLLMHook(PydanticAIHook):
    """A ``pydanticai_openvino`` connection: common.ai agents on a local OpenVINO LLM.

    ``get_conn()`` returns an :class:`include.inference.llm.OpenVINOModel`; tool calls and
    structured output go through openvino-genai's constrained decoding. Nothing is loaded
    until the first request, and the compiled pipeline stays warm in the process.

    Connection extra (see :class:`include.inference.llm.LLMSettings`)::

        {"model": "qwen2.5-0.5b-instruct", "device": "CPU", "max_new_tokens": 512, "seed": 0}

    or ``{"model_dir": "/path/to/exported-ir"}`` instead of a registry ``model`` (task
    ``generate`` in ``config/models.yaml``). ``make models`` exports one and prints the extra.

    :param llm_conn_id: the Airflow connection id.
    """

    conn_type = "pydanticai_openvino"
    hook_name = "AgentFlow OpenVINO LLM (local)"
    default_conn_name = "openvino_llm"

    @staticmethod
    def get_ui_field_behaviour() -> dict[str, Any]:
        """Hide the fields this connection type does not use."""
        return {
            "hidden_fields": ["schema", "port", "login", "password", "host"],
            "placeholders": {"extra": '{"model": "qwen2.5-0.5b-instruct", "max_new_tokens": 512, "seed": 0}'},
        }

    def get_conn(self) -> Model:
        """Return the :class:`~include.inference.llm.OpenVINOModel` (the pipeline loads on first use).

        :raises ConfigurationError: the extra is invalid (the message names the field).
        """
        from pydantic import ValidationError

        from include.inference.llm import LLMSettings, OpenVINOModel

        if self._model is None:
            _, extra = self._get_conn_and_extra()
            try:
                settings = LLMSettings.model_validate(extra)
            except ValidationError as err:
                raise ConfigurationError(
                    f"connection {self.llm_conn_id!r} (pydanticai_openvino) has an invalid extra: {err}"
                ) from err
            self._model = OpenVINOModel(settings)
        return self._model

    def test_connection(self) -> tuple[bool, str]:
        """Check the extra and that the model folder is an exported OpenVINO model (no compile)."""
        try:
            model = self.get_conn()
            folder, device, name = model.llm.resolve()  # type: ignore[attr-defined]
        except Exception as err:
            return False, str(err)
        return True, f"OpenVINO LLM {name!r} at {folder} on {device} (loaded on first request)."
