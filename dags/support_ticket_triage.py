"""
### Support ticket triage

The flagship agent DAG. A support ticket event is validated against its schema, a
common.ai agent searches the knowledge base and drafts a categorised reply with its
sources, and the reply is published.

* **validate_ticket**: the ticket event (the `ticket` param, or the triggering Kafka
  event) is checked against `include.events.EventEnvelope` and `SupportTicket`; a bad
  event fails here with the field that was wrong, before any model is called.
* **draft_reply**: `AgentOperator` (apache-airflow-providers-common-ai) on the
  `agentflow_llm` connection with the `knowledge` toolset. On a bare machine that
  connection is the `pydanticai_extractive` policy, which drafts from the retrieved
  passages and says so in the reply; point it at any `pydanticai` connection
  (OpenAI-compatible server, OpenVINO Model Server, vLLM, a hosted API) for an LLM.
* **publish_reply**: builds the `TicketReply` event for `support.replies`.

Run it: `make demo`, or `airflow dags test support_ticket_triage`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.ai.operators.agent import AgentOperator
from airflow.sdk import Param, dag, task

from include.events import TriageResult
from operators.toolsets import knowledge_toolset

log = logging.getLogger(__name__)

SAMPLE_TICKET: dict[str, Any] = {
    "event_type": "support.ticket.created",
    "event_id": "evt-demo-0001",
    "timestamp": "2026-11-21T09:30:00Z",
    "source": "helpdesk",
    "session_id": "customer-42",
    "payload": {
        "ticket_id": "T-1001",
        "customer_id": "customer-42",
        "subject": "Charged twice for one order",
        "body": "Hello, my card was charged twice for order 5512 yesterday. "
        "Can you refund the duplicate charge?",
        "channel": "email",
    },
}

SYSTEM_PROMPT = (
    "You are a support agent for an online store. Search the knowledge base before answering, "
    "classify the ticket, and draft a short, polite reply based only on the passages you found. "
    "Cite the ids of the passages you used in `sources`."
)


@dag(
    schedule=None,
    catchup=False,
    tags=["agentflow", "flagship", "support"],
    default_args={"retries": 2},
    params={"ticket": Param(SAMPLE_TICKET, type="object", description="A support.ticket.created event")},
    doc_md=__doc__,
)
def support_ticket_triage() -> None:
    @task
    def validate_ticket(params: dict[str, Any]) -> dict[str, Any]:
        """Validate the ticket event; fail (without retries) naming the offending field on bad input."""
        from airflow.sdk.exceptions import AirflowFailException
        from pydantic import ValidationError

        from include.events import EventEnvelope, SupportTicket

        try:
            envelope = EventEnvelope.model_validate(params["ticket"])
            ticket = SupportTicket.model_validate(envelope.payload)
        except ValidationError as err:
            # Bad input does not get better on retry: fail now, before any model is called.
            raise AirflowFailException(f"invalid support ticket event: {err}") from err
        return {"envelope": envelope.model_dump(mode="json"), "ticket": ticket.model_dump(mode="json")}

    validated = validate_ticket()

    draft = AgentOperator(
        task_id="draft_reply",
        llm_conn_id="agentflow_llm",
        system_prompt=SYSTEM_PROMPT,
        prompt="{{ ti.xcom_pull(task_ids='validate_ticket')['ticket']['subject'] }}. "
        "{{ ti.xcom_pull(task_ids='validate_ticket')['ticket']['body'] }}",
        output_type=TriageResult,
        toolsets=[knowledge_toolset()],
        usage_limits={"request_limit": 6, "tool_calls_limit": 4},
        serialize_output=True,
    )

    @task
    def publish_reply(validated: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """Build the reply event for ``support.replies`` and log it."""
        from include.events import TicketReply

        reply = TicketReply(
            correlation_id=validated["envelope"]["event_id"],
            ticket_id=validated["ticket"]["ticket_id"],
            customer_id=validated["ticket"]["customer_id"],
            result=TriageResult.model_validate(result),
        )
        log.info(
            "Triage of ticket %s: category=%s confidence=%s sources=%s\n%s",
            reply.ticket_id,
            reply.result.category,
            reply.result.confidence,
            ",".join(reply.result.sources),
            reply.result.reply,
        )
        return reply.model_dump(mode="json")

    validated >> draft
    publish_reply(validated, draft.output)


triage_dag = support_ticket_triage()

if __name__ == "__main__":
    triage_dag.test()
