"""
### Kafka exactly-once, end to end (test DAG)

Copied into a temporary DAGs folder by `tests/e2e/test_kafka_exactly_once.py` and
`bench/events.py`; never deployed. Its topic, Kafka connection and registry come from
the environment of the Airflow processes, so each test run watches its own unique topic.

* `kafka_exactly_once_e2e`: scheduled on the test topic's asset through
  `KafkaEventTrigger`; `claim` returns the event ids this run owns (its XCom is what the
  test counts).
* `kafka_stock_e2e` (only with `AGENTFLOW_E2E_STOCK_TOPIC`): the same on the provider's
  stock `KafkaMessageQueueTrigger`, the bench's baseline.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from operators.triggers.kafka_events import KafkaEventTrigger

TOPIC = os.environ.get("AGENTFLOW_E2E_TOPIC", "e2e.tickets.unset")
KAFKA_CONN = os.environ.get("AGENTFLOW_E2E_KAFKA_CONN", "kafka_default")
REGISTRY = os.environ.get("AGENTFLOW_E2E_REGISTRY")
STOCK_TOPIC = os.environ.get("AGENTFLOW_E2E_STOCK_TOPIC")
STOCK_KAFKA_CONN = os.environ.get("AGENTFLOW_E2E_STOCK_KAFKA_CONN", "kafka_default")

events = Asset(
    f"e2e_{TOPIC}",
    watchers=[
        AssetWatcher(
            name=f"e2e_watcher_{TOPIC}",
            trigger=KafkaEventTrigger(
                topics=[TOPIC],
                kafka_config_id=KAFKA_CONN,
                poll_timeout=0.2,
                cassandra_conn_id="cassandra_default",
                registry_path=REGISTRY,
            ),
        )
    ],
)


@dag(
    schedule=[events],
    catchup=False,
    tags=["agentflow", "e2e"],
    default_args={"retries": 2},
    max_active_runs=64,
    doc_md=__doc__,
)
def kafka_exactly_once_e2e() -> None:
    @task
    def claim(**context: Any) -> list[str]:
        """Return the ids of the events this run owns (claimed in the ledger)."""
        from operators.events import triggering_events

        return [e.event_id for e in triggering_events(context, claim=True)]

    claim()


e2e_dag = kafka_exactly_once_e2e()

if STOCK_TOPIC:
    from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger

    stock_events = Asset(
        f"e2e_{STOCK_TOPIC}",
        watchers=[
            AssetWatcher(
                name=f"e2e_watcher_{STOCK_TOPIC}",
                trigger=KafkaMessageQueueTrigger(
                    topics=[STOCK_TOPIC],
                    kafka_config_id=STOCK_KAFKA_CONN,
                    apply_function="bench.events.stock_message_value",
                    poll_timeout=0.2,
                    poll_interval=0.2,
                ),
            )
        ],
    )

    @dag(
        schedule=[stock_events],
        catchup=False,
        tags=["agentflow", "e2e"],
        max_active_runs=64,
        doc_md=__doc__,
    )
    def kafka_stock_e2e() -> None:
        @task
        def noop() -> None:
            """Nothing: the bench measures when runs are queued."""

        noop()

    stock_dag = kafka_stock_e2e()

if __name__ == "__main__":
    e2e_dag.test()
