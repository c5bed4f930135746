"""A pydantic-ai model connection that replays a fixed script: for tests and scripted runs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook

from include.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models import Model
    from pydantic_ai.models.function import AgentInfo


class ScriptedModelHook(PydanticAIHook):
    """A ``pydanticai_scripted`` connection: a deterministic model that follows a script.

    For tests and scripted runs (the durable SIGKILL-and-resume test), never for real
    traffic. Turn ``i`` of the agent (the number of model responses so far) answers with
    the script's entry ``i``: a list of tool calls ``[{"tool": "name", "args": {...}}]``,
    or ``{"output": value}`` to finish (through the output tool when the agent has one).
    After the script the model finishes with ``"done"``. Built on pydantic-ai's
    ``FunctionModel``, so the common.ai agent loop, its tools and its durable journal run
    for real.

    Connection extra: ``{"turns": [[{"tool": "record_step", "args": {"step": 1}}], {"output": "ok"}]}``.

    :param llm_conn_id: the Airflow connection id.
    """

    conn_type = "pydanticai_scripted"
    hook_name = "AgentFlow scripted model (tests)"
    default_conn_name = "scripted_llm"

    @staticmethod
    def get_ui_field_behaviour() -> dict[str, Any]:
        """Hide the fields this connection type does not use."""
        return {
            "hidden_fields": ["schema", "port", "login", "password", "host"],
            "placeholders": {"extra": '{"turns": [[{"tool": "name", "args": {}}], {"output": "ok"}]}'},
        }

    def get_conn(self) -> Model:
        """Return the ``FunctionModel`` that plays the connection's script.

        :raises ConfigurationError: if the extra has no ``turns`` list.
        """
        from pydantic_ai.models.function import FunctionModel

        if self._model is None:
            _, extra = self._get_conn_and_extra()
            turns = extra.get("turns")
            if not isinstance(turns, list):
                raise ConfigurationError(
                    f"connection {self.llm_conn_id!r} needs an extra 'turns' list, e.g. "
                    '{"turns": [[{"tool": "name", "args": {}}], {"output": "ok"}]}'
                )
            self._model = FunctionModel(_Script(turns).respond, model_name="scripted")
        return self._model

    def test_connection(self) -> tuple[bool, str]:
        """Building the script model needs no network; report that it is usable."""
        self.get_conn()
        return True, "Scripted model ready (no LLM is called)."


class _Script:
    """The turn-by-turn answers behind ``ScriptedModelHook``."""

    def __init__(self, turns: list[Any]) -> None:
        self.turns = turns

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart

        turn = sum(1 for message in messages if isinstance(message, ModelResponse))
        entry = self.turns[turn] if turn < len(self.turns) else {"output": "done"}
        if isinstance(entry, list):
            return ModelResponse(
                parts=[
                    ToolCallPart(call["tool"], call.get("args", {}), tool_call_id=f"call-{turn}-{n}")
                    for n, call in enumerate(entry)
                ]
            )
        output = entry.get("output", "done")
        if info.output_tools:
            args = output if isinstance(output, dict) else {"response": output}
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])
        return ModelResponse(parts=[TextPart(output if isinstance(output, str) else json.dumps(output))])
