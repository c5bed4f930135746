"""``@task.agentflow_agent``: the TaskFlow form of :class:`AgentflowAgentOperator`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from operators.agents.operator import AgentflowAgentOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _AgentflowAgentDecoratedOperator(DecoratedOperator, AgentflowAgentOperator):
    """Calls the decorated function for the prompt, then runs :class:`AgentflowAgentOperator`.

    :param python_callable: returns the prompt string.
    :param op_args: positional arguments for the callable.
    :param op_kwargs: keyword arguments for the callable.
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *AgentflowAgentOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name: str = "@task.agentflow_agent"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        prompt = self.python_callable(
            *self.op_args, **determine_kwargs(self.python_callable, self.op_args, context)
        )
        if not isinstance(prompt, str) or not prompt.strip():
            raise TypeError(
                f"@task.agentflow_agent: the function must return a non-empty prompt string, got {prompt!r}"
            )
        self.prompt = prompt
        self.render_template_fields(context)
        return AgentflowAgentOperator.execute(self, context)


def agentflow_agent_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Turn a function that returns a prompt into an :class:`AgentflowAgentOperator` task.

    Usage::

        @task.agentflow_agent(llm_conn_id="agentflow_llm", output_type=TriageResult)
        def triage(ticket: dict) -> str:
            return f"{ticket['subject']}. {ticket['body']}"

    :param python_callable: the function.
    """
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_AgentflowAgentDecoratedOperator, **kwargs
    )
