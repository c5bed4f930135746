"""A pydantic-ai model connection that drafts replies without an LLM (the embedded default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook

from include.policies.extractive import extractive_answer, extractive_triage, split_category_hint

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models import Model
    from pydantic_ai.models.function import AgentInfo


class ExtractivePolicyHook(PydanticAIHook):
    """A ``pydanticai_extractive`` connection: an agent model that needs no LLM.

    Used when no model is configured (``make demo`` on a bare machine). It drives a real
    common.ai agent run through pydantic-ai's ``FunctionModel``: its first turn calls the
    agent's knowledge search tool with the user prompt, its second answers through the
    output tool with a reply quoted from the passages found, marked as drafted without an
    LLM. Point the agent's connection at any other ``pydanticai*`` connection to use a model.

    Connection extra: ``{"search_tool": "search_knowledge", "k": 3}``.

    :param llm_conn_id: the Airflow connection id.
    """

    conn_type = "pydanticai_extractive"
    hook_name = "AgentFlow extractive policy (no LLM)"
    default_conn_name = "agentflow_llm"

    @staticmethod
    def get_ui_field_behaviour() -> dict[str, Any]:
        """Hide the fields this connection type does not use."""
        return {
            "hidden_fields": ["schema", "port", "login", "password", "host"],
            "placeholders": {"extra": '{"search_tool": "search_knowledge", "k": 3}'},
        }

    def get_conn(self) -> Model:
        """Return the ``FunctionModel`` that runs the extractive policy."""
        from pydantic_ai.models.function import FunctionModel

        if self._model is None:
            _, extra = self._get_conn_and_extra()
            policy = _ExtractivePolicy(
                search_tool=extra.get("search_tool", "search_knowledge"), k=extra.get("k", 3)
            )
            self._model = FunctionModel(policy.respond, model_name="extractive-policy")
        return self._model

    def test_connection(self) -> tuple[bool, str]:
        """Building the policy model needs no network; report that it is usable."""
        self.get_conn()
        return True, "Extractive policy ready (no LLM is called)."


class _ExtractivePolicy:
    """The two-turn policy behind ``ExtractivePolicyHook``."""

    def __init__(self, search_tool: str, k: int) -> None:
        self.search_tool = search_tool
        self.k = int(k)

    def respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart

        prompt = ""
        passages: list[dict[str, Any]] | None = None
        for message in messages:
            if not isinstance(message, ModelRequest):
                continue
            for part in message.parts:
                if part.part_kind == "user-prompt" and isinstance(part.content, str):
                    # A new turn (memory holds earlier ones): only its own search counts.
                    prompt = part.content
                    passages = None
                elif isinstance(part, ToolReturnPart) and part.tool_name == self.search_tool:
                    passages = part.content if isinstance(part.content, list) else []

        query, hint, hint_score = split_category_hint(prompt)
        offered = {tool.name for tool in info.function_tools}
        if passages is None and self.search_tool in offered:
            return ModelResponse(parts=[ToolCallPart(self.search_tool, {"query": query, "k": self.k})])

        if info.output_tools:
            result = extractive_triage(passages or [], category_hint=hint, hint_score=hint_score)
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, result)])
        return ModelResponse(parts=[TextPart(extractive_answer(passages or []))])
