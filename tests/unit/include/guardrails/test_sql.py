from __future__ import annotations

import re
import sys

import pytest

from include.errors import ConfigurationError
from include.guardrails import GuardrailPolicy, Guardrails, GuardrailViolation, SqlPolicy, ToolsPolicy


def sql_guard(*allowed: str, dialect: str | None = "postgres") -> Guardrails:
    rule = SqlPolicy(allowed_statements=allowed or ("select",), dialect=dialect)  # type: ignore[arg-type]
    return Guardrails(GuardrailPolicy(tools=ToolsPolicy(sql=rule)))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select id, subject from tickets where status = 'open' order by id limit 10",
        "WITH recent AS (SELECT * FROM tickets WHERE created_at > now() - interval '1 day') "
        "SELECT count(*) FROM recent",
        "SELECT a FROM t UNION SELECT a FROM u",
        "SELECT 'DROP TABLE x; DELETE FROM y' AS text_only",
    ],
)
def test_single_read_only_statements_pass(sql: str) -> None:
    sql_guard().check_sql(sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO t VALUES (1)", "Insert"),
        ("UPDATE t SET a = 1", "Update"),
        ("DELETE FROM t", "Delete"),
        ("DROP TABLE t", "Drop"),
        ("TRUNCATE t", "TruncateTable"),
        ("CREATE TABLE x (a int)", "Create"),
        ("SELECT 1; DROP TABLE x", "Multiple statements"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "Delete"),
        ("SELECT * INTO backup FROM t", "Into"),
        ("GRANT ALL ON t TO public", "not allowed"),
        ("", "Empty SQL"),
        ("SELEC 1 FROM", "not allowed|parse"),
    ],
)
def test_writes_and_tricks_are_refused(sql: str, why: str) -> None:
    with pytest.raises(GuardrailViolation, match="guardrail 'sql' blocked") as info:
        sql_guard().check_sql(sql)
    assert info.value.hit.rule == "sql"
    assert info.value.hit.detail["sql_chars"] == len(sql)

    assert re.search(why, info.value.reason), info.value.reason


def test_explain_only_when_allowed_and_only_of_a_select() -> None:
    with pytest.raises(GuardrailViolation, match="EXPLAIN is not an allowed statement"):
        sql_guard().check_sql("EXPLAIN SELECT 1")
    guard = sql_guard("select", "explain")
    guard.check_sql("EXPLAIN SELECT * FROM t")
    guard.check_sql("explain (analyze, format json) SELECT * FROM t")
    for sql in (
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN (ANALYZE) UPDATE t SET a = 1",
        "EXPLAIN SELECT 1; DROP TABLE t",
    ):
        with pytest.raises(GuardrailViolation):
            guard.check_sql(sql)


def test_describe_only_when_allowed() -> None:
    with pytest.raises(GuardrailViolation, match="Describe"):
        sql_guard().check_sql("DESCRIBE t")
    sql_guard("select", "describe").check_sql("DESCRIBE t")
    with pytest.raises(GuardrailViolation, match="'Select' is not allowed; allowed: describe"):
        sql_guard("describe").check_sql("SELECT 1")


def test_unknown_dialect_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"tools\.sql\.dialect 'klingon'"):
        sql_guard(dialect="klingon").check_sql("SELECT 1")
    sql_guard(dialect=None).check_sql("SELECT 1")
    sql_guard(dialect="postgresql").check_sql("SELECT 1")


def test_non_string_sql_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="sql must be a str"):
        sql_guard().check_sql(None)  # type: ignore[arg-type]


def test_missing_sqlglot_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlglot", None)
    monkeypatch.delitem(sys.modules, "airflow.providers.common.ai.utils.sql_validation", raising=False)
    with pytest.raises(ImportError, match=r"apache-airflow-providers-common-ai\[sql\]"):
        sql_guard().check_sql("SELECT 1")
