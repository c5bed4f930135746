"""The agent guardrails against real services: the shared rate limit on Redis, read-only SQL on PostgreSQL.

The rate limit runs inside a real pydantic-ai agent run (``GuardrailCapability`` in the
loop, a scripted ``FunctionModel``), with the token bucket in the real Redis. The SQL tool is
common.ai's ``SQLToolset`` on the real PostgreSQL, as the README recommends.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from include.guardrails import GuardrailPolicy, Guardrails, GuardrailViolation, RedisTokenBucket
from operators.agents import GuardrailCapability, RunRecorder

if TYPE_CHECKING:
    import psycopg2.extensions
    import redis

pytestmark = pytest.mark.integration


def _three_requests(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call ``lookup`` twice, one turn each, then answer: three model requests."""
    turn = sum(1 for message in messages if isinstance(message, ModelResponse))
    if turn < 2:
        return ModelResponse(parts=[ToolCallPart("lookup", {"key": f"k{turn}"})])
    return ModelResponse(parts=[TextPart("done")])


def _agent(bucket: RedisTokenBucket, recorder: RunRecorder) -> Agent[None, str]:
    capability = GuardrailCapability(
        guardrails=Guardrails(GuardrailPolicy.load()),
        recorder=recorder,
        bucket=bucket,
        rate_limit_timeout_s=0.5,
    )
    agent: Agent[None, str] = Agent(FunctionModel(_three_requests), capabilities=[capability])

    @agent.tool_plain
    def lookup(key: str) -> str:
        return f"value of {key}"

    return agent


def test_model_requests_share_one_bucket_across_runs(redis_client: redis.Redis) -> None:
    key = f"test:{uuid.uuid4()}"
    # Capacity 4, practically no refill: the first run takes 3 tokens, the second gets 1 and is refused.
    bucket = RedisTokenBucket(redis_client, key=key, rate_per_s=0.0001, capacity=4)
    first = RunRecorder()
    assert _agent(bucket, first).run_sync("go").output == "done"
    assert first.hits == []

    second = RunRecorder()
    with pytest.raises(GuardrailViolation, match="rate_limit"):
        _agent(RedisTokenBucket(redis_client, key=key, rate_per_s=0.0001, capacity=4), second).run_sync("go")
    assert [hit.rule for hit in second.hits] == ["rate_limit"]
    assert second.hits[0].action == "blocked"


def test_the_sql_tool_reads_and_never_writes(
    pg_conn: psycopg2.extensions.connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from airflow.providers.common.ai.toolsets.sql import SQLToolset
    from pydantic_ai.messages import RetryPromptPart, ToolReturnPart

    table = f"orders_{uuid.uuid4().hex[:8]}"
    with pg_conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id int, status text)")
        cursor.execute(f"INSERT INTO {table} VALUES (5512, 'charged twice')")
    pg_conn.commit()
    dsn = pg_conn.get_dsn_parameters()
    conn = {"conn_type": "postgres", "host": dsn["host"], "port": int(dsn["port"]), "login": dsn["user"]}
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERS_DB", json.dumps({**conn, "password": "airflow", "schema": dsn["dbname"]})
    )

    select, delete = f"SELECT status FROM {table} WHERE id = 5512", f"DELETE FROM {table}"
    guardrails = Guardrails(GuardrailPolicy.load())
    guardrails.check_sql(select)
    for statement in (delete, f"SELECT 1; DROP TABLE {table}"):
        with pytest.raises(GuardrailViolation, match="sql"):
            guardrails.check_sql(statement)

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(1 for message in messages if isinstance(message, ModelResponse))
        if turn < 2:
            return ModelResponse(parts=[ToolCallPart("query", {"sql": [select, delete][turn]})])
        return ModelResponse(parts=[TextPart("done")])

    agent: Agent[None, str] = Agent(
        FunctionModel(model), toolsets=[SQLToolset("orders_db", allowed_tables=[table])]
    )
    result = agent.run_sync("What happened to order 5512?")
    parts = [part for message in result.all_messages() for part in message.parts]
    answers = [str(part.content) for part in parts if isinstance(part, ToolReturnPart | RetryPromptPart)]
    assert "charged twice" in answers[0]
    assert "Statement type 'Delete' is not allowed" in answers[1]
    with pg_conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (1,)
        cursor.execute(f"DROP TABLE {table}")
    pg_conn.commit()
