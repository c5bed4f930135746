"""`research_report` and `knowledge_ingest` end to end under `airflow dags test` on the embedded default."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.state.embedded import EmbeddedState, EmbeddedStateSettings
from tests.airflow_runs import ROOT, dags_test, embedded_env, extractive_llm, task_states


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    return embedded_env(home, ROOT / "dags", AIRFLOW_CONN_AGENTFLOW_LLM=extractive_llm())


def _dags_test(
    env: dict[str, str], dag_id: str, conf: dict | None = None
) -> tuple[str, dict[tuple[str, int], str]]:
    output = dags_test(env, dag_id, conf)
    return output, task_states(env, dag_id)


def test_research_report_delegates_to_mapped_specialists_and_remembers(airflow_env: dict[str, str]) -> None:
    conf = {"areas": ["billing", "returns", "shipping"], "session_id": "research-test"}
    output, states = _dags_test(airflow_env, "research_report", conf)
    assert set(states.values()) == {"success"}, output[-3000:]
    assert sorted(index for task, index in states if task == "research") == [0, 1, 2]
    assert "Research report:" in output
    assert "Drafted without an LLM" in output

    state = EmbeddedState(EmbeddedStateSettings(path=Path(airflow_env["AGENTFLOW_STATE_DB"])))
    runs = state.agent_runs().list_runs(datetime.now(UTC).date(), dag_id="research_report")
    assert sorted((r.task_id, r.map_index) for r in runs) == [
        ("research", 0),
        ("research", 1),
        ("research", 2),
        ("write_report", -1),
    ]
    assert all(r.tool_calls == 1 and r.status == "success" for r in runs)
    # The supervisor's turn is in the team's memory for the next report.
    assert len(state.memory().turns("research-test", last_turns=10)) == 1


def test_knowledge_ingest_maps_one_task_per_shard_and_is_idempotent(airflow_env: dict[str, str]) -> None:
    output, states = _dags_test(airflow_env, "knowledge_ingest", {"shard_size": 3})
    shards = sorted(index for task, index in states if task == "ingest_shard")
    corpus = sorted((ROOT / "include" / "knowledge" / "corpus").glob("*.md"))
    assert shards == list(range((len(corpus) + 2) // 3)), output[-3000:]
    assert set(states.values()) == {"success"}, output[-3000:]

    state = EmbeddedState(EmbeddedStateSettings(path=Path(airflow_env["AGENTFLOW_STATE_DB"])))
    chunks = {hit.metadata["doc_id"] for hit in state.knowledge().search([0.0] * 383 + [1.0], k=100)}
    assert len(chunks) == len(corpus)

    output, _ = _dags_test(airflow_env, "knowledge_ingest", {"shard_size": 3})
    assert "'written': 0" in output, output[-3000:]
