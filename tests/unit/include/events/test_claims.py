"""Run claims: each event is owned by one run of a DAG; the owning run may re-claim it."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from include.events.claims import claim_for_run, claim_holder, claim_key, claim_owner
from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from include.state.ledger import ClaimRequest


class Entry(NamedTuple):
    topic: str | None
    owner: str | None = None


class FakeLedger:
    """An in-memory ``EventLedger``: first claim wins, atomically; the same owner may claim again."""

    def __init__(self) -> None:
        self.rows: dict[str, Entry] = {}
        self.lock = threading.Lock()
        self.calls = 0

    def claim_batch(self, claims: list[ClaimRequest]) -> list[Any]:
        self.calls += 1
        out: list[Any] = []
        with self.lock:
            for c in claims:
                held = self.rows.get(c.event_id)
                if held is None:
                    self.rows[c.event_id] = Entry(c.topic, c.owner)
                    out.append(None)
                else:
                    out.append(None if c.owner is not None and held.owner == c.owner else held)
        return out

    def get(self, event_id: str) -> Any:
        return self.rows.get(event_id)


def test_the_first_run_owns_its_events_and_a_second_run_gets_none_of_them() -> None:
    ledger = FakeLedger()
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2"]) == ["e1", "e2"]
    assert claim_for_run(ledger, "d", "run-b", ["e2", "e3"]) == ["e3"]
    assert ledger.rows[claim_key("d", "e2")] == Entry(None, claim_owner("run-a"))


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


def test_all_of_a_runs_claims_go_to_the_ledger_in_one_batch() -> None:
    ledger = FakeLedger()
    assert claim_for_run(ledger, "d", "r", [f"e{i}" for i in range(50)]) == [f"e{i}" for i in range(50)]
    assert ledger.calls == 1


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
        def claim_batch(self, claims: list[ClaimRequest]) -> list[Any]:
            raise ConnectionError("cassandra down")

    with pytest.raises(ConnectionError):
        claim_for_run(Down(), "d", str(uuid.uuid4()), ["e1"])


def test_claims_written_before_the_owner_column_still_belong_to_their_run() -> None:
    """Rows of the old layout kept ``run/<run_id>`` in ``topic`` and no owner."""
    ledger = FakeLedger()
    ledger.rows[claim_key("d", "e1")] = Entry(claim_owner("run-a"))
    ledger.rows[claim_key("d", "e2")] = Entry(claim_owner("run-b"))
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2", "e3"]) == ["e1", "e3"]
    assert claim_for_run(ledger, "d", "run-b", ["e1", "e2"]) == ["e2"]


@pytest.mark.parametrize(
    ("entry", "holder"),
    [
        (None, None),
        (Entry("support.tickets"), None),  # a watcher's claim: a topic, no owner
        (Entry("run/r1"), "run/r1"),  # a run claim of the old layout
        (Entry(None, "run/r2"), "run/r2"),
        (Entry("run/r1", "run/r2"), "run/r2"),  # the owner column wins
    ],
)
def test_claim_holder(entry: Entry | None, holder: str | None) -> None:
    assert claim_holder(entry) == holder


def test_run_claims_on_the_embedded_ledger(tmp_path: Path) -> None:
    """The SQLite twin: the owner is stored, a legacy row (owner in ``topic``) is still honoured."""
    state = EmbeddedState(EmbeddedStateSettings(path=tmp_path / "state.db"))
    ledger = state.event_ledger()
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2"]) == ["e1", "e2"]
    assert claim_for_run(ledger, "d", "run-b", ["e2", "e3"]) == ["e3"]
    assert claim_for_run(ledger, "d", "run-a", ["e2", "e1"]) == ["e2", "e1"]
    entry = ledger.get(claim_key("d", "e1"))
    assert entry is not None
    assert (entry.owner, entry.topic) == (claim_owner("run-a"), None)
    ledger.claim(claim_key("d", "old"), topic=claim_owner("run-old"))  # how claims were written before
    assert claim_for_run(ledger, "d", "run-old", ["old"]) == ["old"]
    assert claim_for_run(ledger, "d", "run-a", ["old"]) == []


def test_an_embedded_file_made_before_the_owner_column_gets_it(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the ledger table as files of the first version had it
        conn.execute(
            "CREATE TABLE event_ledger (event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, "
            "kafka_partition INTEGER, kafka_offset INTEGER, owner TEXT NOT NULL, "
            "claimed_at_us INTEGER NOT NULL, expires_at REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO event_ledger VALUES (?, ?, NULL, NULL, 'x', 0, 9e18)",
            (claim_key("d", "e1"), claim_owner("run-a")),
        )
    ledger = EmbeddedState(EmbeddedStateSettings(path=path)).event_ledger()
    assert claim_for_run(ledger, "d", "run-a", ["e1", "e2"]) == ["e1", "e2"]
    assert claim_for_run(ledger, "d", "run-b", ["e1", "e2"]) == []
    entry = ledger.get(claim_key("d", "e2"))
    assert entry is not None
    assert entry.owner == claim_owner("run-a")
