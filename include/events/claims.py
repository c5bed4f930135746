"""Run claims: each triggering event is processed by exactly one DAG run.

The watcher's ledger claim (``KafkaEventTrigger``) drops a repeated ``event_id`` carried by
another message, but recognises the *same* message redelivered after a triggerer crash and
lets it fire again (its asset event may never have been stored). When the first copy's asset
event *was* stored, both copies start runs. The run claim closes that window on the DAG side:
a task claims ``(dag_id, event_id)`` in the same ledger, with its ``run_id`` as the owner, and
processes only the events it owns. A retry of the same task (or another task of the same
run) re-claims and finds its own run as the owner, so it processes them again.

The claims live in the event ledger (``include.state.ledger.EventLedger``) under the key
``run-claim/<dag_id>/<event_id>``, claimed with ``owner="run/<run_id>"`` (the ledger's
``claimed_by`` column), so they share its table, TTL and serial consistency. Claims written
before the ledger had an owner column carry the owner in their ``topic`` instead; they are
still read as that run's (:func:`claim_holder`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from include.state.ledger import ClaimRequest

log = logging.getLogger(__name__)

CLAIM_KEY_PREFIX = "run-claim/"
OWNER_PREFIX = "run/"


class RunClaimLedger(Protocol):
    """What a run claim needs from ``include.state.ledger.EventLedger``."""

    def claim_batch(self, claims: Sequence[ClaimRequest]) -> list[Any]:
        """Claim each key; per claim ``None`` if granted (or already this owner's), else its holder."""
        ...


def claim_holder(entry: Any) -> str | None:
    """Who holds a run claim: the entry's ``owner``, or for a claim written before the ledger had
    an owner column, the ``run/...`` it kept in its ``topic``; ``None`` for no entry.
    """
    if entry is None:
        return None
    owner = getattr(entry, "owner", None)
    if owner is not None:
        return str(owner)
    topic = getattr(entry, "topic", None)
    return topic if isinstance(topic, str) and topic.startswith(OWNER_PREFIX) else None


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
    are left out and logged. Order is kept. The claims go to the ledger in one
    ``claim_batch`` (concurrent lightweight transactions), not one round trip per event.

    :param ledger: the event ledger.
    :param dag_id: the DAG whose runs compete for the events.
    :param run_id: this run.
    :param event_ids: the events' ids.
    :raises ValueError: if ``dag_id``, ``run_id`` or an event id is empty.
    :raises StateStoreUnavailableError: the ledger is unreachable (the task fails and retries;
        nothing is lost, a claim made before the error is recognised as ours on retry).
    """
    owner = claim_owner(run_id)
    unique = list(dict.fromkeys(event_ids))
    keys = [claim_key(dag_id, event_id) for event_id in unique]
    holders = ledger.claim_batch([ClaimRequest(key, owner=owner) for key in keys])
    owned: list[str] = []
    for event_id, holder in zip(unique, holders, strict=True):
        if holder is None or claim_holder(holder) == owner:
            # Granted now, or already ours (a retry; or a claim written before the owner column).
            owned.append(event_id)
        else:
            log.info(
                "Skipping event %s: already processed by %s of %s",
                event_id,
                (claim_holder(holder) or "another claimer").removeprefix(OWNER_PREFIX),
                dag_id,
            )
    return owned
