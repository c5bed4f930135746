"""Human approval of an agent's proposed action, recorded in the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class AuditedApprovalOperator(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` (Approve / Reject, on the Required Actions page) plus an audit record.

    The task waits in ``awaiting_input`` with no worker slot held (Airflow 3.3); the subject
    and body show the agent's proposed action and its reasoning. When a person answers
    (the UI, or ``PATCH .../hitlDetails`` on the REST API), the decision, who made it and
    when are appended to the audit trail of the run before downstream tasks run or are
    skipped (on Reject).

    :param cassandra_conn_id: the state connection of the audit trail; the embedded SQLite
        store when it is not defined.
    :param session_id: the session the decision belongs to (recorded with it); templated.
    """

    template_fields = (*ApprovalOperator.template_fields, "session_id")

    def __init__(
        self, *, cassandra_conn_id: str = "cassandra_default", session_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.cassandra_conn_id = cassandra_conn_id
        self.session_id = session_id

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Record the decision, then let ``ApprovalOperator`` proceed or skip downstream."""
        from operators.hooks.cassandra import state_backend

        if "error" not in event:
            chosen = (event.get("chosen_options") or [""])[0]
            user = event.get("responded_by_user") or {}
            ti = context["task_instance"]
            state = state_backend(self.cassandra_conn_id)
            try:
                state.audit().record(
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    task_id=ti.task_id,
                    map_index=ti.map_index if ti.map_index is not None else -1,
                    try_number=ti.try_number,
                    kind="approval",
                    name=self.subject[:200] if isinstance(self.subject, str) else "approval",
                    actor=str(user.get("name") or user.get("id") or "unknown"),
                    outcome="approved" if chosen == self.APPROVE else "rejected",
                    detail={
                        "chosen_options": event.get("chosen_options"),
                        "params_input": event.get("params_input") or {},
                        "responded_at": str(event.get("responded_at")),
                        "session_id": self.session_id,
                    },
                )
            finally:
                state.close()
            self.log.info("Decision %r by %s recorded in the audit trail", chosen, user)
        return super().execute_complete(context, event)
