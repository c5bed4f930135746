"""Read-only SQL: one statement of an allowed kind, nothing that writes, checked on sqlglot's AST.

The parsing and the read-only checks are common.ai's own
(``airflow.providers.common.ai.utils.sql_validation``, the validator behind its SQL toolset):
it refuses empty input, parse errors, several statements, statement types outside the
allowlist, and data-modifying nodes anywhere in the tree (``WITH d AS (DELETE ...) SELECT``,
``SELECT ... INTO``). Imported on first use: it needs sqlglot
(``apache-airflow-providers-common-ai[sql]``).

sqlglot does not model ``EXPLAIN``: it parses to a raw command. When the policy allows
``explain``, the statement after ``EXPLAIN`` and its options must itself pass as a select,
so ``EXPLAIN ANALYZE DELETE ...`` (which would delete) is refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from include.errors import ConfigurationError
from include.guardrails._errors import GuardrailHit, GuardrailViolation

if TYPE_CHECKING:
    from include.guardrails._policy import SqlPolicy

_EXPLAIN_OPTIONS = re.compile(r"^\s*(?:(?:ANALY[SZ]E|VERBOSE)\b\s*|\([^()]*\)\s*)*", re.IGNORECASE)


def _validator() -> tuple[Any, Any]:
    try:
        from airflow.providers.common.ai.utils import sql_validation
        from sqlglot import exp
    except ImportError as err:
        raise ImportError(
            "the SQL guardrail uses common.ai's SQL validator, which needs sqlglot: "
            "install apache-airflow-providers-common-ai[sql] (or sqlglot>=30)"
        ) from err
    return sql_validation, exp


def _refuse(reason: str, sql: str, **detail: object) -> GuardrailViolation:
    hit = GuardrailHit(
        rule="sql", action="blocked", detail={"reason": reason, "sql_chars": len(sql), **detail}
    )
    return GuardrailViolation(hit, reason)


def check_sql(sql: str, policy: SqlPolicy) -> None:
    """Refuse ``sql`` unless it is a single read-only statement of a kind the policy allows.

    :param sql: the statement the SQL tool was asked to run.
    :param policy: the ``tools.sql`` section of the policy.
    :raises TypeError: ``sql`` is not a string.
    :raises ConfigurationError: the policy's dialect is not one sqlglot knows.
    :raises ImportError: sqlglot is not installed.
    :raises GuardrailViolation: rule ``sql``, with common.ai's reason.
    """
    if not isinstance(sql, str):
        raise TypeError(f"sql must be a str, not {type(sql).__name__}")
    validation, exp = _validator()

    dialect = None
    if policy.dialect is not None:
        dialect = validation.resolve_sqlglot_dialect(policy.dialect)
        if dialect is None:
            raise ConfigurationError(f"tools.sql.dialect {policy.dialect!r} is not a dialect sqlglot knows")
    allowed = set(policy.allowed_statements)
    select_types = validation.DEFAULT_ALLOWED_TYPES
    try:
        statement = validation.parse_sql(sql, dialect=dialect)[0]
        if isinstance(statement, exp.Command) and str(statement.this).upper() == "EXPLAIN":
            if "explain" not in allowed:
                raise _refuse("EXPLAIN is not an allowed statement", sql, statement="Explain")
            inner = _EXPLAIN_OPTIONS.sub(
                "", statement.expression.name if statement.expression else "", count=1
            )
            validation.validate_sql(inner, dialect=dialect)
            return
        validation.validate_sql(
            sql, dialect=dialect, allow_read_only_metadata=bool(allowed & {"describe", "show"})
        )
    except validation.SQLSafetyError as err:
        raise _refuse(str(err), sql) from err
    kinds = {
        "select": select_types,
        "describe": (exp.Describe,),
        "show": (exp.Show,),
    }
    permitted = tuple(t for kind in allowed if kind in kinds for t in kinds[kind])
    if not isinstance(statement, permitted):
        raise _refuse(
            f"statement type {type(statement).__name__!r} is not allowed; allowed: "
            f"{', '.join(sorted(allowed))}",
            sql,
            statement=type(statement).__name__,
        )
