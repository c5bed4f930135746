"""The extractive policy drives a real pydantic-ai agent run; only the connection lookup is mocked."""

from __future__ import annotations

from unittest import mock

import pytest
from airflow.sdk import Connection
from pydantic_ai import Agent
from pydantic_ai.messages import ToolCallPart

from include.events import TriageResult
from include.policies import NO_LLM_NOTICE
from operators.hooks.extractive import ExtractivePolicyHook
from operators.toolsets import knowledge_toolset


@pytest.fixture
def hook() -> ExtractivePolicyHook:
    conn = Connection(conn_id="agentflow_llm", conn_type="pydanticai_extractive", extra='{"k": 2}')
    with mock.patch.object(ExtractivePolicyHook, "get_connection", return_value=conn):
        hook = ExtractivePolicyHook(llm_conn_id="agentflow_llm")
        hook.get_conn()
    return hook


def test_agent_searches_then_answers_with_structured_output(hook: ExtractivePolicyHook) -> None:
    agent = Agent(hook.get_conn(), output_type=TriageResult, toolsets=[knowledge_toolset()])
    run = agent.run_sync("I was charged twice for my order, please refund the duplicate")

    calls = [
        part for message in run.all_messages() for part in message.parts if isinstance(part, ToolCallPart)
    ]
    assert [call.tool_name for call in calls] == ["search_knowledge", "final_result"]
    assert calls[0].args == {"query": "I was charged twice for my order, please refund the duplicate", "k": 2}
    assert run.output.category == "billing"
    assert run.output.sources[0] == "kb-billing-charges"
    assert len(run.output.sources) == 2
    assert run.output.drafted_by == "extractive-policy"
    assert NO_LLM_NOTICE in run.output.reply


def test_agent_without_the_search_tool_answers_in_text(hook: ExtractivePolicyHook) -> None:
    run = Agent(hook.get_conn()).run_sync("Where is my parcel?")
    assert NO_LLM_NOTICE in run.output
    assert run.output.startswith("The knowledge base has nothing on this.")


def test_a_text_agent_quotes_the_passages_it_found(hook: ExtractivePolicyHook) -> None:
    from operators.toolsets import knowledge_toolset

    run = Agent(hook.get_conn(), toolsets=[knowledge_toolset()]).run_sync("How long do refunds take?")
    assert NO_LLM_NOTICE in run.output
    assert run.output.startswith('From "')
    assert "(kb-refund-policy)" in run.output


def test_model_is_built_once_per_hook(hook: ExtractivePolicyHook) -> None:
    assert hook.get_conn() is hook.get_conn()
    assert hook.test_connection() == (True, "Extractive policy ready (no LLM is called).")
