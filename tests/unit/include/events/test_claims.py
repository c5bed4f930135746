"""Run claims: each event is owned by one run of a DAG; the owning run may re-claim it."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest

from include.events.claims import claim_for_run, claim_key, claim_owner


class Entry(NamedTuple):
    topic: str


class FakeLedger:
    """An in-memory ``EventLedger``: first claim wins, atomically."""

    def __init__(self) -> None:
        self.rows: dict[str, Entry] = {}
        self.lock = threading.Lock()

    def claim(
        self, event_id: str, *, topic: str, partition: int | None = None, offset: int | None = None
    ) -> bool:
        with self.lock:
            if event_id in self.rows:
                return False
            self.rows[event_id] = Entry(topic)
            return True

    def get(self, event_id: str) -> Any:
        return self.rows.get(event_id)


def test_the_first_run_owns_its_events_and_a_second_run_gets_none_of_them() -> None:
    ledger = FakeLedger()
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2"]) == ["e1", "e2"]
    assert claim_for_run(ledger, "d", "run-b", ["e2", "e3"]) == ["e3"]
    assert ledger.rows[claim_key("d", "e2")].topic == claim_owner("run-a")


def test_a_retry_of_the_same_run_re_claims_its_events() -> None:
    ledger = FakeLedger()
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2"]) == ["e1", "e2"]
    assert claim_for_run(ledger, "d", "run-a", ["e2", "e1"]) == ["e2", "e1"]


def test_claims_are_per_dag() -> None:
    ledger = FakeLedger()
    assert claim_for_run(ledger, "d1", "run-a", ["e1"]) == ["e1"]
    assert claim_for_run(ledger, "d2", "run-a", ["e1"]) == ["e1"]


def test_repeated_ids_in_one_call_are_returned_once() -> None:
    assert claim_for_run(FakeLedger(), "d", "r", ["e1", "e1", "e2"]) == ["e1", "e2"]


def test_a_claim_that_expired_between_claim_and_read_is_claimed_again() -> None:
    class Expiring(FakeLedger):
        def get(self, event_id: str) -> Any:
            self.rows.pop(event_id, None)  # the TTL ran out just now
            return None

    ledger = Expiring()
    ledger.rows[claim_key("d", "e1")] = Entry(claim_owner("old"))
    assert claim_for_run(ledger, "d", "r", ["e1"]) == ["e1"]


def test_concurrent_runs_split_the_events_without_overlap() -> None:
    ledger = FakeLedger()
    ids = [f"e{i}" for i in range(200)]
    runs = [f"run-{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda run: claim_for_run(ledger, "d", run, ids), runs))
    owned = [event_id for result in results for event_id in result]
    assert sorted(owned) == sorted(ids)


@pytest.mark.parametrize(("dag_id", "run_id", "event_id"), [("", "r", "e"), ("d", "", "e"), ("d", "r", "")])
def test_empty_keys_are_refused(dag_id: str, run_id: str, event_id: str) -> None:
    with pytest.raises(ValueError, match="needs"):
        claim_for_run(FakeLedger(), dag_id, run_id, [event_id])


def test_a_ledger_error_propagates() -> None:
    class Down(FakeLedger):
        def claim(self, event_id: str, **kwargs: Any) -> bool:
            raise ConnectionError("cassandra down")

    with pytest.raises(ConnectionError):
        claim_for_run(Down(), "d", str(uuid.uuid4()), ["e1"])
