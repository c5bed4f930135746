"""
### Research and report (multi-agent)

A supervisor agent delegates a research question to specialist agents and writes the
report from their findings. The delegation is DAG composition, so every specialist is a
task of its own in the grid (logs, retries, tokens, transcript in the Agent runs page):

* **brief_specialists**: one brief per specialist area (the `areas` param).
* **research** (mapped, one per area): `AgentflowAgentOperator` specialists, each
  searching the knowledge base (`search_knowledge`) for its area and answering with
  cited findings.
* **write_report**: the supervisor `AgentflowAgentOperator`, with the team's memory
  (session = the `session_id` param, so it recalls earlier reports), combines the
  findings into one report with sources; guardrails and budgets as for every agent.
* **publish_report**: logs the report and returns it (XCom).

With no LLM configured the `agentflow_llm` connection is the extractive policy: the
specialists quote the passages they found and the report says it was drafted without an
LLM. Run it: `airflow dags test research_report`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, dag, task

from operators.agents import AgentflowAgentOperator

log = logging.getLogger(__name__)

SPECIALIST_PROMPT = (
    "You are the {area} specialist of a support research team. Search the knowledge base for what "
    "it says about the question in your area, and answer with the relevant facts only, citing the "
    "passage ids."
)
SUPERVISOR_PROMPT = (
    "You are the supervisor of a support research team. Recall earlier reports on this topic, then "
    "combine the specialists' findings into one short report: a summary, the facts by area, and the "
    "passage ids they rest on. Do not add facts the findings do not contain."
)


@dag(
    schedule=None,
    catchup=False,
    tags=["agentflow", "flagship", "multi-agent"],
    default_args={"retries": 2},
    params={
        "question": Param(
            "How do refunds work for a duplicate card charge, and how long do they take?",
            type="string",
            minLength=5,
            maxLength=2000,
        ),
        "areas": Param(
            ["billing", "returns"], type="array", items={"type": "string"}, minItems=1, maxItems=5
        ),
        "session_id": Param("research-team", type="string", minLength=1, maxLength=100),
    },
    doc_md=__doc__,
)
def research_report() -> None:
    @task
    def brief_specialists(params: dict[str, Any]) -> list[dict[str, str]]:
        """One brief per specialist area."""
        return [
            {
                "system_prompt": SPECIALIST_PROMPT.format(area=area),
                "prompt": f"Question ({area}): {params['question']}",
            }
            for area in params["areas"]
        ]

    findings = AgentflowAgentOperator.partial(
        task_id="research",
        llm_conn_id="agentflow_llm",
        allowed_tools=["search_knowledge"],
        usage_limits={"request_limit": 5, "tool_calls_limit": 4},
        time_limit=300,
    ).expand_kwargs(brief_specialists())

    @task
    def supervisor_prompt(params: dict[str, Any], findings: list[str]) -> str:
        """The supervisor's prompt: the question and every specialist's findings."""
        parts = [f"Question: {params['question']}"]
        parts += [f"Findings of specialist {i + 1}:\n{text}" for i, text in enumerate(findings)]
        return "\n\n".join(parts)

    report = AgentflowAgentOperator(
        task_id="write_report",
        llm_conn_id="agentflow_llm",
        system_prompt=SUPERVISOR_PROMPT,
        prompt=supervisor_prompt(findings=findings.output),
        session_id="{{ params.session_id }}",
        allowed_tools=["search_knowledge", "recall_memory", "remember"],
        usage_limits={"request_limit": 6, "tool_calls_limit": 5},
        time_limit=300,
    )

    @task
    def publish_report(report: str) -> str:
        """Log the report; it is this task's XCom."""
        log.info("Research report:\n%s", report)
        return report

    publish_report(report.output)


research_dag = research_report()

if __name__ == "__main__":
    research_dag.test()
