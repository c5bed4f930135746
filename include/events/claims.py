"""Run claims: each triggering event is processed by exactly one DAG run.

The watcher's ledger claim (``KafkaEventTrigger``) drops a repeated ``event_id`` carried by
another message, but recognises the *same* message redelivered after a triggerer crash and
lets it fire again (its asset event may never have been stored). When the first copy's asset
event *was* stored, both copies start runs. The run claim closes that window on the DAG side:
a task claims ``(dag_id, event_id)`` in the same ledger, with its ``run_id`` as the owner, and
processes only the events it owns. A retry of the same task (or another task of the same
run) re-claims and finds its own run as the owner, so it processes them again.

The claims live in the event ledger (``include.state.ledger.EventLedger``) under the key
``run-claim/<dag_id>/<event_id>`` with the owner ``run/<run_id>`` in the entry's ``topic``
column, so they share its table, TTL and serial consistency without a schema change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)

CLAIM_KEY_PREFIX = "run-claim/"
OWNER_PREFIX = "run/"


class RunClaimLedger(Protocol):
    """What a run claim needs from ``include.state.ledger.EventLedger``."""

    def claim(
        self, event_id: str, *, topic: str, partition: int | None = None, offset: int | None = None
    ) -> bool:
        """Return True the first time ``event_id`` is claimed (by any owner)."""
        ...

    def get(self, event_id: str) -> Any:
        """Return the entry of ``event_id`` (with ``topic``), or None."""
        ...


def claim_key(dag_id: str, event_id: str) -> str:
    """The ledger key of the claim of ``event_id`` by runs of ``dag_id``.

    :raises ValueError: if either is empty.
    """
    if not dag_id or not event_id:
        raise ValueError("a run claim needs a dag_id and an event_id")
    return f"{CLAIM_KEY_PREFIX}{dag_id}/{event_id}"


def claim_owner(run_id: str) -> str:
    """The owner recorded for claims of run ``run_id``.

    :raises ValueError: if ``run_id`` is empty.
    """
    if not run_id:
        raise ValueError("a run claim needs a run_id")
    return f"{OWNER_PREFIX}{run_id}"


def claim_for_run(ledger: RunClaimLedger, dag_id: str, run_id: str, event_ids: Iterable[str]) -> list[str]:
    """Claim each of ``event_ids`` for run ``run_id`` of ``dag_id``; return those this run owns.

    An event is owned when this call wins its claim, or when the claim already names this run
    (a retry, or another task of the same run). Events owned by another run of the same DAG
    are left out and logged. Order is kept.

    :param ledger: the event ledger.
    :param dag_id: the DAG whose runs compete for the events.
    :param run_id: this run.
    :param event_ids: the events' ids.
    :raises ValueError: if ``dag_id``, ``run_id`` or an event id is empty.
    :raises StateStoreUnavailableError: the ledger is unreachable (the task fails and retries;
        nothing is lost, a claim made before the error is recognised as ours on retry).
    """
    owner = claim_owner(run_id)
    owned: list[str] = []
    for event_id in dict.fromkeys(event_ids):
        key = claim_key(dag_id, event_id)
        if ledger.claim(key, topic=owner):
            owned.append(event_id)
            continue
        entry = ledger.get(key)
        holder = getattr(entry, "topic", None)
        if holder == owner:
            owned.append(event_id)
        elif holder is None:
            # Claimed, then gone (its TTL ran out between the two statements): claim again.
            if ledger.claim(key, topic=owner):
                owned.append(event_id)
            else:
                log.info("Event %s was claimed by another run of %s meanwhile; skipping it", event_id, dag_id)
        else:
            log.info(
                "Skipping event %s: already processed by %s of %s",
                event_id,
                holder.removeprefix(OWNER_PREFIX),
                dag_id,
            )
    return owned
