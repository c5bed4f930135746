"""An agent whose Kafka publish tool needs a human's approval (test DAG, not a use case).

Used by ``tests/integration/test_agent_tool_approval.py``: the ``publish_llm`` connection
(``pydanticai_scripted``) calls ``publish_event`` once, then answers. common.ai parks the
task in ``awaiting_input`` before the call runs; the test answers through the REST API.
"""

from __future__ import annotations

from airflow.sdk import dag

from operators.agents import AgentflowAgentOperator
from operators.toolsets import KafkaPublishToolset


@dag(schedule=None, catchup=False, tags=["test"], default_args={"retries": 0}, doc_md=__doc__)
def agent_tool_approval() -> None:
    AgentflowAgentOperator(
        task_id="publisher",
        llm_conn_id="publish_llm",
        system_prompt="Publish the acknowledgement the user asks for.",
        prompt="Acknowledge ticket T-77 of customer c-77.",
        session_id="c-77-{{ run_id }}",  # a fresh conversation per run: the script counts turns
        toolsets=[KafkaPublishToolset(["support.replies"])],
        knowledge=None,
    )


agent_tool_approval()
