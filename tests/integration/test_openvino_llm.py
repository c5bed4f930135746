"""The ``pydanticai_openvino`` model on a real openvino-genai ``LLMPipeline``.

No generative weights can be fetched here, so the module builds a tiny Qwen2-style model
(random weights, a BPE tokenizer trained on generated text, Qwen2.5's chat template) and
exports it with optimum-intel exactly as ``make models`` exports a real one. Its text is
meaningless: these tests check the plumbing -- the chat template with tools, constrained
decoding, tool calls parsed into ``ToolCallPart``s and run by pydantic-ai and common.ai's
``AgentOperator``, structured output that validates, the warm pipeline -- not quality.

The export runs optimum-intel 2.2 from the exporter overlay that ``make venv-dev`` installs
(``requirements-export.txt``; ``AGENTFLOW_OPTIMUM_CLI`` may name another exporter, see
``include/inference/export_llm.py``); without one the tests fail with the exporter's reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal
from unittest import mock

import pytest
from pydantic import BaseModel

from include.errors import ConfigurationError
from include.inference.export_llm import ExporterUnavailableError, export_model
from include.inference.llm import LLMSettings, OpenVINOModel, PipelineCache
from include.inference.tiny import build_tiny_causal_lm

pytestmark = pytest.mark.integration

CONN_ID = "tiny_openvino_llm"
ORDERS = ("A1", "B2", "C3")


class Triage(BaseModel):
    """The structured output the agent must produce."""

    category: Literal["billing", "shipping", "returns"]
    urgent: bool


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built and exported to OpenVINO IR (fp32) once for the module."""
    root = tmp_path_factory.mktemp("tiny-llm")
    source = build_tiny_causal_lm(root / "hf", seed=0)
    try:
        return export_model(source, root / "ov", task="generate", weight_format="fp32")
    except ExporterUnavailableError as err:
        # `make venv-dev` installs the exporter overlay (requirements-export.txt): missing is a failure.
        pytest.fail(f"optimum-intel cannot export in this environment: {err}")


@pytest.fixture
def connection(tiny_llm: Path) -> Iterator[str]:
    """A real Airflow connection of type ``pydanticai_openvino`` (from the environment)."""
    extra = {"model_dir": str(tiny_llm), "max_new_tokens": 256, "seed": 3}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            json.dumps({"conn_type": "pydanticai_openvino", "extra": extra}),
        )
        yield CONN_ID


def _lookup_order_tool(calls: list[str]) -> Any:
    def lookup_order(order_id: Literal["A1", "B2", "C3"]) -> str:
        """Look up the status of an order by its id."""
        calls.append(order_id)
        return f"order {order_id} shipped yesterday"

    return lookup_order


def _tool_first(ctx: Any) -> dict[str, Any]:
    """Force a call to ``lookup_order`` on the first step (pydantic-ai's per-step ``tool_choice``)."""
    return {"tool_choice": ["lookup_order"]} if ctx.run_step <= 1 else {}


def _calls(messages: list[Any]) -> list[Any]:
    from pydantic_ai.messages import ToolCallPart

    return [p for m in messages for p in m.parts if isinstance(p, ToolCallPart)]


def _retries(messages: list[Any]) -> list[Any]:
    from pydantic_ai.messages import ToolReturnPart

    return [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart) and p.outcome != "success"]


def test_agent_calls_a_tool_and_returns_validated_output_through_the_real_pipeline(connection: str) -> None:
    from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse

    hook = PydanticAIHook.get_hook(connection)
    assert type(hook).__name__ == "OpenVINOLLMHook"
    model = hook.get_conn()
    assert isinstance(model, OpenVINOModel)
    calls: list[str] = []
    agent = Agent(
        model,
        output_type=Triage,
        tools=[_lookup_order_tool(calls)],
        instructions="Triage the customer's ticket; look the order up first.",
        model_settings=_tool_first,
    )
    run = agent.run_sync("Where is my order A1? It is late.")

    tool_calls = _calls(run.all_messages())
    assert [c.tool_name for c in tool_calls] == ["lookup_order", "final_result"]
    assert len(calls) == 1
    assert calls[0] in ORDERS
    assert tool_calls[0].args_as_dict() == {"order_id": calls[0]}
    assert not _retries(run.all_messages())  # constrained decoding: no argument ever failed validation
    assert isinstance(run.output, Triage)
    assert Triage.model_validate(tool_calls[1].args_as_dict()) == run.output
    assert run.usage.requests == 2
    assert run.usage.output_tokens > 0
    # The second prompt is the first plus the rendered tool call and its result.
    first, second = [m for m in run.all_messages() if isinstance(m, ModelResponse)][:2]
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert first.model_name == "ov"
    assert first.provider_name == "openvino"


def test_the_pipeline_is_compiled_once_and_reused(tiny_llm: Path) -> None:
    from pydantic_ai import Agent

    cache = PipelineCache(max_pipelines=1)
    model = OpenVINOModel(LLMSettings(model_dir=str(tiny_llm), max_new_tokens=256), cache=cache)
    assert cache.stats()["loads"] == 0  # building the model loads nothing
    for _ in range(2):
        Agent(model, output_type=Triage).run_sync("My parcel arrived damaged.")
    assert cache.stats()["loads"] == 1
    assert cache.stats()["hits"] >= 1


def test_native_structured_output_is_constrained_to_the_schema(tiny_llm: Path) -> None:
    from pydantic_ai import Agent, NativeOutput

    model = OpenVINOModel(
        LLMSettings(model_dir=str(tiny_llm), max_new_tokens=256, seed=1), cache=PipelineCache()
    )
    run = Agent(model, output_type=NativeOutput(Triage)).run_sync("I was charged twice.")
    assert isinstance(run.output, Triage)
    assert not _calls(run.all_messages())  # answered as JSON text, not through a tool


def test_agent_operator_runs_on_the_openvino_connection(connection: str) -> None:
    from airflow.providers.common.ai.operators.agent import AgentOperator
    from pydantic_ai.toolsets import FunctionToolset

    calls: list[str] = []
    op = AgentOperator(
        task_id="triage",
        prompt="Order B2 never arrived.",
        llm_conn_id=connection,
        system_prompt="Triage the ticket; look the order up first.",
        output_type=Triage,
        toolsets=[FunctionToolset([_lookup_order_tool(calls)], id="orders")],
        agent_params={"model_settings": _tool_first},
        serialize_output=True,
    )
    ti = SimpleNamespace(
        id="0190f0aa-0000-7000-8000-000000000001",
        dag_id="tiny_llm",
        task_id="triage",
        run_id="manual__1",
        try_number=1,
        map_index=-1,
        xcom_push=mock.MagicMock(),
    )
    result = op.execute({"task_instance": ti, "ti": ti})  # type: ignore[arg-type]

    assert len(calls) == 1
    assert calls[0] in ORDERS
    assert Triage.model_validate(result)
    pushed = {c.kwargs.get("key", c.args[0] if c.args else None): c for c in ti.xcom_push.call_args_list}
    assert "usage" in pushed


def test_a_folder_that_is_not_an_exported_model_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "openvino_model.xml").write_text("<net/>")
    with pytest.raises(ConfigurationError, match=r"openvino_tokenizer\.xml, openvino_detokenizer\.xml"):
        LLMSettings(model_dir=str(tmp_path)).resolve()
