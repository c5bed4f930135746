"""
### Support tickets from Kafka

Started by the `support.tickets` topic, exactly once per valid ticket event: the
`support_tickets` asset's watcher (`operators.triggers.kafka_events.KafkaEventTrigger`)
validates each message against `config/kafka/payloads.yaml`, sends malformed ones to
`support.tickets.dlq` with their reason, drops repeated `event_id`s through the
Cassandra ledger, and commits offsets only after the asset event is stored.

* **read_tickets**: the run's triggering events as typed `EventEnvelope` /
  `SupportTicket` models (several events may be folded into one run), each claimed for
  this run in the ledger: a ticket redelivered after a triggerer crash that started a
  second run is processed by the first run only; a retry of this task keeps its tickets.
* **publish_acknowledgements**: one `support.reply.created` event per ticket on
  `support.replies`, correlated with the ticket's `event_id`, through the idempotent
  producer; a retry re-publishes the same event ids.

The flagship agent triage of a single ticket is `support_ticket_triage`.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from operators.triggers.kafka_events import KafkaEventTrigger

log = logging.getLogger(__name__)

support_tickets = Asset(
    "support_tickets",
    watchers=[
        AssetWatcher(
            name="support_tickets_watcher",
            trigger=KafkaEventTrigger(
                topics=["support.tickets"],
                kafka_config_id="kafka_default",
                cassandra_conn_id="cassandra_default",
            ),
        )
    ],
)


@dag(
    schedule=[support_tickets],
    catchup=False,
    tags=["agentflow", "support", "kafka"],
    default_args={"retries": 2},
    doc_md=__doc__,
)
def support_ticket_events() -> None:
    @task
    def read_tickets(**context: Any) -> list[dict[str, Any]]:
        """Return the ticket events this run owns (claimed in the ledger), validated, oldest first."""
        from include.events import SupportTicket
        from operators.events import triggering_events

        tickets = []
        for envelope in triggering_events(
            context, event_type="support.ticket.created", claim=True, cassandra_conn_id="cassandra_default"
        ):
            ticket = SupportTicket.model_validate(envelope.payload)
            log.info("Ticket %s (event %s): %s", ticket.ticket_id, envelope.event_id, ticket.subject)
            tickets.append({"envelope": envelope.model_dump(mode="json"), "ticket": ticket.model_dump()})
        return tickets

    @task
    def publish_acknowledgements(tickets: list[dict[str, Any]], **context: Any) -> list[str]:
        """Publish one acknowledgement per ticket to ``support.replies``; return their event ids."""
        import uuid

        from include.events import EventEnvelope, SupportTicket, TicketReply, TriageResult, make_event
        from operators.events import IdempotentKafkaProducerHook, publish_events
        from operators.operators.produce import EVENT_ID_NAMESPACE

        replies = []
        for item in tickets:
            envelope = EventEnvelope.model_validate(item["envelope"])
            ticket = SupportTicket.model_validate(item["ticket"])
            reply = TicketReply(
                event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"ack/{envelope.event_id}")),
                correlation_id=envelope.event_id,
                ticket_id=ticket.ticket_id,
                customer_id=ticket.customer_id,
                result=TriageResult(
                    category="other",
                    reply=f"We received your ticket {ticket.ticket_id!r} and will answer shortly.",
                    confidence=0.0,
                    drafted_by="support_ticket_events",
                ),
            )
            replies.append(
                make_event(
                    "support.reply.created",
                    reply,
                    source="agentflow",
                    event_id=reply.event_id,
                    session_id=ticket.customer_id,
                    correlation_id=envelope.event_id,
                )
            )
        if replies:
            producer = IdempotentKafkaProducerHook(kafka_config_id="kafka_default").get_producer()
            publish_events(producer, "support.replies", replies)
        return [r.event_id for r in replies]

    publish_acknowledgements(read_tickets())


events_dag = support_ticket_events()

if __name__ == "__main__":
    events_dag.test()
